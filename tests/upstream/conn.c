/* conn.c - an HTTP/WebSocket client connection: reading, output, close.
 *
 * A connection answers requests strictly in order. http.c/ws.c turn input
 * into response bytes appended to out[cur]; conn_drive() then writes them.
 * Input is parsed straight out of one read buffer shared by all connections;
 * only bytes that cannot be parsed yet (the parser is paused behind a slow
 * response, or a WebSocket frame is incomplete) are copied into c->in.
 *
 * Writing: at most one uv_write in flight (c->wbusy). Everything queued since
 * the last write goes out as one uv_try_write of up to three buffers
 * (output buffer, a slice of the static pattern block, a static chunk
 * trailer); only what the kernel refuses goes to uv_write, and new output
 * collects in the other buffer of the pair meanwhile. Streamed bodies
 * (/bytes, /chunked) are produced one piece per write, so a 1 GiB response
 * holds no memory and a slow reader simply slows production down.
 *
 * Ending: close_after (Connection: close, errors, WebSocket close) sends FIN
 * once the output is written and lingers, discarding input, until the peer's
 * EOF or UPSTREAM_LINGER_MS, so unread input never turns our FIN into a RST.
 * abort_after (/close-mid) closes as soon as the output is written.
 * The struct is freed when both handles' close callbacks have run. */
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATTERN_PIECE (256 * 1024)

/* g_pattern[i] == 'a' + i % 26: every streamed body is a slice of it. */
char g_pattern[PATTERN_PIECE + 26];
static char g_readbuf[UPSTREAM_READ_SIZE]; /* the shared read buffer (one thread) */
static struct conn *g_conns;               /* every live conn */

static void conn_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void conn_on_write(uv_write_t *req, int status);
static void conn_on_shutdown(uv_shutdown_t *req, int status);
static void conn_on_linger(uv_timer_t *t);
static void conn_on_close(uv_handle_t *h);
static void conn_flush(struct conn *c);
static void conn_update_read(struct conn *c);

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (q == NULL) {
        fprintf(stderr, "ferry-upstream: out of memory (%zu bytes)\n", n);
        abort();
    }
    return q;
}

void ob_reserve(struct obuf *o, size_t more) {
    if (o->cap - o->len >= more) return;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap - o->len < more)
        cap *= 2;
    o->data = xrealloc(o->data, cap);
    o->cap = cap;
}

void ob_add(struct obuf *o, const void *p, size_t n) {
    ob_reserve(o, n);
    memcpy(o->data + o->len, p, n);
    o->len += n;
}

void ob_u64(struct obuf *o, uint64_t v) {
    char tmp[20];
    size_t n = 0;
    do {
        tmp[sizeof tmp - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    ob_add(o, tmp + sizeof tmp - n, n);
}

void ob_free(struct obuf *o) {
    free(o->data);
    memset(o, 0, sizeof *o);
}

void pattern_init(void) {
    for (size_t i = 0; i < sizeof g_pattern; i++)
        g_pattern[i] = (char)('a' + i % 26);
}

/* The next slice of the pattern body at offset pos: sets *data and returns its
 * length, at most `left` and at most one piece. */
size_t pattern_piece(uint64_t pos, uint64_t left, const char **data) {
    *data = g_pattern + pos % 26;
    return left < PATTERN_PIECE ? (size_t)left : PATTERN_PIECE;
}

static size_t conn_pending(const struct conn *c) {
    return c->in_len - c->in_off;
}

/* Input is thrown away: after our answer to /hang, after a response that
 * ends the connection, and while lingering. */
static int conn_discarding(const struct conn *c) {
    return c->lingering || c->close_after || c->abort_after || c->wait == WAIT_HANG;
}

/* May http.c/ws.c be handed more input now? */
static int conn_can_process(const struct conn *c) {
    return !c->closing && c->wait == WAIT_NONE && !conn_discarding(c) &&
           c->out[c->cur].len < UPSTREAM_OUT_HIGH;
}

void conn_accept(uv_stream_t *server, int is_pipe) {
    struct conn *c = xrealloc(NULL, sizeof *c);
    memset(c, 0, sizeof *c);
    if (is_pipe)
        uv_pipe_init(g_up.loop, &c->h.pipe, 0);
    else
        uv_tcp_init(g_up.loop, &c->h.tcp);
    uv_timer_init(g_up.loop, &c->timer);
    c->h.stream.data = c;
    c->timer.data = c;
    c->refs = 2;
    c->next = g_conns;
    if (g_conns) g_conns->prev = c;
    g_conns = c;
    http_conn_init(c);
    int err = uv_accept(server, &c->h.stream);
    if (err < 0) {
        conn_close(c, "accept failed");
        return;
    }
    g_up.accepted++;
    if (!is_pipe) uv_tcp_nodelay(&c->h.tcp, 1);
    conn_update_read(c);
}

/* Idempotent: the first caller wins; the struct lives until both close
 * callbacks (and any write callback, which libuv runs first) are done. */
void conn_close(struct conn *c, const char *why) {
    if (c->closing) return;
    c->closing = 1;
    if (getenv("FERRY_UPSTREAM_DEBUG")) fprintf(stderr, "ferry-upstream: close: %s\n", why);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_on_close);
    uv_close((uv_handle_t *)&c->h.stream, conn_on_close);
}

void conn_close_all(void) {
    for (struct conn *c = g_conns; c; c = c->next)
        conn_close(c, "server stopping");
}

static void conn_on_close(uv_handle_t *h) {
    struct conn *c = h->data;
    if (--c->refs > 0) return;
    if (c->prev)
        c->prev->next = c->next;
    else
        g_conns = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c->in);
    ob_free(&c->out[0]);
    ob_free(&c->out[1]);
    ob_free(&c->head);
    free(c->hdrs);
    free(c);
}

