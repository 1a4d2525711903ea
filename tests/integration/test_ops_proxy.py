#!/usr/bin/env python3
"""PROXY protocol: v1 and v2 in (listener proxy_protocol = on), malformed
headers, and v1/v2 out (upstream proxy_protocol) checked byte for byte at a
recording upstream, in tcp and http mode."""
import re
import socket
import struct
import time

import harness
from harness import HttpClient, build_request, http_upstream
from opslib import (V2_SIG, Recorder, get_once, proxy_v1, proxy_v2, start, wait_for)


def _xff(r):
    return [v for n, v in r.json()["headers"] if n.lower() == "x-forwarded-for"]


def _access_client(h, f, target, timeout=3):
    """The client field of the access log line for target."""
    path = h.path("access.log")
    found = []

    def look():
        try:
            with open(path) as fh:
                for line in fh:
                    if '"GET %s HTTP/1.1"' % target in line:
                        found.append(line.split(" ", 1)[0])
                        return True
        except OSError:
            pass
        return False
    wait_for(look, timeout, "access log line for %s" % target)
    return found[0]


def _proxy_in(h, workers="1"):
    up = http_upstream(h)
    return up, start(h, [("web", {"upstream": "app", "proxy_protocol": "on"})],
                     [("app", [up], {})],
                     global_opts={"workers": workers, "access_log": h.path("access.log")})


def test_in_v1(h):
    """A v1 header (in the same write as the request, and on its own before
    it): its source address is X-Forwarded-For and the access log's client."""
    up, f = _proxy_in(h)
    r = get_once(f.addr, "/v1a", prefix=proxy_v1("203.0.113.9", 5555, "198.51.100.1", 80))
    assert r.status == 200 and _xff(r) == ["203.0.113.9"], "v1 TCP4: %r" % r
    assert _access_client(h, f, "/v1a") == "203.0.113.9"
    s = h.connect(f.addr)
    s.sendall(proxy_v1("2001:db8::42", 1234, "2001:db8::1", 443)[:9])
    time.sleep(0.05)
    s.sendall(proxy_v1("2001:db8::42", 1234, "2001:db8::1", 443)[9:])
    time.sleep(0.05)
    c = HttpClient(s)
    r = c.request("GET", "/v1b", [("Host", "p.test")])
    assert r.status == 200 and _xff(r) == ["2001:db8::42"], "v1 TCP6 in pieces: %r" % r
    assert _access_client(h, f, "/v1b") == "2001:db8::42"
    r = c.request("GET", "/v1c", [("Host", "p.test")])
    assert r.status == 200 and _xff(r) == ["2001:db8::42"], "second request, same conn: %r" % r
    # UNKNOWN: the socket's own address
    r = get_once(f.addr, "/v1d", prefix=b"PROXY UNKNOWN\r\n")
    assert r.status == 200 and _xff(r) == ["127.0.0.1"], "v1 UNKNOWN: %r" % r


def test_in_v2(h):
    """v2 headers (IPv4, IPv6 with a TLV, LOCAL): the source address is used
    as the client; LOCAL means the socket's address."""
    up, f = _proxy_in(h, workers="2")
    r = get_once(f.addr, "/v2a", prefix=proxy_v2("192.0.2.33", 4321, "192.0.2.1", 80))
    assert r.status == 200 and _xff(r) == ["192.0.2.33"], "v2 IPv4: %r" % r
    assert _access_client(h, f, "/v2a") == "192.0.2.33"
    tlv = b"\x04" + struct.pack("!H", 5) + b"hello"  # PP2_TYPE_NOOP
    r = get_once(f.addr, "/v2b", prefix=proxy_v2("2001:db8::7", 4321, "2001:db8::1", 80, tlv))
    assert r.status == 200 and _xff(r) == ["2001:db8::7"], "v2 IPv6 + TLV: %r" % r
    assert _access_client(h, f, "/v2b") == "2001:db8::7"
    local = V2_SIG + b"\x20\x00\x00\x00"
    r = get_once(f.addr, "/v2c", prefix=local)
    assert r.status == 200 and _xff(r) == ["127.0.0.1"], "v2 LOCAL: %r" % r


