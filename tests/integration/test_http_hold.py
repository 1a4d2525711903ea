#!/usr/bin/env python3
"""An app that restarts (issue 10; SPEC `[upstream] hold`, `resolve`; README
"When an app restarts"): idempotent requests without a body are held for up
to `hold` while every server refuses or is down, and served as soon as the
app is back; other requests get the error at once, naming the route and the
upstream and never the server address. A server given by name is re-resolved
at once after a connect failure, so an app that comes back on a new address
is followed without a reload, and a name missing at start comes up when it
resolves.

The name tests run ferry in a private mount namespace (`unshare -m`) with a
hosts file of the test's own bind-mounted over /etc/hosts (and a resolv.conf
pointing at nothing, so .test names never reach a real DNS server); they
skip (exit 77) with a message where that is not permitted."""
import os
import re
import shutil
import subprocess
import threading
import time

import harness
import opslib
from harness import Skip, free_port, get

ADDR_RE = re.compile(r"\d+\.\d+\.\d+\.\d+|:\d{2,5}\b|invalid|localhost|app\.test")


def check_error(r, status, cause, route, upstream):
    """A 5xx from ferry: text/plain, X-Request-Id, names route, upstream and
    cause, and shows no server address."""
    assert r.status == status, "want %d, got %r" % (status, r)
    ct = r.header("content-type") or ""
    assert ct.startswith("text/plain"), "%d Content-Type %r" % (status, ct)
    assert r.header("x-request-id"), "%d without X-Request-Id: %r" % (status, r.headers)
    text = r.body.decode("utf-8", "replace")
    want = "route %s, upstream %s:" % (route, upstream)
    assert want in text, "%d body %r lacks %r" % (status, text, want)
    assert re.search(cause, text, re.I), "%d body %r does not name the cause (/%s/)" % (
        status, text, cause)
    m = ADDR_RE.search(text)
    assert not m, "%d body %r shows a server address (%r)" % (status, text, m.group(0))


def timed(h, f, target="/", method="GET", body=None, timeout=10.0):
    """One request on a new connection: (Response, seconds)."""
    t0 = time.monotonic()
    r = get(h, f, target, [("Host", "app.example")], method=method, body=body, timeout=timeout)
    return r, time.monotonic() - t0


class Background:
    """A GET in a thread (it is held while the main thread acts)."""

    def __init__(self, h, f, target="/"):
        self.r = self.err = None
        self.t0 = time.monotonic()
        self.t1 = None

        def run():
            try:
                self.r = get(h, f, target, [("Host", "app.example")], timeout=15)
            except BaseException as e:  # reported by result()
                self.err = e
            self.t1 = time.monotonic()

        self.th = threading.Thread(target=run, daemon=True)
        self.th.start()

    def result(self, timeout=15):
        self.th.join(timeout)
        assert not self.th.is_alive(), "held GET still waiting after %.0fs" % timeout
        if self.err:
            raise AssertionError("held GET failed: %r" % (self.err,))
        return self.r, self.t1 - self.t0


def app(h, host, port, name):
    """ferry-upstream (http) on host:port; returns its Proc."""
    if not (h.upstream_bin and os.access(h.upstream_bin, os.X_OK)):
        raise Skip("ferry-upstream is not built: http tests need it")
    h.upstream(listen="%s:%d" % (host, port), name=name, mode=None)
    return h.procs[-1]


def served_by(r, name, what):
    assert r.status == 200, "%s: %r" % (what, r)
    got = r.json().get("server")
    assert got == name, "%s served by %r, want %r (the new process)" % (what, got, name)


def held(f, upstream, outcome):
    return opslib.metric(opslib.scrape(f), "ferry_requests_held_total",
                         upstream=upstream, outcome=outcome)