/* Makes room for `n` more bytes at the end of c->in, compacting first. */
static void conn_in_room(struct conn *c, size_t n) {
    if (c->in_off == c->in_len) c->in_off = c->in_len = 0;
    if (c->in_cap - c->in_len >= n) return;
    if (c->in_off > 0) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    if (c->in_cap - c->in_len >= n) return;
    size_t cap = c->in_cap ? c->in_cap : UPSTREAM_READ_SIZE;
    while (cap - c->in_len < n)
        cap *= 2;
    c->in = xrealloc(c->in, cap);
    c->in_cap = cap;
}

/* Reads land in the shared buffer when they can be parsed at once or are
 * thrown away; otherwise straight into c->in behind what is already there. */
static void conn_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    struct conn *c = h->data;
    (void)hint;
    if (conn_discarding(c) ||
        (c->mode == CONN_HTTP && conn_can_process(c) && conn_pending(c) == 0)) {
        *buf = uv_buf_init(g_readbuf, sizeof g_readbuf);
        return;
    }
    conn_in_room(c, UPSTREAM_READ_SIZE);
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    struct conn *c = s->data;
    if (nread == 0) return;
    if (nread < 0) {
        if (nread != UV_EOF) {
            conn_close(c, uv_err_name((int)nread));
            return;
        }
        c->read_eof = 1;
        if (c->lingering || c->wait == WAIT_HANG) {
            conn_close(c, "client closed");
            return;
        }
        conn_drive(c);
        return;
    }
    if (buf->base == g_readbuf) {
        if (conn_discarding(c)) return;
        size_t used = http_process(c, buf->base, (size_t)nread);
        if (c->closing) return;
        if (used < (size_t)nread && !conn_discarding(c)) {
            conn_in_room(c, (size_t)nread - used);
            memcpy(c->in + c->in_len, buf->base + used, (size_t)nread - used);
            c->in_len += (size_t)nread - used;
        }
    } else {
        c->in_len += (size_t)nread;
    }
    conn_drive(c);
}

/* Reading is on unless the peer is done, or input or output is piling up. */
static void conn_update_read(struct conn *c) {
    int want;
    if (c->closing || c->read_eof)
        want = 0;
    else if (conn_discarding(c))
        want = 1;
    else {
        size_t in_limit = c->mode == CONN_WS ? UPSTREAM_WS_MAX_PAYLOAD + 14 : UPSTREAM_IN_MAX;
        size_t backlog = c->h.stream.write_queue_size + c->out[c->cur].len;
        want = conn_pending(c) < in_limit && backlog < UPSTREAM_OUT_HIGH;
    }
    if (want == (int)c->reading) return;
    if (want) {
        int err = uv_read_start(&c->h.stream, conn_on_alloc, conn_on_read);
        if (err < 0) {
            conn_close(c, uv_err_name(err));
            return;
        }
    } else {
        uv_read_stop(&c->h.stream);
    }
    c->reading = (unsigned)want;
}

static void conn_start_shutdown(struct conn *c) {
    c->shutting = 1;
    int err = uv_shutdown(&c->sreq, &c->h.stream, conn_on_shutdown);
    if (err < 0) conn_close(c, uv_err_name(err));
}

static void conn_on_shutdown(uv_shutdown_t *req, int status) {
    struct conn *c = container_of(req, struct conn, sreq);
    if (c->closing) return;
    if (status < 0 || c->read_eof) {
        conn_close(c, status < 0 ? uv_err_name(status) : "done");
        return;
    }
    c->lingering = 1;
    uv_timer_start(&c->timer, conn_on_linger, UPSTREAM_LINGER_MS, 0);
    conn_update_read(c);
}

static void conn_on_linger(uv_timer_t *t) {
    conn_close(t->data, "linger timeout");
}

/* Parses whatever input may be parsed, writes whatever is queued, then
 * decides about ending the connection and about reading. Called after every
 * read, write completion and timer. */
