#!/usr/bin/env python3
"""HTTP/2: ALPN h2 on TLS listeners, h2c with prior knowledge, streams proxied
to HTTP/1.1 upstreams, the RFC 9113 rules and the abuse limits.

Frames are built with hyperframe and header blocks with hpack (Debian's
python3-h2 brings both; the system interpreter has them), so that a case can
send what no well-behaved client would. The corpus follows h2spec's
sections; each case names the answer it must get: a GOAWAY or RST_STREAM
with an error code, a response status, or a connection that stays usable."""
import hashlib
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time

import harness
from harness import fmt_addr, free_port, http_upstream, scaled

try:
    import hpack
    from hyperframe import frame as hf
    from h2.errors import ErrorCodes
except ImportError:  # pragma: no cover - reported as a skip
    hpack = None

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def need_h2():
    if hpack is None:
        raise harness.Skip("python3-h2 (hpack, hyperframe) is missing for this interpreter")


def make_cert(h, name):
    if not shutil.which("openssl"):
        raise harness.Skip("the openssl command is not installed")
    cert, key = h.path(name + ".pem"), h.path(name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=" + name, "-addext", "subjectAltName=DNS:" + name],
                   check=True, capture_output=True, timeout=30)
    return cert, key


def start(h, up, tls=True, h2c=True, listener_extra=None, global_extra=None, cert=None,
          upstream_extra=None, tls_extra=None):
    """ferry with a TLS listener "tls" (when tls) and a cleartext one "plain"
    (h2c = on when h2c), both in front of UP; a route /held/ goes to an
    upstream that never answers (its requests wait). listener_extra goes
    to both listeners, tls_extra to the TLS one only."""
    need_h2()
    cert = cert or (make_cert(h, "a.test") if tls else None)
    sink = h.track(socket.socket())
    sink.bind(("127.0.0.1", 0))
    sink.listen(64)  # never accepted: connects succeed, nothing is read or answered

    def make():
        g = {"workers": "1", "shutdown_timeout": "5s", "log_level": "info"}
        g.update(global_extra or {})
        lines = ["[global]"] + ["%s = %s" % kv for kv in g.items()]
        addrs = []
        if tls:
            a = ("tcp", "127.0.0.1", free_port())
            addrs.append(a)
            lines += ["", "[listener tls]", "bind = " + fmt_addr(a), "upstream = app",
                      "tls_cert = %s %s" % cert]
            lines += ["%s = %s" % kv for kv in (listener_extra or {}).items()]
            lines += ["%s = %s" % kv for kv in (tls_extra or {}).items()]
        p = ("tcp", "127.0.0.1", free_port())
        addrs.append(p)
        lines += ["", "[listener plain]", "bind = " + fmt_addr(p), "upstream = app"]
        if h2c:
            lines.append("h2c = on")
        lines += ["%s = %s" % kv for kv in (listener_extra or {}).items()]
        lines += ["", "[upstream app]", "server = " + fmt_addr(up)]
        lines += ["%s = %s" % kv for kv in (upstream_extra or {}).items()]
        lines += ["", "[upstream held]", "server = 127.0.0.1:%d" % sink.getsockname()[1],
                  "read_timeout = 60s",
                  "", "[route held]", "path_prefix = /held/", "upstream = held"]
        return "\n".join(lines) + "\n", addrs
    f = h.start_ferry(make)
    f.cert = cert
    admin = (global_extra or {}).get("admin")
    if admin:  # the admin endpoint opens after the listeners (slower under ASan)
        host, _, port = admin.rpartition(":")
        addr, deadline = ("tcp", host, int(port)), time.monotonic() + scaled(10)
        while not harness.is_listening(f.pid, addr):
            assert time.monotonic() < deadline and f.alive(), "admin endpoint not listening"
            time.sleep(0.02)
    return f


def tls_sock(h, f, alpn=("h2",), i=0):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(f.cert[0])
    ctx.set_alpn_protocols(list(alpn))
    s = ctx.wrap_socket(h.track(f.connect(i, 5)), server_hostname="a.test")
    s.settimeout(10)
    return h.track(s)


def raw_frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid & 0x7fffffff) + payload


