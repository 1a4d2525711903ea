/* conn_http: the HTTP/1.x downstream of a connection.
 *
 * One request at a time is in flight (struct exchange, exchange.h);
 * pipelined requests wait, unparsed, in c->in, so responses go out
 * strictly in request order. This file reads and checks requests, hands
 * each to an exchange, and writes what the exchange's upstream side
 * delivers (struct exchange_downstream: head, body, done, fail, tunnel).
 *
 *   IDLE ──first byte──> HEAD ──head complete, checked──> BUSY ──response done──┐
 *    ^                    │ 400/408/431                    │ 101 + websocket    │
 *    │                    v                                v                    │
 *    │                 error response, LINGER, close     a relay (conn_tcp.c)   │
 *    └──────────── keep-alive: next request from c->in, or wait ────────────────┘
 *
 * c->in holds the client's unparsed bytes: the request head being read
 * (kept contiguous so header spans point into it), and any pipelined bytes
 * that follow a request. It is never referenced by a write: what is
 * forwarded from it is copied first. Body bytes are read into fresh pool
 * blocks and passed on as they are.
 *
 * Backpressure: the client is not read while the upstream's write queue is
 * above PIPE_HIGH_WATER and the upstream not while the client's is;
 * whether each side should be read is recomputed after every event by
 * http_update_reading(), the one place that starts and stops reads. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/config.h"
#include "ferry/conn.h"
#include "ferry/errring.h"
#include "ferry/generation.h"
#include "ferry/http.h"
#include "ferry/http_path.h"
#include "ferry/http_rewrite.h"
#include "ferry/log.h"
#include "ferry/route.h"
#include "ferry/stats.h"
#include "ferry/upstream.h"
#include "ferry/worker_ctx.h"

#include "conn_internal.h"
#include "exchange.h"

static const struct exchange_downstream http1_downstream;

static void http_on_timer(struct wheel_timer *t);
static void http_try_head(struct conn *c);
static void http_update_reading(struct conn *c);
static void http_response_done(struct conn *c);
static void http_fail(struct conn *c, int status, const char *detail);
static void http_dispatch(struct conn *c);
static void http_forward_request_body(struct conn *c, char *blk, size_t n);
static void http_finish_exchange(struct conn *c);
static void http_answer(struct conn *c, int status, const char *detail, const char *location);
static bool http_redirect_https(struct conn *c);
static bool http_redirect_slash(struct conn *c, const struct route_table *routes);
static long http_check_request_body(struct conn *c, const char *data, size_t n);

static char *http_block(struct conn *c) {
    return buffer_get(&c->ctx->pool);
}

static void http_put(struct conn *c, char **block) {
    buffer_put(&c->ctx->pool, *block);
    *block = NULL;
}

static char *http_in(struct conn *c) {
    return conn_block_data(c->in);
}

static void http_arm(struct conn *c, uint64_t ms) {
    conn_arm(c, ms, http_on_timer);
}

/* --- reading: the one place that starts and stops reads ---------------- */

static void http_client_alloc(struct conn *c, uv_buf_t *out) {
    struct exchange *x = c->x;
    if (x && exchange_routed(x) && !x->req_done) {
        x->client_rblock = http_block(c);
        *out = x->client_rblock ? uv_buf_init(conn_block_data(x->client_rblock),
                                              CONN_BLOCK_DATA_SIZE)
                                : uv_buf_init(NULL, 0);
        return;
    }
    if (!c->in) c->in = http_block(c);
    if (!c->in || c->in_len >= CONN_BLOCK_DATA_SIZE) {
        *out = uv_buf_init(NULL, 0);
        return;
    }
    *out = uv_buf_init(http_in(c) + c->in_len, (unsigned)(CONN_BLOCK_DATA_SIZE - c->in_len));
}

