#!/usr/bin/env python3
"""The recipes of docs/recipes.md, run for real: each app from its Debian
package, configured as the recipe says, behind ferry under a stripped path
prefix, answering a real client.

  flask    python3-flask: ProxyFix(x_for, x_proto, x_host, x_prefix) builds
           URLs and redirects under the prefix from X-Forwarded-*
  django   python3-django: FORCE_SCRIPT_NAME, a form POST with its CSRF
           cookie (Path rewritten to the prefix) redirecting under the prefix
  express  nodejs + node-express: `trust proxy` gives req.ip, req.protocol and
           req.hostname of the client; a prefix-unaware res.redirect('/done')
           is put back under the prefix by rewrite_redirects
  socketio python3-socketio: the Engine.IO handshake and a message by long
           polling on the recipe's `path`
  jupyter  jupyter-notebook: base_url under a route that keeps the prefix,
           a kernel started over the API and its websocket channel opened

Each skips, saying which package, when its package is not installed
(scripts/test installs them: FERRY_TEST_PACKAGES in scripts/lib.sh)."""
import json
import os
import re
import subprocess
import time

import harness
from harness import Proc, free_port, http_client, simple_http

SYS_PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
NODE_PATH = "/usr/share/nodejs"


def _need_python(modules, package):
    r = subprocess.run([SYS_PY, "-c", "import " + ", ".join(modules)], capture_output=True)
    if r.returncode != 0:
        raise harness.Skip("%s is not installed for %s (apt-get install %s)" % (package, SYS_PY,
                                                                                  package))


def _start_app(h, name, argv, port, env=None):
    """Starts an app listening on 127.0.0.1:port; waits until it listens."""
    p = Proc("app-" + name, argv, h.tmp, env=env)
    h.procs.append(p)
    addr = ("tcp", "127.0.0.1", port)
    deadline = time.monotonic() + harness.scaled(30)
    while not harness.is_listening(p.pid, addr):
        if not p.alive() or time.monotonic() > deadline:
            raise AssertionError("%s did not listen on %d: %s" % (name, port, p.stderr()[-3000:]))
        time.sleep(0.05)
    return addr


def _ferry(h, app, prefix):
    """ferry with one strip_prefix route PREFIX/ to APP, its default upstream
    the same app (so a request escaping the prefix would still be answered,
    and the test could not tell: it checks the paths themselves)."""
    return simple_http(h, [app], routes=[
        ("app", [("path_prefix", prefix + "/"), ("upstream", "app"), ("strip_prefix", "on")])])


def _recipe(h, name, source, interpreter, prefix, env=None):
    """Writes the app SOURCE, runs it with INTERPRETER on a free port behind
    ferry under PREFIX. Returns (ferry, the Host to send, a client)."""
    port = free_port()
    script = h.write(name, source)
    app = _start_app(h, name, [interpreter, script, str(port)], port, env=env)
    f = _ferry(h, app, prefix)
    return f, "%s:%d" % (f.addr[1], f.addr[2]), http_client(h, f)


FLASK_APP = r'''
import sys
from flask import Flask, jsonify, redirect, request, url_for
from werkzeug.middleware.proxy_fix import ProxyFix

app = Flask(__name__)
# The recipe: trust one proxy (ferry) for each X-Forwarded-* header.
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_prefix=1)

@app.route("/")
def index():
    return jsonify(hello=url_for("hello"), external=url_for("hello", _external=True),
                   remote_addr=request.remote_addr, script_root=request.script_root)

@app.route("/hello")
def hello():
    return "hello"

@app.route("/go")
def go():
    return redirect(url_for("hello"))

app.run(host="127.0.0.1", port=int(sys.argv[1]))
'''


def test_flask(h):
    _need_python(["flask", "werkzeug"], "python3-flask")
    f, host, c = _recipe(h, "flask_app.py", FLASK_APP, SYS_PY, "/flask")
    r = c.request("GET", "/flask/", [("Host", host)])
    assert r.status == 200, r
    j = r.json()
    assert j == {"hello": "/flask/hello", "external": "http://%s/flask/hello" % host,
                 "remote_addr": "127.0.0.1", "script_root": "/flask"}, j
    r = c.request("GET", "/flask/go", [("Host", host)])
    loc = r.header("Location")
    assert r.status == 302 and loc in ("/flask/hello", "http://%s/flask/hello" % host), r
    r = c.request("GET", "/flask/hello", [("Host", host)])
    assert r.status == 200 and r.body == b"hello", r


