/* conn_http: HTTP mode of a downstream connection.
 *
 * One request at a time is in flight (struct exchange); pipelined requests
 * wait, unparsed, in c->in, so responses go out strictly in request order.
 *
 *   IDLE ──first byte──> HEAD ──head complete, checked──> BUSY ──response done──┐
 *    ^                    │ 400/408/431                    │ 101 + websocket    │
 *    │                    v                                v                    │
 *    │                 error response, LINGER, close     RELAYING (pipes)       │
 *    └──────────── keep-alive: next request from c->in, or wait ────────────────┘
 *
 * Where bytes live:
 *   c->in         the client's unparsed bytes: the request head being read
 *                 (kept contiguous so header spans point into it), and any
 *                 pipelined bytes that follow a request. Never referenced by
 *                 a write: what is forwarded from it is copied first.
 *   x->up_head    the head built for the upstream (kept for one retry)
 *   x->resp_buf   the upstream's response head as it arrives
 *   body bytes    read into fresh pool blocks and written on as they are,
 *                 raw (chunk framing included, already checked by llhttp),
 *                 so a body is never buffered whole.
 *
 * Backpressure: the client is not read while the upstream's write queue is
 * above PIPE_HIGH_WATER and the upstream not while the client's is;
 * whether each side should be read is recomputed after every event by
 * http_update_reading(), the one place that starts and stops reads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/config.h"
#include "ferry/conn.h"
#include "ferry/generation.h"
#include "ferry/http.h"
#include "ferry/log.h"
#include "ferry/route.h"
#include "ferry/stats.h"
#include "ferry/upstream.h"
#include "ferry/worker_ctx.h"

#include "conn_internal.h"

/* Retries of an idempotent request whose reused connection died before any
 * response byte (the upstream closed it while we were picking it). */
#define HTTP_STALE_RETRIES 2

/* `hold`: how often a held request tries again, and how many may wait per
 * worker (beyond that, the error comes at once: holding must not become a
 * way to pile up connections). */
#define HTTP_HOLD_RETRY_MS 100
#define HTTP_HOLD_MAX 1024

struct exchange {
    struct conn *c;                   /* the downstream connection it belongs to */
    struct http_msg req;              /* spans into c->in until dispatched */
    struct http_msg resp;             /* spans into resp_buf */
    const struct config_route *route; /* NULL: the listener's default upstream */
    struct upstream *upstream;        /* where the request goes */
    struct upstream_checkout checkout;
    char *up_head;                    /* block: head sent upstream, kept for a retry */
    uint32_t up_head_len;
    char *resp_buf;                   /* block: response head being read */
    uint32_t resp_len;                /* bytes in resp_buf */
    uint32_t req_fed;                 /* bytes of c->in given to the request parser */
    uint32_t early_body;              /* body bytes that came with the head (checked at dispatch) */
    char *rblock;                     /* block of the upstream read in progress */
    char *client_rblock;              /* block of the client read in progress (body) */
    bool dispatched;                  /* head checked, route chosen */
    bool connecting;                  /* checkout in flight */
    bool head_sent;                   /* the head (and early_body) went upstream once */
    bool req_done;                    /* the whole request was read and checked */
    bool resp_head_sent;              /* response bytes went to the client */
    bool resp_done;                   /* the whole response went to the client */
    bool any_resp_byte;               /* the upstream answered at all */
    bool stray_bytes;                 /* upstream sent more than its response */
    bool close_client;                /* the connection ends after this response */
    bool dechunk;                     /* chunked response re-framed for HTTP/1.0 */
    bool up_reading;                  /* reading the upstream now */
    bool release_pending;             /* release the upstream once its writes are out */
    bool recorded;                    /* counted in metrics and the access log */
    uint8_t stale_retries;
    bool holding;                     /* counted in ctx->held: waiting out `hold` */
    bool hold_wait;                   /* the timer will retry the checkout */
    bool hold_full;                   /* would be held, but the worker's limit is reached */
    uint64_t hold_until;              /* loop ms; 0 = not held */
    int status;                       /* of the response, for the log */
    uint64_t bytes_out;               /* bytes sent to the client for this response */
    uint64_t t_start;                 /* first byte of the request (loop ms) */
    uint64_t t_start_ns;              /* the same, uv_hrtime(): durations in metrics and logs */
    uint64_t t_up;                    /* checkout started */
    uint64_t t_resp;                  /* response head arrived; 0 = not yet */
    uint64_t last_up;                 /* last byte from the upstream */
    char rid[208];                    /* X-Request-Id, sent (at most 200 bytes) or generated */
    /* Access log fields, copied out of c->in before it is reused. */
    char log_method[24], log_target[512], log_referer[256], log_ua[256];
    uint8_t log_minor;
};

