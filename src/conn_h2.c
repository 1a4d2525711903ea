/* conn_h2: the HTTP/2 side of a client connection (see h2_internal.h).
 *
 * A connection becomes HTTP/2 on its first read, when ALPN chose h2 or,
 * on an `h2c = on` listener, when its first bytes are the client preface.
 * From then on nghttp2 reads and writes the socket's bytes; this file
 * turns each request stream into a conn of its own (transport_h2.c) and
 * keeps the limits: `h2_max_concurrent_streams`, the header list size
 * (`max_header_size`), and the floods nghttp2 does not stop by itself
 * (resets beyond the streams completed, empty DATA, PRIORITY, SETTINGS
 * and PING in bulk), which end the connection with GOAWAY
 * ENHANCE_YOUR_CALM. A graceful stop sends GOAWAY and lets open streams
 * finish; an idle connection (no stream) closes after idle_timeout.
 *
 * The client is read only while it takes what we send (our queue below
 * PIPE_HIGH_WATER): a client that sends requests and reads no responses
 * stops being read, as on HTTP/1.1. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ferry/config.h"
#include "ferry/log.h"
#include "ferry/pipe.h"
#include "ferry/stats.h"
#include "ferry/transport_tls.h"
#include "ferry/worker_ctx.h"

#include "conn_internal.h"
#include "h2_internal.h"

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_PREFACE_LEN (sizeof(h2_preface) - 1)

/* Flood limits, per FLOOD_WINDOW_MS: far above what a browser sends. */
#define H2_FLOOD_WINDOW_MS 10000
#define H2_FLOOD_LIMIT 200
/* Resets forgiven before "more resets than completed streams" counts. */
#define H2_RESET_SLACK 100
/* The connection's receive window: what all streams together may have
 * sent and their conns not read yet. */
#define H2_CONN_WINDOW (1 << 20)
/* CONTINUATION frames one header block may take; nghttp2's own limit is
 * set above it so that ours, which counts the abuse, comes first. */
#define H2_MAX_CONTINUATIONS 8

_Static_assert(H2_ABUSE_KINDS == STATS_H2_ABUSE, "stats and h2 disagree on abuse kinds");
const char *const h2_abuse_names[H2_ABUSE_KINDS] = {
    "rapid_reset", "continuation", "settings", "ping", "priority", "empty_data", "ack_backlog"};

struct h2_session {
    struct conn *c;              /* the client connection */
    nghttp2_session *ng;
    struct list_node streams;    /* h2_stream.link: every stream not freed */
    unsigned nstreams;           /* streams nghttp2 holds open */
    const uint8_t *pending;      /* output nghttp2 gave that did not fit a block */
    size_t pending_len;
    uint64_t flood_window_start; /* loop ms */
    unsigned flood[H2_ABUSE_KINDS];   /* frames of each kind in this window */
    unsigned resets, completed;
    unsigned continuations;      /* CONTINUATION frames of the header block being read */
    unsigned heads_open;         /* header blocks begun and not ended (header_timeout runs) */
    struct list_node sending;    /* in the worker's h2.sending while a flush is due */
    bool in_flush;               /* inside h2_session_flush */
    bool draining;               /* GOAWAY sent: close when the last stream ends */
    bool done;                   /* nothing more to say: closing once written */
};

static struct h2_session *h2_session_of(const struct conn *c) {
    return c->h2;
}

nghttp2_session *h2_session_ng(struct h2_session *s) {
    return s->ng;
}

/* --- choosing HTTP/2 ------------------------------------------------------- */

bool conn_h2_wanted(const struct conn *c, bool *wait) {
    *wait = false;
    if (c->lcfg->mode != MODE_HTTP) return false;
    if (config_listener_tls(c->lcfg)) return transport_tls_alpn_h2(&c->client_tp);
    if (!c->lcfg->h2c || !c->in) return false;
    size_t n = c->in_len < H2_PREFACE_LEN ? c->in_len : H2_PREFACE_LEN;
    if (memcmp(conn_block_data(c->in), h2_preface, n) != 0) return false;
    if (n < H2_PREFACE_LEN) {
        *wait = true;
        return false;
    }
    return true;
}

/* --- ending ------------------------------------------------------------------ */

