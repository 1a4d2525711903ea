#!/usr/bin/env python3
"""The access log under hostile input and log rotation: a User-Agent that
tries to forge fields of the text line, non-UTF-8 bytes that must not break
JSON lines, and SIGUSR1 while requests are being logged."""
import json
import os
import re
import signal
import threading
import time

import harness
from harness import HttpClient, build_request, http_upstream
from opslib import get_once, request_raw, start, wait_for

# A client-controlled header that closes the quoted field and adds its own.
FORGED_UA = 'ua" route=FAKE upstream=6.6.6.6 "x\\'
# llhttp lets '"' and '\\' through in a target, and ferry forwards them.
TARGET = '/t?q="x\\y'
# Valid UTF-8 (e acute, euro sign), then every byte from 0x80 to 0xff on its
# own: none of those is a valid sequence where it stands.
REFERER = "https://r.test/\u00e9\u20ac?".encode("utf-8") + bytes(range(0x80, 0x100))


def _hostile_request(target):
    # build_request encodes with latin-1: each char below 0x100 is one byte
    return build_request("GET", target, [("Host", "log.test"), ("Connection", "close"),
                                         ("User-Agent", FORGED_UA),
                                         ("Referer", REFERER.decode("latin-1"))])


def _log_lines(path, want, timeout=3):
    """The access log's lines (bytes) once it holds at least want of them."""
    got = []

    def enough():
        try:
            with open(path, "rb") as fh:
                got[:] = [l for l in fh.read().split(b"\n") if l]
        except OSError:
            return False
        return len(got) >= want
    wait_for(enough, timeout, "%d access log line(s) in %s" % (want, path))
    return got


def _run(h, fmt):
    up = http_upstream(h)
    path = h.path("access.log")
    f = start(h, [("web", {"upstream": "app"})], [("app", [up], {})],
              global_opts={"access_log": path, "access_log_format": fmt})
    resp = request_raw(f.addr, _hostile_request(TARGET))
    assert resp.startswith(b"HTTP/1.1 200"), "hostile headers were not served: %r" % resp[:200]
    assert get_once(f.addr, "/plain").status == 200
    return _log_lines(path, 2)


def test_access_log_escape_text(h):
    """A '"' in the User-Agent or the target cannot add fields to the text
    line: the line has exactly the spec's fields, route and upstream are
    ferry's, and '"', '\\' and every byte outside printable ASCII are \\xHH."""
    lines = _run(h, "text")
    pat = re.compile(rb'^(\S+) - - \[([^\]]+)\] "([^"]*)" (\d{3}) (\d+) "((?:[^"\\]|\\x[0-9A-F]{2})*)" '
                     rb'"((?:[^"\\]|\\x[0-9A-F]{2})*)" route=(\S+) upstream=(\S+) rt=(\S+) urt=(\S+) '
                     rb'rid=(\S+)$')
    hostile = [l for l in lines if b"/t?q=" in l]
    assert len(hostile) == 1, "want one line for the hostile request: %r" % lines
    line = hostile[0]
    m = pat.match(line)
    assert m, "text line does not have exactly the spec's fields: %r" % line
    assert m.group(3) == b"GET /t?q=\\x22x\\x5Cy HTTP/1.1", line
    assert m.group(7) == b'ua\\x22 route=FAKE upstream=6.6.6.6 \\x22x\\x5C', \
        "user agent field %r" % m.group(7)
    want_ref = b"".join(bytes([b]) if 0x20 <= b < 0x7f else b"\\x%02X" % b for b in REFERER)
    assert m.group(6) == want_ref, "referer field %r, want %r" % (m.group(6), want_ref)
    assert m.group(8) == b"-" and m.group(9).startswith(b"127.0.0.1:"), \
        "route/upstream are not ferry's own: %r" % line
    assert line.count(b"route=") == 2 and line.count(b" upstream=") == 2, line  # ferry's + the UA's
    assert all(0x20 <= b < 0x7f for b in line), "non-printable byte in a text line: %r" % line


