#!/usr/bin/env python3
"""WebSocket through ferry with a real client library (python3-websockets).
Run with the interpreter that has it (/usr/bin/python3); skipped without it."""
import asyncio
import os

import harness
from harness import http_upstream, simple_http


def test_websocket(h):
    try:
        import websockets
    except ImportError:
        raise harness.Skip("python module websockets is not installed for %s" % os.sys.executable)
    up = http_upstream(h)
    f = simple_http(h, [up], listener_opts={"idle_timeout": "30s"},
                    routes=[("ws", [("path_prefix", "/ws"), ("upstream", "app")])])
    uri = "ws://%s:%d/ws/echo" % (f.addr[1], f.addr[2])
    messages = ["hello", "", "x" * 125, "y" * 126, "z" * 70000, os.urandom(200 * 1024),
                os.urandom(1), "é ünïcödé ✓"]

    async def run():
        async with websockets.connect(uri, max_size=1 << 22, open_timeout=5, close_timeout=5,
                                      compression=None) as ws:
            rid = ws.response_headers.get("X-Request-Id")
            assert rid, "101 response without X-Request-Id: %r" % list(ws.response_headers.raw_items())
            for m in messages:
                await ws.send(m)
                got = await asyncio.wait_for(ws.recv(), 10)
                assert got == m, "echo of a %d-%s message differs (got %d)" % (
                    len(m), type(m).__name__, len(got))
            # several in flight at once
            batch = [os.urandom(1000 + i) for i in range(20)]
            for m in batch:
                await ws.send(m)
            for m in batch:
                got = await asyncio.wait_for(ws.recv(), 10)
                assert got == m, "pipelined echo out of order or corrupted"
            pong = await ws.ping(b"p")
            await asyncio.wait_for(pong, 5)
    asyncio.run(asyncio.wait_for(run(), 30))
    # a plain request afterwards still works, and ferry is fine
    r = harness.get(h, f, "/plain")
    assert r.status == 200, r


if __name__ == "__main__":
    harness.main(globals())
