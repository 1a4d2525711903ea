/* http_rewrite: Location, Content-Location and Set-Cookie Path put back
 * under the client's scheme, host and path prefix (see http_rewrite.h). */
#include "ferry/http_rewrite.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ferry/strbuf.h"

static bool eq_nocase(const char *a, size_t alen, const char *b, size_t blen) {
    return alen == blen && strncasecmp(a, b, alen) == 0;
}

/* Whether PATH[0, LEN) is already under the prefix: the prefix itself, or
 * the prefix followed by '/', '?' or '#'. */
static bool under_prefix(const struct http_rewrite *rw, const char *path, size_t len) {
    size_t p = rw->prefix_len;
    if (p == 0 || len < p || memcmp(path, rw->prefix, p) != 0) return false;
    return len == p || path[p] == '/' || path[p] == '?' || path[p] == '#';
}

/* Whether AUTH[0, LEN) names the upstream server: "host:port" (brackets
 * around an IPv6 host), or the host alone when the port is the default of
 * the URL's scheme (DEFAULT_PORT). */
static bool names_upstream(const struct http_rewrite *rw, const char *auth, size_t len,
                           unsigned default_port) {
    if (!rw->up_host) return false;
    bool v6 = strchr(rw->up_host, ':') != NULL;
    char full[300];
    int n = snprintf(full, sizeof(full), v6 ? "[%s]:%u" : "%s:%u", rw->up_host,
                     (unsigned)rw->up_port);
    if (n > 0 && (size_t)n < sizeof(full) && eq_nocase(auth, len, full, (size_t)n)) return true;
    if (rw->up_port != default_port) return false;
    n = snprintf(full, sizeof(full), v6 ? "[%s]" : "%s", rw->up_host);
    return n > 0 && (size_t)n < sizeof(full) && eq_nocase(auth, len, full, (size_t)n);
}

/* Length of a URL scheme at the start of V ("http" in "http://"), 0 when
 * V does not start with SCHEME ":" (RFC 3986 3.1). */
static size_t scheme_len(const char *v, size_t len) {
    size_t i = 0;
    if (len == 0 || !((v[0] | 0x20) >= 'a' && (v[0] | 0x20) <= 'z')) return 0;
    for (i = 1; i < len; i++) {
        char ch = v[i];
        bool ok = ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') || (ch >= '0' && ch <= '9') ||
                  ch == '+' || ch == '-' || ch == '.';
        if (!ok) break;
    }
    return i < len && v[i] == ':' ? i : 0;
}

/* Writes PREFIX then REST (a path, "?query" or "#fragment", or empty), so
 * that the result is a path: "/api" + "" is "/api/", "/api" + "?q" is
 * "/api/?q". An absolute URL's REST already under the prefix is kept. */
static void put_path(struct strbuf *o, const struct http_rewrite *rw, const char *rest,
                     size_t len) {
    if (!under_prefix(rw, rest, len)) strbuf_add(o, rw->prefix, rw->prefix_len);
    if (len == 0 || rest[0] != '/') strbuf_add(o, "/", 1);
    strbuf_add(o, rest, len);
}

/* An absolute ("http://AUTH...") or network-path ("//AUTH...") reference
 * whose authority starts at V + AUTH_AT. Returns the new length or 0. */
static size_t rewrite_absolute(const struct http_rewrite *rw, const char *v, size_t len,
                               size_t auth_at, unsigned default_port, char *out, size_t cap) {
    size_t end = auth_at;
    while (end < len && v[end] != '/' && v[end] != '?' && v[end] != '#')
        end++;
    const char *auth = v + auth_at;
    size_t alen = end - auth_at;
    bool to_host = rw->host_len > 0 && eq_nocase(auth, alen, rw->host, rw->host_len);
    if (alen == 0 || (!to_host && !names_upstream(rw, auth, alen, default_port))) return 0;
    struct strbuf o = strbuf_fixed(out, cap);
    if (rw->host_len > 0) { /* no Host (HTTP/1.0): a path, which the client resolves */
        strbuf_adds(&o, rw->scheme);
        strbuf_add(&o, "://", 3);
        strbuf_add(&o, rw->host, rw->host_len);
    }
    put_path(&o, rw, v + end, len - end);
    return o.full ? 0 : o.len;
}

size_t http_rewrite_location(const struct http_rewrite *rw, const char *v, size_t len, char *out,
                             size_t cap) {
    if (len >= 2 && v[0] == '/' && v[1] == '/') return rewrite_absolute(rw, v, len, 2, 0, out, cap);
    if (len >= 1 && v[0] == '/') {
        if (rw->prefix_len == 0 || under_prefix(rw, v, len)) return 0;
        struct strbuf o = strbuf_fixed(out, cap);
        put_path(&o, rw, v, len);
        return o.full ? 0 : o.len;
    }
    size_t s = scheme_len(v, len);
    if (s == 0 || s + 3 > len || memcmp(v + s, "://", 3) != 0) return 0; /* relative: fine as is */
    unsigned port;
    if (eq_nocase(v, s, "http", 4))
        port = 80;
    else if (eq_nocase(v, s, "https", 5))
        port = 443;
    else
        return 0; /* ftp:, mailto: ...: not ours */
    return rewrite_absolute(rw, v, len, s + 3, port, out, cap);
}

size_t http_rewrite_cookie(const struct http_rewrite *rw, const char *v, size_t len, char *out,
                           size_t cap) {
    if (rw->prefix_len == 0) return 0;
    /* Attributes follow the first ';': "; Path=/x; HttpOnly". */
    const char *semi = memchr(v, ';', len);
    while (semi) {
        size_t at = (size_t)(semi - v) + 1;
        while (at < len && (v[at] == ' ' || v[at] == '\t'))
            at++;
        const char *next = memchr(v + at, ';', len - at);
        size_t end = next ? (size_t)(next - v) : len;
        if (end - at >= 5 && strncasecmp(v + at, "path=", 5) == 0) {
            size_t val = at + 5, vend = end;
            while (vend > val && (v[vend - 1] == ' ' || v[vend - 1] == '\t'))
                vend--;
            if (vend == val || v[val] != '/' || under_prefix(rw, v + val, vend - val)) return 0;
            struct strbuf o = strbuf_fixed(out, cap);
            strbuf_add(&o, v, val);
            strbuf_add(&o, rw->prefix, rw->prefix_len);
            if (vend - val > 1) strbuf_add(&o, v + val, vend - val); /* Path=/ is Path=PREFIX */
            strbuf_add(&o, v + vend, len - vend);
            return o.full ? 0 : o.len;
        }
        semi = next;
    }
    return 0;
}