static bool http_want_client(const struct conn *c) {
    const struct exchange *x = c->x;
    if (c->client_eof || c->state == CONN_LINGER || c->closing) return false;
    /* A client that does not read its responses gets no more requests read:
     * each would queue another response behind the ones it ignores. */
    if (conn_client_queued(c) >= PIPE_HIGH_WATER) return false;
    if (!x || !exchange_routed(x)) return c->in_len < CONN_BLOCK_DATA_SIZE;
    if (!x->head_sent) return false; /* c->in holds the request until it goes */
    if (!x->req_done)
        return c->up && x->state != EXCHANGE_CONNECTING && c->up_writes < PIPE_MAX_WRITES &&
               transport_queued(upstream_conn_transport(c->up)) < PIPE_HIGH_WATER;
    /* The request is in: read ahead (pipelining) while there is room. */
    return c->in_len < CONN_BLOCK_DATA_SIZE;
}

/* The upstream is read while the exchange expects its response and the
 * client takes what it is sent. */
static bool http_want_up(const struct conn *c) {
    const struct exchange *x = c->x;
    return (x->state == EXCHANGE_WAITING || x->state == EXCHANGE_STREAMING) && !c->closing &&
           c->client_writes < PIPE_MAX_WRITES && conn_client_queued(c) < PIPE_HIGH_WATER;
}

static void http_update_reading(struct conn *c) {
    if (c->closing || c->state == CONN_RELAYING || c->state == CONN_LINGER) return;
    bool want = http_want_client(c);
    if (want && conn_read_start(c) < 0) {
        conn_close(c, "read failed");
        return;
    }
    if (!want) conn_read_stop(c);
    struct exchange *x = c->x;
    if (x && c->up) upstream_http_set_reading(x, http_want_up(c));
}

/* --- start, refuse, fail ----------------------------------------------- */

static void http_start(struct conn *c) {
    http_arm(c, c->lcfg->header_timeout_ms); /* a new connection owes us a head */
    if (c->in_len > 0) { /* bytes that came behind a PROXY header */
        conn_set_state(c, CONN_HTTP_HEAD);
        http_try_head(c);
    } else {
        conn_set_state(c, CONN_HTTP_IDLE);
    }
    if (!c->closing) http_update_reading(c);
}

/* Every response of ferry's own carries an X-Request-Id, even for a
 * request too broken to have one of its own. */
