/* http_parse: strict HTTP/1.x heads on top of llhttp; see http.h.
 *
 * How a head is read. llhttp runs over the bytes and reports spans through
 * its data callbacks; because the caller keeps the head contiguous in one
 * buffer, a span split across two reads is simply extended. llhttp pauses
 * at the end of the head (on_headers_complete returns HPE_PAUSED), so the
 * body and any pipelined request stay unparsed in the buffer. Then ferry's
 * own checks run over the raw head (http_check_lines) and over the fields
 * (http_check_request / http_check_response). Only a head that passes both
 * is ever forwarded.
 *
 * Why a second look at the raw bytes: llhttp, even strict, accepts obs-fold,
 * empty header names, repeated spaces in the request line, HTTP/0.9 and
 * 2.0, and any Host value. Each of those has been used to make a proxy and
 * an upstream disagree about where a request starts or ends. */
#include "ferry/http.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "ferry/http_path.h"

#include "http_internal.h"

/* A malformed message: the client's fault (400) or the upstream's (502). */
static int http_bad(const struct http_msg *m) {
    return m->is_request ? 400 : 502;
}

static int http_msg_fail(struct http_msg *m, int status, const char *text) {
    if (!m->error_status) {
        m->error_status = status;
        m->error_text = text;
    }
    return -1;
}

/* --- llhttp callbacks: record spans ------------------------------------ */

static struct http_msg *msg_of(llhttp_t *p) {
    return p->data;
}

static void http_extend(struct http_msg *m, struct http_span *s, const char *at, size_t len) {
    if (s->len == 0) s->off = (uint32_t)(at - m->base);
    s->len += (uint32_t)len;
}

static int http_on_method(llhttp_t *p, const char *at, size_t len) {
    struct http_msg *m = msg_of(p);
    http_extend(m, &m->method_text, at, len);
    return 0;
}

static int http_on_url(llhttp_t *p, const char *at, size_t len) {
    struct http_msg *m = msg_of(p);
    http_extend(m, &m->target, at, len);
    return 0;
}

static int http_on_status(llhttp_t *p, const char *at, size_t len) {
    struct http_msg *m = msg_of(p);
    http_extend(m, &m->reason, at, len);
    return 0;
}

static int http_on_header_field(llhttp_t *p, const char *at, size_t len) {
    struct http_msg *m = msg_of(p);
    if (m->head_done) return 0; /* trailers: checked by http_on_trailer_field */
    if (m->too_many) return 0;
    if (m->in_value || m->nfields == 0) {
        /* Past the limit nothing more is recorded, and the verdict waits for
         * the end of the head: an error llhttp finds later wins, whatever
         * the reads were cut into. */
        if (m->nfields == HTTP_MAX_FIELDS) {
            m->too_many = true;
            return 0;
        }
        m->fields[m->nfields++] = (struct http_field){{0, 0}, {0, 0}, 0, false};
        m->in_value = false;
    }
    struct http_field *f = &m->fields[m->nfields - 1];
    http_extend(m, &f->name, at, len);
    return 0;
}

static int http_on_header_value(llhttp_t *p, const char *at, size_t len) {
    struct http_msg *m = msg_of(p);
    if (m->head_done || m->too_many) return 0;
    struct http_field *f = &m->fields[m->nfields - 1];
    if (!m->in_value) f->value = (struct http_span){(uint32_t)(at - m->base), 0};
    m->in_value = true;
    f->value.len += (uint32_t)len;
    return 0;
}

static int http_on_headers_complete(llhttp_t *p) {
    struct http_msg *m = msg_of(p);
    if (m->head_done) return 0;
    /* llhttp skips the body of 1xx/204/304 only when it has no framing
     * headers; a 304 with Content-Length would eat the next response. */
    int status = p->status_code;
    if (!m->is_request &&
        (m->head_request || status / 100 == 1 || status == 204 || status == 304))
        p->flags |= F_SKIPBODY;
    /* Leave the body unparsed until the head has been checked and sent. */
    return HPE_PAUSED;
}

