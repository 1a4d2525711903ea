#!/usr/bin/env python3
"""HTTP mode through the real binary: header rewriting, routes, the upstream
keep-alive pool, pipelining, chunked bodies, HEAD/204/304, 100-continue,
Upgrade: h2c, access log, graceful stop."""
import hashlib
import json
import re
import signal
import socket
import time

import harness
import opslib
from harness import (HttpClient, build_request, chunk_encode, get, http_client, http_upstream,
                     simple_http)


def hdrs(j, name):
    """Values of header NAME in the upstream's JSON, in order."""
    return [v for k, v in j["headers"] if k.lower() == name.lower()]


def test_basic(h):
    """Host unchanged, X-Forwarded-*, X-Request-Id generated and echoed, and
    hop-by-hop headers (with every name listed in Connection) removed."""
    up = http_upstream(h)
    f = simple_http(h, [up])
    r = get(h, f, "/hello?x=1", [("Host", "Web.Example:8080"), ("User-Agent", "t/1"),
                                 ("Connection", "keep-alive, X-Secret"), ("X-Secret", "s"),
                                 ("Keep-Alive", "timeout=5"), ("TE", "trailers"),
                                 ("Proxy-Connection", "keep-alive"), ("X-Keep", "yes")])
    assert r.status == 200, r
    j = r.json()
    assert j["method"] == "GET" and j["target"] == "/hello?x=1", j
    assert j["version"] == "1.1", "upstream request is HTTP/%s, want 1.1" % j["version"]
    assert hdrs(j, "host") == ["Web.Example:8080"], "Host changed: %r" % hdrs(j, "host")
    assert hdrs(j, "x-forwarded-for") == ["127.0.0.1"], hdrs(j, "x-forwarded-for")
    assert hdrs(j, "x-forwarded-proto") == ["http"], hdrs(j, "x-forwarded-proto")
    assert hdrs(j, "x-forwarded-host") == ["Web.Example:8080"], hdrs(j, "x-forwarded-host")
    rid = hdrs(j, "x-request-id")
    assert len(rid) == 1 and re.fullmatch(r"[0-9a-f]{32}", rid[0]), "generated X-Request-Id %r" % rid
    assert r.header("x-request-id") == rid[0], \
        "response X-Request-Id %r != the one sent upstream %r" % (r.header("x-request-id"), rid[0])
    for hop in ("connection", "keep-alive", "te", "proxy-connection", "x-secret", "upgrade"):
        assert not hdrs(j, hop), "hop-by-hop header %s forwarded: %r" % (hop, j["headers"])
    assert hdrs(j, "x-keep") == ["yes"] and hdrs(j, "user-agent") == ["t/1"], j["headers"]
    assert r.header("x-upstream-name") == "up", r.headers
    # a second request: a different generated id
    r2 = get(h, f, "/")
    assert r2.header("x-request-id") and r2.header("x-request-id") != rid[0], r2.headers


def test_forwarded_chain_and_request_id(h):
    """A client's X-Forwarded-For chain gets the client appended; a client's
    X-Request-Id is kept and echoed."""
    up = http_upstream(h)
    f = simple_http(h, [up])
    r = get(h, f, "/", [("Host", "a.example"), ("X-Forwarded-For", "203.0.113.7, 198.51.100.2"),
                        ("X-Request-Id", "my-id-123")])
    j = r.json()
    xff = hdrs(j, "x-forwarded-for")
    assert len(xff) == 1 and [p.strip() for p in xff[0].split(",")] == \
        ["203.0.113.7", "198.51.100.2", "127.0.0.1"], "X-Forwarded-For %r" % xff
    assert hdrs(j, "x-request-id") == ["my-id-123"], hdrs(j, "x-request-id")
    assert r.header("x-request-id") == "my-id-123", r.headers
    assert len(r.all("x-request-id")) == 1, r.headers


