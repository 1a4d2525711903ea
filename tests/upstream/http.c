/* http.c - llhttp glue and the endpoints.
 *
 * The parser runs with llhttp's defaults (strict build). Target and header
 * bytes are copied into c->head as they arrive, so a head split across reads
 * needs nothing special; the body is hashed on the fly and never kept.
 * A request is answered in on_message_complete: synchronous answers are
 * appended to the output buffer and parsing continues (pipelining); anything
 * else returns HPE_PAUSED, leaving the remaining input for conn_drive() to
 * hand back once the answer is complete. */
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HDRS_MAX 4096 /* headers per request; more: 431 */

static int http_on_message_begin(llhttp_t *p);
static int http_on_url(llhttp_t *p, const char *at, size_t len);
static int http_on_header_field(llhttp_t *p, const char *at, size_t len);
static int http_on_header_field_complete(llhttp_t *p);
static int http_on_header_value(llhttp_t *p, const char *at, size_t len);
static int http_on_header_value_complete(llhttp_t *p);
static int http_on_headers_complete(llhttp_t *p);
static int http_on_body(llhttp_t *p, const char *at, size_t len);
static int http_on_message_complete(llhttp_t *p);

static llhttp_settings_t http_settings;
static struct obuf g_body; /* scratch: a response body built before its head */

static const char *http_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

void http_conn_init(struct conn *c) {
    if (http_settings.on_message_complete == NULL) {
        llhttp_settings_init(&http_settings);
        http_settings.on_message_begin = http_on_message_begin;
        http_settings.on_url = http_on_url;
        http_settings.on_header_field = http_on_header_field;
        http_settings.on_header_field_complete = http_on_header_field_complete;
        http_settings.on_header_value = http_on_header_value;
        http_settings.on_header_value_complete = http_on_header_value_complete;
        http_settings.on_headers_complete = http_on_headers_complete;
        http_settings.on_body = http_on_body;
        http_settings.on_message_complete = http_on_message_complete;
    }
    llhttp_init(&c->parser, HTTP_REQUEST, &http_settings);
    c->parser.data = c;
}

/* ---- JSON -------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    size_t len;
    uint32_t cp;
    if (s[0] < 0xc2 || s[0] > 0xf4) return 0;
    len = s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
    if (n < len) return 0;
    cp = s[0] & (0x3f >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* Appends s as a JSON string. Bytes that are not valid UTF-8 become \u00XX
 * (their Latin-1 reading), so the output always parses. */