static int http_on_body(llhttp_t *p, const char *at, size_t len) {
    struct http_msg *m = msg_of(p);
    m->body_bytes += len;
    if (m->compact) {
        /* Destination never passes the source: chunk framing only shrinks. */
        memmove(m->compact_to + m->compact_len, at, len);
        m->compact_len += len;
    }
    return 0;
}

static int http_on_message_complete(llhttp_t *p) {
    struct http_msg *m = msg_of(p);
    m->message_done = true;
    /* Stop here: what follows is the next message, not this one's. */
    return HPE_PAUSED;
}

/* Constant and shared by every worker thread: built at compile time, so no
 * thread ever initialises it while another reads it. */
static const llhttp_settings_t http_settings = {
    .on_method = http_on_method,
    .on_url = http_on_url,
    .on_status = http_on_status,
    .on_header_field = http_on_header_field,
    .on_header_value = http_on_header_value,
    .on_headers_complete = http_on_headers_complete,
    .on_body = http_on_body,
    .on_message_complete = http_on_message_complete,
};

void http_msg_init(struct http_msg *m, bool is_request, bool head_request) {
    memset(m, 0, offsetof(struct http_msg, fields));
    m->nfields = 0;
    m->in_value = false;
    m->too_many = false;
    m->host = -1;
    m->request_id = -1;
    m->is_request = is_request;
    m->has_length = m->chunked = m->conn_close = m->upgrade_websocket = false;
    m->expect_continue = false;
    m->content_length = 0;
    m->path = m->authority = m->query = (struct http_span){0, 0};
    m->error_status = 0;
    m->error_text = NULL;
    m->body_bytes = 0;
    m->message_done = m->upgraded = false;
    m->compact = false;
    m->compact_to = NULL;
    m->compact_len = 0;
    llhttp_init(&m->parser, is_request ? HTTP_REQUEST : HTTP_RESPONSE, &http_settings);
    m->parser.data = m;
    m->head_request = head_request;
    m->chunk_state = 0;
    m->chunk_digits = 0;
    m->chunk_left = 0;
}

/* --- the raw head ------------------------------------------------------ */

/* Every line ends in CRLF with no other CR or LF and no NUL or other
 * control byte (HT excepted); header lines start with a token and a colon,
 * never with whitespace (obs-fold). Returns 0 or -1 with the error set. */
static int http_check_lines(struct http_msg *m) {
    const char *p = m->base + m->head_start, *end = m->base + m->head_end;
    bool first = true;
    while (p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        if (!lf || lf == p || lf[-1] != '\r')
            return http_msg_fail(m, http_bad(m), "bare LF in head");
        const char *eol = lf - 1;
        for (const char *q = p; q < eol; q++) {
            unsigned char c = (unsigned char)*q;
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return http_msg_fail(m, http_bad(m),
                                     c == '\r' ? "bare CR in head" : "control byte in head");
        }
        if (eol == p) break; /* the blank line */
        if (first) {
            first = false;
        } else {
            if (*p == ' ' || *p == '\t') return http_msg_fail(m, http_bad(m), "obs-fold in header");
            const char *q = p;
            while (q < eol && util_is_tchar((unsigned char)*q)) q++;
            if (q == p || q == eol || *q != ':')
                return http_msg_fail(m, http_bad(m),
                                     q == p ? "empty header name" : "bad header name");
        }
        p = lf + 1;
    }
    return 0;
}

/* "METHOD SP target SP HTTP/1.x" with single spaces; llhttp tolerates more. */
static int http_check_request_line(struct http_msg *m) {
    const char *line = m->base + m->head_start;
    const char *method_end = line + m->method_text.len;
    if (m->method_text.off != m->head_start || *method_end != ' ')
        return http_msg_fail(m, 400, "malformed request line");
    for (const char *q = line; q < method_end; q++)
        if (!util_is_tchar((unsigned char)*q)) return http_msg_fail(m, 400, "bad method");
    if (m->target.off != (uint32_t)(method_end - m->base) + 1 || m->target.len == 0)
        return http_msg_fail(m, 400, "malformed request line");
    const char *v = m->base + m->target.off + m->target.len;
    if (memcmp(v, " HTTP/1.", 8) != 0 || (v[8] != '0' && v[8] != '1') || v[9] != '\r') {
        if (memcmp(v, " HTTP/", 6) == 0 && isdigit((unsigned char)v[6]) && v[7] == '.' &&
            isdigit((unsigned char)v[8]) && v[9] == '\r')
            return http_msg_fail(m, 505, "HTTP version not supported");
        return http_msg_fail(m, 400, "malformed request line");
    }
    return 0;
}