def test_routes(h):
    """Route choice by host (exact, *.suffix, none), path vs path_prefix,
    methods; strip_prefix; header add/remove; the listener's default."""
    names = ["exact", "suffix", "longsuffix", "nohost", "path", "prefix", "post", "default"]
    ups = {n: http_upstream(h, n) for n in names}
    routes = [
        ("r_exact", [("host", "api.example.com"), ("upstream", "exact")]),
        ("r_suffix", [("host", "*.example.com"), ("upstream", "suffix")]),
        ("r_longsuffix", [("host", "*.deep.example.com"), ("upstream", "longsuffix")]),
        ("r_path", [("path", "/exact"), ("upstream", "path")]),
        ("r_prefix", [("path_prefix", "/api/"), ("upstream", "prefix"), ("strip_prefix", "on"),
                      ("add_request_header", "X-Env: prod"),
                      ("add_request_header", "X-Two: 2"),
                      ("remove_request_header", "X-Debug"),
                      ("add_response_header", "X-Frame-Options: DENY")]),
        ("r_post", [("path_prefix", "/api/"), ("methods", "POST PUT"), ("upstream", "post")]),
        ("r_nohost", [("path_prefix", "/only/"), ("upstream", "nohost")]),
    ]
    more = [(n, [ups[n]], {}) for n in names if n != "default"]
    f = simple_http(h, [ups["default"]], routes=routes, more_upstreams=more)

    def via(target, host="x.test", method="GET", extra=()):
        r = get(h, f, target, [("Host", host)] + list(extra), method=method,
                body=b"" if method in ("POST", "PUT") else None)
        assert r.status == 200, "%s %s Host %s: %r" % (method, target, host, r)
        return r, r.json()

    cases = [
        ("/", "api.example.com", "GET", "exact"),
        ("/api/x", "api.example.com", "GET", "exact"),   # exact host beats any path rule
        ("/", "API.Example.COM", "GET", "exact"),         # host names are case-insensitive
        ("/", "api.example.com:8080", "GET", "exact"),    # the port is not part of the name
        ("/", "www.example.com", "GET", "suffix"),
        ("/", "a.deep.example.com", "GET", "longsuffix"),  # longer suffix wins
        ("/", "example.com", "GET", "default"),           # *.example.com needs a label
        ("/exact", "x.test", "GET", "path"),
        ("/exact/more", "x.test", "GET", "default"),      # path is exact
        ("/api/users", "x.test", "GET", "prefix"),
        ("/api/users", "x.test", "POST", "post"),         # methods beats no methods
        ("/apix", "x.test", "GET", "default"),            # whole-byte prefix
        ("/only/a", "x.test", "GET", "nohost"),
        ("/elsewhere", "x.test", "GET", "default"),
    ]
    for target, host, method, want in cases:
        r, j = via(target, host, method)
        assert j["server"] == want, "%s %s Host %s went to %s, want %s" % (
            method, target, host, j["server"], want)
    # strip_prefix and header rewriting on r_prefix
    r, j = via("/api/users?q=1", extra=[("X-Debug", "1"), ("X-Env", "client")])
    assert j["server"] == "prefix"
    assert j["target"] == "/users?q=1", "strip_prefix: upstream target %r, want /users?q=1" % j["target"]
    assert "prod" in hdrs(j, "x-env"), "add_request_header X-Env missing: %r" % j["headers"]
    assert hdrs(j, "x-two") == ["2"], j["headers"]
    assert not hdrs(j, "x-debug"), "remove_request_header X-Debug: still sent %r" % j["headers"]
    assert r.header("x-frame-options") == "DENY", "add_response_header missing: %r" % r.headers
    # not on other routes
    r, j = via("/elsewhere", extra=[("X-Debug", "1")])
    assert hdrs(j, "x-debug") == ["1"] and r.header("x-frame-options") is None, (j, r.headers)