/* The connection is over for good: GOAWAY with CODE goes out first. */
static void h2_terminate(struct h2_session *s, uint32_t code, const char *why) {
    if (s->done) return;
    log_debug("conn %p (%s): HTTP/2 session ends: %s", (void *)s->c, CONN_PEER(s->c), why);
    nghttp2_session_terminate_session(s->ng, code);
    s->done = true;
}

static void h2_calm(struct h2_session *s, enum h2_abuse kind) {
    if (s->done) return;
    log_info("%s %s: HTTP/2 connection closed: abuse (%s)", s->c->lcfg->name, CONN_PEER(s->c),
             h2_abuse_names[kind]);
    stat_add(&s->c->lstats->u.listener.h2_abuse[kind], 1);
    h2_terminate(s, NGHTTP2_ENHANCE_YOUR_CALM, h2_abuse_names[kind]);
}

static void h2_flood(struct h2_session *s, enum h2_abuse kind) {
    uint64_t now = uv_now(s->c->ctx->loop);
    if (now - s->flood_window_start >= H2_FLOOD_WINDOW_MS) {
        s->flood_window_start = now;
        memset(s->flood, 0, sizeof(s->flood));
    }
    if (++s->flood[kind] > H2_FLOOD_LIMIT) h2_calm(s, kind);
}

/* --- sending -------------------------------------------------------------- */

static void h2_on_timer(struct wheel_timer *t);
static void h2_head_done(struct h2_session *s, struct h2_stream *st);

static void h2_update(struct h2_session *s) {
    struct conn *c = s->c;
    if (c->closing || c->state == CONN_LINGER) return;
    bool want = !s->done && conn_client_queued(c) < PIPE_HIGH_WATER;
    if (want && conn_read_start(c) < 0) {
        conn_close(c, "read failed");
        return;
    }
    if (!want) conn_read_stop(c);
}

void h2_session_send(struct h2_session *s) {
    struct conn *c = s->c;
    if (c->closing || c->state == CONN_LINGER || s->sending.next != &s->sending) return;
    list_push_front(&c->ctx->h2.sending, &s->sending);
    h2_worker_wake(&c->ctx->h2);
}

static void h2_session_flush(struct h2_session *s) {
    struct conn *c = s->c;
    if (s->in_flush || c->closing || c->state == CONN_LINGER) return;
    s->in_flush = true;
    while (c->client_writes < PIPE_MAX_WRITES && conn_client_queued(c) < PIPE_HIGH_WATER) {
        char *block = buffer_get(&c->ctx->pool);
        if (!block) break;
        char *data = conn_block_data(block);
        size_t len = 0;
        while (len < CONN_BLOCK_DATA_SIZE) {
            if (s->pending_len == 0) {
                ssize_t n = nghttp2_session_mem_send(s->ng, &s->pending);
                if (n < 0) { /* out of memory: nothing sensible can be said any more */
                    buffer_put(&c->ctx->pool, block);
                    s->in_flush = false;
                    conn_close(c, nghttp2_strerror((int)n));
                    return;
                }
                if (n == 0) break;
                s->pending_len = (size_t)n;
            }
            size_t k = s->pending_len < CONN_BLOCK_DATA_SIZE - len ? s->pending_len
                                                                   : CONN_BLOCK_DATA_SIZE - len;
            memcpy(data + len, s->pending, k);
            s->pending += k;
            s->pending_len -= k;
            len += k;
        }
        if (len == 0) {
            buffer_put(&c->ctx->pool, block);
            break;
        }
        if (conn_write(c, true, block, data, len, false) < 0) {
            s->in_flush = false;
            conn_close(c, "write failed");
            return;
        }
    }
    s->in_flush = false;
    if (s->pending_len == 0 && !nghttp2_session_want_read(s->ng) &&
        !nghttp2_session_want_write(s->ng)) {
        conn_linger(c, s->done); /* GOAWAY said, streams over: close once written */
        return;
    }
    h2_update(s);
}

void h2_worker_flush(struct h2_worker *hw) {
    struct list_node batch;
    list_move_all(&hw->sending, &batch);
    while (!list_empty(&batch)) {
        struct h2_session *s = container_of(batch.next, struct h2_session, sending);
        list_remove(&s->sending);
        h2_session_flush(s);
    }
}

