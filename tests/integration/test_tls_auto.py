#!/usr/bin/env python3
"""tls_auto = internal: ferry's local CA in state_dir issues a certificate
at the handshake for each name a route on the listener serves.

curl (with --cacert and --resolve) and Python's ssl module are the clients;
the CA they trust is the ca.pem ferry wrote."""
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

CURL = shutil.which("curl")
TRUST_BANNER = "ferry's local CA (tls_auto = internal) is "


def config_text(h, addr, state_dir, admin=None, hosts=("*.localhost", "app.test")):
    g = {"state_dir": state_dir}
    if admin:
        g["admin"] = fmt_addr(admin)
    up = h.upstream_addr
    routes = [("r%d" % i, [("host", host), ("upstream", "app")]) for i, host in enumerate(hosts)]
    return http_config([("web", addr, {"tls_auto": "internal"})], [("app", [up], None)], routes, g)


def start(h, state_dir, admin=None, hosts=("*.localhost", "app.test")):
    """ferry with one tls_auto = internal listener; returns it."""
    if not hasattr(h, "upstream_addr"):
        h.upstream_addr = http_upstream(h)

    def make():
        addr = ("tcp", "127.0.0.1", free_port())
        return config_text(h, addr, state_dir, admin, hosts), [addr]
    return h.start_ferry(make)


def curl_get(f, name, ca):
    """(exit status, HTTP status or "", stderr) of curl https://NAME:PORT/
    trusting CA only, NAME resolved to ferry's address."""
    if not CURL:
        raise harness.Skip("curl is missing")
    port = f.addr[2]
    p = subprocess.run([CURL, "-sS", "--max-time", str(scaled(10)), "--cacert", ca,
                        "--resolve", "%s:%d:127.0.0.1" % (name, port), "-o", "/dev/null",
                        "-w", "%{http_code}", "https://%s:%d/" % (name, port)],
                       capture_output=True, text=True)
    return p.returncode, p.stdout.strip(), p.stderr