static void json_str(struct obuf *o, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    ob_reserve(o, n + 2);
    o->data[o->len++] = '"';
    for (size_t i = 0; i < n;) {
        size_t run = i;
        while (run < n && u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' && u[run] != '\\')
            run++;
        if (run > i) {
            ob_add(o, s + i, run - i);
            i = run;
            continue;
        }
        size_t seq = u[i] >= 0x80 ? utf8_seq(u + i, n - i) : 0;
        if (seq) {
            ob_add(o, s + i, seq);
            i += seq;
        } else if (u[i] == '"' || u[i] == '\\') {
            char e[2] = {'\\', (char)u[i]};
            ob_add(o, e, 2);
            i++;
        } else {
            char e[6] = {'\\', 'u', '0', '0', hex[u[i] >> 4], hex[u[i] & 15]};
            ob_add(o, e, 6);
            i++;
        }
    }
    ob_lit(o, "\"");
}

/* ---- responses --------------------------------------------------------- */

enum framing { FRAME_LENGTH, FRAME_CHUNKED, FRAME_NONE };

/* Appends a status line and our few headers to the output buffer. */
static void http_head(struct conn *c, int status, const char *ctype, enum framing fr,
                      uint64_t clen) {
    struct obuf *o = &c->out[c->cur];
    ob_reserve(o, 256 + g_up.name_len);
    ob_lit(o, "HTTP/1.1 ");
    ob_u64(o, (uint64_t)status);
    ob_lit(o, " ");
    ob_add(o, http_reason(status), strlen(http_reason(status)));
    if (ctype) {
        ob_lit(o, "\r\nContent-Type: ");
        ob_add(o, ctype, strlen(ctype));
    }
    if (fr == FRAME_LENGTH) {
        ob_lit(o, "\r\nContent-Length: ");
        ob_u64(o, clen);
    } else if (fr == FRAME_CHUNKED) {
        ob_lit(o, "\r\nTransfer-Encoding: chunked");
    }
    ob_lit(o, "\r\nX-Upstream-Name: ");
    ob_add(o, g_up.name, g_up.name_len);
    if (!c->keep_alive)
        ob_lit(o, "\r\nConnection: close");
    else if (c->parser.http_major == 1 && c->parser.http_minor == 0)
        ob_lit(o, "\r\nConnection: keep-alive");
    ob_lit(o, "\r\n\r\n");
}

/* A complete response whose body is in g_body (dropped for HEAD). */
static void http_send_body(struct conn *c, int status, const char *ctype) {
    http_head(c, status, ctype, FRAME_LENGTH, g_body.len);
    if (!c->is_head) ob_add(&c->out[c->cur], g_body.data, g_body.len);
}

static void http_send_text(struct conn *c, int status, const char *text) {
    g_body.len = 0;
    ob_add(&g_body, text, strlen(text));
    ob_lit(&g_body, "\n");
    http_send_body(c, status, "text/plain");
}

/* Answers a request we cannot or will not parse, then ends the connection. */
void http_respond_error(struct conn *c, int status, const char *msg) {
    c->keep_alive = 0;
    c->is_head = 0;
    c->wait = WAIT_NONE;
    http_send_text(c, status, msg);
    c->close_after = 1;
}

/* The default answer: the request as JSON. */
static void http_send_echo(struct conn *c) {
    uint8_t digest[SHA256_LEN];
    char hex[2 * SHA256_LEN + 1];
    struct sha256 s = c->body_sha;
    sha256_final(&s, digest);
    hex_encode(digest, sizeof digest, hex);

    const char *method = llhttp_method_name((llhttp_method_t)c->parser.method);
    struct obuf *b = &g_body;
    b->len = 0;
    ob_lit(b, "{\"server\": ");
    ob_add(b, g_up.name_json, strlen(g_up.name_json));
    ob_lit(b, ", \"method\": ");
    json_str(b, method, strlen(method));
    ob_lit(b, ", \"target\": ");
    json_str(b, c->head.data, c->target_len);
    ob_lit(b, ", \"version\": \"");
    ob_u64(b, c->parser.http_major);
    ob_lit(b, ".");
    ob_u64(b, c->parser.http_minor);
    ob_lit(b, "\", \"headers\": [");
    for (size_t i = 0; i < c->nhdrs; i++) {
        const struct hdr *h = &c->hdrs[i];
        ob_add(b, i ? ", [" : "[", i ? 3 : 1);
        json_str(b, c->head.data + h->name_off, h->name_len);
        ob_lit(b, ", ");
        json_str(b, c->head.data + h->val_off, h->val_len);
        ob_lit(b, "]");
    }
    ob_lit(b, "], \"body_length\": ");
    ob_u64(b, c->body_len);
    ob_lit(b, ", \"body_sha256\": \"");
    ob_add(b, hex, 2 * SHA256_LEN);
    ob_lit(b, "\"}\n");
    http_send_body(c, 200, "application/json");
}

static void http_send_stats(struct conn *c) {
    struct obuf *b = &g_body;
    b->len = 0;
    ob_lit(b, "{\"server\": ");
    ob_add(b, g_up.name_json, strlen(g_up.name_json));
    ob_lit(b, ", \"accepted\": ");
    ob_u64(b, g_up.accepted);
    ob_lit(b, ", \"requests\": ");
    ob_u64(b, g_up.requests);
    ob_lit(b, "}\n");
    http_send_body(c, 200, "application/json");
}

/* /bytes/N and /chunked/N: N bytes of g_pattern. Small fixed-length bodies
 * are copied into the output; the rest stream (WAIT_STREAM, conn.c). */
static void http_send_pattern(struct conn *c, uint64_t n, int chunked) {
    /* HTTP/1.0 has no chunked coding: such a client gets a length instead */
    if (chunked && c->parser.http_major == 1 && c->parser.http_minor == 0) chunked = 0;
    http_head(c, 200, "application/octet-stream", chunked ? FRAME_CHUNKED : FRAME_LENGTH, n);
    if (c->is_head) return;
    if (chunked && n == 0) {
        ob_lit(&c->out[c->cur], "0\r\n\r\n");
        return;
    }
    if (!chunked && n <= UPSTREAM_SMALL_BODY) {
        const char *data;
        size_t k = pattern_piece(0, n, &data);
        ob_add(&c->out[c->cur], data, k);
        return;
    }
    c->body = chunked ? BODY_CHUNKED : BODY_FIXED;
    c->body_left = n;
    c->body_pos = 0;
    c->chunk_seq = 0;
    c->wait = WAIT_STREAM;
}

/* /status/CODE: that status with a short text body (none for 204 and 304). */
static void http_send_status(struct conn *c, uint64_t code) {
    if (code < 200 || code > 599) {
        http_send_text(c, 400, "status must be 200..599");
        return;
    }
    if (code == 204 || code == 304) {
        http_head(c, (int)code, NULL, FRAME_NONE, 0);
        return;
    }
    char text[64];
    snprintf(text, sizeof text, "%d %s", (int)code, http_reason((int)code));
    http_send_text(c, (int)code, text);
}

/* ---- routing ----------------------------------------------------------- */

/* Parses the decimal number that makes up all of [s, s+n); -1 if it is not. */
static int parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out) {
    uint64_t v = 0;
    if (n == 0 || n > 19) return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max) return -1;
    *out = v;
    return 0;
}

