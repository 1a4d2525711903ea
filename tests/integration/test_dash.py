#!/usr/bin/env python3
"""The admin dashboard (issue 19): GET / as plain HTTP (headers, CSP, no
external references), the JSON it polls (/status?stats=1), and the page in a
real headless Chromium (Debian's chromium + chromium-driver + python3-selenium):
data shown, a server marked down, a 502 in the error list with its request
id, no client address on the page, the lost-connection banner, a screenshot.
The browser test skips, saying why, only when Chromium cannot start."""
import base64
import hashlib
import json
import os
import re
import socket
import threading
import time

import harness
from harness import HttpClient, Skip, free_port, http_upstream
from opslib import addr_text, admin_get, reload, start, wait_for

CLIENT_IP = "127.0.0.2"  # the test's clients come from here: it must never show
SECRET_HEADER = "s3cr3t-header-value-7f3a"
SECRET_UA = "ua-marker-9b1c"


def dash_ferry(h, workers="2"):
    """ferry in front of two upstreams (app: a, side: b; tcp checks every
    300 ms) and a third that refuses (gone), routes api, side and gone."""
    a, b = http_upstream(h, "a"), http_upstream(h, "b")
    b_proc = h.procs[-1]
    gone = ("tcp", "127.0.0.1", free_port())
    check = {"health_check": "tcp", "health_interval": "300ms", "max_fails": "100"}
    f = start(h, [("web", {"upstream": "app"})],
              [("app", [a], check), ("side", [b], check), ("gone", [gone], {"retries": "0", "hold": "0"})],
              routes=[("api", [("path_prefix", "/status/"), ("upstream", "app")]),
                      ("side", [("path_prefix", "/side/"), ("upstream", "side")]),
                      ("gone", [("path_prefix", "/gone/"), ("upstream", "gone")])],
              global_opts={"workers": workers})
    return f, a, b, b_proc, gone