static void http_send_own(struct conn *c, int status, const char *detail, const char *location,
                          bool close) {
    char *block = http_block(c);
    if (!block) return;
    char fresh[40];
    const char *rid = fresh;
    if (c->x) {
        if (!c->x->rid[0]) exchange_make_request_id(c->x);
        rid = c->x->rid;
    } else {
        http_request_id(fresh, c->ctx->rid_seed, ++c->ctx->rid_counter);
    }
    char date[HTTP_DATE_LEN];
    uv_timeval64_t now = {0, 0};
    http_date(date, uv_gettimeofday(&now) == 0 ? now.tv_sec : 0);
    struct http_error e = {
        .status = status,
        .detail = detail,
        .request_id = rid,
        .date = date,
        .location = location,
        .close = close,
        .head = c->x && http_msg_is_head(&c->x->req),
    };
    size_t n = http_build_error(conn_block_data(block), CONN_BLOCK_DATA_SIZE, &e);
    /* For the dashboard: names from the config and ferry's own words only,
     * never the client's address or a header value. */
    const struct exchange *x = c->x;
    if (c->ctx->errors)
        errring_add(c->ctx->errors, (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_usec / 1000u,
                    status, x && x->route ? x->route->name : NULL,
                    x && x->upstream ? x->upstream->cfg->name : NULL, detail, rid);
    if (c->x) {
        c->x->status = status;
        c->x->bytes_out += n;
    }
    if (conn_write(c, true, block, conn_block_data(block), n, false) < 0)
        log_debug("conn %s: could not send %d", CONN_PEER(c), status);
}

static void http_send_error(struct conn *c, int status, const char *detail, bool close) {
    http_send_own(c, status, detail, NULL, close);
}

/* Over max_connections: a 503 (not a bare close) tells a client to back off. */
static void http_refuse(struct conn *c, const char *why) {
    http_send_error(c, 503, why, true);
    conn_linger(c, true);
}

/* Ends the exchange with an error. Before any response byte went out the
 * client gets STATUS; after, the only honest thing is to close: a truncated
 * response must never look complete. The upstream connection is never
 * reused: it may hold half a request or half a response. */
static void http_fail_own(struct conn *c, int status, const char *detail, const char *location) {
    struct exchange *x = c->x;
    if (c->closing) return;
    if (x && exchange_responding(x)) {
        exchange_record(x);
        conn_abort(c, detail);
        return;
    }
    if (status >= 500)
        log_warn("%s %s: %d %s (rid %s)", c->lcfg->name, CONN_PEER(c), status, detail,
                 x && x->rid[0] ? x->rid : "-");
    http_send_own(c, status, detail, location, true);
    if (x) {
        if (!x->log_method[0] && x->req.head_done && !exchange_routed(x))
            exchange_capture_log(x);
        exchange_record(x);
        if (x->up_reading && c->up) upstream_conn_pause(c->up);
        x->up_reading = false;
        upstream_checkout_cancel(&x->checkout);
        if (x->state != EXCHANGE_DONE) exchange_set_state(x, EXCHANGE_DONE);
    }
    conn_drop_upstream(c); /* it may have half the request: the upstream sees it end now */
    conn_linger(c, true);
}

static void http_fail(struct conn *c, int status, const char *detail) {
    http_fail_own(c, status, detail, NULL);
}

/* --- the request ------------------------------------------------------- */

static void http_on_client_eof(struct conn *c) {
    c->client_eof = true;
    struct exchange *x = c->x;
    if (!x || (!exchange_routed(x) && c->in_len == 0)) {
        conn_close(c, "client closed");
        return;
    }
    if (!exchange_routed(x)) {
        conn_close(c, "client closed mid-head");
        return;
    }
    if (!x->req_done) {
        conn_close(c, "client closed mid-body");
        return;
    }
    x->close_client = true; /* answer what was asked, then close */
}

static void http_on_client_read(struct conn *c, ssize_t nread, const uv_buf_t *buf) {
    FERRY_UNUSED(buf);
    struct exchange *x = c->x;
    char *block = x ? x->client_rblock : NULL;
    if (x) x->client_rblock = NULL;
    if (nread <= 0) {
        buffer_put(&c->ctx->pool, block);
        if (nread == 0) return;
        if (nread == UV_ENOBUFS && c->in && c->in_len >= CONN_BLOCK_DATA_SIZE) {
            /* c->in is full of pipelined input: wait until it is parsed. libuv
             * keeps calling us while reading, so stop now. */
            http_update_reading(c);
            return;
        }
        if (nread == UV_EOF)
            http_on_client_eof(c);
        else
            conn_close(c, uv_strerror((int)nread));
        if (!c->closing) http_update_reading(c);
        return;
    }
    if (block) {
        http_forward_request_body(c, block, (size_t)nread);
        return;
    }
    c->in_len += (uint32_t)nread;
    stat_add(&c->ctx->wstats->u.worker.bytes_in, (uint64_t)nread);
    if (c->state == CONN_HTTP_IDLE) {
        conn_set_state(c, CONN_HTTP_HEAD);
        http_arm(c, c->lcfg->header_timeout_ms);
    }
    if (c->state == CONN_HTTP_HEAD) http_try_head(c);
    if (!c->closing) http_update_reading(c);
}

/* A reload happened since this connection's last request: serve the next
 * one with the new config, under the listener of the same name. When that
 * listener is gone (or no longer http) the connection stays on the config
 * it was accepted under: a reload never drops an established connection. */
static void http_follow_reload(struct conn *c) {
    struct view *now = c->ctx->view;
    if (c->view == now) return;
    const struct config *cfg = view_config(now);
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct config_listener *cl = &cfg->listeners[i];
        if (strcmp(cl->name, c->lcfg->name) != 0 || cl->mode != MODE_HTTP) continue;
        view_ref(now);
        view_unref(c->view);
        c->view = now;
        c->lcfg = cl;
        return;
    }
}