/* --- fields -------------------------------------------------------------- */

static const struct {
    const char *name;
    enum http_field_id id;
    bool hop;
} http_known[] = {
    {"host", HTTP_F_HOST, false},
    {"content-length", HTTP_F_CONTENT_LENGTH, false},
    {"transfer-encoding", HTTP_F_TRANSFER_ENCODING, false},
    {"connection", HTTP_F_CONNECTION, true},
    {"keep-alive", HTTP_F_KEEP_ALIVE, true},
    {"proxy-connection", HTTP_F_PROXY_CONNECTION, true},
    {"te", HTTP_F_TE, true},
    {"upgrade", HTTP_F_UPGRADE, true},
    {"trailer", HTTP_F_TRAILER, false},
    {"expect", HTTP_F_EXPECT, false},
    {"x-forwarded-for", HTTP_F_X_FORWARDED_FOR, false},
    {"x-forwarded-proto", HTTP_F_X_FORWARDED_PROTO, false},
    {"x-forwarded-host", HTTP_F_X_FORWARDED_HOST, false},
    {"x-forwarded-prefix", HTTP_F_X_FORWARDED_PREFIX, false},
    {"x-request-id", HTTP_F_X_REQUEST_ID, false},
};

static void http_classify(struct http_msg *m, struct http_field *f) {
    f->id = HTTP_F_OTHER;
    f->hop = false;
    for (size_t i = 0; i < FERRY_ARRAY_LEN(http_known); i++) {
        if (http_span_eq(m, f->name, http_known[i].name)) {
            f->id = (uint8_t)http_known[i].id;
            f->hop = http_known[i].hop;
            return;
        }
    }
}

/* Trims optional whitespace around a value span (llhttp keeps trailing). */
static void http_trim(struct http_msg *m, struct http_span *s) {
    while (s->len && (m->base[s->off] == ' ' || m->base[s->off] == '\t')) s->off++, s->len--;
    while (s->len && (m->base[s->off + s->len - 1] == ' ' || m->base[s->off + s->len - 1] == '\t'))
        s->len--;
}

/* Steps through the comma-separated tokens of V: returns false at the end. */
static bool http_next_token(const struct http_msg *m, struct http_span v, uint32_t *pos,
                            struct http_span *tok) {
    while (*pos < v.len) {
        uint32_t start = *pos;
        while (*pos < v.len && m->base[v.off + *pos] != ',') (*pos)++;
        *tok = (struct http_span){v.off + start, *pos - start};
        (*pos)++;
        while (tok->len && (m->base[tok->off] == ' ' || m->base[tok->off] == '\t'))
            tok->off++, tok->len--;
        while (tok->len && (m->base[tok->off + tok->len - 1] == ' ' ||
                            m->base[tok->off + tok->len - 1] == '\t'))
            tok->len--;
        if (tok->len) return true;
    }
    return false;
}

/* Framing and routing fields: never hop-by-hop, whatever Connection says. */
static bool http_end_to_end(const struct http_field *f) {
    return f->id == HTTP_F_CONTENT_LENGTH || f->id == HTTP_F_TRANSFER_ENCODING ||
           f->id == HTTP_F_HOST;
}

/* Marks every field named TOK as hop-by-hop: a name listed in Connection
 * belongs to this hop only (RFC 9110 7.6.1). Listing a framing or routing
 * field would make ferry forward a message whose length or Host differs
 * from what it parsed: a request doing so is refused (-1), a response's
 * token is ignored. */
static int http_mark_hop(struct http_msg *m, struct http_span tok) {
    for (unsigned i = 0; i < m->nfields; i++) {
        struct http_field *f = &m->fields[i];
        struct http_span n = f->name;
        if (n.len != tok.len || strncasecmp(m->base + n.off, m->base + tok.off, n.len) != 0)
            continue;
        if (!http_end_to_end(f))
            f->hop = true;
        else if (m->is_request)
            return http_msg_fail(m, 400, "Connection lists a framing header");
    }
    return 0;
}

