#!/usr/bin/env python3
"""Every status code ferry itself sends (SPEC "HTTP mode"): 400 404 408 413
431 502 503 504 505. Each: text/plain body naming the cause, X-Request-Id,
for 5xx "route R, upstream U:" and never a server address."""
import re
import socket
import time

import harness
from harness import HttpClient, build_request, free_port, get, http_client, http_upstream, simple_http

ADDR_RE = re.compile(r"\d+\.\d+\.\d+\.\d+|:\d{2,5}\b|invalid|localhost")


def check_error(r, status, cause, route=None, upstream=None):
    """Asserts the shape of an error response from ferry: the body is
    "STATUS Reason: DETAIL" and DETAIL is exactly CAUSE (for 5xx, "route R,
    upstream U: CAUSE"), so the cause is checked, not the reason phrase."""
    assert r.status == status, "want %d, got %r" % (status, r)
    ct = r.header("content-type") or ""
    assert ct.startswith("text/plain"), "%d Content-Type %r" % (status, ct)
    assert r.header("x-request-id"), "%d without X-Request-Id: %r" % (status, r.headers)
    text = r.body.decode("utf-8", "replace")
    prefix = "%d %s: " % (status, r.reason)
    assert text.startswith(prefix) and text.endswith("\n"), "%d body %r" % (status, text)
    detail = text[len(prefix):-1]
    if status in (502, 503, 504):
        want = "route %s, upstream %s: %s" % (route or "-", upstream, cause)
        m = ADDR_RE.search(text)
        assert not m, "%d body %r shows a server address (%r)" % (status, text, m.group(0))
    else:
        want = cause
    assert detail == want, "%d body names %r, want %r" % (status, detail, want)


def test_400(h):
    up = http_upstream(h)
    f = simple_http(h, [up])
    for raw, cause in (
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "more than one Host"),
            (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", "malformed request line"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"0\r\n\r\n", "Content-Length can't be present with Transfer-Encoding"),
            # codings other than chunked: 400, as for any framing ferry cannot
            # forward byte for byte (not 501: the request is refused, not a
            # method ferry lacks)
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
             "Transfer-Encoding is not chunked"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
             "Transfer-Encoding is not chunked")):
        c = http_client(h, f)
        c.send(raw)
        r = c.read_response(timeout=5)
        check_error(r, 400, cause)
        c.wait_closed(3)


def test_404(h):
    up = http_upstream(h)
    f = simple_http(h, [up], listener_opts={"upstream": None},
                    routes=[("api", [("host", "api.example"), ("upstream", "app")])])
    c = http_client(h, f)
    r = c.request("GET", "/x", [("Host", "other.example")])
    check_error(r, 404, "no route matches this request")
    # closing after a 404 is allowed, but only when announced
    if "close" in (r.header("connection") or "").lower():
        print("note: ferry closes the connection after a 404")
        c.wait_closed(3)
    else:
        r = c.request("GET", "/x", [("Host", "api.example")])
        assert r.status == 200, r


def test_408(h):
    """header_timeout = 1s and a partial head: 408 and close, in about 1s."""
    up = http_upstream(h)
    f = simple_http(h, [up], listener_opts={"header_timeout": "1s"})
    c = http_client(h, f)
    t0 = time.monotonic()
    c.send(b"GET / HTTP/1.1\r\nHost: slow.example\r\nX-A: ")
    time.sleep(0.5)
    c.send(b"b\r\n")  # trickling bytes does not extend the deadline
    r = c.read_response(timeout=5)
    dt = time.monotonic() - t0
    check_error(r, 408, "request head not received within header_timeout")
    assert 0.8 <= dt <= 2.5, "408 after %.2fs with header_timeout = 1s" % dt
    c.wait_closed(3)


def test_413(h):
    up = http_upstream(h)
    f = simple_http(h, [up], listener_opts={"max_body_size": "1k"})
    # Content-Length over the limit: refused from the head
    c = http_client(h, f)
    c.send(build_request("POST", "/", [("Host", "b.example"), ("Content-Length", "2000")]) + b"x" * 2000)
    r = c.read_response(timeout=5)
    check_error(r, 413, "request body larger than max_body_size")
    c.wait_closed(3)
    # at the limit: fine
    r = get(h, f, "/", method="POST", body=b"y" * 1024)
    assert r.status == 200 and r.json()["body_length"] == 1024, r
    # chunked over the limit: 413 (found while streaming, before any response)
    c = http_client(h, f)
    c.send(build_request("POST", "/", [("Host", "b.example"), ("Transfer-Encoding", "chunked")]))
    c.send(b"200\r\n" + b"z" * 0x200 + b"\r\n")
    time.sleep(0.1)
    c.send(b"300\r\n" + b"z" * 0x300 + b"\r\n")
    try:
        c.send(b"0\r\n\r\n")
    except OSError:
        pass
    r = c.read_response(timeout=5)
    check_error(r, 413, "request body larger than max_body_size")
    c.wait_closed(3)


