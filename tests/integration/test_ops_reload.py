#!/usr/bin/env python3
"""Worker threads, SIGHUP reload and graceful stop with several workers."""
import os
import re
import signal
import socket
import time

import harness
import opslib
from harness import HttpClient, http_upstream
from opslib import get_once, metric, parallel, reload, scrape, server_of, start


def _listen_sockets(pid, port):
    """How many listening TCP sockets on port the process pid owns."""
    inodes = harness.socket_inodes(pid)
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            next(fh)
            for line in fh:
                p = line.split()
                if int(p[1].rsplit(":", 1)[1], 16) == port and p[3] == "0A" and p[9] in inodes:
                    n += 1
    return n


def _ctx_switches(pid):
    """{tid: voluntary context switches} for every thread of pid."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as fh:
                for line in fh:
                    if line.startswith("voluntary_ctxt_switches:"):
                        out[int(tid)] = int(line.split()[1])
        except OSError:
            pass
    return out


def test_workers_both_serve(h):
    """workers = 2: two SO_REUSEPORT listening sockets on the one port; 200
    concurrent connections all answered (the kernel spreads connections over
    both sockets by 4-tuple hash, so a worker that does not accept leaves
    about half of them hanging); and two threads other than the main one
    each woke up many times while serving them."""
    up = http_upstream(h)
    f = start(h, [("web", {"upstream": "app"})], [("app", [up], {})],
              global_opts={"workers": "2"}, admin=False)
    port = f.lports["web"]
    n = _listen_sockets(f.pid, port)
    assert n >= 2, "workers = 2: ferry owns %d listening socket(s) on port %d, want 2 " \
                   "(one per worker, SO_REUSEPORT)" % (n, port)
    # an idle baseline over a similar span: what the loops' own timers cost
    base0 = _ctx_switches(f.pid)
    time.sleep(0.5)
    base1 = _ctx_switches(f.pid)
    idle = max([base1[t] - base0.get(t, 0) for t in base1 if t != f.pid] + [0])
    before = _ctx_switches(f.pid)

    def one(i):
        r = get_once(f.addr, "/delay/100?i=%d" % i, timeout=15)
        return r.status

    t0 = time.monotonic()
    statuses = parallel(one, [(i,) for i in range(200)], workers=100)
    dt = time.monotonic() - t0
    bad = [s for s in statuses if s != 200]
    assert not bad, "%d of 200 concurrent requests failed: %r" % (len(bad), bad[:10])
    after = _ctx_switches(f.pid)
    busy = sorted((after[t] - before.get(t, 0), t) for t in after if t != f.pid)
    need = 2 * idle + 10
    served = [t for d, t in busy if d >= need]
    print("200 requests in %.2fs; wake-ups per non-main thread: %r (idle 0.5s: %d)" % (
        dt, busy, idle))
    assert len(served) >= 2, \
        "only %d worker thread(s) woke up >= %d times while serving 200 connections: %r" % (
            len(served), need, busy)


def _two_ups(h):
    return http_upstream(h, "a"), http_upstream(h, "b")


def test_reload_add_route(h):
    """SIGHUP with a new route: the new route answers; a keep-alive
    connection opened before the reload is not dropped."""
    a, b = _two_ups(h)
    ups = [("a", [a], {}), ("b", [b], {})]
    r1 = [("ra", [("path_prefix", "/a/"), ("upstream", "a")])]
    f = start(h, [("web", {})], ups, r1)
    c = HttpClient(h.connect(f.addr))
    r = c.request("GET", "/a/1")
    assert r.status == 200 and server_of(r) == "a", r
    r = get_once(f.addr, "/b/1")
    assert r.status == 404, "before reload /b/1: %r" % r
    reload(f, f.make(routes=r1 + [("rb", [("path_prefix", "/b/"), ("upstream", "b")])]))
    r = get_once(f.addr, "/b/1")
    assert r.status == 200 and server_of(r) == "b", "after reload, new route rb: %r" % r
    r = get_once(f.addr, "/a/2")
    assert r.status == 200 and server_of(r) == "a", "after reload, old route ra: %r" % r
    r = c.request("GET", "/b/2")
    assert r.status == 200, "keep-alive connection from before the reload: %r" % r
    st = opslib.status(f)
    assert sorted(x["name"] for x in st["routes"]) == ["ra", "rb"], st["routes"]


def test_reload_invalid(h):
    """An invalid file: errors logged with file:line, reloads_total{error}
    goes up by one, the old routes keep answering."""
    a, b = _two_ups(h)
    ups = [("a", [a], {}), ("b", [b], {})]
    r1 = [("ra", [("path_prefix", "/a/"), ("upstream", "a")])]
    f = start(h, [("web", {})], ups, r1)
    good = f.config_text
    bad = f.make(routes=[("ra", [("path_prefix", "/a/"), ("upstream", "b")]),
                         ("rb", [("path_prefix", "/b/"), ("upstream", "nosuch")])])
    bad += "\n[route rc]\nbogus_key = 1\nupstream = a\n"
    s0 = scrape(f)
    reload(f, bad, expect="error")
    s1 = scrape(f)
    assert metric(s1, "ferry_config_reloads_total", result="ok") == \
        metric(s0, "ferry_config_reloads_total", result="ok"), "an invalid reload counted as ok"
    err = f.stderr()
    base = os.path.basename(f.config_path)
    assert base in err and "nosuch" in err and "bogus_key" in err, \
        "reload errors not all logged with their file: %r" % err[-2000:]
    # like every other line of the error log: a time and a level first
    lines = [l for l in err.splitlines() if base + ":" in l and ("nosuch" in l or "bogus_key" in l)]
    assert len(lines) >= 2 and all(
        re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[error\] \S*%s:\d+: " % re.escape(base), l)
        for l in lines), "reload error lines without time and level: %r" % lines
    r = get_once(f.addr, "/a/1")
    assert r.status == 200 and server_of(r) == "a", "old route after invalid reload: %r" % r
    r = get_once(f.addr, "/b/1")
    assert r.status == 404, "route from the invalid file is live: %r" % r
    # the same file fixed: accepted
    reload(f, good + "\n[route rb]\npath_prefix = /b/\nupstream = b\n")
    r = get_once(f.addr, "/b/1")
    assert r.status == 200 and server_of(r) == "b", r


def test_reload_inflight(h):
    """A 5-second response in flight during a reload completes intact, from
    the upstream of the old config; new requests use the new one."""
    a, b = _two_ups(h)
    ups = [("a", [a], {"read_timeout": "20s"}), ("b", [b], {})]
    f = start(h, [("web", {"upstream": "a"})], ups)
    c = HttpClient(h.connect(f.addr))
    t0 = time.monotonic()
    c.send(harness.build_request("GET", "/delay/5000", [("Host", "slow.test")]))
    # the request must be on its way to a (old config) before the reload
    opslib.wait_for(lambda: opslib.metric_sum(scrape(f), "ferry_upstream_requests_total",
                                              upstream="a") >= 1,
                    harness.scaled(5), "the delayed request sent to upstream a")
    reload(f, f.make(listeners=[("web", {"upstream": "b"})]))
    r = get_once(f.addr, "/new")
    assert r.status == 200 and server_of(r) == "b", "new request after reload: %r" % r
    r = c.read_response(timeout=15)
    dt = time.monotonic() - t0
    assert r.status == 200, "in-flight response across the reload: %r" % r
    assert int(r.header("content-length")) == len(r.body) == r.body_len, r
    j = r.json()
    assert j["server"] == "a" and j["target"] == "/delay/5000", j
    assert dt >= 4.9, "the delayed response came after %.1fs" % dt
    r = c.request("GET", "/again")
    assert r.status == 200, "the connection after its in-flight request: %r" % r


def test_reload_listeners(h):
    """Reload adds a listener on a new port and removes another (connection
    refused after); the kept one still serves."""
    up = http_upstream(h)
    ups = [("app", [up], {})]
    ls = [("keep", {"upstream": "app"}), ("gone", {"upstream": "app"})]
    f = start(h, ls, ups, global_opts={"workers": "2"})
    gone = ("tcp", "127.0.0.1", f.lports["gone"])
    assert get_once(gone, "/g").status == 200
    reload(f, f.make(listeners=[("keep", {"upstream": "app"}), ("new", {"upstream": "app"})]))
    new = ("tcp", "127.0.0.1", f.lports["new"])
    opslib.wait_for(lambda: harness.is_listening(f.pid, new), 3, "new listener listening")
    r = get_once(new, "/n")
    assert r.status == 200, "new listener: %r" % r
    r = get_once(f.addr, "/k")
    assert r.status == 200, "kept listener: %r" % r

    def refused():
        try:
            s = harness.connect(gone, 1)
        except ConnectionRefusedError:
            return True
        s.close()
        return False
    opslib.wait_for(refused, 3, "connections to the removed listener refused")
    names = sorted(x["name"] for x in opslib.status(f)["listeners"])
    assert names == ["keep", "new"], names


def test_reload_removed_listener_conn(h):
    """SPEC: "established connections are not dropped" by a reload. A
    keep-alive connection accepted on a listener that the reload removes
    still gets an answer to its next request."""
    up = http_upstream(h)
    ups = [("app", [up], {})]
    f = start(h, [("keep", {"upstream": "app"}), ("gone", {"upstream": "app"})], ups)
    old = HttpClient(h.connect(("tcp", "127.0.0.1", f.lports["gone"])))
    assert old.request("GET", "/x").status == 200
    reload(f, f.make(listeners=[("keep", {"upstream": "app"})]))
    r = old.request("GET", "/still")
    assert r.status == 200, "keep-alive connection on the removed listener: %r" % r


def test_graceful_stop_workers(h):
    """workers = 2, SIGTERM with /delay requests in flight on several
    connections: no new connections, each in-flight request completes,
    exit 0."""
    up = http_upstream(h)
    f = start(h, [("web", {"upstream": "app"})], [("app", [up], {})],
              global_opts={"workers": "2", "shutdown_timeout": "10s"}, admin=False)
    clients = []
    for i in range(8):
        c = HttpClient(h.connect(f.addr))
        c.send(harness.build_request("GET", "/delay/1500?i=%d" % i, [("Host", "g.test")]))
        clients.append(c)
    # every request in flight (accepted, read, and at the upstream, which
    # delays its answer 1.5s from there) before the stop
    opslib.wait_upstream_requests(up, 8, harness.scaled(5), "the 8 /delay requests at the upstream")
    t0 = time.monotonic()
    f.signal(signal.SIGTERM)

    def refused():
        # A connection that races the stop can land in the accept queue of
        # a listening socket as it closes; the kernel resets those. Refused
        # or reset, it was not accepted.
        try:
            s = harness.connect(f.addr, 1)
        except (ConnectionRefusedError, ConnectionResetError, socket.timeout):
            return True
        s.close()
        return False
    opslib.wait_for(refused, 3.0, "new connections refused after SIGTERM")
    for i, c in enumerate(clients):
        r = c.read_response(timeout=10)
        assert r.status == 200 and r.json()["target"] == "/delay/1500?i=%d" % i, r
        assert "close" in (r.header("connection") or "").lower(), \
            "last response before stop lacks Connection: close: %r" % r.headers
    rc = f.wait(8)
    assert rc == 0, "ferry exit status %r after SIGTERM (want 0 once drained)" % rc
    assert time.monotonic() - t0 < 5, "drain took %.1fs" % (time.monotonic() - t0)
    harness.assert_sanitizer_clean(f)


harness.main(globals())