/* Usable as a request id: 1..200 visible ASCII bytes. */
static bool http_valid_request_id(const struct http_msg *m, struct http_span v) {
    if (v.len == 0 || v.len > 200) return false;
    for (uint32_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)m->base[v.off + i];
        if (c < 0x21 || c > 0x7e) return false;
    }
    return true;
}

/* Exactly one X-Request-Id goes on: the first valid one the client sent
 * (others are dropped), or none, and then ferry generates one. */
static void http_pick_request_id(struct http_msg *m) {
    m->request_id = -1;
    for (unsigned i = 0; i < m->nfields; i++) {
        struct http_field *f = &m->fields[i];
        if (f->id != HTTP_F_X_REQUEST_ID) continue;
        if (m->request_id < 0 && !f->hop && http_valid_request_id(m, f->value))
            m->request_id = (int)i;
        else
            f->hop = true;
    }
}

static int http_parse_length(struct http_msg *m, struct http_span v, uint64_t *out) {
    if (v.len == 0) return -1;
    while (v.len > 1 && m->base[v.off] == '0') v.off++, v.len--; /* leading zeros are valid */
    if (v.len > 19) return -1; /* 19 digits stay below 2^63 */
    uint64_t n = 0;
    for (uint32_t i = 0; i < v.len; i++) {
        char c = m->base[v.off + i];
        if (c < '0' || c > '9') return -1;
        n = n * 10 + (uint64_t)(c - '0');
    }
    if (n > INT64_MAX) return -1;
    *out = n;
    return 0;
}

/* host[:port]: a reg-name or IPv4 (letters, digits, - . _ ~ and
 * sub-delims other than ','), or an [IPv6] literal; no userinfo, spaces,
 * commas or empty value. */
static bool http_valid_host(const char *s, size_t n) {
    if (n == 0) return false;
    size_t i = 0;
    if (s[0] == '[') {
        while (i < n && s[i] != ']') {
            char c = s[i];
            if (i > 0 && !isxdigit((unsigned char)c) && c != ':' && c != '.') return false;
            i++;
        }
        if (i == n || i < 3) return false;
        i++;
    } else {
        static const char ok[] = "-._~!$&'()*+;=%";
        while (i < n && s[i] != ':') {
            unsigned char c = (unsigned char)s[i];
            if (!isalnum(c) && !strchr(ok, c)) return false;
            i++;
        }
        if (i == 0) return false;
    }
    if (i == n) return true;
    if (s[i] != ':' || i + 1 == n || n - i - 1 > 5) return false;
    for (i++; i < n; i++)
        if (!isdigit((unsigned char)s[i])) return false;
    return true;
}

static int http_check_framing(struct http_msg *m) {
    int te = -1, cl = -1;
    for (unsigned i = 0; i < m->nfields; i++) {
        struct http_field *f = &m->fields[i];
        if (f->id == HTTP_F_TRANSFER_ENCODING) {
            if (te >= 0) return http_msg_fail(m, http_bad(m), "repeated Transfer-Encoding");
            te = (int)i;
        } else if (f->id == HTTP_F_CONTENT_LENGTH) {
            if (cl >= 0) return http_msg_fail(m, http_bad(m), "repeated Content-Length");
            cl = (int)i;
        }
    }
    if (te >= 0 && cl >= 0)
        return http_msg_fail(m, http_bad(m), "Content-Length with Transfer-Encoding");
    if (te >= 0) {
        if (m->is_request && m->minor == 0)
            return http_msg_fail(m, 400, "Transfer-Encoding in HTTP/1.0");
        if (!http_span_eq(m, m->fields[te].value, "chunked"))
            return http_msg_fail(m, m->is_request ? 400 : 502, "Transfer-Encoding is not chunked");
        m->chunked = true;
    }
    if (cl >= 0) {
        if (http_parse_length(m, m->fields[cl].value, &m->content_length) < 0)
            return http_msg_fail(m, m->is_request ? 400 : 502, "bad Content-Length");
        m->has_length = true;
    }
    /* ferry and llhttp must agree on the framing, or the bytes ferry
     * forwards as one message could be read as another. */
    uint16_t flags = m->parser.flags;
    if (m->chunked != ((flags & F_CHUNKED) != 0) ||
        m->has_length != ((flags & F_CONTENT_LENGTH) != 0) ||
        (m->has_length && m->content_length != m->parser.content_length))
        return http_msg_fail(m, http_bad(m), "ambiguous message framing");
    return 0;
}

