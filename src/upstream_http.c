/* upstream_http: the HTTP/1.1 client side of an exchange. It sends the
 * request head (and the PROXY header a fresh connection owes), reads and
 * checks the response, retries a request whose pooled connection had gone
 * stale, and gives the connection back to the pool when the response ended
 * exactly at its framing. What it gets from the upstream it hands to the
 * exchange's downstream (x->down); it never writes to the client itself.
 *
 * Where bytes live: x->up_head is the head built for the upstream (kept
 * for one retry); x->resp_buf the response head as it arrives; body bytes
 * are read into fresh pool blocks and passed on as they are (raw, chunk
 * framing included, already checked), so a body is never buffered whole. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "ferry/config.h"
#include "ferry/http.h"
#include "ferry/log.h"
#include "ferry/stats.h"
#include "ferry/upstream.h"
#include "ferry/worker_ctx.h"

#include "conn_internal.h"
#include "exchange.h"

/* Retries of an idempotent request whose reused connection died before any
 * response byte (the upstream closed it while we were picking it). */
#define UPSTREAM_HTTP_STALE_RETRIES 2

static bool upstream_http_on_head(struct exchange *x);

static char *upstream_http_block(struct exchange *x) {
    return buffer_get(&x->c->ctx->pool);
}

static void upstream_http_alloc(struct transport *t, uv_buf_t *out) {
    struct exchange *x = t->data;
    if (!x->resp.head_done) {
        if (!x->resp_buf) x->resp_buf = upstream_http_block(x);
        if (!x->resp_buf || x->resp_len >= CONN_BLOCK_DATA_SIZE) {
            *out = uv_buf_init(NULL, 0);
            return;
        }
        *out = uv_buf_init(conn_block_data(x->resp_buf) + x->resp_len,
                           (unsigned)(CONN_BLOCK_DATA_SIZE - x->resp_len));
        return;
    }
    x->rblock = upstream_http_block(x);
    *out = x->rblock ? uv_buf_init(conn_block_data(x->rblock), CONN_BLOCK_DATA_SIZE)
                     : uv_buf_init(NULL, 0);
}

static void upstream_http_on_read(struct transport *t, ssize_t nread, const uv_buf_t *buf);

static const struct transport_reader upstream_http_reader = {upstream_http_alloc,
                                                             upstream_http_on_read};

void upstream_http_set_reading(struct exchange *x, bool want) {
    struct conn *c = x->c;
    if (!c->up || want == x->up_reading) return;
    if (want) {
        want = upstream_conn_read(c->up, &upstream_http_reader, x) == 0;
        x->last_up = uv_now(c->ctx->loop); /* paused time is not upstream silence */
    } else {
        upstream_conn_pause(c->up);
        if (c->state == CONN_HTTP_BUSY) x->down->arm(x, exchange_idle_timeout(x));
    }
    x->up_reading = want;
}

/* Builds the upstream head once; an HTTP/1.0 request without Host gets
 * the server's own host:port. */
static int upstream_http_build_head(struct exchange *x) {
    struct conn *c = x->c;
    if (x->up_head) return 0;
    if (!(x->up_head = upstream_http_block(x))) return -1;
    struct http_request_rewrite rw = {
        .route = x->route,
        .client_addr = CONN_PEER(c),
        .proto = conn_scheme(c),
        .request_id = x->rid,
        .default_host = c->up->server->cfg->addr.text,
    };
    rw.prefix = http_route_prefix(x->route, &rw.prefix_len);
    size_t n = http_build_request(conn_block_data(x->up_head), CONN_BLOCK_DATA_SIZE, &x->req, &rw);
    x->up_head_len = (uint32_t)n;
    return n ? 0 : -1;
}

/* Sends the head; the first time, the downstream then sends the body bytes
 * that came with it. */
static void upstream_http_send_request(struct exchange *x) {
    struct conn *c = x->c;
    if (upstream_http_build_head(x) < 0) {
        x->down->fail(x, 431, "request head too large to forward");
        return;
    }
    stat_add(&c->up->server->stats->u.server.requests, 1);
    if (!c->up->reused && conn_send_proxy_header(c) < 0) {
        exchange_fail_upstream(x, 502, "write failed");
        return;
    }
    if (conn_write(c, false, x->up_head, conn_block_data(x->up_head), x->up_head_len, true) < 0) {
        exchange_fail_upstream(x, 502, "write failed");
        return;
    }
    if (x->head_sent) return; /* a retry (bodyless): nothing else to send */
    x->head_sent = true;
    x->down->head_sent(x);
}

