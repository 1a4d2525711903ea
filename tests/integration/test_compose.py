"""docker-compose, container image and README checks (issue 7). No Docker
engine is needed: ctest entries compose_NAME (tests/integration/compose.cmake).

  config            docker-compose.yml validates with Debian's docker-compose;
                    every upstream host in config/compose.ini is a compose
                    service ferry depends on; `ferry -t` accepts compose.ini with
                    the env defaults; the Dockerfile's stages and packages match
                    what compose and scripts/chroot-image-check use.
  topology          the compose topology without Docker: ferry, app1, app2, ws and
                    a client, each in a network namespace of its own on a bridge;
                    service names resolve through a hosts file in ferry's private
                    mount namespace (/etc/netns/NS/hosts, bind-mounted by
                    `ip netns exec`); routes by host and path reach the right app;
                    app1 restarts on a new address and ferry follows it without a
                    reload; app2 restarts at the same address and a GET sent while it
                    was down waits (`hold`) and succeeds, a POST gets 502.
  readme_reference  README's config reference lists exactly the keys the loader
                    accepts (src/config_keys.c's key tables), and `ferry -t` accepts
                    every documented default and example value.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Skip  # noqa: E402

ROOT = os.path.abspath(os.path.join(harness.HERE, "..", ".."))
COMPOSE_YML = os.path.join(ROOT, "docker-compose.yml")
COMPOSE_INI = os.path.join(ROOT, "config", "compose.ini")
# Variables compose.ini reads; cleared so the file's own defaults apply.
COMPOSE_VARS = ("FERRY_PORT", "FERRY_TLS_PORT", "FERRY_ADMIN_PORT", "APP_PORT", "FERRY_RESOLVE",
                "FERRY_STATE_DIR")


def env_defaults():
    env = dict(os.environ)
    for v in COMPOSE_VARS:
        env.pop(v, None)
    return env


def expand_defaults(text):
    """${VAR:-default} -> default (what ferry does with the variable unset)."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", text)


def ini_sections(path):
    """[(section header, [(key, value, line)])] of an INI file, comments dropped."""
    out = []
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line[0] in ";#":
                continue
            if line.startswith("["):
                out.append((line.strip("[]").strip(), []))
                continue
            k, sep, v = line.partition("=")
            assert sep and out, "%s:%d: unexpected line %r" % (path, n, raw)
            v = re.split(r"\s;", v, maxsplit=1)[0].strip()
            out[-1][1].append((k.strip(), v, n))
    return out


def server_host(value):
    """Host part of a `server =` value (None for unix sockets)."""
    addr = value.split()[0]
    if addr.startswith("unix:"):
        return None
    if addr.startswith("["):
        return addr[1:addr.index("]")]
    return addr.rsplit(":", 1)[0]


# ---------------------------------------------------------------- compose_config


def find_compose():
    exe = shutil.which("docker-compose")
    if exe:
        return [exe]
    raise Skip("docker-compose is not installed and this test does not install it: "
               "apt-get install docker-compose (scripts/test installs it)")