/* --- streams ----------------------------------------------------------------- */

static struct h2_stream *h2_stream_get(struct h2_session *s, int32_t id) {
    return nghttp2_session_get_stream_user_data(s->ng, id);
}

static void h2_rst(struct h2_session *s, struct h2_stream *st, uint32_t code) {
    nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, st->id, code);
}

/* Appends "NAME: VALUE\r\n" to the stream's head; false when it would
 * not fit (the request is then too large: 431). */
static bool h2_head_add(struct h2_stream *st, const char *name, size_t nlen, const char *value,
                        size_t vlen) {
    size_t need = nlen + vlen + 4;
    if (st->head_len + need > BUFFER_SIZE - 512) { /* room kept for the request line's move */
        st->head_overflow = true;
        return false;
    }
    char *p = st->head + st->head_len;
    memcpy(p, name, nlen);
    memcpy(p + nlen, ": ", 2);
    memcpy(p + nlen + 2, value, vlen);
    memcpy(p + nlen + 2 + vlen, "\r\n", 2);
    st->head_len += (uint32_t)need;
    return true;
}

static bool h2_is(const uint8_t *name, size_t len, const char *want) {
    return strlen(want) == len && memcmp(name, want, len) == 0;
}

/* Every frame header, CONTINUATIONs included (on_frame_recv never sees
 * those): a header block spread over more than H2_MAX_CONTINUATIONS frames
 * is a CONTINUATION flood (CVE-2024-27316). */
static int h2_on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *user) {
    FERRY_UNUSED(ng);
    struct h2_session *s = user;
    if (hd->type == NGHTTP2_HEADERS) s->continuations = 0;
    if (hd->type == NGHTTP2_CONTINUATION && ++s->continuations > H2_MAX_CONTINUATIONS) {
        h2_calm(s, H2_ABUSE_CONTINUATION);
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

static int h2_on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user) {
    struct h2_session *s = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    struct h2_stream *st = calloc(1, sizeof(*st));
    char *head = st ? buffer_get(&s->c->ctx->pool) : NULL;
    if (!head) {
        free(st);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM INTERNAL_ERROR */
    }
    st->head = head;
    st->id = frame->hd.stream_id;
    st->s = s;
    st->hw = &s->c->ctx->h2;
    st->pool = &s->c->ctx->pool;
    st->ng_open = true;
    list_init(&st->deferred);
    list_push_front(&s->streams, &st->link);
    s->nstreams++;
    nghttp2_session_set_stream_user_data(ng, st->id, st);
    /* A header block must end within header_timeout (HTTP/2 slowloris). */
    s->heads_open++;
    conn_arm(s->c, s->c->lcfg->header_timeout_ms, h2_on_timer);
    return 0;
}

/* One decoded field. nghttp2 has checked it as RFC 9113 8.2 and 8.3 ask
 * (lowercase names, no connection-specific fields, pseudo-fields once and
 * first, their values); CR, LF and NUL are refused here again, as the
 * field becomes a line of an HTTP/1.1 head. */
static int h2_on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                        size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags,
                        void *user) {
    FERRY_UNUSED(ng);
    FERRY_UNUSED(flags);
    struct h2_session *s = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    struct h2_stream *st = h2_stream_get(s, frame->hd.stream_id);
    if (!st || st->bad_field || st->head_overflow) return 0;
    if (memchr(value, '\r', vlen) || memchr(value, '\n', vlen) || memchr(value, '\0', vlen) ||
        memchr(name, '\r', nlen) || memchr(name, '\n', nlen) || memchr(name, '\0', nlen)) {
        st->bad_field = true;
        return 0;
    }
    if (nlen > 0 && name[0] == ':') {
        if (h2_is(name, nlen, ":method")) {
            if (vlen >= sizeof(st->method)) {
                st->bad_field = true;
                return 0;
            }
            memcpy(st->method, value, vlen);
            st->method[vlen] = '\0';
            st->head_request = strcmp(st->method, "HEAD") == 0;
        } else if (h2_is(name, nlen, ":path")) {
            if (vlen > BUFFER_SIZE / 2 || !(st->path = malloc(vlen + 1))) {
                st->head_overflow = true;
                return 0;
            }
            memcpy(st->path, value, vlen);
            st->path_len = (uint32_t)vlen;
        } else if (h2_is(name, nlen, ":authority")) {
            if (vlen >= sizeof(st->authority)) {
                st->head_overflow = true;
                return 0;
            }
            memcpy(st->authority, value, vlen);
            st->authority[vlen] = '\0';
            st->has_authority = true;
        }
        return 0; /* :scheme: the listener says http or https */
    }
    if (h2_is(name, nlen, "cookie")) { /* crumbs join with "; " (RFC 9113 8.2.3) */
        size_t need = st->cookie_len + (st->cookie_len ? 2 : 0) + vlen;
        if (need > BUFFER_SIZE / 2) {
            st->head_overflow = true;
            return 0;
        }
        char *p = realloc(st->cookie, need);
        if (!p) {
            st->head_overflow = true;
            return 0;
        }
        st->cookie = p;
        if (st->cookie_len) {
            memcpy(p + st->cookie_len, "; ", 2);
            st->cookie_len += 2;
        }
        memcpy(p + st->cookie_len, value, vlen);
        st->cookie_len += (uint32_t)vlen;
        return 0;
    }
    if (h2_is(name, nlen, "te")) return 0; /* "trailers" only (nghttp2 checks): not for HTTP/1.1 */
    if (h2_is(name, nlen, "host")) {
        st->has_host = true;
        st->host_off = st->head_len + 6;
        st->host_len = (uint32_t)vlen;
    }
    if (h2_is(name, nlen, "content-length")) st->has_length = true;
    h2_head_add(st, (const char *)name, nlen, (const char *)value, vlen);
    return 0;
}

