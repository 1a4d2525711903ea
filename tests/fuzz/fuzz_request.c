/* fuzz_request: a client's raw bytes through what the proxy does with them.
 *
 * Input: byte 0 picks a split point, the rest is what the client sent.
 * Each request in it (pipelined ones re-based to start at base[0], as
 * conn_http.c does) is parsed like the proxy: http_parse_head over the
 * buffer, then http_parse_body over what follows the head. An accepted head
 * has its path normalised in place (http_normalise_path, as http_dispatch
 * does), is routed (route_match on the FUZZ_ROUTES table) and rewritten
 * (http_build_request); the bytes ferry would send upstream are that head
 * plus the raw body bytes http_parse_body consumed.
 *
 * Properties (abort on violation):
 *  - smuggling: the upstream bytes parse again, with a fresh strict parser,
 *    as exactly ONE request, HTTP/1.1, with the same method, the target
 *    expected (origin-form, the path normalised by fuzz_ref_normalise,
 *    after strip_prefix, the query as sent), the same Host, the same framing
 *    (chunked or Content-Length and its value) and the same decoded body,
 *    consuming every byte: nothing left over, nothing missing. A body that
 *    is still incomplete must leave the reparse incomplete too.
 *  - feeding the bytes in two reads (split from byte 0) gives the verdict
 *    of feeding them whole: same result, head end, bytes consumed, status.
 *  - a refusal has a status ferry can send, and its error response parses;
 *    a path is refused (400) exactly when the reference refuses it. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "ferry/http.h"
#include "fuzz_common.h"

#define OUT_CAP       (64 * 1024 - 256) /* CONN_BLOCK_DATA_SIZE */
#define MAX_PIPELINED 4

/* What one pass over one request found. */
struct outcome {
    int head;          /* http_parse_head's last result */
    uint32_t head_end; /* when head == HTTP_DONE */
    int body;          /* http_parse_body's last result; HTTP_MORE when not reached */
    size_t consumed;   /* body bytes that belong to the request */
    int status;        /* error_status */
    bool upgraded;
};

/* Big (100 fields each): static, not on the stack. */
static struct http_msg msg, split_msg, again, decoded;

static void run_body(struct http_msg *m, const char *buf, size_t len, size_t split,
                     struct outcome *o) {
    size_t he = m->head_end, used = 0;
    o->body = HTTP_MORE;
    o->consumed = 0;
    if (split > he && split < len) {
        o->body = http_parse_body(m, buf + he, split - he, &used);
        o->consumed = used;
        if (o->body != HTTP_MORE) return;
        he = split;
    }
    o->body = http_parse_body(m, buf + he, len - he, &used);
    o->consumed += used;
}

/* Parses one request at BUF[0, LEN) in one read, or in two when SPLIT is
 * inside it. */
static void run_one(struct http_msg *m, const char *buf, size_t len, size_t split,
                    struct outcome *o) {
    memset(o, 0, sizeof(*o));
    http_msg_init(m, true, false);
    if (split > 0 && split < len) {
        o->head = http_parse_head(m, buf, 0, split);
        if (o->head == HTTP_MORE) o->head = http_parse_head(m, buf, split, len);
    } else {
        o->head = http_parse_head(m, buf, 0, len);
    }
    o->body = HTTP_MORE;
    if (o->head == HTTP_DONE) {
        FUZZ_CHECK(m->head_done && m->head_end <= len, "head end inside the buffer");
        o->head_end = m->head_end;
        run_body(m, buf, len, split, o);
        FUZZ_CHECK(o->consumed <= len - m->head_end, "body consumed past the buffer");
        o->upgraded = m->upgraded;
    }
    o->status = m->error_status;
    if (o->head == HTTP_ERROR || o->body == HTTP_ERROR) {
        int s = m->error_status;
        FUZZ_CHECK(s == 400 || s == 413 || s == 431 || s == 505, "refusal status");
        FUZZ_CHECK(m->error_text != NULL, "refusal names a cause");
    }
}

static bool same_outcome(const struct outcome *a, const struct outcome *b) {
    if (a->head != b->head || a->status != b->status) return false;
    if (a->head != HTTP_DONE) return true;
    /* After a body error, what was consumed before it depends on the reads. */
    return a->head_end == b->head_end && a->body == b->body &&
           (a->body == HTTP_ERROR || a->consumed == b->consumed) && a->upgraded == b->upgraded;
}