DJANGO_APP = r'''
import sys
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="recipe-test",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    # The recipe: the app lives under the prefix ferry strips ...
    FORCE_SCRIPT_NAME="/dj",
    STATIC_URL="/dj/static/",
    # ... and trusts ferry's X-Forwarded-Host and X-Forwarded-Proto.
    USE_X_FORWARDED_HOST=True,
    SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
    CSRF_TRUSTED_ORIGINS=["https://ferry.test"],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware"],
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": []}],
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
)

import django
django.setup()
from django.http import HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect
from django.urls import path, reverse

def form(request):
    if request.method == "POST":
        return redirect(reverse("thanks") + "?name=" + request.POST.get("name", ""))
    return HttpResponse('<form method="post" action="%s"><input type="hidden" '
                        'name="csrfmiddlewaretoken" value="%s"><input name="name"></form>'
                        % (reverse("form"), get_token(request)))

def thanks(request):
    return HttpResponse("thanks " + request.GET.get("name", "") + " " + request.build_absolute_uri())

urlpatterns = [path("form/", form, name="form"), path("thanks/", thanks, name="thanks")]

from wsgiref.simple_server import make_server
from django.core.wsgi import get_wsgi_application
make_server("127.0.0.1", int(sys.argv[1]), get_wsgi_application()).serve_forever()
'''


def test_django(h):
    _need_python(["django"], "python3-django")
    f, host, c = _recipe(h, "django_app.py", DJANGO_APP, SYS_PY, "/dj")
    r = c.request("GET", "/dj/form/", [("Host", host)])
    assert r.status == 200, r
    action = re.search(rb'action="([^"]*)"', r.body).group(1).decode()
    token = re.search(rb'value="([^"]*)"', r.body).group(1).decode()
    assert action == "/dj/form/", "the form posts to %r" % action
    cookie = r.header("Set-Cookie")
    assert cookie and "Path=/dj" in cookie and "Path=/;" not in cookie, \
        "the CSRF cookie's Path was not put under the prefix: %r" % cookie
    body = ("csrfmiddlewaretoken=%s&name=ann" % token).encode()
    r = c.request("POST", action, [("Host", host), ("Cookie", cookie.split(";")[0]),
                                   ("Content-Type", "application/x-www-form-urlencoded")],
                  body=body)
    assert r.status == 302 and r.header("Location") == "/dj/thanks/?name=ann", r
    r = c.request("GET", r.header("Location"), [("Host", host)])
    assert r.status == 200 and r.body == ("thanks ann http://%s/dj/thanks/?name=ann" % host).encode(), r
    # without the CSRF cookie the POST is refused: the check is really on
    r = c.request("POST", action, [("Host", host),
                                   ("Content-Type", "application/x-www-form-urlencoded")],
                  body=body)
    assert r.status == 403, r


EXPRESS_APP = r'''
const express = require('express');
const app = express();
// The recipe: trust the one proxy in front (ferry) for X-Forwarded-*.
app.set('trust proxy', 'loopback');
app.get('/info', (req, res) => res.json({
  ip: req.ip, protocol: req.protocol, hostname: req.hostname,
  prefix: req.get('X-Forwarded-Prefix') || '', url: req.originalUrl}));
// A prefix-unaware redirect: ferry's rewrite_redirects puts it back.
app.get('/go', (req, res) => res.redirect('/done'));
app.get('/done', (req, res) => res.send('done'));
app.listen(Number(process.argv[2]), '127.0.0.1');
'''


def test_express(h):
    node = "/usr/bin/node" if os.path.exists("/usr/bin/node") else None
    if not node or not os.path.isdir(os.path.join(NODE_PATH, "express")):
        raise harness.Skip("nodejs or node-express is not installed (apt-get install nodejs "
                           "node-express)")
    f, host, c = _recipe(h, "express_app.js", EXPRESS_APP, node, "/node",
                         env={"NODE_PATH": NODE_PATH})
    r = c.request("GET", "/node/info", [("Host", host)])
    assert r.status == 200, r
    assert r.json() == {"ip": "127.0.0.1", "protocol": "http", "hostname": f.addr[1],
                        "prefix": "/node", "url": "/info"}, r.json()
    r = c.request("GET", "/node/go", [("Host", host)])
    assert r.status == 302 and r.header("Location") == "/node/done", r
    r = c.request("GET", "/node/done", [("Host", host)])
    assert r.status == 200 and r.body == b"done", r