def wait_metric(f, name, want, timeout=3.0, **labels):
    """Polls until metric >= want; returns its value (maybe less, at timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        v = opslib.metric(opslib.scrape(f), name, **labels)
        if v >= want or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


def one_app(h, upstream_opts, port=None, name="a"):
    """App a on 127.0.0.1:port, ferry (admin on) in front of it with route
    api -> upstream app. Returns (ferry, port, app proc)."""
    port = port or free_port()
    p = app(h, "127.0.0.1", port, name)
    f = opslib.start(h, [("web", {"upstream": "app"})],
                     [("app", ["127.0.0.1:%d" % port], upstream_opts)],
                     routes=[("api", [("path_prefix", "/"), ("upstream", "app")])])
    r, _ = timed(h, f)
    served_by(r, name, "GET before the restart")
    return f, port, p


# ---------------------------------------------------------------- same port


def test_hold_restart_same_port(h):
    """Default hold (2s): the app stops and a new process starts on the same
    port 1s later. A GET sent in the gap is served by the new process; a POST
    in the gap gets 502 at once."""
    f, port, a = one_app(h, {})
    served0 = held(f, "app", "served")
    expired0 = held(f, "app", "expired")
    rc = a.stop(5)
    t_stop = time.monotonic()
    assert rc is not None, "app a did not stop on SIGTERM"
    time.sleep(0.2)  # the pooled connection to a is closed by now

    # not idempotent: the error at once, naming route and upstream, no address
    r, dt = timed(h, f, "/post", method="POST", body=b"x" * 10)
    check_error(r, 502, "connection refused", "api", "app")
    assert dt < 0.5, "POST while the app is down answered after %.2fs (want at once)" % dt

    bg = Background(h, f, "/held")
    time.sleep(0.4)
    # another POST while the GET is held: still at once (502, or 503 once the
    # failures of the held GET have marked the server down)
    r, dt = timed(h, f, "/post2", method="POST", body=b"y")
    assert r.status in (502, 503), "second POST while the app is down: %r" % r
    check_error(r, r.status, "connection refused|no server available", "api", "app")
    assert dt < 0.5, "second POST while a GET is held answered after %.2fs" % dt

    time.sleep(max(0.0, t_stop + 1.0 - time.monotonic()))
    app(h, "127.0.0.1", port, "b")
    t_up = time.monotonic()
    r, dt = bg.result()
    served_by(r, "b", "GET held while the app restarted")
    assert dt < 2.5, "held GET answered after %.2fs (hold = 2s)" % dt
    assert bg.t1 >= t_up - 0.3, "held GET answered before b was listening?"
    assert dt >= 0.4, "held GET answered after %.2fs: was it held at all?" % dt
    got = wait_metric(f, "ferry_requests_held_total", served0 + 1, upstream="app", outcome="served")
    assert got == served0 + 1, "ferry_requests_held_total{outcome=served}: %s -> %s, want +1" % (
        served0, got)
    assert held(f, "app", "expired") == expired0, "a held request expired"
    # and the next GET is served at once
    r, dt = timed(h, f)
    served_by(r, "b", "GET after the restart")
    assert dt < 0.5, "GET after the restart took %.2fs" % dt


def test_hold_zero(h):
    """hold = 0: a GET while the app is down gets 502 at once."""
    f, port, a = one_app(h, {"hold": "0"})
    a.stop(5)
    time.sleep(0.2)
    r, dt = timed(h, f, "/x")
    check_error(r, 502, "connection refused", "api", "app")
    assert dt < 0.5, "GET with hold = 0 answered after %.2fs (want at once)" % dt
    assert held(f, "app", "served") == 0 and held(f, "app", "expired") == 0, \
        "hold = 0 but ferry_requests_held_total moved"
    app(h, "127.0.0.1", port, "b")
    r, _ = timed(h, f)
    served_by(r, "b", "GET once the app is back")


def test_hold_expires(h):
    """hold = 1s and the app never comes back: 502 after about 1s, counted as
    expired; a server whose name does not resolve: 503 after hold."""
    port = free_port()
    a = app(h, "127.0.0.1", port, "a")
    f = opslib.start(h, [("web", {"upstream": "app"})],
                     [("app", ["127.0.0.1:%d" % port], {"hold": "1s"}),
                      ("ghost", ["nonexistent.invalid:80"], {"hold": "1s"})],
                     routes=[("api", [("path_prefix", "/app/"), ("upstream", "app")]),
                             ("gone", [("path_prefix", "/ghost/"), ("upstream", "ghost")])])
    r, _ = timed(h, f, "/app/")
    served_by(r, "a", "GET before the app stops")
    a.stop(5)
    time.sleep(0.2)

    r, dt = timed(h, f, "/app/x")
    check_error(r, 502, "connection refused", "api", "app")
    assert 0.8 <= dt <= 2.5, "held GET expired after %.2fs (hold = 1s)" % dt
    got = wait_metric(f, "ferry_requests_held_total", 1, upstream="app", outcome="expired")
    assert got == 1, "ferry_requests_held_total{upstream=app,outcome=expired} = %s, want 1" % got
    assert held(f, "app", "served") == 0, "held_total{outcome=served} moved"

    r, dt = timed(h, f, "/ghost/x")
    check_error(r, 503, "no server available", "gone", "ghost")
    assert 0.8 <= dt <= 2.5, "GET to an unresolvable server answered after %.2fs " \
        "(want 503 after hold = 1s)" % dt
    got = wait_metric(f, "ferry_requests_held_total", 1, upstream="ghost", outcome="expired")
    assert got == 1, "ferry_requests_held_total{upstream=ghost,outcome=expired} = %s, want 1" % got


# ---------------------------------------------------------------- names


def rewrite_in_place(path, text):
    """Rewrites a bind-mounted file keeping its inode (a new file would not be
    what the mount shows)."""
    ino = os.stat(path).st_ino
    with open(path, "r+") as fh:
        fh.seek(0)
        fh.truncate()
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    assert os.stat(path).st_ino == ino, "hosts file inode changed"


def hosts_text(*entries):
    return "127.0.0.1 localhost\n" + "".join("%s %s\n" % e for e in entries)


def require_namespace(h):
    """The unshare flags that give a private mount namespace in which a bind
    mount over /etc/hosts works: `-m` (root), else `-r -m` (a user namespace
    too, where unprivileged ones are allowed). Skips when neither does."""
    unshare = shutil.which("unshare")
    if not unshare:
        raise Skip("`unshare` (util-linux) not found: the name tests need a private mount "
                   "namespace to bind-mount a hosts file over /etc/hosts")
    probe_hosts = h.write("probe-hosts", "127.0.0.9 ferry-probe.test\n")
    why = []
    for flags in (["-m"], ["-r", "-m"]):
        try:
            p = subprocess.run([unshare] + flags + ["--propagation", "private", "sh", "-c",
                                'mount --bind "$1" /etc/hosts && cat /etc/hosts', "sh",
                                probe_hosts],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            why.append("unshare %s: %r" % (" ".join(flags), e))
            continue
        if p.returncode == 0 and b"ferry-probe.test" in p.stdout:
            return [unshare] + flags
        why.append("unshare %s ... mount --bind: exit %d: %s" % (
            " ".join(flags), p.returncode, p.stderr.decode("utf-8", "replace").strip()))
    raise Skip("a private mount namespace with a bind mount over /etc/hosts is not permitted "
               "here, so the name tests cannot run (%s)" % "; ".join(why))


def start_ns(h, unshare, hosts, upstream_opts, servers):
    """ferry (admin on) with upstream app (servers) behind route api, started
    through a wrapper: `unshare` (require_namespace's argv), bind-mount hosts
    over /etc/hosts and a resolver that answers nothing over /etc/resolv.conf
    (so .test names never reach a real DNS server), exec ferry: the PID is
    ferry's all along (unshare without --fork, and sh, exec)."""
    resolv = h.write("resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    inner = h.write("ns-inner.sh",
                    "#!/bin/sh\n"
                    "mount --bind %s /etc/hosts || exit 97\n"
                    "if [ -e /etc/resolv.conf ]; then mount --bind %s /etc/resolv.conf || exit 97; fi\n"
                    'exec "$@"\n' % (hosts, resolv))
    os.chmod(inner, 0o755)
    outer = h.write("ferry-ns.sh", '#!/bin/sh\nexec %s --propagation private %s %s "$@"\n' % (
        " ".join(unshare), inner, h.ferry_bin))
    os.chmod(outer, 0o755)
    real, h.ferry_bin = h.ferry_bin, outer
    try:
        return opslib.start(h, [("web", {"upstream": "app"})], [("app", servers, upstream_opts)],
                            routes=[("api", [("path_prefix", "/"), ("upstream", "app")])])
    finally:
        h.ferry_bin = real


def test_hold_name_moves(h):
    """app.test moves from 127.0.0.2 to 127.0.0.3 while the old process dies:
    a GET sent then is served by the new one, through the re-resolution that
    the refused connect triggers (resolve = 30s cannot explain it), without a
    reload."""
    unshare = require_namespace(h)
    port = free_port("127.0.0.2")
    hosts = h.write("hosts", hosts_text(("127.0.0.2", "app.test")))
    a = app(h, "127.0.0.2", port, "a")
    f = start_ns(h, unshare, hosts, {"resolve": "30s"}, ["app.test:%d" % port])
    for i in range(3):
        r, _ = timed(h, f, "/before-%d" % i)
        served_by(r, "a", "GET to app.test before the move")
    s0 = opslib.scrape(f)
    changed0 = opslib.metric(s0, "ferry_upstream_resolves_total", upstream="app", result="changed")

    a.stop(5)
    app(h, "127.0.0.3", port, "b")
    rewrite_in_place(hosts, hosts_text(("127.0.0.3", "app.test")))
    r, dt = timed(h, f, "/after-move")
    served_by(r, "b", "GET after app.test moved to 127.0.0.3")
    assert dt < 2.5, "GET after the move answered after %.2fs (hold = 2s)" % dt
    r, dt = timed(h, f, "/next")
    served_by(r, "b", "the next GET")
    assert dt < 0.5, "the next GET took %.2fs" % dt

    s1 = opslib.scrape(f)
    changed = opslib.metric(s1, "ferry_upstream_resolves_total", upstream="app", result="changed")
    assert changed >= changed0 + 1, \
        "ferry_upstream_resolves_total{upstream=app,result=changed}: %s -> %s" % (changed0, changed)
    reloads = opslib.metric(s1, "ferry_config_reloads_total", result="ok")
    assert reloads == 0, "ferry_config_reloads_total{result=ok} = %s: a reload happened" % reloads
    assert opslib.metric(s1, "ferry_requests_held_total", upstream="app", outcome="expired") == 0


def test_hold_name_missing_at_start(h):
    """app.test does not resolve at start: ferry starts anyway with a warning
    naming the server, answers 503 after hold, and serves as soon as the name
    resolves (resolve = 1s)."""
    unshare = require_namespace(h)
    port = free_port("127.0.0.2")
    hosts = h.write("hosts", hosts_text(("127.0.0.4", "other.test")))
    f = start_ns(h, unshare, hosts, {"resolve": "1s", "hold": "1s"}, ["app.test:%d" % port])
    assert f.alive(), "ferry exited (status %r) with a server name that does not resolve" % (
        f.popen.poll(),)
    r = opslib.admin_get(f, "/healthz")
    assert r.status == 200, "/healthz: %r" % r
    warn = [l for l in f.stderr().splitlines() if "app.test" in l]
    assert any("resolve" in l.lower() for l in warn), \
        "no warning naming app.test:%d and saying it does not resolve; stderr:\n%s" % (
            port, f.stderr()[-2000:])

    r, dt = timed(h, f, "/missing")
    check_error(r, 503, "no server available", "api", "app")
    assert 0.8 <= dt <= 2.5, "503 for an unresolved server after %.2fs (hold = 1s)" % dt

    app(h, "127.0.0.2", port, "a")
    rewrite_in_place(hosts, hosts_text(("127.0.0.4", "other.test"), ("127.0.0.2", "app.test")))
    t0 = time.monotonic()
    last = None
    while True:
        r, _ = timed(h, f, "/added")
        if r.status == 200:
            break
        last = r
        assert time.monotonic() - t0 < 3.5, \
            "app.test added to the hosts file 3.5s ago (resolve = 1s), still %r" % last
        time.sleep(0.1)
    served_by(r, "a", "GET once app.test resolves")
    print("served %.2fs after app.test was added" % (time.monotonic() - t0))
    changed = opslib.metric(opslib.scrape(f), "ferry_upstream_resolves_total",
                            upstream="app", result="changed")
    assert changed >= 1, "ferry_upstream_resolves_total{result=changed} = %s" % changed


def test_hold_limit(h):
    """At most 1024 requests wait out `hold` per worker: with that many held,
    the next GET gets 503 at once instead of joining them."""
    import resource
    import socket
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1200:
        print("SKIP: the open-file limit (%d) is too low for 1025 connections" % hard)
        raise SystemExit(77)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    f, port, a = one_app(h, {"hold": "4s"})
    a.stop(5)
    time.sleep(0.2)
    raw = b"GET /held HTTP/1.1\r\nHost: app.example\r\n\r\n"
    socks = []

    def bytes_in():
        return opslib.metric(opslib.scrape(f), "ferry_bytes_total", direction="in")
    try:
        in0 = bytes_in()
        for i in range(1024):
            s = harness.connect(f.addr, 5)
            s.sendall(raw)
            socks.append(s)
        # all held once ferry has read them all
        opslib.wait_for(lambda: bytes_in() >= in0 + 1024 * len(raw), 10,
                        "ferry reading the 1024 GETs to hold")
        r, dt = timed(h, f, "/one-too-many")
        check_error(r, 503, "too many requests waiting", "api", "app")
        # "at once" by ferry's own clock (the access log's rt): the client's
        # also counts the wait for ferry to accept, which the 1024 held
        # requests' retries slow down on a loaded machine (ASan: 0.55s seen)
        rts = []

        def logged():
            rts[:] = [float(m.group(1)) for m in re.finditer(
                r'"GET /one-too-many HTTP/1\.1" 503 .* rt=(\d+(?:\.\d+)?) ', f.stdout())]
            return rts
        opslib.wait_for(logged, 3, "the access log line of the 1025th GET")
        assert rts[0] < 0.5, "ferry answered the 1025th GET after %.2fs (want 503 at once)" % rts[0]
        assert dt < 2, "the 1025th GET waited %.2fs (want 503 at once, not after hold = 4s)" % dt
        for s in socks[:8]:  # the held ones are still waiting
            s.setblocking(False)
            try:
                got = s.recv(1)
            except BlockingIOError:
                got = None
            assert got is None, "a held request was answered early: %r" % got
    finally:
        for s in socks:
            s.close()


if __name__ == "__main__":
    harness.main(globals())