class Client:
    """One HTTP/2 connection driven frame by frame."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.eof = False
        self.got_settings_ack = False

    def send(self, *parts):
        data = b"".join(p.serialize() if hasattr(p, "serialize") else p for p in parts)
        self.s.sendall(data)

    def start(self, settings=None):
        sf = hf.SettingsFrame(0)
        sf.settings = dict(settings or {})
        self.send(PREFACE, sf)

    def block(self, headers):
        return self.enc.encode(headers)

    def headers(self, sid, headers, end_stream=True, end_headers=True, raw_block=None):
        fr = hf.HeadersFrame(sid)
        fr.data = raw_block if raw_block is not None else self.block(headers)
        if end_stream:
            fr.flags.add("END_STREAM")
        if end_headers:
            fr.flags.add("END_HEADERS")
        return fr

    def data(self, sid, payload, end_stream=False):
        fr = hf.DataFrame(sid)
        fr.data = payload
        if end_stream:
            fr.flags.add("END_STREAM")
        return fr

    def read_frame(self, deadline):
        while True:
            if len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + length:
                    head, body = self.buf[:9], self.buf[9:9 + length]
                    self.buf = self.buf[9 + length:]
                    fr, _ = hf.Frame.parse_frame_header(memoryview(head))
                    fr.parse_body(memoryview(body))
                    return fr
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                return None
            self.s.settimeout(left)
            try:
                b = self.s.recv(65536)
            except socket.timeout:
                return None
            except (ConnectionResetError, ssl.SSLError, OSError):
                b = b""
            if not b:
                self.eof = True
                continue
            self.buf += b

    def outcome(self, sid=1, timeout=5.0, want_body=False):
        """The first telling answer: ("goaway", code), ("rst", code) on SID,
        ("status", n[, headers, body]) for SID, ("closed",) or ("timeout",).
        A PING sent first comes back as ("ok",) when nothing else did."""
        deadline = time.monotonic() + scaled(timeout)
        status, hdrs, body = None, None, b""
        while True:
            fr = self.read_frame(deadline)
            if fr is None:
                if status is not None:
                    return ("status", status, hdrs, body)
                return ("closed",) if self.eof else ("timeout",)
            if isinstance(fr, hf.GoAwayFrame):
                if fr.error_code != 0 or status is None:
                    return ("goaway", ErrorCodes(fr.error_code).name
                            if fr.error_code in iter(ErrorCodes._value2member_map_) else fr.error_code)
            elif isinstance(fr, hf.SettingsFrame) and "ACK" in fr.flags:
                self.got_settings_ack = True
            elif isinstance(fr, hf.RstStreamFrame) and fr.stream_id == sid:
                return ("rst", ErrorCodes(fr.error_code).name
                        if fr.error_code in iter(ErrorCodes._value2member_map_) else fr.error_code)
            elif isinstance(fr, hf.PingFrame) and "ACK" in fr.flags and fr.opaque_data == b"ferrypng":
                if status is None:
                    return ("ok",)
            elif isinstance(fr, (hf.HeadersFrame, hf.ContinuationFrame)) and fr.stream_id == sid:
                hs = self.dec.decode(fr.data, raw=False)
                code = dict(hs).get(":status")
                if code and not code.startswith("1"):
                    status, hdrs = int(code), hs
                if "END_STREAM" in fr.flags and status is not None:
                    return ("status", status, hdrs, body) if want_body else ("status", status)
            elif isinstance(fr, (hf.HeadersFrame, hf.ContinuationFrame)):
                self.dec.decode(fr.data, raw=False)  # keep the table in step
            elif isinstance(fr, hf.DataFrame):
                # every stream's DATA counts against the connection window
                if fr.flow_controlled_length:
                    wu = hf.WindowUpdateFrame(0)
                    wu.window_increment = fr.flow_controlled_length
                    wu2 = hf.WindowUpdateFrame(fr.stream_id)
                    wu2.window_increment = fr.flow_controlled_length
                    try:
                        self.send(wu, wu2)
                    except OSError:
                        pass
                if fr.stream_id != sid:
                    continue
                body += fr.data
                if "END_STREAM" in fr.flags and status is not None:
                    return ("status", status, hdrs, body) if want_body else ("status", status)

    def ping(self):
        p = hf.PingFrame(0)
        p.opaque_data = b"ferrypng"
        return p


def req(path="/", method="GET", authority="a.test", extra=()):
    return [(":method", method), (":scheme", "https"), (":path", path),
            (":authority", authority)] + list(extra)


# --------------------------------------------------------------- the corpus
#
# Each case: (section, name, fn(client) -> sends, allowed outcomes). fn sends
# after the preface and SETTINGS; outcomes are tuples as Client.outcome gives
# them (without headers and body). Where RFC 9113 allows a stream error or a
# connection error, both are listed.

PE, FSE, CE, FCE, SC = "PROTOCOL_ERROR", "FRAME_SIZE_ERROR", "COMPRESSION_ERROR", \
    "FLOW_CONTROL_ERROR", "STREAM_CLOSED"


def stream_or_conn(code):
    return [("rst", code), ("goaway", code)]


def c_headers(extra=(), path="/", method="GET", end=True, pseudo=None):
    def fn(c):
        hs = pseudo if pseudo is not None else req(path, method, extra=extra)
        c.send(c.headers(1, hs, end_stream=end))
    return fn


def c_raw(*frames):
    def fn(c):
        c.send(*[f(c) if callable(f) else f for f in frames])
    return fn


def c_then_ping(fn):
    def g(c):
        fn(c)
        c.send(c.ping())
    return g


def hdr_block(c, hs):
    return c.block(hs)


def bad_block(data):
    def fn(c):
        fr = hf.HeadersFrame(1)
        fr.data = data
        fr.flags.add("END_STREAM")
        fr.flags.add("END_HEADERS")
        c.send(fr)
    return fn


def ok_status(n):
    return [("status", n)]


def settings_frame(pairs, flags=0, sid=0):
    return raw_frame(0x4, flags, sid, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def window_update(sid, inc):
    return raw_frame(0x8, 0, sid, struct.pack(">I", inc))


def corpus_cases():
    C = []

    def add(section, name, fn, allowed):
        C.append((section, name, fn, allowed))

    # 3.4 / 3.5 preface and the first frame
    add("3.5", "preface then a PING is answered", c_then_ping(lambda c: None), [("ok",)])
    add("3.5", "first frame not SETTINGS", None, [("goaway", PE), ("closed",)])
    add("3.5", "bad preface", None, [("goaway", PE), ("closed",)])
    # 4.2 frame size
    add("4.2", "DATA larger than MAX_FRAME_SIZE",
        c_raw(lambda c: c.headers(1, req("/", "POST"), end_stream=False),
              raw_frame(0x0, 0, 1, b"x" * 16385)), stream_or_conn(FSE))
    add("4.2", "HEADERS larger than MAX_FRAME_SIZE",
        c_raw(raw_frame(0x1, 0x5, 1, b"\x00" * 16385)), [("goaway", FSE)])
    add("6.7", "PING of 7 bytes", c_raw(raw_frame(0x6, 0, 0, b"1234567")), [("goaway", FSE)])
    add("6.7", "PING of 9 bytes", c_raw(raw_frame(0x6, 0, 0, b"123456789")), [("goaway", FSE)])
    add("6.5", "SETTINGS of 7 bytes", c_raw(raw_frame(0x4, 0, 0, b"\x00" * 7)), [("goaway", FSE)])
    add("6.5", "SETTINGS ACK with a payload", c_raw(raw_frame(0x4, 1, 0, b"\x00" * 6)),
        [("goaway", FSE)])
    add("6.9", "WINDOW_UPDATE of 3 bytes", c_raw(raw_frame(0x8, 0, 0, b"\x00" * 3)),
        [("goaway", FSE)])
    add("6.4", "RST_STREAM of 3 bytes",
        c_raw(lambda c: c.headers(1, req("/hang"), end_stream=True), raw_frame(0x3, 0, 1, b"\0" * 3)),
        [("goaway", FSE)])
    add("6.3", "PRIORITY of 4 bytes", c_raw(raw_frame(0x2, 0, 1, b"\0" * 4)),
        stream_or_conn(FSE))
    add("6.8", "GOAWAY of 7 bytes", c_raw(raw_frame(0x7, 0, 0, b"\0" * 7)), [("goaway", FSE)])
    # 5.1 stream states
    add("5.1", "DATA on an idle stream", c_raw(raw_frame(0x0, 1, 1, b"x")), [("goaway", PE)])
    add("5.1", "RST_STREAM on an idle stream", c_raw(raw_frame(0x3, 0, 1, b"\0\0\0\x08")),
        [("goaway", PE)])
    add("5.1", "WINDOW_UPDATE on an idle stream", c_raw(window_update(1, 100)), [("goaway", PE)])
    add("5.1", "CONTINUATION on an idle stream", c_raw(raw_frame(0x9, 4, 1, b"")),
        [("goaway", PE)])
    add("5.1", "DATA after END_STREAM",
        c_raw(lambda c: c.headers(1, req("/hang"), end_stream=True), raw_frame(0x0, 1, 1, b"x")),
        stream_or_conn(SC))
    add("5.1", "HEADERS after END_STREAM (not trailers)",
        c_raw(lambda c: c.headers(1, req("/hang"), end_stream=True),
              lambda c: c.headers(1, req("/hang"), end_stream=True)), stream_or_conn(SC) +
        stream_or_conn(PE))
    add("5.1.1", "even stream id", c_raw(lambda c: c.headers(2, req("/"))), [("goaway", PE)])
    # nghttp2 cannot tell a lower new id from a late frame on a stream it
    # forgot: it ignores the block, and the connection goes on.
    add("5.1.1", "stream id going down is ignored",
        c_then_ping(c_raw(lambda c: c.headers(5, req("/hang")), lambda c: c.headers(3, req("/")))),
        [("ok",)])
    add("5.1", "HEADERS on stream 0", c_raw(lambda c: raw_frame(0x1, 5, 0, c.block(req("/")))), [("goaway", PE)])
    add("6.1", "DATA on stream 0", c_raw(raw_frame(0x0, 0, 0, b"x")), [("goaway", PE)])
    add("6.4", "RST_STREAM on stream 0", c_raw(raw_frame(0x3, 0, 0, b"\0\0\0\x08")),
        [("goaway", PE)])
    add("6.5", "SETTINGS on a stream", c_raw(settings_frame([], sid=1)), [("goaway", PE)])
    add("6.7", "PING on a stream", c_raw(raw_frame(0x6, 0, 1, b"12345678")), [("goaway", PE)])
    add("6.8", "GOAWAY on a stream", c_raw(raw_frame(0x7, 0, 1, b"\0" * 8)), [("goaway", PE)])
    add("6.2", "header block interrupted by DATA",
        c_raw(lambda c: c.headers(1, req("/"), end_stream=False, end_headers=False),
              raw_frame(0x0, 0, 1, b"x")), [("goaway", PE)])
    add("6.10", "CONTINUATION on another stream",
        c_raw(lambda c: c.headers(1, req("/"), end_headers=False), raw_frame(0x9, 4, 3, b"")),
        [("goaway", PE)])
    add("5.5", "unknown frame type is ignored", c_then_ping(c_raw(raw_frame(0x20, 0, 0, b"abc"))),
        [("ok",)])
    add("5.5", "unknown frame inside a header block",
        c_raw(lambda c: c.headers(1, req("/"), end_headers=False), raw_frame(0x20, 0, 1, b"")),
        [("goaway", PE)])
    add("5.3", "PRIORITY on an idle stream is fine",
        c_then_ping(c_raw(raw_frame(0x2, 0, 9, struct.pack(">IB", 0, 16)))), [("ok",)])
    add("5.3", "PRIORITY depending on itself",
        c_raw(raw_frame(0x2, 0, 1, struct.pack(">IB", 1, 16))), stream_or_conn(PE))
    add("5.3", "HEADERS depending on itself",
        c_raw(lambda c: raw_frame(0x1, 0x25, 1, struct.pack(">IB", 1, 16) + c.block(req("/")))),
        stream_or_conn(PE))
    # 6.9 flow control
    add("6.9", "WINDOW_UPDATE of 0 on the connection", c_raw(window_update(0, 0)),
        [("goaway", PE)])
    add("6.9", "WINDOW_UPDATE of 0 on a stream",
        c_raw(lambda c: c.headers(1, req("/hang")), window_update(1, 0)), stream_or_conn(PE))
    add("6.9.1", "connection window beyond 2^31-1", c_raw(window_update(0, 0x7fffffff)),
        [("goaway", FCE)])
    add("6.9.1", "stream window beyond 2^31-1",
        c_raw(lambda c: c.headers(1, req("/hang")), window_update(1, 0x7fffffff)),
        stream_or_conn(FCE))
    add("6.9.2", "INITIAL_WINDOW_SIZE beyond 2^31-1",
        c_raw(settings_frame([(0x4, 0x80000000)])), [("goaway", FCE)])
    add("6.9", "DATA beyond the stream window (request waits, unread)",
        c_raw(lambda c: c.headers(1, req("/held/x", "PUT"), end_stream=False),
              *[raw_frame(0x0, 0, 1, b"x" * 16384) for _ in range(4)],
              raw_frame(0x0, 0, 1, b"x" * 16)), stream_or_conn(FCE))
    # 6.5.2 settings values
    add("6.5.2", "MAX_FRAME_SIZE below 16384", c_raw(settings_frame([(0x5, 16383)])),
        [("goaway", PE)])
    add("6.5.2", "MAX_FRAME_SIZE above 2^24-1", c_raw(settings_frame([(0x5, 1 << 24)])),
        [("goaway", PE)])
    add("6.5.2", "ENABLE_PUSH of 2", c_raw(settings_frame([(0x2, 2)])), [("goaway", PE)])
    add("6.5.2", "unknown setting is ignored", c_then_ping(c_raw(settings_frame([(0xff, 1)]))),
        [("ok",)])
    add("6.5.3", "SETTINGS are acknowledged", c_then_ping(c_raw(settings_frame([(0x3, 50)]))),
        [("ok",)])
    # 4.3 / HPACK
    add("HPACK", "indexed field 0", bad_block(b"\x80"), [("goaway", CE)])
    add("HPACK", "index beyond the tables", bad_block(b"\xff\x7f"), [("goaway", CE)])
    add("HPACK", "table size update above the limit", bad_block(b"\x3f\xe2\x1f" + b"\x82"),
        [("goaway", CE)])
    add("HPACK", "table size update after a field", bad_block(b"\x82\x20"), [("goaway", CE)])
    add("HPACK", "Huffman string with EOS", bad_block(b"\x00\x84\xff\xff\xff\xff\x01a"),
        [("goaway", CE)])
    add("HPACK", "integer cut short", bad_block(b"\x82\x7f"), [("goaway", CE)])
    add("HPACK", "string longer than the block", bad_block(b"\x00\x05ab"), [("goaway", CE)])
    # 8.2 fields
    bad = stream_or_conn(PE) + [("status", 400)]
    add("8.2", "uppercase field name", c_headers([("X-Up", "1")]), bad)
    add("8.2.2", "connection field", c_headers([("connection", "keep-alive")]), bad)
    add("8.2.2", "keep-alive field", c_headers([("keep-alive", "5")]), bad)
    add("8.2.2", "proxy-connection field", c_headers([("proxy-connection", "x")]), bad)
    add("8.2.2", "transfer-encoding field", c_headers([("transfer-encoding", "chunked")]), bad)
    add("8.2.2", "upgrade field", c_headers([("upgrade", "websocket")]), bad)
    add("8.2.2", "te other than trailers", c_headers([("te", "gzip")]), bad)
    add("8.2.2", "te: trailers is fine", c_headers([("te", "trailers")]), ok_status(200))
    add("8.3", "unknown pseudo-field", c_headers(pseudo=req("/") + [(":foo", "x")]), bad)
    add("8.3", ":status in a request", c_headers(pseudo=[(":status", "200")] + req("/")), bad)
    add("8.3", "pseudo-field after a field",
        c_headers(pseudo=[(":method", "GET"), (":scheme", "https"), ("x", "1"), (":path", "/"),
                          (":authority", "a.test")]), bad)
    add("8.3.1", "two :method", c_headers(pseudo=req("/") + [(":method", "GET")]), bad)
    add("8.3.1", "two :path", c_headers(pseudo=req("/") + [(":path", "/")]), bad)
    add("8.3.1", "no :method", c_headers(pseudo=req("/")[1:]), bad)
    add("8.3.1", "no :path",
        c_headers(pseudo=[(":method", "GET"), (":scheme", "https"), (":authority", "a.test")]), bad)
    add("8.3.1", "no :scheme",
        c_headers(pseudo=[(":method", "GET"), (":path", "/"), (":authority", "a.test")]), bad)
    add("8.3.1", "empty :path", c_headers(pseudo=req("")), bad)
    add("8.3.1", ":path without a slash", c_headers(pseudo=req("abc")), bad)
    add("8.2.1", "CR in a value", c_headers([("x-a", "a\rb")]), bad)
    add("8.2.1", "LF in a value (a smuggled line)", c_headers([("x-a", "a\r\nx-b: c")]), bad)
    add("8.2.1", "NUL in a value", c_headers([("x-a", "a\x00b")]), bad)
    add("8.2.1", "space in a name", c_headers([("x a", "1")]), bad)
    add("8.2.1", "leading space in a value", c_headers([("x-a", " 1")]), bad)
    add("8.2.1", "colon inside a name", c_headers([("x:a", "1")]), bad)
    add("8.3.1", ":authority and host disagree", c_headers([("host", "b.test")]), bad)
    add("8.3.1", ":authority and host agree", c_headers([("host", "a.test")]), ok_status(200))
    add("8.3.1", "host without :authority",
        c_headers(pseudo=[(":method", "GET"), (":scheme", "https"), (":path", "/"),
                          ("host", "a.test")]), ok_status(200))
    add("8.1.1", "content-length larger than the DATA",
        c_raw(lambda c: c.headers(1, req("/", "POST", extra=[("content-length", "10")]),
                                  end_stream=False), raw_frame(0x0, 1, 1, b"12345")),
        stream_or_conn(PE))
    add("8.1.1", "content-length smaller than the DATA",
        c_raw(lambda c: c.headers(1, req("/", "POST", extra=[("content-length", "3")]),
                                  end_stream=False), raw_frame(0x0, 1, 1, b"12345")),
        stream_or_conn(PE))
    add("8.1.1", "content-length not a number",
        c_headers([("content-length", "abc")], method="POST"), bad)
    add("8.5", "CONNECT without :authority",
        c_headers(pseudo=[(":method", "CONNECT")]), bad)
    add("8.1", "trailers without END_STREAM",
        c_raw(lambda c: c.headers(1, req("/", "POST"), end_stream=False),
              lambda c: c.headers(1, [("x-t", "1")], end_stream=False)), stream_or_conn(PE))
    add("8.1", "trailers with a pseudo-field",
        c_raw(lambda c: c.headers(1, req("/", "POST"), end_stream=False),
              lambda c: c.headers(1, [(":path", "/")], end_stream=True)), stream_or_conn(PE))
    add("8.1", "trailers are accepted (and dropped)",
        c_raw(lambda c: c.headers(1, req("/", "POST"), end_stream=False),
              raw_frame(0x0, 0, 1, b"abc"), lambda c: c.headers(1, [("x-t", "1")])),
        ok_status(200))
    add("8.1", "HEAD gets headers only", c_headers(method="HEAD"), ok_status(200))
    add("8.1", "a body with its content-length",
        c_raw(lambda c: c.headers(1, req("/", "POST", extra=[("content-length", "5")]),
                                  end_stream=False), raw_frame(0x0, 1, 1, b"12345")),
        ok_status(200))
    add("8.1", "a method that is not a token", c_headers(method="G T"), bad)
    add("6.7", "PING is answered", c_then_ping(lambda c: None), [("ok",)])
    add("6.4", "RST_STREAM from the client keeps the connection",
        c_then_ping(c_raw(lambda c: c.headers(1, req("/hang")), raw_frame(0x3, 0, 1, b"\0\0\0\x08"))),
        [("ok",)])
    add("6.8", "GOAWAY from the client", c_raw(raw_frame(0x7, 0, 0, b"\0" * 8)),
        [("closed",), ("goaway", "NO_ERROR"), ("timeout",)])
    add("5.1.2", "streams over h2_max_concurrent_streams are refused",
        c_raw(*[(lambda i: lambda c: c.headers(2 * i + 1, req("/hang")))(i) for i in range(8)],
              lambda c: setattr(c, "sid", 17) or c.headers(17, req("/"))),
        stream_or_conn("REFUSED_STREAM") + stream_or_conn(PE))
    return C


def run_case(h, f, i, name, fn, section):
    s = h.track(f.connect(i, 5))
    c = Client(s)
    if name == "first frame not SETTINGS":
        c.send(PREFACE, c.headers(1, req("/")))
    elif name == "bad preface":
        c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + hf.SettingsFrame(0).serialize())
    else:
        c.start()
        fn(c)
    got = c.outcome(sid=getattr(c, "sid", 1), timeout=5)
    s.close()
    return got[:2] if got[0] != "ok" else got


def test_corpus(h):
    """The conformance corpus over h2c (each case on a connection of its own);
    every case gets one of the answers RFC 9113 allows it, and ferry serves
    a normal request at the end."""
    up = http_upstream(h)
    f = start(h, up, tls=False, listener_extra={"h2_max_concurrent_streams": "8"})
    cases = corpus_cases()
    assert len(cases) >= 80, len(cases)
    failed = []
    for section, name, fn, allowed in cases:
        got = run_case(h, f, 0, name, fn, section)
        ok = got in allowed
        print("%-6s %-55s %-28s %s" % (section, name, got, "ok" if ok else "WANTED %s" % allowed))
        if not ok:
            failed.append((section, name, got, allowed))
    assert not failed, "%d of %d cases failed: %s" % (len(failed), len(cases), failed)
    assert f.alive()
    c = Client(h.track(f.connect(0, 5)))
    c.start()
    c.send(c.headers(1, req("/")))
    assert c.outcome() == ("status", 200)



# ------------------------------------------------------------------ clients


def metric(admin, name, **labels):
    s = socket.create_connection(admin[1:], timeout=5)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = harness.recv_until_eof(s, 5).decode()
    s.close()
    want = name + "{" + ",".join('%s="%s"' % kv for kv in labels.items()) + "}"
    for line in data.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return None


def curl(args, timeout=30):
    if not shutil.which("curl"):
        raise harness.Skip("curl is not installed")
    p = subprocess.run(["curl", "-sS", "--max-time", "20"] + args, capture_output=True,
                       timeout=timeout)
    assert p.returncode == 0, (args, p.returncode, p.stderr)
    return p.stdout


def test_clients(h):
    """curl (ALPN h2 and h2c prior knowledge), nghttp and h2load get their
    answers over HTTP/2; HTTP/1.1 still works on both listeners; the access
    log says HTTP/2.0 and the upstream sees X-Forwarded-Proto https."""
    up = http_upstream(h)
    f = start(h, up)
    tls, plain = f.addrs
    base = ["--cacert", f.cert[0], "--resolve", "a.test:%d:127.0.0.1" % tls[2]]
    out = curl(base + ["--http2", "-w", "\n%{http_version}", "https://a.test:%d/x" % tls[2]])
    body, ver = out.rsplit(b"\n", 1)
    assert ver == b"2", out
    hs = dict((k.lower(), v) for k, v in json.loads(body)["headers"])
    assert hs["x-forwarded-proto"] == "https" and hs["host"] == "a.test:%d" % tls[2], hs
    assert json.loads(body)["version"] == "1.1"
    out = curl(["--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version}",
                "http://127.0.0.1:%d/" % plain[2]])
    assert out == b"2", out
    for args in (base + ["--http1.1", "https://a.test:%d/" % tls[2]],
                 ["--http1.1", "http://127.0.0.1:%d/" % plain[2]]):
        out = curl(args[:-1] + ["-o", "/dev/null", "-w", "%{http_version}", args[-1]])
        assert out == b"1.1", out
    if shutil.which("nghttp"):
        p = subprocess.run(["nghttp", "-nv", "http://127.0.0.1:%d/n" % plain[2]],
                           capture_output=True, timeout=30)
        assert p.returncode == 0 and b":status: 200" in p.stdout, p.stdout[-2000:]
    if shutil.which("h2load"):
        p = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "32",
                            "http://127.0.0.1:%d/" % plain[2]], capture_output=True, timeout=60)
        out = p.stdout.decode()
        assert "2000 succeeded, 0 failed" in out and "2000 2xx" in out, out
    log = f.stdout()
    assert '"GET /x HTTP/2.0" 200' in log and '"GET / HTTP/1.1" 200' in log, log[-2000:]


def test_alpn_choice(h):
    """A client offering h2 and http/1.1 gets h2; with alpn = http/1.1 it
    gets http/1.1; a client offering only http/1.1 gets it."""
    up = http_upstream(h)
    f = start(h, up)
    assert tls_sock(h, f, ("h2", "http/1.1")).selected_alpn_protocol() == "h2"
    assert tls_sock(h, f, ("http/1.1",)).selected_alpn_protocol() == "http/1.1"
    g = start(h, up, cert=f.cert, tls_extra={"alpn": "http/1.1"}, h2c=False)
    assert tls_sock(h, g, ("h2", "http/1.1")).selected_alpn_protocol() == "http/1.1"
    # ALPN h2 then HTTP/2 over TLS, frame by frame
    c = Client(tls_sock(h, f, ("h2",)))
    c.start()
    c.send(c.headers(1, req("/")))
    assert c.outcome() == ("status", 200)


def test_config_errors(h):
    """h2c on a TLS or tcp listener, alpn on a cleartext one, a protocol
    ferry does not speak: -t names the file and line."""
    need_h2()
    cert = make_cert(h, "a.test")
    for extra, want in ((["h2c = on", "tls_cert = %s %s" % cert], "h2c applies to a cleartext"),
                        (["alpn = h2"], "alpn applies to a TLS listener"),
                        (["alpn = h3", "tls_cert = %s %s" % cert], "'h3' is not a protocol"),
                        (["mode = tcp", "h2_max_concurrent_streams = 5"], "applies to mode http"),
                        (["h2_max_concurrent_streams = 0"], "h2_max_concurrent_streams")):
        path = h.write("bad.ini", "\n".join(["[listener web]", "bind = 127.0.0.1:1",
                                              "upstream = app"] + extra +
                                             ["", "[upstream app]", "server = 127.0.0.1:2", ""]))
        p = subprocess.run([h.ferry_bin, "-t", "-c", path], capture_output=True, timeout=30)
        err = p.stderr.decode()
        assert p.returncode != 0 and want in err and "bad.ini:" in err, (extra, err)


def test_bodies(h):
    """Large bodies both ways, with and without content-length (chunked to
    the upstream), and a chunked response, arrive whole."""
    up = http_upstream(h)
    f = start(h, up, tls=False)
    url = "http://127.0.0.1:%d" % f.addrs[0][2]
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = h.path("up.bin")
    with open(path, "wb") as fh:
        fh.write(data)
    want = hashlib.sha256(data).hexdigest()
    for extra in ([], ["-H", "Transfer-Encoding: chunked"]):
        got = json.loads(curl(["--http2-prior-knowledge", "--data-binary", "@" + path] + extra +
                              [url + "/up"]))
        assert got["body_length"] == len(data) and got["body_sha256"] == want, (extra, got)
        hs = dict((k.lower(), v) for k, v in got["headers"])
        assert ("transfer-encoding" in hs) == bool(extra), hs
    for kind in ("bytes", "chunked"):
        got = curl(["--http2-prior-knowledge", "%s/%s/%d" % (url, kind, 2500000)])
        assert len(got) == 2500000, (kind, len(got))
        ref = curl(["--http1.1", "%s/%s/%d" % (url, kind, 2500000)])
        assert got == ref, kind


def test_fields(h):
    """Cookie crumbs are joined; :authority becomes Host; the request id
    comes back; a request over max_header_size gets 431."""
    up = http_upstream(h)
    f = start(h, up, tls=False, listener_extra={"max_header_size": "4k"})
    c = Client(h.track(f.connect(0, 5)))
    c.start()
    c.send(c.headers(1, req("/f", extra=[("cookie", "a=1"), ("cookie", "b=2"), ("x-y", "z")])))
    got = c.outcome(want_body=True)
    assert got[0] == "status" and got[1] == 200, got
    hs = dict((k.lower(), v) for k, v in json.loads(got[3])["headers"])
    assert hs["cookie"] == "a=1; b=2" and hs["host"] == "a.test" and hs["x-y"] == "z", hs
    assert "x-request-id" in dict(got[2]), got[2]
    c.send(c.headers(3, req("/big", extra=[("x-big", "v" * 6000)])))
    assert c.outcome(sid=3)[:2] == ("status", 431)
    c.send(c.headers(5, req("/after")))
    assert c.outcome(sid=5)[:2] == ("status", 200), "the connection did not survive a 431"


def test_backpressure(h):
    """A client that opens no window holds a large response at the
    upstream, not in ferry: its memory stays flat while the stream waits."""
    up = http_upstream(h)
    f = start(h, up, tls=False)
    rss0 = f.rss_kib()
    c = Client(h.track(f.connect(0, 5)))
    c.start()
    c.send(c.headers(1, req("/bytes/200000000")))
    # read what the initial windows allow, never opening them
    deadline = time.monotonic() + scaled(3)
    got = 0
    while time.monotonic() < deadline:
        fr = c.read_frame(deadline)
        if fr is None:
            break
        if isinstance(fr, hf.DataFrame):
            got += len(fr.data)
    assert got <= 65535, got
    grown = f.rss_kib() - rss0
    print("DATA received %d, RSS grew %d KiB" % (got, grown))
    assert grown < 8 * 1024, "ferry buffered the response: RSS +%d KiB" % grown
    # then the window opens and the stream goes on
    wu = hf.WindowUpdateFrame(0)
    wu.window_increment = 1 << 20
    wu1 = hf.WindowUpdateFrame(1)
    wu1.window_increment = 1 << 20
    c.send(wu, wu1)
    more = 0
    deadline = time.monotonic() + scaled(5)
    while more < 1 << 20:
        fr = c.read_frame(deadline)
        assert fr is not None, "no DATA after the window opened (%d)" % more
        if isinstance(fr, hf.DataFrame):
            more += len(fr.data)


def flood(c, frames, n):
    try:
        for i in range(0, n, 50):
            c.send(*frames(min(50, n - i)))
    except OSError:
        pass


def abuse_case(h, f, admin, kind, send):
    c = Client(h.track(f.connect(0, 5)))
    c.start()
    send(c)
    got = c.outcome(timeout=10)
    assert got == ("goaway", "ENHANCE_YOUR_CALM"), (kind, got)
    # others are still served
    d = Client(h.track(f.connect(0, 5)))
    d.start()
    d.send(d.headers(1, req("/")))
    assert d.outcome() == ("status", 200), kind
    assert metric(admin, "ferry_h2_abuse_total", listener="plain", kind=kind) >= 1, kind
    assert metric(admin, "ferry_h2_connections_total", listener="plain") >= 2, kind


def test_abuse(h):
    """Each attack ends its connection with GOAWAY ENHANCE_YOUR_CALM, is
    counted in ferry_h2_abuse_total{kind}, and other connections are
    served; memory stays bounded."""
    up = http_upstream(h)
    admin = ("tcp", "127.0.0.1", free_port())
    f = start(h, up, tls=False, global_extra={"admin": fmt_addr(admin)})
    rss0 = f.rss_kib()

    def rapid_reset(c):
        def frames(n, start=[1]):
            out = []
            for _ in range(n):
                sid = start[0]
                start[0] += 2
                out += [c.headers(sid, req("/hang")), raw_frame(0x3, 0, sid, b"\0\0\0\x08")]
            return out
        flood(c, frames, 400)

    def ping(c):
        flood(c, lambda n: [raw_frame(0x6, 0, 0, b"12345678")] * n, 400)

    def settings(c):
        flood(c, lambda n: [settings_frame([(0x3, 100)])] * n, 400)

    def priority(c):
        flood(c, lambda n: [raw_frame(0x2, 0, 2 * i + 101, struct.pack(">IB", 0, 16))
                            for i in range(n)], 400)

    def empty_data(c):
        c.send(c.headers(1, req("/held/e", "PUT"), end_stream=False))
        flood(c, lambda n: [raw_frame(0x0, 0, 1, b"")] * n, 400)

    def continuation(c):
        blk = c.block(req("/"))
        c.send(raw_frame(0x1, 0x1, 1, blk[:1]))
        flood(c, lambda n: [raw_frame(0x9, 0, 1, b"")] * n, 50)

    for kind, fn in (("rapid_reset", rapid_reset), ("ping", ping), ("settings", settings),
                     ("priority", priority), ("empty_data", empty_data),
                     ("continuation", continuation)):
        abuse_case(h, f, admin, kind, fn)
    grown = f.rss_kib() - rss0
    print("RSS grew %d KiB over the attacks" % grown)
    assert grown < 16 * 1024, grown


def test_hpack_bomb(h):
    """A small header block that decodes to a huge header list (one large
    entry of the dynamic table, referenced again and again) is refused by
    the header list limit, not buffered."""
    up = http_upstream(h)
    f = start(h, up, tls=False)
    c = Client(h.track(f.connect(0, 5)))
    c.start()
    big = ("x-bomb", "b" * 3000)
    first = c.enc.encode(req("/") + [big])  # inserts the entry
    ref = c.enc.encode([big])  # now one byte or two: an index
    block = first + ref * 200
    c.send(raw_frame(0x1, 0x5, 1, block[:16000]))
    got = c.outcome()
    assert got in [("status", 431), ("rst", "PROTOCOL_ERROR"), ("goaway", "ENHANCE_YOUR_CALM"),
                   ("goaway", "COMPRESSION_ERROR"), ("rst", "REFUSED_STREAM")], got
    d = Client(h.track(f.connect(0, 5)))
    d.start()
    d.send(d.headers(1, req("/")))
    assert d.outcome() == ("status", 200)


def test_graceful_stop(h):
    """SIGTERM: open streams finish (GOAWAY NO_ERROR first), new ones are
    refused, then the connection closes and ferry exits 0."""
    up = http_upstream(h)
    f = start(h, up, tls=False)
    c = Client(h.track(f.connect(0, 5)))
    c.start()
    c.send(c.headers(1, req("/delay/1000")))
    time.sleep(0.2)  # the stream is open at the upstream
    f.popen.send_signal(15)
    saw_goaway = False
    deadline = time.monotonic() + scaled(5)
    status = None
    while status is None:
        fr = c.read_frame(deadline)
        assert fr is not None, "no response after SIGTERM"
        if isinstance(fr, hf.GoAwayFrame):
            assert fr.error_code == 0, fr.error_code
            saw_goaway = True
        if isinstance(fr, hf.HeadersFrame) and fr.stream_id == 1:
            status = dict(c.dec.decode(fr.data, raw=False)).get(":status")
    assert saw_goaway and status == "200", (saw_goaway, status)
    assert f.wait(scaled(10)) == 0


def test_reload_goaway(h):
    """SIGHUP: an HTTP/2 connection gets GOAWAY NO_ERROR, its open stream
    finishes, and a new connection is served."""
    up = http_upstream(h)
    f = start(h, up, tls=False)
    c = Client(h.track(f.connect(0, 5)))
    c.start()
    c.send(c.headers(1, req("/delay/500")))
    time.sleep(0.2)
    f.popen.send_signal(1)
    saw_goaway, status = False, None
    deadline = time.monotonic() + scaled(5)
    while status is None:
        fr = c.read_frame(deadline)
        assert fr is not None, "no response after SIGHUP"
        if isinstance(fr, hf.GoAwayFrame):
            assert fr.error_code == 0 and fr.last_stream_id == 1, (fr.error_code, fr.last_stream_id)
            saw_goaway = True
        if isinstance(fr, hf.HeadersFrame) and fr.stream_id == 1:
            status = dict(c.dec.decode(fr.data, raw=False)).get(":status")
    assert saw_goaway and status == "200", (saw_goaway, status)
    deadline = time.monotonic() + scaled(5)
    while c.read_frame(deadline) is not None:
        pass  # the body, a last GOAWAY
    assert c.eof, "the connection stayed open after its last stream"
    d = Client(h.track(f.connect(0, 5)))
    d.start()
    d.send(d.headers(1, req("/")))
    assert d.outcome() == ("status", 200)


def test_idle_timeout(h):
    """A session without streams ends after idle_timeout with GOAWAY."""
    up = http_upstream(h)
    f = start(h, up, tls=False, listener_extra={"idle_timeout": "1s"})
    c = Client(h.track(f.connect(0, 5)))
    c.start()
    c.send(c.headers(1, req("/")))
    assert c.outcome() == ("status", 200)
    t0 = time.monotonic()
    got = c.outcome(sid=99, timeout=5)
    assert got == ("goaway", "NO_ERROR"), got
    assert 0.5 < time.monotonic() - t0 < scaled(4)


def test_reset_mid_response(h):
    """A client resetting a stream mid-response: the upstream connection is
    dropped (it holds half a response), the rest of the session goes on."""
    up = http_upstream(h)
    f = start(h, up, tls=False)
    c = Client(h.track(f.connect(0, 5)))
    c.start()
    c.send(c.headers(1, req("/bytes/50000000")))
    deadline = time.monotonic() + scaled(5)
    while True:
        fr = c.read_frame(deadline)
        assert fr is not None
        if isinstance(fr, hf.HeadersFrame):
            c.dec.decode(fr.data, raw=False)  # keep the table in step
        if isinstance(fr, hf.DataFrame):
            break
    c.send(raw_frame(0x3, 0, 1, b"\0\0\0\x08"))
    c.send(c.headers(3, req("/after")))
    assert c.outcome(sid=3)[:2] == ("status", 200)
    log = f.stdout()
    assert '"GET /bytes/50000000 HTTP/2.0"' in log, log



def metric_sum(admin, name):
    s = socket.create_connection(admin[1:], timeout=5)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = harness.recv_until_eof(s, 5).decode()
    s.close()
    return sum(float(l.split()[-1]) for l in data.splitlines() if l.startswith(name + "{"))


def test_reset_uploads_keep_window(h):
    """Uploads reset before their conn read them do not eat the connection's
    window: 24 x 64 KiB reset, then an upload on the same connection goes."""
    up = http_upstream(h)
    f = start(h, up, tls=False)
    c = Client(h.track(f.connect(0, 5)))
    c.start()
    c.send(c.ping())
    assert c.outcome(sid=0) == ("ok",)  # our 1 MiB connection window has come
    sid = 1
    for _ in range(12):
        c.send(c.headers(sid, req("/held/r", "POST", extra=[("content-length", "65535")]),
                         end_stream=False),
               *[c.data(sid, b"x" * 16383) for _ in range(4)], c.data(sid, b"x" * 3),
               raw_frame(0x3, 0, sid, b"\0\0\0\x08"))
        sid += 2
    body = b"y" * 300000  # more than 1 MiB - 12 x 64 KiB leaves, if those leaked
    c.send(c.headers(sid, req("/up", "POST", extra=[("content-length", str(len(body)))]),
                     end_stream=False))
    sent, deadline = 0, time.monotonic() + scaled(10)
    window = 65535  # the stream's; the connection's is larger unless it leaked
    conn_window = (1 << 20) - 12 * 65535
    while sent < len(body):
        n = min(16384, len(body) - sent, window)
        if n > 0:
            c.send(c.data(sid, body[sent:sent + n], end_stream=sent + n == len(body)))
            sent += n
            window -= n
            continue
        fr = c.read_frame(deadline)
        assert fr is not None, "stuck after %d bytes: no WINDOW_UPDATE" % sent
        if isinstance(fr, hf.WindowUpdateFrame) and fr.stream_id == sid:
            window += fr.window_increment
        elif isinstance(fr, hf.HeadersFrame):
            c.dec.decode(fr.data, raw=False)
    got = c.outcome(sid=sid, want_body=True)
    assert got[:2] == ("status", 200), got[:2]
    assert json.loads(got[3])["body_length"] == len(body)
    assert conn_window < len(body)  # the case proves something only if a leak would block it


def test_reset_frees_upstream(h):
    """A stream reset after its request was sent ends its upstream
    connection at once (rapid reset must not keep upstreams busy)."""
    up = http_upstream(h)
    admin = ("tcp", "127.0.0.1", free_port())
    f = start(h, up, tls=False, global_extra={"admin": fmt_addr(admin)})
    c = Client(h.track(f.connect(0, 5)))
    c.start()
    for i in range(20):
        c.send(c.headers(2 * i + 1, req("/hang")))
    deadline = time.monotonic() + scaled(5)
    while metric_sum(admin, "ferry_upstream_connections_active") < 20:
        assert time.monotonic() < deadline, "the 20 requests never reached the upstream"
        time.sleep(0.05)
    c.send(*[raw_frame(0x3, 0, 2 * i + 1, b"\0\0\0\x08") for i in range(20)])
    deadline = time.monotonic() + scaled(3)
    while metric_sum(admin, "ferry_upstream_connections_active") > 0:
        assert time.monotonic() < deadline, "reset streams still hold upstream connections"
        time.sleep(0.05)


def test_header_block_timeout(h):
    """HEADERS without END_HEADERS and then silence: GOAWAY after
    header_timeout, not a connection held forever."""
    up = http_upstream(h)
    f = start(h, up, tls=False, listener_extra={"header_timeout": "1s", "idle_timeout": "30s"})
    c = Client(h.track(f.connect(0, 5)))
    c.start()
    blk = c.block(req("/"))
    c.send(raw_frame(0x1, 0x1, 1, blk[:2]))
    t0 = time.monotonic()
    got = c.outcome(sid=1, timeout=6)
    assert got[0] in ("goaway", "closed"), got
    assert time.monotonic() - t0 < scaled(4), "header_timeout did not end it"


def test_early_answer_not_cut(h):
    """An answer that comes before the upload ended is sent whole, even to
    a client with a small window; the RST_STREAM NO_ERROR that stops the
    upload comes only after END_STREAM (RFC 9113 8.1)."""
    early = h.track(socket.socket())
    early.bind(("127.0.0.1", 0))
    early.listen(8)

    def answer_early():  # answers at once, then reads (and drops) the body
        conn, _ = early.accept()
        h.track(conn)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 50000\r\n\r\n" + b"e" * 50000)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
    threading.Thread(target=answer_early, daemon=True).start()
    f = start(h, ("tcp", "127.0.0.1", early.getsockname()[1]), tls=False)
    c = Client(h.track(f.connect(0, 5)))
    c.start(settings={hf.SettingsFrame.INITIAL_WINDOW_SIZE: 1000})
    c.send(c.headers(1, req("/early", "POST", extra=[("content-length", "1000000")]),
                     end_stream=False), c.data(1, b"z" * 10))
    body, ended, deadline = 0, False, time.monotonic() + scaled(10)
    opened = False
    while True:
        fr = c.read_frame(deadline)
        assert fr is not None, "stalled after %d bytes" % body
        if isinstance(fr, hf.HeadersFrame):
            c.dec.decode(fr.data, raw=False)
        if isinstance(fr, hf.DataFrame) and fr.stream_id == 1:
            body += len(fr.data)
            ended = "END_STREAM" in fr.flags
            if not opened and body >= 1000:
                time.sleep(2.5)  # the conn lingers 2 s, then closes: the rest must still come
                wu = hf.WindowUpdateFrame(1)
                wu.window_increment = 1 << 20
                wu0 = hf.WindowUpdateFrame(0)
                wu0.window_increment = 1 << 20
                c.send(wu, wu0)
                opened = True
        if isinstance(fr, hf.RstStreamFrame) and fr.stream_id == 1:
            assert ended and body == 50000, "RST_STREAM after %d bytes, END_STREAM %s" % (body, ended)
            assert fr.error_code == 0
            return


if __name__ == "__main__":
    harness.main(globals())
