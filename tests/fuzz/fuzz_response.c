/* fuzz_response: an upstream's raw bytes through what the proxy does with
 * them.
 *
 * Input: byte 0 holds flags (bit 0: the request was HEAD; bit 1: the
 * upstream closes after these bytes), byte 1 splits the body into two
 * reads, the rest is what the upstream sent. As conn_http.c does: parse the
 * head (http_msg_init(false, head_request)); a 1xx other than 101 is passed
 * on and the next head parsed from the bytes after it; on the final head,
 * build the client's head with http_build_response for an HTTP/1.1 client
 * and for an HTTP/1.0 one (a chunked body is then de-chunked: compaction
 * on, Transfer-Encoding dropped), and parse the body read by read.
 *
 * Properties (abort on violation):
 *  - a refusal is a 502 with a cause;
 *  - HTTP/1.1 client: the head ferry sends plus the raw body bytes parse
 *    again as exactly one response with the same status and framing, that
 *    ends when the upstream's did, with nothing left over;
 *  - HTTP/1.0 client: what the compaction leaves, read after read, is the
 *    concatenation of the chunks' data (checked against a reference
 *    de-chunker in this file), and the head ferry sends parses and carries
 *    no Transfer-Encoding and no Content-Length. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "ferry/http.h"
#include "ferry/http_rewrite.h"
#include "fuzz_common.h"

#define OUT_CAP     (64 * 1024 - 256) /* CONN_BLOCK_DATA_SIZE */
#define MAX_INTERIM 4                 /* 1xx heads before the final one */

static struct http_msg msg, again;

/* The chunks' data of a chunked body's first LEN bytes, which a strict
 * parser accepted (so: hex size, extensions free of CR, CRLF, data, CRLF;
 * a zero size, trailers, CRLF). Stops where LEN ends, mid-chunk included.
 * Returns the bytes written to OUT. */
static size_t ref_dechunk(const char *in, size_t len, char *out) {
    size_t i = 0, n = 0;
    while (i < len) {
        uint64_t size = 0;
        while (i < len && in[i] != ';' && in[i] != '\r') {
            char c = in[i++];
            int v = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            FUZZ_CHECK(v >= 0, "reference: chunk size is hex");
            size = size * 16 + (uint64_t)v;
        }
        while (i < len && in[i] != '\n')
            i++;                 /* extensions, CR */
        i++;                     /* LF */
        if (size == 0) return n; /* trailers carry no data */
        size_t take = len > i ? (len - i < size ? len - i : (size_t)size) : 0;
        memcpy(out + n, in + i, take);
        n += take;
        i += take + 2; /* data, CRLF */
    }
    return n;
}

/* The client's head for M, checked to parse back as a response head;
 * returns its length, 0 when it did not fit (ferry answers 502) or has more
 * fields than a reparse takes. */
static size_t build_client_head(const struct http_msg *m, bool http10, char *out) {
    const struct fuzz_routes *fr = fuzz_routes();
    /* rewrite_redirects as a stripped route has it: the Location,
     * Content-Location and Set-Cookie values are rewritten in place in the
     * head being built, so the reparse checks that they stay one field. */
    static const struct http_rewrite redirects = {
        .scheme = "https", .host = "fuzz.test", .host_len = 9, .prefix = "/api",
        .prefix_len = 4, .up_host = "127.0.0.1", .up_port = 8002};
    struct http_response_rewrite rw = {
        .redirects = &redirects,
        .route = &fr->cfg->routes[0], /* one with add_response_header */
        .request_id = "0123456789abcdef0123456789abcdef",
        .client_minor = http10 ? 0 : 1,
        .close = http10,
        .dechunk = http10 && m->chunked,
    };
    size_t n = http_build_response(out, OUT_CAP, m, &rw);
    if (n == 0) return 0;
    char *copy = malloc(n);
    FUZZ_CHECK(copy, "memory");
    memcpy(copy, out, n);
    http_msg_init(&again, false, m->head_request);
    int r = http_parse_head(&again, copy, 0, n);
    size_t lines = 0;
    for (size_t i = 0; i + 1 < n; i++)
        lines += out[i] == '\r' && out[i + 1] == '\n';
    if (r == HTTP_ERROR && again.error_status == 502 && lines - 2 > HTTP_MAX_FIELDS) {
        /* X-Request-Id and the route's headers on top of HTTP_MAX_FIELDS:
         * more than ferry would take itself, but not ambiguous. Not
         * checkable by reparsing: reported as not built. */
        free(copy);
        return 0;
    }
    if (r != HTTP_DONE)
        fprintf(stderr, "fuzz: client head refused: %d %s\n--\n%.*s--\n", again.error_status,
                again.error_text ? again.error_text : "(incomplete)", (int)n, out);
    FUZZ_CHECK(r == HTTP_DONE && again.head_end == n, "the client's head parses, whole");
    FUZZ_CHECK(again.status == m->status, "same status");
    if (rw.dechunk)
        FUZZ_CHECK(!again.chunked && !again.has_length, "de-chunked: no framing header left");
    free(copy);
    return n;
}