SOCKETIO_APP = r'''
import sys
import socketio
from wsgiref.simple_server import make_server, WSGIRequestHandler

sio = socketio.Server(async_mode="threading")

@sio.event
def hello(sid, data):
    sio.emit("reply", "hi " + data, to=sid)

# The recipe: the server keeps its default path /socket.io; ferry strips
# /chat, and the browser's client is told path: '/chat/socket.io'.
app = socketio.WSGIApp(sio)

class Quiet(WSGIRequestHandler):
    def log_message(self, *a):
        pass

from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer
class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True

make_server("127.0.0.1", int(sys.argv[1]), app, server_class=Server,
            handler_class=Quiet).serve_forever()
'''


def test_socketio(h):
    _need_python(["socketio"], "python3-socketio")
    f, host, c = _recipe(h, "sio_app.py", SOCKETIO_APP, SYS_PY, "/chat")
    host = ("Host", host)
    base = "/chat/socket.io/?EIO=4&transport=polling"
    r = c.request("GET", base, [host])
    assert r.status == 200 and r.body.startswith(b"0"), r
    sid = json.loads(r.body[1:])["sid"]
    url = base + "&sid=" + sid
    r = c.request("POST", url, [host, ("Content-Type", "text/plain")], body=b"40")
    assert r.status == 200, r
    r = c.request("GET", url, [host])
    assert r.status == 200 and r.body.startswith(b"40"), r  # connected to namespace /
    r = c.request("POST", url, [host, ("Content-Type", "text/plain")],
                  body=b'42["hello","ann"]')
    assert r.status == 200, r
    deadline = time.monotonic() + harness.scaled(10)
    got = b""
    while b"hi ann" not in got and time.monotonic() < deadline:
        r = c.request("GET", url, [host], timeout=harness.scaled(10))
        assert r.status == 200, r
        got += r.body
    assert b'42["reply","hi ann"]' in got, got


def test_jupyter(h):
    _need_python(["notebook", "ipykernel"], "jupyter-notebook")
    port = free_port()
    home = h.path("jhome")
    os.makedirs(home, exist_ok=True)
    # The recipe: base_url is the route's prefix (kept: no strip_prefix),
    # allow_remote_access because requests arrive with ferry's Host.
    argv = [SYS_PY, "-m", "notebook", "--no-browser", "--ip=127.0.0.1", "--port=%d" % port,
            "--NotebookApp.base_url=/jupyter/", "--NotebookApp.allow_remote_access=True",
            "--NotebookApp.token=recipe", "--NotebookApp.notebook_dir=" + home]
    if os.geteuid() == 0:
        argv.append("--allow-root")  # test containers run as root
    app = _start_app(h, "jupyter", argv, port, env={"HOME": home, "JUPYTER_RUNTIME_DIR": home})
    f = simple_http(h, [app], listener_opts={"upstream": None}, routes=[
        ("jupyter", [("path_prefix", "/jupyter/"), ("upstream", "app"),
                     ("idle_timeout", "1h")])])
    host = ("Host", "%s:%d" % (f.addr[1], f.addr[2]))
    auth = ("Authorization", "token recipe")
    c = http_client(h, f)
    r = c.request("GET", "/jupyter/api", [host])
    assert r.status == 200 and "version" in r.json(), r
    r = c.request("GET", "/jupyter", [host])
    assert r.status == 308 and r.header("Location") == "/jupyter/", r
    r = c.request("POST", "/jupyter/api/kernels", [host, auth, ("Content-Type", "application/json")],
                  body=b"{}", timeout=harness.scaled(60))
    assert r.status == 201, r
    kid = r.json()["id"]
    s = h.track(f.connect())
    s.sendall(harness.build_request(
        "GET", "/jupyter/api/kernels/%s/channels" % kid,
        [host, auth, ("Connection", "Upgrade"), ("Upgrade", "websocket"),
         ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]))
    s.settimeout(harness.scaled(30))
    head = b""
    while b"\r\n\r\n" not in head:
        b = s.recv(1)
        assert b, "closed before the 101: %r" % head
        head += b
    assert head.startswith(b"HTTP/1.1 101"), head
    r = c.request("DELETE", "/jupyter/api/kernels/" + kid, [host, auth])
    assert r.status == 204, r


if __name__ == "__main__":
    harness.main(globals())