/* Answers STATUS on the stream itself (the request never becomes a conn). */
static void h2_answer(struct h2_session *s, struct h2_stream *st, const char *status) {
    nghttp2_nv nv[] = {{(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE}};
    if (nghttp2_submit_response(s->ng, st->id, nv, 1, NULL) != 0)
        h2_rst(s, st, NGHTTP2_INTERNAL_ERROR);
}

/* The head is complete: write the HTTP/1.1 request line and framing
 * around the fields, and start the stream's conn. */
static void h2_stream_start(struct h2_session *s, struct h2_stream *st, bool end_stream) {
    h2_head_done(s, st);
    if (st->bad_field || !st->method[0] || (!st->path && strcmp(st->method, "CONNECT") != 0)) {
        h2_rst(s, st, NGHTTP2_PROTOCOL_ERROR);
        return;
    }
    if (st->has_authority && st->has_host &&
        (st->host_len != strlen(st->authority) ||
         strncasecmp(st->head + st->host_off, st->authority, st->host_len) != 0)) {
        h2_rst(s, st, NGHTTP2_PROTOCOL_ERROR); /* RFC 9113 8.3.1: they must agree */
        return;
    }
    if (st->head_overflow) {
        h2_answer(s, st, "431");
        return;
    }
    char line[64 + sizeof(st->authority)];
    int n1 = snprintf(line, sizeof(line), "%s ", st->method);
    const char *target = st->path ? st->path : st->authority;
    size_t tlen = st->path ? st->path_len : strlen(st->authority);
    char tail[80];
    int n2 = snprintf(tail, sizeof(tail), " HTTP/1.1\r\n");
    int n3 = 0;
    char host[sizeof(st->authority) + 16];
    if (st->has_authority && !st->has_host)
        n3 = snprintf(host, sizeof(host), "host: %s\r\n", st->authority);
    size_t prefix = (size_t)n1 + tlen + (size_t)n2 + (size_t)n3;
    bool chunked = !st->has_length && !end_stream;
    size_t suffix = (st->cookie_len ? st->cookie_len + 10 : 0) + (chunked ? 28 : 0) + 2;
    if (st->head_len + prefix + suffix > BUFFER_SIZE) {
        h2_answer(s, st, "431");
        return;
    }
    memmove(st->head + prefix, st->head, st->head_len);
    char *p = st->head;
    memcpy(p, line, (size_t)n1);
    memcpy(p + n1, target, tlen);
    memcpy(p + n1 + tlen, tail, (size_t)n2);
    memcpy(p + n1 + tlen + n2, host, (size_t)n3);
    st->head_len += (uint32_t)prefix;
    p = st->head + st->head_len;
    if (st->cookie_len) {
        memcpy(p, "cookie: ", 8);
        memcpy(p + 8, st->cookie, st->cookie_len);
        memcpy(p + 8 + st->cookie_len, "\r\n", 2);
        p += st->cookie_len + 10;
    }
    if (chunked) {
        memcpy(p, "transfer-encoding: chunked\r\n", 28);
        p += 28;
    }
    memcpy(p, "\r\n", 2);
    p += 2;
    st->head_len = (uint32_t)(p - st->head);
    st->in_end = end_stream;
    st->has_length = !chunked; /* no body at all reads like a zero length */
    free(st->cookie);
    st->cookie = NULL;
    st->cookie_len = 0;
    free(st->path);
    st->path = NULL;

    struct conn *pc = conn_stream_new(s->c);
    if (!pc) {
        h2_rst(s, st, NGHTTP2_REFUSED_STREAM);
        return;
    }
    st->pc = pc;
    h2_stream_transport_init(st, &pc->client_tp, &pc->client.stream);
    pc->proto->start(pc);
}

static int h2_on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user) {
    FERRY_UNUSED(ng);
    struct h2_session *s = user;
    struct h2_stream *st = frame->hd.stream_id ? h2_stream_get(s, frame->hd.stream_id) : NULL;
    bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (!st) return 0;
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            h2_stream_start(s, st, end);
        } else if (end) { /* trailers: dropped (HTTP/1.1 upstreams get none) */
            st->in_end = true;
            h2_stream_input(st);
        }
        return 0;
    case NGHTTP2_DATA:
        if (frame->hd.length == 0 && !end) h2_flood(s, H2_ABUSE_EMPTY_DATA);
        if (st && end) {
            st->in_end = true;
            h2_stream_input(st);
        }
        return 0;
    case NGHTTP2_RST_STREAM:
        if (++s->resets > H2_RESET_SLACK && s->resets > s->completed)
            h2_calm(s, H2_ABUSE_RAPID_RESET);
        return 0;
    case NGHTTP2_PRIORITY:
        h2_flood(s, H2_ABUSE_PRIORITY);
        return 0;
    case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) h2_flood(s, H2_ABUSE_SETTINGS);
        return 0;
    case NGHTTP2_PING:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) h2_flood(s, H2_ABUSE_PING);
        return 0;
    default:
        return 0;
    }
}

