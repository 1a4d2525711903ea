#!/usr/bin/env python3
"""ferry's life: graceful stop on SIGTERM, shutdown_timeout, the access log."""
import json
import os
import re
import signal
import socket
import time

import harness
from harness import echo_check, recv_exact, recv_until_eof, wait_closed, simple_tcp


def _assert_not_served(addr, deadline_s):
    """Within deadline_s, a new connection to addr must be refused or closed
    by ferry (reset / EOF) without being served."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < deadline_s:
        try:
            c = harness.connect(addr, timeout=0.5)
        except ConnectionRefusedError:
            return "refused after %.2fs" % (time.monotonic() - t0)
        except OSError as e:
            last = "connect: %r" % e
            time.sleep(0.05)
            continue
        try:
            try:
                c.sendall(b"new")
            except OSError:
                return "reset after %.2fs" % (time.monotonic() - t0)
            try:
                kind, dt, data = wait_closed(c, 0.5)
                if data == b"":
                    return "%s after %.2fs" % (kind, time.monotonic() - t0)
                last = "served (echoed %r)" % data
            except AssertionError as e:
                last = "accepted and left hanging (%s)" % e
        finally:
            c.close()
        time.sleep(0.05)
    raise AssertionError("new connections still not refused %.1fs after SIGTERM; last: %s" % (deadline_s, last))


def test_sigterm_drain(h):
    """SIGTERM: new connections are refused at once, a live connection keeps
    working; when it closes ferry exits 0."""
    up = h.upstream()
    f = simple_tcp(h, [up], global_opts={"shutdown_timeout": "30s"},
                   listener_opts={"idle_timeout": "60s"})
    live = h.connect(f.addr)
    echo_check(live, b"before")
    f.signal(signal.SIGTERM)
    time.sleep(0.1)  # a connect racing the signal's delivery may still be served
    how = _assert_not_served(f.addr, 2.0)
    print("new connection after SIGTERM: %s" % how)
    for i in range(5):
        assert f.alive(), "ferry exited (rc %r) with a live connection, %d s before shutdown_timeout" \
            % (f.popen.poll(), 30)
        echo_check(live, b"draining %d" % i + os.urandom(50000))
        time.sleep(0.2)
    live.shutdown(socket.SHUT_WR)
    assert recv_until_eof(live, 5) == b""
    t0 = time.monotonic()
    live.close()
    rc = f.wait(5)
    assert rc is not None, "ferry still running 5 s after its last connection closed"
    dt = time.monotonic() - t0
    print("ferry exited %.2fs after the last connection closed" % dt)
    assert rc == 0, "ferry exit status %r after a graceful stop (expected 0)" % rc
    assert dt < 3, "ferry took %.2fs to exit after draining" % dt
    harness.assert_sanitizer_clean(f)


def test_shutdown_timeout(h):
    """shutdown_timeout = 1s and a connection left open: ferry exits 0 after
    about 1 s, closing it."""
    up = h.upstream()
    f = simple_tcp(h, [up], global_opts={"shutdown_timeout": "1s"},
                   listener_opts={"idle_timeout": "60s"})
    live = h.connect(f.addr)
    echo_check(live, b"hold on")
    t0 = time.monotonic()
    f.signal(signal.SIGTERM)
    rc = f.wait(6)
    dt = time.monotonic() - t0
    assert rc is not None, "ferry still running 6 s after SIGTERM with shutdown_timeout = 1s"
    print("ferry exited %.2fs after SIGTERM" % dt)
    assert rc == 0, "exit status %r after shutdown_timeout (expected 0)" % rc
    assert dt >= 0.7, "ferry exited after %.2fs: it did not wait for the live connection" % dt
    assert dt <= 4.0, "ferry exited after %.2fs, want about 1s" % dt
    kind, _, _ = wait_closed(live, 2)
    harness.assert_sanitizer_clean(f)


def test_sigint(h):
    """SIGINT is a graceful stop too: with no connections, exit 0 at once."""
    up = h.upstream()
    f = simple_tcp(h, [up])
    c = h.connect(f.addr)
    echo_check(c, b"x")
    c.close()
    time.sleep(0.2)
    t0 = time.monotonic()
    f.signal(signal.SIGINT)
    rc = f.wait(5)
    assert rc is not None, "ferry still running 5 s after SIGINT with no connections"
    assert rc == 0, "exit status %r after SIGINT (expected 0)" % rc
    assert time.monotonic() - t0 < 2, "ferry took %.2fs to stop with no connections" % (time.monotonic() - t0)
    harness.assert_sanitizer_clean(f)


def _fixed_reply_server(h, reply_len):
    """Upstream that reads until EOF, then sends reply_len bytes and closes."""
    def handler(conn):
        conn.settimeout(10)
        while conn.recv(65536):
            pass
        conn.sendall(b"r" * reply_len)
        conn.shutdown(socket.SHUT_WR)
    return h.thread_server(handler)


def _access_log_run(h, fmt):
    """Three connections, each 1234 bytes in and 3000 out; returns (ferry,
    upstream addr, stdout lines) read after a clean stop."""
    up = _fixed_reply_server(h, 3000)
    g = {} if fmt is None else {"access_log_format": fmt}
    f = simple_tcp(h, [up], global_opts=g)
    for i in range(3):
        c = h.connect(f.addr)
        c.sendall(b"q" * 1234)
        c.shutdown(socket.SHUT_WR)
        got = recv_until_eof(c, 5)
        assert len(got) == 3000, "connection %d got %d bytes" % (i, len(got))
        c.close()
    # Lines should appear while ferry runs; read them after a clean stop in any
    # case, so a buffered stdout is not mistaken for a missing line.
    deadline = time.monotonic() + 2
    live = 0
    while time.monotonic() < deadline:
        live = len([l for l in f.stdout().splitlines() if l.strip()])
        if live >= 3:
            break
        time.sleep(0.1)
    print("%d access log lines visible before stop" % live)
    h.ferry_stop_clean(f)
    return f, up, f.stdout().splitlines()


def test_access_log_text(h):
    f, up, lines = _access_log_run(h, None)  # text and stdout are the defaults
    tcp = [l for l in lines if '"TCP"' in l]
    assert len(tcp) == 3, "want 3 access log lines, got %d:\n%s" % (len(tcp), "\n".join(lines))
    pat = re.compile(r'^(127\.0\.0\.1)(:\d+)? - - \[[^\]]+\] "TCP" listener=t upstream=127\.0\.0\.1:%d '
                     r'in=(\d+) out=(\d+) duration=(\d+(?:\.\d+)?)$' % up[2])
    for l in tcp:
        m = pat.match(l)
        assert m, "access log line does not match the spec's tcp text format: %r" % l
        assert m.group(3) == "1234", "in=%s, client sent 1234: %r" % (m.group(3), l)
        assert m.group(4) == "3000", "out=%s, client received 3000: %r" % (m.group(4), l)
        assert float(m.group(5)) < 10, l
    # the time looks like a time
    assert re.search(r"\[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]|\[\d{4}-\d{2}-\d{2}T", tcp[0]), \
        "unusual time format in %r" % tcp[0]


def test_access_log_json(h):
    f, up, lines = _access_log_run(h, "json")
    objs = []
    for l in lines:
        if l.startswith("{"):
            try:
                objs.append(json.loads(l))
            except ValueError:
                raise AssertionError("invalid json access log line: %r" % l)
    assert not [l for l in lines if '"TCP" listener=' in l], "text lines with access_log_format = json"
    assert len(objs) == 3, "want 3 json access log lines, got %d:\n%s" % (len(objs), "\n".join(lines))
    for o in objs:
        for k in ("time", "client", "listener", "upstream", "bytes_in", "bytes_out", "duration"):
            assert k in o, "json access log lacks %r: %r" % (k, o)
        assert o["listener"] == "t", o
        assert o["upstream"] == "127.0.0.1:%d" % up[2], o
        assert str(o["client"]).startswith("127.0.0.1"), o
        assert int(o["bytes_in"]) == 1234, "bytes_in %r, client sent 1234: %r" % (o["bytes_in"], o)
        assert int(o["bytes_out"]) == 3000, "bytes_out %r, client received 3000: %r" % (o["bytes_out"], o)
        assert 0 <= float(o["duration"]) < 10, o


if __name__ == "__main__":
    harness.main(globals())