def handshake(h, f, sni, ca):
    """A handshake with SNI (None: none) trusting CA; returns the peer's
    certificate (DER) or raises ssl.SSLError."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    if sni is None:
        ctx.check_hostname = False
    raw = h.track(f.connect(0, 10))
    s = h.track(ctx.wrap_socket(raw, server_hostname=sni))
    return s.getpeercert(binary_form=True)


def wait_for(pred, what, limit=5):
    deadline = time.monotonic() + scaled(limit)
    while not pred():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.02)


# ------------------------------------------------------------------- tests


def test_trusted(h):
    """curl trusting ca.pem gets https://x.localhost:PORT/ and
    https://app.test:PORT/ through; the CA was made 0600 in a 0700 state_dir
    and the first start said how to trust it, once."""
    state = h.path("state")
    f = start(h, state)
    ca = os.path.join(state, "ca.pem")
    for name in ("x.localhost", "deep.er.localhost", "app.test", "APP.test"):
        rc, code, err = curl_get(f, name, ca)
        assert (rc, code) == (0, "200"), (name, rc, code, err)
    assert os.stat(state).st_mode & 0o777 == 0o700
    for fn in ("ca.pem", "ca.key"):
        assert os.stat(os.path.join(state, fn)).st_mode & 0o777 == 0o600, fn
    # the certificate names exactly the host asked for
    der = handshake(h, f, "x.localhost", ca)
    assert b"x.localhost" in der
    wait_for(lambda: TRUST_BANNER in f.stderr(), "the trust instructions")
    err = f.stderr()
    assert err.count(TRUST_BANNER) == 1, err
    for word in ("Debian", "macOS", "Windows", "Firefox", ca):
        assert word in err, (word, err)
    h.ferry_stop_clean(f)


def test_unserved_name(h):
    """A name no route serves, and a handshake without SNI, get no
    certificate: the handshake fails and is counted as unknown_name; a
    served name on the same listener still works."""
    state = h.path("state")
    admin = ("tcp", "127.0.0.1", free_port())
    f = start(h, state, admin=admin)
    ca = os.path.join(state, "ca.pem")
    for sni in ("nope.test", "localhost.evil", None):
        try:
            handshake(h, f, sni, ca)
        except ssl.SSLError as e:
            assert "UNRECOGNIZED_NAME" in str(e).upper(), e
        else:
            raise AssertionError("%r got a certificate" % sni)
    wait_for(lambda: metric(f, admin, "ferry_tls_handshake_errors_total", listener="web",
                            reason="unknown_name") >= 3, "3 unknown_name handshake errors")
    rc, code, err = curl_get(f, "nope.test", ca)
    assert rc != 0 and code == "000", (rc, code, err)
    rc, code, err = curl_get(f, "a.localhost", ca)
    assert (rc, code) == (0, "200"), (rc, code, err)
    # /status: the listener's source of certificates and what it issued
    s = socket.create_connection(admin[1:], timeout=5)
    s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    st = json.loads(harness.recv_until_eof(s, 5).split(b"\r\n\r\n", 1)[1])
    s.close()
    assert st["listeners"][0]["tls_auto"] == "internal", st["listeners"]
    c = st["certificates"]
    assert len(c) == 1 and c[0]["issuer"] == "local CA" and c[0]["file"] == ca, c
    assert c[0]["names"] == ["*.localhost", "app.test"] and c[0]["issued"] == 1, c
    assert c[0]["not_after"] > time.time() + 9 * 365 * 86400, c
    h.ferry_stop_clean(f)


def test_restart_reuses_ca(h):
    """A restart keeps the CA (same files, no new trust banner), so what the
    user trusted stays trusted."""
    state = h.path("state")
    f = start(h, state)
    ca = os.path.join(state, "ca.pem")
    with open(ca, "rb") as fh:
        first = fh.read()
    assert curl_get(f, "x.localhost", ca)[:2] == (0, "200")
    h.ferry_stop_clean(f)
    g = start(h, state)
    with open(ca, "rb") as fh:
        assert fh.read() == first
    trusted = h.path("trusted.pem")  # what the user copied away at the first start
    with open(trusted, "wb") as fh:
        fh.write(first)
    assert curl_get(g, "y.localhost", trusted)[:2] == (0, "200")
    assert TRUST_BANNER not in g.stderr(), g.stderr()
    h.ferry_stop_clean(g)


def test_reload_new_host(h):
    """SIGHUP adding a route host: the new name gets a certificate from the
    same CA; a name removed from the routes no longer does."""
    state = h.path("state")
    f = start(h, state, hosts=("old.test",))
    ca = os.path.join(state, "ca.pem")
    assert curl_get(f, "old.test", ca)[:2] == (0, "200")
    assert curl_get(f, "new.test", ca)[1] == "000"
    h.write(os.path.basename(f.config_path),
            config_text(h, f.addr, state, hosts=("new.test",)))
    f.signal(signal.SIGHUP)
    wait_for(lambda: "generation 2" in f.stderr(), "the reload")
    assert curl_get(f, "new.test", ca)[:2] == (0, "200")
    assert curl_get(f, "old.test", ca)[1] == "000"
    h.ferry_stop_clean(f)


def test_state_dir_not_writable(h):
    """-t: a state_dir that cannot be made or written is an error naming the
    file and the line of state_dir; a good one passes -t without anything
    being written."""
    plain = h.path("plain")
    with open(plain, "w") as fh:
        fh.write("x")
    addr = ("tcp", "127.0.0.1", free_port())
    h.upstream_addr = ("tcp", "127.0.0.1", 9)
    cfg = h.write("bad.ini", config_text(h, addr, plain + "/state"))
    line = next(i for i, l in enumerate(open(cfg).read().splitlines(), 1)
                if l.startswith("state_dir"))
    rc, out, err = h.run_ferry(["-t", "-c", cfg])
    assert rc == 1, (rc, out, err)
    assert "%s:%d: state_dir %s/state: %s is not a directory" % (cfg, line, plain, plain) in err, err
    # a directory we may not write (only meaningful when not root)
    if os.geteuid() != 0:
        ro = h.path("ro")
        os.mkdir(ro, 0o500)
        cfg = h.write("ro.ini", config_text(h, addr, ro + "/state"))
        rc, out, err = h.run_ferry(["-t", "-c", cfg])
        assert rc == 1 and "is not writable" in err, (rc, err)
    fresh = h.path("fresh/state")
    cfg = h.write("good.ini", config_text(h, addr, fresh))
    rc, out, err = h.run_ferry(["-t", "-c", cfg])
    assert rc == 0, (rc, out, err)
    assert not os.path.exists(h.path("fresh")), "-t wrote to state_dir"
    # starting for real with the bad one fails the same way
    rc, out, err = h.run_ferry(["-c", h.path("bad.ini")])
    assert rc == 1 and "is not a directory" in err, (rc, err)


def test_corrupt_ca(h):
    """Stored CA files that do not load are set aside (.bad) with a warning
    and a new CA is made (and announced); it works."""
    state = h.path("state")
    os.makedirs(state, 0o700)
    with open(os.path.join(state, "ca.pem"), "w") as fh:
        fh.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with open(os.path.join(state, "ca.key"), "w") as fh:
        fh.write("garbage\n")
    f = start(h, state)
    ca = os.path.join(state, "ca.pem")
    assert curl_get(f, "x.localhost", ca)[:2] == (0, "200")
    assert os.path.exists(ca + ".bad") and os.path.exists(os.path.join(state, "ca.key.bad"))
    err = f.stderr()
    assert "[warn]" in err and "moved aside" in err, err
    assert TRUST_BANNER in err, err
    h.ferry_stop_clean(f)


def test_trust_command(h):
    """ferry --trust prints where the CA is and how to trust it on each
    system, making the CA when there is none yet; a second run reuses it."""
    state = h.path("state")
    h.upstream_addr = ("tcp", "127.0.0.1", 9)
    cfg = h.write("t.ini", config_text(h, ("tcp", "127.0.0.1", free_port()), state))
    rc, out, err = h.run_ferry(["--trust", "-c", cfg])
    assert rc == 0, (rc, out, err)
    ca = os.path.join(state, "ca.pem")
    assert TRUST_BANNER + ca in out, out
    for word in ("update-ca-certificates", "security add-trusted-cert", "certutil", "Firefox"):
        assert word in out, (word, out)
    with open(ca, "rb") as fh:
        first = fh.read()
    rc, out2, err = h.run_ferry(["--trust", "-c", cfg])
    assert rc == 0 and "made just now" not in out2 and "made just now" in out, (out, out2)
    with open(ca, "rb") as fh:
        assert fh.read() == first


def test_explain(h):
    """--explain says what a tls_auto = internal listener would present for
    the URL's host, and opens (makes) no CA to say it."""
    state = h.path("state")
    h.upstream_addr = ("tcp", "127.0.0.1", 9)
    port = free_port()
    cfg = h.write("x.ini", config_text(h, ("tcp", "127.0.0.1", port), state))
    rc, out, err = h.run_ferry(["-c", cfg, "--explain", "GET https://x.localhost:%d/" % port])
    assert rc == 0, err
    assert "certificate: made for x.localhost at the handshake by the local CA in %s" % state \
        in out, out
    rc, out, err = h.run_ferry(["-c", cfg, "--explain", "GET https://nope.test:%d/" % port])
    assert "certificate: none: no route on this listener names nope.test" in out, out
    assert not os.path.exists(state), "--explain made the CA"