/* Parses what c->in holds of the next request head. */
static void http_try_head(struct conn *c) {
    struct exchange *x = c->x;
    if (!x) http_follow_reload(c);
    if (!x && !(x = exchange_new(c, &http1_downstream))) {
        conn_close(c, "out of memory");
        return;
    }
    int r = http_parse_head(&x->req, http_in(c), x->req_fed, c->in_len);
    x->req_fed = c->in_len;
    uint64_t limit = c->lcfg->max_header_size;
    if (r == HTTP_ERROR) {
        http_fail(c, x->req.error_status, x->req.error_text);
        return;
    }
    if ((r == HTTP_MORE && (c->in_len > limit || c->in_len >= CONN_BLOCK_DATA_SIZE)) ||
        (r == HTTP_DONE && x->req.head_end > limit)) {
        http_fail(c, 431, "request head larger than max_header_size");
        return;
    }
    if (r == HTTP_MORE) return;
    http_dispatch(c);
}

/* The head is complete and checked: choose the route and the upstream. */
static void http_dispatch(struct conn *c) {
    struct exchange *x = c->x;
    struct http_msg *m = &x->req;
    conn_set_state(c, CONN_HTTP_BUSY);
    exchange_set_state(x, EXCHANGE_ROUTED);
    if (access_log_enabled()) exchange_capture_log(x);
    uint64_t max_body = c->lcfg->max_body_size;
    if (max_body && m->has_length && m->content_length > max_body) {
        http_fail(c, 413, "request body larger than max_body_size");
        return;
    }
    /* Body bytes that came with the head are checked now, so a bad first
     * chunk line is a 400 before anything goes upstream; only what arrives
     * later, while the body streams, can cost an upstream connection. */
    long early = http_check_request_body(c, http_in(c) + m->head_end, c->in_len - m->head_end);
    if (early < 0) return;
    x->early_body = (uint32_t)early;
    /* The path routed by is the path forwarded; the log already has it as sent. */
    if (http_normalise_path(m, http_in(c)) < 0) {
        http_fail(c, m->error_status, m->error_text);
        return;
    }
    if (c->lcfg->redirect_https && http_redirect_https(c)) return;
    const struct config *cfg = view_config(c->view);
    const struct route_table *routes = c->view->gen->routes[c->lcfg - cfg->listeners];
    bool routed = exchange_route(x, routes, c->lcfg->upstream);
    if (http_redirect_slash(c, routes)) return;
    if (!routed) {
        http_answer(c, 404, "no route matches this request", NULL);
        return;
    }
    http_arm(c, exchange_read_timeout(x));
    exchange_checkout(x);
}

/* `redirect_https`: 308 to the same host (without its port, as nginx's
 * $host) and the normalised target, over https. Returns false when the
 * request has no Host to send it to (HTTP/1.0): it is then served. */
static bool http_redirect_https(struct conn *c) {
    const struct http_msg *m = &c->x->req;
    if (m->host < 0) return false;
    const char *host = http_span_ptr(m, m->fields[m->host].value);
    size_t hlen = m->fields[m->host].value.len;
    const char *end = host[0] == '[' ? memchr(host, ']', hlen) : memchr(host, ':', hlen);
    if (end) hlen = (size_t)(end - host) + (host[0] == '[');
    char location[2048];
    int n = snprintf(location, sizeof(location), "https://%.*s%.*s%.*s", (int)hlen, host,
                     (int)m->path.len, http_span_ptr(m, m->path), (int)m->query.len,
                     http_span_ptr(m, m->query));
    if (n < 0 || (size_t)n >= sizeof(location)) {
        http_fail(c, 414, "target too long to redirect");
        return true;
    }
    http_answer(c, 308, location, location);
    return true;
}

/* `/api` when only `path_prefix = /api/` would take it: 308 to `/api/`
 * (query kept), as nginx does for a location with a trailing slash; else
 * a catch-all route or the listener's upstream would answer for the app.
 * Returns true when it answered. */