/* Origin-form, absolute-form with an authority equal to Host, or "*" with
 * OPTIONS. Sets m->path (and m->authority for absolute-form). */
static int http_check_target(struct http_msg *m) {
    const char *t = m->base + m->target.off;
    uint32_t n = m->target.len;
    for (uint32_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c <= 0x20 || c == 0x7f || c == '#') return http_msg_fail(m, 400, "bad byte in target");
    }
    if (n == 1 && t[0] == '*') {
        if (m->method != HTTP_OPTIONS) return http_msg_fail(m, 400, "'*' target without OPTIONS");
        m->path = m->target;
        return 0;
    }
    uint32_t path_off = 0;
    if (t[0] != '/') {
        uint32_t scheme = n > 7 && strncasecmp(t, "http://", 7) == 0    ? 7
                          : n > 8 && strncasecmp(t, "https://", 8) == 0 ? 8
                                                                        : 0;
        if (!scheme) return http_msg_fail(m, 400, "bad target");
        const char *auth = t + scheme;
        const char *slash = memchr(auth, '/', n - scheme);
        const char *auth_end = slash ? slash : t + n;
        const char *q = memchr(auth, '?', (size_t)(auth_end - auth));
        if (q) auth_end = q;
        m->authority = (struct http_span){m->target.off + scheme, (uint32_t)(auth_end - auth)};
        if (!http_valid_host(auth, m->authority.len)) return http_msg_fail(m, 400, "bad authority");
        path_off = (uint32_t)(auth_end - t);
    }
    const char *path = t + path_off;
    const char *q = memchr(path, '?', n - path_off);
    m->path = (struct http_span){m->target.off + path_off,
                                 (uint32_t)((q ? q : t + n) - path)};
    uint32_t query_off = m->path.off + m->path.len;
    m->query = (struct http_span){query_off, m->target.off + n - query_off};
    return 0;
}

static int http_check_host(struct http_msg *m) {
    int host = -1;
    for (unsigned i = 0; i < m->nfields; i++) {
        if (m->fields[i].id != HTTP_F_HOST) continue;
        if (host >= 0) return http_msg_fail(m, 400, "more than one Host");
        host = (int)i;
    }
    m->host = host;
    if (host < 0) {
        if (m->minor == 1) return http_msg_fail(m, 400, "missing Host");
        if (m->authority.len) return http_msg_fail(m, 400, "absolute target without Host");
        return 0;
    }
    struct http_span v = m->fields[host].value;
    if (!http_valid_host(m->base + v.off, v.len)) return http_msg_fail(m, 400, "bad Host");
    if (m->authority.len && (m->authority.len != v.len ||
                             strncasecmp(m->base + v.off, m->base + m->authority.off, v.len) != 0))
        return http_msg_fail(m, 400, "target authority differs from Host");
    return 0;
}

/* Meaning of Connection, Upgrade and Expect; which fields are hop-by-hop.
 * Returns 0, or -1 with the error set. */
