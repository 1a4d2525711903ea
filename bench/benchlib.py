"""Shared helpers for bench/run and bench/tcp_throughput (python3 stdlib only).

Builds ferry, installs packages, starts and stops processes (by PID only),
pins them to CPUs, and reads /proc for CPU time and RSS."""
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build-bench")
FERRY = os.path.join(BUILD, "ferry")
UPSTREAM = os.path.join(BUILD, "tests", "upstream", "ferry-upstream")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
BUILD_ARGS = "-DCMAKE_BUILD_TYPE=RelWithDebInfo '-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -g -DNDEBUG'"


def log(msg):
    print("[bench] " + msg, file=sys.stderr, flush=True)


def run_own_session(argv, **kw):
    """subprocess.run(argv).returncode, but in a session of its own: on Ctrl-C or
    SIGTERM (any exception while waiting) the whole process group it leads (a
    build's cmake, make and compilers) is stopped, by that child's PID as the
    group id, before the exception goes on."""
    p = subprocess.Popen(argv, start_new_session=True, **kw)
    try:
        return p.wait()
    except BaseException:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
            os.killpg(p.pid, signal.SIGKILL)  # whatever of the group is left
        except ProcessLookupError:
            pass
        p.wait()
        raise


def sh_lib(cmd, *args):
    """Runs `cmd` in bash, in the tree's root, with scripts/lib.sh sourced; $2... are args."""
    return run_own_session(["bash", "-c", 'source "$1/scripts/lib.sh" && ' + cmd, "bash", ROOT]
                           + list(args), cwd=ROOT)


def build():
    """ferry and ferry-upstream, RelWithDebInfo (-O2 -g), into build-bench/."""
    log("building ferry (RelWithDebInfo, -O2) in build-bench/")
    rc = sh_lib("ferry_build build-bench " + BUILD_ARGS + " -DFERRY_TESTS=ON >&2")
    if rc != 0:
        # the whole tree (tests included) may be mid-edit: the two binaries are enough
        log("full build failed; building only ferry and ferry-upstream")
        rc = run_own_session(["cmake", "--build", BUILD, "-j", str(os.cpu_count() or 1),
                              "--target", "ferry", "ferry-upstream"], stdout=sys.stderr)
    if rc != 0 or not os.path.exists(FERRY) or not os.path.exists(UPSTREAM):
        sys.exit("bench: build failed")


BASE_BUILD = os.path.join(ROOT, "build-bench-base")


def git(*args):
    r = subprocess.run(["git", "-C", ROOT] + list(args), capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def resolve_commit(ref):
    """The full commit id `ref` names in this repository; exits when none."""
    commit = git("rev-parse", "--verify", "--quiet", ref + "^{commit}")
    if not commit:
        sys.exit("bench: --baseline %s: not a commit of this repository" % ref)
    return commit


def build_baseline(ref, commit):
    """ferry as of `commit` (which `ref` names), built like build() (scripts/lib.sh's
    ferry_build, the same flags; tests off, which does not change how ferry is
    compiled) into build-bench-base/build/. Returns the path of the binary.

    The sources come from `git archive` (the commit as stored, nothing of the
    working tree) into build-bench-base/src/, removed once built; on a failed
    build, Ctrl-C or SIGTERM all of build-bench-base/ goes. A build of the same commit with the same
    flags (build-bench-base/stamp) is reused; any other commit is built from
    scratch, since archived files carry the commit's time, not an edit's."""
    bdir = os.path.join(BASE_BUILD, "build")
    binary = os.path.join(bdir, "ferry")
    stamp_path = os.path.join(BASE_BUILD, "stamp")
    stamp = commit + " " + BUILD_ARGS + "\n"
    try:
        with open(stamp_path) as f:
            if f.read() == stamp and os.path.exists(binary):
                log("baseline %s (%s): reusing build-bench-base/" % (ref, commit[:12]))
                return binary
    except OSError:
        pass
    log("building baseline %s (%s) in build-bench-base/" % (ref, commit[:12]))
    shutil.rmtree(BASE_BUILD, ignore_errors=True)
    src = os.path.join(BASE_BUILD, "src")
    os.makedirs(src)
    ok = False
    try:
        rc = run_own_session(["bash", "-c", 'set -o pipefail; git -C "$1" archive --format=tar "$2" '
                              '| tar -x -C "$3"', "bash", ROOT, commit, src])
        if rc == 0:
            # lib.sh's own FERRY_ROOT is this tree; its ferry_build builds the archive instead
            rc = sh_lib('FERRY_ROOT="$2" && ferry_build "$3" ' + BUILD_ARGS + " -DFERRY_TESTS=OFF >&2",
                        src, bdir)
        ok = rc == 0 and os.path.exists(binary)
        if ok:
            with open(stamp_path, "w") as f:
                f.write(stamp)
    finally:
        # the sources always go; a build that did not complete goes with them
        shutil.rmtree(src if ok else BASE_BUILD, ignore_errors=True)
    if not ok:
        sys.exit("bench: the baseline %s (%s) did not build" % (ref, commit[:12]))
    return binary


def ensure_packages(pkgs):
    """apt-get install (as root) the Debian packages that are missing."""
    missing = [p for p in pkgs if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True
    ).stdout.find("install ok installed") < 0]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit("bench: missing packages: %s\ninstall with: sudo apt-get install -y %s"
                 % (" ".join(missing), " ".join(missing)))
    log("installing " + " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], env=env, stdout=sys.stderr, check=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + missing,
                   env=env, stdout=sys.stderr, check=True)


