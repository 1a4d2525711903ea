#!/usr/bin/env python3
"""Health: active http checks take a stopped server out within 3 s and bring
it back when it returns; passive max_fails/fail_timeout skips a dead server."""
import time

import harness
from harness import http_upstream
from opslib import (addr_text, counts, get_once, metric, scrape, server_of, server_up, start,
                    status, upstream_proc, wait_for)


def test_active_check(h):
    """health_check = http:/status/200 every 500ms (rise/fall 2), workers =
    2. Stopping server a: ferry_upstream_server_up{a} drops to 0 within 3 s
    with no client traffic at all (so the active check found it), /status
    says down, and then every request goes to b with no error. a restarted
    on its port: up again within 3 s and back in rotation."""
    (a, aproc), b = upstream_proc(h, name="a"), http_upstream(h, "b")
    f = start(h, [("web", {"upstream": "app"})],
              [("app", [a, b], {"health_check": "http:/status/200", "health_interval": "500ms",
                                "max_fails": "100"})],
              global_opts={"workers": "2"})
    sa = addr_text(a)
    wait_for(lambda: server_up(f, "app", sa) == 1, 3, "server a up at start")
    got = counts(server_of(get_once(f.addr, "/x%d" % i)) for i in range(10))
    assert got == {"a": 5, "b": 5} or (set(got) == {"a", "b"}), "both up: %r" % got
    aproc.stop(5)
    t0 = time.monotonic()
    dt = wait_for(lambda: server_up(f, "app", sa) == 0, 3.0,
                  "ferry_upstream_server_up{server=a} going 0 after a stopped")
    print("a marked down %.2fs after it stopped" % dt)
    st = status(f)
    state = {s["address"]: s["state"] for s in st["upstreams"][0]["servers"]}
    assert state == {sa: "down", addr_text(b): "up"}, "/status after a stopped: %r" % state
    errs0 = scrape(f)
    for i in range(20):
        r = get_once(f.addr, "/y%d" % i)
        assert r.status == 200 and server_of(r) == "b", "a down, request %d: %r" % (i, r)
    refused = metric(scrape(f), "ferry_upstream_connect_errors_total", upstream="app",
                     reason="refused") - metric(errs0, "ferry_upstream_connect_errors_total",
                                                upstream="app", reason="refused")
    assert refused == 0, "ferry still tried the down server %d times" % refused
    upstream_proc(h, listen=sa, name="a")
    dt = wait_for(lambda: server_up(f, "app", sa) == 1, 3.0, "server a back up after restart")
    print("a back up %.2fs after it restarted" % dt)
    got = counts(server_of(get_once(f.addr, "/z%d" % i)) for i in range(20))
    assert got.get("a", 0) >= 5, "a back up but got %r" % got


def test_active_check_http_status(h):
    """An http check fails on a non-2xx/3xx answer even though TCP connects:
    a server whose check path answers 503 is down; one answering 200 is up."""
    a, b = http_upstream(h, "a"), http_upstream(h, "b")
    f = start(h, [("web", {"upstream": "good"})],
              [("good", [a], {"health_check": "http:/status/204", "health_interval": "300ms"}),
               ("bad", [b], {"health_check": "http:/status/503", "health_interval": "300ms"})])
    wait_for(lambda: server_up(f, "bad", addr_text(b)) == 0, 3, "bad check: server down")
    wait_for(lambda: server_up(f, "good", addr_text(a)) == 1, 3, "good check: server up")
    time.sleep(1)
    assert server_up(f, "good", addr_text(a)) == 1, "204 check flapped down"


def test_passive(h):
    """max_fails = 1, fail_timeout = 2s, a dead server and a live one
    (workers = 2, one request per new connection, so both workers serve):
    after the first refused connection the dead server is skipped by every
    worker (exactly one connect error over 20 requests, all answered 200);
    after fail_timeout it is tried again (one more error)."""
    live = http_upstream(h, "live")
    dead = ("tcp", "127.0.0.1", harness.free_port())
    f = start(h, [("web", {"upstream": "app"})],
              [("app", [dead, live], {"max_fails": "1", "fail_timeout": "2s", "retries": "1"})],
              global_opts={"workers": "2"})

    def errors():
        return metric(scrape(f), "ferry_upstream_connect_errors_total", upstream="app",
                      reason="refused")
    for i in range(20):
        r = get_once(f.addr, "/p%d" % i)
        assert r.status == 200 and server_of(r) == "live", "request %d: %r" % (i, r)
    assert errors() == 1, "connect errors to the dead server over 20 requests: %r (want 1)" % errors()
    assert server_up(f, "app", addr_text(dead)) == 0, "dead server not reported down"
    time.sleep(2.3)
    assert server_up(f, "app", addr_text(dead)) == 1, "still down after fail_timeout"
    for i in range(10):
        r = get_once(f.addr, "/q%d" % i)
        assert r.status == 200 and server_of(r) == "live", r
    assert errors() == 2, "after fail_timeout: %r connect errors (want 2)" % errors()


harness.main(globals())
