"""Helpers shared by the operations tests (test_ops_*.py): ferry with an admin
endpoint, a small Prometheus text parser, /status, concurrent clients, PROXY
protocol headers and a recording upstream. python3 stdlib only."""
import concurrent.futures
import ipaddress
import json
import os
import re
import signal
import socket
import struct
import threading
import time

import harness
from harness import HttpClient, build_request, free_port, http_config, is_listening


# ---------------------------------------------------------------- ferry + admin


def start(h, listeners, upstreams, routes=(), global_opts=None, admin=True, args=(), env=None):
    """Starts ferry from an http_config-style description, with an admin
    endpoint on a free port when admin is true. listeners: [(name, opts)]
    (each gets 127.0.0.1:free-port); opts may set "mode". Returns the Ferry;
    f.admin is the admin address tuple (or None), f.lports maps listener
    name -> port, f.make(listeners=..., upstreams=..., routes=..., global_opts=...)
    renders a new config text on the same ports (for reloads; a listener
    not seen before gets a new free port, kept in f.lports)."""
    state = {}

    def render(ls, ups, rts, g):
        lst = []
        for name, opts in ls:
            if name not in state["lports"]:
                state["lports"][name] = free_port()
            lst.append((name, ("tcp", "127.0.0.1", state["lports"][name]), dict(opts or {})))
        gg = {"workers": "1"}
        gg.update(g or {})
        if state["admin"]:
            gg["admin"] = "127.0.0.1:%d" % state["admin"][2]
        text = http_config(lst, ups, rts, gg)
        # http_config writes "mode = http" for every listener; a listener whose
        # opts say "mode" overrides it (the later key would be a duplicate).
        out, cur_mode = [], {}
        for name, opts in ls:
            if "mode" in (opts or {}):
                cur_mode[name] = opts["mode"]
        section = None
        for line in text.splitlines():
            m = re.match(r"\[listener (\S+)\]", line)
            if line.startswith("["):
                section = m.group(1) if m else None
            if section in cur_mode and line == "mode = http":
                continue
            out.append(line)
        return "\n".join(out) + "\n"

    def make():
        state["lports"] = {}
        state["admin"] = ("tcp", "127.0.0.1", free_port()) if admin else None
        text = render(listeners, upstreams, routes, global_opts)
        addrs = [("tcp", "127.0.0.1", state["lports"][n]) for n, _ in listeners]
        if state["admin"]:
            addrs.append(state["admin"])
        return text, addrs

    f = h.start_ferry(make, args=args, env=env)
    f.admin = state["admin"]
    f.lports = state["lports"]
    f.make = lambda listeners=listeners, upstreams=upstreams, routes=routes, \
        global_opts=global_opts: render(listeners, upstreams, routes, global_opts)
    return f