static int h2_on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                            size_t len, void *user) {
    FERRY_UNUSED(flags);
    struct h2_session *s = user;
    struct h2_stream *st = h2_stream_get(s, id);
    /* The connection's window opens at once: what a stream may hold back is
     * bounded by its own window, and a stream that stops reading (a reset,
     * a slow upstream) must not shut every other stream's uploads. */
    nghttp2_session_consume_connection(ng, len);
    if (!st || !st->conn_open || st->closing || st->read_failed) { /* nobody reads it */
        nghttp2_session_consume_stream(ng, id, len);
        return 0;
    }
    if (!st->body && !(st->body = buffer_get(st->pool))) {
        nghttp2_session_consume_stream(ng, id, len);
        h2_rst(s, st, NGHTTP2_INTERNAL_ERROR);
        return 0;
    }
    if (st->body_off > 0 && st->body_len + len > BUFFER_SIZE) {
        memmove(st->body, st->body + st->body_off, st->body_len - st->body_off);
        st->body_len -= st->body_off;
        st->body_off = 0;
    }
    if (st->body_len + len > BUFFER_SIZE) { /* beyond the window we gave */
        h2_rst(s, st, NGHTTP2_FLOW_CONTROL_ERROR);
        return 0;
    }
    memcpy(st->body + st->body_len, data, len);
    st->body_len += (uint32_t)len;
    h2_stream_input(st);
    return 0;
}

/* A stream whose response ended before its request did gets RST_STREAM
 * NO_ERROR once the response's last frame is out (RFC 9113 8.1): sooner
 * would cut the response the client has not received yet. */