def test_in_malformed(h):
    """Malformed or missing headers: the connection is closed, no response
    byte, nothing reaches the upstream."""
    up, f = _proxy_in(h)
    req = build_request("GET", "/bad", [("Host", "p.test")])
    cases = {
        "no header": req,
        "bad v1 address": b"PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n" + req,
        "bad v1 port": b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 80\r\n" + req,
        "v1 family mismatch": b"PROXY TCP4 2001:db8::1 127.0.0.1 1 2\r\n" + req,
        "v1 bare LF": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n" + req,
        "v1 too long": b"PROXY TCP4 " + b"1" * 120 + b"\r\n" + req,
        "v2 version 3": V2_SIG + b"\x31\x11\x00\x0c" + bytes(12) + req,
        "v2 short address block": V2_SIG + b"\x21\x11\x00\x04" + bytes(4) + req,
        "v2 bad family": V2_SIG + b"\x21\x51\x00\x0c" + bytes(12) + req,
    }
    for what, data in cases.items():
        s = h.connect(f.addr)
        try:
            s.sendall(data)
        except OSError:
            pass
        kind, dt, got = harness.wait_closed(s, 5)
        assert got == b"", "%s: ferry answered %r" % (what, got[:200])
        s.close()
    c = HttpClient(h.connect(up))
    st = c.request("GET", "/stats", [("Host", "s"), ("Connection", "close")]).json()
    assert st["requests"] == 1, "malformed PROXY headers let %d requests through" % (
        st["requests"] - 1)
    r = get_once(f.addr, "/ok", prefix=proxy_v1("203.0.113.1", 1, "203.0.113.2", 2))
    assert r.status == 200


def _expected(version, src, dst):
    """The header ferry should send: src/dst are (ip, port)."""
    fn = proxy_v1 if version == "v1" else proxy_v2
    return fn(src[0], src[1], dst[0], dst[1])


def _out_tcp(h, version):
    rec = Recorder(h)
    f = start(h, [("raw", {"mode": "tcp", "upstream": "app"})],
              [("app", [rec.addr], {"proxy_protocol": version})], admin=False)
    for i in range(2):
        s = h.connect(f.addr)
        want = _expected(version, s.getsockname(), ("127.0.0.1", f.lports["raw"])) + b"hello %d" % i
        s.sendall(b"hello %d" % i)
        echoed = harness.recv_exact(s, len(want), 5)  # the recorder echoes all it got
        assert echoed == want, "tcp %s: upstream got %r, want %r" % (version, echoed, want)
        got = [c for c in rec.snapshot() if c.endswith(b"hello %d" % i)]
        assert got == [want], "tcp %s, connection %d: upstream got %r, want %r" % (
            version, i, got, want)


def test_out_tcp_v1(h):
    _out_tcp(h, "v1")


def test_out_tcp_v2(h):
    _out_tcp(h, "v2")


def _out_http(h, version):
    """Two clients, the first with two requests on one keep-alive connection:
    every upstream connection starts with the header of the client that
    opened it, followed by that client's request; no upstream connection
    carries another client's request (pooling is off for such upstreams)."""
    rec = Recorder(h, http=True)
    f = start(h, [("web", {"upstream": "app"})],
              [("app", [rec.addr], {"proxy_protocol": version, "keepalive": "8"})],
              admin=False)
    lport = f.lports["web"]
    c1 = HttpClient(h.connect(f.addr))
    c2 = HttpClient(h.connect(f.addr))
    for c, target in ((c1, "/c1a"), (c2, "/c2"), (c1, "/c1b")):
        r = c.request("GET", target, [("Host", "p.test")])
        assert r.status == 200, r
    hdr = {"/c1a": _expected(version, c1.sock.getsockname(), ("127.0.0.1", lport)),
           "/c1b": _expected(version, c1.sock.getsockname(), ("127.0.0.1", lport)),
           "/c2": _expected(version, c2.sock.getsockname(), ("127.0.0.1", lport))}
    conns = rec.snapshot()
    seen = {}
    for data in conns:
        targets = re.findall(rb"GET (\S+) HTTP/1.1\r\n", data)
        assert targets, "upstream connection without a request: %r" % data[:200]
        first = targets[0].decode()
        want = hdr[first]
        assert data.startswith(want + b"GET " + targets[0] + b" HTTP/1.1\r\n"), \
            "upstream connection for %s starts %r, want the header %r then the request" % (
                first, data[:120], want)
        owners = {hdr[t.decode()] for t in targets}
        assert owners == {want}, "one upstream connection carried requests of two clients: %r" % (
            targets,)
        assert data.count(want[:6]) == 1 and (version == "v1" or data.count(V2_SIG) == 1), \
            "more than one PROXY header on one upstream connection: %r" % data[:300]
        for t in targets:
            seen[t.decode()] = seen.get(t.decode(), 0) + 1
    assert seen == {"/c1a": 1, "/c1b": 1, "/c2": 1}, "requests seen upstream: %r" % seen