def client_request(f, target):
    """One request from CLIENT_IP carrying a header value and a user agent
    that must never reach the dashboard. Returns the harness Response."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((CLIENT_IP, 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", f.lports["web"]))
        c = HttpClient(s)
        return c.request("GET", target, [("Host", "dash.test"), ("Connection", "close"),
                                         ("X-Secret", SECRET_HEADER), ("User-Agent", SECRET_UA)])
    finally:
        s.close()


def stats(f):
    r = admin_get(f, "/status?stats=1")
    assert r.status == 200 and (r.header("content-type") or "").startswith("application/json"), \
        "/status?stats=1: %r" % r
    return json.loads(r.body), len(r.body)


def route_line(f, name):
    for i, line in enumerate(f.config_text.splitlines(), 1):
        if line.strip() == "[route %s]" % name:
            return i
    raise AssertionError("no [route %s] in the config" % name)


def csp_hash(text):
    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


# ---------------------------------------------------------------- plain HTTP


def test_page(h):
    """GET /: 200, text/html, a strict CSP whose hashes are those of the
    page's one style and one script, nosniff; no external reference; at most
    40 KB; HEAD the same headers and no body."""
    f, *_ = dash_ferry(h, workers="1")
    r = admin_get(f, "/")
    assert r.status == 200, "GET /: %r" % r
    assert r.header("content-type") == "text/html; charset=utf-8", r.header("content-type")
    assert r.header("x-content-type-options") == "nosniff"
    assert r.header("cache-control") == "no-store"
    csp = r.header("content-security-policy") or ""
    directives = dict((d.strip().split(" ", 1) + [""])[:2] for d in csp.split(";") if d.strip())
    assert directives.get("default-src") == "'none'", "CSP %r" % csp
    assert directives.get("connect-src") == "'self'", "CSP %r" % csp
    assert directives.get("frame-ancestors") == "'none'", "CSP %r" % csp
    assert "unsafe" not in csp, "CSP allows unsafe-*: %r" % csp
    page = r.body.decode("utf-8")
    assert len(r.body) <= 40 * 1024, "page is %d bytes" % len(r.body)
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert script and style, "page has no <script> or <style>"
    assert directives.get("script-src") == csp_hash(script.group(1)), \
        "script-src %r is not the script's hash %s" % (directives.get("script-src"),
                                                      csp_hash(script.group(1)))
    assert directives.get("style-src") == csp_hash(style.group(1)), "style-src %r" % csp
    assert len(re.findall(r"<script", page)) == 1 and " style=" not in page, \
        "a second script or an inline style attribute would be blocked by the CSP"
    # the one absolute URL allowed is the SVG namespace name, which is never fetched
    urls = set(re.findall(r"https?://[^\s'\"<>)]*", page))
    assert urls <= {"http://www.w3.org/2000/svg"}, "external references: %r" % urls
    assert not re.search(r"(src|href|action)\s*=\s*[\"']?\s*(https?:)?//", page), \
        "a src/href leaves the admin address"
    assert "@import" not in page and "url(" not in page
    print("page: %d bytes, CSP: %s" % (len(r.body), csp))
    s = harness.connect(f.admin)
    try:
        c = HttpClient(s)
        hr = c.request("HEAD", "/", [("Host", "admin"), ("Connection", "close")])
    finally:
        s.close()
    assert hr.status == 200 and hr.body == b"", "HEAD /: %r" % hr
    assert hr.header("content-length") == str(len(r.body))
    assert hr.header("content-security-policy") == csp


def test_json(h):
    """/status?stats=1: everything the page shows, with the values the test
    caused; plain /status stays as it was. A 502 and 404s are in "errors"
    with their request ids (never more than 50), and never the client's
    address or header values; a refused and an applied reload are listed."""
    f, a, b, b_proc, gone = dash_ferry(h)
    plain = json.loads(admin_get(f, "/status").body)
    assert "errors" not in plain and "history" not in json.dumps(plain), \
        "plain /status grew the dashboard fields: %r" % sorted(plain)
    for i in range(5):
        assert client_request(f, "/status/200").status == 200
    r502 = client_request(f, "/gone/x")
    assert r502.status == 502, "/gone/: %r" % r502
    rid = r502.header("x-request-id")
    assert rid, "502 without X-Request-Id: %r" % r502
    # The 502 is counted as its exchange ends, which may be just after the
    # client has read it: wait for the count, bounded.
    deadline = time.monotonic() + 5
    while True:
        s, size = stats(f)
        gone_5xx = [r for r in s["routes"] if r["name"] == "gone"][0]["status"]["5xx"]
        if gone_5xx >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    print("/status?stats=1: %d bytes" % size)
    web = [l for l in s["listeners"] if l["name"] == "web"][0]
    assert web["tls"] is False and web["connections_total"] >= 6 and "connections" in web, web
    routes = {r["name"]: r for r in s["routes"]}
    api = routes["api"]
    assert api["file"] == f.config_path and api["line"] == route_line(f, "api"), api
    assert api["requests"] == 5 and api["status"]["2xx"] == 5, api
    assert api["p50_ms"] is not None and api["p99_ms"] >= api["p50_ms"], api
    assert routes["gone"]["status"]["5xx"] == 1, routes["gone"]
    ups = {u["name"]: u for u in s["upstreams"]}
    assert ups["gone"]["connect_errors"]["refused"] >= 1, ups["gone"]
    assert set(ups["app"]["held"]) == {"served", "expired"}
    srv = ups["app"]["servers"][0]
    assert srv["address"] == addr_text(a) and srv["state"] == "up" and srv["requests"] == 5 \
        and srv["opened"] >= 1 and srv["resolved"] == "127.0.0.1", srv
    errs = [e for e in s["errors"] if e["rid"] == rid]
    assert len(errs) == 1, "the 502 (rid %s) is not in errors: %r" % (rid, s["errors"])
    e = errs[0]
    assert e["status"] == 502 and e["route"] == "gone" and e["upstream"] == "gone" \
        and "connection refused" in e["cause"], e
    assert abs(e["time"] - s["now"]) < 60000, (e, s["now"])
    assert set(s["ports"]) == {"range", "available", "sources"} and s["certificates"] == []
    assert s["history_step_ms"] == 5000 and s["history_points"] == 60
    # 60 more errors: the list holds the latest 50, newest first
    for i in range(60):
        code = client_request(f, "/gone/%d" % i).status
        assert code in (502, 503), "/gone/%d: %d" % (i, code)
    s, _ = stats(f)
    assert len(s["errors"]) <= 50, len(s["errors"])
    times = [x["time"] for x in s["errors"]]
    assert times == sorted(times, reverse=True), "errors not newest first"
    text = json.dumps(s)
    for secret in (CLIENT_IP, SECRET_HEADER, SECRET_UA):
        assert secret not in text, "%r appears in /status?stats=1" % secret
    # reloads: a refused one with its first error line, then an applied one
    good = f.config_text
    reload(f, good + "\n[nonsense\n", expect="error")
    reload(f, good, expect="ok")
    s, _ = stats(f)
    assert s["reloads_ok"] == 1 and s["reloads_error"] == 1, s
    assert [x["ok"] for x in s["reloads"]] == [True, False], s["reloads"]
    bad = s["reloads"][1]["error"]
    assert bad.startswith(f.config_path + ":") and "\n" not in bad, bad
    # history: a snapshot every 5 s; after one interval each route has points
    wait_for(lambda: stats(f)[0]["routes"][0]["history"] is not None, 7, "first history point")
    hist = [r for r in stats(f)[0]["routes"] if r["name"] == "api"][0]["history"]
    assert set(hist) == {"rate", "2xx", "3xx", "4xx", "5xx", "p50", "p99"}, hist
    assert all(len(v) == len(hist["rate"]) and len(v) <= 60 for v in hist.values()), hist


# ---------------------------------------------------------------- in a browser


def chromium(h):
    """A headless Chromium through chromedriver, or Skip saying why not."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        raise Skip("python3-selenium is not installed (%s): apt-get install python3-selenium" % e)
    binary = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.access(p, os.X_OK)), None)
    driver = next((p for p in ("/usr/bin/chromedriver",) if os.access(p, os.X_OK)), None)
    if not binary or not driver:
        raise Skip("chromium or chromium-driver is not installed (binary %s, driver %s)" % (binary, driver))
    opts = Options()
    opts.binary_location = binary
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,800", "--no-first-run", "--disable-extensions",
              "--user-data-dir=" + h.path("chromium-profile")):
        opts.add_argument(a)
    try:
        return webdriver.Chrome(service=Service(driver), options=opts)
    except WebDriverException as e:
        raise Skip("Chromium cannot start here: %s" % str(e).strip().splitlines()[0])