def test_not_found(h):
    """No route and no listener default upstream: 404, a text body naming the
    cause, X-Request-Id."""
    up = http_upstream(h)
    f = simple_http(h, [up], listener_opts={"upstream": None},
                    routes=[("only", [("path_prefix", "/app/"), ("upstream", "app")])])
    r = get(h, f, "/app/x")
    assert r.status == 200, r
    r = get(h, f, "/other")
    assert r.status == 404, r
    assert (r.header("content-type") or "").startswith("text/plain"), r.headers
    assert b"no route" in r.body.lower(), "404 body does not name the cause: %r" % r.body
    assert r.header("x-request-id"), "404 without X-Request-Id: %r" % r.headers


def _stats(h, up):
    c = HttpClient(h.connect(up))
    r = c.request("GET", "/stats", [("Host", "stats"), ("Connection", "close")])
    return r.json()


def _pool_reuse(h, workers):
    up = http_upstream(h)
    keepalive = 8
    f = simple_http(h, [up], upstream_opts={"keepalive": str(keepalive)},
                    global_opts={"workers": str(workers)})
    before = _stats(h, up)["accepted"]
    n = 2000
    t0 = time.monotonic()
    for i in range(n):
        s = f.connect()
        try:
            c = HttpClient(s)
            r = c.request("GET", "/r%d" % i, [("Host", "p.example"), ("Connection", "close")])
            assert r.status == 200, "request %d: %r" % (i, r)
            assert r.header("connection") and "close" in r.header("connection").lower(), \
                "response to Connection: close lacks Connection: close: %r" % r.headers
        finally:
            s.close()
    dt = time.monotonic() - t0
    after = _stats(h, up)["accepted"] - 1  # minus our own /stats connection
    opened = after - before
    print("%d requests in %.2fs; upstream accepted %d connections (workers %d, keepalive %d)"
          % (n, dt, opened, workers, keepalive))
    assert opened <= keepalive * workers, \
        "upstream accepted %d connections for %d requests (want <= keepalive %d x workers %d)" % (
            opened, n, keepalive, workers)


def test_pool_reuse(h):
    """2000 requests, each on its own client connection with Connection: close:
    the upstream accepts at most keepalive connections per worker."""
    _pool_reuse(h, 1)


def test_pool_reuse_2workers(h):
    _pool_reuse(h, 2)


def test_pipelining(h):
    """Three requests in one write; the slow first one still answers first."""
    up = http_upstream(h)
    f = simple_http(h, [up])
    c = http_client(h, f)
    body = b"pipelined body"
    c.send(build_request("GET", "/delay/200", [("Host", "p.example")]) +
           build_request("GET", "/a", [("Host", "p.example")]) +
           build_request("POST", "/post", [("Host", "p.example")], body))
    t0 = time.monotonic()
    got = []
    for want in ("/delay/200", "/a", "/post"):
        r = c.read_response(timeout=10)
        assert r.status == 200, r
        got.append(r.json()["target"])
    assert got == ["/delay/200", "/a", "/post"], "responses out of order: %r" % got
    assert time.monotonic() - t0 >= 0.19
    j = json.loads(r.body)
    assert j["body_length"] == len(body) and j["body_sha256"] == hashlib.sha256(body).hexdigest(), j
    # the connection is still usable
    r = c.request("GET", "/after", [("Host", "p.example")])
    assert r.json()["target"] == "/after"


def test_chunked_request(h):
    """A chunked request body arrives whole at the upstream (sha256)."""
    up = http_upstream(h)
    f = simple_http(h, [up])
    c = http_client(h, f)
    data = bytes(range(256)) * 1000 + b"tail"
    r = c.request("POST", "/upload", [("Host", "c.example"), ("Transfer-Encoding", "chunked")],
                  chunk_encode(data, 7000))
    assert r.status == 200, r
    j = r.json()
    assert j["body_length"] == len(data), "upstream got %d body bytes, sent %d" % (j["body_length"], len(data))
    assert j["body_sha256"] == hashlib.sha256(data).hexdigest(), "body sha256 differs at the upstream"
    # uneven writes: the framing split across reads
    raw = chunk_encode(data[:50000], 333)
    c.send(build_request("PUT", "/u2", [("Host", "c.example"), ("Transfer-Encoding", "chunked")]))
    for i in range(0, len(raw), 4097):
        c.send(raw[i:i + 4097])
        if i < 20000:
            time.sleep(0.001)
    r = c.read_response()
    j = r.json()
    assert j["body_sha256"] == hashlib.sha256(data[:50000]).hexdigest(), j