static bool http_redirect_slash(struct conn *c, const struct route_table *routes) {
    struct exchange *x = c->x;
    const struct http_msg *m = &x->req;
    struct http_span host = m->host >= 0 ? m->fields[m->host].value : (struct http_span){0, 0};
    const struct config_route *r = route_slash_redirect(
        routes, http_span_ptr(m, host), host.len, http_span_ptr(m, m->path), m->path.len,
        http_span_ptr(m, m->method_text), m->method_text.len, x->route);
    if (!r) return false;
    char location[2048];
    int n = snprintf(location, sizeof(location), "%.*s/%.*s", (int)m->path.len,
                     http_span_ptr(m, m->path), (int)m->query.len, http_span_ptr(m, m->query));
    if (n < 0 || (size_t)n >= sizeof(location)) return false; /* served as it is */
    x->route = r; /* counted under the route it leads to */
    x->upstream = NULL;
    http_answer(c, 308, location, location);
    return true;
}

/* One of ferry's own answers to a complete head (a 404, a redirect). A
 * request without a body leaves the connection in a known state, so it
 * stays open for the next one (a missing favicon should not cost a
 * browser its connection); with a body, or when the client asked for it,
 * the connection closes. */
static void http_answer(struct conn *c, int status, const char *detail, const char *location) {
    struct exchange *x = c->x;
    bool bodyless = !x->req.chunked && x->req.content_length == 0;
    if (!bodyless || x->req.conn_close || c->ctx->draining) {
        http_fail_own(c, status, detail, location);
        return;
    }
    http_send_own(c, status, detail, location, false);
    if (c->closing) return;
    x->req_done = true;
    exchange_set_state(x, EXCHANGE_DONE);
    exchange_record(x);
    c->served = true;
    uint32_t end = x->req.head_end;
    c->in_len -= end;
    memmove(http_in(c), http_in(c) + end, c->in_len);
    http_finish_exchange(c);
}

/* Checks body bytes DATA[0, N) of the request: framing, max_body_size.
 * Returns how many belong to this request, or -1 after failing the exchange. */
static long http_check_request_body(struct conn *c, const char *data, size_t n) {
    struct exchange *x = c->x;
    size_t consumed = 0;
    int r = http_parse_body(&x->req, data, n, &consumed);
    if (r == HTTP_ERROR) {
        http_fail(c, 400, x->req.error_text);
        return -1;
    }
    uint64_t max_body = c->lcfg->max_body_size;
    if (max_body && x->req.body_bytes > max_body) {
        http_fail(c, 413, "request body larger than max_body_size");
        return -1;
    }
    if (r == HTTP_DONE) x->req_done = true;
    return (long)consumed;
}

/* Keeps BYTES at SRC as the start of c->in (pipelined bytes after a request). */
static void http_keep_input(struct conn *c, const char *src, size_t bytes) {
    if (bytes == 0) {
        if (c->in && c->in_len == 0) http_put(c, &c->in);
        return;
    }
    if (!c->in && !(c->in = http_block(c))) {
        conn_close(c, "out of memory");
        return;
    }
    memmove(http_in(c), src, bytes);
    c->in_len = (uint32_t)bytes;
}

/* The head went up: send the body bytes that came with it; c->in keeps
 * only what follows the request. */
static void http1_head_sent(struct exchange *x) {
    struct conn *c = x->c;
    char *in = http_in(c);
    uint32_t head_end = x->req.head_end;
    size_t rest = c->in_len - head_end;
    size_t body = x->early_body;
    if (body > 0) {
        char *blk = http_block(c);
        if (!blk) {
            conn_close(c, "out of memory");
            return;
        }
        memcpy(conn_block_data(blk), in + head_end, body);
        if (upstream_http_send_body(x, blk, conn_block_data(blk), body) < 0) return;
    }
    c->in_len = 0;
    http_keep_input(c, in + head_end + body, rest - body);
}