static int h2_on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *user) {
    FERRY_UNUSED(ng);
    struct h2_session *s = user;
    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM) ||
        (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS))
        return 0;
    struct h2_stream *st = h2_stream_get(s, frame->hd.stream_id);
    if (!st) return 0;
    st->end_sent = true;
    if (st->rst_after_end) h2_rst(s, st, NGHTTP2_NO_ERROR);
    return 0;
}

static int h2_on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user) {
    struct h2_session *s = user;
    struct h2_stream *st = h2_stream_get(s, id);
    if (!st) return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    st->ng_open = false;
    s->nstreams--;
    h2_head_done(s, st);
    if (code == NGHTTP2_NO_ERROR && st->resp_done)
        s->completed++;
    else
        h2_stream_fail(st, UV_ECONNRESET);
    list_remove(&st->link);
    st->s = NULL;
    if (!st->conn_open) h2_stream_free(st);
    if (s->nstreams == 0 && !s->c->closing) {
        if (s->draining)
            h2_terminate(s, NGHTTP2_NO_ERROR, "drained");
        else
            conn_arm(s->c, s->c->lcfg->idle_timeout_ms, h2_on_timer);
    }
    return 0;
}

void h2_session_stream_closed(struct h2_session *s, struct h2_stream *st, bool reset) {
    if (!st->ng_open) return;
    if (reset)
        h2_rst(s, st, NGHTTP2_INTERNAL_ERROR);
    else if (!st->in_end && st->end_sent)
        h2_rst(s, st, NGHTTP2_NO_ERROR); /* answered before the whole body came */
    else if (!st->in_end)
        st->rst_after_end = true; /* RFC 9113 8.1: once the response is all out */
    h2_session_send(s);
}

void h2_session_consumed(struct h2_session *s, struct h2_stream *st, size_t n) {
    nghttp2_session_consume_stream(s->ng, st->id, n);
    h2_session_send(s);
}

/* A header block begun and not ended within header_timeout, or no stream
 * for idle_timeout: GOAWAY, then close. */
static void h2_on_timer(struct wheel_timer *t) {
    struct conn *c = container_of(t, struct conn, timer);
    struct h2_session *s = h2_session_of(c);
    if (s->heads_open > 0)
        h2_terminate(s, NGHTTP2_NO_ERROR, "a header block not ended within header_timeout");
    else if (s->nstreams == 0)
        h2_terminate(s, NGHTTP2_NO_ERROR, "idle_timeout");
    else
        return;
    h2_session_send(s);
}

/* A header block ended (or its stream did): the next clock is the idle
 * one when nothing else is open. */
static void h2_head_done(struct h2_session *s, struct h2_stream *st) {
    if (st->head_done) return;
    st->head_done = true;
    if (--s->heads_open > 0) return;
    if (s->nstreams == 0)
        conn_arm(s->c, s->c->lcfg->idle_timeout_ms, h2_on_timer);
    else
        wheel_stop(&s->c->ctx->wheel, &s->c->timer);
}

void h2_stream_abort_conn(struct h2_stream *st) {
    if (st->pc && !st->closing) conn_abort(st->pc, "stream reset by the client");
}

/* --- the conn protocol --------------------------------------------------------- */

void conn_h2_takeover(struct conn *c) {
    struct h2_session *s = calloc(1, sizeof(*s));
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    if (!s || nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0) {
        free(s);
        nghttp2_session_callbacks_del(cbs);
        conn_close(c, "out of memory for HTTP/2");
        return;
    }
    nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, h2_on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, h2_on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, h2_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, h2_on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, h2_on_frame_send);
    /* The windows open as the stream's conn reads (h2_session_consumed). */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
    nghttp2_option_set_max_continuations(opt, 2 * H2_MAX_CONTINUATIONS);
    s->c = c;
    list_init(&s->streams);
    list_init(&s->sending);
    s->flood_window_start = uv_now(c->ctx->loop);
    int r = nghttp2_session_server_new2(&s->ng, cbs, s, opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    if (r != 0) {
        free(s);
        conn_close(c, "out of memory for HTTP/2");
        return;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->lcfg->h2_max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 65535},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)c->lcfg->max_header_size},
    };
    nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, FERRY_ARRAY_LEN(iv));
    nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW);
    stat_add(&c->lstats->u.listener.h2_connections, 1);
    c->h2 = s;
    c->proto = &conn_proto_h2;
    conn_set_state(c, CONN_H2);
    conn_arm(c, c->lcfg->idle_timeout_ms, h2_on_timer);
    /* What came so far is the start of the session. */
    if (c->in_len > 0) {
        ssize_t n = nghttp2_session_mem_recv(s->ng, (const uint8_t *)conn_block_data(c->in),
                                             c->in_len);
        c->in_len = 0;
        if (n < 0) h2_terminate(s, NGHTTP2_PROTOCOL_ERROR, nghttp2_strerror((int)n));
    }
    buffer_put(&c->ctx->pool, c->in);
    c->in = NULL;
    h2_session_send(s);
}

