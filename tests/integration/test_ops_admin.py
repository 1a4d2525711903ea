#!/usr/bin/env python3
"""The admin endpoint: /healthz, /metrics (parsed, and counting exactly what
the test sent), /status against the config."""
import os
import re
import signal

import harness
from harness import build_request, http_upstream
from opslib import (addr_text, admin_get, get_once, wait_for, metric, metric_sum, parse_prometheus, request_raw,
                    scrape, start, status)


def test_healthz(h):
    up = http_upstream(h)
    f = start(h, [("web", {"upstream": "app"})], [("app", [up], {})])
    r = admin_get(f, "/healthz")
    assert r.status == 200 and r.body.strip() == b"ok", "/healthz: %r" % r
    # every response ferry makes itself carries Date (RFC 9110 6.6.1)
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", r.header("date") or ""), \
        "/healthz Date %r" % r.header("date")
    r = admin_get(f, "/nope")
    assert r.status == 404, "admin /nope: %r" % r


def test_healthcheck_cli(h):
    """ferry --healthcheck -c FILE (the image's HEALTHCHECK: no shell, no
    curl in it) exits 0 while the admin endpoint of FILE answers /healthz,
    1 with a reason once ferry is gone."""
    up = http_upstream(h)
    f = start(h, [("web", {"upstream": "app"})], [("app", [up], {})])
    rc, out, err = h.run_ferry(["--healthcheck", "-c", f.config_path])
    assert rc == 0, "--healthcheck with ferry up: rc %r, stderr %r" % (rc, err)
    h.ferry_stop_clean(f)
    rc, out, err = h.run_ferry(["--healthcheck", "-c", f.config_path])
    assert rc == 1 and "healthcheck" in err, "--healthcheck with ferry down: rc %r, %r" % (rc, err)


def test_metrics_counts(h):
    """workers = 2; requests on new connections (Connection: close), some on
    route "st", some on no route (the listener's default upstream: route
    "-"): ferry_requests_total, the duration histogram, connections_total,
    bytes in/out and upstream_requests_total equal what the test sent and
    read, exactly. Admin requests are not counted."""
    up = http_upstream(h)
    f = start(h, [("web", {"upstream": "app"})], [("app", [up], {})],
              routes=[("st", [("path_prefix", "/status/"), ("upstream", "app")])],
              global_opts={"workers": "2"})
    s0 = scrape(f)
    assert metric_sum(s0, "ferry_requests_total") == 0, "requests counted before any: %r" % s0
    sent = recv = 0
    plan = [("/status/200", 13), ("/status/404", 4), ("/other?x=1", 7)]
    for target, n in plan:
        for i in range(n):
            raw = build_request("GET", target, [("Host", "m.test"), ("Connection", "close"),
                                                ("X-Pad", "p" * i)])
            resp = request_raw(f.addr, raw)
            sent += len(raw)
            recv += len(resp)
            code = int(resp.split(b" ", 2)[1])
            assert code == int(target[8:11]) if target.startswith("/status/") else code == 200, \
                "%s: %r" % (target, resp[:200])
    admin_get(f, "/status")
    admin_get(f, "/healthz")
    s = scrape(f)
    want = {("st", "200"): 13, ("st", "404"): 4, ("-", "200"): 7}
    got = {(dict(lab)["route"], dict(lab)["code"]): v for (n, lab), v in s.items()
           if n == "ferry_requests_total"}
    assert got == want, "ferry_requests_total %r, want %r" % (got, want)
    for route, n in (("st", 17), ("-", 7)):
        c = metric(s, "ferry_request_duration_seconds_count", None, route=route)
        assert c == n, "ferry_request_duration_seconds_count{route=%r} = %r, want %d" % (route, c, n)
        inf = metric(s, "ferry_request_duration_seconds_bucket", None, route=route, le="+Inf")
        assert inf == n, "duration +Inf bucket for %r = %r" % (route, inf)
    assert metric(s, "ferry_connections_total", None, listener="web") == 24, \
        "ferry_connections_total{listener=web} = %r, want 24" % metric(
            s, "ferry_connections_total", None, listener="web")
    # closed connections leave the gauge once ferry has processed the close,
    # which can come just after the client saw the end of its response
    wait_for(lambda: metric(scrape(f), "ferry_connections_active", None, listener="web") in (0, 0.0),
             2, "ferry_connections_active{listener=web} back to 0 after all closed")
    bin_, bout = metric(s, "ferry_bytes_total", None, direction="in"), \
        metric(s, "ferry_bytes_total", None, direction="out")
    assert bin_ == sent, "ferry_bytes_total{in} = %r, test sent %d" % (bin_, sent)
    assert bout == recv, "ferry_bytes_total{out} = %r, test received %d" % (bout, recv)
    server = addr_text(up)
    ur = metric(s, "ferry_upstream_requests_total", None, upstream="app", server=server,
                address=server)
    assert ur == 24, "ferry_upstream_requests_total{app,%s} = %r, want 24" % (server, ur)
    opened = metric(s, "ferry_upstream_connections_opened_total", None, upstream="app", server=server,
                address=server)
    assert opened is not None and 1 <= opened <= 24, "upstream connections opened %r" % opened
    assert metric(s, "ferry_upstream_server_up", None, upstream="app", server=server,
                address=server) == 1
    for result in ("ok", "error"):
        assert metric(s, "ferry_config_reloads_total", None, result=result) == 0, result


