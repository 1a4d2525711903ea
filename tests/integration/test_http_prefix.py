#!/usr/bin/env python3
"""Apps under a stripped path prefix, through the real binary.

A `strip_prefix` route tells its app the prefix (X-Forwarded-Prefix) and,
with `rewrite_redirects` (on by default there), puts the app's Location,
Content-Location and Set-Cookie Path back under the client's scheme, host
and prefix. `/api` when only `path_prefix = /api/` would take it is a 308
to `/api/`. A route's own read_timeout and idle_timeout override the
upstream's and the listener's. A websocket's access log line is written
when the tunnel ends, with the bytes each way and its length."""
import base64
import os
import re
import time

import harness
import opslib
from harness import build_request, get, http_client, http_upstream, simple_http


def _headers_seen(r):
    """The request headers ferry-upstream saw, as {lower-case name: [values]}."""
    out = {}
    for k, v in r.json()["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


def test_prefix_header(h):
    """The upstream of a strip_prefix route gets X-Forwarded-Prefix: /api
    (no trailing slash); what a client sends under that name never passes,
    on any route."""
    up = http_upstream(h)
    f = simple_http(h, [up], routes=[
        ("api", [("path_prefix", "/api/"), ("upstream", "app"), ("strip_prefix", "on")]),
        ("bare", [("path_prefix", "/v1"), ("upstream", "app"), ("strip_prefix", "on")]),
        ("plain", [("path_prefix", "/plain/"), ("upstream", "app")])])
    forged = [("Host", "p.example"), ("X-Forwarded-Prefix", "/evil")]
    r = get(h, f, "/api/users?x=1", forged)
    assert r.status == 200, r
    assert r.json()["target"] == "/users?x=1", r
    assert _headers_seen(r).get("x-forwarded-prefix") == ["/api"], r.json()["headers"]
    r = get(h, f, "/v1/things", forged)
    assert r.json()["target"] == "/things" and \
        _headers_seen(r).get("x-forwarded-prefix") == ["/v1"], r.json()
    for target in ("/plain/x", "/elsewhere"):
        r = get(h, f, target, forged)
        assert r.status == 200 and "x-forwarded-prefix" not in _headers_seen(r), r.json()


def _redirect_app(h, answers):
    """A thread upstream answering each (bodiless) request by its path:
    answers maps a path to extra header lines; a 302 when one is a Location,
    else a 200."""
    def handle(c):
        buf = b""
        c.settimeout(10)
        while True:
            while b"\r\n\r\n" not in buf:
                b = c.recv(65536)
                if not b:
                    return
                buf += b
            head, _, buf = buf.partition(b"\r\n\r\n")
            path = head.split(b" ")[1].decode().split("?")[0]
            extra = answers.get(path, [])
            status = b"302 Found" if any(k == "Location" for k, _ in extra) else b"200 OK"
            out = b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n"
            out += b"".join(("%s: %s\r\n" % kv).encode() for kv in extra)
            c.sendall(out + b"\r\nok")
    return h.thread_server(handle)


def test_prefix_redirects(h):
    """Location and Content-Location to the upstream's own address or to the
    request's Host get the client's scheme, host and prefix; a path gets the
    prefix; Set-Cookie Path gets it; other hosts, relative references and
    values already under the prefix are left alone; rewrite_redirects = off
    leaves everything as the app sent it."""
    answers = {}
    up = _redirect_app(h, answers)
    up_text = "%s:%d" % (up[1], up[2])
    f = simple_http(h, [up], routes=[
        ("api", [("path_prefix", "/api/"), ("upstream", "app"), ("strip_prefix", "on")]),
        ("raw", [("path_prefix", "/raw/"), ("upstream", "app"), ("strip_prefix", "on"),
                 ("rewrite_redirects", "off")])])
    host = "%s:%d" % (f.addr[1], f.addr[2])
    answers.update({
        "/abs-up": [("Location", "http://%s/sub/" % up_text)],
        "/abs-up-bare": [("Location", "http://%s" % up_text)],
        "/abs-host": [("Location", "http://%s/x?y=1" % host)],
        "/net-path": [("Location", "//%s/np" % host)],
        "/rel": [("Location", "/login?next=/a")],
        "/root": [("Location", "/")],
        "/already": [("Location", "/api/done")],
        "/other": [("Location", "https://elsewhere.example/x")],
        "/relative": [("Location", "sub/")],
        "/cookie": [("Set-Cookie", "sid=1; Path=/; HttpOnly"),
                    ("Set-Cookie", "a=2; Max-Age=60; path=/x"),
                    ("Set-Cookie", "b=3; Path=/api/y"),
                    ("Set-Cookie", "c=4")],
        "/cl": [("Content-Location", "/doc.json"), ("Location", "/doc")],
    })
    want = {
        "/abs-up": "http://%s/api/sub/" % host,
        "/abs-up-bare": "http://%s/api/" % host,
        "/abs-host": "http://%s/api/x?y=1" % host,
        "/net-path": "http://%s/api/np" % host,
        "/rel": "/api/login?next=/a",
        "/root": "/api/",
        "/already": "/api/done",
        "/other": "https://elsewhere.example/x",
        "/relative": "sub/",
        "/cl": "/api/doc",
    }
    c = http_client(h, f)
    for path, loc in want.items():
        r = c.request("GET", "/api" + path, [("Host", host)])
        assert r.status == 302 and r.header("Location") == loc, \
            "GET /api%s: Location %r, want %r (%r)" % (path, r.header("Location"), loc, r)
    r = c.request("GET", "/api/cl", [("Host", host)])
    assert r.header("Content-Location") == "/api/doc.json", r
    r = c.request("GET", "/api/cookie", [("Host", host)])
    assert r.all("Set-Cookie") == ["sid=1; Path=/api; HttpOnly", "a=2; Max-Age=60; path=/api/x",
                                   "b=3; Path=/api/y", "c=4"], r.all("Set-Cookie")
    # off: exactly as the app sent them
    r = c.request("GET", "/raw/abs-up", [("Host", host)])
    assert r.header("Location") == "http://%s/sub/" % up_text, r
    r = c.request("GET", "/raw/cookie", [("Host", host)])
    assert r.all("Set-Cookie")[0] == "sid=1; Path=/; HttpOnly", r


def test_prefix_slash_redirect(h):
    """/api, when only path_prefix = /api/ would take it, is a 308 to /api/
    with the query kept, even with a catch-all route; a route naming /api
    itself is served; a keep-alive connection stays usable."""
    up = http_upstream(h)
    f = simple_http(h, [up], routes=[
        ("api", [("path_prefix", "/api/"), ("upstream", "app"), ("strip_prefix", "on")]),
        ("all", [("path_prefix", "/"), ("upstream", "app")]),
        ("v2", [("path_prefix", "/v2/"), ("upstream", "app")]),
        ("v2root", [("path", "/v2"), ("upstream", "app")]),
        ("docs", [("path_prefix", "/docs"), ("upstream", "app")]),
        ("docs2", [("path_prefix", "/docs/"), ("upstream", "app")])])
    c = http_client(h, f)
    r = c.request("GET", "/api", [("Host", "p.example")])
    assert r.status == 308 and r.header("Location") == "/api/", r
    r = c.request("GET", "/api?q=1&b=/x", [("Host", "p.example")])
    assert r.status == 308 and r.header("Location") == "/api/?q=1&b=/x", r
    r = c.request("HEAD", "/api", [("Host", "p.example")])
    assert r.status == 308 and r.body == b"", r
    # served as they are: an exact route, a prefix route without the slash
    for target in ("/v2", "/docs", "/apix", "/api/"):
        r = c.request("GET", target, [("Host", "p.example")])
        assert r.status == 200, "GET %s: %r" % (target, r)
    r = c.request("GET", "/api", [("Host", "p.example")])
    assert r.status == 308, r


def test_route_timeouts(h):
    """A route's read_timeout beats its upstream's (a long poll passes on
    one route and times out on another); its idle_timeout beats the
    listener's for a websocket both ways."""
    up = http_upstream(h)
    f = simple_http(h, [up], listener_opts={"idle_timeout": "2s"},
                    upstream_opts={"read_timeout": "300ms"},
                    routes=[("poll", [("path_prefix", "/poll/"), ("upstream", "app"),
                                      ("strip_prefix", "on"), ("read_timeout", "5s")]),
                            ("wslong", [("path_prefix", "/wslong/"), ("upstream", "app"),
                                        ("idle_timeout", "10s")]),
                            ("wsshort", [("path_prefix", "/wsshort/"), ("upstream", "app"),
                                         ("idle_timeout", "300ms")])])
    r = get(h, f, "/delay/1200")
    assert r.status == 504, r
    r = get(h, f, "/poll/delay/1200")
    assert r.status == 200, r
    # a tunnel quiet for longer than the listener's idle_timeout lives on
    s = _ws_open(h, f, "/wslong/echo")
    time.sleep(harness.scaled(2.6))  # the quiet period under test, not a wait for an event
    s.sendall(_ws_frame(b"still here"))
    assert _ws_read(s) == b"still here"
    # and one past its route's short idle_timeout is closed, long before 2s
    s = _ws_open(h, f, "/wsshort/echo")
    t0 = time.monotonic()
    kind, _, _ = harness.wait_closed(s, harness.scaled(5))
    took = time.monotonic() - t0
    assert took < harness.scaled(1.8), "short route idle_timeout closed after %.2fs" % took


def _ws_open(h, f, path):
    s = h.track(f.connect())
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(build_request("GET", path, [("Host", "p.example"), ("Connection", "Upgrade"),
                                         ("Upgrade", "websocket"), ("Sec-WebSocket-Key", key),
                                         ("Sec-WebSocket-Version", "13")]))
    head = b""
    s.settimeout(10)
    while b"\r\n\r\n" not in head:
        b = s.recv(1)
        assert b, "closed before the 101: %r" % head
        head += b
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def _ws_frame(payload):
    """A masked binary frame, as a client must send it."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        hdr = bytes([0x82, 0x80 | n])
    elif n < 65536:
        hdr = bytes([0x82, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        hdr = bytes([0x82, 0x80 | 127]) + n.to_bytes(8, "big")
    return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _ws_read(s):
    """One unmasked frame's payload from the server."""
    hdr = harness.recv_exact(s, 2)
    n = hdr[1] & 0x7F
    if n == 126:
        n = int.from_bytes(harness.recv_exact(s, 2), "big")
    elif n == 127:
        n = int.from_bytes(harness.recv_exact(s, 8), "big")
    return harness.recv_exact(s, n) if n else b""


def test_tunnel_log(h):
    """A websocket's access log line comes when the tunnel ends (none at the
    101), with the bytes each way and its length; the plain request next to
    it is logged at once."""
    up = http_upstream(h)
    f = simple_http(h, [up], global_opts={"access_log": "stdout"},
                    routes=[("ws", [("path_prefix", "/ws/"), ("upstream", "app")])])
    s = _ws_open(h, f, "/ws/echo")
    payload = os.urandom(60000)
    sent = 0
    for _ in range(5):
        frame = _ws_frame(payload)
        s.sendall(frame)
        sent += len(frame)
        assert _ws_read(s) == payload
    r = get(h, f, "/plain")
    assert r.status == 200, r
    opslib.wait_for(lambda: "/plain" in f.stdout(), 5, "the plain request's log line")
    assert " 101 " not in f.stdout(), "a tunnel logged before it ended:\n" + f.stdout()
    time.sleep(harness.scaled(0.3))  # the tunnel's length, measured below
    s.close()
    opslib.wait_for(lambda: " 101 " in f.stdout(), 5, "the tunnel's log line")
    line = [l for l in f.stdout().splitlines() if " 101 " in l][0]
    m = re.search(r'"GET /ws/echo HTTP/1.1" 101 (\d+) .* route=ws .* urt=[0-9.]+ .* in=(\d+) '
                  r'out=(\d+) duration=([0-9.]+)$', line)
    assert m, "tunnel line: %r" % line
    total, bin_, bout, dur = int(m.group(1)), int(m.group(2)), int(m.group(3)), float(m.group(4))
    assert bin_ == sent, "in=%d, the client sent %d" % (bin_, sent)
    assert 5 * 60000 <= bout < 5 * 60000 + 100, "out=%d" % bout
    assert total > bout, "BYTES (%d) counts the 101 head and the tunnel (%d)" % (total, bout)
    assert dur >= 0.3, "duration %.3f" % dur


def test_tunnel_log_json(h):
    """The same line in JSON: valid JSON with bytes_in, bytes_out and
    duration next to the usual keys."""
    import json
    up = http_upstream(h)
    f = simple_http(h, [up], global_opts={"access_log": "stdout", "access_log_format": "json"},
                    routes=[("ws", [("path_prefix", "/ws/"), ("upstream", "app")])])
    s = _ws_open(h, f, "/ws/echo")
    frame = _ws_frame(b"x" * 1000)
    s.sendall(frame)
    assert _ws_read(s) == b"x" * 1000
    s.close()
    opslib.wait_for(lambda: '"status":101' in f.stdout(), 5, "the tunnel's log line")
    o = json.loads([l for l in f.stdout().splitlines() if '"status":101' in l][0])
    assert (o["route"], o["bytes_in"], o["bytes_out"]) == ("ws", len(frame), 4 + 1000), o
    assert o["bytes"] > 1004 and o["duration"] >= 0 and o["urt"] is not None, o


if __name__ == "__main__":
    harness.main(globals())