void upstream_http_attach(struct exchange *x, struct upstream_conn *uc) {
    struct conn *c = x->c;
    assert(x->state == EXCHANGE_WAITING && !c->up);
    x->down->arm(x, exchange_read_timeout(x));
    c->up = uc;
    /* Reads go to us from now on; a pooled connection keeps reading (no
     * stop and start: the downstream pauses it if it must). */
    x->up_reading = upstream_conn_read(uc, &upstream_http_reader, x) == 0;
    http_msg_init(&x->resp, false, x->req.method == HTTP_HEAD);
    x->last_up = uv_now(c->ctx->loop);
    upstream_http_send_request(x);
    if (!c->closing) x->down->update_reading(x);
}

int upstream_http_send_body(struct exchange *x, char *block, const char *data, size_t len) {
    if (conn_write(x->c, false, block, data, len, false) < 0) {
        exchange_fail_upstream(x, 502, "write failed");
        return -1;
    }
    return 0;
}

/* A reused connection died before answering: the upstream closed it while
 * it sat in the pool. An idempotent request without a body is sent again
 * on another connection; anything else gets the error. */
static bool upstream_http_retry_stale(struct exchange *x) {
    struct conn *c = x->c;
    if (!c->up || !c->up->reused || x->any_resp_byte || !x->req_done || x->req.chunked ||
        x->req.content_length || !http_method_idempotent(x->req.method) ||
        x->stale_retries >= UPSTREAM_HTTP_STALE_RETRIES || c->up_writes > 0)
        return false;
    x->stale_retries++;
    x->up_reading = false;
    upstream_conn_close(c->up, NULL, NULL);
    c->up = NULL;
    x->resp_len = 0;
    log_debug("conn %s: reused upstream connection closed before answering; retrying", CONN_PEER(c));
    exchange_retry_fresh(x);
    return true;
}

static void upstream_http_on_eof(struct exchange *x, int err) {
    if (upstream_http_retry_stale(x)) return;
    if (x->resp.head_done && err == UV_EOF && http_parse_eof(&x->resp) == HTTP_DONE) {
        x->close_client = true; /* the body ran until close: so does the connection */
        x->stray_bytes = true;  /* and the upstream connection is gone */
        x->down->done(x);
        return;
    }
    exchange_fail_upstream(x, 502, err == UV_EOF ? "upstream closed the connection"
                                                 : uv_strerror(err));
}

/* Parses response body bytes at DATA and says how many go to the client
 * (after dechunking, they sit at DATA). Returns -1 after failing. */
static long upstream_http_check_body(struct exchange *x, char *data, size_t n, bool *done) {
    size_t consumed = 0;
    x->resp.compact_to = data;
    x->resp.compact_len = 0;
    int r = http_parse_body(&x->resp, data, n, &consumed);
    if (r == HTTP_ERROR) {
        exchange_fail_upstream(x, 502, "malformed response body");
        return -1;
    }
    if (consumed < n) x->stray_bytes = true;
    *done = r == HTTP_DONE;
    return (long)(x->dechunk ? x->resp.compact_len : consumed);
}

/* The response head is complete and checked. Returns false when the
 * exchange is over (answered, failed, or a tunnel now): the caller must
 * not touch X again. A failure that lingers does not close the
 * connection, so the state is asked, not c->closing alone. */