def test_metrics_spec_names(h):
    """Every metric SPEC's "Admin endpoint" lists is exposed (a tcp and an
    http listener, one connection through each)."""
    up, hup = h.upstream(name="e"), http_upstream(h)
    f = start(h, [("raw", {"mode": "tcp", "upstream": "app"}), ("web", {"upstream": "h"})],
              [("app", [up], {}), ("h", [hup], {})])
    s = harness.connect(f.addr)
    harness.echo_check(s)
    s.close()
    assert get_once(("tcp", "127.0.0.1", f.lports["web"]), "/").status == 200
    # a request is counted when its exchange ends, just after the client has
    # the last byte of its response: wait for that rather than race it
    wait_for(lambda: "ferry_requests_total" in {n for n, _ in scrape(f)}, 2,
             "ferry_requests_total sampled after one request")
    s = scrape(f)
    names = {n for n, _ in s}
    families = {
        "ferry_connections_active": "gauge", "ferry_connections_total": "counter",
        "ferry_requests_total": "counter", "ferry_request_duration_seconds": "histogram",
        "ferry_upstream_connections_opened_total": "counter",
        "ferry_upstream_requests_total": "counter", "ferry_upstream_server_up": "gauge",
        "ferry_bytes_total": "counter", "ferry_config_reloads_total": "counter",
        "ferry_upstream_connect_errors_total": "counter",
        "ferry_ephemeral_ports_in_use": "gauge", "ferry_ephemeral_ports_available": "gauge"}
    wrong = ["%s (%s)" % (m, s.types.get(m, "missing")) for m, t in families.items()
             if s.types.get(m) != t]
    assert not wrong, "metric families SPEC lists, missing or mistyped: %s" % ", ".join(wrong)
    # after traffic through both listeners these have samples (the ephemeral
    # port gauge by source may be empty until its 5 s sample sees a connection)
    empty = [m for m in families if m not in ("ferry_ephemeral_ports_in_use",
                                              "ferry_request_duration_seconds")
             and m not in names] + \
        [m for m in ("ferry_request_duration_seconds_bucket",) if m not in names]
    assert not empty, "metrics without a sample after traffic: %s" % ", ".join(empty)


def test_metrics_parser(h):
    """The parser the other tests rely on refuses what it should (no ferry)."""
    ok = parse_prometheus('# TYPE a counter\na{x="1",y="q\\"z"} 3\na 4\n'
                          '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\n'
                          'h_sum 0.5\nh_count 2\n')
    assert ok[("a", frozenset({("x", "1"), ("y", 'q"z')}))] == 3
    for bad in ('a 1\n', '# TYPE a counter\na{x=1} 1\n', '# TYPE a counter\na 1\na 2\n',
                '# TYPE h histogram\nh_bucket{le="1"} 3\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 2\n'):
        try:
            parse_prometheus(bad)
        except AssertionError:
            continue
        raise AssertionError("parser accepted %r" % bad)


