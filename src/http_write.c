/* http_write: the heads ferry writes (see http.h): the request head for
 * the upstream and the response head for the client, both built once from
 * the parsed head's spans plus what the route and the spec change, and
 * ferry's own error responses, the status table, Date and request ids. */
#include "ferry/http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ferry/config.h"
#include "ferry/http_rewrite.h"
#include "ferry/strbuf.h"

#include "http_internal.h"

/* --- writing heads --------------------------------------------------------- */

/* Heads are built with a fixed strbuf over the caller's buffer: a head that
 * does not fit is refused whole (length 0), never cut. strbuf_add is inline
 * and costs one comparison per piece, as the appender it replaced did. */

static void out_span(struct strbuf *o, const struct http_msg *m, struct http_span s) {
    strbuf_add(o, m->base + s.off, s.len);
}

static void out_field(struct strbuf *o, const char *name, const char *value) {
    strbuf_adds(o, name);
    strbuf_add(o, ": ", 2);
    strbuf_adds(o, value);
    strbuf_add(o, "\r\n", 2);
}

static void out_headers(struct strbuf *o, const struct config_header *h, size_t n) {
    for (size_t i = 0; i < n; i++) out_field(o, h[i].name, h[i].value);
}

static bool http_removed_by_route(const struct http_msg *m, const struct http_field *f,
                                  const struct config_route *r) {
    if (!r) return false;
    for (size_t i = 0; i < r->nremove_request_headers; i++)
        if (http_span_eq(m, f->name, r->remove_request_headers[i])) return true;
    return false;
}

/* The target as the upstream sees it: origin-form, minus the route's
 * prefix when strip_prefix is on (never an empty path: "/" at least). */
size_t http_strip_len(const struct config_route *r, size_t path_len) {
    size_t plen;
    http_route_prefix(r, &plen); /* without its slash: the one that follows stays */
    return plen <= path_len ? plen : 0;
}

const char *http_route_prefix(const struct config_route *r, size_t *len) {
    *len = 0;
    if (!r || !r->strip_prefix || r->path_exact) return "";
    size_t plen = strlen(r->path);
    if (plen > 0 && r->path[plen - 1] == '/') plen--;
    *len = plen;
    return r->path;
}

/* The query is a span of its own: once the path is normalised in place,
 * path and query are no longer contiguous. */
static void out_target(struct strbuf *o, const struct http_msg *m, const struct config_route *r) {
    struct http_span path = m->path;
    uint32_t strip = (uint32_t)http_strip_len(r, path.len);
    path.off += strip;
    path.len -= strip;
    if (path.len == 0 || m->base[path.off] != '/') {
        if (!(m->target.len == 1 && m->base[m->target.off] == '*')) strbuf_add(o, "/", 1);
    }
    out_span(o, m, path);
    out_span(o, m, m->query);
}

/* Fields ferry writes itself: whatever the client sent under these names
 * is replaced (X-Forwarded-For is extended, see below). A client's
 * X-Forwarded-Prefix is dropped on every route: apps that trust it (Flask's
 * ProxyFix) would otherwise build their URLs from what a client made up. */
static bool http_managed(const struct http_field *f) {
    return f->id == HTTP_F_X_FORWARDED_PROTO || f->id == HTTP_F_X_FORWARDED_HOST ||
           f->id == HTTP_F_X_FORWARDED_FOR || f->id == HTTP_F_X_FORWARDED_PREFIX;
}

/* The client's X-Request-Id goes upstream (in place) unless the route
 * removes it; then ferry's own takes its place. */
bool http_keeps_request_id(const struct http_msg *req, const struct config_route *r) {
    return req->request_id >= 0 && !http_route_removes(r, "X-Request-Id");
}

bool http_route_removes(const struct config_route *r, const char *name) {
    if (!r) return false;
    for (size_t i = 0; i < r->nremove_request_headers; i++)
        if (strcasecmp(r->remove_request_headers[i], name) == 0) return true;
    return false;
}

