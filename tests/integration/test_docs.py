#!/usr/bin/env python3
"""The user's documentation (README.md and docs/) against the source, so that
what ferry does and what the docs say cannot drift apart silently.

  keys      every key the loader accepts (src/config_keys.c's key tables)
            appears in backticks in README.md or docs/
  links     docs/README.md links every page of docs/; every relative link
            of README.md and docs/ leads to a file that exists, and an
            anchor to a heading that exists; nothing points users at the
            spec, which they do not have
  metrics   every metric src/admin.c serves is in docs/headers-and-statuses.md
  statuses  every status ferry answers itself (the numbers its error paths
            pass in src/) is in docs/headers-and-statuses.md, and so is every
            request header ferry manages"""
import glob
import os
import re

import harness

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOCS = os.path.join(ROOT, "docs")


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _pages():
    """{path: text} of README.md and every docs/*.md."""
    paths = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(DOCS, "*.md")))
    return {p: _read(p) for p in paths}


def _loader_keys():
    """{section: [key]} from the key tables of src/config_keys.c."""
    src = _read(os.path.join(ROOT, "src", "config_keys.c"))
    out = {}
    for sec in ("global", "listener", "upstream", "route"):
        m = re.search(r"static const struct key_def %s_keys\[\]\s*=\s*\{(.*?)\n\};" % sec, src, re.S)
        assert m, "src/config_keys.c: no %s_keys table" % sec
        out[sec] = re.findall(r'^\s*[A-Z_]+\("([a-z_0-9]+)"', m.group(1), re.M)
        assert out[sec], "src/config_keys.c: %s_keys parsed empty" % sec
    return out


def test_keys(h):
    text = "\n".join(_pages().values())
    missing = ["[%s] %s" % (sec, k) for sec, keys in _loader_keys().items() for k in keys
               if "`%s`" % k not in text and "`%s =" % k not in text]
    assert not missing, "config keys the loader accepts but README.md and docs/ never name: " + \
        ", ".join(missing)


def _slug(heading):
    """The anchor GitHub makes of a heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def test_links(h):
    pages = _pages()
    index = _read(os.path.join(DOCS, "README.md"))
    for p in glob.glob(os.path.join(DOCS, "*.md")):
        name = os.path.basename(p)
        if name != "README.md":
            assert "(%s)" % name in index, "docs/README.md does not link docs/%s" % name
    problems = []
    for path, text in pages.items():
        rel = os.path.relpath(path, ROOT)
        if re.search(r"SPEC(\.md)?\b", text):
            problems.append("%s mentions the spec: users never see it" % rel)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            file_part, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) \
                if file_part else path
            if not os.path.exists(dest):
                problems.append("%s: link %s: no such file" % (rel, target))
                continue
            if anchor and dest.endswith(".md"):
                heads = [_slug(m) for m in re.findall(r"^#+ (.*)$", _read(dest), re.M)]
                if anchor not in heads:
                    problems.append("%s: link %s: no such heading in %s" %
                                    (rel, target, os.path.relpath(dest, ROOT)))
    assert not problems, "\n  ".join(["documentation links:"] + problems)


def _headers_doc():
    return _read(os.path.join(DOCS, "headers-and-statuses.md"))


def test_metrics(h):
    served = set(re.findall(r'"(ferry_[a-z0-9_]+)', _read(os.path.join(ROOT, "src", "admin.c"))))
    served = {m for m in served if not re.search(r"_(bucket|sum|count)$", m)}
    assert len(served) >= 15, "too few metrics found in src/admin.c: %r" % sorted(served)
    doc = _headers_doc()
    missing = sorted(m for m in served if "`%s`" % m not in doc)
    assert not missing, "metrics served but not in docs/headers-and-statuses.md: " + \
        ", ".join(missing)


def test_statuses(h):
    """The status numbers ferry's own answers use, found where they are made."""
    calls = r"(?:http_fail|http_fail_own|http_answer|http_send_error|http_send_own|" \
            r"exchange_fail_upstream|http_msg_fail|->fail)\(\s*[\w>.-]+\s*,\s*([1-5]\d\d)\s*,"
    found = set()
    for p in glob.glob(os.path.join(ROOT, "src", "*.c")):
        if os.path.basename(p) in ("admin.c", "dashboard.c", "health.c"):
            continue  # the admin endpoint's and the health checker's, documented apart
        found |= set(re.findall(calls, _read(p)))
    assert {"400", "404", "502", "504"} <= found, "status scan found only %r" % sorted(found)
    doc = _headers_doc()
    missing = sorted(s for s in found if "`%s " % s not in doc)
    assert not missing, "statuses ferry answers but docs/headers-and-statuses.md does not " \
        "list: " + ", ".join(missing)
    for name in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Prefix",
                 "X-Request-Id", "Strict-Transport-Security", "Location", "Set-Cookie"):
        assert "`%s`" % name in doc, "docs/headers-and-statuses.md does not name %s" % name


if __name__ == "__main__":
    harness.main(globals())