def test_status_json(h):
    """/status lists the listeners, routes (with their file lines) and
    upstreams (servers with state, active, idle) of the config."""
    a, b = http_upstream(h, "a"), http_upstream(h, "b")
    ups = [("app", [a, "%s weight=3" % addr_text(b)], {"balance": "least_conn"}),
           ("bk", [a, "%s backup" % addr_text(b)], {})]
    routes = [("api", [("host", "api.example.com"), ("host", "*.api.test"),
                       ("path_prefix", "/api/"), ("methods", "GET POST"), ("upstream", "app")]),
              ("exact", [("path", "/x"), ("upstream", "bk")])]
    f = start(h, [("web", {"upstream": "app"}), ("raw", {"mode": "tcp", "upstream": "bk"})],
              ups, routes, global_opts={"workers": "2"})
    st = status(f)
    assert [(l["name"], l["bind"], l["mode"]) for l in st["listeners"]] == [
        ("web", "127.0.0.1:%d" % f.lports["web"], "http"),
        ("raw", "127.0.0.1:%d" % f.lports["raw"], "tcp")], st["listeners"]
    lines = {m.group(1): i for i, line in enumerate(f.config_text.splitlines(), 1)
             for m in [re.match(r"\[route (\S+)\]", line)] if m}
    routes_by = {r["name"]: r for r in st["routes"]}
    assert set(routes_by) == {"api", "exact"}, st["routes"]
    api = routes_by["api"]
    assert api["hosts"] == ["api.example.com", "*.api.test"] and api["path_prefix"] == "/api/" \
        and api["upstream"] == "app" and api["line"] == lines["api"], api
    assert sorted(api.get("methods", [])) == ["GET", "POST"], api
    ex = routes_by["exact"]
    assert ex["path"] == "/x" and "path_prefix" not in ex and ex["hosts"] == [] \
        and ex["upstream"] == "bk" and ex["line"] == lines["exact"], ex
    ups_by = {u["name"]: u for u in st["upstreams"]}
    assert set(ups_by) == {"app", "bk"}, st["upstreams"]
    for name in ("app", "bk"):
        servers = ups_by[name]["servers"]
        assert [s["address"] for s in servers] == [addr_text(a), addr_text(b)], servers
        for s in servers:
            assert s["state"] == "up" and s["active"] == 0 and s["idle"] == 0, s
    assert ups_by["app"]["servers"][1].get("weight", 3) == 3, ups_by["app"]
    assert ups_by["bk"]["servers"][1].get("backup", True) is True, ups_by["bk"]
    # a request leaves an idle pooled connection to the server that answered it
    r = harness.get(h, f, "/x", [("Host", "s.test")])
    assert r.status == 200
    def idle():
        return {s["address"]: s["idle"] for s in
                [u for u in status(f)["upstreams"] if u["name"] == "bk"][0]["servers"]}
    try:
        wait_for(lambda: idle() == {addr_text(a): 1, addr_text(b): 0}, 2, "idle")
    except AssertionError:
        raise AssertionError("after one request to bk's primary, idle = %r" % idle())



def test_admin_any_address(h):
    """admin = :PORT means every address, v4 and v6, as a listener's bind
    does: the endpoint answers on 127.0.0.1 and on ::1."""
    up = http_upstream(h)

    def make():
        web, adm = harness.free_port(), harness.free_port()
        text = harness.http_config([("web", "127.0.0.1:%d" % web, {"upstream": "app"})],
                                   [("app", [up], {})], global_opts={"admin": ":%d" % adm})
        return text, [("tcp", "127.0.0.1", web), ("tcp", "127.0.0.1", adm)]
    f = h.start_ferry(make)
    port = f.addrs[1][2]
    for host in ("127.0.0.1", "::1"):
        f.admin = ("tcp", host, port)
        try:
            r = admin_get(f, "/healthz")
        except (OSError, AssertionError) as e:
            raise AssertionError("admin = :%d not reachable on %s: %r" % (port, host, e))
        assert r.status == 200 and r.body.strip() == b"ok", "%s: %r" % (host, r)


def test_admin_405(h):
    """A method other than GET or HEAD: 405 Method Not Allowed (not
    "Unknown"), with the Allow header RFC 9110 asks for."""
    up = http_upstream(h)
    f = start(h, [("web", {"upstream": "app"})], [("app", [up], {})])
    for method in ("POST", "DELETE"):
        s = harness.connect(f.admin)
        try:
            c = harness.HttpClient(s)
            r = c.request(method, "/healthz", [("Host", "admin"), ("Connection", "close")],
                          body=b"" if method == "POST" else None)
        finally:
            s.close()
        assert (r.status, r.reason) == (405, "Method Not Allowed"), \
            "%s /healthz: status line %r %r" % (method, r.status, r.reason)
        assert r.header("allow") == "GET, HEAD", "%s: Allow %r" % (method, r.header("allow"))


def test_sigusr1_reopens_access_log(h):
    """SIGUSR1 reopens the access log file: after logrotate moves it away,
    new lines go to a new file at the configured path, none are lost."""
    up = http_upstream(h)
    path = os.path.join(h.tmp, "access.log")
    f = start(h, [("web", {"upstream": "app"})], [("app", [up], {})],
              global_opts={"access_log": path})
    get_once(f.addr, "/before")
    wait_for(lambda: os.path.exists(path) and b"/before" in open(path, "rb").read(), 3,
             "the first line in the access log")
    os.rename(path, path + ".1")
    get_once(f.addr, "/between")  # still written to the moved file
    # the line is written when the exchange ends, just after the client has
    # the last byte of the response: wait for it before reopening, or the
    # reopen races the write and the line lands in the new file
    wait_for(lambda: b"/between" in open(path + ".1", "rb").read(), 3,
             "/between in the moved access log")
    f.signal(signal.SIGUSR1)
    wait_for(lambda: os.path.exists(path), 3, "a new access log file after SIGUSR1")
    get_once(f.addr, "/after")
    wait_for(lambda: b"/after" in open(path, "rb").read(), 3, "/after in the new file")
    old = open(path + ".1", "rb").read()
    new = open(path, "rb").read()
    assert b"/before" in old and b"/between" in old and b"/after" not in old, old
    assert b"/before" not in new and b"/between" not in new, new


harness.main(globals())
