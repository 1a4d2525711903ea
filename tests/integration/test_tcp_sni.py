#!/usr/bin/env python3
"""tcp mode routing by SNI: ferry reads the ClientHello's server name without
decrypting and pipes the untouched TLS stream to the route's upstream.

The upstreams are TLS servers in this process (python ssl), each with its own
self-signed certificate made by `openssl req` at test time, answering every
line with its own identity (and HTTP requests with a response naming it).
Clients verify the upstream's certificate, so a completed handshake proves
both the routing and that ferry changed no byte."""
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request

import harness
from harness import free_port, fmt_addr, wait_closed

NAMES = {  # upstream -> the names its certificate carries
    "api": ["api.example.com"],
    "wild": ["*.example.com"],
    "dflt": ["default.test"],
}


def make_cert(h, name, dns):
    """A self-signed P-256 certificate for the DNS names; returns (cert, key)."""
    if not shutil.which("openssl"):
        raise harness.Skip("the openssl command is not installed")
    cert, key = h.path(name + ".pem"), h.path(name + ".key")
    san = ",".join("DNS:" + d for d in dns)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=" + name,
                    "-addext", "subjectAltName=" + san, "-keyout", key, "-out", cert],
                   check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=30)
    return cert, key


def tls_upstream(h, name):
    """A TLS server named name: answers a line L with "I am NAME: L", an HTTP
    request with 200 and body "I am NAME". Returns (addr, cert path)."""
    cert, key = make_cert(h, name, NAMES[name])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    def handler(c):
        c.settimeout(10)
        with ctx.wrap_socket(c, server_side=True) as s:
            f = s.makefile("rb")
            line = f.readline()
            if line.startswith(b"GET "):
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                body = b"I am %s" % name.encode()
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                          % (len(body), body))
            else:
                s.sendall(b"I am %s: %s" % (name.encode(), line))
            try:
                s.unwrap()
            except (ssl.SSLError, OSError):
                pass

    return h.thread_server(handler), cert


def start(h, routes, default=None, listener_opts=None, ups=None, admin=False):
    """ferry with tcp listener "tls" routing by sni. routes: [(route, upstream,
    [sni...]) or (route, upstream, [sni...], {key: value})]; default: the listener's upstream name or None. ups: {name:
    addr} of every upstream; admin: an admin endpoint too (its address is
    f.addrs[1], listening when this returns). Returns the Ferry."""
    def make():
        addr = ("tcp", "127.0.0.1", free_port())
        addrs = [addr]
        lines = ["[global]", "workers = 2", "shutdown_timeout = 5s", "log_level = info"]
        if admin:
            addrs.append(("tcp", "127.0.0.1", free_port()))
            lines.append("admin = " + fmt_addr(addrs[1]))
        lines += ["",
                 "[listener tls]", "bind = " + fmt_addr(addr), "mode = tcp"]
        if default:
            lines.append("upstream = " + default)
        lines += ["%s = %s" % kv for kv in (listener_opts or {}).items()]
        for name, a in ups.items():
            lines += ["", "[upstream %s]" % name, "server = " + fmt_addr(a)]
        for r in routes:
            rname, up, snis = r[:3]
            lines += ["", "[route %s]" % rname, "listener = tls", "upstream = " + up]
            lines += ["sni = " + s for s in snis]
            lines += ["%s = %s" % kv for kv in (r[3] if len(r) > 3 else {}).items()]
        return "\n".join(lines) + "\n", addrs
    return h.start_ferry(make)


def ask(h, f, sni, cafile=None, line=b"ping\n"):
    """A TLS conversation through ferry with server name sni (None: no SNI).
    With cafile the upstream's certificate is verified against it (and sni).
    Returns the answer line."""
    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl.SSLContext(
        ssl.PROTOCOL_TLS_CLIENT)
    if not cafile:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    raw = h.connect(f.addr)
    with ctx.wrap_socket(raw, server_hostname=sni) as s:
        s.sendall(line)
        return s.makefile("rb").readline()


