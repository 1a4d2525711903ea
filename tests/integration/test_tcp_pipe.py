#!/usr/bin/env python3
"""TCP mode data path: bytes both ways, half-close, address families, retries."""
import hashlib
import os
import socket
import threading
import time

import harness
from harness import echo_check, recv_exact, recv_until_eof, wait_closed, simple_tcp, free_port


def test_echo(h):
    """A round trip through ferry to an echo upstream, several connections."""
    up = h.upstream()
    f = simple_tcp(h, [up])
    for i in range(5):
        c = h.connect(f.addr)
        echo_check(c, b"hello ferry %d\n" % i)
        echo_check(c, os.urandom(100000))
        c.close()


def test_big(h):
    """64 MiB each way at once: the client sends while it reads the echo; the
    sha256 of what comes back equals that of what went out."""
    total = 64 << 20
    up = h.upstream()
    f = simple_tcp(h, [up])
    c = h.connect(f.addr)
    c.settimeout(None)
    block = os.urandom(1 << 20)
    sent_hash = hashlib.sha256()
    errors = []

    def sender():
        try:
            for i in range(total >> 20):
                # vary each MiB so a misordered or repeated block changes the hash
                chunk = i.to_bytes(8, "big") + block[8:]
                sent_hash.update(chunk)
                c.sendall(chunk)
            c.shutdown(socket.SHUT_WR)
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=sender, daemon=True)
    t0 = time.monotonic()
    t.start()
    got_hash = hashlib.sha256()
    got = 0
    c.settimeout(60)
    while True:
        try:
            b = c.recv(1 << 20)
        except OSError as e:
            raise AssertionError("recv failed after %d bytes: %r" % (got, e))
        if not b:
            break
        got_hash.update(b)
        got += len(b)
    t.join(30)
    assert not t.is_alive(), "sender still blocked after the echo ended"
    assert not errors, "send failed: %r" % errors
    dt = time.monotonic() - t0
    print("64 MiB each way in %.2fs (%.0f MiB/s each way)" % (dt, 64 / dt))
    assert got == total, "received %d bytes, sent %d" % (got, total)
    assert got_hash.hexdigest() == sent_hash.hexdigest(), "sha256 of echoed data differs"


def test_half_close(h):
    """Client sends, shuts its write side, still reads every echoed byte, then
    EOF, promptly (not at idle_timeout)."""
    up = h.upstream()
    f = simple_tcp(h, [up], listener_opts={"idle_timeout": "60s"})
    data = os.urandom(2 << 20)
    c = h.connect(f.addr)
    errors = []

    def sender():
        try:
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    t0 = time.monotonic()
    got = recv_until_eof(c, timeout=15)
    t.join(5)
    assert not errors, "send failed: %r" % errors
    assert len(got) == len(data), "after SHUT_WR read %d of %d bytes before EOF" % (len(got), len(data))
    assert got == data, "echoed bytes differ"
    assert time.monotonic() - t0 < 10


def test_half_close_upstream(h):
    """The other direction: the upstream sends a greeting and shuts its write
    side; the client sees EOF, but can still send, and the upstream receives
    all of it (the pair is not torn down on the first FIN)."""
    received = {}
    done = threading.Event()

    def handler(conn):
        try:
            conn.sendall(b"greeting\n")
            conn.shutdown(socket.SHUT_WR)
            n = 0
            conn.settimeout(15)
            while True:
                b = conn.recv(65536)
                if not b:
                    break
                n += len(b)
            received["n"] = n
        except OSError as e:
            received["err"] = e
        finally:
            conn.close()
            done.set()

    up = h.thread_server(handler)
    f = simple_tcp(h, [up], listener_opts={"idle_timeout": "60s"})
    c = h.connect(f.addr)
    got = recv_until_eof(c, timeout=5)
    assert got == b"greeting\n", "got %r before EOF" % got
    payload = os.urandom(300000)
    time.sleep(0.2)  # a pair closed on the first FIN would reset us here
    try:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
    except OSError as e:
        raise AssertionError("client could not send after the upstream's FIN: %r" % e)
    assert done.wait(10), "upstream never saw EOF from the client"
    assert "err" not in received, "upstream recv failed: %r" % received.get("err")
    assert received["n"] == len(payload), \
        "upstream got %d of %d bytes sent after its FIN" % (received["n"], len(payload))
    kind, dt, _ = wait_closed(c, 5)


