#!/usr/bin/env python3
"""The request-smuggling corpus (tests/data/requests/*.http, MANIFEST) sent
through ferry to a recording upstream.

MANIFEST lines: `FILE VERDICT [body]`. VERDICT `ok`: every request in the
file gets a 2xx and reaches the upstream. A status: the responses are some
2xx (for valid requests pipelined before the bad one) then that status, and
the upstream received exactly the complete requests that were answered and
not one byte more. Each file goes in one write, so ferry holds all of it
when it would send the head: even a refusal found in the body (`body` in
MANIFEST: chunk framing, trailers) must leave the upstream untouched. A
`body` case is then sent again split after its first head, once the upstream
has that head: the fault now arrives in a body that is already streaming, and
the upstream connection must be aborted (partial bytes are allowed, a
complete request and a kept-open upstream connection are not)."""
import os
import socket
import threading
import time

import harness
from harness import HttpClient, simple_http

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "requests")
SLOW_CLOSE = []
FIXED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def frame(buf):
    """Lenient framing of well-formed HTTP/1.1 requests in buf: returns the
    length of the first complete request, or 0 when it is not complete (or
    not parseable)."""
    i = 0
    while buf.startswith(b"\r\n", i):
        i += 2
    end = buf.find(b"\r\n\r\n", i)
    if end < 0:
        return 0
    lines = bytes(buf[i:end]).split(b"\r\n")
    cl = None
    chunked = False
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        v = v.strip(b" \t").lower()
        if k == b"content-length":
            try:
                cl = int(v)
            except ValueError:
                return 0
        elif k == b"transfer-encoding" and v.endswith(b"chunked"):
            chunked = True
    p = end + 4
    if chunked:
        while True:
            e = buf.find(b"\r\n", p)
            if e < 0:
                return 0
            try:
                size = int(bytes(buf[p:e]).split(b";")[0], 16)
            except ValueError:
                return 0
            p = e + 2
            if size == 0:
                while True:  # trailers, then the empty line
                    e = buf.find(b"\r\n", p)
                    if e < 0:
                        return 0
                    empty = e == p
                    p = e + 2
                    if empty:
                        return p
            if len(buf) < p + size + 2:
                return 0
            p += size + 2
    if cl:
        return p + cl if len(buf) >= p + cl else 0
    return p


def count_requests(data):
    n = 0
    buf = bytearray(data)
    while True:
        k = frame(buf)
        if not k:
            return n, len(buf)
        del buf[:k]
        n += 1


class Recorder:
    """An upstream that records every byte and answers every complete request
    with a fixed 200."""

    def __init__(self, h):
        self.lock = threading.Lock()
        self.total = 0      # bytes received
        self.complete = 0   # complete requests answered
        self.conns = []     # [{"buf": bytearray, "closed": bool}]
        self.addr = h.thread_server(self.handle)

    def handle(self, conn):
        st = {"buf": bytearray(), "closed": False}
        with self.lock:
            self.conns.append(st)
        try:
            conn.settimeout(60)
            while True:
                b = conn.recv(65536)
                if not b:
                    break
                with self.lock:
                    self.total += len(b)
                    st["buf"] += b
                    answers = 0
                    while True:
                        k = frame(st["buf"])
                        if not k:
                            break
                        del st["buf"][:k]
                        self.complete += 1
                        answers += 1
                if answers:
                    conn.sendall(FIXED * answers)
        except OSError:
            pass
        finally:
            with self.lock:
                st["closed"] = True
            conn.close()

    def snapshot(self):
        with self.lock:
            return self.total, self.complete

    def open_partial(self):
        """Connections that hold part of a request and are still open."""
        with self.lock:
            return [len(c["buf"]) for c in self.conns if c["buf"] and not c["closed"]]

    def drop_partials(self):
        with self.lock:
            for c in self.conns:
                c["buf"].clear()


def read_manifest():
    path = os.path.join(CORPUS, "MANIFEST")
    if not os.path.exists(path):
        raise harness.Skip("no corpus at %s yet" % CORPUS)
    cases = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            name, verdict = parts[0], parts[1]
            body = "body" in parts[2:] or verdict.endswith("-body")
            verdict = verdict.split("-")[0]
            cases.append((name, verdict, body))
    return cases


def send_split(rec, s, data, before_total):
    """Sends DATA up to the end of its first head, waits (at most 2 s) until
    the upstream has bytes of it, then sends the rest."""
    cut = data.find(b"\r\n\r\n") + 4
    s.sendall(data[:cut])
    deadline = time.monotonic() + 2
    while rec.snapshot()[0] == before_total and time.monotonic() < deadline:
        time.sleep(0.01)
    s.sendall(data[cut:])