static int http_scan_fields(struct http_msg *m) {
    bool conn_upgrade = false, upgrade_ws = false, keep_alive = false;
    for (unsigned i = 0; i < m->nfields; i++) {
        struct http_field *f = &m->fields[i];
        struct http_span tok;
        uint32_t pos = 0;
        switch ((enum http_field_id)f->id) {
        case HTTP_F_CONNECTION:
            while (http_next_token(m, f->value, &pos, &tok)) {
                if (http_span_eq(m, tok, "close")) m->conn_close = true;
                keep_alive |= http_span_eq(m, tok, "keep-alive");
                conn_upgrade |= http_span_eq(m, tok, "upgrade");
                if (http_mark_hop(m, tok) < 0) return -1;
            }
            break;
        case HTTP_F_UPGRADE:
            while (http_next_token(m, f->value, &pos, &tok))
                upgrade_ws |= http_span_eq(m, tok, "websocket");
            break;
        case HTTP_F_EXPECT:
            m->expect_continue |= http_span_eq(m, f->value, "100-continue");
            break;
        default:
            break;
        }
    }
    /* A request asks for a websocket with both headers, and only on
     * HTTP/1.1 (RFC 9110 7.8: an HTTP/1.0 Upgrade is ignored, then dropped
     * as hop-by-hop). A 101 must name the protocol it switches to. */
    if (m->is_request)
        m->upgrade_websocket = conn_upgrade && upgrade_ws && m->method == HTTP_GET && m->minor == 1;
    else
        m->upgrade_websocket = upgrade_ws && m->status == 101;
    if (m->minor == 0 && !keep_alive) m->conn_close = true;
    http_pick_request_id(m);
    return 0;
}

static int http_check_request(struct http_msg *m) {
    if (http_check_request_line(m) < 0 || http_check_target(m) < 0) return -1;
    if (m->method == HTTP_CONNECT) return http_msg_fail(m, 400, "CONNECT is not supported");
    if (http_check_framing(m) < 0 || http_check_host(m) < 0) return -1;
    return http_scan_fields(m);
}

static int http_check_response(struct http_msg *m) {
    if (m->minor > 1) return http_msg_fail(m, 502, "bad response version");
    if (m->status < 100 || m->status > 599) return http_msg_fail(m, 502, "bad response status");
    if (http_check_framing(m) < 0) return -1;
    return http_scan_fields(m);
}

/* --- chunked framing, checked by ferry too ----------------------------- */

/* llhttp, even strict, lets a bare LF end the last chunk or the trailers,
 * accepts malformed chunk extensions and does not look inside trailer
 * lines. Because ferry forwards chunked bodies byte for byte, it checks the
 * framing itself with this small machine over the same bytes; a body both
 * parsers accept is unambiguous. Grammar (RFC 9112 7.1, without BWS):
 *   chunk     = 1*HEXDIG *( ";" token [ "=" ( token / quoted-string ) ] ) CRLF data CRLF
 *   last      = 1*"0" [ext] CRLF *( field-line CRLF ) CRLF */
enum chunk_state {
    CK_SIZE0 = 0, /* first hex digit */
    CK_SIZE,      /* more hex digits, ';' or CR */
    CK_EXT_NAME0, /* after ';' */
    CK_EXT_NAME,
    CK_EXT_VAL0,  /* after '=' */
    CK_EXT_TOKEN,
    CK_EXT_QUOTED,
    CK_EXT_ESC,
    CK_EXT_END,   /* after a closing quote: ';' or CR */
    CK_SIZE_LF,
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TRAILER0,  /* start of a trailer line, or CR of the final line */
    CK_TRAILER_NAME,
    CK_TRAILER_VALUE,
    CK_TRAILER_LF,
    CK_END_LF,
    CK_DONE,
};