/* Does [p, p+n) start with the literal and, if so, where does the rest begin? */
static int has_prefix(const char *p, size_t n, const char *lit, const char **rest,
                      size_t *rest_len) {
    size_t k = strlen(lit);
    if (n < k || memcmp(p, lit, k) != 0) return 0;
    *rest = p + k;
    *rest_len = n - k;
    return 1;
}

static const struct hdr *http_find(const struct conn *c, const char *name) {
    size_t k = strlen(name);
    for (size_t i = 0; i < c->nhdrs; i++)
        if (c->hdrs[i].name_len == k &&
            strncasecmp(c->head.data + c->hdrs[i].name_off, name, k) == 0)
            return &c->hdrs[i];
    return NULL;
}

/* Does the header value hold `token` as one of its comma-separated items? */
static int hdr_has_token(const struct conn *c, const struct hdr *h, const char *token) {
    const char *v = c->head.data + h->val_off, *end = v + h->val_len;
    size_t k = strlen(token);
    while (v < end) {
        while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
            v++;
        const char *item = v;
        while (v < end && *v != ',')
            v++;
        const char *e = v;
        while (e > item && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - item) == k && strncasecmp(item, token, k) == 0) return 1;
    }
    return 0;
}

/* Answers the complete request; returns 0 to go on parsing, HPE_PAUSED when
 * the answer is not complete yet or the connection is ending. */
static int http_route(struct conn *c) {
    const char *path = c->head.data, *rest;
    size_t plen = c->target_len, rlen;
    if (has_prefix(path, plen, "http://", &rest, &rlen) ||
        has_prefix(path, plen, "https://", &rest, &rlen)) {
        const char *slash = memchr(rest, '/', rlen);
        path = slash ? slash : "/";
        plen = slash ? rlen - (size_t)(slash - rest) : 1;
    }
    const char *q = memchr(path, '?', plen);
    if (q) plen = (size_t)(q - path);

    const struct hdr *upgrade = http_find(c, "upgrade");
    const struct hdr *key = http_find(c, "sec-websocket-key");
    uint64_t n;
    if (upgrade && key && c->parser.method == HTTP_GET && hdr_has_token(c, upgrade, "websocket")) {
        ws_respond_upgrade(c, c->head.data + key->val_off, key->val_len);
        c->mode = CONN_WS;
        return HPE_PAUSED;
    } else if (plen == 6 && memcmp(path, "/stats", 6) == 0) {
        http_send_stats(c);
    } else if (has_prefix(path, plen, "/bytes/", &rest, &rlen)) {
        if (parse_u64(rest, rlen, UINT64_C(1) << 62, &n) < 0)
            http_send_text(c, 400, "bad length");
        else
            http_send_pattern(c, n, 0);
    } else if (has_prefix(path, plen, "/chunked/", &rest, &rlen)) {
        if (parse_u64(rest, rlen, UINT64_C(1) << 62, &n) < 0)
            http_send_text(c, 400, "bad length");
        else
            http_send_pattern(c, n, 1);
    } else if (has_prefix(path, plen, "/delay/", &rest, &rlen)) {
        if (parse_u64(rest, rlen, 3600 * 1000, &n) < 0) {
            http_send_text(c, 400, "bad delay");
        } else {
            c->wait = WAIT_DELAY;
            uv_timer_start(&c->timer, http_on_delay, n, 0);
        }
    } else if (has_prefix(path, plen, "/status/", &rest, &rlen)) {
        if (parse_u64(rest, rlen, 999, &n) < 0)
            http_send_text(c, 400, "bad status");
        else
            http_send_status(c, n);
    } else if (plen == 10 && memcmp(path, "/close-mid", 10) == 0) {
        c->keep_alive = 0; /* the header says so too: it is true */
        http_head(c, 200, "application/octet-stream", FRAME_LENGTH, 1000000);
        if (!c->is_head) ob_add(&c->out[c->cur], g_pattern, 1000);
        c->abort_after = 1;
        return HPE_PAUSED;
    } else if (plen == 5 && memcmp(path, "/hang", 5) == 0) {
        c->wait = WAIT_HANG;
    } else {
        http_send_echo(c);
    }
    if (c->wait == WAIT_NONE && !c->keep_alive) c->close_after = 1;
    return c->wait != WAIT_NONE || c->close_after ? HPE_PAUSED : 0;
}

void http_on_delay(uv_timer_t *t) {
    struct conn *c = t->data;
    if (c->closing || c->wait != WAIT_DELAY) return;
    c->wait = WAIT_NONE;
    http_send_echo(c);
    if (!c->keep_alive) c->close_after = 1;
    conn_drive(c);
}