static void http_on_client_read(struct conn *c, ssize_t nread, const uv_buf_t *buf);
static void http_on_up_read(struct transport *t, ssize_t nread, const uv_buf_t *buf);
static void http_on_checkout(struct upstream_checkout *co, struct upstream_conn *uc, int status);
static void http_on_timer(struct wheel_timer *t);
static void http_try_head(struct conn *c);
static void http_update_reading(struct conn *c);
static void http_response_done(struct conn *c);
static void http_fail(struct conn *c, int status, const char *detail);
static void http_dispatch(struct conn *c);
static void http_forward_request_body(struct conn *c, char *blk, size_t n);
static void http_send_request(struct conn *c);
static void http_finish_exchange(struct conn *c);
static void http_not_found(struct conn *c);
static void http_unhold(struct conn *c, bool served);
static void http_checkout(struct conn *c);

/* --- small helpers ------------------------------------------------------ */

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

static void http_copy_field(char *out, size_t cap, const struct http_msg *m, int idx) {
    if (idx < 0) {
        snprintf(out, cap, "-");
        return;
    }
    struct http_span v = m->fields[idx].value;
    snprintf(out, cap, "%.*s", (int)v.len, http_span_ptr(m, v));
}

static int http_find_field(const struct http_msg *m, const char *name) {
    size_t n = strlen(name);
    for (unsigned i = 0; i < m->nfields; i++) {
        struct http_span s = m->fields[i].name;
        if (s.len == n && strncasecmp(http_span_ptr(m, s), name, n) == 0) return (int)i;
    }
    return -1;
}

/* Copies what the access log needs before c->in is reused. */
static void http_capture_log(struct exchange *x) {
    const struct http_msg *m = &x->req;
    snprintf(x->log_method, sizeof(x->log_method), "%.*s", (int)m->method_text.len,
             http_span_ptr(m, m->method_text));
    snprintf(x->log_target, sizeof(x->log_target), "%.*s", (int)m->target.len,
             http_span_ptr(m, m->target));
    http_copy_field(x->log_referer, sizeof(x->log_referer), m, http_find_field(m, "referer"));
    http_copy_field(x->log_ua, sizeof(x->log_ua), m, http_find_field(m, "user-agent"));
    x->log_minor = m->minor;
}

/* Counts the request in the route's metrics and writes its access log
 * line; called exactly once per request. */
static void http_record(struct conn *c, struct exchange *x) {
    if (x->recorded) return;
    x->recorded = true;
    const struct config *cfg = view_config(c->view);
    size_t idx = x->route ? (size_t)(x->route - cfg->routes) : cfg->nroutes;
    uint64_t elapsed_ns = uv_hrtime() - x->t_start_ns;
    stats_request(c->view->route_stats[idx], x->status, elapsed_ns / 1000);
    if (!access_log_enabled()) return;
    if (!x->log_method[0]) { /* refused before the head could be read */
        snprintf(x->log_method, sizeof(x->log_method), "-");
        snprintf(x->log_target, sizeof(x->log_target), "-");
        snprintf(x->log_referer, sizeof(x->log_referer), "-");
        snprintf(x->log_ua, sizeof(x->log_ua), "-");
        x->log_minor = 1;
    }
    char proto[16];
    snprintf(proto, sizeof(proto), "HTTP/1.%u", (unsigned)x->log_minor);
    struct access_http_entry e = {
        .client = CONN_PEER(c),
        .method = x->log_method,
        .target = x->log_target,
        .proto = proto,
        .status = x->status,
        .bytes = x->bytes_out,
        .referer = x->log_referer,
        .user_agent = x->log_ua,
        .route = x->route ? x->route->name : "-",
        .upstream = c->up ? c->up->server->cfg->addr.text : "-",
        .rt = (double)elapsed_ns / 1e9,
        .urt = x->t_resp ? (double)(x->t_resp - x->t_up) / 1000.0 : -1,
        .rid = x->rid[0] ? x->rid : "-",
    };
    access_log_http(&e);
}

size_t conn_exchange_size(void) {
    return sizeof(struct exchange);
}

