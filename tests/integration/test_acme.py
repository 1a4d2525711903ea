#!/usr/bin/env python3
"""tls_auto = acme against Debian's pebble (an RFC 8555 test CA) and
pebble-challtestsrv (its DNS: every name is 127.0.0.1).

pebble validates HTTP-01 on its httpPort and TLS-ALPN-01 on its tlsPort:
each test gives it ferry's cleartext and TLS listener ports. Determinism:
PEBBLE_VA_NOSLEEP=1 (no random validation delay), PEBBLE_WFE_NONCEREJECT=0
(no random badNonce). Skipped when pebble is not installed."""
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import harness
from harness import free_port, fmt_addr, http_config, http_upstream, scaled
from test_tls import metric

PEBBLE = shutil.which("pebble")
CHALLTESTSRV = shutil.which("pebble-challtestsrv")


class Pebble:
    """pebble + pebble-challtestsrv on free ports; http_port and tls_port are
    where pebble's validations connect (ferry's listeners)."""

    def __init__(self, h, http_port, tls_port, validity=None, port=None, nonce_reject=0):
        if not (PEBBLE and CHALLTESTSRV):
            raise harness.Skip("pebble is not installed (Debian package pebble)")
        self.h = h
        d = h.path("pebble-%d" % len(h.procs))
        os.makedirs(d)
        self.cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", self.cert,
                        "-days", "2", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost"], check=True, capture_output=True)
        self.port = port or free_port()
        self.mgmt = free_port()
        self.dns = free_port()
        cfg = {"listenAddress": "127.0.0.1:%d" % self.port,
               "managementListenAddress": "127.0.0.1:%d" % self.mgmt,
               "certificate": self.cert, "privateKey": key, "httpPort": http_port,
               "tlsPort": tls_port, "ocspResponderURL": "",
               "externalAccountBindingRequired": False}
        if validity:
            cfg["certificateValidityPeriod"] = validity
        self.cfg_path = os.path.join(d, "pebble.json")
        with open(self.cfg_path, "w") as f:
            json.dump({"pebble": cfg}, f)
        self.url = "https://localhost:%d/dir" % self.port
        self.nonce_reject = nonce_reject

    def start(self):
        h = self.h
        n = len(h.procs)
        h.procs.append(harness.Proc(
            "challtestsrv-%d" % n,
            [CHALLTESTSRV, "-dns01", "127.0.0.1:%d" % self.dns, "-http01", "", "-https01", "",
             "-tlsalpn01", "", "-management", "127.0.0.1:%d" % free_port(), "-defaultIPv6", ""],
            h.tmp))
        h.procs.append(harness.Proc(
            "pebble-%d" % n,
            [PEBBLE, "-config", self.cfg_path, "-dnsserver", "127.0.0.1:%d" % self.dns], h.tmp,
            env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": str(self.nonce_reject)}))
        self.proc = h.procs[-1]
        deadline = time.monotonic() + scaled(15)
        for port in (self.port, self.mgmt):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "pebble did not start: %s" % \
                        self.proc.stderr()
                    time.sleep(0.05)
        return self

    def roots(self):
        """pebble's root certificate (PEM), what clients must trust."""
        ctx = ssl.create_default_context(cafile=self.cert)
        path = self.h.path("pebble-root-%d.pem" % self.mgmt)
        import urllib.request
        with urllib.request.urlopen("https://localhost:%d/roots/0" % self.mgmt, context=ctx) as r:
            data = r.read()
        with open(path, "wb") as f:
            f.write(data)
        return path


def config_text(h, peb, plain, tls, state, hosts=("a.test", "b.test")):
    g = {"state_dir": state, "acme_directory": peb.url, "acme_ca": peb.cert,
         "acme_email": "ops@example.org", "admin": fmt_addr(h.admin)}
    listeners = []
    if plain:
        listeners.append(("plain", plain, {"upstream": "app"}))
    listeners.append(("web", tls, {"tls_auto": "acme"}))
    routes = [("r", [("host", x) for x in hosts] + [("upstream", "app")])]
    return http_config(listeners, [("app", [h.up], None)], routes, g)


def start(h, peb, plain, tls, state, hosts=("a.test", "b.test")):
    if not hasattr(h, "up"):
        h.up = http_upstream(h)
    text = config_text(h, peb, plain, tls, state, hosts)
    return h.start_ferry(lambda: (text, [a for a in (plain, tls) if a]))


def ports(h, with_plain=True):
    plain = ("tcp", "127.0.0.1", free_port()) if with_plain else None
    tls = ("tcp", "127.0.0.1", free_port())
    h.admin = ("tcp", "127.0.0.1", free_port())
    return plain, tls


def status(h):
    """The acme part of /status by name ({} while the admin endpoint, which
    starts after the listeners, is not up yet)."""
    try:
        s = socket.create_connection(h.admin[1:], timeout=5)
    except ConnectionRefusedError:
        return {}
    s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    body = harness.recv_until_eof(s, 5).split(b"\r\n\r\n", 1)[1]
    s.close()
    return {n["name"]: n for n in json.loads(body)["acme"]}


def wait_for(pred, what, limit=30):
    deadline = time.monotonic() + scaled(limit)
    while True:
        got = pred()
        if got:
            return got
        assert time.monotonic() < deadline, "timed out (%gs) waiting for %s" % (limit, what)
        time.sleep(0.1)


def wait_valid(h, names, limit=30):
    return wait_for(lambda: (lambda st: st if all(st.get(n, {}).get("state") == "valid"
                                                  for n in names) else None)(status(h)),
                    "valid certificates for %s" % ", ".join(names), limit)


def first_order(h, hosts, validity=None):
    """pebble, ferry with a cleartext and an acme listener for HOSTS, and
    their certificates obtained: returns (ferry, pebble, plain, tls, state)."""
    plain, tls = ports(h)
    peb = Pebble(h, plain[2], tls[2], validity=validity).start()
    state = h.path("state")
    f = start(h, peb, plain, tls, state, hosts=hosts)
    wait_valid(h, list(hosts))
    return f, peb, plain, tls, state


def served(tls, name, ca):
    """The certificate (DER) ferry serves for NAME, verified against CA."""
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(tls[1:], timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            return s.getpeercert(binary_form=True)


def get(tls, name, ca):
    ctx = ssl.create_default_context(cafile=ca)
    raw = socket.create_connection(tls[1:], timeout=5)
    s = ctx.wrap_socket(raw, server_hostname=name)
    c = harness.HttpClient(s)
    r = c.request("GET", "/", [("Host", name)], None, timeout=10)
    s.close()
    return r.status


# ------------------------------------------------------------------- tests


def test_http01_two_names(h):
    """Two names ordered over HTTP-01 (a cleartext listener exists), served
    verified against pebble's root, stored 0600; before that the
    placeholder answered; /status and the orders counter say so."""
    plain, tls = ports(h)
    peb = Pebble(h, plain[2], tls[2]).start()
    state = h.path("state")
    f = start(h, peb, plain, tls, state)
    st = wait_valid(h, ["a.test", "b.test"])
    root = peb.roots()
    for name in ("a.test", "b.test"):
        assert get(tls, name, root) == 200
        assert st[name]["not_after"] > time.time() + 3600, st
        for ext in ("crt", "key"):
            mode = os.stat(os.path.join(state, "acme", "%s.%s" % (name, ext))).st_mode & 0o777
            assert mode == 0o600, (name, ext, oct(mode))
    assert os.stat(os.path.join(state, "acme", "account.key")).st_mode & 0o777 == 0o600
    assert metric(f, h.admin, "ferry_acme_orders_total", result="ok") == 2
    assert metric(f, h.admin, "ferry_tls_certificate_expiry_seconds", listener="web",
                  name="a.test") == st["a.test"]["not_after"]
    err = f.stderr()
    assert "a.test: no certificate yet: its handshakes get a self-signed placeholder" in err, err
    # a name no route serves gets the placeholder, which does not verify
    try:
        served(tls, "other.test", root)
        raise AssertionError("other.test verified")
    except ssl.SSLCertVerificationError:
        pass
    rc, out, err = h.run_ferry(["-c", f.config_path, "--explain",
                                "GET https://a.test:%d/" % tls[2]])
    assert "certificate: from the ACME CA, kept in %s/acme/a.test.crt" % state in out, out
    h.ferry_stop_clean(f)


def test_tlsalpn01(h):
    """Without a cleartext http listener the order goes through TLS-ALPN-01
    on the TLS listener itself (pebble's httpPort has nothing behind it, so
    HTTP-01 could not have succeeded)."""
    _, tls = ports(h, with_plain=False)
    peb = Pebble(h, free_port(), tls[2]).start()
    f = start(h, peb, None, tls, h.path("state"), hosts=("alpn.test",))
    wait_valid(h, ["alpn.test"])
    assert get(tls, "alpn.test", peb.roots()) == 200
    h.ferry_stop_clean(f)


def test_restart_reuses(h):
    """A restart serves the stored certificate without a new order."""
    f, peb, plain, tls, state = first_order(h, ("r.test",))
    root = peb.roots()
    first = served(tls, "r.test", root)
    h.ferry_stop_clean(f)
    g = start(h, peb, plain, tls, state, hosts=("r.test",))
    wait_valid(h, ["r.test"], limit=5)
    assert served(tls, "r.test", root) == first
    err = g.stderr()
    assert "r.test: using the certificate stored" in err and "ordering" not in err, err
    assert metric(g, h.admin, "ferry_acme_orders_total", result="ok") == 0
    h.ferry_stop_clean(g)


def test_renewal(h):
    """Certificates of 30 s are renewed at two thirds of their life: a new
    certificate is served, the old one kept serving until then."""
    f, peb, plain, tls, state = first_order(h, ("renew.test",), validity=30)
    root = peb.roots()
    first = served(tls, "renew.test", root)
    wait_for(lambda: metric(f, h.admin, "ferry_acme_orders_total", result="ok") >= 2,
             "the renewal order", limit=45)
    wait_for(lambda: served(tls, "renew.test", root) != first, "the renewed certificate", 5)
    assert "renew.test: ordering a certificate" in f.stderr()
    h.ferry_stop_clean(f)


def test_directory_down(h):
    """The directory is unreachable at start: ferry serves (placeholder,
    plain listener), logs the failure naming the host, and retries with
    backoff until the CA is there."""
    plain, tls = ports(h)
    peb = Pebble(h, plain[2], tls[2])  # not started yet
    f = start(h, peb, plain, tls, h.path("state"), hosts=("late.test",))
    wait_for(lambda: "acme: late.test: order failed: no answer from the CA" in f.stderr(),
             "the failure in the error log", limit=10)
    assert status(h)["late.test"]["state"] == "failed"
    assert "connection refused" in status(h)["late.test"]["last_error"].lower()
    # still serving: the placeholder handshake and the plain listener
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(socket.create_connection(tls[1:], timeout=5),
                         server_hostname="late.test"):
        pass
    peb.start()
    wait_valid(h, ["late.test"], limit=30)
    assert metric(f, h.admin, "ferry_acme_orders_total", result="error") >= 1
    h.ferry_stop_clean(f)


def test_challenge_fails(h):
    """pebble validates HTTP-01 on a port where nothing answers: the order
    fails, the error log and /status name the host and pebble's problem
    detail, and the placeholder keeps serving."""
    plain, tls = ports(h)
    peb = Pebble(h, free_port(), tls[2]).start()
    f = start(h, peb, plain, tls, h.path("state"), hosts=("fail.test",))
    line = wait_for(lambda: [l for l in f.stderr().splitlines()
                             if "acme: fail.test: order failed: http-01 challenge failed" in l],
                    "the failed challenge in the error log")
    assert "urn:ietf:params:acme:error:" in line[0], line
    st = status(h)["fail.test"]
    assert st["state"] == "failed" and "http-01 challenge failed" in st["last_error"], st
    h.ferry_stop_clean(f)


def test_corrupt_stored(h):
    """A stored certificate that does not load is replaced by a new order,
    with a warning."""
    plain, tls = ports(h)
    peb = Pebble(h, plain[2], tls[2]).start()
    state = h.path("state")
    os.makedirs(os.path.join(state, "acme"), 0o700)
    with open(os.path.join(state, "acme", "c.test.crt"), "w") as fh:
        fh.write("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    with open(os.path.join(state, "acme", "c.test.key"), "w") as fh:
        fh.write("garbage\n")
    f = start(h, peb, plain, tls, state, hosts=("c.test",))
    wait_valid(h, ["c.test"])
    assert get(tls, "c.test", peb.roots()) == 200
    assert "c.test: the stored certificate" in f.stderr() and "[warn]" in f.stderr()
    h.ferry_stop_clean(f)


def test_bad_nonce(h):
    """pebble refuses 40% of nonces (badNonce): each refused POST is sent
    again with the nonce the refusal carried, and the orders succeed. Four
    names (an order each, some 30 POSTs) so that pebble's random refusals
    surely hit one: with one name, 1 run in 35 saw none (CI did)."""
    plain, tls = ports(h)
    peb = Pebble(h, plain[2], tls[2], nonce_reject=40).start()
    names = ["nonce%d.test" % i for i in range(4)]
    f = start(h, peb, plain, tls, h.path("state"), hosts=tuple(names))
    wait_valid(h, names, limit=90)
    assert "the CA refused our nonce (badNonce): sending again" in f.stderr()
    h.ferry_stop_clean(f)


def test_retry_after(h):
    """A CA that answers 503 with Retry-After: 40 is asked again after 40 s,
    not after the first backoff step (5 s): the log says when, and the
    problem document's type and detail are in /status."""
    import http.server
    import threading
    plain, tls = ports(h)
    peb = Pebble(h, plain[2], tls[2])  # only for its certificate and config
    hits = []

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(time.monotonic())
            body = json.dumps({"type": "urn:ietf:params:acme:error:rateLimited",
                               "detail": "come back later"}).encode()
            self.send_response(503)
            self.send_header("Retry-After", "40")
            self.send_header("Content-Type", "application/problem+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    srv = http.server.HTTPServer(("127.0.0.1", peb.port), Busy)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(peb.cert, os.path.join(os.path.dirname(peb.cert), "key.pem"))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        f = start(h, peb, plain, tls, h.path("state"), hosts=("busy.test",))
        wait_for(lambda: "busy.test: order failed" in f.stderr(), "the failed order")
        line = [l for l in f.stderr().splitlines() if "busy.test: order failed" in l][0]
        assert "HTTP 503, urn:ietf:params:acme:error:rateLimited: come back later" in line, line
        assert line.endswith("trying again in 40s"), line
        assert "come back later" in status(h)["busy.test"]["last_error"]
        assert len(hits) == 1, hits
        h.ferry_stop_clean(f)
    finally:
        srv.shutdown()


def test_no_names(h):
    """An acme listener whose routes name only wildcards orders nothing and
    says so, naming the file and line of its tls_auto (needs no CA)."""
    h.up = ("tcp", "127.0.0.1", 9)
    plain, tls = ports(h, with_plain=False)
    peb = Pebble(h, free_port(), tls[2])  # never started: nothing may contact it
    f = start(h, peb, None, tls, h.path("state"), hosts=("*.wild.test",))
    line = next(i for i, l in enumerate(f.config_text.splitlines(), 1) if "tls_auto" in l)
    want = "%s:%d: listener web: tls_auto = acme, but no route on it names an exact host" % (
        f.config_path, line)
    wait_for(lambda: want in f.stderr(), "the warning")
    assert "ordering" not in f.stderr()
    h.ferry_stop_clean(f)
    rc, out, err = h.run_ferry(["-c", f.config_path, "--explain",
                                "GET https://a.wild.test:%d/" % tls[2]])
    assert "certificate: a self-signed placeholder: a.wild.test is not an exact host" in out, out


def test_reload_adds_name(h):
    """A reload that adds a host orders it; the first keeps its certificate.
    A reload that removes a host stops renewing it (/status: unused)."""
    f, peb, plain, tls, state = first_order(h, ("one.test",))
    h.write(os.path.basename(f.config_path),
            config_text(h, peb, plain, tls, state, hosts=("one.test", "two.test")))
    f.signal(signal.SIGHUP)
    wait_valid(h, ["one.test", "two.test"])
    assert metric(f, h.admin, "ferry_acme_orders_total", result="ok") == 2
    h.write(os.path.basename(f.config_path),
            config_text(h, peb, plain, tls, state, hosts=("two.test",)))
    f.signal(signal.SIGHUP)
    wait_for(lambda: status(h)["one.test"]["state"] == "unused", "one.test unused")
    assert "acme: one.test: no longer in the config: not renewed" in f.stderr()
    assert status(h)["two.test"]["state"] == "valid"
    h.ferry_stop_clean(f)


if __name__ == "__main__":
    harness.main(globals())