def sni_setup(h, default=True, listener_opts=None):
    api, api_cert = tls_upstream(h, "api")
    wild, wild_cert = tls_upstream(h, "wild")
    ups = {"api": api, "wild": wild}
    certs = {"api": api_cert, "wild": wild_cert}
    if default:
        ups["dflt"], certs["dflt"] = tls_upstream(h, "dflt")
    f = start(h, [("r_api", "api", ["api.example.com"]),
                  ("r_wild", "wild", ["*.example.com", "*.example.net"])],
              "dflt" if default else None, listener_opts, ups)
    f.ups = ups
    return f, certs


def client_hello(sni, frag=None):
    """The ClientHello python's ssl sends for sni, as bytes; with frag, its
    handshake message re-split into records of frag bytes (still valid TLS:
    RFC 8446 5.1). Also returns the SSLObject and its BIOs to go on with."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    if frag:
        assert hello[0] == 22 and int.from_bytes(hello[3:5], "big") == len(hello) - 5
        hs, hello = hello[5:], b""
        for i in range(0, len(hs), frag):
            part = hs[i:i + frag]
            hello += bytes([22, 3, 1]) + len(part).to_bytes(2, "big") + part
    return hello, obj, inc, out


def finish_handshake(sock, obj, inc, out, line=b"ping\n", timeout=10):
    """Drives the SSLObject's handshake over sock after its hello was sent,
    then sends line and returns the answer."""
    sock.settimeout(timeout)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            pending = out.read()
            if pending:
                sock.sendall(pending)
            data = sock.recv(65536)
            assert data, "closed during the handshake"
            inc.write(data)
    pending = out.read()
    if pending:
        sock.sendall(pending)
    obj.write(line)
    sock.sendall(out.read())
    answer = b""
    while not answer.endswith(b"\n"):
        try:
            answer += obj.read(4096)
        except ssl.SSLWantReadError:
            data = sock.recv(65536)
            assert data, "closed before the answer: %r" % answer
            inc.write(data)
    return answer


def access_lines(f, n, timeout=10):
    """The first n tcp access log lines, waiting up to timeout for them."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [l for l in f.stdout().splitlines() if '"TCP"' in l]
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_sni_routes(h):
    """Exact beats wildcard; a wildcard takes deeper names; no match and no
    SNI go to the default upstream; every handshake verifies end to end."""
    f, certs = sni_setup(h)
    assert ask(h, f, "api.example.com", certs["api"]) == b"I am api: ping\n"
    assert ask(h, f, "API.Example.COM", certs["api"]) == b"I am api: ping\n"
    assert ask(h, f, "x.example.com", certs["wild"]) == b"I am wild: ping\n"
    assert ask(h, f, "a.b.example.com") == b"I am wild: ping\n"
    assert ask(h, f, "y.example.net") == b"I am wild: ping\n"
    assert ask(h, f, "example.com") == b"I am dflt: ping\n"  # *.example.com needs a label
    assert ask(h, f, "default.test", certs["dflt"]) == b"I am dflt: ping\n"
    assert ask(h, f, None) == b"I am dflt: ping\n"
    lines = access_lines(f, 8)
    assert len(lines) == 8, lines
    assert sum(" route=r_api " in l for l in lines) == 2, lines
    assert sum(" route=r_wild " in l for l in lines) == 3, lines
    assert sum(" route=- upstream=%s " % fmt_addr(f.ups["dflt"]) in l for l in lines) == 3, lines


