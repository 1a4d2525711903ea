#!/usr/bin/env python3
"""Self-test for ferry-upstream: every endpoint over real sockets.

usage: selftest.py PATH/TO/ferry-upstream

Starts the binary on port 0 (reads the bound address from its stdout),
checks each endpoint with raw sockets, then stops it with SIGTERM and
expects exit status 0. Also runs a --tcp-echo instance and a unix-socket
instance. Standard library only.
"""
import base64
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "ferry-upstream"
ALPHA = b"abcdefghijklmnopqrstuvwxyz"
EMPTY_SHA = hashlib.sha256(b"").hexdigest()
TIMEOUT = 20


def pattern(n):
    return (ALPHA * (n // 26 + 1))[:n]


class Server:
    """One ferry-upstream process; stopped by PID with SIGTERM."""

    def __init__(self, *args, listen="127.0.0.1:0"):
        self.tmp = tempfile.mkdtemp(prefix="ferry-upstream-")
        self.port_file = os.path.join(self.tmp, "port")
        self.proc = subprocess.Popen([BIN, "--listen", listen, "--port-file", self.port_file, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline().decode().strip()
        assert line, "no address on stdout"
        self.bound = line
        with open(self.port_file) as f:
            self.port_line = f.read().strip()
        if line.startswith("unix:"):
            assert self.port_line == line[5:], (self.port_line, line)
        else:
            self.port = int(line.rsplit(":", 1)[1])
            assert self.port_line == str(self.port), (self.port_line, line)
            assert self.port > 0

    def connect(self):
        if self.bound.startswith("unix:"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.bound[5:])
        else:
            s = socket.create_connection(("127.0.0.1", self.port))
        s.settimeout(TIMEOUT)
        return s

    def stop(self):
        """SIGTERM by PID; returns stderr; asserts a clean exit 0."""
        os.kill(self.proc.pid, signal.SIGTERM)
        _, err = self.proc.communicate(timeout=TIMEOUT)
        assert self.proc.returncode == 0, (self.proc.returncode, err)
        return err.decode()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Conn:
    """A client connection with a buffered response reader."""

    def __init__(self, server):
        self.s = server.connect()
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        b = self.s.recv(1 << 20)
        if not b:
            raise EOFError("connection closed")
        self.buf += b

    def read_until(self, sep):
        while sep not in self.buf:
            self._fill()
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def at_eof(self, wait=2.0):
        """True when the server has closed (no more bytes)."""
        if self.buf:
            return False
        self.s.settimeout(wait)
        try:
            return self.s.recv(1) == b""
        except ConnectionResetError:
            return True
        finally:
            self.s.settimeout(TIMEOUT)

    def response(self, head=False):
        """Reads one response: (status, headers dict lower-case, body, chunks)."""
        lines = self.read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        hdrs = {}
        for line in lines[1:]:
            if line:
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        chunks = 0
        if head or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif hdrs.get("transfer-encoding") == "chunked":
            parts = []
            while True:
                size = int(self.read_until(b"\r\n").strip(), 16)
                if size == 0:
                    assert self.read_until(b"\r\n") == b"\r\n"
                    break
                parts.append(self.read_exact(size))
                assert self.read_exact(2) == b"\r\n"
                chunks += 1
            body = b"".join(parts)
        else:
            body = self.read_exact(int(hdrs["content-length"]))
        return status, hdrs, body, chunks

    def close(self):
        self.s.close()


def get(srv, target, extra=b"", method=b"GET"):
    c = Conn(srv)
    c.send(method + b" " + target + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n")
    r = c.response(head=method == b"HEAD")
    c.close()
    return r


def stats(srv):
    st, _, body, _ = get(srv, b"/stats")
    assert st == 200
    return json.loads(body)


# ---- tests ---------------------------------------------------------------

def test_default_json(srv):
    extra = (b"X-Quote: a\"b\\c\r\nX-Dup: 1\r\nX-Dup: 2\r\nX-Ctl: tab\there\r\n"
             b"X-Utf8: \xc3\xa9t\xc3\xa9\r\nX-Latin: \xe9\r\n")
    st, h, body, _ = get(srv, b"/foo/bar?x=1&y=%20", extra)
    assert st == 200 and h["content-type"] == "application/json"
    assert h["x-upstream-name"] == "self test"
    j = json.loads(body)
    assert j["server"] == "self test" and j["method"] == "GET" and j["version"] == "1.1"
    assert j["target"] == "/foo/bar?x=1&y=%20"
    assert j["headers"] == [["Host", "t"], ["X-Quote", 'a"b\\c'], ["X-Dup", "1"], ["X-Dup", "2"],
                            ["X-Ctl", "tab\there"], ["X-Utf8", "\u00e9t\u00e9"], ["X-Latin", "\u00e9"]], j["headers"]
    assert j["body_length"] == 0 and j["body_sha256"] == EMPTY_SHA


def test_post_bodies(srv):
    data = os.urandom(3 * 1024 * 1024 + 7)
    c = Conn(srv)
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
    j = json.loads(c.response()[2])
    assert j["method"] == "POST" and j["body_length"] == len(data)
    assert j["body_sha256"] == hashlib.sha256(data).hexdigest()
    # chunked request body on the same connection
    parts = [os.urandom(n) for n in (1, 1000, 70000, 5)]
    c.send(b"PUT /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" +
           b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n")
    j = json.loads(c.response()[2])
    whole = b"".join(parts)
    assert j["method"] == "PUT" and j["body_length"] == len(whole)
    assert j["body_sha256"] == hashlib.sha256(whole).hexdigest()
    c.close()


def test_bytes(srv):
    c = Conn(srv)
    for n in (0, 1, 26, 16384, 16385, 262145, 10 * 1000 * 1000):
        c.send(b"GET /bytes/%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
        st, h, body, _ = c.response()
        assert st == 200 and h["content-length"] == str(n) and len(body) == n
        assert body == pattern(n), n
    c.send(b"HEAD /bytes/123456789 HTTP/1.1\r\nHost: t\r\n\r\n")
    st, h, body, _ = c.response(head=True)
    assert st == 200 and h["content-length"] == "123456789"
    c.send(b"GET /bytes/x HTTP/1.1\r\nHost: t\r\n\r\n")
    assert c.response()[0] == 400
    c.close()


def test_bytes_large_sha(srv):
    n = 100 * 1000 * 1000
    c = Conn(srv)
    c.send(b"GET /bytes/%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
    c.read_until(b"\r\n\r\n")
    got, left = hashlib.sha256(), n
    got.update(c.buf[:left])
    left -= len(c.buf[:left])
    while left:
        b = c.s.recv(min(left, 1 << 20))
        assert b
        got.update(b)
        left -= len(b)
    want, block = hashlib.sha256(), ALPHA * 40000
    for i in range(0, n, len(block)):
        want.update(block[:min(len(block), n - i)])
    assert got.hexdigest() == want.hexdigest()
    c.close()


def test_chunked(srv):
    c = Conn(srv)
    for n in (0, 1, 300000, 5 * 1000 * 1000):
        c.send(b"GET /chunked/%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
        st, h, body, chunks = c.response()
        assert st == 200 and h["transfer-encoding"] == "chunked" and "content-length" not in h
        assert body == pattern(n), n
        if n >= 300000:
            assert chunks > 2, chunks
    c.send(b"HEAD /chunked/100 HTTP/1.1\r\nHost: t\r\n\r\n")
    st, h, _, _ = c.response(head=True)
    assert st == 200 and h["transfer-encoding"] == "chunked"
    c.send(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")  # the connection is still in sync
    assert json.loads(c.response()[2])["target"] == "/x"
    c.close()


def test_head(srv):
    c = Conn(srv)
    c.send(b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\nGET /h HTTP/1.1\r\nHost: t\r\n\r\n")
    st, h, _, _ = c.response(head=True)
    st2, h2, body, _ = c.response()
    # the HEAD answer describes a request whose method is one letter longer
    assert st == st2 == 200 and int(h["content-length"]) == len(body) + 1 and h2["content-length"] == str(len(body))
    assert json.loads(body)["method"] == "GET"
    c.close()


def test_delay(srv):
    t0 = time.time()
    result = {}

    def slow():
        result["r"] = get(srv, b"/delay/400")

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.05)
    t1 = time.time()
    assert get(srv, b"/quick")[0] == 200
    assert time.time() - t1 < 0.3, "the loop is blocked during /delay"
    th.join()
    assert time.time() - t0 >= 0.4
    st, _, body, _ = result["r"]
    assert st == 200 and json.loads(body)["target"] == "/delay/400"


def test_status(srv):
    for code in (200, 201, 204, 301, 304, 404, 418, 500, 503, 599):
        st, h, body, _ = get(srv, b"/status/%d" % code)
        assert st == code
        if code in (204, 304):
            assert "content-length" not in h and body == b""
        else:
            assert body.startswith(b"%d" % code)
    for bad in (b"150", b"600", b"abc", b"42"):
        assert get(srv, b"/status/" + bad)[0] == 400


def test_close_mid(srv):
    c = Conn(srv)
    c.send(b"GET /close-mid HTTP/1.1\r\nHost: t\r\n\r\n")
    head = c.read_until(b"\r\n\r\n")
    assert b"Content-Length: 1000000" in head
    got = c.buf
    while True:
        try:
            b = c.s.recv(65536)
        except ConnectionResetError:
            break
        if not b:
            break
        got += b
    assert 0 < len(got) < 1000000 and got == pattern(len(got)), len(got)
    c.close()


def test_hang(srv):
    c = Conn(srv)
    c.send(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\nGET /after HTTP/1.1\r\nHost: t\r\n\r\n")
    c.s.settimeout(0.5)
    try:
        data = c.s.recv(100)
        assert False, "got an answer to /hang: %r" % data
    except socket.timeout:
        pass
    c.close()
    assert get(srv, b"/")[0] == 200


def test_stats_keepalive(srv):
    before = stats(srv)
    c = Conn(srv)
    for i in range(3):
        c.send(b"GET /k%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
        assert json.loads(c.response()[2])["target"] == "/k%d" % i
    c.close()
    after = stats(srv)
    assert after["server"] == "self test"
    assert after["accepted"] == before["accepted"] + 2, (before, after)  # one keep-alive conn + this stats conn
    assert after["requests"] == before["requests"] + 4, (before, after)


def test_pipelining(srv):
    c = Conn(srv)
    reqs = [b"GET /p0 HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /delay/100 HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /bytes/300000 HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /chunked/70000 HTTP/1.1\r\nHost: t\r\n\r\n",
            b"POST /p4 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
            b"HEAD /p5 HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /status/404 HTTP/1.1\r\nHost: t\r\n\r\n"]
    reqs += [b"GET /q%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(200)]
    c.send(b"".join(reqs))
    assert json.loads(c.response()[2])["target"] == "/p0"
    assert json.loads(c.response()[2])["target"] == "/delay/100"
    assert c.response()[2] == pattern(300000)
    assert c.response()[2] == pattern(70000)
    j = json.loads(c.response()[2])
    assert j["target"] == "/p4" and j["body_sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert c.response(head=True)[0] == 200
    assert c.response()[0] == 404
    for i in range(200):
        assert json.loads(c.response()[2])["target"] == "/q%d" % i
    c.close()


def test_split_head(srv):
    c = Conn(srv)
    c.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = b"GET /split?a=b HTTP/1.1\r\nHost: t\r\nX-Long-Header-Name: some value here\r\nContent-Length: 3\r\n\r\nxyz"
    for i in range(len(req)):
        c.send(req[i:i + 1])
        if i % 10 == 0:
            time.sleep(0.001)
    j = json.loads(c.response()[2])
    assert j["target"] == "/split?a=b" and j["headers"][1] == ["X-Long-Header-Name", "some value here"]
    assert j["body_sha256"] == hashlib.sha256(b"xyz").hexdigest()
    c.close()


def test_connection_close(srv):
    c = Conn(srv)
    c.send(b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n")
    st, h, body, _ = c.response()
    assert st == 200 and h.get("connection") == "close" and json.loads(body)["target"] == "/a"
    assert c.at_eof()
    c.close()


def test_http10(srv):
    c = Conn(srv)
    c.send(b"GET /old HTTP/1.0\r\n\r\n")
    st, h, body, _ = c.response()
    assert st == 200 and h.get("connection") == "close" and json.loads(body)["version"] == "1.0"
    assert c.at_eof()
    c.close()
    c = Conn(srv)
    for i in range(2):
        c.send(b"GET /ka%d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % i)
        st, h, body, _ = c.response()
        assert st == 200 and h.get("connection") == "keep-alive", h
    c.send(b"GET /chunked/1000 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    st, h, body, _ = c.response()  # no chunked coding for 1.0
    assert h.get("content-length") == "1000" and body == pattern(1000)
    c.close()


def test_expect_continue(srv):
    data = os.urandom(200000)
    c = Conn(srv)
    c.send(b"POST /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(data))
    assert c.read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    c.send(data)
    st, _, body, _ = c.response()
    j = json.loads(body)
    assert st == 200 and j["body_sha256"] == hashlib.sha256(data).hexdigest()
    c.close()


def test_errors(srv):
    c = Conn(srv)
    c.send(b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
    st, h, _, _ = c.response()
    assert st == 400 and h.get("connection") == "close"
    assert c.at_eof()
    c.close()
    c = Conn(srv)
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
    st, h, _, _ = c.response()
    assert st == 431 and h.get("connection") == "close"
    assert c.at_eof()
    c.close()


def ws_send(c, opcode, payload, fin=True):
    mask = os.urandom(4)
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        hdr = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
    masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload)) if n < 4096 else \
        (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
    c.send(hdr + mask + masked)


def ws_recv(c):
    b0, b1 = c.read_exact(2)
    assert not (b1 & 0x80), "server frames must not be masked"
    n = b1 & 0x7f
    if n == 126:
        n = struct.unpack("!H", c.read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", c.read_exact(8))[0]
    return b0 & 0x80, b0 & 0x0f, c.read_exact(n)


def test_websocket(srv):
    key = base64.b64encode(os.urandom(16))
    c = Conn(srv)
    c.send(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    st, h, _, _ = c.response()
    assert st == 101 and h["upgrade"].lower() == "websocket"
    want = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
    assert h["sec-websocket-accept"] == want
    for op, payload in ((1, b"hello"), (2, os.urandom(125)), (2, os.urandom(126)), (1, b"x" * 1000),
                        (2, os.urandom(65535)), (2, os.urandom(65536)), (2, os.urandom(200 * 1024)),
                        (2, os.urandom(1 << 20)), (1, b"")):
        ws_send(c, op, payload)
        assert ws_recv(c) == (0x80, op, payload), (op, len(payload))
    ws_send(c, 9, b"ping!")
    assert ws_recv(c) == (0x80, 10, b"ping!")
    ws_send(c, 1, b"frag1-", fin=False)
    ws_send(c, 9, b"mid")  # control frame between fragments
    ws_send(c, 0, b"frag2", fin=True)
    assert ws_recv(c) == (0, 1, b"frag1-")
    assert ws_recv(c) == (0x80, 10, b"mid")
    assert ws_recv(c) == (0x80, 0, b"frag2")
    ws_send(c, 8, struct.pack("!H", 1000) + b"bye")
    assert ws_recv(c) == (0x80, 8, struct.pack("!H", 1000) + b"bye")
    assert c.at_eof()
    c.close()


def test_echo():
    srv = Server("--tcp-echo")
    try:
        n = 64 << 20
        data = os.urandom(1 << 20)
        want = hashlib.sha256()
        for _ in range(64):
            want.update(data)
        s = srv.connect()

        def sender():
            for _ in range(64):
                s.sendall(data)
            s.shutdown(socket.SHUT_WR)

        th = threading.Thread(target=sender)
        th.start()
        got, total = hashlib.sha256(), 0
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            got.update(b)
            total += len(b)
        th.join()
        s.close()
        assert total == n and got.digest() == want.digest()
        err = srv.stop()
        assert "accepted: 1" in err, err
    finally:
        srv.kill()


def test_unix_socket():
    path = os.path.join(tempfile.mkdtemp(prefix="ferry-upstream-"), "u.sock")
    srv = Server("--name", "unixy", listen="unix:" + path)
    try:
        assert srv.bound == "unix:" + path
        st, h, body, _ = get(srv, b"/via-unix")
        assert st == 200 and json.loads(body)["server"] == "unixy"
        assert get(srv, b"/bytes/100000")[2] == pattern(100000)
        srv.stop()
        assert not os.path.exists(path)
    finally:
        srv.kill()


def main():
    srv = Server("--name", "self test")
    tests = [test_default_json, test_post_bodies, test_bytes, test_bytes_large_sha, test_chunked,
             test_head, test_delay, test_status, test_close_mid, test_hang, test_stats_keepalive,
             test_pipelining, test_split_head, test_connection_close, test_http10,
             test_expect_continue, test_errors, test_websocket]
    failed = 0
    try:
        for t in tests:
            try:
                t(srv)
                print("ok   %s" % t.__name__)
            except Exception as e:  # report every failure, not only the first
                failed += 1
                print("FAIL %s: %r" % (t.__name__, e))
        # stop with connections still open: a hung request and an idle keep-alive
        hung, idle = Conn(srv), Conn(srv)
        hung.send(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
        idle.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        idle.response()
        time.sleep(0.1)
        err = srv.stop()
        print("ok   sigterm with open connections (%s)" % err.strip())
        hung.close()
        idle.close()
    finally:
        srv.kill()
    for t in (test_echo, test_unix_socket):
        try:
            t()
            print("ok   %s" % t.__name__)
        except Exception as e:
            failed += 1
            print("FAIL %s: %r" % (t.__name__, e))
    if failed:
        print("%d test(s) failed" % failed)
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