static void http_forward_request_body(struct conn *c, char *blk, size_t n) {
    struct exchange *x = c->x;
    x->last_up = uv_now(c->ctx->loop); /* an upload in progress is not upstream silence */
    stat_add(&c->ctx->wstats->u.worker.bytes_in, n);
    char *data = conn_block_data(blk);
    long body = http_check_request_body(c, data, n);
    if (body < 0) {
        buffer_put(&c->ctx->pool, blk);
        return;
    }
    if (x->req_done && (size_t)body < n) {
        if (c->in_len) { /* cannot happen: we read no further than the request */
            buffer_put(&c->ctx->pool, blk);
            conn_close(c, "input overflow");
            return;
        }
        http_keep_input(c, data + body, n - (size_t)body);
        if (c->closing) {
            buffer_put(&c->ctx->pool, blk);
            return;
        }
    }
    if (body == 0) {
        buffer_put(&c->ctx->pool, blk);
    } else if (upstream_http_send_body(x, blk, data, (size_t)body) < 0) {
        return;
    }
    http_update_reading(c);
}

/* --- what the exchange delivers ---------------------------------------- */

/* What rewrite_redirects needs to put the response's Location, Content-
 * Location and Set-Cookie Path back into the client's view, in RR; NULL
 * when the route does not ask for it. */
static const struct http_rewrite *http_redirects_for(struct conn *c, struct http_rewrite *rr) {
    const struct exchange *x = c->x;
    if (!x->route || !x->route->rewrite_redirects || !c->up) return NULL;
    const struct config_addr *up = &c->up->server->cfg->addr;
    *rr = (struct http_rewrite){
        .scheme = conn_scheme(c),
        .host = x->host, /* c->in, where the request's Host was, may hold the next one */
        .host_len = strlen(x->host),
        .up_host = up->kind == ADDR_INET ? up->host : NULL,
        .up_port = up->port,
    };
    rr->prefix = http_route_prefix(x->route, &rr->prefix_len);
    return rr;
}

/* Writes the response head (and the body bytes that came with it). */
static void http_write_head(struct conn *c, const char *body, size_t body_len) {
    struct exchange *x = c->x;
    char *blk = http_block(c);
    if (!blk) {
        conn_close(c, "out of memory");
        return;
    }
    struct http_rewrite redirects;
    struct http_response_rewrite rw = {
        .route = x->route,
        .request_id = x->rid,
        .client_minor = x->req.minor,
        .close = x->close_client,
        .dechunk = x->dechunk,
        .hsts_s = c->lcfg->hsts_ms / 1000,
        .redirects = http_redirects_for(c, &redirects),
    };
    size_t n = http_build_response(conn_block_data(blk), CONN_BLOCK_DATA_SIZE, &x->resp, &rw);
    if (n == 0) {
        buffer_put(&c->ctx->pool, blk);
        exchange_fail_upstream(x, 502, "response head too large");
        return;
    }
    if (x->resp.status >= 200 && x->state == EXCHANGE_WAITING)
        exchange_set_state(x, EXCHANGE_STREAMING);
    size_t first = body_len <= CONN_BLOCK_DATA_SIZE - n ? body_len : 0;
    if (first) memcpy(conn_block_data(blk) + n, body, first);
    x->bytes_out += n + first;
    if (conn_write(c, true, blk, conn_block_data(blk), n + first, false) < 0) {
        conn_close(c, "client write failed");
        return;
    }
    if (first < body_len) {
        char *more = http_block(c);
        if (!more) {
            conn_close(c, "out of memory");
            return;
        }
        memcpy(conn_block_data(more), body, body_len);
        x->bytes_out += body_len;
        if (conn_write(c, true, more, conn_block_data(more), body_len, false) < 0)
            conn_close(c, "client write failed");
    }
}

static void http1_send_head(struct exchange *x, const char *body, size_t len) {
    /* An interim (1xx) response means nothing to an HTTP/1.0 client. */
    if (x->resp.status < 200 && x->req.minor != 1) return;
    http_write_head(x->c, body, len);
}

static int http1_send_body(struct exchange *x, char *block, const char *data, size_t len) {
    assert(x->state == EXCHANGE_STREAMING); /* a body only follows its head */
    if (conn_write(x->c, true, block, data, len, false) < 0) {
        conn_close(x->c, "client write failed");
        return -1;
    }
    return 0;
}