def test_out_http_v1(h):
    _out_http(h, "v1")


def test_out_http_v2(h):
    _out_http(h, "v2")


def test_in_out_chain(h):
    """PROXY in and out together: the header sent upstream carries the client
    address from the header ferry received, and the listener's address."""
    rec = Recorder(h, http=True)
    f = start(h, [("web", {"upstream": "app", "proxy_protocol": "on"})],
              [("app", [rec.addr], {"proxy_protocol": "v2"})], admin=False)
    r = get_once(f.addr, "/chain", prefix=proxy_v1("203.0.113.9", 5555, "198.51.100.1", 80))
    assert r.status == 200, r
    conns = rec.snapshot()
    want = proxy_v2("203.0.113.9", 5555, "127.0.0.1", f.lports["web"])
    assert len(conns) == 1 and conns[0].startswith(want + b"GET /chain HTTP/1.1\r\n"), \
        "upstream got %r, want %r + the request" % (conns[:1], want)


def test_in_from(h):
    """proxy_protocol_from: a client outside the list is closed before
    anything of it is read, even with a valid PROXY header (it never
    reaches the upstream, and garbage from it is not even parsed); one in
    the list is served with the header's address. On a dual-stack listener
    (bind = :PORT) a v4 client arrives v4-mapped and matches a v4 block;
    ::1 matches ::1. Refusals are counted in the error log, not logged one
    by one above debug."""
    rec = Recorder(h, http=True)

    def make():
        deny, allow = harness.free_port(), harness.free_port()
        text = harness.http_config(
            [("deny", "127.0.0.1:%d" % deny, {"upstream": "app", "proxy_protocol": "on",
                                              "proxy_protocol_from": "10.0.0.0/8"}),
             ("allow", ":%d" % allow, {"upstream": "app", "proxy_protocol": "on",
                                       "proxy_protocol_from": "10.0.0.0/8 127.0.0.0/8 ::1"})],
            [("app", [rec.addr], {})])
        return text, [("tcp", "127.0.0.1", deny), ("tcp", "127.0.0.1", allow)]
    f = h.start_ferry(make)
    deny, allow = f.addrs
    tries = [proxy_v1("203.0.113.9", 5555, "198.51.100.1", 80),
             proxy_v2("203.0.113.9", 5555, "198.51.100.1", 80),
             b"not a PROXY header at all\r\n\r\n"] * 2
    for data in tries:
        s = h.connect(deny)
        try:
            s.sendall(data + build_request("GET", "/denied", [("Host", "p.test")]))
        except OSError:
            pass  # already closed: fine
        kind, dt, got = harness.wait_closed(s, 5)
        assert got == b"", "refused source got an answer: %r" % got[:200]
        s.close()
    for host, src, dst in (("127.0.0.1", "203.0.113.9", "198.51.100.1"),
                           ("::1", "2001:db8::42", "2001:db8::1")):
        r = get_once(("tcp", host, allow[2]), "/allowed", prefix=proxy_v1(src, 5555, dst, 80))
        assert r.status == 200, "allowed source %s: %r" % (host, r)
    conns = rec.snapshot()
    assert not [c for c in conns if b"/denied" in c], "a refused source reached the upstream"
    assert b"".join(conns).count(b"GET /allowed HTTP/1.1\r\n") == 2, conns
    xff = sorted(re.findall(rb"X-Forwarded-For: (\S+)\r\n", b"".join(conns)))
    assert xff == [b"2001:db8::42", b"203.0.113.9"], "X-Forwarded-For upstream: %r" % xff
    err = f.stderr()
    assert "malformed PROXY header" not in err, "a refused source's bytes were parsed:\n" + err
    lines = [l for l in err.splitlines() if "proxy_protocol_from" in l]
    assert len(lines) == 1 and "[warn]" in lines[0] and "listener deny" in lines[0], \
        "want one warning for %d refusals, got:\n%s" % (len(tries), "\n".join(lines))


harness.main(globals())