def raise_nofile():
    """Soft RLIMIT_NOFILE up to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpus():
    """(client cpu, server cpu) or (None, None) when there are fewer than 2 CPUs."""
    avail = sorted(os.sched_getaffinity(0))
    if len(avail) < 2:
        log("fewer than 2 CPUs: no pinning")
        return None, None
    return avail[0], avail[1]


def pinned(argv, cpu):
    return (["taskset", "-c", str(cpu)] + argv) if cpu is not None else argv


class Procs:
    """Every process we start, stopped by PID (SIGTERM, then SIGKILL) at the end,
    also on Ctrl-C / SIGTERM. Children run in their own session so a Ctrl-C
    reaches only us and we stop them in order."""

    def __init__(self):
        self.procs = []
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_signal)

    def _on_signal(self, signum, frame):
        raise KeyboardInterrupt

    def start(self, name, argv, logdir, cpu=None):
        out = open(os.path.join(logdir, name + ".out"), "wb")
        err = open(os.path.join(logdir, name + ".err"), "wb")

        def pre():
            raise_nofile()
        p = subprocess.Popen(pinned(argv, cpu), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             start_new_session=True, preexec_fn=pre)
        out.close()
        err.close()
        p.bench_name = name
        self.procs.append(p)
        return p

    def stop(self, p, timeout=5.0):
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                log("%s (pid %d) ignored SIGTERM: SIGKILL" % (p.bench_name, p.pid))
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(reversed(self.procs)):
            self.stop(p)


def wait_port(port, proc=None, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_upstream(procs, logdir, cpu, name="bench", echo=False):
    """ferry-upstream on 127.0.0.1:0; returns (proc, port) from its first stdout line."""
    argv = [UPSTREAM, "--listen", "127.0.0.1:0", "--name", name]
    if echo:
        argv.append("--tcp-echo")
    p = procs.start("upstream-" + name + ("-echo" if echo else ""), argv, logdir, cpu)
    path = os.path.join(logdir, p.bench_name + ".out")
    end = time.time() + 10
    while time.time() < end:
        with open(path) as f:
            line = f.readline()
        if line.endswith("\n"):
            port = int(line.strip().rsplit(":", 1)[1])
            if wait_port(port, p):
                return p, port
        if p.poll() is not None:
            break
        time.sleep(0.05)
    sys.exit("bench: ferry-upstream did not start (see %s)" % path)


def tree(pid):
    """pid and all its descendants (nginx: master and workers)."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        x = todo.pop()
        out.append(x)
        todo.extend(kids.get(x, []))
    return out


def cpu_seconds(pid):
    """utime+stime of pid and its descendants, in seconds."""
    total = 0
    for x in tree(pid):
        try:
            with open("/proc/%d/stat" % x) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def rss_bytes(pid):
    """Resident set of pid and its descendants, in bytes (VmRSS)."""
    total = 0
    for x in tree(pid):
        try:
            with open("/proc/%d/status" % x) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def median_range(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return statistics.median(xs), min(xs), max(xs)


def which(cmd):
    return shutil.which(cmd) or shutil.which(cmd, path="/usr/sbin:/usr/bin:/sbin:/bin")