def test_sni_clients(h):
    """openssl s_client -servername and curl --resolve, verifying the
    upstream's certificate through ferry."""
    f, certs = sni_setup(h)
    port = f.addr[2]
    p = subprocess.run(["openssl", "s_client", "-quiet", "-ign_eof", "-verify_return_error",
                        "-CAfile", certs["api"], "-servername", "api.example.com",
                        "-connect", "127.0.0.1:%d" % port],
                       input=b"hello\n", stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    assert b"I am api: hello" in p.stdout, (p.stdout, p.stderr[-2000:])
    if not shutil.which("curl"):
        return
    p = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", certs["wild"],
                        "--resolve", "www.example.com:%d:127.0.0.1" % port,
                        "https://www.example.com:%d/" % port],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    assert p.stdout == b"I am wild", (p.stdout, p.stderr)


def test_sni_no_default(h):
    """Without a listener upstream: no match, no SNI and plain text are
    closed, and a matching name still gets through."""
    f, certs = sni_setup(h, default=False)
    for sni in ("other.org", None):
        try:
            got = ask(h, f, sni)
        except (ssl.SSLError, OSError):
            got = None
        assert got is None, "%s: %r" % (sni, got)
    c = h.connect(f.addr)
    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    kind, dt, data = wait_closed(c, 5)
    assert data == b"", data
    assert ask(h, f, "api.example.com", certs["api"]) == b"I am api: ping\n"


def test_sni_not_tls(h):
    """Plain text on an sni listener goes, untouched, to the default upstream
    (an echo server here)."""
    api, _ = tls_upstream(h, "api")
    echo = h.upstream()
    f = start(h, [("r_api", "api", ["api.example.com"])], "plain", None,
              {"api": api, "plain": echo})
    c = h.connect(f.addr)
    harness.echo_check(c, b"hello, not TLS\n")
    harness.echo_check(c, os.urandom(50000))