def test_config(h):
    compose = find_compose()
    env = env_defaults()
    base = compose + ["-f", COMPOSE_YML, "--project-directory", ROOT]
    p = subprocess.run(base + ["config"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, "docker-compose config failed (%d):\n%s%s" % (
        p.returncode, p.stdout, p.stderr)
    resolved = p.stdout
    p = subprocess.run(base + ["config", "--services"], capture_output=True, text=True, env=env,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    services = set(p.stdout.split())
    print("compose services: %s" % " ".join(sorted(services)))
    assert "ferry" in services, "no ferry service in docker-compose.yml"

    # Every upstream host of compose.ini is a service.
    hosts = {}
    for sec, keys in ini_sections(COMPOSE_INI):
        for k, v, n in keys:
            if sec.startswith("upstream ") and k == "server":
                host = server_host(expand_defaults(v))
                if host is not None:
                    hosts.setdefault(host, []).append("config/compose.ini:%d" % n)
    assert hosts, "config/compose.ini has no upstream servers"
    missing = {hst: where for hst, where in hosts.items() if hst not in services}
    assert not missing, "upstream hosts that are not compose services: %r" % missing
    print("upstream hosts, all services: %s" % " ".join(sorted(hosts)))

    # ferry -t with the defaults (but a state_dir of the test's own: -t checks
    # that it could be made, and /var/lib may not be writable here).
    env["FERRY_STATE_DIR"] = h.path("state")
    p = subprocess.run([h.ferry_bin, "-t", "-c", COMPOSE_INI], capture_output=True, text=True,
                       env=env, timeout=30)
    rc, out, err = p.returncode, p.stdout, p.stderr
    assert rc == 0 and out.strip() == "%s: ok" % COMPOSE_INI, \
        "ferry -t config/compose.ini: rc %d\n%s%s" % (rc, out, err)

    # The resolved file: ferry waits for healthy apps, mounts compose.ini, has
    # the sysctls; every service ferry depends on has a healthcheck.
    try:
        import yaml
    except ImportError:
        yaml = None
        print("note: python3-yaml missing for %s: the depends_on/volume checks use text only"
              % sys.executable)
    if yaml is not None:
        doc = yaml.safe_load(resolved)
        svcs = doc["services"]
        fy = svcs["ferry"]
        deps = fy.get("depends_on") or {}
        for hst in hosts:
            assert hst in deps, "ferry does not depend_on %s" % hst
            cond = deps[hst].get("condition") if isinstance(deps, dict) else None
            assert cond == "service_healthy", "depends_on %s: condition %r" % (hst, cond)
            assert svcs[hst].get("healthcheck"), "service %s has no healthcheck" % hst
            assert svcs[hst]["build"]["target"] == "demo-app", svcs[hst]["build"]
        assert fy["build"]["target"] == "ferry", fy["build"]
        vols = [v if isinstance(v, str) else "%s:%s" % (v.get("source"), v.get("target"))
                for v in fy.get("volumes", [])]
        assert any(v.startswith(COMPOSE_INI + ":/etc/ferry/ferry.ini") for v in vols), vols
        sysctls = {k: str(v) for k, v in (fy.get("sysctls") or {}).items()}
        assert sysctls.get("net.ipv4.ip_local_port_range") == "1024 65535", sysctls
        assert sysctls.get("net.ipv4.tcp_tw_reuse") == "1", sysctls
        assert fy.get("healthcheck"), "ferry service has no healthcheck"
    else:
        assert COMPOSE_INI + ":/etc/ferry/ferry.ini" in resolved
        assert "service_healthy" in resolved and "ip_local_port_range" in resolved

    # The Dockerfile has the targets compose builds, and scripts/chroot-image-check
    # installs the same packages as the Dockerfile's stages.
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        dockerfile = f.read()
    stages = re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", dockerfile, re.M | re.I)
    names = [s[1] for s in stages]
    for t in ("build", "base", "demo-app", "ferry"):
        assert t in names, "Dockerfile has no stage %s (has %s)" % (t, names)
    assert names[-1] == "ferry", "the last (default) stage must be ferry, not %s" % names[-1]
    assert all(s[0] in ("debian:bookworm-slim", "scratch") + tuple(names) for s in stages), stages
    assert stages[-1][0] == "scratch", "the ferry image is built on scratch: %r" % (stages[-1],)
    installs = [sorted(m.split()) for m in
                re.findall(r"apt-get install -y --no-install-recommends\s*\\?\n?\s*([^\n&\\]+)",
                           dockerfile)]
    with open(os.path.join(ROOT, "scripts", "chroot-image-check")) as f:
        script = f.read()
    b = sorted(re.search(r"^BUILD_PACKAGES=\(([^)]*)\)", script, re.M).group(1).split())
    r = sorted(re.search(r"^RUNTIME_PACKAGES=\(([^)]*)\)", script, re.M).group(1).split())
    assert installs == [b, r], "Dockerfile installs %r, chroot-image-check %r" % (installs, [b, r])
    assert 'USER ferry' in dockerfile and 'ENTRYPOINT ["ferry"]' in dockerfile
    assert 'CMD ["-c", "/etc/ferry/ferry.ini"]' in dockerfile
    assert dockerfile.count("HEALTHCHECK") >= 2


# ---------------------------------------------------------------- compose_topology

CLIENT_PY = r"""
import base64, json, os, socket, sys, time

def http(method, host, port, path, hosthdr, body=b"", timeout=15.0):
    s = socket.create_connection((host, port), timeout=timeout)
    req = "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % (
        method, path, hosthdr, len(body))
    s.sendall(req.encode() + body)
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, rest.decode("utf-8", "replace")

def ws(host, port, path, hosthdr):
    s = socket.create_connection((host, port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, hosthdr, key)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(4096)
        if not b:
            break
        buf += b
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    name = ""
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"x-upstream-name":
            name = v.strip().decode()
    echo = ""
    if status == 101:
        msg = b"hello through ferry"
        mask = os.urandom(4)
        s.sendall(bytes([0x81, 0x80 | len(msg)]) + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(msg)))
        while len(rest) < 2 + len(msg):
            b = s.recv(4096)
            if not b:
                break
            rest += b
        echo = rest[2:2 + len(msg)].decode("utf-8", "replace")
    s.close()
    return status, name, echo

out = []
for spec in json.loads(sys.argv[1]):
    t0 = time.monotonic()
    try:
        if spec["kind"] == "ws":
            st, name, echo = ws(spec["addr"], spec["port"], spec["path"], spec["host"])
            r = {"status": st, "server": name, "echo": echo}
        else:
            st, body = http(spec.get("method", "GET"), spec["addr"], spec["port"], spec["path"],
                            spec["host"], spec.get("body", "").encode(), spec.get("timeout", 15.0))
            r = {"status": st, "body": body[:2000]}
            try:
                r["server"] = json.loads(body).get("server")
            except ValueError:
                r["server"] = None
    except OSError as e:
        r = {"status": 0, "error": repr(e)}
    r["seconds"] = round(time.monotonic() - t0, 3)
    out.append(r)
print(json.dumps(out))
"""

NET = "10.77.0."
FERRY_IP, CLIENT_IP = NET + "10", NET + "2"
APPS = {"app1": NET + "11", "app2": NET + "12", "ws": NET + "13"}
APP1_MOVED = NET + "21"


def sh(*argv, check=True):
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise AssertionError("%s: exit %d: %s" % (" ".join(argv), p.returncode, p.stderr.strip()))
    return p


class Topology:
    """Network namespaces on a bridge; everything named with this PID."""

    def __init__(self, h):
        self.h = h
        self.tag = "ferryc%d" % os.getpid()
        self.netns = []
        self.etc_dirs = []
        self.procs = {}
        self.client_py = h.write("client.py", CLIENT_PY)

    def ns(self, name):
        return "%s-%s" % (self.tag, name)

    def add_ns(self, name):
        full = self.ns(name)
        p = sh("ip", "netns", "add", full, check=False)
        if p.returncode != 0:
            if not self.netns:
                raise Skip("cannot create network namespaces here (`ip netns add %s`: %s); "
                           "this test needs root with CAP_SYS_ADMIN/CAP_NET_ADMIN"
                           % (full, p.stderr.strip()))
            raise AssertionError("ip netns add %s: %s" % (full, p.stderr.strip()))
        self.netns.append(full)
        sh("ip", "-n", full, "link", "set", "lo", "up")
        return full

    def build(self):
        bridge = self.add_ns("net")
        sh("ip", "-n", bridge, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", bridge, "link", "set", "br0", "up")
        for name, ip in [("ferry", FERRY_IP), ("client", CLIENT_IP)] + list(APPS.items()):
            full = self.add_ns(name)
            # One veth per namespace: "NAME" on the bridge, "eth0" in the namespace.
            sh("ip", "-n", bridge, "link", "add", name, "type", "veth", "peer", "name", "eth0",
               "netns", full)
            sh("ip", "-n", bridge, "link", "set", name, "master", "br0", "up")
            sh("ip", "-n", full, "addr", "add", ip + "/24", "dev", "eth0")
            sh("ip", "-n", full, "link", "set", "eth0", "up")
        # ferry's view of the service names: `ip netns exec` bind-mounts the
        # files of /etc/netns/NS/ over /etc/ in its private mount namespace.
        d = os.path.join("/etc/netns", self.ns("ferry"))
        os.makedirs(d)
        self.etc_dirs.append(d)
        self.hosts_path = os.path.join(d, "hosts")
        self.write_hosts(APPS)

    def write_hosts(self, apps):
        # In place (same inode): the bind mount ferry sees follows the inode.
        with open(self.hosts_path, "r+" if os.path.exists(self.hosts_path) else "w") as f:
            f.seek(0)
            f.truncate()
            f.write("127.0.0.1 localhost\n")
            for name, ip in sorted(apps.items()):
                f.write("%s %s\n" % (ip, name))

    def start_app(self, name):
        argv = ["ip", "netns", "exec", self.ns(name), self.h.upstream_bin,
                "--listen", "0.0.0.0:3000", "--name", name]
        p = harness.Proc("%s-%d" % (name, len(self.h.procs)), argv, self.h.tmp, stdout_pipe=True)
        self.h.procs.append(p)
        line = harness._readline_timeout(p.popen.stdout, 10)
        assert line, "%s did not start: %s" % (name, p.stderr())
        self.procs[name] = p
        return p

    def requests(self, specs, timeout=60):
        p = subprocess.run(["ip", "netns", "exec", self.ns("client"), sys.executable, "-B",
                            self.client_py, json.dumps(specs)],
                           capture_output=True, text=True, timeout=timeout)
        assert p.returncode == 0, "client failed: %s" % p.stderr
        return json.loads(p.stdout)

    def request_bg(self, spec):
        return subprocess.Popen(["ip", "netns", "exec", self.ns("client"), sys.executable, "-B",
                                 self.client_py, json.dumps([spec])],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def teardown(self):
        for p in list(self.procs.values()):
            p.kill()
        for n in reversed(self.netns):
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
        for d in self.etc_dirs:
            shutil.rmtree(d, ignore_errors=True)


def get_spec(path, host="localhost", **kw):
    d = {"kind": "http", "addr": FERRY_IP, "port": 8080, "path": path, "host": host}
    d.update(kw)
    return d


def test_topology(h):
    if os.geteuid() != 0:
        raise Skip("needs root for network namespaces (ip netns), running as uid %d" % os.geteuid())
    if not shutil.which("ip"):
        raise Skip("iproute2's `ip` is not installed (apt-get install iproute2)")
    if not (h.upstream_bin and os.access(h.upstream_bin, os.X_OK)):
        raise Skip("ferry-upstream is not built: the demo apps are ferry-upstream")
    topo = Topology(h)
    try:
        topo.build()
        for name in APPS:
            topo.start_app(name)
        env = {"FERRY_PORT": "8080", "FERRY_ADMIN_PORT": "9901", "APP_PORT": "3000",
               "FERRY_RESOLVE": "1s", "FERRY_STATE_DIR": h.path("state")}
        with open(COMPOSE_INI) as f:
            text = f.read()
        argv = ["ip", "netns", "exec", topo.ns("ferry"), h.ferry_bin, "-c", COMPOSE_INI]
        f = harness.Ferry(h, "ferry", argv, COMPOSE_INI, text, [], None, env)
        h.ferries.append(f)
        # Ready: the admin endpoint answers through the bridge.
        deadline = time.monotonic() + 20
        while True:
            r = topo.requests([{"kind": "http", "addr": FERRY_IP, "port": 9901,
                                "path": "/healthz", "host": "ferry"}])[0]
            if r["status"] == 200:
                break
            assert f.alive(), "ferry exited: %s" % f.stderr()
            assert time.monotonic() < deadline, "ferry's /healthz not 200 after 20s: %r" % r
            time.sleep(0.2)

        # Routes by path, by host, the default upstream, and the WebSocket route.
        checks = [(get_spec("/app1/hello"), "app1"), (get_spec("/app2/hello"), "app2"),
                  (get_spec("/", "app1.localhost"), "app1"), (get_spec("/", "app2.localhost"), "app2"),
                  (get_spec("/ws/plain"), "ws")]
        res = topo.requests([c[0] for c in checks])
        for (spec, want), r in zip(checks, res):
            assert r["status"] == 200 and r["server"] == want, \
                "%s %s: want 200 from %s, got %r" % (spec["host"], spec["path"], want, r)
            print("GET %s%s -> %s" % (spec["host"], spec["path"], r["server"]))
        res = topo.requests([get_spec("/") for _ in range(4)])
        seen = sorted({r["server"] for r in res})
        assert all(r["status"] == 200 for r in res) and seen == ["app1", "app2"], \
            "default upstream apps: want app1 and app2 in turn, got %r" % res
        print("GET / x4 -> %s" % seen)
        r = topo.requests([{"kind": "ws", "addr": FERRY_IP, "port": 8080, "path": "/ws",
                            "host": "localhost"}])[0]
        assert r["status"] == 101 and r["server"] == "ws" and r["echo"] == "hello through ferry", \
            "websocket through /ws: %r" % r
        print("WebSocket /ws -> 101 from ws, echo ok")

        # app2 restarts at the same address (a container restart): a GET sent
        # while it is down waits (hold = 5s in compose.ini) and is served; a
        # POST gets 502 naming the route and upstream at once.
        topo.procs["app2"].stop(5)
        held = topo.request_bg(get_spec("/app2/held", timeout=20))
        r = topo.requests([get_spec("/app2/x", method="POST", body="data")])[0]
        assert r["status"] in (502, 503) and "route app2-path" in r["body"] \
            and "upstream app2" in r["body"], "POST to a down app: %r" % r
        print("POST /app2/x with app2 down -> %d in %.2fs: %s" % (r["status"], r["seconds"],
                                                                  r["body"].strip()))
        time.sleep(1.0)
        topo.start_app("app2")
        out, err = held.communicate(timeout=30)
        assert held.returncode == 0, err
        r = json.loads(out)[0]
        assert r["status"] == 200 and r["server"] == "app2" and r["seconds"] >= 0.8, \
            "GET sent while app2 was down (should wait up to hold = 5s): %r" % r
        print("GET /app2/held sent while app2 was down -> 200 from app2 after %.2fs" % r["seconds"])

        # app1 restarts on a new address, as a recreated container would: ferry
        # follows it without a reload (resolve = 1s here, and a re-resolution
        # after each connect failure). A request that was already connecting
        # to the vanished address may wait connect_timeout (3s) first.
        pid_before = f.pid
        topo.procs["app1"].stop(5)
        sh("ip", "-n", topo.ns("app1"), "addr", "del", APPS["app1"] + "/24", "dev", "eth0")
        sh("ip", "-n", topo.ns("app1"), "addr", "add", APP1_MOVED + "/24", "dev", "eth0")
        topo.write_hosts(dict(APPS, app1=APP1_MOVED))
        topo.start_app("app1")
        t_up = time.monotonic()
        deadline = t_up + 10
        tries = []
        while True:
            r = topo.requests([get_spec("/app1/after", timeout=10)])[0]
            tries.append((r["status"], r["seconds"]))
            if r["status"] == 200 and r["server"] == "app1":
                break
            assert time.monotonic() < deadline, \
                "ferry did not follow app1 to %s within 10s: %r (tries %r)" % (APP1_MOVED, r, tries)
            time.sleep(0.1)
        res = topo.requests([get_spec("/app1/again"), get_spec("/", "app1.localhost")] +
                            [get_spec("/") for _ in range(4)])
        assert all(x["status"] == 200 for x in res), res
        assert {x["server"] for x in res[2:]} == {"app1", "app2"}, res
        print("after the move: app1 at %s served %.2fs after it came back (tries: %s)" %
              (APP1_MOVED, time.monotonic() - t_up,
               ", ".join("%d in %.2fs" % t for t in tries)))
        # Without a reload: same process, no reload counted.
        assert f.pid == pid_before and f.alive()
        m = topo.requests([{"kind": "http", "addr": FERRY_IP, "port": 9901, "path": "/metrics",
                            "host": "ferry"}])[0]
        assert m["status"] == 200, m
        reloads = re.findall(r'^ferry_config_reloads_total\{result="ok"\} (\d+)', m["body"], re.M)
        assert reloads in ([], ["0"]), "reloads counted: %r" % reloads
        h.ferry_stop_clean(f)
    finally:
        topo.teardown()


# ---------------------------------------------------------------- compose_readme_reference

SECTIONS = ("global", "listener", "upstream", "route")


def loader_keys():
    with open(os.path.join(ROOT, "src", "config_keys.c")) as f:
        src = f.read()
    keys = {}
    for sec in SECTIONS:
        m = re.search(r"static const struct key_def %s_keys\[\]\s*=\s*\{(.*?)\n\};" % sec, src, re.S)
        assert m, "src/config_keys.c: no %s_keys table" % sec
        body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
        # Each entry is a macro call whose first argument is the key name.
        names = re.findall(r"^\s*[A-Z_]+\(\s*\"([a-z_0-9]+)\"", body, re.M)
        assert names, "src/config_keys.c: %s_keys parsed empty" % sec
        keys[sec] = names
    return keys


def readme_reference():
    """{section: [(key, default or None, example or None)]} from README's
    "## Config reference": per section a heading with `[section ...]` and a
    table | key | default | example | meaning |; values in backticks."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    m = re.search(r"^## Config reference\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, "README.md has no '## Config reference' section"
    ref = {}
    sec = None
    for line in m.group(1).splitlines():
        hm = re.match(r"^###\s.*\[(\w+)", line)
        if hm:
            sec = hm.group(1)
            assert sec in SECTIONS, "README reference: unknown section heading %r" % line
            assert sec not in ref, "README reference: section %s twice" % sec
            ref[sec] = []
            continue
        if not line.startswith("|") or sec is None:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] in ("key", "") or set(cells[0]) <= set("-: "):
            continue
        assert len(cells) >= 4, "README reference row %r: want key | default | example | meaning" % line

        def val(cell):
            vm = re.fullmatch(r"`([^`]*)`", cell)
            return vm.group(1) if vm else None

        key = val(cells[0])
        assert key, "README reference row %r: key not in backticks" % line
        ref[sec].append((key, val(cells[1]), val(cells[2])))
    return ref


BASE = {
    "global": [],
    "listener web": [("bind", "127.0.0.1:8080"), ("mode", "http"), ("upstream", "app")],
    "upstream app": [("server", "127.0.0.1:3000")],
    "upstream other": [("server", "127.0.0.1:3001")],
    "route api": [("path_prefix", "/api/"), ("upstream", "app")],
}
SECTION_OF = {"global": "global", "listener": "listener web", "upstream": "upstream app",
              "route": "route api"}


# tls_auto's state_dir for the README checks (-t only checks it could be made).
STATE_DIR = "/tmp/ferry-readme-state-never-made"

# Files the README's TLS examples name, made by test_readme_reference.
TLS_FILES = {}


def config_with(sec, key, value):
    secs = {k: list(v) for k, v in BASE.items()}
    name = SECTION_OF[sec]
    kvs = [kv for kv in secs[name] if kv[0] != key]
    for path, real in TLS_FILES.items():
        value = value.replace(path, real)
    if sec == "listener" and key == "tls_auto":
        # the local CA's state_dir must be one -t may create
        secs["global"] = secs["global"] + [("state_dir", STATE_DIR)]
    if sec == "listener" and key in ("tls_protocols", "hsts", "alpn"):
        kvs.append(("tls_cert", "%s %s" % (TLS_FILES["/etc/ferry/site.pem"],
                                           TLS_FILES["/etc/ferry/site.key"])))
    if sec == "upstream" and key in ("tls_ca", "tls_verify", "tls_sni"):
        kvs.append(("tls", "on"))
    if sec == "route" and key == "path":
        kvs = [kv for kv in kvs if kv[0] != "path_prefix"]
    if sec == "listener" and key == "proxy_protocol_from":
        kvs.append(("proxy_protocol", "on"))  # it needs the header it filters
    if sec == "listener" and key == "mode" and value == "tcp":
        # Routes apply to http listeners: give them one.
        secs["listener other"] = [("bind", "127.0.0.1:8081"), ("mode", "http"),
                                  ("upstream", "app")]
    if sec == "route" and key == "sni":
        # sni routes a tcp listener, which it must name; it has no path.
        secs["listener tls"] = [("bind", "127.0.0.1:8443"), ("mode", "tcp")]
        kvs = [kv for kv in kvs if kv[0] != "path_prefix"] + [("listener", "tls")]
    kvs.append((key, value))
    secs[name] = kvs
    out = []
    for s, items in secs.items():
        out.append("[%s]" % s)
        out += ["%s = %s" % kv for kv in items]
        out.append("")
    return "\n".join(out)


def test_readme_reference(h):
    want = loader_keys()
    ref = readme_reference()
    problems = []
    for sec in SECTIONS:
        have = [k for k, _, _ in ref.get(sec, [])]
        dup = sorted({k for k in have if have.count(k) > 1})
        missing = [k for k in want[sec] if k not in have]
        extra = [k for k in have if k not in want[sec]]
        if missing or extra or dup:
            problems.append("[%s]: loader keys missing from README: %s; README keys the loader "
                            "does not accept: %s; listed twice: %s" % (sec, missing, extra, dup))
        else:
            print("[%s]: %d keys, README and loader agree" % (sec, len(have)))
    assert not problems, "README config reference vs src/config_keys.c:\n  " + "\n  ".join(problems)

    # the TLS examples name files: make real ones for -t to read
    cert, key_file = h.path("site.pem"), h.path("site.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key_file, "-out", cert,
                    "-days", "30", "-subj", "/CN=site.example"], check=True, capture_output=True)
    TLS_FILES.update({"/etc/ferry/site.pem": cert, "/etc/ferry/site.key": key_file,
                      "/etc/ferry/internal-ca.pem": cert})
    checked = 0
    for sec in SECTIONS:
        for key, default, example in ref[sec]:
            assert default is not None or example is not None, \
                "README [%s] %s: neither a default nor an example value in backticks" % (sec, key)
            for what, value in (("default", default), ("example", example)):
                if value is None:
                    continue
                cfg = h.write("ref-%s-%s-%s.ini" % (sec, key, what), config_with(sec, key, value))
                rc, out, err = h.run_ferry(["-t", "-c", cfg])
                if rc != 0:
                    problems.append("[%s] %s = %s (README %s): ferry -t says: %s" %
                                    (sec, key, value, what, err.strip()))
                checked += 1
    assert not problems, "documented values ferry -t refuses:\n  " + "\n  ".join(problems)
    print("ferry -t accepted all %d documented default/example values" % checked)


if __name__ == "__main__":
    harness.main(globals())