def test_chunked_response(h):
    """/chunked/N through ferry: the body is right."""
    up = http_upstream(h)
    f = simple_http(h, [up])
    c = http_client(h, f)
    for n in (0, 1, 100000, 3 << 20):
        r = c.request("GET", "/chunked/%d" % n, [("Host", "c.example")], timeout=30)
        assert r.status == 200, r
        assert r.body_len == n, "chunked/%d: got %d bytes" % (n, r.body_len)
        assert r.body == harness_pattern(n), "chunked/%d: body differs from the pattern" % n


def harness_pattern(n, start=0):
    """The upstream's /bytes pattern: byte i = 'a' + i % 26."""
    alpha = b"abcdefghijklmnopqrstuvwxyz"
    s = start % 26
    rep = (alpha[s:] + alpha[:s]) * (n // 26 + 1)
    return rep[:n]


def test_http10_dechunk(h):
    """An HTTP/1.0 client gets a chunked upstream response unchunked, ending
    with the connection. (The upstream only chunks for 1.1 requests, and
    ferry always asks it in HTTP/1.1.)"""
    up = http_upstream(h)
    f = simple_http(h, [up])
    c = http_client(h, f)
    n = 200000
    c.send(build_request("GET", "/chunked/%d" % n, [("Host", "c.example")], version="HTTP/1.0"))
    r = c.read_response(timeout=20)
    assert r.status == 200, r
    assert not r.chunked, "HTTP/1.0 client got a chunked response: %r" % r.headers
    assert r.header("transfer-encoding") is None, r.headers
    assert r.body_len == n and r.body == harness_pattern(n), \
        "HTTP/1.0 body: %d bytes, want %d of the pattern" % (r.body_len, n)
    if r.header("content-length") is None:
        assert r.until_eof
    else:
        c.wait_closed(5)


def test_head_204_304(h):
    """HEAD keeps Content-Length and has no body; 204 and 304 pass through;
    all on one keep-alive connection (a body-less response mis-framed would
    break the next one)."""
    up = http_upstream(h)
    f = simple_http(h, [up])
    c = http_client(h, f)
    r = c.request("HEAD", "/bytes/12345", [("Host", "h.example")])
    assert r.status == 200 and r.header("content-length") == "12345", r
    r = c.request("HEAD", "/chunked/5000", [("Host", "h.example")])
    assert r.status == 200, r
    r = c.request("GET", "/status/204", [("Host", "h.example")])
    assert r.status == 204, r
    r = c.request("GET", "/status/304", [("Host", "h.example")])
    assert r.status == 304, r
    r = c.request("GET", "/bytes/10", [("Host", "h.example")])
    assert r.status == 200 and r.body == b"abcdefghij", "after HEAD/204/304: %r" % r
    # nothing stray on the connection
    c.sock.settimeout(0.3)
    try:
        extra = c.sock.recv(100)
    except socket.timeout:
        extra = b""
    assert not extra and not c.buf, "stray bytes after the responses: %r" % (bytes(c.buf) + extra)


def test_expect_continue(h):
    """Expect: 100-continue: the client sends the head, waits for 100
    Continue, then the body; the upstream gets it all. And curl."""
    up = http_upstream(h)
    f = simple_http(h, [up])
    c = http_client(h, f)
    body = b"x" * 100000
    c.send(build_request("POST", "/e", [("Host", "e.example"), ("Expect", "100-continue"),
                                        ("Content-Length", str(len(body)))]))
    r = c.read_response(timeout=5, keep_1xx=True)
    assert r.status == 100, "want 100 Continue before the body, got %r" % r
    c.send(body)
    r = c.read_response(timeout=10)
    assert r.status == 200, r
    j = r.json()
    assert j["body_length"] == len(body) and j["body_sha256"] == hashlib.sha256(body).hexdigest(), j
    import shutil
    import subprocess
    if shutil.which("curl"):
        p = subprocess.run(["curl", "-sS", "--max-time", "10", "--expect100-timeout", "5",
                            "-H", "Expect: 100-continue", "--data-binary", "@-",
                            "http://%s:%d/curl" % (f.addr[1], f.addr[2])],
                           input=body, capture_output=True, timeout=20)
        assert p.returncode == 0, "curl failed: %s" % p.stderr
        j = json.loads(p.stdout)
        assert j["body_length"] == len(body), j


def test_upgrade_h2c(h):
    """Upgrade: h2c is dropped and the request goes on as a plain request."""
    up = http_upstream(h)
    f = simple_http(h, [up])
    c = http_client(h, f)
    r = c.request("GET", "/h2c", [("Host", "u.example"), ("Connection", "Upgrade, HTTP2-Settings"),
                                  ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")])
    assert r.status == 200, r
    j = r.json()
    for name in ("upgrade", "connection", "http2-settings"):
        assert not hdrs(j, name), "%s forwarded: %r" % (name, j["headers"])
    r = c.request("GET", "/after", [("Host", "u.example")])
    assert r.status == 200 and r.json()["target"] == "/after", r


def _access_log(h, fmt):
    up = http_upstream(h)
    g = {"access_log": "stdout"}
    if fmt:
        g["access_log_format"] = fmt
    f = simple_http(h, [up], global_opts=g,
                    routes=[("logged", [("path_prefix", "/logged/"), ("upstream", "app")])])
    c = http_client(h, f)
    r = c.request("GET", "/logged/x?y=1", [("Host", "l.example"), ("Referer", "http://ref.example/"),
                                           ("User-Agent", "ferry-test/1.0"), ("X-Request-Id", "rid-42")])
    assert r.status == 200
    r2 = get(h, f, "/none", [("Host", "l.example")])
    assert r2.status == 200
    h.ferry_stop_clean(f)
    lines = [l for l in f.stdout().splitlines() if l.strip()]
    return f, up, r, r2, lines


def test_access_log_text(h):
    f, up, r, r2, lines = _access_log(h, None)
    pat = re.compile(r'^127\.0\.0\.1(:\d+)? - - \[[^\]]+\] "(\S+) (\S+) (HTTP/1\.[01])" (\d{3}) (\d+) '
                     r'"([^"]*)" "([^"]*)" route=(\S+) upstream=(\S+) rt=(\d+(?:\.\d+)?) '
                     r'urt=(-|\d+(?:\.\d+)?) rid=(\S+)$')
    ms = [pat.match(l) for l in lines]
    assert len(lines) == 2 and all(ms), \
        "want 2 access log lines in the spec's http text format, got:\n%s" % "\n".join(lines)
    m = ms[0]
    assert m.group(2, 3, 4, 5) == ("GET", "/logged/x?y=1", "HTTP/1.1", "200"), lines[0]
    assert int(m.group(6)) >= len(r.body), "bytes %s < body %d: %r" % (m.group(6), len(r.body), lines[0])
    assert m.group(7, 8) == ("http://ref.example/", "ferry-test/1.0"), lines[0]
    assert m.group(9) == "logged" and m.group(10) == "127.0.0.1:%d" % up[2], lines[0]
    assert float(m.group(11)) < 5 and m.group(12) != "-" and m.group(13) == "rid-42", lines[0]
    m = ms[1]
    assert m.group(13) == r2.header("x-request-id"), (lines[1], r2.headers)
    assert m.group(9) == "-", "no route matched: route=%s, want -: %r" % (m.group(9), lines[1])


def test_access_log_json(h):
    f, up, r, r2, lines = _access_log(h, "json")
    objs = []
    for l in lines:
        try:
            objs.append(json.loads(l))
        except ValueError:
            raise AssertionError("not a json access log line: %r" % l)
    assert len(objs) == 2, lines
    o = objs[0]
    keys = ("time", "client", "method", "target", "proto", "status", "bytes", "referer",
            "user_agent", "route", "upstream", "rt", "urt", "rid")
    for k in keys:
        assert k in o, "json access log lacks %r: %r" % (k, o)
    assert (o["method"], o["target"], o["proto"]) == ("GET", "/logged/x?y=1", "HTTP/1.1"), o
    assert int(o["status"]) == 200 and int(o["bytes"]) >= len(r.body), o
    assert o["referer"] == "http://ref.example/" and o["user_agent"] == "ferry-test/1.0", o
    assert o["route"] == "logged" and o["upstream"] == "127.0.0.1:%d" % up[2], o
    assert o["rid"] == "rid-42" and str(o["client"]).startswith("127.0.0.1"), o
    assert 0 <= float(o["rt"]) < 5 and 0 <= float(o["urt"]) < 5, o
    assert objs[1]["rid"] == r2.header("x-request-id"), (objs[1], r2.headers)


def test_graceful_stop(h):
    """SIGTERM while a request is in flight on a keep-alive connection: the
    response completes with Connection: close, then ferry exits 0."""
    up = http_upstream(h)
    f = simple_http(h, [up])
    c = http_client(h, f)
    r = c.request("GET", "/first", [("Host", "g.example")])
    assert r.status == 200
    c.send(build_request("GET", "/delay/1000", [("Host", "g.example")]))
    # in flight before the stop: read by ferry and at the upstream (/first
    # was its request 1)
    opslib.wait_upstream_requests(up, 2, harness.scaled(5), "/delay/1000 at the upstream")
    t0 = time.monotonic()
    f.signal(signal.SIGTERM)
    r = c.read_response(timeout=5)
    assert r.status == 200 and r.json()["target"] == "/delay/1000", r
    conn = (r.header("connection") or "").lower()
    assert "close" in conn, "last response on a keep-alive connection lacks Connection: close: %r" % r.headers
    t_resp = time.monotonic() - t0
    c.wait_closed(5)
    c.sock.close()  # ferry lingers (up to 2s) for our EOF after its own
    t_closed = time.monotonic() - t0
    rc = f.wait(10)
    t_exit = time.monotonic() - t0
    print("response after %.2fs, client closed after %.2fs, ferry exited after %.2fs"
          % (t_resp, t_closed, t_exit))
    assert rc == 0, "ferry exit status %r after SIGTERM" % rc
    # nothing is in flight once the client connection is closed: idle pooled
    # upstream connections must not hold the exit until shutdown_timeout (5s)
    assert t_exit - t_closed < 1.5, "ferry took %.2fs to exit after SIGTERM (drained at %.2fs)" % (
        t_exit, t_closed)
    harness.assert_sanitizer_clean(f)


def test_graceful_stop_new_conn(h):
    """A connection accepted just before SIGTERM whose first request arrives
    after it (a balancer still sending to a ferry being replaced) is served,
    with Connection: close, instead of being closed unanswered; a kept-alive
    connection that already had its response is closed at once."""
    up = http_upstream(h)
    f = simple_http(h, [up])
    used = http_client(h, f)
    assert used.request("GET", "/used", [("Host", "g.example")]).status == 200
    fresh = http_client(h, f)
    f.signal(signal.SIGTERM)
    port = f.addr[2]
    deadline = time.monotonic() + harness.scaled(5)
    while harness.is_listening(f.pid, f.addr):
        assert time.monotonic() < deadline, "ferry still listening 5 s after SIGTERM"
        time.sleep(0.02)
    used.wait_closed(5)  # idle after a response: closed by the drain
    r = fresh.request("GET", "/late", [("Host", "g.example")], timeout=5)
    assert r.status == 200 and r.json()["target"] == "/late", r
    assert "close" in (r.header("connection") or "").lower(), r.headers
    fresh.wait_closed(5)
    fresh.sock.close()
    assert f.wait(10) == 0, "ferry exit status after SIGTERM (port %d)" % port
    harness.assert_sanitizer_clean(f)


if __name__ == "__main__":
    harness.main(globals())
