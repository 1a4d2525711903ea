#!/usr/bin/env python3
"""`ferry --explain 'METHOD URL'`: the listener, route and upstream a request
would take, why, and the routes that lost; exit codes."""
import re

import harness

CONFIG = """\
[global]
workers = 1

[listener web]
bind = 127.0.0.1:{port}
mode = http

[upstream a]
server = 127.0.0.1:3001

[upstream b]
server = 127.0.0.1:3002 weight=2
server = 127.0.0.1:3003 backup

[route exact]
host = api.example.com
upstream = a

[route suffix]
host = *.example.com
upstream = b

[route deep]
host = *.deep.example.com
upstream = b

[route prefix]
path_prefix = /api/
upstream = a

[route longer]
path_prefix = /api/v2/
upstream = b

[route exactpath]
path = /api/users
upstream = b

[route post]
path_prefix = /api/
methods = POST
upstream = b
strip_prefix = on
"""


def _setup(h, text=CONFIG):
    port = harness.free_port()
    path = h.write("explain.ini", text.format(port=port))
    lines = {}
    for i, line in enumerate(text.splitlines(), 1):
        m = re.match(r"\[(route|upstream|listener) (\S+)\]", line)
        if m:
            lines[m.group(2)] = i
    return path, port, lines


def _explain(h, path, req):
    rc, out, err = h.run_ferry(["-c", path, "--explain", req])
    return rc, out, err


def _field(out, name):
    m = re.search(r"^%s:\s+(.*)$" % name, out, re.M)
    assert m, "no %r line in:\n%s" % (name, out)
    return m.group(1)


def _lost(out):
    """{route: reason} from the "also matched, lost:" block."""
    m = re.search(r"^also matched, lost:\n((?:  .*\n)*)", out, re.M)
    if not m:
        return {}
    res = {}
    for line in m.group(1).splitlines():
        name, _, why = line.strip().partition(" ")
        res[name] = why
    return res


def test_explain_precedence(h):
    """The SPEC's precedence rules, one request each: exact host beats
    *.suffix, a longer suffix beats a shorter one, any host rule beats no
    host; path beats path_prefix; a longer prefix wins; methods beat none.
    Each names the winner with FILE:LINE, the rule, and the losers."""
    path, port, lines = _setup(h)
    cases = [
        ("GET http://api.example.com/api/users", "exact",
         "exact host api.example.com beats suffix *.example.com",
         {"suffix", "exactpath", "prefix"}, "a"),
        ("GET http://x.deep.example.com/", "deep",
         "longer suffix *.deep.example.com beats suffix *.example.com", {"suffix"}, "b"),
        ("GET http://www.example.com/api/x", "suffix", "suffix *.example.com beats", {"prefix"}, "b"),
        ("GET http://other.test/api/users", "exactpath",
         "exact path /api/users beats path_prefix /api/", {"prefix"}, "b"),
        ("GET http://other.test/api/v2/x", "longer",
         "longest prefix /api/v2/ (8 bytes) beats /api/ (5 bytes)", {"prefix"}, "b"),
        ("POST http://other.test/api/x", "post", "methods POST beats any method", {"prefix"}, "b"),
        ("GET http://other.test/api/x", "prefix", "the only route that matches", set(), "a"),
        ("GET /api/x", "prefix", "the only route that matches", set(), "a"),
    ]
    for req, winner, why, losers, upstream in cases:
        rc, out, err = _explain(h, path, req)
        assert rc == 0, "%s: exit %d, stderr %r" % (req, rc, err)
        route = _field(out, "route")
        assert route.startswith("%s (%s:%d)" % (winner, path, lines[winner])), \
            "%s: route line %r, want %s at line %d\n%s" % (req, route, winner, lines[winner], out)
        assert why in _field(out, "why"), "%s: why %r, want %r\n%s" % (req, _field(out, "why"), why, out)
        lost = _lost(out)
        assert set(lost) == losers, "%s: lost %r, want %r\n%s" % (req, sorted(lost), sorted(losers), out)
        for name, reason in lost.items():
            assert reason.startswith("(%s:%d)" % (path, lines[name])), "%s: %s %r" % (req, name, reason)
        up = _field(out, "upstream")
        assert up.startswith("%s (%s:%d)" % (upstream, path, lines[upstream])), \
            "%s: upstream %r" % (req, up)
        listener = _field(out, "listener")
        assert listener.startswith("web (127.0.0.1:%d, %s:%d)" % (port, path, lines["web"])), listener
    # the upstream line lists servers with weight and backup; strip_prefix shows
    rc, out, err = _explain(h, path, "POST http://other.test/api/x?q=1")
    assert "127.0.0.1:3002 weight=2" in out and "127.0.0.1:3003 backup" in out, out
    assert re.search(r"^upstream sees: POST /x\?q=1", out, re.M), out


def test_explain_exit_codes(h):
    """0 when a route or the listener's default upstream takes the request;
    1 when nothing does (404); 1 on a config error; 2 when --explain has no
    argument; a request that does not parse is refused on stderr."""
    path, port, lines = _setup(h)
    rc, out, err = _explain(h, path, "GET http://other.test/nothing")
    assert rc == 1, "no route, no default upstream: exit %d\n%s" % (rc, out)
    assert "none matched" in _field(out, "route") and "404" in out, out
    with_default = CONFIG.replace("mode = http\n", "mode = http\nupstream = a\n", 1)
    path2, _, _ = _setup(h, with_default)
    rc, out, err = _explain(h, path2, "GET http://other.test/nothing")
    assert rc == 0 and "default upstream" in out, "default upstream: exit %d\n%s" % (rc, out)
    rc, out, err = _explain(h, path, "bogus")
    assert rc != 0 and out == "" and "bogus" in err, "bad request string: exit %d %r %r" % (rc, out, err)
    rc, out, err = h.run_ferry(["-c", path, "--explain"])
    assert rc == 2, "--explain without an argument: exit %d, want 2 (%r)" % (rc, err)
    bad = h.write("bad.ini", CONFIG.format(port=port) + "\n[route x]\nupstream = nosuch\n")
    rc, out, err = _explain(h, bad, "GET /api/x")
    assert rc == 1 and "bad.ini:" in err and "nosuch" in err, "config error: exit %d %r" % (rc, err)


harness.main(globals())
