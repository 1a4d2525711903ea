/* transport_h2: an HTTP/2 stream as the byte transport of an HTTP/1.1
 * conn (see h2_internal.h for the picture).
 *
 * Reads give the conn its request: the head conn_h2.c wrote from the
 * stream's fields, then the DATA, framed as chunks when the client gave no
 * content-length, then UV_EOF after END_STREAM (the conn answers, then
 * closes). Each body byte the conn reads opens the stream's window by one
 * byte: flow control is the backpressure of the request body.
 *
 * Writes take the conn's HTTP/1.1 response: its head is parsed (with the
 * parser that reads upstream responses) and submitted as HEADERS, its
 * body decoded into `out`, from which nghttp2 makes DATA frames as the
 * client's window allows. A write completes once `out` has taken all of
 * it; while `out` is full, writes wait, and the conn's own backpressure
 * (PIPE_MAX_WRITES) pauses its upstream.
 *
 * Every callback to the conn runs from the worker's idle callback, never
 * from inside the conn's own call, as libuv's do. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ferry/log.h"

#include "h2_internal.h"

#define H2_BLOCK BUFFER_SIZE

static void h2_stream_run(struct h2_stream *st);

/* --- the worker ----------------------------------------------------------- */

static void h2_on_idle(uv_idle_t *h) {
    struct h2_worker *hw = container_of(h, struct h2_worker, idle);
    /* Only those queued now: a run may queue its stream again. */
    struct list_node batch;
    list_move_all(&hw->deferred, &batch);
    while (!list_empty(&batch)) {
        struct h2_stream *st = container_of(batch.next, struct h2_stream, deferred);
        list_remove(&st->deferred);
        h2_stream_run(st);
    }
    h2_worker_flush(hw);
    if (list_empty(&hw->deferred) && list_empty(&hw->sending)) uv_idle_stop(&hw->idle);
}

void h2_worker_init(struct h2_worker *hw, uv_loop_t *loop) {
    list_init(&hw->deferred);
    list_init(&hw->sending);
    uv_idle_init(loop, &hw->idle);
}

void h2_worker_close(struct h2_worker *hw) {
    uv_close((uv_handle_t *)&hw->idle, NULL);
}

static void h2_stream_defer(struct h2_stream *st) {
    if (st->deferred.next != &st->deferred) return; /* queued already */
    list_push_front(&st->hw->deferred, &st->deferred);
    uv_idle_start(&st->hw->idle, h2_on_idle);
}

void h2_worker_wake(struct h2_worker *hw) {
    uv_idle_start(&hw->idle, h2_on_idle);
}

static struct h2_stream *h2_of(const struct transport *t) {
    return t->stream->data;
}

/* --- reads: the request ---------------------------------------------------- */

static uint32_t h2_copy(char *dst, uint32_t room, const char *src, uint32_t n) {
    uint32_t k = n < room ? n : room;
    memcpy(dst, src, k);
    return k;
}

/* Fills DST[0, ROOM) with the next request bytes; *BODY is how many of
 * them were DATA (they open the window once read). */
