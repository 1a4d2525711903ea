#!/usr/bin/env python3
"""Defects an outside review found in HTTP mode, each driven through the real
binary: ferry's own responses to HEAD (no body, or a pipelined response is
desynced), Date on them, a client that resets right after sending (never
forwarded without its address), the forwarding headers ferry manages,
framing headers on bodiless responses, Upgrade on HTTP/1.0 and a 101 that
does not switch to a websocket."""
import re
import socket
import struct
import threading
import time

import harness
import opslib
from harness import HttpClient, build_request, http_client, http_upstream, simple_http

DATE_RE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct"
                     r"|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")


def hdrs(j, name):
    return [v for k, v in j["headers"] if k.lower() == name.lower()]


def test_head_error_has_no_body(h):
    """HEAD to an unrouted path + a pipelined GET: the 404 carries GET's
    headers (Content-Length included) and no body, the connection stays open
    and the GET's response is read as the next one, not after 45 stray bytes."""
    up = http_upstream(h)
    f = simple_http(h, [up], listener_opts={"upstream": None},
                    routes=[("api", [("path_prefix", "/api/"), ("upstream", "app")])])
    c = http_client(h, f)
    c.send(build_request("HEAD", "/nope") + build_request("GET", "/api/x"))
    r = c.read_response("HEAD", timeout=5)
    assert r.status == 404, r
    assert int(r.header("content-length")) > 0, r.headers
    assert "close" not in (r.header("connection") or ""), r.headers
    assert DATE_RE.match(r.header("date") or ""), "Date %r" % r.header("date")
    r2 = c.read_response("GET", timeout=5)
    assert r2.status == 200, "the GET after the HEAD got %r (stray body bytes?)" % r2
    assert r2.json()["target"] == "/api/x", r2.json()
    # ferry's errors that close: to HEAD, headers only, then the close
    c = http_client(h, f)
    c.send(b"HEAD /api/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    r = c.read_response("HEAD", timeout=5)
    assert r.status == 400 and "close" in r.header("connection"), r
    c.wait_closed(3)  # fails on any byte of a body before the close


def test_error_has_date(h):
    f = simple_http(h, [("tcp", "127.0.0.1", harness.free_port())], upstream_opts={"hold": "0"})
    r = harness.get(h, f, "/")
    assert r.status == 502, r
    assert DATE_RE.match(r.header("date") or ""), "502 without a valid Date: %r" % r.headers
    got = time.mktime(time.strptime(r.header("date"), "%a, %d %b %Y %H:%M:%S GMT")) - time.timezone
    assert abs(got - time.time()) < 5, "Date %r is not now" % r.header("date")


def test_reset_client_never_anonymous(h):
    """A client that sends a request and resets at once (SO_LINGER 0): ferry
    may serve it or drop it, but never forwards it without the client's
    address (X-Forwarded-For "unix", PROXY UNKNOWN)."""
    rec = opslib.Recorder(h, http=True)
    f = simple_http(h, [rec.addr])
    sent = 200
    for i in range(sent):
        s = f.connect()
        s.sendall(build_request("GET", "/r%d" % i))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    # the last request either reached the recorder or was dropped: one more
    # normal request, answered, proves ferry handled everything before it
    r = harness.get(h, f, "/last")
    assert r.status == 200, r
    bad = []
    forwarded = 0
    for data in rec.snapshot():
        for head in data.split(b"\r\n\r\n"):
            if not head.startswith(b"GET /r"):
                continue
            forwarded += 1
            xff = re.search(rb"\r\nX-Forwarded-For: ([^\r]*)", head)
            if not xff or xff.group(1) != b"127.0.0.1":
                bad.append(head.split(b"\r\n")[0] + b" XFF=" + (xff.group(1) if xff else b"-"))
    print("%d of %d reset clients' requests were forwarded" % (forwarded, sent))
    assert not bad, "forwarded without the client's address: %r" % bad[:5]


def test_managed_headers(h):
    """remove_request_header of X-Forwarded-For drops the client's chain;
    Connection naming X-Forwarded-For does the same; removing X-Request-Id
    makes ferry use its own id (sent up and echoed)."""
    up = http_upstream(h)
    f = simple_http(h, [up], listener_opts={"upstream": None}, routes=[
        ("strict", [("path_prefix", "/strict/"), ("upstream", "app"),
                    ("remove_request_header", "X-Forwarded-For"),
                    ("remove_request_header", "X-Request-Id")]),
        ("open", [("path_prefix", "/"), ("upstream", "app")])])
    r = harness.get(h, f, "/strict/x", [("Host", "a"), ("X-Forwarded-For", "6.6.6.6"),
                                        ("X-Request-Id", "client-chosen")])
    j = r.json()
    assert hdrs(j, "x-forwarded-for") == ["127.0.0.1"], hdrs(j, "x-forwarded-for")
    rid = hdrs(j, "x-request-id")
    assert len(rid) == 1 and re.fullmatch(r"[0-9a-f]{32}", rid[0]), rid
    assert r.header("x-request-id") == rid[0], r.headers
    r = harness.get(h, f, "/x", [("Host", "a"), ("Connection", "X-Forwarded-For"),
                                 ("X-Forwarded-For", "6.6.6.6")])
    assert hdrs(r.json(), "x-forwarded-for") == ["127.0.0.1"], hdrs(r.json(), "x-forwarded-for")
    # without either, the chain is kept and the client's id too
    r = harness.get(h, f, "/x", [("Host", "a"), ("X-Forwarded-For", "203.0.113.1"),
                                 ("X-Request-Id", "client-chosen")])
    assert hdrs(r.json(), "x-forwarded-for") == ["203.0.113.1, 127.0.0.1"], r.json()["headers"]
    assert hdrs(r.json(), "x-request-id") == ["client-chosen"], r.json()["headers"]
    # adding one is a config error naming file and line
    path = h.write("managed.ini", "[listener web]\nbind = 127.0.0.1:1\nmode = http\n"
                   "[upstream app]\nserver = 127.0.0.1:2\n[route r]\nupstream = app\n"
                   "add_request_header = X-Forwarded-For: 1.2.3.4\n")
    rc, out, err = h.run_ferry(["-t", "-c", path])
    assert rc == 1, (rc, out, err)
    assert "managed.ini:8: add_request_header: header 'X-Forwarded-For' is set by ferry" in err, err


def _scripted_upstream(h, answer):
    """An upstream that reads one request head per connection and sends
    answer(head) back raw, then closes."""
    def handle(c):
        buf = b""
        while b"\r\n\r\n" not in buf:
            b = c.recv(65536)
            if not b:
                return
            buf += b
        c.sendall(answer(buf))
        time.sleep(0.2)
    return h.thread_server(handle)


def test_bodiless_framing_dropped(h):
    """Content-Length or Transfer-Encoding on a 204, 304 or 1xx never reach
    the client: it would read the next response as this one's body."""
    answers = {
        b"/204": b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-A: 1\r\n\r\n",
        b"/304": b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nETag: \"e\"\r\n\r\n",
        b"/103": b"HTTP/1.1 103 Early Hints\r\nContent-Length: 3\r\nLink: </a.css>\r\n\r\n"
                 b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    }

    def answer(head):
        return answers[head.split(b" ")[1]]
    f = simple_http(h, [_scripted_upstream(h, answer)])
    for path in ("/204", "/304"):
        c = http_client(h, f)
        r = c.request("GET", path)
        assert r.header("content-length") is None and r.header("transfer-encoding") is None, \
            "%s: framing header reached the client: %r" % (path, r.headers)
    c = http_client(h, f)
    c.send(build_request("GET", "/103"))
    r = c.read_response(keep_1xx=True)
    assert r.status == 103 and r.header("content-length") is None, r.headers
    r = c.read_response()
    assert r.status == 200 and r.body == b"ok", r


def test_upgrade_http10_ignored(h):
    """HTTP/1.0 with Connection: upgrade and Upgrade: websocket is a plain
    request: the upstream sees neither header, nothing is tunnelled."""
    seen = []

    def answer(head):
        seen.append(head)
        if b"\r\nupgrade: websocket" in head.lower():
            return (b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
                    b"Upgrade: websocket\r\n\r\nTUNNEL")
        return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain"
    f = simple_http(h, [_scripted_upstream(h, answer)])
    c = http_client(h, f)
    c.send(b"GET /ws HTTP/1.0\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
           b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
    r = c.read_response()
    assert r.status == 200 and r.body == b"plain", r
    assert seen and b"upgrade" not in seen[0].lower().split(b"\r\n", 1)[1].replace(
        b"sec-websocket", b""), seen


def test_101_without_websocket_is_502(h):
    """A websocket request answered 101 without Upgrade: websocket (or with
    another protocol) is a 502, never a tunnel."""
    def answer(head):
        if b"/h2c" in head:
            return b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\nX"
        return b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\nTUNNEL"
    f = simple_http(h, [_scripted_upstream(h, answer)])
    for path in ("/bare", "/h2c"):
        c = http_client(h, f)
        c.send(("GET %s HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                % path).encode())
        r = c.read_response()
        assert r.status == 502, "%s: %r" % (path, r)
        assert b"Upgrade: websocket" in r.body, r.body
        c.wait_closed(3)


def test_head_too_large_ends_pipeline(h):
    """A response head that fits ferry's read buffer but not once rewritten
    is a 502 with Connection: close, and then the connection ends: a request
    pipelined behind it must never reach an upstream (the client was told
    it will get no answer)."""
    seen = []

    def answer(head):
        seen.append(head.split(b"\r\n", 1)[0])
        if b" /big " in head:
            return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Big: " + b"b" * 65200 + b"\r\n\r\n"
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    f = simple_http(h, [_scripted_upstream(h, answer)])
    c = http_client(h, f)
    c.send(build_request("GET", "/big") + b"POST /second HTTP/1.1\r\nHost: a\r\n"
           b"Content-Length: 4\r\n\r\nbody")
    r = c.read_response()
    assert r.status == 502 and "close" in (r.header("connection") or ""), r
    assert b"response head too large" in r.body, r.body
    c.wait_closed(5)
    # the proof that nothing else went up: one more request on a new
    # connection is answered, and it is the second one the upstream saw
    r = harness.get(h, f, "/last")
    assert r.status == 200, r
    assert seen == [b"GET /big HTTP/1.1", b"GET /last HTTP/1.1"], seen


if __name__ == "__main__":
    harness.main(globals())