/* The target as the upstream must see it, worked out on its own from the
 * target T[0, N) as the client sent it: origin-form (an absolute-form
 * target loses scheme and authority), the path normalised by the
 * reference, the route's prefix stripped, "/" for an empty path, the query
 * as sent. */
static size_t expected_target(const struct http_msg *m, const char *t, size_t n,
                              const struct config_route *r, char *out, size_t cap) {
    size_t i = 0;
    if (n == 1 && t[0] == '*') {
        out[0] = '*';
        return 1;
    }
    if (t[0] != '/') {
        const char *sep = memchr(t, ':', n);
        FUZZ_CHECK(sep && (size_t)(sep - t) + 3 <= n && sep[1] == '/' && sep[2] == '/',
                   "accepted non-origin target is absolute-form");
        i = (size_t)(sep - t) + 3;
        while (i < n && t[i] != '/' && t[i] != '?')
            i++;
    }
    size_t q = i;
    while (q < n && t[q] != '?')
        q++;
    static char norm[OUT_CAP]; /* the head fitted in OUT_CAP: so does its path */
    FUZZ_CHECK(q - i <= sizeof(norm), "path fits");
    long ref = fuzz_ref_normalise(t + i, q - i, norm);
    FUZZ_CHECK(ref >= 0, "a path the proxy accepted, the reference accepts");
    const char *path = norm;
    size_t path_len = (size_t)ref;
    FUZZ_CHECK(path_len == m->path.len && memcmp(path, http_span_ptr(m, m->path), path_len) == 0,
               "the proxy's path is the target's path, normalised");
    if (r && r->strip_prefix && !r->path_exact) {
        size_t plen = strlen(r->path);
        if (plen && r->path[plen - 1] == '/') plen--;
        FUZZ_CHECK(plen <= path_len && memcmp(path, r->path, plen) == 0,
                   "a routed path starts with the route's prefix");
        path += plen;
        path_len -= plen;
    }
    size_t len = 0;
    if (path_len == 0) out[len++] = '/';
    FUZZ_CHECK(len + path_len + (n - q) <= cap, "target fits");
    memcpy(out + len, path, path_len);
    len += path_len;
    memcpy(out + len, t + q, n - q);
    return len + (n - q);
}

/* The decoded body of the request at BUF[0, LEN), whose body is its last
 * BODY_LEN bytes: a fresh parse of a copy in COPY with compaction on, which
 * leaves the decoded bytes at COPY + head end. Returns their length. */
static size_t decoded_body(const char *buf, size_t len, size_t body_len, char *copy) {
    memcpy(copy, buf, len);
    http_msg_init(&decoded, true, false);
    FUZZ_CHECK(http_parse_head(&decoded, copy, 0, len) == HTTP_DONE, "reparse of a copy");
    decoded.compact = true;
    decoded.compact_to = copy + decoded.head_end;
    decoded.compact_len = 0;
    size_t used = 0;
    int r = http_parse_body(&decoded, copy + decoded.head_end, body_len, &used);
    FUZZ_CHECK(r != HTTP_ERROR && used == body_len, "reparse of a copy consumes the same");
    return decoded.compact_len;
}

/* Header lines in a head ferry built (every line but the first and the
 * blank one). */
static size_t forwarded_fields(const char *head, size_t n) {
    size_t lines = 0;
    for (size_t i = 0; i + 1 < n; i++)
        lines += head[i] == '\r' && head[i + 1] == '\n';
    return lines - 2;
}

/* The smuggling guarantee for one accepted request M at BUF (its body
 * result and bytes in O), whose target was SENT[0, SENT_LEN) before its
 * path was normalised. */