static void http1_done(struct exchange *x) {
    http_response_done(x->c);
}

static void http1_fail(struct exchange *x, int status, const char *detail) {
    http_fail(x->c, status, detail);
}

static void http1_update_reading(struct exchange *x) {
    http_update_reading(x->c);
}

static void http1_arm(struct exchange *x, uint64_t ms) {
    http_arm(x->c, ms);
}

/* After a 101 to a websocket request the connection becomes a tunnel.
 * Bytes that came after either head are passed on first. */
static void http1_tunnel(struct exchange *x, const char *up_rest, size_t up_rest_len) {
    struct conn *c = x->c;
    exchange_set_state(x, EXCHANGE_DONE);
    x->close_client = true;
    x->status = 101;
    http_write_head(c, up_rest, up_rest_len);
    if (c->closing) return;
    struct relay *r = conn_relay_new(c);
    if (!r) {
        conn_close(c, "out of memory");
        return;
    }
    r->idle_ms = exchange_idle_timeout(x);
    uint32_t early_in = c->in_len;
    if (c->in_len > 0) {
        char *blk = http_block(c);
        if (!blk) {
            conn_close(c, "out of memory");
            return;
        }
        memcpy(conn_block_data(blk), http_in(c), c->in_len);
        if (conn_write(c, false, blk, conn_block_data(blk), c->in_len, false) < 0) {
            conn_close(c, "upstream write failed");
            return;
        }
        c->in_len = 0;
    }
    http_put(c, &c->in);
    x->bytes_out -= up_rest_len; /* the head's; the tunnel counts what follows it */
    exchange_record(x);          /* its log line waits in r->log for the end */
    upstream_conn_pause(c->up); /* the pipe reads it from now on */
    conn_read_stop(c);
    if (c->up_writes > 0) { /* the head may still be queued: its block must outlive the write */
        r->held_block = x->up_head;
        x->up_head = NULL;
    }
    exchange_free(x); /* c->up stays: the relay takes it */
    conn_relay_start(c);
    if (c->closing) return;
    r->early_in = early_in; /* what went before the pipes ran is the tunnel's too */
    r->early_out = up_rest_len;
}

/* --- the end of an exchange -------------------------------------------- */

/* The exchange is over and its upstream connection given back: close, or
 * go on with the next request (already waiting in c->in when pipelined). */
static void http_finish_exchange(struct conn *c) {
    struct exchange *x = c->x;
    bool close = x->close_client;
    /* Answered (404) or released: nothing of the upstream is attached. */
    assert(!c->up);
    if (x->state != EXCHANGE_DONE) exchange_set_state(x, EXCHANGE_DONE);
    exchange_free(x);
    if (close) {
        conn_linger(c, false);
        return;
    }
    if (c->in_len > 0) {
        conn_set_state(c, CONN_HTTP_HEAD);
        http_arm(c, c->lcfg->header_timeout_ms);
        /* Pipelined: the next request waits until the client has taken
         * most of what it was sent (http_on_write_done resumes). */
        if (conn_client_queued(c) < PIPE_HIGH_WATER) http_try_head(c);
    } else {
        conn_set_state(c, CONN_HTTP_IDLE);
        http_put(c, &c->in);
        http_arm(c, c->lcfg->idle_timeout_ms);
    }
    if (!c->closing) http_update_reading(c);
}

/* The whole response is queued to the client. */
static void http_response_done(struct conn *c) {
    struct exchange *x = c->x;
    assert(x->state == EXCHANGE_STREAMING);
    if (!x->req_done || c->ctx->draining) x->close_client = true;
    exchange_record(x);
    c->served = true;
    upstream_http_release(x);
    if (x->state != EXCHANGE_RELEASING) {
        http_finish_exchange(c); /* which sets what to read next */
        return;
    }
    /* http_on_write_done() finishes once the upstream writes are out;
     * meanwhile the upstream is not read. */
    if (!c->closing) http_update_reading(c);
}