static bool upstream_http_on_head(struct exchange *x) {
    struct conn *c = x->c;
    struct http_msg *m = &x->resp;
    char *buf = conn_block_data(x->resp_buf);
    x->any_resp_byte = true;
    size_t rest_len = x->resp_len - m->head_end;
    if (m->status == 101) {
        /* Only a websocket the client asked for may become a tunnel: any
         * other switch would carry bytes past the routing rules. */
        if (!x->req.upgrade_websocket || !m->upgrade_websocket) {
            exchange_fail_upstream(x, 502, x->req.upgrade_websocket
                                               ? "101 response without Upgrade: websocket"
                                               : "unexpected 101 response");
            return false;
        }
        x->t_resp = uv_now(c->ctx->loop); /* the 101 is the answer: urt in the log */
        x->down->tunnel(x, buf + m->head_end, rest_len);
        return false;
    }
    if (m->status < 200) {
        /* 1xx: pass it on (the downstream decides if its client takes
         * one), then read the next head. */
        x->down->send_head(x, NULL, 0);
        if (c->closing || x->state == EXCHANGE_DONE) return false;
        memmove(buf, buf + m->head_end, rest_len);
        x->resp_len = (uint32_t)rest_len;
        http_msg_init(m, false, x->req.method == HTTP_HEAD);
        if (rest_len > 0) {
            int r = http_parse_head(m, buf, 0, rest_len);
            if (r == HTTP_ERROR) {
                exchange_fail_upstream(x, 502, m->error_text);
                return false;
            }
            if (r == HTTP_DONE) return upstream_http_on_head(x);
        }
        return true;
    }
    x->t_resp = uv_now(c->ctx->loop);
    x->status = m->status;
    /* How an HTTP/1.x client gets it: an HTTP/1.0 one cannot take chunks;
     * a body that ends at close, a client leaving or a request still being
     * sent end the connection with the response. */
    x->dechunk = x->req.minor == 0 && m->chunked;
    x->resp.compact = x->dechunk;
    if (x->req.conn_close || c->ctx->draining || x->dechunk || http_msg_needs_eof(m) ||
        c->client_eof || !x->req_done)
        x->close_client = true;
    bool done = false;
    long body = upstream_http_check_body(x, buf + m->head_end, rest_len, &done);
    if (body < 0) return false;
    x->down->send_head(x, buf + m->head_end, (size_t)body);
    if (c->closing || x->state == EXCHANGE_DONE) return false;
    buffer_put(&c->ctx->pool, x->resp_buf);
    x->resp_buf = NULL;
    if (done) {
        x->down->done(x);
        return false;
    }
    return true;
}

static void upstream_http_on_read(struct transport *t, ssize_t nread, const uv_buf_t *buf) {
    FERRY_UNUSED(buf);
    struct exchange *x = t->data;
    struct conn *c = x->c;
    assert(c->x == x); /* an exchange's reads end before it does */
    char *blk = x->rblock;
    x->rblock = NULL;
    if (nread == 0) {
        buffer_put(&c->ctx->pool, blk);
        return;
    }
    x->last_up = uv_now(c->ctx->loop);
    if (nread < 0) {
        buffer_put(&c->ctx->pool, blk);
        if (nread == UV_ENOBUFS && !x->resp.head_done) {
            exchange_fail_upstream(x, 502, "response head too large");
            return;
        }
        upstream_http_on_eof(x, (int)nread);
        return;
    }
    if (!x->resp.head_done) {
        uint32_t from = x->resp_len;
        x->resp_len += (uint32_t)nread;
        x->any_resp_byte = true;
        int r = http_parse_head(&x->resp, conn_block_data(x->resp_buf), from, x->resp_len);
        if (r == HTTP_ERROR) {
            exchange_fail_upstream(x, 502, x->resp.error_text);
            return;
        }
        if (r == HTTP_DONE && !upstream_http_on_head(x)) return;
        if (!c->closing) x->down->update_reading(x);
        return;
    }
    bool done = false;
    char *data = conn_block_data(blk);
    long body = upstream_http_check_body(x, data, (size_t)nread, &done);
    if (body < 0) {
        buffer_put(&c->ctx->pool, blk);
        return;
    }
    x->bytes_out += (uint64_t)body;
    if (body == 0)
        buffer_put(&c->ctx->pool, blk);
    else if (x->down->send_body(x, blk, data, (size_t)body) < 0)
        return;
    if (done) {
        x->down->done(x);
        return;
    }
    if (!c->closing) x->down->update_reading(x);
}

void upstream_http_release(struct exchange *x) {
    struct conn *c = x->c;
    if (c->up && c->up_writes > 0) {
        if (x->state != EXCHANGE_RELEASING) exchange_set_state(x, EXCHANGE_RELEASING);
        return;
    }
    if (!c->up) return;
    /* A connection that began with a PROXY header speaks for one client
     * only: never pooled. */
    bool reusable = x->req_done && !x->stray_bytes && !x->resp.conn_close && x->resp.minor == 1 &&
                    x->upstream->cfg->proxy_protocol == PROXY_PROTOCOL_OFF;
    x->up_reading = false;
    upstream_release(c->up, reusable);
    c->up = NULL;
}