void conn_drive(struct conn *c) {
    for (;;) {
        while (conn_can_process(c) && conn_pending(c) > 0) {
            char *p = c->in + c->in_off;
            size_t n = c->mode == CONN_HTTP ? http_process(c, p, conn_pending(c))
                                            : ws_process(c, p, conn_pending(c));
            if (c->closing) return;
            c->in_off += n;
            if (n == 0) break;
        }
        if (c->in_off == c->in_len) {
            c->in_off = c->in_len = 0;
            if (c->in_cap > UPSTREAM_IN_MAX) { /* a big WebSocket frame passed */
                free(c->in);
                c->in = NULL;
                c->in_cap = 0;
            }
        }
        int blocked = !conn_can_process(c);
        conn_flush(c);
        if (c->closing) return;
        /* a stream ended or the output drained inside conn_flush: parse on */
        if (!(blocked && conn_can_process(c) && conn_pending(c) > 0)) break;
    }
    if (!c->wbusy && c->out[c->cur].len == 0) {
        if (c->abort_after) {
            conn_close(c, "close-mid");
            return;
        }
        if (!c->shutting && (c->close_after || (c->read_eof && c->wait == WAIT_NONE))) {
            conn_start_shutdown(c);
            if (c->closing) return;
        }
    }
    conn_update_read(c);
}

/* Queues the next piece of a streamed body: for chunked bodies the chunk-size
 * line goes into o, the data is a slice of g_pattern, *suffix a static CRLF
 * (plus the last-chunk marker after the final piece). Returns the data length. */
static size_t conn_stream_piece(struct conn *c, struct obuf *o, const char **data,
                                const char **suffix) {
    static const size_t chunk_sizes[] = {7919, 65536, 1, 250000};
    uint64_t want = c->body_left;
    if (c->body == BODY_CHUNKED) {
        size_t cs = chunk_sizes[c->chunk_seq++ % 4];
        if (want > cs) want = cs;
    }
    size_t n = pattern_piece(c->body_pos, want, data);
    if (c->body == BODY_CHUNKED) {
        char line[32];
        int k = snprintf(line, sizeof line, "%zx\r\n", n);
        ob_add(o, line, (size_t)k);
        *suffix = n == c->body_left ? "\r\n0\r\n\r\n" : "\r\n";
    }
    c->body_left -= n;
    c->body_pos += n;
    if (c->body_left == 0) c->wait = WAIT_NONE; /* fully queued: the next request may be answered */
    return n;
}

/* Writes out[cur] and, while streaming, the next body piece. A few rounds use
 * uv_try_write; after that (or when the kernel pushes back) the rest goes to
 * uv_write and the write callback continues, so one fast reader of a 1 GiB
 * body cannot starve the other connections. */
static void conn_flush(struct conn *c) {
    for (int round = 0; !c->wbusy && !c->closing; round++) {
        struct obuf *o = &c->out[c->cur];
        const char *data = NULL, *suffix = NULL;
        size_t piece = 0;
        if (c->wait == WAIT_STREAM) piece = conn_stream_piece(c, o, &data, &suffix);
        uv_buf_t bufs[3];
        unsigned n = 0;
        if (o->len) bufs[n++] = uv_buf_init(o->data, (unsigned)o->len);
        if (piece) bufs[n++] = uv_buf_init((char *)data, (unsigned)piece);
        if (suffix) bufs[n++] = uv_buf_init((char *)suffix, (unsigned)strlen(suffix));
        if (n == 0) return;
        size_t total = 0;
        for (unsigned i = 0; i < n; i++)
            total += bufs[i].len;
        int r = round < 8 ? uv_try_write(&c->h.stream, bufs, n) : UV_EAGAIN;
        if (r >= 0 && (size_t)r == total) {
            o->len = 0;
            continue;
        }
        if (r < 0 && r != UV_EAGAIN && r != UV_ENOSYS) {
            conn_close(c, uv_err_name(r));
            return;
        }
        size_t done = r > 0 ? (size_t)r : 0;
        unsigned first = 0;
        while (done >= bufs[first].len) {
            done -= bufs[first].len;
            first++;
        }
        bufs[first].base += done;
        bufs[first].len -= done;
        int err = uv_write(&c->wreq, &c->h.stream, bufs + first, n - first, conn_on_write);
        if (err < 0) {
            conn_close(c, uv_err_name(err));
            return;
        }
        c->wbusy = 1;
        c->cur ^= 1; /* o belongs to the write now */
    }
}

static void conn_on_write(uv_write_t *req, int status) {
    struct conn *c = container_of(req, struct conn, wreq);
    c->wbusy = 0;
    if (c->closing) return;
    if (status < 0) {
        conn_close(c, uv_err_name(status));
        return;
    }
    struct obuf *done = &c->out[c->cur ^ 1];
    done->len = 0;
    if (done->cap > UPSTREAM_OUT_HIGH) /* a big burst or WebSocket frame passed */
        ob_free(done);
    conn_drive(c);
}
