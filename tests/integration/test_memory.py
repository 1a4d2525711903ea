#!/usr/bin/env python3
"""Memory given back after a burst (buffer.c's decay, memtrim.c): a burst of
requests with large heads, on connections that then stay open, leaves ferry
holding little more than the idle connections themselves. (What the slabs
of slab.c add, idle connections packed apart from the holes requests leave,
is a figure, not a test: bench/run's RSS per idle connection.)

Skipped under AddressSanitizer, whose allocator keeps freed memory in
quarantine on purpose, and under a wrapper (valgrind), whose RSS is not
ferry's."""
import os
import socket
import time

import harness
import opslib
from test_faults import is_asan

KiB = 1 << 10


def burst(addr, n, pad, batch=200):
    """N connections, BATCH at a time each sending one request with a PAD-byte
    header and reading its response; returns them all, still open."""
    held = []
    for start in range(0, n, batch):
        socks = []
        for _ in range(min(batch, n - start)):
            s = socket.create_connection((addr[1], addr[2]), timeout=10)
            s.sendall(harness.build_request("GET", "/bytes/100", [("Host", "mem.test"),
                                                                   ("X-Pad", "p" * pad)]))
            socks.append(s)
        for s in socks:
            r = harness.HttpClient(s).read_response("GET", timeout=10)
            assert r.status == 200, r
        held += socks
    return held


def test_burst_memory_returns(h):
    """600 connections (200 at a time) each send one request with a 24 KiB
    head, then stay open. While the burst runs ferry needs a buffer for each
    head; within a few seconds after it, its RSS is back to where it started
    plus 1 KiB per connection (the connection objects are under 0.5 KiB)
    plus the 16 buffers a worker keeps (at most 1 MiB) and some slack.
    Without giving memory back it would hold on to every buffer it cached
    (hundreds, 24 KiB of each touched)."""
    if is_asan(h):
        raise harness.Skip("ASan quarantines freed memory")
    if os.environ.get("FERRY_WRAPPER"):
        raise harness.Skip("RSS under a wrapper (valgrind) is not ferry's")
    up = harness.http_upstream(h)
    f = opslib.start(h, [("web", {"upstream": "app"})], [("app", [up], {})],
                     global_opts={"workers": "1"})
    for i in range(5):
        assert opslib.get_once(f.addr, "/warm%d" % i, host="mem.test").status == 200
    time.sleep(0.3)
    base = f.rss_kib()
    n = 600
    held = burst(f.addr, n, 24 * KiB)
    try:
        peak = f.rss_kib()
        print("RSS: %d KiB before, %d KiB right after the burst (%.1f KiB per connection)"
              % (base, peak, (peak - base) / n))
        limit = base + n + 1536  # KiB

        def settled():
            return f.rss_kib() <= limit
        took = opslib.wait_for(settled, 6, "RSS back under %d KiB (base %d + 1 KiB x %d conns + "
                               "1.5 MiB; now %d)" % (limit, base, n, f.rss_kib()), step=0.25)
        rss = f.rss_kib()
        print("RSS %d KiB %.1f s after: %.0f bytes per idle connection" % (
            rss, took, (rss - base) * 1024.0 / n))
        # the connections are still there and usable
        c = harness.HttpClient(held[n // 2])
        assert c.request("GET", "/bytes/10", [("Host", "mem.test")], timeout=5).status == 200
        assert opslib.metric_sum(opslib.scrape(f), "ferry_connections_active") >= n
    finally:
        for s in held:
            s.close()


if __name__ == "__main__":
    harness.main(globals())