void conn_h2_drain(struct conn *c) {
    struct h2_session *s = h2_session_of(c);
    if (s->draining || s->done) return;
    s->draining = true;
    nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
    if (s->nstreams == 0) h2_terminate(s, NGHTTP2_NO_ERROR, "drained");
    h2_session_send(s);
}

static void h2_start(struct conn *c) {
    FERRY_UNUSED(c); /* never: a connection becomes HTTP/2 by conn_h2_takeover() */
    assert(0);
}

static void h2_refuse(struct conn *c, const char *why) {
    conn_close(c, why);
}

static void h2_alloc(struct conn *c, uv_buf_t *out) {
    if (!c->in) c->in = buffer_get(&c->ctx->pool);
    *out = c->in ? uv_buf_init(conn_block_data(c->in), CONN_BLOCK_DATA_SIZE) : uv_buf_init(NULL, 0);
}

static void h2_on_read(struct conn *c, ssize_t nread, const uv_buf_t *buf) {
    struct h2_session *s = h2_session_of(c);
    if (nread == 0 || nread == UV_ENOBUFS) return;
    if (nread < 0) {
        conn_close(c, nread == UV_EOF ? "client closed" : uv_strerror((int)nread));
        return;
    }
    stat_add(&c->ctx->wstats->u.worker.bytes_in, (uint64_t)nread);
    ssize_t n = nghttp2_session_mem_recv(s->ng, (const uint8_t *)buf->base, (size_t)nread);
    /* nghttp2 keeps what it needs of a partial frame: an idle connection
     * holds no read block. */
    buffer_put(&c->ctx->pool, c->in);
    c->in = NULL;
    if (n < 0) {
        if (n == NGHTTP2_ERR_FLOODED)
            h2_calm(s, H2_ABUSE_ACK_BACKLOG);
        else if (n == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS)
            h2_calm(s, H2_ABUSE_CONTINUATION);
        else
            h2_terminate(s, NGHTTP2_PROTOCOL_ERROR, nghttp2_strerror((int)n));
    }
    if (!c->closing) h2_session_send(s);
}

static void h2_on_write_done(struct conn *c, bool to_client, int status) {
    FERRY_UNUSED(to_client);
    FERRY_UNUSED(status);
    struct h2_session *s = h2_session_of(c);
    if (!c->closing) h2_session_send(s);
}

/* The client connection ends: every stream still open ends with it. */
static void h2_on_close(struct conn *c) {
    struct h2_session *s = h2_session_of(c);
    while (!list_empty(&s->streams)) {
        struct h2_stream *st = container_of(s->streams.next, struct h2_stream, link);
        list_remove(&st->link);
        st->s = NULL;
        st->ng_open = false;
        h2_stream_fail(st, UV_ECONNRESET);
        if (!st->conn_open) h2_stream_free(st);
    }
    list_remove(&s->sending);
    nghttp2_session_del(s->ng);
    s->ng = NULL;
}

static void h2_free(struct conn *c) {
    free(c->h2);
    c->h2 = NULL;
}

const struct conn_proto conn_proto_h2 = {
    .name = "h2",
    .start = h2_start,
    .refuse = h2_refuse,
    .alloc = h2_alloc,
    .on_read = h2_on_read,
    .on_write_done = h2_on_write_done,
    .on_close = h2_on_close,
    .free = h2_free,
};