size_t http_build_request(char *out, size_t cap, const struct http_msg *req,
                          const struct http_request_rewrite *rw) {
    struct strbuf o = strbuf_fixed(out, cap);
    const struct config_route *r = rw->route;
    out_span(&o, req, req->method_text);
    strbuf_add(&o, " ", 1);
    out_target(&o, req, r);
    strbuf_adds(&o, " HTTP/1.1\r\n");
    for (unsigned i = 0; i < req->nfields; i++) {
        const struct http_field *f = &req->fields[i];
        if (f->hop || http_managed(f) || http_removed_by_route(req, f, r)) continue;
        out_span(&o, req, f->name);
        strbuf_add(&o, ": ", 2);
        out_span(&o, req, f->value);
        strbuf_add(&o, "\r\n", 2);
    }
    if (req->host < 0 && rw->default_host) out_field(&o, "Host", rw->default_host);
    /* X-Forwarded-For: every value the client sent, in order, then the
     * client. Values the client marked hop-by-hop (Connection lists the
     * name) or the route removes are not the upstream's to see. */
    strbuf_adds(&o, "X-Forwarded-For: ");
    for (unsigned i = 0; i < req->nfields; i++) {
        const struct http_field *f = &req->fields[i];
        if (f->id != HTTP_F_X_FORWARDED_FOR || f->value.len == 0 || f->hop ||
            http_removed_by_route(req, f, r))
            continue;
        out_span(&o, req, f->value);
        strbuf_add(&o, ", ", 2);
    }
    strbuf_adds(&o, rw->client_addr);
    strbuf_add(&o, "\r\n", 2);
    out_field(&o, "X-Forwarded-Proto", rw->proto);
    if (rw->prefix_len) {
        strbuf_adds(&o, "X-Forwarded-Prefix: ");
        strbuf_add(&o, rw->prefix, rw->prefix_len);
        strbuf_add(&o, "\r\n", 2);
    }
    if (req->host >= 0) {
        strbuf_adds(&o, "X-Forwarded-Host: ");
        out_span(&o, req, req->fields[req->host].value);
        strbuf_add(&o, "\r\n", 2);
    }
    if (!http_keeps_request_id(req, r) && rw->request_id)
        out_field(&o, "X-Request-Id", rw->request_id);
    if (r) out_headers(&o, r->add_request_headers, r->nadd_request_headers);
    if (req->upgrade_websocket) strbuf_adds(&o, "Connection: upgrade\r\nUpgrade: websocket\r\n");
    strbuf_add(&o, "\r\n", 2);
    return o.full ? 0 : o.len;
}

/* Writes F's value as rewrite_redirects changes it, straight into O's
 * room; false when it stays as sent (or is not one of the three). */
static bool out_rewritten(struct strbuf *o, const struct http_msg *m, const struct http_field *f,
                          const struct http_rewrite *rr) {
    const char *v = http_span_ptr(m, f->value);
    size_t n = 0;
    if (http_span_eq(m, f->name, "location") || http_span_eq(m, f->name, "content-location"))
        n = http_rewrite_location(rr, v, f->value.len, o->p + o->len, o->cap - o->len);
    else if (http_span_eq(m, f->name, "set-cookie"))
        n = http_rewrite_cookie(rr, v, f->value.len, o->p + o->len, o->cap - o->len);
    o->len += n;
    return n > 0;
}

size_t http_build_response(char *out, size_t cap, const struct http_msg *resp,
                           const struct http_response_rewrite *rw) {
    struct strbuf o = strbuf_fixed(out, cap);
    char status[16];
    snprintf(status, sizeof(status), "HTTP/1.1 %03u ", (unsigned)resp->status);
    strbuf_adds(&o, status);
    out_span(&o, resp, resp->reason);
    strbuf_add(&o, "\r\n", 2);
    bool tunnel = resp->status == 101;
    /* A 1xx, 204 or 304 has no body whatever its framing headers say; a
     * client that believed them would read the next response as this
     * one's body. */
    bool bodiless = resp->status < 200 || resp->status == 204 || resp->status == 304;
    bool has_hsts = false;
    for (unsigned i = 0; i < resp->nfields; i++) {
        const struct http_field *f = &resp->fields[i];
        if (f->hop) continue;
        if (rw->hsts_s && f->name.len == 25 &&
            strncasecmp(http_span_ptr(resp, f->name), "Strict-Transport-Security", 25) == 0)
            has_hsts = true; /* the app's own policy wins */
        if (f->id == HTTP_F_TRANSFER_ENCODING && (rw->dechunk || bodiless)) continue;
        if (f->id == HTTP_F_CONTENT_LENGTH && bodiless) continue;
        out_span(&o, resp, f->name);
        strbuf_add(&o, ": ", 2);
        if (!rw->redirects || !out_rewritten(&o, resp, f, rw->redirects))
            out_span(&o, resp, f->value);
        strbuf_add(&o, "\r\n", 2);
    }
    if (resp->status >= 200 || tunnel) {
        if (resp->request_id < 0 && rw->request_id) out_field(&o, "X-Request-Id", rw->request_id);
        if (rw->route) out_headers(&o, rw->route->add_response_headers,
                                   rw->route->nadd_response_headers);
        if (rw->hsts_s && !has_hsts) {
            char v[48];
            snprintf(v, sizeof(v), "max-age=%llu", (unsigned long long)rw->hsts_s);
            out_field(&o, "Strict-Transport-Security", v);
        }
    }
    if (tunnel)
        strbuf_adds(&o, "Connection: upgrade\r\nUpgrade: websocket\r\n");
    else if (resp->status >= 200 && rw->close)
        strbuf_adds(&o, "Connection: close\r\n");
    else if (resp->status >= 200 && rw->client_minor == 0)
        strbuf_adds(&o, "Connection: keep-alive\r\n");
    strbuf_add(&o, "\r\n", 2);
    return o.full ? 0 : o.len;
}