/* Parses BODY[0, LEN) in one or two reads (at SPLIT); with COMPACT each
 * read's decoded bytes are gathered into DECODED. Returns the last result;
 * *USED is what belonged to the message. */
static int parse_body(struct http_msg *m, char *body, size_t len, size_t split, bool compact,
                      char *decoded, size_t *decoded_len, size_t *used) {
    size_t at = 0;
    int r = HTTP_MORE;
    *used = 0;
    *decoded_len = 0;
    m->compact = compact;
    for (int read = 0; read < 2 && r == HTTP_MORE; read++) {
        size_t end = read == 0 && split < len ? split : len;
        if (read == 1 && at == len) break;
        size_t got = 0;
        m->compact_to = body + at;
        m->compact_len = 0;
        r = http_parse_body(m, body + at, end - at, &got);
        if (r == HTTP_ERROR) return r;
        FUZZ_CHECK(got <= end - at, "consumed within the read");
        if (compact) {
            FUZZ_CHECK(m->compact_len <= got, "compaction only shrinks");
            memcpy(decoded + *decoded_len, body + at, m->compact_len);
            *decoded_len += m->compact_len;
        }
        *used += got;
        at = end;
    }
    return r;
}

/* The final response M at BUF[0, LEN). */
static void check_final(const char *buf, size_t len, bool head_request, bool eof,
                        unsigned char split_pick) {
    static char head[OUT_CAP];
    struct http_msg *m = &msg;
    size_t blen = len - m->head_end;
    size_t split = (size_t)((uint64_t)blen * split_pick / 255);
    char *copy = malloc(len ? len : 1), *decoded = malloc(blen ? blen : 1),
         *want = malloc(blen ? blen : 1);
    FUZZ_CHECK(copy && decoded && want, "memory");

    /* HTTP/1.1 client: the body goes on as it came. */
    size_t n11 = build_client_head(m, false, head);
    struct http_msg saved = *m; /* the same head, parsed again for the 1.0 pass */
    memcpy(copy, buf, len);
    size_t used = 0, dlen = 0;
    int r = parse_body(m, copy + m->head_end, blen, split, false, NULL, &dlen, &used);
    bool needs_eof = http_msg_needs_eof(m);
    if (r == HTTP_MORE && eof) r = http_parse_eof(m);
    if (r == HTTP_ERROR) FUZZ_CHECK(m->error_status == 502 && m->error_text, "refusal is a 502");
    if (r != HTTP_ERROR && n11 > 0) {
        size_t total = n11 + used;
        char *fwd = malloc(total);
        FUZZ_CHECK(fwd, "memory");
        memcpy(fwd, head, n11);
        memcpy(fwd + n11, buf + m->head_end, used);
        http_msg_init(&again, false, head_request);
        FUZZ_CHECK(http_parse_head(&again, fwd, 0, total) == HTTP_DONE && again.head_end == n11,
                   "client head parses");
        /* A 1xx, 204 or 304 has no body: its framing fields are dropped. */
        bool bodiless = m->status < 200 || m->status == 204 || m->status == 304;
        if (bodiless)
            FUZZ_CHECK(!again.chunked && !again.has_length, "no framing on a bodiless status");
        else
            FUZZ_CHECK(again.chunked == m->chunked && again.has_length == m->has_length &&
                           again.content_length == m->content_length,
                       "same framing");
        size_t used2 = 0;
        int r2 = http_parse_body(&again, fwd + n11, used, &used2);
        FUZZ_CHECK(r2 != HTTP_ERROR && used2 == used, "client body parses, nothing left over");
        if (r2 == HTTP_MORE && r == HTTP_DONE) {
            FUZZ_CHECK(needs_eof && http_msg_needs_eof(&again), "both end at close");
            r2 = http_parse_eof(&again);
        }
        FUZZ_CHECK(r2 == r, "the client's response ends when the upstream's did");
        free(fwd);
    }

    /* HTTP/1.0 client: a chunked body is de-chunked in place. */
    *m = saved;
    m->parser.data = m;
    (void)build_client_head(m, true, head);
    memcpy(copy, buf, len);
    r = parse_body(m, copy + m->head_end, blen, split, m->chunked, decoded, &dlen, &used);
    if (r != HTTP_ERROR && m->chunked && !(m->parser.flags & F_SKIPBODY)) {
        size_t wlen = ref_dechunk(buf + m->head_end, used, want);
        if (wlen != dlen || memcmp(want, decoded, dlen) != 0)
            fprintf(stderr, "fuzz: de-chunked %zu bytes, reference %zu (used %zu, split %zu)\n",
                    dlen, wlen, used, split);
        FUZZ_CHECK(wlen == dlen && memcmp(want, decoded, dlen) == 0,
                   "compaction gives the chunks' data");
        FUZZ_CHECK(dlen == m->body_bytes, "body_bytes counts decoded bytes");
    }
    free(copy);
    free(decoded);
    free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    bool head_request = data[0] & 1, eof = data[0] & 2;
    unsigned char split_pick = data[1];
    size_t len = size - 2;
    char *buf = malloc(len ? len : 1);
    FUZZ_CHECK(buf, "memory");
    memcpy(buf, data + 2, len);
    const char *p = buf;
    size_t left = len;
    for (int k = 0; k <= MAX_INTERIM; k++) {
        /* An exact-size copy of what is left, so overreads show. */
        char *resp = malloc(left ? left : 1);
        FUZZ_CHECK(resp, "memory");
        memcpy(resp, p, left);
        http_msg_init(&msg, false, head_request);
        int r = http_parse_head(&msg, resp, 0, left);
        if (r == HTTP_MORE && eof) {
            FUZZ_CHECK(http_parse_eof(&msg) != HTTP_DONE || msg.head_done,
                       "no message ends inside a head");
        }
        if (r == HTTP_ERROR) {
            /* crashers/response-repeated-framing-status-400 (fixed in e19a331) */
            FUZZ_CHECK(msg.error_status == 502, "a bad response head is a 502");
            FUZZ_CHECK(msg.error_text, "a refusal names its cause");
        } else if (r == HTTP_DONE) {
            /* crashers/response-status-below-100 (fixed in e19a331): llhttp
             * takes 1 or 2 digits ("HTTP/1.1 42 X"); ferry passed it on as an
             * interim "042". */
            FUZZ_CHECK(msg.head_end <= left && msg.status >= 100 && msg.status <= 599,
                       "head within the bytes, status 100..599");
            if (msg.status >= 200)
                check_final(resp, left, head_request, eof, split_pick);
            else if (msg.status == 101) { /* a tunnel (or 502): no more HTTP */
                static char head[OUT_CAP];
                (void)build_client_head(&msg, false, head);
            } else {
                static char head[OUT_CAP];
                (void)build_client_head(&msg, false, head); /* passed on to 1.1 clients */
                p += msg.head_end;
                left -= msg.head_end;
                free(resp);
                continue;
            }
        }
        free(resp);
        break;
    }
    free(buf);
    return 0;
}