static struct exchange *http_exchange_new(struct conn *c) {
    struct exchange *x = slab_alloc(&c->ctx->exchange_slab);
    if (!x) return NULL;
    http_msg_init(&x->req, true, false);
    x->t_start = uv_now(c->ctx->loop);
    x->t_start_ns = uv_hrtime();
    x->c = c;
    c->x = x;
    return x;
}

/* Frees the exchange. Its upstream connection, if still attached, is given
 * back (REUSABLE) or closed. */
static void http_exchange_end(struct conn *c, bool reusable) {
    struct exchange *x = c->x;
    if (!x) return;
    http_unhold(c, false);
    upstream_checkout_cancel(&x->checkout);
    if (c->up) {
        upstream_release(c->up, reusable);
        c->up = NULL;
    }
    http_put(c, &x->up_head);
    http_put(c, &x->resp_buf);
    slab_free(&c->ctx->exchange_slab, x);
    c->x = NULL;
}

/* --- reading: the one place that starts and stops reads ---------------- */

static void http_client_alloc(struct conn *c, uv_buf_t *out) {
    struct exchange *x = c->x;
    if (x && x->dispatched && !x->req_done) {
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

static void http_up_alloc(struct transport *t, uv_buf_t *out) {
    struct conn *c = t->data;
    struct exchange *x = c->x;
    if (!x->resp.head_done) {
        if (!x->resp_buf) x->resp_buf = http_block(c);
        if (!x->resp_buf || x->resp_len >= CONN_BLOCK_DATA_SIZE) {
            *out = uv_buf_init(NULL, 0);
            return;
        }
        *out = uv_buf_init(conn_block_data(x->resp_buf) + x->resp_len,
                           (unsigned)(CONN_BLOCK_DATA_SIZE - x->resp_len));
        return;
    }
    x->rblock = http_block(c);
    *out = x->rblock ? uv_buf_init(conn_block_data(x->rblock), CONN_BLOCK_DATA_SIZE)
                     : uv_buf_init(NULL, 0);
}

static const struct transport_reader http_up_reader = {http_up_alloc, http_on_up_read};

static bool http_want_client(const struct conn *c) {
    const struct exchange *x = c->x;
    if (c->client_eof || c->state == CONN_LINGER || c->closing) return false;
    /* A client that does not read its responses gets no more requests read:
     * each would queue another response behind the ones it ignores. */
    if (conn_client_queued(c) >= PIPE_HIGH_WATER) return false;
    if (!x || !x->dispatched) return c->in_len < CONN_BLOCK_DATA_SIZE;
    if (!x->head_sent) return false; /* c->in holds the request until it goes */
    if (!x->req_done)
        return c->up && !x->connecting && c->up_writes < PIPE_MAX_WRITES &&
               transport_queued(upstream_conn_transport(c->up)) < PIPE_HIGH_WATER;
    /* The request is in: read ahead (pipelining) while there is room. */
    return c->in_len < CONN_BLOCK_DATA_SIZE;
}

static bool http_want_up(const struct conn *c) {
    const struct exchange *x = c->x;
    return x && c->up && !x->connecting && !x->resp_done && !c->closing &&
           c->client_writes < PIPE_MAX_WRITES &&
           conn_client_queued(c) < PIPE_HIGH_WATER;
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
    if (!x || !c->up) return;
    want = http_want_up(c);
    if (want != x->up_reading) {
        if (want) {
            want = upstream_conn_read(c->up, &http_up_reader, c) == 0;
            x->last_up = uv_now(c->ctx->loop); /* paused time is not upstream silence */
        } else {
            upstream_conn_pause(c->up);
            if (c->state == CONN_HTTP_BUSY) http_arm(c, c->lcfg->idle_timeout_ms);
        }
        x->up_reading = want;
    }
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

static void http_make_request_id(struct conn *c, struct exchange *x);

/* Every response of ferry's own carries an X-Request-Id, even for a
 * request too broken to have one of its own. */
static void http_send_error(struct conn *c, int status, const char *detail, bool close) {
    char *block = http_block(c);
    if (!block) return;
    char fresh[40];
    const char *rid = fresh;
    if (c->x) {
        if (!c->x->rid[0]) http_make_request_id(c, c->x);
        rid = c->x->rid;
    } else {
        http_request_id(fresh, c->ctx->rid_seed, ++c->ctx->rid_counter);
    }
    char date[HTTP_DATE_LEN];
    uv_timeval64_t now;
    http_date(date, uv_gettimeofday(&now) == 0 ? now.tv_sec : 0);
    struct http_error e = {
        .status = status,
        .detail = detail,
        .request_id = rid,
        .date = date,
        .close = close,
        .head = c->x && http_msg_is_head(&c->x->req),
    };
    size_t n = http_build_error(conn_block_data(block), CONN_BLOCK_DATA_SIZE, &e);
    if (c->x) {
        c->x->status = status;
        c->x->bytes_out += n;
    }
    if (conn_write(c, true, block, conn_block_data(block), n, false) < 0)
        log_debug("conn %s: could not send %d", CONN_PEER(c), status);
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
static void http_fail(struct conn *c, int status, const char *detail) {
    struct exchange *x = c->x;
    if (c->closing) return;
    if (x && x->resp_head_sent) {
        http_record(c, x);
        conn_abort(c, detail);
        return;
    }
    if (status >= 500)
        log_warn("%s %s: %d %s (rid %s)", c->lcfg->name, CONN_PEER(c), status, detail,
                 x && x->rid[0] ? x->rid : "-");
    http_send_error(c, status, detail, true);
    if (x) {
        if (!x->log_method[0] && x->req.head_done && !x->dispatched) http_capture_log(x);
        http_record(c, x);
        if (x->up_reading && c->up) upstream_conn_pause(c->up);
        x->up_reading = false;
        upstream_checkout_cancel(&x->checkout);
    }
    conn_drop_upstream(c); /* it may have half the request: the upstream sees it end now */
    conn_linger(c, true);
}

/* "route api, upstream app: connection refused" (no server addresses). */
static void http_fail_upstream(struct conn *c, int status, const char *cause) {
    struct exchange *x = c->x;
    char detail[256];
    snprintf(detail, sizeof(detail), "route %s, upstream %s: %s",
             x->route ? x->route->name : "-", x->upstream->cfg->name, cause);
    http_fail(c, status, detail);
}

/* --- the request ------------------------------------------------------- */

static void http_on_client_eof(struct conn *c) {
    c->client_eof = true;
    struct exchange *x = c->x;
    if (!x || (!x->dispatched && c->in_len == 0)) {
        conn_close(c, "client closed");
        return;
    }
    if (!x->dispatched) {
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
    if (!x && !(x = http_exchange_new(c))) {
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

static void http_make_request_id(struct conn *c, struct exchange *x) {
    if (x->req.head_done && http_keeps_request_id(&x->req, x->route)) {
        http_copy_field(x->rid, sizeof(x->rid), &x->req, x->req.request_id);
        return;
    }
    http_request_id(x->rid, c->ctx->rid_seed, ++c->ctx->rid_counter);
}

static long http_check_request_body(struct conn *c, const char *data, size_t n);

/* The head is complete and checked: choose the route and the upstream. */
static void http_dispatch(struct conn *c) {
    struct exchange *x = c->x;
    struct http_msg *m = &x->req;
    conn_set_state(c, CONN_HTTP_BUSY);
    x->dispatched = true;
    if (access_log_enabled()) http_capture_log(x);
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
    struct http_span host = m->host >= 0 ? m->fields[m->host].value : (struct http_span){0, 0};
    /* The path routed by is the path forwarded; the log already has it as sent. */
    if (http_normalise_path(m, http_in(c)) < 0) {
        http_fail(c, m->error_status, m->error_text);
        return;
    }
    const struct config *cfg = view_config(c->view);
    const struct route_table *routes = c->view->gen->routes[c->lcfg - cfg->listeners];
    x->route = route_match(routes, http_span_ptr(m, host), host.len,
                           http_span_ptr(m, m->path), m->path.len,
                           http_span_ptr(m, m->method_text), m->method_text.len);
    http_make_request_id(c, x); /* after routing: the route may remove the client's */
    const struct config_upstream *cu = x->route ? x->route->upstream : c->lcfg->upstream;
    if (!cu) {
        http_not_found(c);
        return;
    }
    x->upstream = view_upstream(c->view, cu);
    x->t_up = uv_now(c->ctx->loop);
    http_arm(c, x->upstream->cfg->read_timeout_ms);
    http_checkout(c);
}

/* No route: 404. A request without a body leaves the connection in a known
 * state, so it stays open for the next one (a missing favicon should not
 * cost a browser its connection); with a body, or when the client asked
 * for it, the connection closes. */
static void http_not_found(struct conn *c) {
    struct exchange *x = c->x;
    bool bodyless = !x->req.chunked && x->req.content_length == 0;
    if (!bodyless || x->req.conn_close || c->ctx->draining) {
        http_fail(c, 404, "no route matches this request");
        return;
    }
    http_send_error(c, 404, "no route matches this request", false);
    if (c->closing) return;
    x->resp_done = x->req_done = true;
    http_record(c, x);
    c->requests++;
    uint32_t end = x->req.head_end;
    c->in_len -= end;
    memmove(http_in(c), http_in(c) + end, c->in_len);
    http_finish_exchange(c);
}

/* Builds the upstream head once; an HTTP/1.0 request without Host gets
 * the server's own host:port. */
static int http_build_up_head(struct conn *c, struct exchange *x) {
    if (x->up_head) return 0;
    if (!(x->up_head = http_block(c))) return -1;
    struct http_request_rewrite rw = {
        .route = x->route,
        .client_addr = CONN_PEER(c),
        .proto = "http",
        .request_id = x->rid,
        .default_host = c->up->server->cfg->addr.text,
    };
    size_t n = http_build_request(conn_block_data(x->up_head), CONN_BLOCK_DATA_SIZE, &x->req, &rw);
    x->up_head_len = (uint32_t)n;
    return n ? 0 : -1;
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

/* Sends the head, then whatever body bytes came with it; c->in keeps only
 * what follows the request. */
static void http_send_request(struct conn *c) {
    struct exchange *x = c->x;
    if (http_build_up_head(c, x) < 0) {
        http_fail(c, 431, "request head too large to forward");
        return;
    }
    stat_add(&c->up->server->stats->u.server.requests, 1);
    if (!c->up->reused && conn_send_proxy_header(c) < 0) {
        http_fail_upstream(c, 502, "write failed");
        return;
    }
    if (conn_write(c, false, x->up_head, conn_block_data(x->up_head), x->up_head_len, true) < 0) {
        http_fail_upstream(c, 502, "write failed");
        return;
    }
    if (x->head_sent) return; /* a retry (bodyless): nothing else to send */
    x->head_sent = true;
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
        if (conn_write(c, false, blk, conn_block_data(blk), body, false) < 0) {
            http_fail_upstream(c, 502, "write failed");
            return;
        }
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
    } else if (conn_write(c, false, blk, data, (size_t)body, false) < 0) {
        http_fail_upstream(c, 502, "write failed");
        return;
    }
    http_update_reading(c);
}

static int http_status_for(int err, const char **cause) {
    switch (err) {
    case UV_ETIMEDOUT: *cause = "connect timeout"; return 504;
    case UV_ECONNREFUSED: *cause = "connection refused"; return 502;
    case UV_EAI_NONAME: *cause = "no server available"; return 503;
    default: *cause = uv_strerror(err); return 502;
    }
}

/* Leaves the hold, counting how it ended. */
static void http_unhold(struct conn *c, bool served) {
    struct exchange *x = c->x;
    if (!x || !x->holding) return;
    x->holding = false;
    c->ctx->held--;
    struct stats_upstream *st = &x->upstream->stats->u.upstream;
    stat_add(served ? &st->held_served : &st->held_expired, 1);
}

/* `hold`: when no server takes the request because all are down or refuse
 * (an app restarting), an idempotent request without a body waits and
 * tries again until `hold` runs out. Returns true when it will retry. */
static bool http_hold(struct conn *c, int err) {
    struct exchange *x = c->x;
    const struct config_upstream *u = x->upstream->cfg;
    /* A timeout counts too: an app that came back on a new address leaves
     * its old one silent, and the failure has just asked for a re-resolution. */
    bool refused = err == UV_ECONNREFUSED || err == UV_EAI_NONAME || err == UV_ECONNRESET ||
                   err == UV_EHOSTUNREACH || err == UV_ENETUNREACH || err == UV_ETIMEDOUT;
    if (!u->hold_ms || !refused || x->req.chunked || x->req.content_length ||
        !http_method_idempotent(x->req.method))
        return false;
    uint64_t now = uv_now(c->ctx->loop);
    if (!x->hold_until) {
        if (c->ctx->held >= HTTP_HOLD_MAX) {
            x->hold_full = true;
            return false;
        }
        x->hold_until = x->t_up + u->hold_ms;
        x->holding = true;
        c->ctx->held++;
    }
    if (now + HTTP_HOLD_RETRY_MS > x->hold_until) return false;
    x->hold_wait = true;
    http_arm(c, HTTP_HOLD_RETRY_MS);
    return true;
}

/* No upstream connection for this request: hold it, or answer. */
static void http_checkout_failed(struct conn *c, int err) {
    if (http_hold(c, err)) return;
    http_unhold(c, false);
    if (c->x->hold_full) { /* would wait, but too many already do */
        http_fail_upstream(c, 503, "too many requests waiting for a server");
        return;
    }
    const char *cause;
    int code = http_status_for(err, &cause);
    http_fail_upstream(c, code, cause);
}

static void http_checkout(struct conn *c) {
    struct exchange *x = c->x;
    x->connecting = true;
    struct upstream_want want = conn_want(c, false);
    if (x->hold_until) { /* held: try marked servers too, and never past the hold */
        uint64_t now = uv_now(c->ctx->loop);
        want.probe = true;
        want.connect_timeout_ms = x->hold_until > now ? x->hold_until - now : 1;
        if (want.connect_timeout_ms > x->upstream->cfg->connect_timeout_ms)
            want.connect_timeout_ms = 0;
    }
    int err = upstream_checkout(x->upstream, &x->checkout, http_on_checkout, &want);
    if (err < 0) { /* no attempt could even start: no callback either */
        x->connecting = false;
        http_checkout_failed(c, err);
    }
}

static void http_on_checkout(struct upstream_checkout *co, struct upstream_conn *uc, int status) {
    struct exchange *x = container_of(co, struct exchange, checkout);
    struct conn *c = x->c;
    x->connecting = false;
    if (!uc) {
        http_checkout_failed(c, status);
        return;
    }
    http_unhold(c, true);
    http_arm(c, x->upstream->cfg->read_timeout_ms);
    c->up = uc;
    /* Reads go to us from now on; a pooled connection keeps reading (no
     * stop and start: http_update_reading pauses it if it must). */
    x->up_reading = upstream_conn_read(uc, &http_up_reader, c) == 0;
    http_msg_init(&x->resp, false, x->req.method == HTTP_HEAD);
    x->last_up = uv_now(c->ctx->loop);
    http_send_request(c);
    if (!c->closing) http_update_reading(c);
}

/* A reused connection died before answering: the upstream closed it while
 * it sat in the pool. An idempotent request without a body is sent again
 * on another connection; anything else gets the error. */
static bool http_retry_stale(struct conn *c, struct exchange *x) {
    if (!c->up || !c->up->reused || x->any_resp_byte || !x->req_done || x->req.chunked ||
        x->req.content_length ||
        !http_method_idempotent(x->req.method) || x->stale_retries >= HTTP_STALE_RETRIES ||
        c->up_writes > 0)
        return false;
    x->stale_retries++;
    x->up_reading = false;
    upstream_conn_close(c->up, NULL, NULL);
    c->up = NULL;
    x->resp_len = 0;
    x->connecting = true;
    log_debug("conn %s: reused upstream connection closed before answering; retrying", CONN_PEER(c));
    struct upstream_want want = conn_want(c, true);
    int err = upstream_checkout(x->upstream, &x->checkout, http_on_checkout, &want);
    if (err < 0) {
        x->connecting = false;
        http_fail_upstream(c, 502, "connection reset");
    }
    return true;
}

static void http_on_up_eof(struct conn *c, int err) {
    struct exchange *x = c->x;
    if (http_retry_stale(c, x)) return;
    if (x->resp.head_done && err == UV_EOF && http_parse_eof(&x->resp) == HTTP_DONE) {
        x->close_client = true; /* the body ran until close: so does the connection */
        x->stray_bytes = true;  /* and the upstream connection is gone */
        http_response_done(c);
        return;
    }
    http_fail_upstream(c, 502, err == UV_EOF ? "upstream closed the connection"
                                             : uv_strerror(err));
}

/* Writes the response head (and the body bytes that came with it). */
static void http_send_response_head(struct conn *c, const char *body, size_t body_len) {
    struct exchange *x = c->x;
    char *blk = http_block(c);
    if (!blk) {
        conn_close(c, "out of memory");
        return;
    }
    struct http_response_rewrite rw = {
        .route = x->route,
        .request_id = x->rid,
        .client_minor = x->req.minor,
        .close = x->close_client,
        .dechunk = x->dechunk,
    };
    size_t n = http_build_response(conn_block_data(blk), CONN_BLOCK_DATA_SIZE, &x->resp, &rw);
    if (n == 0) {
        buffer_put(&c->ctx->pool, blk);
        http_fail_upstream(c, 502, "response head too large");
        return;
    }
    if (x->resp.status >= 200) x->resp_head_sent = true;
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

/* Parses response body bytes at DATA and says how many go to the client
 * (after dechunking, they sit at DATA). Returns -1 after failing. */
static long http_check_response_body(struct conn *c, char *data, size_t n, bool *done) {
    struct exchange *x = c->x;
    size_t consumed = 0;
    x->resp.compact_to = data;
    x->resp.compact_len = 0;
    int r = http_parse_body(&x->resp, data, n, &consumed);
    if (r == HTTP_ERROR) {
        http_fail_upstream(c, 502, "malformed response body");
        return -1;
    }
    if (consumed < n) x->stray_bytes = true;
    *done = r == HTTP_DONE;
    return (long)(x->dechunk ? x->resp.compact_len : consumed);
}

/* After a 101 to a websocket request the connection becomes a tunnel.
 * Bytes that came after either head are passed on first. */
static void http_start_tunnel(struct conn *c, const char *up_rest, size_t up_rest_len) {
    struct exchange *x = c->x;
    x->resp_done = x->close_client = true;
    x->status = 101;
    http_send_response_head(c, up_rest, up_rest_len);
    if (c->closing) return;
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
    http_record(c, x);
    struct relay *r = conn_relay_new(c);
    if (!r) {
        conn_close(c, "out of memory");
        return;
    }
    struct upstream_conn *up = c->up;
    upstream_conn_pause(up); /* the pipe reads it from now on */
    conn_read_stop(c);
    c->up = NULL; /* keep the connection: the exchange must not release it */
    if (c->up_writes > 0) { /* the head may still be queued: its block must outlive the write */
        r->held_block = x->up_head;
        x->up_head = NULL;
    }
    http_exchange_end(c, false);
    c->up = up;
    conn_relay_start(c);
}

/* The response head is complete and checked. */
static void http_on_response_head(struct conn *c) {
    struct exchange *x = c->x;
    struct http_msg *m = &x->resp;
    char *buf = conn_block_data(x->resp_buf);
    x->any_resp_byte = true;
    size_t rest_len = x->resp_len - m->head_end;
    if (m->status == 101) {
        /* Only a websocket the client asked for may become a tunnel: any
         * other switch would carry bytes past the routing rules. */
        if (!x->req.upgrade_websocket || !m->upgrade_websocket) {
            http_fail_upstream(c, 502, x->req.upgrade_websocket ? "101 response without Upgrade: websocket"
                                                                : "unexpected 101 response");
            return;
        }
        http_start_tunnel(c, buf + m->head_end, rest_len);
        return;
    }
    if (m->status < 200) {
        /* 1xx: pass it on to an HTTP/1.1 client, then read the next head. */
        if (x->req.minor == 1) http_send_response_head(c, NULL, 0);
        if (c->closing) return;
        memmove(buf, buf + m->head_end, rest_len);
        x->resp_len = (uint32_t)rest_len;
        http_msg_init(m, false, x->req.method == HTTP_HEAD);
        if (rest_len > 0) {
            int r = http_parse_head(m, buf, 0, rest_len);
            if (r == HTTP_ERROR) http_fail_upstream(c, 502, m->error_text);
            if (r == HTTP_DONE) http_on_response_head(c);
        }
        return;
    }
    x->t_resp = uv_now(c->ctx->loop);
    x->status = m->status;
    x->dechunk = x->req.minor == 0 && m->chunked;
    x->resp.compact = x->dechunk;
    if (x->req.conn_close || c->ctx->draining || x->dechunk || http_msg_needs_eof(m) ||
        c->client_eof || !x->req_done)
        x->close_client = true;
    bool done = false;
    long body = http_check_response_body(c, buf + m->head_end, rest_len, &done);
    if (body < 0) return;
    http_send_response_head(c, buf + m->head_end, (size_t)body);
    http_put(c, &x->resp_buf);
    if (!c->closing && done) http_response_done(c);
}

static void http_on_up_read(struct transport *t, ssize_t nread, const uv_buf_t *buf) {
    FERRY_UNUSED(buf);
    struct conn *c = t->data;
    struct exchange *x = c->x;
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
            http_fail_upstream(c, 502, "response head too large");
            return;
        }
        http_on_up_eof(c, (int)nread);
        return;
    }
    if (!x->resp.head_done) {
        uint32_t from = x->resp_len;
        x->resp_len += (uint32_t)nread;
        x->any_resp_byte = true;
        int r = http_parse_head(&x->resp, conn_block_data(x->resp_buf), from, x->resp_len);
        if (r == HTTP_ERROR) http_fail_upstream(c, 502, x->resp.error_text);
        if (r == HTTP_DONE) http_on_response_head(c);
        if (!c->closing) http_update_reading(c);
        return;
    }
    bool done = false;
    char *data = conn_block_data(blk);
    long body = http_check_response_body(c, data, (size_t)nread, &done);
    if (body < 0) {
        buffer_put(&c->ctx->pool, blk);
        return;
    }
    x->bytes_out += (uint64_t)body;
    if (body == 0)
        buffer_put(&c->ctx->pool, blk);
    else if (conn_write(c, true, blk, data, (size_t)body, false) < 0) {
        conn_close(c, "client write failed");
        return;
    }
    if (done) http_response_done(c);
    if (!c->closing) http_update_reading(c);
}

/* Gives the upstream connection back once nothing of ours is queued on it. */
static void http_release_upstream(struct conn *c) {
    struct exchange *x = c->x;
    if (!c->up || c->up_writes > 0) {
        x->release_pending = c->up != NULL;
        return;
    }
    /* A connection that began with a PROXY header speaks for one client
     * only: never pooled. */
    bool reusable = x->req_done && !x->stray_bytes && !x->resp.conn_close && x->resp.minor == 1 &&
                    x->upstream->cfg->proxy_protocol == PROXY_PROTOCOL_OFF;
    x->up_reading = false;
    upstream_release(c->up, reusable);
    c->up = NULL;
    x->release_pending = false;
}

/* The exchange is over and its upstream connection given back: close, or
 * go on with the next request (already waiting in c->in when pipelined). */
static void http_finish_exchange(struct conn *c) {
    bool close = c->x->close_client;
    http_exchange_end(c, false);
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
    x->resp_done = true;
    if (!x->req_done || c->ctx->draining) x->close_client = true;
    http_record(c, x);
    c->requests++;
    http_release_upstream(c);
    if (!x->release_pending) http_finish_exchange(c);
    /* else: http_on_write_done() finishes once the upstream writes are out */
}

/* BUSY has two clocks: read_timeout for upstream silence (while we read
 * it), and idle_timeout for a client that has bytes waiting and takes none
 * (it must not pin the upstream connection and our buffers forever). The
 * timer is armed for whichever ends first. */
static void http_busy_timer(struct conn *c, struct exchange *x) {
    uint64_t limit = x->upstream ? x->upstream->cfg->read_timeout_ms : 1000;
    uint64_t now = uv_now(c->ctx->loop);
    uint64_t next = now + limit;
    if (conn_client_queued(c) > 0) {
        uint64_t stall = conn_client_stall_deadline(c);
        if (now >= stall) {
            conn_abort(c, "client stopped reading");
            return;
        }
        if (stall < next) next = stall;
    }
    if (x->up_reading) {
        uint64_t silence = x->last_up + limit;
        if (now >= silence) {
            if (x->resp_head_sent)
                conn_abort(c, "upstream read timeout mid-response");
            else
                http_fail_upstream(c, 504, "read timeout");
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
        conn_close(c, c->requests ? "keep-alive idle timeout" : "no request");
        return;
    case CONN_HTTP_HEAD:
        http_fail(c, 408, "request head not received within header_timeout");
        return;
    case CONN_HTTP_BUSY: {
        if (x->hold_wait) {
            x->hold_wait = false;
            http_checkout(c);
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
        if (x && !x->resp_head_sent)
            http_fail_upstream(c, 502, "upstream closed while receiving the request");
        else
            conn_close(c, "upstream write failed");
        return;
    }
    if (to_client && !x && c->state == CONN_HTTP_HEAD && c->in_len > 0 &&
        conn_client_queued(c) < PIPE_LOW_WATER) {
        http_try_head(c); /* a pipelined request held back by a slow reader */
        if (c->closing) return;
    }
    if (!to_client && x && x->release_pending && c->up_writes == 0) {
        http_release_upstream(c);
        if (x->resp_done) {
            http_finish_exchange(c);
            return;
        }
    }
    if (!c->closing && c->state != CONN_LINGER && c->state != CONN_RELAYING)
        http_update_reading(c);
}

static void http_on_close(struct conn *c) {
    struct exchange *x = c->x;
    if (!x) return;
    http_unhold(c, false);
    if (x->dispatched && !x->recorded) {
        if (x->status == 0) x->status = 499; /* nginx's "client went away"; log and metrics only */
        http_record(c, x);
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
    struct exchange *x = c->x;
    if (!x) return;
    http_put(c, &x->up_head);
    slab_free(&c->ctx->exchange_slab, x);
    c->x = NULL;
}

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
