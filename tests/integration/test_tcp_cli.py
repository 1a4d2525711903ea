#!/usr/bin/env python3
"""Command line and start-up failures: exit codes 0/1/2 and their messages."""
import socket
import time

import harness
from harness import free_port

GOOD = """\
[global]
workers = 1

[listener web]
bind = 127.0.0.1:%d
mode = tcp
upstream = app

[upstream app]
server = 127.0.0.1:%d
"""

# line 6 has a bad duration, line 9 an unknown key, line 11 an unknown upstream
BAD = """\
[global]
workers = 1

[listener web]
bind = 127.0.0.1:%d
idle_timeout = banana
mode = tcp
upstream = app
no_such_key = 1

[listener other]
bind = 127.0.0.1:%d
mode = tcp
upstream = nowhere

[upstream app]
server = 127.0.0.1:%d
"""


def test_config_error(h):
    """A bad config: exit 1 and FILE:LINE for each bad line, all in one run,
    both when starting and with -t."""
    path = h.write("bad.ini", BAD % (free_port(), free_port(), free_port()))
    want = ["%s:%d:" % (path, n) for n in (6, 9)]
    for args in (["-c", path], ["-t", "-c", path]):
        rc, out, err = h.run_ferry(args)
        print("ferry %s -> %d\n%s" % (" ".join(args), rc, err))
        assert rc == 1, "ferry %s exited %d, want 1; stderr:\n%s" % (" ".join(args), rc, err)
        for w in want:
            assert w in err, "ferry %s: stderr lacks %r:\n%s" % (" ".join(args), w, err)
        # the reference to an undefined upstream is reported with its line too
        assert any(("%s:%d:" % (path, n)) in err for n in (11, 12, 13, 14)), \
            "no FILE:LINE for `upstream = nowhere`:\n%s" % err
        assert "ok" not in out.split(), out
    rc, out, err = h.run_ferry(["-c", h.path("missing.ini")])
    assert rc == 1, "missing config file: exit %d, want 1; stderr:\n%s" % (rc, err)
    assert "missing.ini" in err, "the error does not name the file:\n%s" % err


def test_check_ok(h):
    """ferry -t on a good config prints `FILE: ok`, exits 0, starts nothing."""
    port = free_port()
    path = h.write("good.ini", GOOD % (port, free_port()))
    t0 = time.monotonic()
    rc, out, err = h.run_ferry(["-t", "-c", path])
    assert rc == 0, "ferry -t exited %d on a good config; stderr:\n%s" % (rc, err)
    assert "%s: ok" % path in out.splitlines(), "stdout lacks the line %r: %r (stderr %r)" % (
        "%s: ok" % path, out, err)
    rc, out, err = h.run_ferry(["--check", "--config", path])
    assert rc == 0 and ("%s: ok" % path) in out, "long options: rc %d out %r err %r" % (rc, out, err)
    assert time.monotonic() - t0 < 5


def _check_fails(h, name, text, want):
    """ferry -t on text: exit 1, nothing started, and want (formatted with
    the file's path) as one line of stderr."""
    path = h.write(name, text)
    rc, out, err = h.run_ferry(["-t", "-c", path])
    print("ferry -t -> %d\n%s" % (rc, err))
    assert rc == 1, "ferry -t exited %d, want 1; stdout %r stderr:\n%s" % (rc, out, err)
    assert want % path in err.splitlines(), "stderr lacks the line %r:\n%s" % (want % path, err)
    assert "ok" not in out.split(), out


def test_check_duration_cap(h):
    """A duration near 2^64 ms used to pass -t and then wrap when added to
    the clock (a partial head got 408 after 50 ms): more than 10 years is
    a FILE:LINE error."""
    text = GOOD % (free_port(), free_port())
    text = text.replace("mode = tcp\n", "mode = http\nheader_timeout = 18446744073709551615ms\n")
    _check_fails(h, "huge.ini", text,
                 "%s:7: header_timeout: must be at most 3650d (10 years), got "
                 "'18446744073709551615ms'")


def test_check_no_listener(h):
    """A config without a listener used to pass -t and start, serving
    nothing: it is an error naming the file, at -t and at start."""
    text = "[global]\nworkers = 1\n\n[upstream app]\nserver = 127.0.0.1:%d\n" % free_port()
    want = "%s: no [listener NAME] section: nothing to serve"
    _check_fails(h, "empty.ini", text, want)
    _check_fails(h, "blank.ini", "; nothing yet\n", want)
    path = h.path("empty.ini")
    rc, out, err = h.run_ferry(["-c", path])
    assert rc == 1 and want % path in err.splitlines(), "start: rc %d, stderr:\n%s" % (rc, err)


def test_check_access_log(h):
    """An access_log file that cannot be opened (its directory is missing)
    fails -t and a start with FILE:LINE, as nginx -t does; one that can be
    opened passes."""
    missing = h.path("no-such-dir/access.log")
    text = GOOD % (free_port(), free_port())
    bad = text.replace("workers = 1\n", "workers = 1\naccess_log = %s\n" % missing)
    want = "%s:3: access_log: cannot open '" + missing + "': No such file or directory"
    _check_fails(h, "log.ini", bad, want)
    path = h.path("log.ini")
    rc, out, err = h.run_ferry(["-c", path])
    assert rc == 1 and want % path in err.splitlines(), "start: rc %d, stderr:\n%s" % (rc, err)
    good = h.write("log-ok.ini", text.replace("workers = 1\n", "workers = 1\naccess_log = %s\n"
                                               % h.path("access.log")))
    rc, out, err = h.run_ferry(["-t", "-c", good])
    assert rc == 0 and "%s: ok" % good in out.splitlines(), "rc %d out %r err %r" % (rc, out, err)


def test_bad_usage(h):
    """Bad usage exits 2; --version and -h exit 0."""
    for args in (["--no-such-flag"], ["-Z"], ["-c"]):
        rc, out, err = h.run_ferry(args)
        assert rc == 2, "ferry %s exited %d, want 2 (bad usage); stderr:\n%s" % (" ".join(args), rc, err)
        assert err.strip(), "ferry %s: no message on stderr" % " ".join(args)
    for args in (["--version"], ["-h"]):
        rc, out, err = h.run_ferry(args)
        assert rc == 0, "ferry %s exited %d; stderr:\n%s" % (" ".join(args), rc, err)
        assert out.strip(), "ferry %s printed nothing on stdout" % " ".join(args)


def test_port_taken(h):
    """The listener's port is already in use: exit 1 with a message naming
    the listener and its address."""
    hog = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    h.track(hog)
    hog.bind(("127.0.0.1", 0))
    hog.listen(8)
    port = hog.getsockname()[1]
    path = h.write("taken.ini", GOOD % (port, free_port()))
    rc, out, err = h.run_ferry(["-c", path], timeout=15)
    print("ferry -> %d, stderr:\n%s" % (rc, err))
    assert rc == 1, "ferry exited %d on a taken port, want 1; stderr:\n%s" % (rc, err)
    lines = [l for l in err.splitlines() if "listener web" in l and ("127.0.0.1:%d" % port) in l]
    assert lines, "no stderr line names `listener web` and 127.0.0.1:%d:\n%s" % (port, err)
    assert "in use" in lines[0].lower(), "the message does not say why: %r" % lines[0]


if __name__ == "__main__":
    harness.main(globals())