/* BUSY has two clocks: read_timeout for upstream silence (while we read
 * it), and idle_timeout for a client that has bytes waiting and takes none
 * (it must not pin the upstream connection and our buffers forever). The
 * timer is armed for whichever ends first. */
static void http_busy_timer(struct conn *c, struct exchange *x) {
    uint64_t limit = exchange_read_timeout(x);
    uint64_t now = uv_now(c->ctx->loop);
    uint64_t next = now + limit;
    if (conn_client_queued(c) > 0) {
        uint64_t stall = conn_client_stall_deadline(c, exchange_idle_timeout(x));
        if (now >= stall) {
            conn_abort(c, "client stopped reading");
            return;
        }
        if (stall < next) next = stall;
    }
    if (x->up_reading) {
        uint64_t silence = x->last_up + limit;
        if (now >= silence) {
            if (exchange_responding(x))
                conn_abort(c, "upstream read timeout mid-response");
            else
                exchange_fail_upstream(x, 504, "read timeout");
            return;
        }
        if (silence < next) next = silence;
    }
    http_arm(c, next - now);
}

static void http_on_timer(struct wheel_timer *t) {
    struct conn *c = container_of(t, struct conn, timer);
    struct exchange *x = c->x;
    switch (c->state) {
    case CONN_HTTP_IDLE:
        conn_close(c, c->served ? "keep-alive idle timeout" : "no request");
        return;
    case CONN_HTTP_HEAD:
        http_fail(c, 408, "request head not received within header_timeout");
        return;
    case CONN_HTTP_BUSY: {
        if (x->state == EXCHANGE_HOLDING) {
            exchange_checkout(x);
            return;
        }
        http_busy_timer(c, x);
        return;
    }
    default:
        return;
    }
}

static void http_on_write_done(struct conn *c, bool to_client, int status) {
    struct exchange *x = c->x;
    if (status < 0) { /* the upstream went away while we were sending */
        if (x && !exchange_responding(x))
            exchange_fail_upstream(x, 502, "upstream closed while receiving the request");
        else
            conn_close(c, "upstream write failed");
        return;
    }
    if (to_client && !x && c->state == CONN_HTTP_HEAD && c->in_len > 0 &&
        conn_client_queued(c) < PIPE_LOW_WATER) {
        http_try_head(c); /* a pipelined request held back by a slow reader */
        if (c->closing) return;
    }
    if (!to_client && x && x->state == EXCHANGE_RELEASING && c->up_writes == 0) {
        upstream_http_release(x);
        http_finish_exchange(c);
        return;
    }
    if (!c->closing && c->state != CONN_LINGER && c->state != CONN_RELAYING)
        http_update_reading(c);
}

static void http_on_close(struct conn *c) {
    struct exchange *x = c->x;
    if (!x) return;
    exchange_unhold(x, false);
    if (exchange_routed(x) && !x->recorded) {
        if (x->status == 0) x->status = 499; /* nginx's "client went away"; log and metrics only */
        exchange_record(x);
    }
    upstream_checkout_cancel(&x->checkout);
    /* Blocks referenced by queued writes are freed by those writes; the
     * kept up_head may still be queued on c->up, so it waits for conn
     * release: http_free(). */
    buffer_put(&c->ctx->pool, x->rblock);
    buffer_put(&c->ctx->pool, x->client_rblock);
    x->rblock = x->client_rblock = NULL;
    http_put(c, &x->resp_buf);
}

static void http_free(struct conn *c) {
    if (c->x) exchange_free(c->x);
}

static const struct exchange_downstream http1_downstream = {
    .send_head = http1_send_head,
    .send_body = http1_send_body,
    .done = http1_done,
    .fail = http1_fail,
    .tunnel = http1_tunnel,
    .head_sent = http1_head_sent,
    .update_reading = http1_update_reading,
    .arm = http1_arm,
};

const struct conn_proto conn_proto_http = {
    .name = "http/1",
    .start = http_start,
    .refuse = http_refuse,
    .alloc = http_client_alloc,
    .on_read = http_on_client_read,
    .on_write_done = http_on_write_done,
    .on_close = http_on_close,
    .free = http_free,
};