def test_sni_half_hello(h):
    """A client that sends half a ClientHello and stops is closed after
    header_timeout, with nothing sent to any upstream."""
    f, _ = sni_setup(h, listener_opts={"header_timeout": "1s"})
    hello = client_hello("api.example.com")[0]
    c = h.connect(f.addr)
    c.sendall(hello[:len(hello) // 2])
    kind, dt, data = wait_closed(c, 10)
    assert data == b"" and 0.8 <= dt <= 5, (kind, dt, data)
    lines = access_lines(f, 1)
    assert len(lines) == 1 and " route=- upstream=- in=0 out=0 " in lines[0], lines


def test_sni_big_hello(h):
    """A ClientHello of 20 KiB is closed at once, not forwarded, even with a
    default upstream (and long before header_timeout)."""
    f, _ = sni_setup(h, listener_opts={"header_timeout": "30s"})
    body = bytearray(b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00")
    ext = b"\x00\x15" + (20 * 1024).to_bytes(2, "big") + bytes(20 * 1024)  # padding
    body += len(ext).to_bytes(2, "big") + ext
    hs = b"\x01" + len(body).to_bytes(3, "big") + bytes(body)
    data = b""
    for i in range(0, len(hs), 16384):
        part = hs[i:i + 16384]
        data += b"\x16\x03\x01" + len(part).to_bytes(2, "big") + part
    c = h.connect(f.addr)
    try:
        c.sendall(data)
    except OSError:
        pass  # closed while we were still sending: what we want
    kind, dt, got = wait_closed(c, 10)
    assert got == b"" and dt < 5, (kind, dt, got)
    lines = access_lines(f, 1)
    assert len(lines) == 1 and " upstream=- " in lines[0], lines


def test_sni_garbage_tls(h):
    """A TLS record whose hello lies about a length, or names an invalid
    host, is closed (never forwarded to the default upstream)."""
    f, _ = sni_setup(h)
    hello = bytearray(client_hello("api.example.com")[0])
    i = hello.find(b"api.example.com")
    bad_name = hello[:i] + b"api_example.com" + hello[i + 15:]
    bad_len = bytearray(hello)
    bad_len[43] = 40  # session id length over 32
    for data in (bytes(bad_name), bytes(bad_len)):
        c = h.connect(f.addr)
        c.sendall(data)
        kind, dt, got = wait_closed(c, 5)
        assert got == b"", got


def test_sni_split_hello(h):
    """A ClientHello split into 40-byte records and sent one byte per write
    routes by its name, and the handshake completes through ferry."""
    f, _ = sni_setup(h)
    hello, obj, inc, out = client_hello("api.example.com", frag=40)
    c = h.connect(f.addr)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for b in hello:
        c.sendall(bytes([b]))
    assert finish_handshake(c, obj, inc, out) == b"I am api: ping\n"


def test_sni_proxy_protocol(h):
    """With proxy_protocol = on, the PROXY header is read first, then the
    ClientHello that came in the same packet."""
    f, certs = sni_setup(h, listener_opts={"proxy_protocol": "on"})
    hello, obj, inc, out = client_hello("x.example.com")
    c = h.connect(f.addr)
    c.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 443\r\n" + hello)
    assert finish_handshake(c, obj, inc, out) == b"I am wild: ping\n"
    c.close()  # the access log line is written when the connection ends
    lines = access_lines(f, 1)
    assert len(lines) == 1 and lines[0].startswith("192.0.2.7") and " route=r_wild " in lines[0], \
        lines


def test_sni_route_idle_timeout(h):
    """An sni route's idle_timeout beats the listener's: a quiet TLS
    connection on it is closed after the route's 300 ms, one on the other
    route lives past that."""
    api, _ = tls_upstream(h, "api")
    wild, _ = tls_upstream(h, "wild")
    f = start(h, [("r_api", "api", ["api.example.com"], {"idle_timeout": "300ms"}),
                  ("r_wild", "wild", ["*.example.com"])],
              None, {"idle_timeout": "10s"}, {"api": api, "wild": wild})
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    quick = ctx.wrap_socket(h.connect(f.addr), server_hostname="api.example.com")
    slow = ctx.wrap_socket(h.connect(f.addr), server_hostname="x.example.com")
    t0 = time.monotonic()
    quick.settimeout(harness.scaled(8))
    try:
        got = quick.recv(100)  # nothing comes: ferry closes it
    except (ssl.SSLError, OSError):
        got = b""
    took = time.monotonic() - t0
    assert got == b"" and took < harness.scaled(3), "route idle_timeout: %r after %.2fs" % (got, took)
    slow.sendall(b"ping\n")
    assert slow.makefile("rb").readline() == b"I am wild: ping\n"


def test_sni_status_explain(h):
    """/status lists sni routes with their listener and names; --explain
    'SNI NAME' names the route a ClientHello would take, and why."""
    api, _ = tls_upstream(h, "api")
    f = start(h, [("r_api", "api", ["api.example.com"]), ("r_wild", "api", ["*.example.com"])],
              None, None, {"api": api}, admin=True)
    with urllib.request.urlopen("http://%s/status" % fmt_addr(f.addrs[1]), timeout=10) as r:
        st = json.load(r)
    routes = {r["name"]: r for r in st["routes"]}
    assert routes["r_api"]["sni"] == ["api.example.com"] and routes["r_api"]["listener"] == "tls" \
        and routes["r_api"]["upstream"] == "api" and "path_prefix" not in routes["r_api"], routes
    assert routes["r_wild"]["sni"] == ["*.example.com"], routes
    rc, out, err = h.run_ferry(["-c", f.config_path, "--explain", "SNI Api.Example.com"], 30)
    assert rc == 0, (rc, out, err)
    assert "route:    r_api (%s:" % f.config_path in out, out
    assert "why:      exact sni api.example.com beats suffix *.example.com (runner-up: r_wild)" \
        in out, out
    rc, out, err = h.run_ferry(["-c", f.config_path, "--explain", "SNI other.org"], 30)
    assert rc == 1 and "result:   closed: no sni route and no default upstream" in out, (rc, out)


if __name__ == "__main__":
    harness.main(globals())