static uint32_t h2_fill(struct h2_stream *st, char *dst, uint32_t room, size_t *body) {
    uint32_t n = 0;
    *body = 0;
    if (st->head_sent < st->head_len) {
        uint32_t k = h2_copy(dst, room, st->head + st->head_sent, st->head_len - st->head_sent);
        st->head_sent += k;
        if (st->head_sent == st->head_len) { /* given: the block goes back */
            buffer_put(st->pool, st->head);
            st->head = NULL;
        }
        return k; /* the head alone: its conn reads the body only when it wants it */
    }
    while (n < room) {
        if (st->chunk_line_sent < st->chunk_line_len) { /* framing first */
            uint32_t k = h2_copy(dst + n, room - n, st->chunk_line + st->chunk_line_sent,
                                 (uint32_t)(st->chunk_line_len - st->chunk_line_sent));
            st->chunk_line_sent = (uint8_t)(st->chunk_line_sent + k);
            n += k;
            continue;
        }
        uint32_t avail = st->body_len - st->body_off;
        bool chunked = !st->has_length;
        if (chunked && st->chunk_left == 0) {
            if (st->body_phase == H2_BODY_CHUNK_END) { /* the CRLF after a chunk went out */
                st->body_phase = H2_BODY_DATA;
            }
            if (avail > 0) {
                st->chunk_left = avail;
                st->chunk_line_len = (uint8_t)snprintf(st->chunk_line, sizeof(st->chunk_line),
                                                       "%x\r\n", (unsigned)avail);
                st->chunk_line_sent = 0;
                continue;
            }
            if (st->in_end && !st->last_chunk_sent) {
                st->last_chunk_sent = true;
                st->chunk_line_len = (uint8_t)snprintf(st->chunk_line, sizeof(st->chunk_line),
                                                       "0\r\n\r\n");
                st->chunk_line_sent = 0;
                continue;
            }
            break;
        }
        if (avail == 0) break;
        uint32_t want = chunked && st->chunk_left < avail ? st->chunk_left : avail;
        uint32_t k = h2_copy(dst + n, room - n, st->body + st->body_off, want);
        st->body_off += k;
        n += k;
        *body += k;
        if (st->body_off == st->body_len) st->body_off = st->body_len = 0;
        if (chunked) {
            st->chunk_left -= k;
            if (st->chunk_left == 0) {
                st->body_phase = H2_BODY_CHUNK_END;
                memcpy(st->chunk_line, "\r\n", 2);
                st->chunk_line_len = 2;
                st->chunk_line_sent = 0;
            }
        }
    }
    return n;
}

/* Everything of the request has been given: the next read is UV_EOF. */
static bool h2_request_given(const struct h2_stream *st) {
    if (!st->in_end || st->head_sent < st->head_len) return false;
    if (st->chunk_line_sent < st->chunk_line_len || st->body_len > st->body_off) return false;
    return st->has_length || st->last_chunk_sent;
}

static void h2_end_reading(struct h2_stream *st, int err) {
    struct transport *t = st->t;
    if (!t->reading) return;
    uv_buf_t none = uv_buf_init(NULL, 0);
    t->reading = false;
    t->reader->read(t, err, &none);
}

/* Gives the conn what there is to read, while it reads. */
static void h2_deliver(struct h2_stream *st) {
    struct transport *t = st->t;
    while (t->reading && !st->closing) {
        if (st->read_failed) {
            h2_end_reading(st, st->read_err);
            return;
        }
        if (h2_request_given(st)) {
            if (!st->eof_given) {
                st->eof_given = true;
                h2_end_reading(st, UV_EOF);
            }
            return;
        }
        bool more = st->head_sent < st->head_len || st->chunk_line_sent < st->chunk_line_len ||
                    st->body_len > st->body_off || (st->in_end && !st->has_length);
        if (!more) return;
        uv_buf_t b = uv_buf_init(NULL, 0);
        t->reader->alloc(t, &b);
        if (st->closing) return;
        if (b.len == 0) {
            t->reader->read(t, UV_ENOBUFS, &b);
            return; /* the reader reads again when it has room */
        }
        size_t body = 0;
        uint32_t n = h2_fill(st, b.base, (uint32_t)(b.len > UINT32_MAX ? UINT32_MAX : b.len), &body);
        t->reader->read(t, n, &b);
        if (body && st->s) h2_session_consumed(st->s, st, body);
    }
}

void h2_stream_input(struct h2_stream *st) {
    if (st->conn_open && st->t->reading) h2_stream_defer(st);
}

void h2_stream_fail(struct h2_stream *st, int err) {
    if (!st->read_failed) {
        st->read_failed = true;
        st->read_err = err;
    }
    st->resp_failed = true;
    if (st->conn_open) h2_stream_defer(st);
}

static int h2_read_start(struct transport *t) {
    struct h2_stream *st = h2_of(t);
    t->reading = true;
    h2_stream_defer(st);
    return 0;
}

static void h2_read_stop(struct transport *t) {
    t->reading = false;
}

/* --- writes: the response ---------------------------------------------------- */

/* Fields of an HTTP/1.1 response that mean nothing in HTTP/2 (RFC 9113
 * 8.2.2): a client must treat them as malformed. */
