#!/usr/bin/env python3
"""Several addresses per name (SPEC "Several addresses per name"): a server
given by name stands for every address it resolves to. ferry runs in a
mount namespace of its own (unshare -m, root only) with /etc/hosts
bind-mounted from a file the test writes, so `scale.test` resolves to
127.0.0.1, 127.0.0.2 and ::1 as a compose service, a swarm `tasks.` name or
a headless Service would resolve to its replicas."""
import os
import shutil
import subprocess
import time

import harness
from harness import free_port, http_config
from opslib import counts, get_once, metric, metric_sum, scrape, server_of, status, wait_for

ADDRS = ("127.0.0.1", "127.0.0.2", "::1")


def _need_unshare():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        raise harness.Skip("needs root and unshare(1) for a private /etc/hosts")
    r = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if r.returncode != 0:
        raise harness.Skip("unshare -m fails here: %s" % r.stderr.decode(errors="replace"))


def _hosts(h, addrs):
    """Writes the hosts file in place (a bind mount follows the inode, so a
    rename would not be seen)."""
    p = h.path("hosts")
    with open(p, "w") as fh:
        fh.write("127.0.0.1 localhost\n")
        fh.writelines("%s scale.test\n" % a for a in addrs)
    return p


def _apps(h, port, addrs=ADDRS):
    """ferry-upstream on every address, the one port; name = the address."""
    procs = {}
    for a in addrs:
        listen = "[%s]:%d" % (a, port) if ":" in a else "%s:%d" % (a, port)
        h.upstream(listen, a, None)
        procs[a] = h.procs[-1]
    return procs


def _start(h, port, upstream_opts=None):
    """ferry with upstream app = scale.test:PORT, resolving in its own
    namespace through the test's hosts file."""
    hosts = _hosts(h, ADDRS)
    wrapper = h.write("ferry-ns.sh", '#!/bin/sh\nexec unshare -m sh -c \'mount --bind "$0" '
                      '/etc/hosts && exec "$@"\' %s %s "$@"\n' % (hosts, h.ferry_bin))
    os.chmod(wrapper, 0o755)
    lport, aport = free_port(), free_port()
    uo = {"retries": "2"}
    uo.update(upstream_opts or {})
    text = http_config([("web", ("tcp", "127.0.0.1", lport), {"upstream": "app"})],
                       [("app", ["scale.test:%d" % port], uo)],
                       global_opts={"admin": "127.0.0.1:%d" % aport})
    saved, h.ferry_bin = h.ferry_bin, wrapper
    try:
        f = h.start_ferry(lambda: (text, [("tcp", "127.0.0.1", lport), ("tcp", "127.0.0.1", aport)]))
    finally:
        h.ferry_bin = saved
    f.admin = ("tcp", "127.0.0.1", aport)
    return f, hosts


def _addr_label(a, port):
    return "[%s]:%d" % (a, port) if ":" in a else "%s:%d" % (a, port)


def test_every_address(h):
    """300 requests, one per connection, over three addresses of one name:
    each address gets at least 20% (round robin: exactly a third); the
    metrics and /status name server and address for each."""
    _need_unshare()
    port = free_port()
    _apps(h, port)
    f, _ = _start(h, port)
    got = counts(server_of(get_once(f.addr, "/r%d" % i)) for i in range(300))
    assert sorted(got) == sorted(ADDRS), "answered by %r, want all of %r" % (got, ADDRS)
    assert all(n >= 60 for n in got.values()), "split %r: each address wants >= 60 of 300" % got
    s = scrape(f)
    server = "scale.test:%d" % port
    for a in ADDRS:
        n = metric(s, "ferry_upstream_requests_total", None, upstream="app", server=server,
                   address=_addr_label(a, port))
        assert n == got[a], "requests_total{address=%s} = %r, %s answered %d" % (a, n, a, got[a])
        assert metric(s, "ferry_upstream_server_up", None, upstream="app", server=server,
                      address=_addr_label(a, port)) == 1
    servers = status(f)["upstreams"][0]["servers"]
    assert sorted(x["address"] for x in servers) == sorted(_addr_label(a, port) for a in ADDRS), \
        servers
    assert all(x["server"] == server and x["state"] == "up" for x in servers), servers


