#!/usr/bin/env python3
"""deploy/k8s and deploy/swarm, checked offline (no cluster, no swarm here;
scripts/docker-check runs the swarm stack for real): every file parses as
YAML (python3-yaml); the objects fit together (selectors match labels,
ports and probes match the config, the config is mounted as a directory and
watched, grace periods outlast shutdown_timeout); and ferry -t accepts the
configs they carry. What this cannot tell: whether an API server accepts
the objects (no schema validation against a real Kubernetes), and how the
probes, preStop and rolling updates behave in a cluster."""
import os
import re
import subprocess

import harness

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
K8S = os.path.join(ROOT, "deploy", "k8s")
SWARM = os.path.join(ROOT, "deploy", "swarm")


def _yaml():
    try:
        import yaml
    except ImportError:
        raise harness.Skip("python3-yaml is not installed")
    return yaml


def _duration_s(text):
    m = re.fullmatch(r"(\d+)(ms|s|m)", text.strip())
    assert m, "duration %r" % text
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def _ini_value(text, key):
    m = re.search(r"^\s*%s\s*=\s*([^;\n]+)" % re.escape(key), text, re.M)
    return m.group(1).strip() if m else None


def _ferry_check(h, text, name):
    path = h.write(name, text)
    p = subprocess.run([h.ferry_bin, "-t", "-c", path], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, "ferry -t %s: %s%s" % (name, p.stdout, p.stderr)


def _k8s_objects(yaml):
    objs = {}
    for f in sorted(os.listdir(K8S)):
        if not f.endswith(".yaml") or f == "kustomization.yaml":
            continue
        with open(os.path.join(K8S, f)) as fh:
            for doc in yaml.safe_load_all(fh):
                assert doc.get("apiVersion") and doc.get("kind"), "%s: %r" % (f, doc)
                assert doc["metadata"].get("name"), "%s: an object without a name" % f
                objs[(doc["kind"], doc["metadata"]["name"])] = doc
    with open(os.path.join(K8S, "kustomization.yaml")) as fh:
        listed = set(yaml.safe_load(fh)["resources"])
    assert listed == {f for f in os.listdir(K8S) if f.endswith(".yaml")} - {"kustomization.yaml"}, \
        "kustomization.yaml lists %r" % listed
    return objs


def _matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def test_k8s(h):
    yaml = _yaml()
    objs = _k8s_objects(yaml)
    dep, cm = objs[("Deployment", "ferry")], objs[("ConfigMap", "ferry-config")]
    svc, pdb = objs[("Service", "ferry")], objs[("PodDisruptionBudget", "ferry")]
    app, app_svc = objs[("Deployment", "app")], objs[("Service", "app")]
    ini = cm["data"]["ferry.ini"]
    _ferry_check(h, ini, "k8s-ferry.ini")
    assert _ini_value(ini, "watch_config") == "on", "the ConfigMap's config is not watched"

    spec = dep["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["replicas"] == 2
    assert _matches(spec["selector"]["matchLabels"], labels)
    assert _matches(svc["spec"]["selector"], labels), "Service ferry selects no ferry pod"
    assert _matches(pdb["spec"]["selector"]["matchLabels"], labels), "the PDB selects no ferry pod"
    assert pdb["spec"].get("minAvailable") == 1 or pdb["spec"].get("maxUnavailable") == 1
    (c,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    admin_port = int(_ini_value(ini, "admin").rsplit(":", 1)[1])
    web_port = int(_ini_value(ini, "bind").rsplit(":", 1)[1])
    assert ports == {"http": web_port, "admin": admin_port}, (ports, admin_port, web_port)
    for probe in ("readinessProbe", "livenessProbe"):
        g = c[probe]["httpGet"]
        assert g["path"] == "/healthz" and ports.get(g["port"], g["port"]) == admin_port, (probe, g)
    assert any(p["targetPort"] in ("http", web_port) for p in svc["spec"]["ports"])
    assert all(p["targetPort"] not in ("admin", admin_port) for p in svc["spec"]["ports"]), \
        "the admin port is on the Service"
    pre = c["lifecycle"]["preStop"]
    pre_s = pre["sleep"]["seconds"] if "sleep" in pre else 0
    grace = pod["terminationGracePeriodSeconds"]
    shutdown = _duration_s(_ini_value(ini, "shutdown_timeout"))
    assert grace > pre_s + shutdown, "grace %ss <= preStop %ss + shutdown_timeout %ss" % (
        grace, pre_s, shutdown)
    # the ConfigMap as a directory: a subPath mount never sees an update
    (m,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/etc/ferry"]
    assert "subPath" not in m, "subPath mounts are not updated: watch_config would see nothing"
    vol = [v for v in pod["volumes"] if v["name"] == m["name"]][0]
    assert vol["configMap"]["name"] == "ferry-config"
    assert c["args"] == ["-c", "/etc/ferry/ferry.ini"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True

    # the app: a headless Service whose name is the config's server
    assert app_svc["spec"].get("clusterIP") == "None", "the app's Service is not headless"
    assert _matches(app_svc["spec"]["selector"], app["spec"]["template"]["metadata"]["labels"])
    host, port = _ini_value(ini, "server").rsplit(":", 1)
    assert host.split(".")[0] == app_svc["metadata"]["name"], (host, app_svc["metadata"]["name"])
    assert int(port) in [p["port"] for p in app_svc["spec"]["ports"]]


def test_swarm(h):
    yaml = _yaml()
    with open(os.path.join(SWARM, "stack.yml")) as fh:
        stack = yaml.safe_load(fh)
    with open(os.path.join(SWARM, "ferry.ini")) as fh:
        ini = fh.read()
    _ferry_check(h, ini, "swarm-ferry.ini")
    ferry, app = stack["services"]["ferry"], stack["services"]["app"]
    assert app["deploy"]["replicas"] == 3
    assert app["deploy"]["update_config"]["order"] == "start-first"
    assert _ini_value(ini, "server") == "tasks.app:3000", "ferry must resolve every task of app"
    (cfg,) = ferry["configs"]
    assert cfg["target"] == "/etc/ferry/ferry.ini"
    assert stack["configs"][cfg["source"]]["file"] == "./ferry.ini"
    for s in (ferry, app):
        assert s.get("healthcheck", {}).get("test"), "a service without a health check"
    assert ferry["healthcheck"]["test"][:2] == ["CMD", "ferry"]
    grace = _duration_s(ferry["stop_grace_period"])
    assert grace > _duration_s(_ini_value(ini, "shutdown_timeout"))
    (p,) = ferry["ports"]
    assert p["mode"] == "host" and p["target"] == int(_ini_value(ini, "bind").rsplit(":", 1)[1])


harness.main(globals())