static bool http_field_vchar(unsigned char c) {
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* One byte of framing (not chunk data). Returns the next state or -1. */
static int http_chunk_step(struct http_msg *m, int st, unsigned char c) {
    switch (st) {
    case CK_SIZE0:
    case CK_SIZE:
        if (util_hex_digit(c) >= 0) {
            if (m->chunk_left || c != '0') m->chunk_digits++;
            if (m->chunk_digits > 15) return -1; /* stays far below 2^63 */
            m->chunk_left = (m->chunk_left << 4) | (uint64_t)util_hex_digit(c);
            return CK_SIZE;
        }
        if (st == CK_SIZE0) return -1;
        return c == ';' ? CK_EXT_NAME0 : c == '\r' ? CK_SIZE_LF : -1;
    case CK_EXT_NAME0:
    case CK_EXT_NAME:
        if (util_is_tchar(c)) return CK_EXT_NAME;
        if (st == CK_EXT_NAME0) return -1;
        return c == '=' ? CK_EXT_VAL0 : c == ';' ? CK_EXT_NAME0 : c == '\r' ? CK_SIZE_LF : -1;
    case CK_EXT_VAL0:
        return c == '"' ? CK_EXT_QUOTED : util_is_tchar(c) ? CK_EXT_TOKEN : -1;
    case CK_EXT_TOKEN:
        if (util_is_tchar(c)) return CK_EXT_TOKEN;
        return c == ';' ? CK_EXT_NAME0 : c == '\r' ? CK_SIZE_LF : -1;
    case CK_EXT_QUOTED:
        if (c == '"') return CK_EXT_END;
        if (c == '\\') return CK_EXT_ESC;
        return http_field_vchar(c) ? CK_EXT_QUOTED : -1;
    case CK_EXT_ESC: return http_field_vchar(c) ? CK_EXT_QUOTED : -1;
    case CK_EXT_END: return c == ';' ? CK_EXT_NAME0 : c == '\r' ? CK_SIZE_LF : -1;
    case CK_SIZE_LF:
        if (c != '\n') return -1;
        return m->chunk_left ? CK_DATA : CK_TRAILER0;
    case CK_DATA_CR: return c == '\r' ? CK_DATA_LF : -1;
    case CK_DATA_LF:
        if (c != '\n') return -1;
        m->chunk_digits = 0;
        return CK_SIZE0;
    case CK_TRAILER0:
        if (c == '\r') return CK_END_LF;
        return util_is_tchar(c) ? CK_TRAILER_NAME : -1; /* SP/HT here is obs-fold */
    case CK_TRAILER_NAME:
        if (util_is_tchar(c)) return CK_TRAILER_NAME;
        return c == ':' ? CK_TRAILER_VALUE : -1;
    case CK_TRAILER_VALUE:
        if (c == '\r') return CK_TRAILER_LF;
        return http_field_vchar(c) ? CK_TRAILER_VALUE : -1;
    case CK_TRAILER_LF: return c == '\n' ? CK_TRAILER0 : -1;
    case CK_END_LF: return c == '\n' ? CK_DONE : -1;
    default: return -1;
    }
}

/* Checks DATA[0, LEN) as the continuation of a chunked body. Returns how
 * many bytes belong to the body (less than LEN only when it ended), or -1. */
static long http_chunk_scan(struct http_msg *m, const char *data, size_t len) {
    size_t i = 0;
    int st = m->chunk_state;
    while (i < len && st != CK_DONE) {
        if (st == CK_DATA) {
            size_t take = len - i < m->chunk_left ? len - i : (size_t)m->chunk_left;
            m->chunk_left -= take;
            i += take;
            if (m->chunk_left == 0) st = CK_DATA_CR;
            continue;
        }
        st = http_chunk_step(m, st, (unsigned char)data[i++]);
        if (st < 0) return -1;
    }
    m->chunk_state = (uint8_t)st;
    return (long)i;
}

/* --- parsing entry points ---------------------------------------------- */

/* Turns an llhttp error into a status. Requests: 400, or 505 for a version
 * llhttp does not know; responses: 502. */
static int http_llhttp_error(struct http_msg *m, llhttp_errno_t err) {
    if (!m->is_request) return http_msg_fail(m, 502, "malformed response from upstream");
    if (err == HPE_INVALID_VERSION) return http_msg_fail(m, 505, "HTTP version not supported");
    if (err == HPE_INVALID_METHOD) return http_msg_fail(m, 400, "unknown method");
    /* llhttp's reason is a static string that names the cause in words
     * ("Content-Length can't be present with Transfer-Encoding"); its
     * error name (HPE_...) is only the fallback. */
    const char *why = llhttp_get_error_reason(&m->parser);
    return http_msg_fail(m, 400, why && *why ? why : llhttp_errno_name(err));
}

int http_parse_head(struct http_msg *m, const char *base, size_t from, size_t to) {
    m->base = base;
    llhttp_errno_t err = llhttp_execute(&m->parser, base + from, to - from);
    if (err == HPE_OK) return HTTP_MORE;
    if (err != HPE_PAUSED || m->error_status) {
        if (!m->error_status) http_llhttp_error(m, err);
        return HTTP_ERROR;
    }
    const char *stop = llhttp_get_error_pos(&m->parser);
    m->head_end = (uint32_t)(stop - base);
    if (m->too_many)
        return http_msg_fail(m, m->is_request ? 431 : 502, "too many header fields"), HTTP_ERROR;
    m->head_start = 0;
    while (m->head_start + 1 < m->head_end && base[m->head_start] == '\r' &&
           base[m->head_start + 1] == '\n')
        m->head_start += 2;
    m->minor = llhttp_get_http_minor(&m->parser);
    m->method = llhttp_get_method(&m->parser);
    m->status = (uint16_t)llhttp_get_status_code(&m->parser);
    if (llhttp_get_http_major(&m->parser) != 1)
        return http_msg_fail(m, m->is_request ? 505 : 502, "HTTP version not supported"),
               HTTP_ERROR;
    for (unsigned i = 0; i < m->nfields; i++) {
        http_trim(m, &m->fields[i].value);
        http_classify(m, &m->fields[i]);
    }
    if (http_check_lines(m) < 0) return HTTP_ERROR;
    if ((m->is_request ? http_check_request(m) : http_check_response(m)) < 0) return HTTP_ERROR;
    m->head_done = true;
    llhttp_resume(&m->parser);
    return HTTP_DONE;
}

int http_parse_body(struct http_msg *m, const char *data, size_t len, size_t *consumed) {
    *consumed = 0;
    if (m->message_done) return HTTP_DONE;
    bool chunked = m->chunked && !(m->parser.flags & F_SKIPBODY);
    long own = chunked ? http_chunk_scan(m, data, len) : 0;
    if (own < 0)
        return http_msg_fail(m, http_bad(m), m->is_request ? "bad chunked framing in request body"
                                                       : "bad chunked framing in response body"),
               HTTP_ERROR;
    llhttp_errno_t err = llhttp_execute(&m->parser, data, len);
    if (err == HPE_OK) {
        *consumed = len;
        if (chunked && (size_t)own != len) /* ferry saw the end, llhttp did not */
            return http_msg_fail(m, http_bad(m), "ambiguous chunked framing"), HTTP_ERROR;
        return HTTP_MORE;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        *consumed = (size_t)(llhttp_get_error_pos(&m->parser) - data);
        m->upgraded = err == HPE_PAUSED_UPGRADE;
        if (!m->message_done) m->message_done = true; /* upgrade without a message end */
        if (chunked && ((size_t)own != *consumed || m->chunk_state != CK_DONE))
            return http_msg_fail(m, http_bad(m), "ambiguous chunked framing"), HTTP_ERROR;
        return HTTP_DONE;
    }
    if (!m->error_status)
        http_msg_fail(m, m->is_request ? 400 : 502,
                  m->is_request ? "bad request body framing" : "bad response body framing");
    return HTTP_ERROR;
}

int http_parse_eof(struct http_msg *m) {
    if (m->message_done) return HTTP_DONE;
    llhttp_errno_t err = llhttp_finish(&m->parser);
    if ((err == HPE_OK || err == HPE_PAUSED) && m->message_done) return HTTP_DONE;
    return http_msg_fail(m, 502, "upstream closed mid-message"), HTTP_ERROR;
}

bool http_msg_needs_eof(const struct http_msg *m) {
    return llhttp_message_needs_eof(&m->parser) != 0;
}

bool http_msg_has_body(const struct http_msg *m) {
    if (m->message_done || (m->parser.flags & F_SKIPBODY)) return false;
    return m->chunked || m->content_length > 0 || http_msg_needs_eof(m);
}

int http_normalise_path(struct http_msg *m, char *base) {
    size_t len = m->path.len;
    const char *why = http_path_normalise(base + m->path.off, &len);
    if (why) return http_msg_fail(m, 400, why);
    m->path.len = (uint32_t)len;
    return 0;
}

bool http_msg_is_head(const struct http_msg *m) {
    if (m->head_done) return m->method == HTTP_HEAD;
    /* Mid-head: the method is known once the target has begun. */
    return m->target.len > 0 && m->method_text.len == 4 &&
           memcmp(m->base + m->method_text.off, "HEAD", 4) == 0;
}

bool http_method_idempotent(uint8_t method) {
    switch (method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_OPTIONS:
    case HTTP_PUT:
    case HTTP_DELETE:
    case HTTP_TRACE: return true;
    default: return false;
    }
}
