#!/usr/bin/env python3
"""Writes the raw-request corpus: one NNN-name.http file per case, and MANIFEST.

Each case is the exact bytes a client sends on one connection (sometimes more
than one pipelined request) and the verdict ferry must reach: `ok` when every
request in it is accepted and framed to its last byte, else the status of the
first refusal and where it comes from: `head` (http_parse_head, before
anything is forwarded) or `body` (http_parse_body: chunk framing, trailers).
Verdicts follow SPEC.md, "HTTP mode": 400 for anything malformed or ambiguous,
505 for an unsupported HTTP version, 431 for too many header fields. Where
SPEC allows 400 or 505, the verdict is what src/http.c answers (OPEN below).
tests/unit/test_http.c runs every file and checks MANIFEST.

Run from anywhere: python3 make_corpus.py   (rewrites every .http file and
MANIFEST next to this script, and removes .http files no longer listed).
Bytes are spelled out with explicit \\r \\n \\t \\x.. escapes so that every
CR, LF and NUL in a case is reviewable here rather than hidden in a file.
"""
import os
import sys

CRLF = b"\r\n"
HOST = b"Host: a.example"


def head(*lines, start=b"GET / HTTP/1.1"):
    """A request head: START, then LINES, each ended by CRLF, then the blank line."""
    return CRLF.join((start,) + lines) + CRLF + CRLF


def post(*lines, body=b"", target=b"/"):
    return head(HOST, *lines, start=b"POST " + target + b" HTTP/1.1") + body


def chunked(body, *lines):
    """A chunked POST; BODY is the raw chunk framing, exactly as given."""
    return post(b"Transfer-Encoding: chunked", *lines, body=body)


GOOD_CHUNKS = b"5\r\nhello\r\n0\r\n\r\n"
# A refusal of the body: the head was fine and went upstream; the fault is
# found in the chunk framing or the trailers (SPEC: the upstream connection
# is then aborted). Other refusals must come from the head, before anything
# is forwarded.
BODY400 = "400 body"