def test_unix(h):
    """A unix-socket listener in front of a unix-socket upstream."""
    up_path = h.path("up.sock")
    up = h.upstream(listen="unix:" + up_path)
    lpath = h.path("ferry.sock")

    def make():
        addr = ("unix", lpath)
        return harness.tcp_config(addr, [up]), [addr]

    f = h.start_ferry(make)
    for i in range(3):
        c = h.connect(f.addr)
        echo_check(c, b"over unix %d" % i)
        echo_check(c, os.urandom(200000))
        c.shutdown(socket.SHUT_WR)
        assert recv_until_eof(c, 5) == b""
        c.close()
    # a tcp listener to the unix upstream, too
    f2 = simple_tcp(h, [up])
    c = h.connect(f2.addr)
    echo_check(c, b"tcp to unix")


def _have_ipv6():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def test_ipv6(h):
    """A listener on [::1]:PORT (and an IPv6 upstream server)."""
    if not _have_ipv6():
        raise harness.Skip("no IPv6 loopback")
    up = h.upstream(listen="[::1]:0", py=True)
    assert up[1] == "::1", up
    f = simple_tcp(h, [up], host="::1")
    c = h.connect(f.addr)
    assert c.family == socket.AF_INET6
    echo_check(c, b"hello over v6")
    echo_check(c, os.urandom(100000))


def test_bind_any(h):
    """bind = :PORT listens on every address, v4 and v6."""
    up = h.upstream()

    def make():
        port = free_port("0.0.0.0")
        return harness.tcp_config(":%d" % port, [up]), [("tcp", "127.0.0.1", port)]

    f = h.start_ferry(make)
    port = f.addr[2]
    c = h.connect(("tcp", "127.0.0.1", port))
    echo_check(c, b"v4")
    if _have_ipv6():
        c6 = h.connect(("tcp", "::1", port))
        echo_check(c6, b"v6")


def test_retry(h):
    """First server refuses (nobody listens), retries = 1: every connection
    still reaches the live server."""
    up = h.upstream()
    dead = ("tcp", "127.0.0.1", free_port())
    f = simple_tcp(h, [dead, up], upstream_opts={"retries": "1", "connect_timeout": "3s"},
                   global_opts={"workers": "1"})
    for i in range(10):
        c = h.connect(f.addr)
        try:
            echo_check(c, b"retry %d" % i, timeout=5)
        except AssertionError as e:
            raise AssertionError("connection %d: %s" % (i, e))
        c.close()


def test_all_down(h):
    """Every server refuses: the client connection is closed promptly."""
    dead1 = ("tcp", "127.0.0.1", free_port())
    dead2 = ("tcp", "127.0.0.1", free_port())
    f = simple_tcp(h, [dead1, dead2],
                   upstream_opts={"retries": "1", "connect_timeout": "10s", "hold": "0"},
                   listener_opts={"idle_timeout": "60s"})
    for i in range(3):
        c = h.connect(f.addr)
        try:
            c.sendall(b"anyone?")
        except OSError:
            pass  # already reset: fine
        kind, dt, data = wait_closed(c, 2.0)
        assert data == b"", "got data from nowhere: %r" % data
        print("connection %d: %s after %.3fs" % (i, kind, dt))
        c.close()
    assert f.alive(), "ferry died"


def test_round_robin(h):
    """Smooth weighted round robin: weights 2 and 1 over 9 connections give 6
    and 3 (one worker, so one balancer)."""
    def named(name):
        def handler(conn):
            conn.sendall(name)
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(5)
            while conn.recv(4096):
                pass
        return handler

    a = h.thread_server(named(b"A"))
    b = h.thread_server(named(b"B"))
    f = simple_tcp(h, ["%s weight=2" % harness.fmt_addr(a), harness.fmt_addr(b)],
                   global_opts={"workers": "1"})
    seq = []
    for i in range(9):
        c = h.connect(f.addr)
        seq.append(recv_until_eof(c, 5).decode())
        c.close()
    s = "".join(seq)
    assert s.count("A") == 6 and s.count("B") == 3, "sequence %s, want 6 A and 3 B" % s
    # smooth: never three A in a row
    assert "AAA" not in s, "sequence %s is not smooth" % s


if __name__ == "__main__":
    harness.main(globals())