def test_browser(h):
    """The page in headless Chromium at 1280x800: listeners, routes with
    file:line, both servers up; one upstream killed is shown down within
    5 s; a 502 shows in the error list with its request id; no client
    address or header value anywhere on the page; keyboard focus reaches the
    page; no horizontal scrolling on a phone-sized window; the banner when
    ferry goes away. Saves a screenshot ($FERRY_DASH_SCREENSHOT, else the
    test's directory)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    f, a, b, b_proc, gone = dash_ferry(h)
    # traffic for the sparklines while the page loads
    stop = threading.Event()

    def traffic():
        n = 0
        while not stop.is_set():
            target = ("/status/200", "/status/200", "/status/304", "/status/404", "/side/x")[n % 5]
            try:
                client_request(f, target)
            except (OSError, AssertionError):
                pass
            n += 1
            stop.wait((0.02, 0.05, 0.1, 0.2)[n // 40 % 4])  # a rate that changes
    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    drv = chromium(h)
    try:
        url = "http://127.0.0.1:%d/" % f.admin[2]
        drv.get(url)
        # The page redraws its tables on every poll: read text in one script
        # run, so an element never goes stale between finding and reading it.
        def text(css):
            return drv.execute_script(
                "var e = document.querySelector(arguments[0]); return e ? e.textContent : null",
                css)

        def count(css):
            return drv.execute_script("return document.querySelectorAll(arguments[0]).length", css)

        wait = WebDriverWait(drv, 10, poll_frequency=0.1)
        wait.until(lambda d: text('tr[data-route="api"]'), "routes never shown")
        wait.until(lambda d: count("tr[data-server]") == 3, "servers never shown")
        listeners = text("#listeners")
        assert "web" in listeners and "127.0.0.1:%d" % f.lports["web"] in listeners, listeners
        for name in ("api", "side", "gone"):
            row = text('tr[data-route="%s"]' % name)
            where = "%s:%d" % (f.config_path, route_line(f, name))
            assert where in row, "route %s row %r lacks %s" % (name, row, where)

        def state(srv):
            return text('tr[data-server="%s"] td.state' % srv)
        assert state(addr_text(a)) == "up" and state(addr_text(b)) == "up", \
            (state(addr_text(a)), state(addr_text(b)))

        b_proc.kill()
        t0 = time.monotonic()
        WebDriverWait(drv, 5, poll_frequency=0.1).until(
            lambda d: state(addr_text(b)) == "down", "killed server b not shown down within 5 s")
        print("server b shown down %.1fs after it was killed" % (time.monotonic() - t0))
        assert state(addr_text(a)) == "up"

        r = client_request(f, "/gone/dash")
        assert r.status == 502, r
        rid = r.header("x-request-id")
        sel = 'tr[data-rid="%s"]' % rid
        WebDriverWait(drv, 5, poll_frequency=0.1).until(
            lambda d: text(sel), "502 (rid %s) not listed" % rid)
        row = text(sel)
        for want in ("502", "gone", "connection refused", rid):
            assert want in row, "error row %r lacks %r" % (row, want)

        # sparklines need history snapshots (5 s apart): wait for a few, so
        # that the screenshot shows lines, not dots
        WebDriverWait(drv, 25, poll_frequency=0.2).until(
            lambda d: drv.execute_script(
                "var p = document.querySelector('tr[data-route=\"api\"] svg.spark path');"
                "return p ? p.getAttribute('d').split('L').length : 0") >= 4,
            "no sparkline drawn")
        stop.set()
        t.join(5)
        # the screenshot at a 1280x800 viewport (the window has some chrome)
        extra = drv.execute_script("return window.outerHeight - window.innerHeight")
        drv.set_window_size(1280, 800 + max(0, extra))
        WebDriverWait(drv, 5).until(lambda d: d.execute_script("return window.innerHeight") >= 790)
        overflow = drv.execute_script("var s = document.querySelector('#routes').closest('.scroll');"
                                      "return s.scrollWidth - s.clientWidth")
        assert overflow <= 1, "the routes table scrolls sideways at 1280x800 by %dpx" % overflow
        shot = os.environ.get("FERRY_DASH_SCREENSHOT") or h.path("dashboard.png")
        drv.execute_script("window.scrollTo(0, 0)")
        assert drv.save_screenshot(shot), "screenshot to %s failed" % shot
        print("screenshot: %s" % shot)

        page = drv.page_source + text("body")
        for secret in (CLIENT_IP, SECRET_HEADER, SECRET_UA):
            assert secret not in page, "%r appears on the page" % secret

        ActionChains(drv).send_keys(Keys.TAB).perform()
        focused = drv.execute_script("var e = document.activeElement; return e.tagName + ' ' + e.textContent")
        assert focused.startswith("A "), "Tab does not reach the section links: %r" % focused

        drv.set_window_size(390, 844)  # a phone
        WebDriverWait(drv, 5).until(lambda d: d.execute_script("return window.innerWidth") <= 400)
        overflow = drv.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, "the page scrolls sideways on a phone by %dpx" % overflow

        assert not drv.find_element(By.ID, "banner").is_displayed()
        h.ferry_stop_clean(f)
        WebDriverWait(drv, 6, poll_frequency=0.1).until(
            lambda d: d.find_element(By.ID, "banner").is_displayed(), "no banner once ferry is gone")
        assert "Lost the connection" in text("#banner"), text("#banner")
    finally:
        stop.set()
        drv.quit()


if __name__ == "__main__":
    harness.main(globals())