static bool h2_connection_field(const char *name, size_t len) {
    static const char *const drop[] = {"connection", "keep-alive", "proxy-connection",
                                       "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < FERRY_ARRAY_LEN(drop); i++)
        if (strlen(drop[i]) == len && strncasecmp(drop[i], name, len) == 0) return true;
    return false;
}

/* Submits the parsed response head as HEADERS. */
static int h2_submit_head(struct h2_stream *st) {
    const struct http_msg *m = &st->resp;
    nghttp2_nv nv[HTTP_MAX_FIELDS + 1];
    char status[4];
    snprintf(status, sizeof(status), "%03u", (unsigned)m->status % 1000);
    nv[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
    size_t n = 1;
    /* Names go lowercase (RFC 9113 8.2.1), into one buffer as long as the head. */
    char *lower = malloc(st->resp_head_len + 1);
    if (!lower) return NGHTTP2_ERR_NOMEM;
    size_t used = 0;
    for (unsigned i = 0; i < m->nfields; i++) {
        struct http_span name = m->fields[i].name, value = m->fields[i].value;
        const char *np = http_span_ptr(m, name);
        if (h2_connection_field(np, name.len)) continue;
        for (size_t k = 0; k < name.len; k++) {
            char ch = np[k];
            lower[used + k] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
        nv[n++] = (nghttp2_nv){(uint8_t *)lower + used, (uint8_t *)http_span_ptr(m, value),
                               name.len, value.len, NGHTTP2_NV_FLAG_NONE};
        used += name.len;
    }
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = h2_stream_read_data};
    bool body = http_msg_has_body(m);
    int r = nghttp2_submit_response(h2_session_ng(st->s), st->id, nv, n, body ? &prd : NULL);
    free(lower);
    st->submitted = true;
    if (!body) st->resp_done = true;
    return r;
}

/* Body bytes DATA[0, LEN) of the response, taken into `out` decoded.
 * Returns how many were taken. */
static size_t h2_take_body(struct h2_stream *st, const char *data, size_t len) {
    if (st->resp_done) return len; /* nothing may follow a response: dropped */
    if (!st->out && !(st->out = buffer_get(st->pool))) return 0;
    if (st->out_off > 0) {
        memmove(st->out, st->out + st->out_off, st->out_len - st->out_off);
        st->out_len -= st->out_off;
        st->out_off = 0;
    }
    size_t room = H2_BLOCK - st->out_len;
    size_t n = len < room ? len : room;
    if (n == 0) return 0;
    char *at = st->out + st->out_len;
    memcpy(at, data, n);
    st->resp.compact = true;
    st->resp.compact_to = at;
    st->resp.compact_len = 0;
    size_t consumed = 0;
    int r = http_parse_body(&st->resp, at, n, &consumed);
    st->out_len += (uint32_t)st->resp.compact_len;
    if (r == HTTP_ERROR)
        st->resp_failed = true;
    else if (r == HTTP_DONE)
        st->resp_done = true;
    return n;
}

/* Response bytes DATA[0, LEN) as the conn writes them; returns how many
 * were taken (all, unless `out` is full). */
static size_t h2_take(struct h2_stream *st, const char *data, size_t len) {
    size_t taken = 0;
    while (taken < len && !st->resp_failed) {
        if (st->submitted) return taken + h2_take_body(st, data + taken, len - taken);
        if (!st->resp_head && !(st->resp_head = buffer_get(st->pool))) {
            st->resp_failed = true;
            break;
        }
        size_t room = H2_BLOCK - st->resp_head_len;
        size_t n = len - taken < room ? len - taken : room;
        memcpy(st->resp_head + st->resp_head_len, data + taken, n);
        uint32_t from = st->resp_head_len;
        st->resp_head_len += (uint32_t)n;
        taken += n;
        int r = http_parse_head(&st->resp, st->resp_head, from, st->resp_head_len);
        if (r == HTTP_ERROR || (r == HTTP_MORE && st->resp_head_len == H2_BLOCK)) {
            st->resp_failed = true;
            break;
        }
        if (r == HTTP_MORE) continue;
        uint32_t end = st->resp.head_end;
        if (st->resp.status < 200) { /* 100 Continue and the like: HTTP/2 needs none */
            memmove(st->resp_head, st->resp_head + end, st->resp_head_len - end);
            st->resp_head_len -= end;
            http_msg_init(&st->resp, false, st->head_request);
            if (st->resp_head_len > 0) { /* parse what followed it */
                uint32_t rest = st->resp_head_len;
                st->resp_head_len = 0;
                taken -= rest;
            }
            continue;
        }
        if (h2_submit_head(st) != 0) {
            st->resp_failed = true;
            break;
        }
        /* What followed the head belongs to the body. */
        size_t rest = st->resp_head_len - end;
        if (rest > 0) {
            size_t k = h2_take_body(st, st->resp_head + end, rest);
            if (k < rest) { /* `out` is new and empty: it takes a block's worth */
                st->resp_failed = true;
                break;
            }
        }
        buffer_put(st->pool, st->resp_head);
        st->resp_head = NULL;
        st->resp_head_len = 0;
    }
    return st->resp_failed ? len : taken;
}

/* Tells nghttp2 that DATA (or its end) can go, and sends. */
static void h2_kick(struct h2_stream *st) {
    if (!st->s) return;
    nghttp2_session *ng = h2_session_ng(st->s);
    if (st->resp_failed && st->ng_open) {
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    } else if (st->deferred_data && (st->out_len > st->out_off || st->resp_done)) {
        st->deferred_data = false;
        nghttp2_session_resume_data(ng, st->id);
    }
    h2_session_send(st->s);
}

static int h2_write(struct transport *t, struct transport_write *req, const char *data,
                    size_t len, transport_write_cb cb) {
    struct h2_stream *st = h2_of(t);
    if (st->closing || st->resp_failed || !st->s) return UV_EPIPE;
    size_t taken = st->wq_head ? 0 : h2_take(st, data, len);
    if (!st->resp_failed || taken == len) h2_kick(st);
    if (st->resp_failed) return UV_EPIPE;
    if (taken == len) return 0;
    req->t = t;
    req->cb = cb;
    req->u.tls.data = data; /* the same bookkeeping as a write waiting for TLS */
    req->u.tls.len = len;
    req->u.tls.next = NULL;
    if (st->wq_tail)
        st->wq_tail->u.tls.next = req;
    else
        st->wq_head = req;
    st->wq_tail = req;
    if (st->wq_head == req) st->wq_taken = taken;
    st->wq_bytes += len - taken;
    return 1;
}

/* Moves queued writes into `out` as it drains; completes those taken. */
static void h2_pump_writes(struct h2_stream *st) {
    while (st->wq_head && !st->closing) {
        struct transport_write *w = st->wq_head;
        if (st->resp_failed || !st->s) {
            st->wq_head = w->u.tls.next;
            if (!st->wq_head) st->wq_tail = NULL;
            st->wq_bytes -= w->u.tls.len - st->wq_taken;
            st->wq_taken = 0;
            w->cb(w, UV_EPIPE);
            continue;
        }
        size_t left = w->u.tls.len - st->wq_taken;
        size_t k = h2_take(st, w->u.tls.data + st->wq_taken, left);
        st->wq_taken += k;
        st->wq_bytes -= k < left ? k : left;
        if (k < left && !st->resp_failed) break;
        st->wq_head = w->u.tls.next;
        if (!st->wq_head) st->wq_tail = NULL;
        st->wq_taken = 0;
        w->cb(w, 0);
    }
}

static size_t h2_queued(const struct transport *t) {
    const struct h2_stream *st = h2_of(t);
    return (st->out_len - st->out_off) + st->wq_bytes;
}

ssize_t h2_stream_read_data(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *user) {
    FERRY_UNUSED(ng);
    FERRY_UNUSED(id);
    FERRY_UNUSED(user);
    struct h2_stream *st = src->ptr;
    if (st->resp_failed) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    uint32_t avail = st->out_len - st->out_off;
    if (avail == 0 && !st->resp_done) {
        st->deferred_data = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < length ? avail : length;
    memcpy(buf, st->out + st->out_off, n);
    st->out_off += (uint32_t)n;
    if (st->out_off == st->out_len) st->out_off = st->out_len = 0;
    if (st->resp_done && st->out_len == 0 && !st->wq_head) *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (st->wq_head && st->conn_open) h2_stream_defer(st); /* room for more */
    return (ssize_t)n;
}

/* The conn's side ended its response (shutdown or close): a body that
 * runs until close is complete now; anything else unfinished is cut. */
static void h2_response_end(struct h2_stream *st, bool reset) {
    if (st->resp_done || st->resp_failed) return;
    if (!reset && st->submitted && http_msg_needs_eof(&st->resp) &&
        http_parse_eof(&st->resp) == HTTP_DONE)
        st->resp_done = true;
    else
        st->resp_failed = true;
}

static int h2_shutdown(struct transport *t, uv_shutdown_t *req, uv_shutdown_cb cb) {
    struct h2_stream *st = h2_of(t);
    if (st->shut_req || st->closing) return UV_EALREADY;
    h2_pump_writes(st); /* what is queued goes before the end */
    if (!st->wq_head) h2_response_end(st, false);
    st->shut_req = req;
    st->shut_cb = cb;
    h2_kick(st);
    h2_stream_defer(st);
    return 0;
}

static void h2_close(struct transport *t, bool reset, uv_close_cb cb) {
    struct h2_stream *st = h2_of(t);
    h2_response_end(st, reset || st->wq_head);
    st->closing = true;
    st->close_cb = cb;
    t->reading = false;
    if (st->s) h2_session_stream_closed(st->s, st, st->resp_failed);
    if (!st->resp_failed) h2_kick(st); /* what the conn wrote last may still wait to go */
    h2_stream_defer(st);
}

/* The deferred work of a stream: finish a close, run a shutdown's
 * callback, take queued writes, deliver input. */
static void h2_stream_run(struct h2_stream *st) {
    if (st->closing) {
        struct transport *t = st->t;
        while (st->wq_head) { /* as libuv cancels its queued writes */
            struct transport_write *w = st->wq_head;
            st->wq_head = w->u.tls.next;
            w->cb(w, UV_ECANCELED);
        }
        st->wq_tail = NULL;
        st->wq_bytes = 0;
        if (st->shut_req) {
            uv_shutdown_t *req = st->shut_req;
            st->shut_req = NULL;
            st->shut_cb(req, UV_ECANCELED);
        }
        uv_close_cb cb = st->close_cb;
        st->conn_open = false;
        st->pc = NULL;
        uv_handle_t *h = (uv_handle_t *)t->stream;
        if (!st->ng_open) h2_stream_free(st);
        if (cb) cb(h); /* the conn is freed here */
        return;
    }
    if (st->read_failed && !st->t->reading) {
        h2_stream_abort_conn(st); /* the client gave up on it: so does its conn */
        return;
    }
    h2_pump_writes(st);
    if (st->closing) return;
    if (st->shut_req && !st->wq_head) {
        h2_response_end(st, false);
        uv_shutdown_t *req = st->shut_req;
        st->shut_req = NULL;
        st->shut_cb(req, 0);
        if (st->closing) return;
    }
    h2_kick(st);
    h2_deliver(st);
}

void h2_stream_free(struct h2_stream *st) {
    list_remove(&st->deferred);
    buffer_put(st->pool, st->head);
    buffer_put(st->pool, st->body);
    buffer_put(st->pool, st->resp_head);
    buffer_put(st->pool, st->out);
    free(st->cookie);
    free(st->path);
    free(st);
}

static const struct transport_ops transport_h2_ops = {
    .name = "h2",
    .read_start = h2_read_start,
    .read_stop = h2_read_stop,
    .write = h2_write,
    .queued = h2_queued,
    .shutdown = h2_shutdown,
    .close = h2_close,
};

void h2_stream_transport_init(struct h2_stream *st, struct transport *t, uv_stream_t *stream) {
    *t = (struct transport){.ops = &transport_h2_ops, .stream = stream};
    stream->data = st;
    st->t = t;
    st->conn_open = true;
    http_msg_init(&st->resp, false, st->head_request);
}
