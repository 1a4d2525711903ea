"""Shared harness for ferry's integration tests (python3, stdlib only).

A test file defines functions `def test_x(h): ...` and ends with
`harness.main(globals())`. ctest runs it as
    python3 test_file.py --ferry PATH [--upstream PATH] TESTNAME
and the test passes when the process exits 0 (77 = skipped).

The Harness `h` owns a temporary directory and every process and socket the
test starts; everything is cleaned up (by PID, never by name) when the test
ends, pass or fail. On failure it prints the config, ferry's stderr and
stdout, and the upstreams' stderr.

Ports: ferry is started on ports found free by binding port 0 and closing;
when ferry then fails with "in use" (another process took the port in
between), it is started again on new ports. Readiness is read from
/proc/net/{tcp,tcp6,unix}: a listening socket owned by the ferry process, so
waiting makes no connection (which would show up in access logs and count
against max_connections).

Running ferry under a wrapper (valgrind, see scripts/valgrind):
    FERRY_WRAPPER="valgrind --error-exitcode=99 --log-file=DIR/valgrind-%p.log ..."
is split with shlex and put in front of every ferry command line the harness
starts (start_ferry, run_ferry); a test that builds its own command line
(h.ferry_bin) is not wrapped. The wrapper must exec ferry in the same process
(valgrind does), so the PID, /proc readiness checks and signals reach ferry.
FERRY_TIME_SCALE (a number, default 1) multiplies the harness's own waits for
ferry: start-up, stop at test end, run_ferry; not the timeouts a test passes
to its clients. An exit status of 99 (valgrind's --error-exitcode) under a
wrapper fails the test at cleanup, with the valgrind log printed.
"""
import argparse
import glob
import os
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))

# FERRY_WRAPPER: a command put in front of ferry (e.g. valgrind); see above.
WRAPPER = shlex.split(os.environ.get("FERRY_WRAPPER", ""))
# valgrind's --error-exitcode in scripts/valgrind: ferry itself exits 0, 1 or 2.
WRAPPER_ERROR_EXIT = 99


def wrapper_name():
    """The wrapper's program name for messages ("valgrind" in "env X=1 valgrind ...")."""
    for a in WRAPPER:
        if not a.startswith("-") and "=" not in a and os.path.basename(a) != "env":
            return os.path.basename(a)
    return WRAPPER[0] if WRAPPER else ""


def time_scale():
    """FERRY_TIME_SCALE (>= 1; default 1): multiplies the harness's waits for
    ferry starting and stopping, for a slow wrapper such as valgrind."""
    try:
        return max(1.0, float(os.environ.get("FERRY_TIME_SCALE", "1") or 1))
    except ValueError:
        return 1.0


def scaled(seconds):
    return seconds * time_scale()


def wrapper_log_paths(pid):
    """The wrapper's log files for process pid: from a --log-file=PATTERN
    argument (valgrind's %p is the PID), else none (the log is on stderr)."""
    paths = []
    for a in WRAPPER:
        if a.startswith("--log-file="):
            pattern = a[len("--log-file="):].replace("%p", str(pid))
            paths += sorted(glob.glob(re.sub(r"%q\{[^}]*\}", "*", pattern)))
    return paths


def wrapper_log(pid, limit=12000):
    """The text of the wrapper's log for pid (its last LIMIT chars), or ""."""
    out = []
    for path in wrapper_log_paths(pid):
        try:
            with open(path, "rb") as f:
                out.append("---- %s:\n%s" % (path, f.read().decode("utf-8", "replace")[-limit:]))
        except OSError:
            pass
    return "\n".join(out)


class Skip(Exception):
    pass


# ---------------------------------------------------------------- sockets


