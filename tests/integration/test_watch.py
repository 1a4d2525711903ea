#!/usr/bin/env python3
"""[global] watch_config = on: the config file changing reloads it, with the
effects of SIGHUP, whether it is replaced by a rename (what editors and
config tools do), swapped through a Kubernetes ConfigMap's `..data` symlink,
or written in place; a bad edit keeps the old config; changes within a
second are one reload."""
import os
import shutil
import time

from harness import free_port, http_config, http_upstream
import harness
from opslib import get_once, metric, scrape, server_of, wait_for


def _text(lport, aport, app):
    return http_config([("web", ("tcp", "127.0.0.1", lport), {"upstream": app})],
                       [("a", [APPS["a"]], {}), ("b", [APPS["b"]], {})],
                       global_opts={"admin": "127.0.0.1:%d" % aport, "watch_config": "on"})


APPS = {}


def _start(h, path, write):
    """ferry -c PATH with watch_config = on; WRITE(text) puts a config at
    PATH the way the test wants. Returns (ferry, render(app))."""
    APPS["a"], APPS["b"] = http_upstream(h, "a"), http_upstream(h, "b")
    lport, aport = free_port(), free_port()
    write(_text(lport, aport, "a"))
    f = h.start_ferry(lambda: ("", [("tcp", "127.0.0.1", lport), ("tcp", "127.0.0.1", aport)]),
                      args=("-c", path))
    f.admin = ("tcp", "127.0.0.1", aport)
    assert server_of(get_once(f.addr)) == "a"
    return f, lambda app: _text(lport, aport, app)


def _reloads(f, result="ok"):
    return metric(scrape(f), "ferry_config_reloads_total", None, result=result)


def _wait_reload(f, before, result="ok", what="a reload"):
    wait_for(lambda: _reloads(f, result) >= before + 1, 5, what)
    assert _reloads(f, result) == before + 1, "more than one reload: %r" % _reloads(f, result)


def _switch_twice(h, path, write, how):
    """Starts ferry on PATH, then WRITEs configs whose default upstream is b,
    then a: each is one reload, and the new upstream serves."""
    f, render = _start(h, path, write)
    for app in ("b", "a"):
        before = _reloads(f)
        write(render(app))
        _wait_reload(f, before, what="reload after %s to upstream %s" % (how, app))
        wait_for(lambda: server_of(get_once(f.addr)) == app, 3, "served by %s" % app)


def test_watch_rename(h):
    """A new file renamed over the config (twice: the second proves the
    watch survived the inode change) reloads it."""
    path = h.path("ferry.ini")

    def write(text):
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.rename(tmp, path)
    _switch_twice(h, path, write, "a rename")


def test_watch_symlink_swap(h):
    """The ConfigMap layout: DIR/ferry.ini -> ..data/ferry.ini, ..data ->
    ..TIMESTAMP; the kubelet writes a new ..TIMESTAMP, points ..data_tmp at
    it, renames ..data_tmp over ..data and removes the old one. Each swap
    reloads (twice)."""
    d = h.path("configmap")
    os.mkdir(d)
    gen = [0]

    def write(text):
        gen[0] += 1
        ts = "..2026_%02d" % gen[0]
        os.mkdir(os.path.join(d, ts))
        with open(os.path.join(d, ts, "ferry.ini"), "w") as fh:
            fh.write(text)
        old = os.path.realpath(os.path.join(d, "..data")) if gen[0] > 1 else None
        os.symlink(ts, os.path.join(d, "..data_tmp"))
        os.rename(os.path.join(d, "..data_tmp"), os.path.join(d, "..data"))
        if old:
            shutil.rmtree(old)
        if gen[0] == 1:
            os.symlink("..data/ferry.ini", os.path.join(d, "ferry.ini"))
    _switch_twice(h, os.path.join(d, "ferry.ini"), write, "a ..data swap")


def test_watch_bad_edit(h):
    """Written in place: an invalid file is a failed reload and the old
    config keeps serving; three quick writes are one reload."""
    path = h.path("ferry.ini")

    def write(text):
        with open(path, "w") as fh:
            fh.write(text)
    f, render = _start(h, path, write)
    before_err, before_ok = _reloads(f, "error"), _reloads(f)
    write(render("b").replace("[upstream b]", "[upstream b]\nnot_a_key = 1"))
    _wait_reload(f, before_err, "error", "a failed reload after a bad edit")
    assert _reloads(f) == before_ok
    assert server_of(get_once(f.addr)) == "a", "a bad edit changed what serves"
    for app in ("a", "b", "b"):  # three writes within a few ms
        write(render(app) + "# %s\n" % time.monotonic())
    _wait_reload(f, before_ok, what="one reload after three quick writes")
    assert server_of(get_once(f.addr)) == "b"
    time.sleep(1.5)  # proving a negative: no second reload for the same change
    assert _reloads(f) == before_ok + 1, "quick writes reloaded %d times" % (_reloads(f) - before_ok)


harness.main(globals())