def test_config_errors(h):
    """acme_directory must be https; tls_auto with tls_cert, or on a tcp
    listener, is an error naming the line."""
    text = ("[global]\nacme_directory = http://ca/dir\n"
            "[listener b]\nbind = 127.0.0.1:2\ntls_auto = internal\ntls_cert = /x.pem\n"
            "[listener c]\nbind = 127.0.0.1:3\nmode = tcp\nupstream = u\ntls_auto = internal\n"
            "[listener d]\nbind = 127.0.0.1:4\ntls_auto = sometimes\n"
            "[upstream u]\nserver = 127.0.0.1:9\n")
    cfg = h.write("e.ini", text)
    rc, out, err = h.run_ferry(["-t", "-c", cfg])
    assert rc == 1, (rc, out, err)
    cfg = h.write("ca.ini", "[global]\nstate_dir = %s\nacme_ca = /nonexistent/ca.pem\n"
                  "[listener a]\nbind = 127.0.0.1:1\ntls_auto = acme\n" % h.path("state"))
    rc, out, err2 = h.run_ferry(["-t", "-c", cfg])
    assert rc == 1 and "ca.ini:3: acme_ca: cannot read /nonexistent/ca.pem" in err2, err2
    for want in ("e.ini:2: acme_directory: expected an https:// URL",
                 "e.ini:5: listener b: tls_auto and tls_cert exclude each other",
                 "e.ini:11: listener c: tls_auto applies to mode http only",
                 "e.ini:14: "):
        assert want in err, (want, err)


if __name__ == "__main__":
    harness.main(globals())