def free_port(host="127.0.0.1"):
    """A port nobody listens on right now (bind port 0, read it, close)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def recv_exact(sock, n, timeout=10.0):
    """Reads exactly n bytes or raises AssertionError (EOF, reset, timeout)."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timed out after %.1fs with %d of %d bytes" % (timeout, len(buf), n))
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except socket.timeout:
            continue
        except OSError as e:
            raise AssertionError("recv failed after %d of %d bytes: %r" % (len(buf), n, e))
        if not chunk:
            raise AssertionError("EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def recv_until_eof(sock, timeout=10.0):
    """Reads until EOF; raises AssertionError on timeout or reset."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no EOF within %.1fs (%d bytes read)" % (timeout, len(buf)))
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            continue
        except OSError as e:
            raise AssertionError("recv failed after %d bytes, before EOF: %r" % (len(buf), e))
        if not chunk:
            return bytes(buf)
        buf += chunk


def wait_closed(sock, timeout):
    """Waits for the peer to close: returns ("eof"|"reset", seconds, data read).
    Raises AssertionError if still open after timeout."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    data = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("connection still open after %.1fs (read %d bytes)" % (timeout, len(data)))
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            return "reset", time.monotonic() - t0, bytes(data)
        if not chunk:
            return "eof", time.monotonic() - t0, bytes(data)
        data += chunk


def echo_check(sock, data=b"ping", timeout=5.0):
    """Sends data and asserts the same bytes come back."""
    sock.sendall(data)
    got = recv_exact(sock, len(data), timeout)
    assert got == data, "echo mismatch: sent %r, got %r" % (data[:64], got[:64])


def connect(addr, timeout=5.0):
    """addr: ("tcp", host, port) or ("unix", path). Returns a connected socket."""
    if addr[0] == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = addr[1]
    else:
        fam = socket.AF_INET6 if ":" in addr[1] else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        target = (addr[1], addr[2])
    s.settimeout(timeout)
    try:
        s.connect(target)
    except BaseException:
        s.close()
        raise
    return s


def fmt_addr(addr):
    if addr[0] == "unix":
        return "unix:" + addr[1]
    if ":" in addr[1]:
        return "[%s]:%d" % (addr[1], addr[2])
    return "%s:%d" % (addr[1], addr[2])


# ---------------------------------------------------------------- /proc


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def cpu_seconds(pid):
    """utime + stime of the whole process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def socket_inodes(pid):
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        pass
    return inodes


def is_listening(pid, addr):
    """True when process pid owns a listening socket for addr."""
    inodes = socket_inodes(pid)
    if not inodes:
        return False
    if addr[0] == "unix":
        try:
            with open("/proc/net/unix") as f:
                next(f)
                for line in f:
                    parts = line.split()
                    # Num RefCount Protocol Flags Type St Inode [Path]
                    if len(parts) >= 8 and parts[7] == addr[1] and parts[6] in inodes \
                            and int(parts[3], 16) & 0x10000:
                        return True
        except OSError:
            pass
        return False
    port = addr[2]
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    lport = int(parts[1].rsplit(":", 1)[1], 16)
                    if lport == port and parts[3] == "0A" and parts[9] in inodes:
                        return True
        except OSError:
            pass
    return False


# ---------------------------------------------------------------- processes


class Proc:
    """A child process with stdout/stderr captured to files in the tempdir."""

    def __init__(self, name, argv, tmp, preexec_fn=None, stdout_pipe=False, env=None):
        self.name = name
        self.argv = argv
        self.out_path = os.path.join(tmp, name + ".stdout")
        self.err_path = os.path.join(tmp, name + ".stderr")
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._out, stderr=self._err,
            preexec_fn=preexec_fn, close_fds=True,
            env=dict(os.environ, **env) if env else None)
        self.pid = self.popen.pid
        self.rc = None

    def alive(self):
        return self.popen.poll() is None

    def wait(self, timeout):
        """Waits for exit; returns the exit code or None on timeout."""
        try:
            self.rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.rc

    def signal(self, sig):
        if self.popen.poll() is None:
            os.kill(self.pid, sig)

    def kill(self):
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, timeout=10.0):
        """SIGTERM, wait up to timeout, then SIGKILL. Returns the exit code
        (negative = killed by that signal) or None when it had to be killed."""
        if self.popen.poll() is not None:
            return self.popen.returncode
        self.signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
        return rc

    def stdout(self):
        self._out.flush()
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr(self):
        self._err.flush()
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def close_files(self):
        for f in (self._out, self._err):
            try:
                f.close()
            except OSError:
                pass
        if self.popen.stdout:
            self.popen.stdout.close()


def _readline_timeout(pipe, timeout):
    deadline = time.monotonic() + timeout
    buf = b""
    fd = pipe.fileno()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        b = os.read(fd, 1)
        if not b:
            return None
        buf += b
    return buf.decode().strip()


class Ferry(Proc):
    def __init__(self, h, name, argv, config_path, config_text, addrs, preexec_fn, env):
        super().__init__(name, argv, h.tmp, preexec_fn=preexec_fn, env=env)
        self.config_path = config_path
        self.config_text = config_text
        self.addrs = addrs  # listener addresses, in the order the config gave them

    @property
    def addr(self):
        return self.addrs[0]

    def connect(self, i=0, timeout=5.0):
        return connect(self.addrs[i], timeout)

    def rss_kib(self):
        return rss_kib(self.pid)

    def cpu_seconds(self):
        return cpu_seconds(self.pid)

    def assert_not_spinning(self, what, limit=0.3):
        """Over one idle second the process uses less than LIMIT s of CPU
        and is still alive (out of descriptors, say: no busy loop)."""
        cpu0 = self.cpu_seconds()
        time.sleep(1.0)
        cpu = self.cpu_seconds() - cpu0
        print("ferry CPU over 1 s %s: %.2fs" % (what, cpu))
        assert cpu < limit, "ferry used %.2fs CPU in 1 s %s (spinning)" % (cpu, what)
        assert self.alive(), "ferry died %s" % what


# ---------------------------------------------------------------- harness


class Harness:
    def __init__(self, ferry_bin, upstream_bin, test_name):
        self.ferry_bin = ferry_bin
        self.upstream_bin = upstream_bin
        self.test_name = test_name
        self.tmp = tempfile.mkdtemp(prefix="ferry-it-")
        self.procs = []
        self.sockets = []
        self.threads = []
        self.ferries = []
        self.check_clean_exit = True  # on success, ferry must exit 0 on SIGTERM, sanitizer-clean
        self.wrapper_failures = []  # run_ferry runs the wrapper (valgrind) found errors in

    # ---- files

    def path(self, name):
        return os.path.join(self.tmp, name)

    def write(self, name, text):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    # ---- sockets owned by the test

    def track(self, sock):
        self.sockets.append(sock)
        return sock

    def connect(self, addr, timeout=5.0):
        return self.track(connect(addr, timeout))

    # ---- upstreams

    def upstream(self, listen="127.0.0.1:0", name="up", mode="--tcp-echo", py=False):
        """Starts an echo upstream (ferry-upstream if given, else, or with py,
        echo_server.py). Returns its address tuple ("tcp", host, port) or
        ("unix", path)."""
        if self.upstream_bin and os.access(self.upstream_bin, os.X_OK) and not py \
                and not os.environ.get("FERRY_TEST_PY_UPSTREAM"):
            argv = [self.upstream_bin]
        else:
            argv = [sys.executable, os.path.join(HERE, "echo_server.py")]
        argv += ["--listen", listen, "--name", name]
        if mode:
            argv.append(mode)
        p = Proc("upstream-%s-%d" % (name, len(self.procs)), argv, self.tmp, stdout_pipe=True)
        self.procs.append(p)
        if listen.startswith("unix:"):
            addr = ("unix", listen[5:])
            deadline = time.monotonic() + 10
            while not is_listening(p.pid, addr):
                if not p.alive() or time.monotonic() > deadline:
                    raise AssertionError("upstream %s did not listen on %s: %s" % (argv, listen, p.stderr()))
                time.sleep(0.02)
            return addr
        line = _readline_timeout(p.popen.stdout, 10)
        if not line:
            raise AssertionError("upstream %s printed no address: %s" % (argv, p.stderr()))
        host, _, port = line.rpartition(":")
        host = host.strip("[]")
        addr = ("tcp", host, int(port))
        deadline = time.monotonic() + 10
        while not is_listening(p.pid, addr):
            if not p.alive() or time.monotonic() > deadline:
                raise AssertionError("upstream %s not listening on %s" % (argv, line))
            time.sleep(0.02)
        return addr

    def thread_server(self, handler, host="127.0.0.1"):
        """A listening socket in this process; handler(conn) runs in a thread per
        connection. An OSError out of handler ends that connection quietly (the
        peer, ferry, may reset it: that is what many tests are about), and conn
        is closed when handler returns. Returns the address tuple."""
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        ls = socket.socket(fam, socket.SOCK_STREAM)
        ls.bind((host, 0))
        ls.listen(128)
        self.sockets.append(ls)

        def serve(c):
            try:
                handler(c)
            except OSError:
                pass
            finally:
                c.close()

        def loop():
            while True:
                try:
                    c, _ = ls.accept()
                except OSError:
                    return
                self.sockets.append(c)
                threading.Thread(target=serve, args=(c,), daemon=True).start()

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        return ("tcp", host, ls.getsockname()[1])

    # ---- ferry

    def run_ferry(self, args, timeout=10.0):
        """Runs ferry to completion: returns (rc, stdout, stderr)."""
        p = subprocess.Popen(WRAPPER + [self.ferry_bin] + list(args), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = p.communicate(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise
        if WRAPPER and p.returncode == WRAPPER_ERROR_EXIT:
            self.wrapper_failures.append("ferry (pid %d, %s) exited %d: the wrapper (%s) reported "
                                         "errors\n%s" % (p.pid, " ".join(args), p.returncode,
                                                          wrapper_name(), wrapper_log(p.pid)))
        return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def start_ferry(self, make_config, args=(), nofile=None, wait=True, attempts=5, env=None):
        """make_config() -> (config_text, [listener addr tuples]); it is called
        again with new ports when ferry loses a port race. Waits until every
        listener is listening, unless wait=False. env: extra environment."""
        last = None
        for attempt in range(attempts):
            text, addrs = make_config()
            cfg = self.write("ferry-%d.ini" % len(self.ferries), text)
            pre = None
            if nofile is not None:
                def pre(n=nofile):
                    resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
            f = Ferry(self, "ferry-%d" % len(self.ferries),
                      WRAPPER + [self.ferry_bin, "-c", cfg] + list(args), cfg, text, addrs, pre, env)
            self.ferries.append(f)
            if not wait:
                return f
            limit = scaled(15)
            deadline = time.monotonic() + limit
            while True:
                if all(is_listening(f.pid, a) for a in addrs):
                    return f
                if not f.alive():
                    break
                if time.monotonic() > deadline:
                    raise AssertionError("ferry not listening on %s after %gs" %
                                         (", ".join(fmt_addr(a) for a in addrs), limit))
                time.sleep(0.02)
            f.wait(scaled(5))
            err = f.stderr()
            last = "ferry exited with %s before listening; stderr:\n%s" % (f.popen.returncode, err)
            if "in use" not in err.lower():
                raise AssertionError(last)
        raise AssertionError(last)

    def ferry_stop_clean(self, f, timeout=10.0):
        """SIGTERM; asserts exit 0 within timeout and a sanitizer-clean stderr."""
        rc = f.stop(scaled(timeout))
        assert rc == 0, "ferry exit status after SIGTERM: %r (expected 0)%s" % (rc, wrapper_note(rc))
        assert_sanitizer_clean(f)

    # ---- cleanup

    def cleanup(self, ok, dump=True):
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass
        problems = []
        for f in self.ferries:
            if f.popen.poll() is None:
                if ok and self.check_clean_exit:
                    rc = f.stop(scaled(15))
                    if rc != 0:
                        problems.append("ferry (pid %d) exit status after SIGTERM at test end: %r "
                                        "(expected 0)%s" % (f.pid, rc, wrapper_note(rc)))
                else:
                    f.kill()
            elif WRAPPER and f.popen.returncode == WRAPPER_ERROR_EXIT:
                # stopped by the test, which may not have looked at the status
                problems.append("ferry (pid %d) exit status %d%s" % (f.pid, WRAPPER_ERROR_EXIT,
                                                                     wrapper_note(WRAPPER_ERROR_EXIT)))
            if ok and self.check_clean_exit:
                try:
                    assert_sanitizer_clean(f)
                except AssertionError as e:
                    problems.append(str(e))
        problems += self.wrapper_failures
        for p in self.procs:
            p.stop(5)
        if dump and (not ok or problems):
            self.dump()
        for p in self.procs + self.ferries:
            p.close_files()
        if ok and not problems:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print("test files kept in %s" % self.tmp)
        return problems

    def dump(self):
        for f in self.ferries:
            print("---- %s (pid %d, exit %r): %s" % (f.name, f.pid, f.popen.returncode, " ".join(f.argv)))
            print("---- config %s:" % f.config_path)
            for i, line in enumerate(f.config_text.splitlines(), 1):
                print("%3d  %s" % (i, line))
            print("---- ferry stderr (last 6000 chars):")
            print(f.stderr()[-6000:])
            print("---- ferry stdout (last 3000 chars):")
            print(f.stdout()[-3000:])
            log = wrapper_log(f.pid)
            if log:
                print("---- wrapper log (%s):" % wrapper_name())
                print(log)
        for p in self.procs:
            err = p.stderr()
            if err.strip():
                print("---- %s stderr (last 2000 chars):" % p.name)
                print(err[-2000:])


def wrapper_note(rc):
    """Why exit status rc may not be ferry's own: valgrind's error exit."""
    if WRAPPER and rc == WRAPPER_ERROR_EXIT:
        return " (%d: %s reported memory errors or leaks; its log is printed below)" % (
            WRAPPER_ERROR_EXIT, wrapper_name())
    return ""


def assert_sanitizer_clean(f):
    err = f.stderr()
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer"):
        assert marker not in err, "ferry (pid %d) stderr reports %r" % (f.pid, marker)


# ---------------------------------------------------------------- configs


def tcp_config(listen, servers, listener_opts=None, upstream_opts=None, global_opts=None,
               listener_name="t", upstream_name="u"):
    """Text of a one-listener, one-upstream tcp config. listen and servers are
    address tuples (or "unix:..." strings); *_opts are dicts of extra keys."""
    g = {"workers": "auto", "shutdown_timeout": "5s", "log_level": "info"}
    g.update(global_opts or {})
    lines = ["[global]"] + ["%s = %s" % kv for kv in g.items()]
    lines += ["", "[listener %s]" % listener_name,
              "bind = %s" % (listen if isinstance(listen, str) else fmt_addr(listen)),
              "mode = tcp", "upstream = %s" % upstream_name]
    lines += ["%s = %s" % kv for kv in (listener_opts or {}).items()]
    lines += ["", "[upstream %s]" % upstream_name]
    for s in servers:
        lines.append("server = %s" % (s if isinstance(s, str) else fmt_addr(s)))
    lines += ["%s = %s" % kv for kv in (upstream_opts or {}).items()]
    return "\n".join(lines) + "\n"


def simple_tcp(h, servers, host="127.0.0.1", env=None, **kw):
    """Starts ferry with one tcp listener on host:free-port in front of servers."""
    def make():
        addr = ("tcp", host, free_port(host))
        return tcp_config(addr, servers, **kw), [addr]
    return h.start_ferry(make, env=env)


# ---------------------------------------------------------------- http


def http_config(listeners, upstreams, routes=(), global_opts=None):
    """Text of an http config. listeners: [(name, addr, {key: value})];
    upstreams: [(name, [servers], {key: value})]; routes: [(name, [(key, value)])]
    (a list, since keys like host or add_request_header repeat). A listener
    option whose value is None is left out."""
    g = {"workers": "1", "shutdown_timeout": "5s", "log_level": "info"}
    g.update(global_opts or {})
    lines = ["[global]"] + ["%s = %s" % kv for kv in g.items()]
    for name, addr, opts in listeners:
        lines += ["", "[listener %s]" % name,
                  "bind = %s" % (addr if isinstance(addr, str) else fmt_addr(addr)), "mode = http"]
        lines += ["%s = %s" % kv for kv in (opts or {}).items() if kv[1] is not None]
    for name, servers, opts in upstreams:
        lines += ["", "[upstream %s]" % name]
        lines += ["server = %s" % (s if isinstance(s, str) else fmt_addr(s)) for s in servers]
        lines += ["%s = %s" % kv for kv in (opts or {}).items()]
    for name, kvs in routes:
        lines += ["", "[route %s]" % name] + ["%s = %s" % kv for kv in kvs]
    return "\n".join(lines) + "\n"


def simple_http(h, servers, listener_opts=None, upstream_opts=None, global_opts=None,
                routes=(), more_upstreams=(), env=None, host="127.0.0.1"):
    """Starts ferry with one http listener "web" on a free port whose default
    upstream is "app" (servers), unless listener_opts sets "upstream"
    (None: no default upstream)."""
    lo = {"upstream": "app"}
    lo.update(listener_opts or {})

    def make():
        addr = ("tcp", host, free_port(host))
        ups = [("app", servers, upstream_opts)] + list(more_upstreams)
        return http_config([("web", addr, lo)], ups, routes, global_opts), [addr]
    return h.start_ferry(make, env=env)


def http_upstream(h, name="up"):
    """Starts ferry-upstream in HTTP mode (skips the test when it is not built)."""
    if not (h.upstream_bin and os.access(h.upstream_bin, os.X_OK)):
        raise Skip("ferry-upstream is not built: http tests need it")
    return h.upstream(name=name, mode=None)


def build_request(method="GET", target="/", headers=(("Host", "test.example"),), body=None,
                  version="HTTP/1.1", content_length=True):
    """Raw request bytes. body: bytes; a Content-Length is added for it unless
    content_length is False or headers already hold one."""
    lines = ["%s %s %s" % (method, target, version)]
    hs = list(headers)
    if body is not None and content_length and \
            not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hs):
        hs.append(("Content-Length", str(len(body))))
    lines += ["%s: %s" % kv for kv in hs]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return raw + (body or b"")


def chunk_encode(data, size=4096):
    out = bytearray()
    for i in range(0, len(data), size):
        piece = data[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


class Response:
    def __init__(self):
        self.version = self.reason = ""
        self.status = 0
        self.headers = []      # [(name, value)] in order, as str
        self.body = b""
        self.body_len = 0      # body bytes (also when a sink took them)
        self.chunked = False   # the response was chunked on the wire
        self.until_eof = False  # the body was delimited by the connection closing
        self.head_raw = b""

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        import json
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError("response body is not JSON: %r" % self.body[:300])

    def __repr__(self):
        return "<%s %d %s, %d body bytes: %r>" % (self.version, self.status, self.headers,
                                                   self.body_len, self.body[:200])


class HttpClient:
    """A buffered HTTP/1.x reader/writer on one socket (keeps pipelined bytes)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline, what):
        if self.eof:
            raise AssertionError("EOF while reading %s (%d bytes buffered: %r)" %
                                 (what, len(self.buf), bytes(self.buf[:200])))
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out reading %s (%d bytes buffered: %r)" %
                                     (what, len(self.buf), bytes(self.buf[:200])))
            self.sock.settimeout(left)
            try:
                b = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError as e:
                raise AssertionError("recv failed reading %s: %r (buffered %r)" %
                                     (what, e, bytes(self.buf[:200])))
            if not b:
                self.eof = True
                raise AssertionError("EOF while reading %s (%d bytes buffered: %r)" %
                                     (what, len(self.buf), bytes(self.buf[:200])))
            self.buf += b
            return

    def _line(self, deadline, what):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            self._fill(deadline, what)

    def _take(self, n, deadline, what, sink=None):
        """n bytes; to sink (returns b"") or returned."""
        out = bytearray()
        while n > 0:
            if not self.buf:
                self._fill(deadline, what)
            k = min(n, len(self.buf))
            piece = bytes(self.buf[:k])
            del self.buf[:k]
            n -= k
            if sink:
                sink(piece)
            else:
                out += piece
        return bytes(out)

    def read_response(self, method="GET", timeout=10.0, sink=None, keep_1xx=False):
        """Reads one response (skipping 1xx unless keep_1xx). sink(bytes)
        takes the body instead of Response.body."""
        deadline = time.monotonic() + timeout
        while True:
            r = Response()
            start = self._line(deadline, "a status line")
            parts = start.decode("latin-1").split(" ", 2)
            assert len(parts) >= 2 and parts[0].startswith("HTTP/1.") and parts[1].isdigit(), \
                "bad status line %r" % start
            r.version, r.status = parts[0], int(parts[1])
            r.reason = parts[2] if len(parts) > 2 else ""
            raw = [start]
            while True:
                line = self._line(deadline, "response headers")
                raw.append(line)
                if not line:
                    break
                k, sep, v = line.decode("latin-1").partition(":")
                assert sep, "bad response header line %r" % line
                r.headers.append((k, v.strip(" \t")))
            r.head_raw = b"\r\n".join(raw) + b"\r\n"
            if 100 <= r.status < 200 and r.status != 101 and not keep_1xx:
                continue
            break
        got = []
        def keep(b):
            got.append(b)
        take = sink or keep
        te = r.header("transfer-encoding")
        cl = r.header("content-length")
        if method == "HEAD" or r.status in (204, 304) or 100 <= r.status < 200:
            pass
        elif te is not None:
            assert te.lower() == "chunked", "response Transfer-Encoding %r" % te
            r.chunked = True
            while True:
                size_line = self._line(deadline, "a chunk size")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while self._line(deadline, "trailers"):
                        pass
                    break
                self._take(size, deadline, "chunk data", sink=lambda b: (take(b), None))
                r.body_len += size
                crlf = self._take(2, deadline, "chunk CRLF")
                assert crlf == b"\r\n", "chunk data not followed by CRLF: %r" % crlf
        elif cl is not None:
            n = int(cl)
            self._take(n, deadline, "a %d-byte body" % n, sink=take)
            r.body_len = n
        else:
            r.until_eof = True
            while True:
                if self.buf:
                    piece = bytes(self.buf)
                    self.buf.clear()
                    take(piece)
                    r.body_len += len(piece)
                try:
                    self._fill(deadline, "a body delimited by EOF")
                except AssertionError:
                    if self.eof:
                        break
                    raise
        if not sink:
            r.body = b"".join(got)
        return r

    def request(self, method="GET", target="/", headers=(("Host", "test.example"),), body=None,
                timeout=10.0, **kw):
        self.send(build_request(method, target, headers, body, **kw))
        return self.read_response(method, timeout)

    def wait_closed(self, timeout=5.0):
        """Asserts the peer closes (EOF or reset) within timeout with no more data."""
        if self.eof:
            assert not self.buf, "unexpected bytes before EOF: %r" % bytes(self.buf[:200])
            return "eof"
        kind, dt, data = wait_closed(self.sock, timeout)
        extra = bytes(self.buf) + data
        assert not extra, "unexpected bytes before close: %r" % extra[:200]
        return kind