def test_dead_address_skipped(h):
    """One of the three stops: every request still succeeds (a refused
    connect moves on to another address), the dead one answers none, is
    marked down, and the other two share the load."""
    _need_unshare()
    port = free_port()
    procs = _apps(h, port)
    f, _ = _start(h, port, {"max_fails": "1", "fail_timeout": "30s"})
    procs["127.0.0.2"].stop()
    rs = [get_once(f.addr, "/d%d" % i) for i in range(60)]
    bad = [r for r in rs if r.status != 200]
    assert not bad, "%d of 60 failed with an address down: %r" % (len(bad), bad[:3])
    got = counts(server_of(r) for r in rs)
    assert "127.0.0.2" not in got and got.get("127.0.0.1", 0) >= 20 and got.get("::1", 0) >= 20, got
    server = "scale.test:%d" % port
    wait_for(lambda: metric(scrape(f), "ferry_upstream_server_up", None, upstream="app",
                            server=server, address="127.0.0.2:%d" % port) == 0,
             3, "the dead address reported down")


def test_set_follows_answers(h):
    """resolve = 1s: an address leaves the answer, it takes no more
    requests and leaves /status; it comes back, it serves again; the same
    addresses in another order change nothing (no log line, no change
    counted)."""
    _need_unshare()
    port = free_port()
    _apps(h, port)
    f, hosts = _start(h, port, {"resolve": "1s"})
    server = "scale.test:%d" % port

    def addresses():
        return sorted(x["address"] for x in status(f)["upstreams"][0]["servers"])

    _hosts(h, ("127.0.0.1", "::1"))
    wait_for(lambda: addresses() == sorted([_addr_label("127.0.0.1", port), _addr_label("::1", port)]),
             5, "127.0.0.2 leaves the set")
    got = counts(server_of(get_once(f.addr, "/g%d" % i)) for i in range(30))
    assert set(got) == {"127.0.0.1", "::1"}, got
    # its pool closed, the gone address's series leave /metrics
    gone = _addr_label("127.0.0.2", port)
    assert metric(scrape(f), "ferry_upstream_requests_total", None, upstream="app",
                  server=server, address=gone) is None, "a gone address still in /metrics"
    _hosts(h, ("::1", "127.0.0.2", "127.0.0.1"))
    wait_for(lambda: len(addresses()) == 3, 5, "127.0.0.2 back in the set")
    got = counts(server_of(get_once(f.addr, "/b%d" % i)) for i in range(30))
    assert set(got) == set(ADDRS) and min(got.values()) >= 8, got
    changed = metric_sum(scrape(f), "ferry_upstream_resolves_total", upstream="app",
                         result="changed")
    lines = f.stderr().count("now resolves to")
    _hosts(h, ("127.0.0.1", "::1", "127.0.0.2"))  # same set, another order
    same0 = metric_sum(scrape(f), "ferry_upstream_resolves_total", upstream="app", result="same")
    wait_for(lambda: metric_sum(scrape(f), "ferry_upstream_resolves_total", upstream="app",
                                result="same") >= same0 + 2, 5, "two more resolutions")
    assert metric_sum(scrape(f), "ferry_upstream_resolves_total", upstream="app",
                      result="changed") == changed, "a reordered answer counted as a change"
    assert f.stderr().count("now resolves to") == lines, "a reordered answer was logged"
    assert changed == 2, "want 2 changes (gone, back), got %r" % changed
    assert server in {x["server"] for x in status(f)["upstreams"][0]["servers"]}


harness.main(globals())