def test_431(h):
    up = http_upstream(h)
    f = simple_http(h, [up], listener_opts={"max_header_size": "1k"})
    r = get(h, f, "/", [("Host", "h.example"), ("X-Small", "a" * 500)])
    assert r.status == 200, r
    c = http_client(h, f)
    c.send(build_request("GET", "/", [("Host", "h.example"), ("X-Big", "a" * 1500)]))
    r = c.read_response(timeout=5)
    check_error(r, 431, "request head larger than max_header_size")
    c.wait_closed(3)
    # a head that never ends: 431 as soon as it passes the limit
    c = http_client(h, f)
    c.send(b"GET / HTTP/1.1\r\nHost: h.example\r\n" + b"X-Endless: " + b"b" * 3000)
    r = c.read_response(timeout=5)
    check_error(r, 431, "request head larger than max_header_size")


def test_502_refused(h):
    dead = ("tcp", "127.0.0.1", free_port())
    f = simple_http(h, [dead], upstream_opts={"hold": "0", "retries": "0"},
                    routes=[("api", [("path_prefix", "/"), ("upstream", "app")])])
    t0 = time.monotonic()
    r = get(h, f, "/x", timeout=5)
    check_error(r, 502, "connection refused", route="api", upstream="app")
    assert time.monotonic() - t0 < 2, "502 took %.2fs with hold = 0" % (time.monotonic() - t0)


def test_502_close_mid(h):
    """The upstream dies after the response head: the client connection is
    closed before a complete body (never a complete-looking response)."""
    up = http_upstream(h)
    f = simple_http(h, [up])
    c = http_client(h, f)
    c.send(build_request("GET", "/close-mid", [("Host", "m.example")]))
    got = []
    try:
        r = c.read_response(timeout=5, sink=got.append)
    except AssertionError as e:
        assert "EOF" in str(e) or "recv failed" in str(e), "want a close mid-body, got: %s" % e
        return
    raise AssertionError("a complete response came through from an upstream that closed mid-body: %r" % r)


def test_502_garbage(h):
    """An upstream that answers with garbage: 502."""
    def handler(conn):
        conn.settimeout(5)
        conn.recv(65536)
        conn.sendall(b"SSH-2.0-OpenSSH_9.0\r\n\r\n")
        time.sleep(0.5)
    up = h.thread_server(handler)
    f = simple_http(h, [up], upstream_opts={"retries": "0"})
    r = get(h, f, "/", timeout=5)
    check_error(r, 502, "malformed response from upstream", upstream="app")


def test_503(h):
    """The only server's name does not resolve: no server available."""
    f = simple_http(h, ["nonexistent.invalid:80"], upstream_opts={"hold": "0"})
    t0 = time.monotonic()
    r = get(h, f, "/", timeout=8)
    check_error(r, 503, "no server available", upstream="app")
    assert time.monotonic() - t0 < 3


def test_504_read(h):
    up = http_upstream(h)
    f = simple_http(h, [up], upstream_opts={"read_timeout": "1s"},
                    routes=[("slow", [("path", "/hang"), ("upstream", "app")])])
    t0 = time.monotonic()
    r = get(h, f, "/hang", timeout=5)
    dt = time.monotonic() - t0
    check_error(r, 504, "read timeout", route="slow", upstream="app")
    assert 0.8 <= dt <= 2.5, "504 after %.2fs with read_timeout = 1s" % dt


def _blackhole(h):
    """A local address where a connect hangs in SYN_SENT: a listener with a
    full accept queue (backlog 0, filled, never accepted) drops new SYNs.
    (10.255.255.1 is no use here: this sandbox answers every outbound
    connection through a transparent proxy.)"""
    ls = h.track(socket.socket())
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    for _ in range(3):
        s = h.track(socket.socket())
        s.setblocking(False)
        try:
            s.connect(ls.getsockname())
        except BlockingIOError:
            pass
    time.sleep(0.2)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        probe.connect(ls.getsockname())
        raise harness.Skip("cannot make a connect hang here (a connect to a full backlog succeeded)")
    except socket.timeout:
        pass
    finally:
        probe.close()
    return ("tcp", "127.0.0.1", ls.getsockname()[1])


def test_504_connect(h):
    """connect_timeout = 500ms to a server that never answers the SYN: 504
    after about 500ms."""
    bh = _blackhole(h)
    f = simple_http(h, [bh], upstream_opts={"connect_timeout": "500ms", "retries": "0", "hold": "0"})
    t0 = time.monotonic()
    r = get(h, f, "/", timeout=8)
    dt = time.monotonic() - t0
    print("%d after %.2fs" % (r.status, dt))
    check_error(r, 504, "connect timeout", upstream="app")
    assert 0.4 <= dt < 3, "504 after %.2fs with connect_timeout = 500ms" % dt


def test_505(h):
    up = http_upstream(h)
    f = simple_http(h, [up])
    c = http_client(h, f)
    c.send(b"GET / HTTP/2.0\r\nHost: v.example\r\n\r\n")
    r = c.read_response(timeout=5)
    check_error(r, 505, "HTTP version not supported")
    c.wait_closed(3)


if __name__ == "__main__":
    harness.main(globals())
