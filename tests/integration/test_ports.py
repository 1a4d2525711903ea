"""Ephemeral port economy (issue 8): `[upstream] source`, the addrnotavail
counter and the port metrics. ctest entries ports_NAME.

Each test runs ferry, an echo upstream and the client in a network namespace
of their own (`ip netns add`, loopback up), where the ephemeral port range is
narrowed to 100 ports (`net.ipv4.ip_local_port_range = 40000 40099`, a
per-namespace sysctl) and `net.ipv4.tcp_tw_reuse = 0` (the default, 2, lets
connects on loopback reuse TIME_WAIT ports after 1 s, which the real network
does not get). The echo upstream listens on 127.0.0.1:5000, ferry on
127.0.0.1:6000 (tcp mode) with its admin endpoint on 127.0.0.1:9000: all
outside the range. A conversation: the client connects, sends one byte, reads
the echo and closes. The client closes first; ferry passes its FIN on as a
shutdown of the upstream's write side, the echo server then closes, so ferry
sent the first FIN on its outbound socket and that socket's port stays in
TIME_WAIT for 60 s (the tests check this with `ss`). So 100 conversations
through one source address use up the range. The client binds its own
connections to 127.0.1.1-127.0.1.20 so its TIME_WAIT (it closed first too)
does not run out of ports before ferry's.

  one_source      source = 127.0.0.2: of 150 conversations exactly 100 succeed;
                  the other 50 are closed by ferry and each is counted in
                  ferry_upstream_connect_errors_total{reason="addrnotavail"};
                  the server is not marked down; the TIME_WAIT entries are
                  ferry's (127.0.0.2:* -> 127.0.0.1:5000), none the upstream's;
                  the next 5 s sample shows ferry_ephemeral_ports_in_use
                  {source="127.0.0.2"} 100 and ferry_ephemeral_ports_available 0,
                  and the error log warns. Recovery: TIME_WAIT lasts a fixed 60 s
                  in Linux, too long for a test, so the test ends it early with
                  `ss -K state time-wait` (sock_diag destroy) as the clock would;
                  if the kernel cannot, it sets tcp_tw_reuse = 1 in the namespace
                  instead. Either way the same ferry, untouched, serves new
                  conversations at once and its next sample shows the ports back.
  two_sources     source = 127.0.0.2 127.0.0.3: the same 150 conversations all
                  succeed, no addrnotavail, about 75 TIME_WAIT ports per address,
                  and the sample shows both addresses.
  source_fallback source = 127.0.0.2 127.0.0.3 with 127.0.0.2's range already used
                  up by someone else (100 direct conversations to the upstream
                  from 127.0.0.2): 80 conversations through ferry all succeed,
                  each after an EADDRNOTAVAIL on 127.0.0.2 that is counted.

Needs root (network namespaces) and iproute2; skips (77) otherwise.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Skip  # noqa: E402

RANGE = (40000, 40099)
UP_PORT, FERRY_PORT, ADMIN_PORT = 5000, 6000, 9000
CLIENT_SOURCES = ["127.0.1.%d" % i for i in range(1, 21)]

# Runs inside the namespace: `client.py JSON`, prints one JSON answer.
CLIENT_PY = r'''
import json, socket, sys, urllib.request
IP_BIND_ADDRESS_NO_PORT = 24
req = json.loads(sys.argv[1])
if req["cmd"] == "get":
    try:
        with urllib.request.urlopen(req["url"], timeout=5) as r:
            print(json.dumps({"status": r.status, "body": r.read().decode()}))
    except Exception as e:
        print(json.dumps({"status": 0, "body": repr(e)}))
    sys.exit(0)
# "conv": n conversations (connect, one byte, read the echo, close), in turn
# from the given source addresses.
ok, kinds = 0, {}
for i in range(req["n"]):
    s = socket.socket()
    kind = None
    try:
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((req["sources"][i % len(req["sources"])], 0))
        s.settimeout(5)
        try:
            s.connect(tuple(req["target"]))
        except OSError as e:
            kind = "connect:" + (e.strerror or repr(e))
        else:
            s.sendall(b"x")
            d = s.recv(1)
            kind = "ok" if d == b"x" else "eof" if not d else "bad"
    except socket.timeout:
        kind = "timeout"
    except ConnectionResetError:
        kind = "reset"
    except OSError as e:
        kind = "error:" + (e.strerror or repr(e))
    s.close()
    ok += kind == "ok"
    kinds[kind] = kinds.get(kind, 0) + 1
print(json.dumps({"ok": ok, "fail": req["n"] - ok, "kinds": kinds}))
'''


def sh(*argv, check=True):
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise AssertionError("%s: exit %d: %s" % (" ".join(argv), p.returncode, p.stderr.strip()))
    return p


def listening(pid, port):
    """Process pid (in any namespace) owns a listening socket on port."""
    inodes = harness.socket_inodes(pid)
    try:
        with open("/proc/%d/net/tcp" % pid) as f:
            next(f)
            for line in f:
                parts = line.split()
                if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] == "0A" \
                        and parts[9] in inodes:
                    return True
    except OSError:
        pass
    return False


class Netns:
    """A network namespace with loopback up and a 100-port range; the
    processes started in it; removed (processes first, by PID) at the end."""

    def __init__(self, h):
        if os.geteuid() != 0:
            raise Skip("needs root for network namespaces (ip netns), running as uid %d"
                       % os.geteuid())
        if not shutil.which("ip") or not shutil.which("ss"):
            raise Skip("iproute2's `ip` and `ss` are needed (apt-get install iproute2)")
        self.h = h
        self.name = "ferryports%d" % os.getpid()
        self.procs = []
        self.client_py = h.write("client.py", CLIENT_PY)
        p = sh("ip", "netns", "add", self.name, check=False)
        if p.returncode != 0:
            raise Skip("cannot create a network namespace here (`ip netns add %s`: %s); "
                       "this test needs CAP_SYS_ADMIN/CAP_NET_ADMIN" % (self.name, p.stderr.strip()))
        try:
            sh("ip", "-n", self.name, "link", "set", "lo", "up")
            self.sysctl("net.ipv4.ip_local_port_range=%d %d" % RANGE)
            self.sysctl("net.ipv4.tcp_tw_reuse=0")
            got = self.run("sysctl", "-n", "net.ipv4.ip_local_port_range").stdout.split()
            assert got == [str(RANGE[0]), str(RANGE[1])], "port range in the namespace: %r" % got
            # 127.0.0.0/8 is on lo: 127.0.0.2, .3 and the client's 127.0.1.x
            # are local addresses once lo is up.
            for a in ("127.0.0.2", "127.0.0.3", CLIENT_SOURCES[0], CLIENT_SOURCES[-1]):
                r = self.run("ip", "route", "get", a).stdout
                assert r.startswith("local %s dev lo" % a), "%s in the namespace: %r" % (a, r)
        except BaseException:
            self.teardown()
            raise

    def run(self, *argv, check=True):
        return sh("ip", "netns", "exec", self.name, *argv, check=check)

    def sysctl(self, setting):
        self.run("sysctl", "-q", "-w", setting)

    def upstream(self):
        if self.h.upstream_bin and os.access(self.h.upstream_bin, os.X_OK):
            argv = [self.h.upstream_bin]
        else:
            argv = [sys.executable, os.path.join(harness.HERE, "echo_server.py")]
        argv = ["ip", "netns", "exec", self.name] + argv + [
            "--listen", "127.0.0.1:%d" % UP_PORT, "--tcp-echo", "--name", "echo"]
        p = harness.Proc("upstream-echo", argv, self.h.tmp)
        self.h.procs.append(p)
        self.wait_listening(p, [UP_PORT], "upstream")
        return p

    def ferry(self, sources):
        text = harness.tcp_config(
            ("tcp", "127.0.0.1", FERRY_PORT), [("tcp", "127.0.0.1", UP_PORT)],
            upstream_opts={"source": " ".join(sources)},
            global_opts={"workers": "1", "access_log": "off",
                         "admin": "127.0.0.1:%d" % ADMIN_PORT})
        cfg = self.h.write("ferry.ini", text)
        argv = ["ip", "netns", "exec", self.name, self.h.ferry_bin, "-c", cfg]
        # `ip netns exec` execs ferry: the PID is ferry's, SIGTERM reaches it.
        f = harness.Ferry(self.h, "ferry", argv, cfg, text, [], None, None)
        self.h.ferries.append(f)
        self.wait_listening(f, [FERRY_PORT, ADMIN_PORT], "ferry")
        return f

    def wait_listening(self, p, ports, what):
        deadline = time.monotonic() + 15
        while not all(listening(p.pid, port) for port in ports):
            if not p.alive():
                raise AssertionError("%s exited (%s): %s" % (what, p.popen.returncode, p.stderr()))
            assert time.monotonic() < deadline, "%s not listening on %s after 15s" % (what, ports)
            time.sleep(0.02)

    def client(self, req, timeout=60):
        p = self.run(sys.executable, "-B", self.client_py, json.dumps(req))
        return json.loads(p.stdout)

    def conversations(self, n, sources=CLIENT_SOURCES, port=FERRY_PORT):
        t0 = time.monotonic()
        r = self.client({"cmd": "conv", "n": n, "sources": sources, "target": ["127.0.0.1", port]})
        print("%d conversations to :%d in %.2fs: %d ok, kinds %s" %
              (n, port, time.monotonic() - t0, r["ok"], r["kinds"]))
        return r

    def metrics(self):
        r = self.client({"cmd": "get", "url": "http://127.0.0.1:%d/metrics" % ADMIN_PORT})
        assert r["status"] == 200, "GET /metrics: %r" % r
        return r["body"]

    def time_wait(self):
        """{"ferry": {source: n}, "upstream": n, "client": n, "ferry_client_side": n}:
        TIME_WAIT entries by which side holds them."""
        out = self.run("ss", "-Htan", "state", "time-wait").stdout
        c = {"ferry": {}, "upstream": 0, "client": 0, "ferry_client_side": 0}
        for line in out.splitlines():
            parts = line.split()
            local, peer = parts[-2], parts[-1]
            lhost, lport = local.rsplit(":", 1)
            phost, pport = peer.rsplit(":", 1)
            if pport == str(UP_PORT):
                c["ferry"][lhost] = c["ferry"].get(lhost, 0) + 1
            elif lport == str(UP_PORT):
                c["upstream"] += 1
            elif pport == str(FERRY_PORT):
                c["client"] += 1
            elif lport == str(FERRY_PORT):
                c["ferry_client_side"] += 1
        return c

    def teardown(self):
        for f in self.h.ferries:
            if f.alive():
                f.kill()
        for p in self.h.procs:
            p.stop(5)
        sh("ip", "netns", "del", self.name, check=False)


def metric(text, name, labels=None):
    """Value of one sample (labels: a dict that must match exactly), or None."""
    for line in text.splitlines():
        m = re.match(r"^%s(\{([^}]*)\})? (\S+)$" % re.escape(name), line)
        if not m:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if labels is None or got == labels:
            return float(m.group(3))
    return None


def addrnotavail(text):
    v = metric(text, "ferry_upstream_connect_errors_total", {"upstream": "u", "reason": "addrnotavail"})
    assert v is not None, "no ferry_upstream_connect_errors_total{reason=addrnotavail}:\n" + text
    return v


def wait_sample(ns, ok, what, timeout=8.0):
    """Polls /metrics until ok(text) (the port sample is taken every 5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        text = ns.metrics()
        if ok(text):
            return text
        if time.monotonic() > deadline:
            lines = [line for line in text.splitlines() if line.startswith("ferry_ephemeral")]
            raise AssertionError("%s: not seen within %.0fs; port metrics now:\n%s" %
                                 (what, timeout, "\n".join(lines)))
        time.sleep(0.5)


def wait_ports(ns, in_use_want, available_want, what):
    """Waits for a port sample with ferry_ephemeral_ports_in_use{source} as in
    IN_USE_WANT ({source: count}) and _available == AVAILABLE_WANT; prints it."""
    def ok(t):
        return available(t) == available_want and \
            all(in_use(t, s) == n for s, n in in_use_want.items())
    text = wait_sample(ns, ok, "%s: in_use %r, available %d" % (what, in_use_want, available_want))
    print("%s: in_use %r, available %r" % (what, {s: in_use(text, s) for s in in_use_want},
                                           available(text)))
    return text


def in_use(text, source):
    return metric(text, "ferry_ephemeral_ports_in_use", {"source": source})


def available(text):
    return metric(text, "ferry_ephemeral_ports_available")


# ---------------------------------------------------------------- tests


def test_one_source(h):
    ns = Netns(h)
    try:
        ns.upstream()
        f = ns.ferry(["127.0.0.2"])
        r = ns.conversations(150)
        assert r["ok"] == 100 and r["fail"] == 50, \
            "one source, 100 ports, 150 conversations: want 100 ok, 50 failed; got %r" % r
        assert set(r["kinds"]) <= {"ok", "eof", "reset"}, \
            "failed conversations should be closed by ferry: %r" % r["kinds"]
        text = ns.metrics()
        n = addrnotavail(text)
        assert n == 50, "addrnotavail counted %r times, want 50 (one per failed conversation)" % n
        up = metric(text, "ferry_upstream_server_up", {"upstream": "u", "server": "127.0.0.1:%d" % UP_PORT,
                                                     "address": "127.0.0.1:%d" % UP_PORT})
        assert up == 1, "ferry's own port shortage marked the server down (server_up %r)" % up
        tw = ns.time_wait()
        print("TIME_WAIT by side: %r" % tw)
        assert tw["ferry"].get("127.0.0.2", 0) == 100 and tw["upstream"] == 0, \
            "want the 100 TIME_WAIT entries on ferry's side (127.0.0.2:* -> :%d), none on the " \
            "upstream's: %r" % (UP_PORT, tw)

        wait_ports(ns, {"127.0.0.2": 100}, 0, "sample")
        deadline = time.monotonic() + 3
        while "ephemeral ports: only 0 of 100 left" not in f.stderr():
            assert time.monotonic() < deadline, "no low-ports warning in the error log:\n" + f.stderr()[-3000:]
            time.sleep(0.1)

        # Recovery. The load has stopped; TIME_WAIT would end after 60 s.
        ns.run("ss", "-K", "-tan", "state", "time-wait", "dst", "127.0.0.1:%d" % UP_PORT, check=False)
        left = sum(ns.time_wait()["ferry"].values())
        killed = left == 0
        if not killed:
            print("ss -K cannot end TIME_WAIT here (%d left): tcp_tw_reuse = 1 instead" % left)
            ns.sysctl("net.ipv4.tcp_tw_reuse=1")
            time.sleep(1.2)  # tw_reuse takes a TIME_WAIT port after 1 s
        else:
            print("ss -K ended ferry's TIME_WAIT entries (the 60 s expiry, early)")
        r = ns.conversations(20)
        assert r["ok"] == 20, "after the ports came back, new conversations failed: %r" % r
        n2 = addrnotavail(ns.metrics())
        assert n2 == n, "addrnotavail grew after recovery: %r -> %r" % (n, n2)
        if killed:
            wait_ports(ns, {"127.0.0.2": 20}, 80, "sample after recovery")
        h.ferry_stop_clean(f)
    finally:
        ns.teardown()


def test_two_sources(h):
    ns = Netns(h)
    try:
        ns.upstream()
        f = ns.ferry(["127.0.0.2", "127.0.0.3"])
        r = ns.conversations(150)
        assert r["ok"] == 150, "two sources (200 ports), 150 conversations: %r" % r
        text = ns.metrics()
        assert addrnotavail(text) == 0, "addrnotavail with ports to spare: %r" % addrnotavail(text)
        tw = ns.time_wait()
        print("TIME_WAIT by side: %r" % tw)
        assert tw["ferry"] == {"127.0.0.2": 75, "127.0.0.3": 75} and tw["upstream"] == 0, \
            "want 75 TIME_WAIT entries per source address on ferry's side: %r" % tw
        wait_ports(ns, {"127.0.0.2": 75, "127.0.0.3": 75}, 50, "sample")
        assert "ephemeral ports: only" not in f.stderr(), "warned with 25% of the ports left"
        h.ferry_stop_clean(f)
    finally:
        ns.teardown()


def test_source_fallback(h):
    ns = Netns(h)
    try:
        ns.upstream()
        # Someone else uses up 127.0.0.2's range towards the upstream.
        r = ns.conversations(100, sources=["127.0.0.2"], port=UP_PORT)
        assert r["ok"] == 100, r
        assert ns.time_wait()["ferry"] == {"127.0.0.2": 100}
        f = ns.ferry(["127.0.0.2", "127.0.0.3"])
        r = ns.conversations(80)
        assert r["ok"] == 80, "127.0.0.3 had ports left, yet conversations failed: %r" % r
        n = addrnotavail(ns.metrics())
        # workers = 1: sources are used in turn, and each conversation's turn
        # lands on 127.0.0.2 first (the failed try moved the turn on by one).
        assert 40 <= n <= 80, "addrnotavail %r, want one per try on the full 127.0.0.2 (40-80)" % n
        tw = ns.time_wait()
        print("addrnotavail %d; TIME_WAIT by side: %r" % (n, tw))
        assert tw["ferry"] == {"127.0.0.2": 100, "127.0.0.3": 80}, tw
        h.ferry_stop_clean(f)
    finally:
        ns.teardown()


if __name__ == "__main__":
    harness.main(globals())