def run_case(rec, f, name, verdict, body_fault, split=False):
    """Returns None when the case passes, else a one-line description."""
    with open(os.path.join(CORPUS, name), "rb") as fh:
        data = fh.read()
    before_total, before_complete = rec.snapshot()
    s = f.connect()
    c = HttpClient(s)
    statuses = []
    closed = False
    body_fault = body_fault and split
    try:
        try:
            if split:
                send_split(rec, s, data, before_total)
            else:
                s.sendall(data)
        except OSError:
            pass
        want_n = count_requests(data)[0] if verdict == "ok" else None
        while True:
            if want_n is not None and len(statuses) >= want_n:
                break
            try:
                r = c.read_response(timeout=2.0)
            except AssertionError as e:
                if c.eof:
                    if not statuses:
                        return "connection closed without a response"
                    closed = True
                    break
                if not statuses:
                    return "no response: %s" % str(e)[:120]
                break
            statuses.append(r.status)
            if not 200 <= r.status < 300:
                if "close" not in (r.header("connection") or "").lower():
                    return "%d without Connection: close" % r.status
                # ferry closes (at the latest when its 2s linger ends); a
                # close that is not prompt is noted, not failed, to keep the
                # run short
                try:
                    c.wait_closed(0.5)
                except AssertionError as e:
                    if "still open" not in str(e):
                        return "%d, then: %s" % (r.status, str(e)[:80])
                    SLOW_CLOSE.append(name)
                break
        s.close()  # ferry lingers for our EOF; the upstream side may wait for that
        time.sleep(0.03 if verdict != "ok" else 0)
        total, complete = rec.snapshot()
        got_bytes, got_complete = total - before_total, complete - before_complete
        n_ok = sum(1 for st in statuses if 200 <= st < 300)
        if verdict == "ok":
            if not statuses or n_ok != len(statuses):
                return "statuses %r, want all 2xx" % statuses
            if want_n and len(statuses) != want_n:
                return "%d responses for %d requests" % (len(statuses), want_n)
            if got_complete != n_ok:
                return "%d responses but the upstream got %d complete requests" % (n_ok, got_complete)
            return None
        want = int(verdict)
        if not statuses or statuses[-1] != want or n_ok != len(statuses) - 1:
            return "statuses %r, want %d (after any 2xx)" % (statuses, want)
        if got_complete != n_ok:
            return "the upstream received %d complete requests, %d were answered before the %d" % (
                got_complete, n_ok, want)
        if body_fault:
            deadline = time.monotonic() + 2
            while rec.open_partial() and time.monotonic() < deadline:
                time.sleep(0.02)
            left = rec.open_partial()
            rec.drop_partials()
            if left:
                return "the upstream connection holding %r partial bytes was not aborted" % left
            return None
        # nothing but the complete, answered requests reached the upstream
        if n_ok == 0 and got_bytes:
            rec.drop_partials()
            return "the upstream received %d bytes" % got_bytes
        partial = rec.open_partial()
        if partial:
            rec.drop_partials()
            return "the upstream received a partial request (%r bytes)" % partial
        return None
    finally:
        s.close()
        rec.drop_partials()  # a failed case must not blame the next one


def test_corpus(h):
    cases = read_manifest()
    rec = Recorder(h)
    f = simple_http(h, [rec.addr], upstream_opts={"hold": "0"})
    failures = []
    t0 = time.monotonic()
    for name, verdict, body in cases:
        if not f.alive():
            failures.append("%s: ferry died" % name)
            break
        why = run_case(rec, f, name, verdict, body)
        if why:
            failures.append("%-45s expected %-4s %s" % (name, verdict + (" body" if body else ""), why))
        if body and not why and f.alive():
            why = run_case(rec, f, name, verdict, body, split=True)
            if why:
                failures.append("%-45s expected %-4s (split) %s" % (name, verdict + " body", why))
    print("%d cases in %.1fs, %d failed" % (len(cases), time.monotonic() - t0, len(failures)))
    for line in failures:
        print("  " + line)
    if SLOW_CLOSE:
        print("note: after the refusal ferry kept the connection open for more than 0.5s in %d cases: %s"
              % (len(SLOW_CLOSE), " ".join(SLOW_CLOSE)))
    assert not failures, "%d of %d corpus cases failed (listed above)" % (len(failures), len(cases))


def test_framer(h):
    """Self-check of the test's own framer on the corpus's ok cases."""
    for name, verdict, body in read_manifest():
        if verdict != "ok":
            continue
        with open(os.path.join(CORPUS, name), "rb") as fh:
            data = fh.read()
        n, rest = count_requests(data)
        assert n >= 1 and rest == 0, "framer: %s: %d requests, %d bytes left" % (name, n, rest)


if __name__ == "__main__":
    harness.main(globals())
