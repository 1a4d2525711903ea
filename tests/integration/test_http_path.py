#!/usr/bin/env python3
"""Path normalisation through the real binary: the route that matched is the
route the upstream serves. Dot segments, repeated slashes and escapes of
unreserved characters are resolved before routing and the upstream gets the
normalised path with the query as sent; `%2F` stays encoded; a path that
climbs above `/`, `%00` or a broken escape is a 400 that never reaches an
upstream; the access log keeps the target exactly as the client sent it."""
import json
import re

import harness
import opslib
from harness import build_request, get, http_client, http_upstream, simple_http


def _start(h):
    """ferry with routes public (/public/), secret (/secret/) and api
    (/api/, strip_prefix), each to its own ferry-upstream, and the listener's
    default upstream "default"."""
    names = ("public", "secret", "api", "default")
    ups = {n: http_upstream(h, n) for n in names}
    routes = [
        ("public", [("path_prefix", "/public/"), ("upstream", "public")]),
        ("secret", [("path_prefix", "/secret/"), ("upstream", "secret")]),
        ("api", [("path_prefix", "/api/"), ("upstream", "api"), ("strip_prefix", "on")]),
    ]
    more = [(n, [ups[n]], {}) for n in names if n != "default"]
    return simple_http(h, [ups["default"]], routes=routes, more_upstreams=more), ups


def _check(h, f, cases):
    """cases: [(target sent, upstream that must answer, target it must see)],
    all sent on one keep-alive connection (each path is rewritten in the
    connection's input buffer: the next request must not notice)."""
    c = http_client(h, f)
    for sent, server, seen in cases:
        r = c.request("GET", sent, [("Host", "p.example")])
        assert r.status == 200, "GET %s: %r" % (sent, r)
        j = r.json()
        assert (j["server"], j["target"]) == (server, seen), \
            "GET %s reached %s as %r, want %s as %r" % (sent, j["server"], j["target"], server, seen)


def test_path_dot_segments(h):
    """GET /public/../secret/x is routed by /secret/ and sent as /secret/x."""
    f, _ = _start(h)
    _check(h, f, [
        ("/public/../secret/x", "secret", "/secret/x"),
        ("/public/%2e%2E/secret/x", "secret", "/secret/x"),
        ("/public/./x", "public", "/public/x"),
        ("/secret/a/b/../../../public/y/", "public", "/public/y/"),
        ("/public//x", "public", "/public/x"),
        ("/%70ublic/%7Ex", "public", "/public/~x"),
        ("/public/..", "default", "/"),
        ("http://p.example/public/../secret/abs", "secret", "/secret/abs"),
    ])


def test_path_strip_prefix(h):
    """strip_prefix applies to the normalised path: never //host or /.. upstream."""
    f, _ = _start(h)
    _check(h, f, [
        ("/api//evil.com/x", "api", "/evil.com/x"),
        ("/api/..//evil.com/x", "default", "/evil.com/x"),
        ("/api/../x", "default", "/x"),
        ("/api/%2e%2e/secret/x", "secret", "/secret/x"),
        ("/api/./v1/../v2", "api", "/v2"),
        ("/api/", "api", "/"),
    ])


def test_path_encoded_slash(h):
    """%2F is no separator: it stays encoded, and a segment holding it goes
    as a whole when a '..' follows."""
    f, _ = _start(h)
    _check(h, f, [
        ("/api/projects/group%2Fsub%2fproj/issues", "api", "/projects/group%2Fsub%2fproj/issues"),
        ("/public/a%2Fb/../c", "public", "/public/c"),
        ("/public/%2F..%2F", "public", "/public/%2F..%2F"),
        ("/public/a%20b%C3%A9", "public", "/public/a%20b%C3%A9"),
    ])


def test_path_query(h):
    """The query goes upstream exactly as sent, whatever the path became."""
    f, _ = _start(h)
    _check(h, f, [
        ("/a/./b?x=/../y", "default", "/a/b?x=/../y"),
        ("/api/./b/?x=//y%2e&z=%7e", "api", "/b/?x=//y%2e&z=%7e"),
        ("/public/x/..?q=..", "public", "/public/?q=.."),
        ("http://p.example?x=/../y", "default", "/?x=/../y"),
    ])
    r = get(h, f, "*", method="OPTIONS")
    assert r.status == 200 and r.json()["target"] == "*", r


def test_path_refused(h):
    """A path that climbs above /, %00 or a broken escape: 400 naming the
    cause, the connection closed, and nothing reaches any upstream."""
    rec = opslib.Recorder(h, http=True, name="rec")
    f = simple_http(h, [rec.addr],
                    routes=[("api", [("path_prefix", "/api/"), ("upstream", "app"),
                                     ("strip_prefix", "on")])])
    cases = [("/..", "above"), ("/../x", "above"), ("/api/../../x", "above"),
             ("/%2e%2e/x", "above"), ("/%00", "NUL"), ("/api/a%00", "NUL"),
             ("/%zz", "percent"), ("/a%4", "percent"), ("/a%", "percent")]
    for target, cause in cases:
        c = http_client(h, f)
        r = c.request("GET", target, [("Host", "p.example")])
        assert r.status == 400, "GET %s: want 400, got %r" % (target, r)
        text = r.body.decode("utf-8", "replace")
        assert cause in text, "GET %s: 400 body %r does not name the cause (%s)" % (target, text, cause)
        assert r.header("x-request-id"), r.headers
        c.wait_closed(3)
    r = get(h, f, "/api/ok")  # the upstream works: the refusals were ferry's
    assert r.status == 200, r
    sent = b"".join(rec.snapshot())
    assert sent.count(b"\r\n\r\n") == 1 and sent.startswith(b"GET /ok HTTP/1.1\r\n"), \
        "the upstream got more than the one good request: %r" % sent[:600]


def test_path_access_log(h):
    """The access log shows the target as the client sent it, with the route
    the normalised path chose; a refused path is logged as sent too."""
    up = http_upstream(h)
    f = simple_http(h, [up], global_opts={"access_log": "stdout", "access_log_format": "json"},
                    routes=[("public", [("path_prefix", "/public/"), ("upstream", "app")]),
                            ("secret", [("path_prefix", "/secret/"), ("upstream", "app")])])
    r = get(h, f, "/public/../secret/%7ex?q=/../y")
    assert r.status == 200 and r.json()["target"] == "/secret/~x?q=/../y", r
    c = http_client(h, f)
    c.send(build_request("GET", "/public/../../x"))
    assert c.read_response().status == 400
    c.wait_closed(3)
    h.ferry_stop_clean(f)
    logs = [json.loads(l) for l in f.stdout().splitlines() if l.strip()]
    got = [(o["target"], o["route"], int(o["status"])) for o in logs]
    assert got == [("/public/../secret/%7ex?q=/../y", "secret", 200),
                   ("/public/../../x", "-", 400)], "access log: %r" % got
    assert all(re.fullmatch(r"\S+", o["rid"]) for o in logs), logs


if __name__ == "__main__":
    harness.main(globals())