def reload(f, text, expect="ok", timeout=5.0):
    """Writes text to f's config file, sends SIGHUP and waits until
    ferry_config_reloads_total{result=expect} has gone up by one."""
    before = metric(scrape(f), "ferry_config_reloads_total", result=expect)
    with open(f.config_path, "w") as fh:
        fh.write(text)
    f.config_text = text
    f.signal(signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while True:
        now = metric(scrape(f), "ferry_config_reloads_total", result=expect)
        if now == before + 1:
            return
        assert now == before, "reloads_total{result=%s} went from %s to %s" % (expect, before, now)
        assert time.monotonic() < deadline, \
            "SIGHUP: ferry_config_reloads_total{result=%r} still %s after %.0fs" % (
                expect, now, timeout)
        time.sleep(0.05)


def admin_get(f, path, timeout=5.0):
    s = harness.connect(f.admin, timeout)
    try:
        c = HttpClient(s)
        return c.request("GET", path, [("Host", "admin"), ("Connection", "close")], timeout=timeout)
    finally:
        s.close()


# ---------------------------------------------------------------- Prometheus text

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


class Samples(dict):
    """parse_prometheus's result: {(name, labels): value}, plus .types
    {family: type} from the # TYPE lines."""
    types = None


def parse_prometheus(text):
    """Parses the Prometheus text exposition format strictly enough to catch a
    broken scrape: every sample line must parse, every sample's family must
    have a # TYPE, no sample (name + labels) may repeat, and histograms must
    have monotonic buckets ending in le="+Inf" equal to _count. Returns
    {(name, frozenset(labels.items())): float}."""
    types = {}
    samples = Samples()
    samples.types = types
    for n, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "TYPE":
                assert len(parts) == 4 and parts[3] in (
                    "counter", "gauge", "histogram", "summary", "untyped"), \
                    "metrics line %d: bad TYPE line %r" % (n, line)
                assert parts[2] not in types, "metrics line %d: TYPE %s repeated" % (n, parts[2])
                types[parts[2]] = parts[3]
            continue
        m = _SAMPLE.match(line)
        assert m, "metrics line %d does not parse: %r" % (n, line)
        name, body, value = m.group(1), m.group(3), m.group(4)
        labels = {}
        if body:
            pos = 0
            while pos < len(body):
                lm = _LABEL.match(body, pos)
                assert lm, "metrics line %d: bad labels %r" % (n, body)
                k = lm.group(1)
                assert k not in labels, "metrics line %d: label %s repeated" % (n, k)
                labels[k] = re.sub(r'\\(.)', lambda x: {"n": "\n"}.get(x.group(1), x.group(1)),
                                   lm.group(2))
                pos = lm.end()
        try:
            v = float(value)
        except ValueError:
            raise AssertionError("metrics line %d: bad value %r" % (n, value))
        family = name
        for suf in ("_bucket", "_sum", "_count"):
            if name.endswith(suf) and name[:-len(suf)] in types:
                family = name[:-len(suf)]
        assert family in types, "metrics line %d: %s has no # TYPE" % (n, name)
        key = (name, frozenset(labels.items()))
        assert key not in samples, "metrics line %d: sample repeated: %r" % (n, line)
        samples[key] = v
    for fam, t in types.items():
        if t != "histogram":
            continue
        series = {}
        for (name, lab), v in samples.items():
            if name == fam + "_bucket":
                d = dict(lab)
                le = d.pop("le")
                series.setdefault(frozenset(d.items()), []).append(
                    (float("inf") if le == "+Inf" else float(le), v))
        for lab, buckets in series.items():
            buckets.sort()
            vals = [v for _, v in buckets]
            assert vals == sorted(vals), "histogram %s%s: buckets not cumulative: %r" % (
                fam, dict(lab), buckets)
            assert buckets[-1][0] == float("inf"), "histogram %s%s has no +Inf bucket" % (fam, dict(lab))
            cnt = samples.get((fam + "_count", lab))
            assert cnt == vals[-1], "histogram %s%s: _count %r != +Inf bucket %r" % (
                fam, dict(lab), cnt, vals[-1])
            assert (fam + "_sum", lab) in samples, "histogram %s%s has no _sum" % (fam, dict(lab))
    return samples


def scrape(f):
    r = admin_get(f, "/metrics")
    assert r.status == 200, "/metrics: %r" % r
    return parse_prometheus(r.body.decode("utf-8"))


def metric(samples, name, default=0.0, **labels):
    """The value of one sample (labels must match exactly); default if absent."""
    return samples.get((name, frozenset(labels.items())), default)


def metric_sum(samples, name, **labels):
    """Sum over the samples of name whose labels include the given ones."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def status(f):
    r = admin_get(f, "/status")
    assert r.status == 200, "/status: %r" % r
    try:
        return json.loads(r.body)
    except ValueError:
        raise AssertionError("/status is not JSON: %r" % r.body[:500])


def server_up(f, upstream, server, address=None):
    """ferry_upstream_server_up of one address of a server (a numeric
    server's address is itself)."""
    return metric(scrape(f), "ferry_upstream_server_up", None, upstream=upstream, server=server,
                  address=address or server)


def wait_for(pred, timeout, what, step=0.05):
    """Polls pred() until true; returns the seconds it took or fails."""
    t0 = time.monotonic()
    while True:
        if pred():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError("%s: not within %.1fs" % (what, timeout))
        time.sleep(step)


# ---------------------------------------------------------------- clients


def addr_text(a):
    return "%s:%d" % (a[1], a[2])


def request_raw(addr, raw, timeout=10.0):
    """Sends raw bytes on a new connection, reads until EOF; returns the bytes."""
    s = harness.connect(addr, timeout)
    try:
        s.sendall(raw)
        return harness.recv_until_eof(s, timeout)
    finally:
        s.close()


def get_once(addr, target="/", host="ops.test", headers=(), prefix=b"", method="GET",
             timeout=10.0):
    """One request on a new connection (prefix, e.g. a PROXY header, goes
    first); returns the harness Response."""
    s = harness.connect(addr, timeout)
    try:
        c = HttpClient(s)
        c.send(prefix + build_request(method, target, [("Host", host)] + list(headers),
                                      body=b"" if method in ("POST", "PUT") else None))
        return c.read_response(method, timeout)
    finally:
        s.close()


def server_of(r):
    """Which upstream answered: X-Upstream-Name (ferry-upstream), else the
    JSON body's "server"."""
    name = r.header("x-upstream-name")
    if name:
        return name
    return r.json()["server"]


def parallel(fn, args_list, workers=None):
    """Runs fn(*args) for each args concurrently; returns the results in
    order (re-raises the first exception)."""
    n = workers or len(args_list)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, n)) as ex:
        futs = [ex.submit(fn, *a) for a in args_list]
        return [fu.result() for fu in futs]


