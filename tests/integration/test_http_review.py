#!/usr/bin/env python3
"""Defects an outside review found in HTTP mode, each driven through the real
binary: ferry's own responses to HEAD (no body, or a pipelined response is
desynced) and Date on them."""
import re
import socket
import struct
import threading
import time

import harness
import opslib
from harness import HttpClient, build_request, http_client, http_upstream, simple_http

DATE_RE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct"
                     r"|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")


def hdrs(j, name):
    return [v for k, v in j["headers"] if k.lower() == name.lower()]


def test_head_error_has_no_body(h):
    """HEAD to an unrouted path + a pipelined GET: the 404 carries GET's
    headers (Content-Length included) and no body, the connection stays open
    and the GET's response is read as the next one, not after 45 stray bytes."""
    up = http_upstream(h)
    f = simple_http(h, [up], listener_opts={"upstream": None},
                    routes=[("api", [("path_prefix", "/api/"), ("upstream", "app")])])
    c = http_client(h, f)
    c.send(build_request("HEAD", "/nope") + build_request("GET", "/api/x"))
    r = c.read_response("HEAD", timeout=5)
    assert r.status == 404, r
    assert int(r.header("content-length")) > 0, r.headers
    assert "close" not in (r.header("connection") or ""), r.headers
    assert DATE_RE.match(r.header("date") or ""), "Date %r" % r.header("date")
    r2 = c.read_response("GET", timeout=5)
    assert r2.status == 200, "the GET after the HEAD got %r (stray body bytes?)" % r2
    assert r2.json()["target"] == "/api/x", r2.json()
    # ferry's errors that close: to HEAD, headers only, then the close
    c = http_client(h, f)
    c.send(b"HEAD /api/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    r = c.read_response("HEAD", timeout=5)
    assert r.status == 400 and "close" in r.header("connection"), r
    c.wait_closed(3)  # fails on any byte of a body before the close


def test_error_has_date(h):
    f = simple_http(h, [("tcp", "127.0.0.1", harness.free_port())], upstream_opts={"hold": "0"})
    r = harness.get(h, f, "/")
    assert r.status == 502, r
    assert DATE_RE.match(r.header("date") or ""), "502 without a valid Date: %r" % r.headers
    got = time.mktime(time.strptime(r.header("date"), "%a, %d %b %Y %H:%M:%S GMT")) - time.timezone
    assert abs(got - time.time()) < 5, "Date %r is not now" % r.header("date")


if __name__ == "__main__":
    harness.main(globals())