static void check_forward(const struct http_msg *m, const char *buf, const struct outcome *o,
                          const char *sent, size_t sent_len) {
    const struct fuzz_routes *fr = fuzz_routes();
    struct http_span host = m->host >= 0 ? m->fields[m->host].value : (struct http_span){0, 0};
    const struct config_route *route =
        route_match(fr->table, http_span_ptr(m, host), host.len, http_span_ptr(m, m->path),
                    m->path.len, http_span_ptr(m, m->method_text), m->method_text.len);
    struct http_request_rewrite rw = {
        .route = route,
        .client_addr = "192.0.2.7",
        .proto = "http",
        .request_id = "0123456789abcdef0123456789abcdef",
        .default_host = "127.0.0.1:3000",
    };
    static char head[OUT_CAP];
    size_t n = http_build_request(head, sizeof(head), m, &rw);
    if (n == 0) return; /* 431: "request head too large to forward" */
    size_t body = o->consumed, total = n + body;
    /* Exact-size heap copies, so ASan sees any read past the end. */
    char *fwd = malloc(total ? total : 1), *copy = malloc(total ? total : 1);
    char *orig = malloc(m->head_end + body ? m->head_end + body : 1);
    FUZZ_CHECK(fwd && copy && orig, "memory");
    memcpy(fwd, head, n);
    memcpy(fwd + n, buf + m->head_end, body);

    http_msg_init(&again, true, false);
    int r = http_parse_head(&again, fwd, 0, total);
    if (r == HTTP_ERROR && again.error_status == 431 &&
        forwarded_fields(head, n) > HTTP_MAX_FIELDS) {
        /* ferry adds X-Forwarded-* and X-Request-Id to a head that may
         * already hold HTTP_MAX_FIELDS: more than ferry itself would take,
         * but not ambiguous. */
        free(fwd);
        free(copy);
        free(orig);
        return;
    }
    if (r != HTTP_DONE)
        fprintf(stderr, "fuzz: forwarded head refused: %d %s\n--\n%.*s--\n", again.error_status,
                again.error_text ? again.error_text : "(incomplete)", (int)n, fwd);
    FUZZ_CHECK(r == HTTP_DONE, "the forwarded head parses");
    FUZZ_CHECK(again.head_end == n, "the forwarded head ends where ferry's head ends");
    FUZZ_CHECK(again.minor == 1, "forwarded as HTTP/1.1");
    FUZZ_CHECK(again.method == m->method && again.method_text.len == m->method_text.len &&
                   memcmp(http_span_ptr(&again, again.method_text),
                          http_span_ptr(m, m->method_text), m->method_text.len) == 0,
               "same method");
    char want[OUT_CAP];
    size_t want_len = expected_target(m, sent, sent_len, route, want, sizeof(want));
    FUZZ_CHECK(again.target.len == want_len &&
                   memcmp(http_span_ptr(&again, again.target), want, want_len) == 0,
               "same target (normalised, after strip_prefix)");
    FUZZ_CHECK(again.host >= 0, "forwarded with a Host");
    struct http_span h2 = again.fields[again.host].value;
    if (m->host >= 0)
        FUZZ_CHECK(h2.len == host.len &&
                       memcmp(http_span_ptr(&again, h2), http_span_ptr(m, host), host.len) == 0,
                   "same Host");
    else
        FUZZ_CHECK(h2.len == strlen(rw.default_host) &&
                       memcmp(http_span_ptr(&again, h2), rw.default_host, h2.len) == 0,
                   "default Host");
    FUZZ_CHECK(again.chunked == m->chunked, "same framing: chunked");
    FUZZ_CHECK(again.has_length == m->has_length && again.content_length == m->content_length,
               "same framing: Content-Length");
    FUZZ_CHECK(again.upgrade_websocket == m->upgrade_websocket, "same upgrade");

    size_t used = 0;
    r = http_parse_body(&again, fwd + n, body, &used);
    FUZZ_CHECK(r != HTTP_ERROR, "the forwarded body parses");
    FUZZ_CHECK(r == o->body, "the forwarded request ends exactly when the client's did");
    FUZZ_CHECK(used == body, "nothing left over, nothing missing");
    FUZZ_CHECK(again.upgraded == o->upgraded, "same upgrade outcome");
    FUZZ_CHECK(again.body_bytes == m->body_bytes, "same decoded body length");

    /* The decoded bodies, byte for byte. */
    size_t d1 = decoded_body(buf, m->head_end + body, body, orig);
    char *d1p = orig + m->head_end;
    size_t d2 = decoded_body(fwd, total, body, copy);
    FUZZ_CHECK(d1 == d2 && memcmp(d1p, copy + n, d1) == 0, "same decoded body");
    free(fwd);
    free(copy);
    free(orig);
}