def counts(names):
    out = {}
    for n in names:
        out[n] = out.get(n, 0) + 1
    return out


def wait_upstream_requests(addr, n, timeout, what):
    """Waits until the ferry-upstream at addr has received at least n
    requests (whole request heads: it counts a request before it starts a
    /delay), by its own count (GET /stats, asked directly, not through
    ferry). Each /stats request counts too: this one and the earlier polls
    are taken off. Returns the seconds it took or fails."""
    polls = [0]
    seen = [None]

    def pred():
        s = harness.connect(addr, 5.0)
        try:
            r = HttpClient(s).request("GET", "/stats", [("Host", "stats"),
                                                        ("Connection", "close")], timeout=5.0)
        finally:
            s.close()
        assert r.status == 200, "upstream /stats: %r" % r
        polls[0] += 1
        seen[0] = r.json()["requests"] - polls[0]
        return seen[0] >= n

    try:
        return wait_for(pred, timeout, what)
    except AssertionError as e:
        raise AssertionError("%s (the upstream has seen %s request(s), want %d)" % (e, seen[0], n))


def upstream_proc(h, listen="127.0.0.1:0", name="up"):
    """ferry-upstream in HTTP mode; returns (addr, Proc) so a test can stop it."""
    addr = harness.http_upstream(h, name) if listen == "127.0.0.1:0" else h.upstream(listen, name, None)
    return addr, h.procs[-1]


# ---------------------------------------------------------------- PROXY protocol

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1(src, sport, dst, dport):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def proxy_v2(src, sport, dst, dport, tlvs=b""):
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    fam = 0x21 if s.version == 6 else 0x11
    body = s.packed + d.packed + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIG + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


def proxy_header_len(data):
    """The length of the PROXY header (v1 or v2) data starts with: 0 when it
    starts with something else, None when it is the start of a header that
    is not complete yet."""
    v1 = b"PROXY "
    if data[:len(v1)] == v1[:len(data)]:
        if len(data) < len(v1):
            return None
        end = data.find(b"\r\n")
        return None if end < 0 else end + 2
    if data[:len(V2_SIG)] == V2_SIG[:len(data)]:
        if len(data) < 16:
            return None
        n = 16 + struct.unpack("!H", data[14:16])[0]
        return None if len(data) < n else n
    return 0


# ---------------------------------------------------------------- recording upstream


class Recorder:
    """A TCP server in the test that records every byte each connection sends.
    http=False: echoes what it gets. http=True: answers each request head
    with a small keep-alive 200 ({"server": name}) as soon as the head is
    complete (requests without a body only). A PROXY header (v1 or v2) at
    the start of a connection is recorded but is no request: the v2
    signature holds a CRLFCRLF, which would otherwise be answered as a head
    before the request has even arrived."""

    def __init__(self, h, http=False, name="rec", delay=0.0):
        self.conns = []  # one bytearray per accepted connection, in accept order
        self.lock = threading.Lock()
        self.http = http
        self.name = name
        self.delay = delay
        self.addr = h.thread_server(self._handle)

    def _handle(self, c):
        buf = bytearray()
        with self.lock:
            self.conns.append(buf)
        pending = b""
        started = False  # past a PROXY header, if the connection has one
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                with self.lock:
                    buf += b
                if not self.http:
                    c.sendall(b)
                    continue
                pending += b
                if not started:
                    n = proxy_header_len(pending)
                    if n is None:
                        continue  # the start of a PROXY header: wait for the rest
                    pending = pending[n:]
                    started = True
                while b"\r\n\r\n" in pending:
                    _, _, pending = pending.partition(b"\r\n\r\n")
                    if self.delay:
                        time.sleep(self.delay)
                    body = ('{"server": "%s"}\n' % self.name).encode()
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              b"X-Upstream-Name: " + self.name.encode() +
                              b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def snapshot(self):
        with self.lock:
            return [bytes(b) for b in self.conns]