/* Feeds input to the parser; returns how much it took. It takes everything
 * unless it paused (then the rest waits in c->in). A parse error is
 * answered here (400, or 431 from our own limit) and ends the connection. */
size_t http_process(struct conn *c, char *data, size_t len) {
    llhttp_errno_t e = llhttp_get_errno(&c->parser);
    if (e == HPE_PAUSED)
        llhttp_resume(&c->parser);
    else if (e == HPE_PAUSED_UPGRADE) /* an Upgrade we did not take: stay HTTP */
        llhttp_resume_after_upgrade(&c->parser);
    e = llhttp_execute(&c->parser, data, len);
    if (e == HPE_OK) return len;
    if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE)
        return (size_t)(llhttp_get_error_pos(&c->parser) - data);
    if (c->err_status == 431)
        http_respond_error(c, 431, "request head too large");
    else {
        char msg[160];
        snprintf(msg, sizeof msg, "bad request: %s (%s)", llhttp_errno_name(e),
                 llhttp_get_error_reason(&c->parser));
        http_respond_error(c, 400, msg);
    }
    return len;
}

/* ---- parser callbacks -------------------------------------------------- */

static int http_on_message_begin(llhttp_t *p) {
    struct conn *c = p->data;
    c->head.len = 0;
    c->target_len = 0;
    c->nhdrs = 0;
    c->hdr_open = 0;
    c->body_len = 0;
    c->is_head = 0;
    c->keep_alive = 1;
    sha256_init(&c->body_sha);
    return 0;
}

/* Copies head bytes into c->head, refusing past UPSTREAM_HEAD_MAX (counting
 * 4 bytes per header for ": " and CRLF). */
static int http_head_add(struct conn *c, const char *at, size_t len) {
    if (c->head.len + 4 * c->nhdrs + len > UPSTREAM_HEAD_MAX) {
        c->err_status = 431;
        return -1;
    }
    ob_add(&c->head, at, len);
    return 0;
}

static int http_on_url(llhttp_t *p, const char *at, size_t len) {
    struct conn *c = p->data;
    if (http_head_add(c, at, len) < 0) return -1;
    c->target_len += (uint32_t)len;
    return 0;
}

static int http_on_header_field(llhttp_t *p, const char *at, size_t len) {
    struct conn *c = p->data;
    if (c->hdr_open != 1) {
        if (c->nhdrs == HDRS_MAX) {
            c->err_status = 431;
            return -1;
        }
        if (c->nhdrs == c->hdrs_cap) {
            size_t cap = c->hdrs_cap ? 2 * c->hdrs_cap : 16;
            struct hdr *h = realloc(c->hdrs, cap * sizeof *h);
            if (h == NULL) return -1;
            c->hdrs = h;
            c->hdrs_cap = cap;
        }
        struct hdr *h = &c->hdrs[c->nhdrs++];
        memset(h, 0, sizeof *h);
        h->name_off = (uint32_t)c->head.len;
        c->hdr_open = 1;
    }
    if (http_head_add(c, at, len) < 0) return -1;
    c->hdrs[c->nhdrs - 1].name_len += (uint32_t)len;
    return 0;
}

static int http_on_header_field_complete(llhttp_t *p) {
    struct conn *c = p->data;
    c->hdr_open = 2;
    c->hdrs[c->nhdrs - 1].val_off = (uint32_t)c->head.len;
    return 0;
}

static int http_on_header_value(llhttp_t *p, const char *at, size_t len) {
    struct conn *c = p->data;
    if (http_head_add(c, at, len) < 0) return -1;
    c->hdrs[c->nhdrs - 1].val_len += (uint32_t)len;
    return 0;
}

static int http_on_header_value_complete(llhttp_t *p) {
    struct conn *c = p->data;
    c->hdr_open = 0;
    return 0;
}

/* Sends "100 Continue" when the client waits for it before its body. */
static int http_on_headers_complete(llhttp_t *p) {
    struct conn *c = p->data;
    c->is_head = p->method == HTTP_HEAD;
    const struct hdr *expect = http_find(c, "expect");
    int has_body =
        (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
    if (expect && has_body && p->http_major == 1 && p->http_minor >= 1 &&
        hdr_has_token(c, expect, "100-continue"))
        ob_lit(&c->out[c->cur], "HTTP/1.1 100 Continue\r\n\r\n");
    return 0;
}

static int http_on_body(llhttp_t *p, const char *at, size_t len) {
    struct conn *c = p->data;
    sha256_update(&c->body_sha, at, len);
    c->body_len += len;
    return 0;
}

static int http_on_message_complete(llhttp_t *p) {
    struct conn *c = p->data;
    g_up.requests++;
    c->keep_alive = llhttp_should_keep_alive(p);
    return http_route(c);
}