const char *http_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

size_t http_build_error(char *out, size_t cap, const struct http_error *e) {
    char body[512];
    const char *reason = http_reason(e->status);
    int blen = snprintf(body, sizeof(body), "%d %s: %s\n", e->status, reason,
                        e->detail ? e->detail : reason);
    if (blen < 0) blen = 0;
    if ((size_t)blen >= sizeof(body)) {
        blen = (int)sizeof(body) - 1;
        body[blen - 1] = '\n';
    }
    const char *rid = e->request_id, *date = e->date;
    /* To HEAD: the headers GET would get, Content-Length included (RFC 9110
     * 9.3.2), and not one byte more, or the client reads it as the start
     * of the next response. */
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\n%s%s%s%s%s%sContent-Type: text/plain\r\nContent-Length: %d\r\n"
                     "%s%s%s%s\r\n%.*s",
                     e->status, reason, date ? "Date: " : "", date ? date : "", date ? "\r\n" : "",
                     e->location ? "Location: " : "", e->location ? e->location : "",
                     e->location ? "\r\n" : "",
                     blen, rid ? "X-Request-Id: " : "", rid ? rid : "", rid ? "\r\n" : "",
                     e->close ? "Connection: close\r\n" : "", e->head ? 0 : blen, body);
    if (n < 0) return 0;
    return (size_t)n < cap ? (size_t)n : 0;
}

/* The last N decimal digits of V (>= 0), zero-padded, at P; returns P + N. */
static char *http_digits(char *p, int64_t v, int n) {
    for (int i = n - 1; i >= 0; i--, v /= 10) p[i] = (char)('0' + v % 10);
    return p + n;
}

void http_date(char *out, int64_t t) {
    static const char days[7][4] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    if (t < 0) t = 0;
    int64_t day = t / 86400, sec = t % 86400;
    /* Civil date from days since 1970-01-01 (Howard Hinnant's algorithm):
     * no gmtime_r, no locale, no time zone file. */
    int64_t z = day + 719468, era = z / 146097, doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    int64_t mday = doy - (153 * mp + 2) / 5 + 1, month = mp < 10 ? mp + 3 : mp - 9;
    int64_t year = yoe + era * 400 + (month <= 2);
    /* Fixed width, so written digit by digit: snprintf's "%02d" would make
     * the compiler prove every field fits. */
    char *p = out;
    memcpy(p, days[day % 7], 3), p += 3;
    *p++ = ',', *p++ = ' ';
    p = http_digits(p, mday, 2);
    *p++ = ' ';
    memcpy(p, months[month - 1], 3), p += 3;
    *p++ = ' ';
    p = http_digits(p, year, 4);
    *p++ = ' ';
    p = http_digits(p, sec / 3600, 2);
    *p++ = ':';
    p = http_digits(p, sec / 60 % 60, 2);
    *p++ = ':';
    p = http_digits(p, sec % 60, 2);
    memcpy(p, " GMT", 5);
}

static uint64_t http_mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void http_request_id(char *out, uint64_t seed_a, uint64_t seed_b) {
    static const char hex[] = "0123456789abcdef";
    uint64_t a = http_mix(seed_a ^ http_mix(seed_b)), b = http_mix(a ^ seed_b);
    for (int i = 0; i < 16; i++) {
        out[i] = hex[(a >> (60 - 4 * i)) & 15];
        out[16 + i] = hex[(b >> (60 - 4 * i)) & 15];
    }
    out[32] = '\0';
}