def test_access_log_escape_json(h):
    """Every JSON line parses (strict UTF-8, json.loads); the user agent
    comes back as sent; valid UTF-8 in the referer passes through and each
    byte that is not part of valid UTF-8 comes back as U+0080..U+00FF."""
    lines = _run(h, "json")
    objs = []
    for l in lines:
        try:
            objs.append(json.loads(l.decode("utf-8")))
        except ValueError as e:
            raise AssertionError("access log line is not valid JSON (%s): %r" % (e, l))
    hostile = [o for o in objs if o["target"].startswith("/t?q=")]
    assert len(hostile) == 1, objs
    o = hostile[0]
    assert o["target"] == TARGET and o["user_agent"] == FORGED_UA, o
    want = "https://r.test/\u00e9\u20ac?" + bytes(range(0x80, 0x100)).decode("latin-1")
    assert o["referer"] == want, "referer %r, want %r" % (o["referer"], want)
    assert o["route"] == "-" and o["upstream"].startswith("127.0.0.1:"), o



def _fds_to(pid, path):
    """The descriptor numbers of process pid open on path."""
    out = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == path:
                out.append(int(fd))
        except OSError:
            pass  # closed while we looked
    return sorted(out)


def test_access_log_reopen_under_load(h):
    """SIGUSR1 while clients keep requests going: the reopened file gets
    the lines, and the descriptor the workers write to keeps its number
    (the new file is put in its place). A reopen that closed the old
    number would let the next accepted socket take it, and a worker that
    had just loaded it would write a log line into a connection."""
    up = http_upstream(h)
    path = os.path.realpath(h.path("access.log"))
    f = start(h, [("web", {"upstream": "app"})], [("app", [up], {})],
              global_opts={"access_log": path, "workers": "2"})
    get_once(f.addr, "/first")
    wait_for(lambda: _fds_to(f.pid, path), 3, "ferry's descriptor on the access log")
    fds = _fds_to(f.pid, path)
    assert len(fds) == 1, "descriptors on %s: %r" % (path, fds)
    stop = threading.Event()
    errors, served = [], [0]

    def client(i):
        try:
            while not stop.is_set():
                s = h.connect(f.addr)
                c = HttpClient(s)
                for k in range(5):
                    r = c.request("GET", "/load/%d/%d" % (i, k), [("Host", "log.test")])
                    assert r.status == 200, "load request: %r" % r
                    served[0] += 1
                s.close()
        except Exception as e:  # reported by the main thread
            errors.append(repr(e))
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for n in range(1, 4):
            time.sleep(0.2)
            os.rename(path, "%s.%d" % (path, n))
            f.signal(signal.SIGUSR1)
            wait_for(lambda: os.path.exists(path), 3, "a new access log after SIGUSR1 #%d" % n)
            now = _fds_to(f.pid, path)
            assert now == fds, "after SIGUSR1 #%d the access log is on descriptor(s) %r, was %r" % (
                n, now, fds)
            for k in range(1, n + 1):
                old = _fds_to(f.pid, "%s.%d" % (path, k))
                assert not old, "rotated file %s.%d still open on %r" % (path, k, old)
            before = os.path.getsize(path)
            wait_for(lambda: os.path.getsize(path) > before, 3, "lines in the reopened log")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors, "clients failed during the reopens: %s" % errors[:3]
    assert served[0] > 0
    pat = re.compile(rb'^127\.0\.0\.1 - - \[[^\]]+\] "GET /\S* HTTP/1\.1" 200 \d+ "-" "-" route=- ')
    for name in [path] + ["%s.%d" % (path, n) for n in range(1, 4)]:
        with open(name, "rb") as fh:
            for line in fh.read().split(b"\n")[:-1]:
                assert pat.match(line), "%s: malformed line %r" % (name, line)


harness.main(globals())