def http_client(h, f, i=0, timeout=10.0):
    return HttpClient(h.track(f.connect(i, timeout)))


def get(h, f, target="/", headers=None, method="GET", body=None, timeout=10.0):
    """One request on a new connection; returns the Response."""
    c = http_client(h, f)
    hs = headers if headers is not None else [("Host", "test.example")]
    return c.request(method, target, hs, body, timeout=timeout)


# ---------------------------------------------------------------- runner


def main(namespace):
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferry", required=True)
    ap.add_argument("--upstream", default=None)
    ap.add_argument("test")
    args = ap.parse_args()
    fn = namespace.get("test_" + args.test)
    if fn is None:
        names = sorted(k[5:] for k in namespace if k.startswith("test_"))
        print("unknown test %r; have: %s" % (args.test, ", ".join(names)))
        sys.exit(2)
    if not os.access(args.ferry, os.X_OK):
        print("ferry binary %s is missing" % args.ferry)
        sys.exit(1)
    h = Harness(args.ferry, args.upstream, args.test)
    ok = False
    t0 = time.monotonic()
    try:
        fn(h)
        ok = True
    except Skip as e:
        h.cleanup(False, dump=False)
        print("SKIP: %s" % e)
        sys.exit(SKIP)
    except BaseException:
        traceback.print_exc()
    problems = h.cleanup(ok)
    for p in problems:
        print("FAIL at cleanup: " + p)
    if ok and not problems:
        print("PASS %s (%.1fs)" % (args.test, time.monotonic() - t0))
        sys.exit(0)
    print("FAIL %s (%.1fs)" % (args.test, time.monotonic() - t0))
    sys.exit(1)