# (name, bytes, verdict). Numbers are assigned in this order.
CASES = [
    # --- baseline ----------------------------------------------------------
    ("get-simple", head(HOST), "ok"),
    ("post-content-length", post(b"Content-Length: 5", body=b"hello"), "ok"),
    ("post-chunked", chunked(GOOD_CHUNKS), "ok"),
    ("post-cl-zero", post(b"Content-Length: 0"), "ok"),
    # --- CL.TE / TE.CL -----------------------------------------------------
    ("cl-te", post(b"Content-Length: 6", b"Transfer-Encoding: chunked",
                   body=b"0\r\n\r\nX"), "400"),
    ("te-cl", post(b"Transfer-Encoding: chunked", b"Content-Length: 3",
                   body=b"8\r\nSMUGGLED\r\n0\r\n\r\n"), "400"),
    ("cl-te-smuggle-get", post(b"Content-Length: 44", b"Transfer-Encoding: chunked",
                               body=b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a.example\r\n\r\n"), "400"),
    ("cl-te-obfuscated", post(b"Content-Length: 4", b"Transfer-Encoding : chunked",
                              body=b"0\r\n\r\n"), "400"),
    # --- TE.TE obfuscations --------------------------------------------------
    ("te-xchunked", post(b"Transfer-Encoding: xchunked", body=GOOD_CHUNKS), "400"),
    ("te-chunked-identity", post(b"Transfer-Encoding: chunked, identity", body=GOOD_CHUNKS), "400"),
    ("te-identity-chunked", post(b"Transfer-Encoding: identity, chunked", body=GOOD_CHUNKS), "400"),
    ("te-chunked-chunked", post(b"Transfer-Encoding: chunked, chunked", body=GOOD_CHUNKS), "400"),
    ("te-gzip-chunked", post(b"Transfer-Encoding: gzip, chunked", body=GOOD_CHUNKS), "400"),
    ("te-two-headers", post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked",
                            body=GOOD_CHUNKS), "400"),
    ("te-two-headers-identity", post(b"Transfer-Encoding: identity", b"Transfer-Encoding: chunked",
                                     body=GOOD_CHUNKS), "400"),
    ("te-space-before-colon", post(b"Transfer-Encoding : chunked", body=GOOD_CHUNKS), "400"),
    ("te-tab-before-colon", post(b"Transfer-Encoding\t: chunked", body=GOOD_CHUNKS), "400"),
    ("te-vtab-before-colon", post(b"Transfer-Encoding\x0b: chunked", body=GOOD_CHUNKS), "400"),
    ("te-quoted", post(b'Transfer-encoding: "chunked"', body=GOOD_CHUNKS), "400"),
    ("te-line-space-prefixed", post(b" Transfer-Encoding: chunked", body=GOOD_CHUNKS), "400"),
    ("te-line-tab-prefixed", post(b"X-A: b", b"\tTransfer-Encoding: chunked", body=GOOD_CHUNKS), "400"),
    ("te-value-folded", post(b"Transfer-Encoding:", b" chunked", body=GOOD_CHUNKS), "400"),
    ("te-after-bare-lf", post(b"X-A: b\nTransfer-Encoding: chunked", body=GOOD_CHUNKS), "400"),
    ("te-empty", post(b"Transfer-Encoding: ", body=b""), "400"),
    # Optional whitespace around a value is not part of it (RFC 9112 5):
    # "  chunked" and "\tchunked" are exactly `chunked`.
    ("te-value-extra-space", post(b"Transfer-Encoding:   chunked", body=GOOD_CHUNKS), "ok"),
    ("te-value-tab", post(b"Transfer-Encoding:\tchunked", body=GOOD_CHUNKS), "ok"),
    # Trailing HTAB is OWS too, but llhttp 8.1 strict does not take it as
    # chunked: ferry must then refuse the head, not accept it as chunked and
    # fail on the body after the head went upstream.
    ("te-value-trailing-tab", post(b"Transfer-Encoding: chunked\t", body=GOOD_CHUNKS), "400"),
    ("te-value-trailing-space", post(b"Transfer-Encoding: chunked ", body=GOOD_CHUNKS), "ok"),
    ("te-chunked-trailing-comma", post(b"Transfer-Encoding: chunked,", body=GOOD_CHUNKS), "400"),
    ("te-mixed-case", post(b"transfer-ENCODING: ChUnKeD", body=GOOD_CHUNKS), "ok"),
    ("te-http10", head(HOST, b"Transfer-Encoding: chunked", start=b"POST / HTTP/1.0")
     + GOOD_CHUNKS, "400"),
    # --- Content-Length ----------------------------------------------------
    ("cl-dup-same", post(b"Content-Length: 5", b"Content-Length: 5", body=b"hello"), "400"),
    ("cl-dup-different", post(b"Content-Length: 5", b"Content-Length: 6", body=b"hello!"), "400"),
    ("cl-plus", post(b"Content-Length: +5", body=b"hello"), "400"),
    ("cl-minus", post(b"Content-Length: -5", body=b"hello"), "400"),
    ("cl-comma-list", post(b"Content-Length: 5, 5", body=b"hello"), "400"),
    ("cl-comma-list-nospace", post(b"Content-Length: 5,5", body=b"hello"), "400"),
    ("cl-empty", post(b"Content-Length: "), "400"),
    ("cl-hex", post(b"Content-Length: 0x5", body=b"hello"), "400"),
    ("cl-space-inside", post(b"Content-Length: 1 0", body=b"0123456789"), "400"),
    ("cl-2pow63", post(b"Content-Length: 9223372036854775808", body=b"x"), "400"),
    ("cl-2pow64", post(b"Content-Length: 18446744073709551616", body=b"x"), "400"),
    ("cl-20-nines", post(b"Content-Length: 99999999999999999999", body=b"x"), "400"),
    ("cl-leading-ows", post(b"Content-Length:    5", body=b"hello"), "ok"),
    ("cl-leading-zeros", post(b"Content-Length: 005", body=b"hello"), "ok"),
    # A plain decimal number below 2^63, written with 20 digits.
    ("cl-leading-zeros-20-digits", post(b"Content-Length: 00000000000000000005", body=b"hello"), "ok"),
    # --- chunk framing -----------------------------------------------------
    ("chunk-size-0x", chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), BODY400),
    ("chunk-size-minus", chunked(b"-5\r\nhello\r\n0\r\n\r\n"), BODY400),
    ("chunk-size-plus", chunked(b"+5\r\nhello\r\n0\r\n\r\n"), BODY400),
    ("chunk-size-underscore", chunked(b"5_0\r\n" + b"x" * 0x50 + b"\r\n0\r\n\r\n"), BODY400),
    ("chunk-size-leading-space", chunked(b" 5\r\nhello\r\n0\r\n\r\n"), BODY400),
    ("chunk-size-trailing-space", chunked(b"5 \r\nhello\r\n0\r\n\r\n"), BODY400),
    ("chunk-size-trailing-tab", chunked(b"5\t\r\nhello\r\n0\r\n\r\n"), BODY400),
    ("chunk-size-empty", chunked(b"\r\nhello\r\n0\r\n\r\n"), BODY400),
    ("chunk-size-17-hex-digits", chunked(b"10000000000000005\r\nhello\r\n0\r\n\r\n"), BODY400),
    ("chunk-size-not-hex", chunked(b"5g\r\nhello\r\n0\r\n\r\n"), BODY400),
    ("chunk-data-longer", chunked(b"5\r\nhelloXX\r\n0\r\n\r\n"), BODY400),
    ("chunk-data-shorter", chunked(b"5\r\nhel\r\n0\r\n\r\n"), BODY400),
    ("chunk-missing-crlf", chunked(b"5\r\nhello0\r\n\r\n"), BODY400),
    ("chunk-data-then-lf", chunked(b"5\r\nhello\n0\r\n\r\n"), BODY400),
    ("chunk-data-then-cr", chunked(b"5\r\nhello\r0\r\n\r\n"), BODY400),
    ("chunk-size-bare-lf", chunked(b"5\nhello\r\n0\r\n\r\n"), BODY400),
    ("chunk-size-bare-cr", chunked(b"5\rhello\r\n0\r\n\r\n"), BODY400),
    ("chunk-last-bare-lf", chunked(b"5\r\nhello\r\n0\n\r\n"), BODY400),
    ("chunk-end-bare-lf", chunked(b"5\r\nhello\r\n0\r\n\n"), BODY400),
    ("chunk-ext-empty-name", chunked(b"5;\r\nhello\r\n0\r\n\r\n"), BODY400),
    ("chunk-ext-no-name", chunked(b"5;=v\r\nhello\r\n0\r\n\r\n"), BODY400),
    ("chunk-ext-bad-byte", chunked(b"5;a\x01b\r\nhello\r\n0\r\n\r\n"), BODY400),
    ("chunk-ext-unterminated-quote", chunked(b'5;a="b\r\nhello\r\n0\r\n\r\n'), BODY400),
    ("chunk-ext-bare-lf", chunked(b"5;a=b\nhello\r\n0\r\n\r\n"), BODY400),
    ("chunk-ext-well-formed", chunked(b"5;name=value\r\nhello\r\n0\r\n\r\n"), "ok"),
    ("chunk-ext-empty-value", chunked(b"5;a=\r\nhello\r\n0\r\n\r\n"), BODY400),
    ("chunk-ext-empty-between", chunked(b"5;a;;b\r\nhello\r\n0\r\n\r\n"), BODY400),
    ("chunk-ext-space-in-name", chunked(b"5;a b\r\nhello\r\n0\r\n\r\n"), BODY400),
    ("chunk-ext-quoted", chunked(b'5;b="x y"\r\nhello\r\n0;last\r\n\r\n'), "ok"),
    ("chunk-ext-no-value", chunked(b"5;c\r\nhello\r\n0;c;d\r\n\r\n"), "ok"),
    # Valid per RFC 9112, but llhttp 8.1 (strict) refuses a quoted extension
    # value followed by more, and quoted-pairs; ferry cannot be laxer than its
    # parser, so these get 400 (documented in the README).
    ("chunk-ext-valued-then-more", chunked(b'5;a=1;b="x";c\r\nhello\r\n0\r\n\r\n'), "400 body"),
    ("chunk-ext-quoted-pair", chunked(b'5;a="q\\"q"\r\nhello\r\n0\r\n\r\n'), "400 body"),
    ("chunk-size-leading-zeros", chunked(b"0005\r\nhello\r\n000\r\n\r\n"), "ok"),
    ("chunk-size-many-leading-zeros", chunked(b"000000000000000000005\r\nhello\r\n0\r\n\r\n"), "ok"),
    ("chunk-size-upper-hex", chunked(b"A\r\n0123456789\r\n0\r\n\r\n"), "ok"),
    # --- trailers ----------------------------------------------------------
    ("trailers", chunked(b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n"), "ok"),
    ("trailer-obs-fold", chunked(b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\n def\r\n\r\n"), BODY400),
    ("trailer-obs-fold-tab", chunked(b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\tdef\r\n\r\n"), BODY400),
    ("trailer-bare-lf", chunked(b"5\r\nhello\r\n0\r\nX-Checksum: abc\n\r\n"), BODY400),
    ("trailer-space-before-colon", chunked(b"5\r\nhello\r\n0\r\nX-Checksum : abc\r\n\r\n"), BODY400),
    ("trailer-nul", chunked(b"5\r\nhello\r\n0\r\nX-Checksum: a\x00c\r\n\r\n"), BODY400),
    ("trailer-end-bare-lf", chunked(b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\n"), BODY400),
    ("trailer-empty-name", chunked(b"5\r\nhello\r\n0\r\n: abc\r\n\r\n"), BODY400),
    # --- line endings and bytes in the head ----------------------------------
    ("bare-lf-request-line", b"GET / HTTP/1.1\nHost: a.example\r\n\r\n", "400"),
    ("bare-lf-header", b"GET / HTTP/1.1\r\nHost: a.example\n\r\n", "400"),
    ("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: a.example\n\n", "400"),
    ("bare-lf-blank-line", b"GET / HTTP/1.1\r\nHost: a.example\r\n\n", "400"),
    ("bare-cr-in-value", head(HOST, b"X-A: a\rb"), "400"),
    # Refused; llhttp reports "Expected CRLF after version" as a version
    # error, so ferry answers 505 (400 would name the fault better).
    ("bare-cr-request-line", b"GET / HTTP/1.1\rHost: a.example\r\n\r\n", "505"),
    ("obs-fold-space", head(HOST, b"X-A: a", b" b"), "400"),
    ("obs-fold-tab", head(HOST, b"X-A: a", b"\tb"), "400"),
    ("nul-in-value", head(HOST, b"X-A: a\x00b"), "400"),
    ("nul-in-name", head(HOST, b"X-\x00A: b"), "400"),
    ("ctl-in-value", head(HOST, b"X-A: a\x01b"), "400"),
    ("del-in-value", head(HOST, b"X-A: a\x7fb"), "400"),
    ("space-before-colon", head(HOST, b"X-A : b"), "400"),
    ("space-in-name", head(HOST, b"X A: b"), "400"),
    ("empty-header-name", head(HOST, b": b"), "400"),
    ("header-no-colon", head(HOST, b"X-A b"), "400"),
    ("tabs-and-obs-text-in-value", head(HOST, b"X-A: a\tb \x80\xff\xe9t\xc3\xa9"), "ok"),
    ("empty-value", head(HOST, b"X-A:", b"X-B: "), "ok"),
    ("leading-empty-lines", b"\r\n\r\n" + head(HOST), "ok"),
    ("leading-bare-lf", b"\n" + head(HOST), "400"),
    ("leading-bare-cr", b"\r" + head(HOST), "400"),
    # --- Host --------------------------------------------------------------
    ("host-two", head(HOST, b"Host: b.example"), "400"),
    ("host-two-same", head(HOST, HOST), "400"),
    ("host-missing-http11", head(b"X-A: b"), "400"),
    ("host-userinfo", head(b"Host: user@a.example"), "400"),
    ("host-space", head(b"Host: a.example b.example"), "400"),
    ("host-comma", head(b"Host: a.example,b.example"), "400"),
    ("host-empty", head(b"Host: "), "400"),
    ("host-bad-port", head(b"Host: a.example:http"), "400"),
    ("host-slash", head(b"Host: a.example/x"), "400"),
    ("host-with-port", head(b"Host: a.example:8080"), "ok"),
    ("host-ipv6", head(b"Host: [::1]:8080"), "ok"),
    ("http10-no-host", head(start=b"GET / HTTP/1.0"), "ok"),
    ("http10-keep-alive", head(b"Connection: keep-alive", start=b"GET / HTTP/1.0"), "ok"),
    # --- request target ------------------------------------------------------
    ("absolute-form-other-host", head(HOST, start=b"GET http://b.example/x HTTP/1.1"), "400"),
    ("absolute-form-matching-host", head(HOST, start=b"GET http://a.example/x?y=1 HTTP/1.1"), "ok"),
    ("absolute-form-port-matching", head(b"Host: a.example:8080",
                                         start=b"GET http://a.example:8080/ HTTP/1.1"), "ok"),
    # SPEC: absolute-form whose authority equals Host; it names no scheme.
    ("absolute-form-https", head(HOST, start=b"GET https://a.example/x HTTP/1.1"), "ok"),
    ("absolute-form-userinfo", head(HOST, start=b"GET http://u@a.example/ HTTP/1.1"), "400"),
    ("absolute-form-no-host-http10", head(start=b"GET http://a.example/ HTTP/1.0"), "400"),
    ("star-get", head(HOST, start=b"GET * HTTP/1.1"), "400"),
    ("options-star", head(HOST, start=b"OPTIONS * HTTP/1.1"), "ok"),
    ("hash-in-target", head(HOST, start=b"GET /a#frag HTTP/1.1"), "400"),
    ("ctl-in-target", head(HOST, start=b"GET /a\x01b HTTP/1.1"), "400"),
    ("del-in-target", head(HOST, start=b"GET /a\x7fb HTTP/1.1"), "400"),
    ("nul-in-target", head(HOST, start=b"GET /a\x00b HTTP/1.1"), "400"),
    ("obs-text-in-target", head(HOST, start=b"GET /caf\xc3\xa9 HTTP/1.1"), "400"),
    ("tab-in-target", head(HOST, start=b"GET /a\tb HTTP/1.1"), "400"),
    ("space-in-target", head(HOST, start=b"GET /a b HTTP/1.1"), "400"),
    ("relative-target", head(HOST, start=b"GET a/b HTTP/1.1"), "400"),
    ("authority-form-get", head(HOST, start=b"GET a.example:80 HTTP/1.1"), "400"),
    ("query-target", head(HOST, start=b"GET /search?q=a%20b&x=%2F HTTP/1.1"), "ok"),
    # --- request line ------------------------------------------------------
    ("double-space-after-method", head(HOST, start=b"GET  / HTTP/1.1"), "400"),
    ("double-space-before-version", head(HOST, start=b"GET /  HTTP/1.1"), "400"),
    ("leading-space-request-line", head(HOST, start=b" GET / HTTP/1.1"), "400"),
    ("tab-separator", head(HOST, start=b"GET\t/ HTTP/1.1"), "400"),
    # HTTP/0.9 style: no version at all. SPEC allows 400 or 505.
    ("http09-no-version", b"GET /\r\n\r\n", "VERSION_NONE"),
    ("http20", head(HOST, start=b"GET / HTTP/2.0"), "505"),
    ("http12", head(HOST, start=b"GET / HTTP/1.2"), "505"),
    ("http30", head(HOST, start=b"GET / HTTP/3.0"), "505"),
    ("http11-trailing-space", head(HOST, start=b"GET / HTTP/1.1 "), "VERSION_TRAILING_SPACE"),
    ("http-lowercase", head(HOST, start=b"GET / http/1.1"), "VERSION_LOWERCASE"),
    ("http-version-no-minor", head(HOST, start=b"GET / HTTP/1"), "VERSION_NO_MINOR"),
    ("connect", head(b"Host: a.example:443", start=b"CONNECT a.example:443 HTTP/1.1"), "400"),
    ("method-bad-char", head(HOST, start=b"G(T / HTTP/1.1"), "400"),
    ("method-ctl", head(HOST, start=b"GE\x01T / HTTP/1.1"), "400"),
    ("method-empty", head(HOST, start=b" / HTTP/1.1"), "400"),
    # --- other limits and valid requests ------------------------------------
    ("fields-100", head(HOST, *[b"X-F%d: v" % i for i in range(99)]), "ok"),
    ("fields-101", head(HOST, *[b"X-F%d: v" % i for i in range(100)]), "431"),
    ("expect-continue", post(b"Content-Length: 5", b"Expect: 100-continue", body=b"hello"), "ok"),
    ("websocket-upgrade", head(HOST, b"Connection: Upgrade", b"Upgrade: websocket",
                               b"Sec-WebSocket-Version: 13",
                               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="), "ok"),
    ("upgrade-h2c", head(HOST, b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c",
                         b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA"), "ok"),
    ("pipelined-two-gets", head(HOST) + head(HOST, start=b"GET /second HTTP/1.1"), "ok"),
    ("pipelined-post-then-get", post(b"Content-Length: 5", body=b"hello")
     + chunked(GOOD_CHUNKS) + head(HOST, start=b"GET /third HTTP/1.1"), "ok"),
    ("pipelined-empty-line-between", head(HOST) + b"\r\n" + head(HOST), "ok"),
    ("pipelined-second-bad", head(HOST) + head(HOST, HOST), "400"),
    ("pipelined-second-smuggled-by-cl",
     post(b"Content-Length: 5", body=b"hello") + post(b"Content-Length: 1", b"Content-Length: 2",
                                                      body=b"xx"), "400"),
]

# Cases whose SPEC verdict src/http.c (with llhttp 8.1 strict) did not reach
# when the corpus was written; listed in MANIFEST's header so that a failing
# run is easy to tell from a new regression. Remove a name once it passes.
KNOWN_FAILING = {}

# Verdicts SPEC leaves open (400 or 505): what src/http.c answers.
OPEN = {
    "VERSION_NONE": "505",
    "VERSION_TRAILING_SPACE": "505",
    "VERSION_LOWERCASE": "400",
    "VERSION_NO_MINOR": "505",
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    names = set()
    manifest = ["# FILE VERDICT [STAGE], written by make_corpus.py: VERDICT is ok, or the",
                "# status of the first refusal; STAGE says whether that refusal comes from",
                "# the head (nothing forwarded yet) or from the body (chunks, trailers)."]
    known = []
    for i, (name, data, verdict) in enumerate(CASES, 1):
        verdict = OPEN.get(verdict, verdict)
        if verdict.isdigit():
            verdict += " head"
        assert verdict == "ok" or verdict.split()[1] in ("head", "body"), (name, verdict)
        fname = "%03d-%s.http" % (i, name)
        assert fname not in names, fname
        names.add(fname)
        with open(os.path.join(here, fname), "wb") as f:
            f.write(data)
        manifest.append("%s %s" % (fname, verdict))
        if name in KNOWN_FAILING:
            known.append("#   %s: %s" % (fname, KNOWN_FAILING[name]))
    assert len(known) == len(KNOWN_FAILING), "KNOWN_FAILING names a missing case"
    if known:
        manifest[3:3] = ["# Known to fail against src/http.c when written (see make_corpus.py):"] + known
    for old in os.listdir(here):
        if old.endswith(".http") and old not in names:
            os.remove(os.path.join(here, old))
    with open(os.path.join(here, "MANIFEST"), "w") as f:
        f.write("\n".join(manifest) + "\n")
    print("%d cases written to %s" % (len(CASES), here), file=sys.stderr)


if __name__ == "__main__":
    main()
