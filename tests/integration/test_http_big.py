#!/usr/bin/env python3
"""Big bodies through HTTP mode: 128 MiB both ways with checksums, and a slow
reader of a 512 MiB response (bounded memory)."""
import hashlib
import os
import socket
import time

import harness
from harness import HttpClient, build_request, http_client, http_upstream, simple_http

MiB = 1 << 20
BIG = 128 * MiB
ALPHA = b"abcdefghijklmnopqrstuvwxyz"


def pattern_sha256(n):
    """sha256 of the upstream's /bytes/N body (byte i = 'a' + i % 26)."""
    block = ALPHA * (MiB // 26)  # a multiple of 26 bytes, so blocks repeat the pattern
    hs = hashlib.sha256()
    left = n
    while left >= len(block):
        hs.update(block)
        left -= len(block)
    hs.update(block[:left])
    return hs.hexdigest()


def upload_pieces():
    """128 MiB of data, each MiB different; yields pieces, sha256 via .hash."""
    base = os.urandom(MiB)
    for i in range(BIG // MiB):
        yield i.to_bytes(8, "big") + base[8:]


def _upload(h, chunked):
    up = http_upstream(h)
    f = simple_http(h, [up], listener_opts={"idle_timeout": "60s"}, upstream_opts={"read_timeout": "60s"})
    c = http_client(h, f)
    hs = [("Host", "big.example")]
    hs.append(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(BIG)))
    sent = hashlib.sha256()
    t0 = time.monotonic()
    c.send(build_request("PUT", "/upload", hs))
    c.sock.settimeout(60)
    for piece in upload_pieces():
        sent.update(piece)
        if chunked:
            # uneven chunk sizes
            a, b = piece[:300001], piece[300001:]
            c.send(b"%x\r\n%s\r\n%x\r\n%s\r\n" % (len(a), a, len(b), b))
        else:
            c.send(piece)
    if chunked:
        c.send(b"0\r\n\r\n")
    r = c.read_response(timeout=60)
    dt = time.monotonic() - t0
    print("128 MiB %s upload in %.2fs" % ("chunked" if chunked else "Content-Length", dt))
    assert r.status == 200, r
    j = r.json()
    assert j["body_length"] == BIG, "upstream got %d body bytes, sent %d" % (j["body_length"], BIG)
    assert j["body_sha256"] == sent.hexdigest(), "sha256 at the upstream differs from what was sent"
    # the connection is still good
    r = c.request("GET", "/after", [("Host", "big.example")])
    assert r.status == 200 and r.json()["target"] == "/after", r


def test_upload_length(h):
    _upload(h, False)


def test_upload_chunked(h):
    _upload(h, True)


def _download(h, target):
    up = http_upstream(h)
    f = simple_http(h, [up])
    c = http_client(h, f)
    got = hashlib.sha256()
    t0 = time.monotonic()
    c.send(build_request("GET", target, [("Host", "big.example")]))
    r = c.read_response(timeout=60, sink=got.update)
    dt = time.monotonic() - t0
    print("128 MiB download (%s) in %.2fs" % (target, dt))
    assert r.status == 200, r
    assert r.body_len == BIG, "got %d body bytes, want %d" % (r.body_len, BIG)
    assert got.hexdigest() == pattern_sha256(BIG), "downloaded body differs from the pattern"
    return c


def test_download(h):
    c = _download(h, "/bytes/%d" % BIG)
    r = c.request("GET", "/after", [("Host", "big.example")])
    assert r.status == 200 and r.json()["target"] == "/after", r


def test_download_chunked(h):
    c = _download(h, "/chunked/%d" % BIG)
    r = c.request("GET", "/after", [("Host", "big.example")])
    assert r.status == 200, r


def test_slow_reader_rss(h):
    """A 512 MiB response to a client that reads nothing for 2s: ferry's RSS
    grows by less than 64 MiB (backpressure); then the rest, read fast, is
    all there."""
    total = 512 * MiB
    up = http_upstream(h)
    asan = os.environ.get("ASAN_OPTIONS", "")
    asan = (asan + ":" if asan else "") + "quarantine_size_mb=4"
    f = simple_http(h, [up], listener_opts={"idle_timeout": "60s"},
                    upstream_opts={"read_timeout": "60s"}, env={"ASAN_OPTIONS": asan})
    # warm up: pools and buffers that any transfer allocates
    c0 = http_client(h, f)
    c0.send(build_request("GET", "/bytes/%d" % (8 * MiB), [("Host", "s.example")]))
    r = c0.read_response(timeout=30, sink=lambda b: None)
    assert r.status == 200 and r.body_len == 8 * MiB, r
    c0.sock.close()
    time.sleep(0.2)
    base = f.rss_kib()
    s = h.track(socket.socket())
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.settimeout(5)
    s.connect((f.addr[1], f.addr[2]))
    c = HttpClient(s)
    c.send(build_request("GET", "/bytes/%d" % total, [("Host", "s.example")]))
    peak = base
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.0:
        peak = max(peak, f.rss_kib())
        time.sleep(0.05)
    growth = (peak - base) / 1024
    print("ferry RSS %.1f -> %.1f MiB (+%.1f) while the client read nothing for 2s" %
          (base / 1024, peak / 1024, growth))
    assert f.alive(), "ferry died"
    assert growth < 64, "ferry RSS grew by %.1f MiB behind a slow reader (limit 64)" % growth
    # read slowly for a while, still sampling
    n = [0]
    alpha_ok = [True]

    def sink(b):
        off = n[0] % 26
        # spot check: the first bytes of each piece continue the pattern
        k = min(len(b), 52)
        if b[:k] != (ALPHA[off:] + ALPHA * 3)[:k]:
            alpha_ok[0] = False
        n[0] += len(b)
        if time.monotonic() - t0 < 3.0:
            time.sleep(0.01)
    r = c.read_response(timeout=120, sink=sink)
    peak = max(peak, f.rss_kib())
    dt = time.monotonic() - t0
    print("read %d MiB in %.2fs; RSS peak +%.1f MiB" % (r.body_len // MiB, dt, (peak - base) / 1024))
    assert r.status == 200, r
    assert r.body_len == total and n[0] == total, "read %d of %d bytes" % (n[0], total)
    assert alpha_ok[0], "response body does not follow the pattern"
    assert (peak - base) / 1024 < 64, "ferry RSS grew by %.1f MiB (limit 64)" % ((peak - base) / 1024)


if __name__ == "__main__":
    harness.main(globals())