/* A refusal is answered with ferry's own response: it must parse. */
static void check_error_response(const struct http_msg *m) {
    static char out[1024];
    /* A HEAD gets the headers only: a body would be read as the next response. */
    struct http_error e = {.status = m->error_status,
                           .detail = m->error_text,
                           .request_id = "0123456789abcdef0123456789abcdef",
                           .date = "Sun, 06 Nov 1994 08:49:37 GMT",
                           .close = true,
                           .head = http_msg_is_head(m)};
    size_t n = http_build_error(out, sizeof(out), &e);
    FUZZ_CHECK(n > 0, "error response fits");
    char *copy = malloc(n);
    FUZZ_CHECK(copy, "memory");
    memcpy(copy, out, n);
    http_msg_init(&again, false, e.head);
    FUZZ_CHECK(http_parse_head(&again, copy, 0, n) == HTTP_DONE, "error response head parses");
    FUZZ_CHECK(again.status == m->error_status && again.has_length, "error response framing");
    size_t used = 0;
    FUZZ_CHECK(http_parse_body(&again, copy + again.head_end, n - again.head_end, &used) ==
                       HTTP_DONE &&
                   used == n - again.head_end,
               "error response body is exactly Content-Length");
    free(copy);
}

/* Normalises the path of the accepted request M at BUF as http_dispatch
 * does, in place, first copying the target as the client sent it to *SENT
 * (the caller frees it) for expected_target. Returns false when the path is
 * refused: then the reference refuses it too, and the 400 parses. */
static bool normalise_path(struct http_msg *m, char *buf, char **sent) {
    *sent = malloc(m->target.len);
    FUZZ_CHECK(*sent, "memory");
    memcpy(*sent, http_span_ptr(m, m->target), m->target.len);
    if (http_normalise_path(m, buf) == 0) return true;
    FUZZ_CHECK(m->error_status == 400 && m->error_text, "a refused path is a 400");
    char *scratch = malloc(m->path.len ? m->path.len : 1);
    FUZZ_CHECK(scratch, "memory");
    const char *path_sent = *sent + (m->path.off - m->target.off);
    FUZZ_CHECK(fuzz_ref_normalise(path_sent, m->path.len, scratch) < 0,
               "a path the proxy refused, the reference refuses");
    free(scratch);
    check_error_response(m);
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    unsigned char pick = data[0];
    size_t len = size - 1;
    /* An exact-size copy: the parser must not read past what arrived. */
    char *buf = malloc(len ? len : 1);
    FUZZ_CHECK(buf, "memory");
    memcpy(buf, data + 1, len);

    size_t pos = 0;
    for (int k = 0; k < MAX_PIPELINED && pos < len; k++) {
        char *req = buf + pos;
        size_t rlen = len - pos;
        struct outcome whole, split;
        run_one(&msg, req, rlen, 0, &whole);
        size_t at = (size_t)((uint64_t)rlen * pick / 255);
        run_one(&split_msg, req, rlen, at, &split);
        /* crashers/request-split-changes-status-431-vs-400 (fixed in
         * 9f4fe38): the 101st field name cut by the read boundary gave 431,
         * whole 400. */
        if (!same_outcome(&whole, &split))
            fprintf(stderr,
                    "fuzz: split at %zu: head %d/%d end %u/%u body %d/%d used %zu/%zu "
                    "status %d/%d (%s / %s)\n",
                    at, whole.head, split.head, whole.head_end, split.head_end, whole.body,
                    split.body, whole.consumed, split.consumed, whole.status, split.status,
                    msg.error_text ? msg.error_text : "-",
                    split_msg.error_text ? split_msg.error_text : "-");
        FUZZ_CHECK(same_outcome(&whole, &split), "two reads give the verdict of one");
        if (whole.head == HTTP_ERROR || whole.body == HTTP_ERROR) {
            check_error_response(&msg);
            break;
        }
        if (whole.head != HTTP_DONE) break;
        char *sent = NULL;
        bool refused = !normalise_path(&msg, req, &sent);
        if (!refused) check_forward(&msg, req, &whole, sent, msg.target.len);
        free(sent);
        if (refused) break;
        if (whole.body != HTTP_DONE || whole.upgraded) break; /* then the rest is a tunnel */
        pos += whole.head_end + whole.consumed;
    }
    free(buf);
    return 0;
}
