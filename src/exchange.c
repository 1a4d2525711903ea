/* exchange: routing, checkout, `hold`, metrics and the access log of one
 * request; see exchange.h for the states. What is HTTP/1.x about the
 * downstream lives in conn_http.c, what is HTTP/1.1 about the upstream in
 * upstream_http.c; this file speaks to both through the exchange. */
#include "exchange.h"

#include <assert.h>
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

/* `hold`: how often a held request tries again, and how many may wait per
 * worker (beyond that, the error comes at once: holding must not become a
 * way to pile up connections). */
#define EXCHANGE_HOLD_RETRY_MS 100
#define EXCHANGE_HOLD_MAX 1024

static void exchange_on_checkout(struct upstream_checkout *co, struct upstream_conn *uc,
                                 int status);

/* --- the state machine ---------------------------------------------------- */

static const char *const exchange_state_names[EXCHANGE_NSTATES] = {
    "head", "routed", "connecting", "holding", "waiting", "streaming", "releasing", "done"};

#define TO(s) (1u << (s))
/* The arrows of exchange.h's diagram: bit TO of legal[FROM]. */
static const unsigned exchange_legal[EXCHANGE_NSTATES] = {
    [EXCHANGE_HEAD] = TO(EXCHANGE_ROUTED) | TO(EXCHANGE_DONE),
    [EXCHANGE_ROUTED] = TO(EXCHANGE_CONNECTING) | TO(EXCHANGE_DONE),
    [EXCHANGE_CONNECTING] = TO(EXCHANGE_WAITING) | TO(EXCHANGE_HOLDING) | TO(EXCHANGE_DONE),
    [EXCHANGE_HOLDING] = TO(EXCHANGE_CONNECTING) | TO(EXCHANGE_DONE),
    [EXCHANGE_WAITING] = TO(EXCHANGE_CONNECTING) | TO(EXCHANGE_STREAMING) | TO(EXCHANGE_DONE),
    [EXCHANGE_STREAMING] = TO(EXCHANGE_RELEASING) | TO(EXCHANGE_DONE),
    [EXCHANGE_RELEASING] = TO(EXCHANGE_DONE),
    [EXCHANGE_DONE] = 0,
};
#undef TO

bool exchange_transition_ok(enum exchange_state from, enum exchange_state to) {
    if ((unsigned)from >= EXCHANGE_NSTATES || (unsigned)to >= EXCHANGE_NSTATES) return false;
    return (exchange_legal[from] >> to) & 1u;
}

const char *exchange_state_name(enum exchange_state s) {
    return (unsigned)s < EXCHANGE_NSTATES ? exchange_state_names[s] : "?";
}

void exchange_set_state(struct exchange *x, enum exchange_state next) {
    assert(exchange_transition_ok((enum exchange_state)x->state, next));
    x->state = (uint8_t)next;
}

/* --- life ----------------------------------------------------------------- */

size_t conn_exchange_size(void) {
    return sizeof(struct exchange);
}

struct exchange *exchange_new(struct conn *c, const struct exchange_downstream *down) {
    struct exchange *x = slab_alloc(&c->ctx->exchange_slab);
    if (!x) return NULL;
    http_msg_init(&x->req, true, false);
    x->state = EXCHANGE_HEAD;
    x->t_start = uv_now(c->ctx->loop);
    x->t_start_ns = uv_hrtime();
    x->c = c;
    x->down = down;
    c->x = x;
    return x;
}

void exchange_free(struct exchange *x) {
    struct conn *c = x->c;
    assert(c->x == x);
    exchange_unhold(x, false);
    upstream_checkout_cancel(&x->checkout);
    struct buffer_pool *pool = &c->ctx->pool;
    buffer_put(pool, x->up_head);
    buffer_put(pool, x->resp_buf);
    buffer_put(pool, x->rblock);
    buffer_put(pool, x->client_rblock);
    slab_free(&c->ctx->exchange_slab, x);
    c->x = NULL;
}

/* --- the log and the metrics ----------------------------------------------- */

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
void exchange_capture_log(struct exchange *x) {
    const struct http_msg *m = &x->req;
    snprintf(x->log_method, sizeof(x->log_method), "%.*s", (int)m->method_text.len,
             http_span_ptr(m, m->method_text));
    snprintf(x->log_target, sizeof(x->log_target), "%.*s", (int)m->target.len,
             http_span_ptr(m, m->target));
    http_copy_field(x->log_referer, sizeof(x->log_referer), m, http_find_field(m, "referer"));
    http_copy_field(x->log_ua, sizeof(x->log_ua), m, http_find_field(m, "user-agent"));
    x->log_minor = m->minor;
}

/* An http tunnel's line, kept from its 101 to its end: the entry with its
 * strings copied behind it (c->in and the exchange are gone by then). */
struct relay_log {
    struct access_http_entry e;
    uint64_t t_start_ns; /* the upgrade request's first byte */
    char text[];         /* the entry's strings, each NUL-terminated */
};

static struct relay_log *relay_log_keep(const struct access_http_entry *e, uint64_t t_start_ns) {
    const char *const src[] = {e->method, e->target, e->proto, e->referer,
                               e->user_agent, e->route, e->upstream, e->rid};
    size_t total = 0;
    for (size_t i = 0; i < FERRY_ARRAY_LEN(src); i++) total += strlen(src[i]) + 1;
    struct relay_log *l = malloc(sizeof(*l) + total);
    if (!l) return NULL;
    l->e = *e;
    l->t_start_ns = t_start_ns;
    const char **dst[] = {&l->e.method, &l->e.target, &l->e.proto, &l->e.referer,
                          &l->e.user_agent, &l->e.route, &l->e.upstream, &l->e.rid};
    char *p = l->text;
    for (size_t i = 0; i < FERRY_ARRAY_LEN(src); i++) {
        size_t n = strlen(src[i]) + 1;
        memcpy(p, src[i], n);
        *dst[i] = p;
        p += n;
    }
    l->e.client = NULL; /* formatted again at the end */
    return l;
}

/* Counts the request in the route's metrics and writes its access log
 * line; called exactly once per request. */
void exchange_record(struct exchange *x) {
    struct conn *c = x->c;
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
    /* A websocket's line waits for the tunnel's end: its bytes and its
     * length are what a reader of the log wants, not the 101's. */
    if (x->status == 101 && c->relay) {
        if (!(c->relay->log = relay_log_keep(&e, x->t_start_ns))) access_log_http(&e);
        return;
    }
    access_log_http(&e);
}

void relay_log_write(struct conn *c, struct relay_log *l) {
    struct relay *r = c->relay;
    l->e.client = CONN_PEER(c);
    l->e.tunnel = true;
    l->e.tunnel_in = r->to_up.bytes + r->early_in;
    l->e.tunnel_out = r->to_client.bytes + r->early_out;
    l->e.bytes += l->e.tunnel_out;
    l->e.rt = (double)(uv_hrtime() - l->t_start_ns) / 1e9;
    l->e.duration_s = l->e.rt;
    access_log_http(&l->e);
    free(l);
}

void exchange_make_request_id(struct exchange *x) {
    struct conn *c = x->c;
    if (x->req.head_done && http_keeps_request_id(&x->req, x->route)) {
        http_copy_field(x->rid, sizeof(x->rid), &x->req, x->req.request_id);
        return;
    }
    http_request_id(x->rid, c->ctx->rid_seed, ++c->ctx->rid_counter);
}

/* --- routing --------------------------------------------------------------- */

bool exchange_route(struct exchange *x, const struct route_table *routes,
                    const struct config_upstream *fallback) {
    struct conn *c = x->c;
    const struct http_msg *m = &x->req;
    struct http_span host = m->host >= 0 ? m->fields[m->host].value : (struct http_span){0, 0};
    x->route = route_match(routes, http_span_ptr(m, host), host.len,
                           http_span_ptr(m, m->path), m->path.len,
                           http_span_ptr(m, m->method_text), m->method_text.len);
    exchange_make_request_id(x); /* after routing: the route may remove the client's */
    x->host[0] = '\0';
    if (x->route && x->route->rewrite_redirects && host.len < sizeof(x->host)) {
        memcpy(x->host, http_span_ptr(m, host), host.len);
        x->host[host.len] = '\0';
    }
    const struct config_upstream *cu = x->route ? x->route->upstream : fallback;
    if (!cu) return false;
    x->upstream = view_upstream(c->view, cu);
    x->t_up = uv_now(c->ctx->loop);
    return true;
}

uint64_t exchange_read_timeout(const struct exchange *x) {
    if (x->route && x->route->read_timeout_ms) return x->route->read_timeout_ms;
    return x->upstream ? x->upstream->cfg->read_timeout_ms : 1000;
}

uint64_t exchange_idle_timeout(const struct exchange *x) {
    if (x->route && x->route->idle_timeout_ms) return x->route->idle_timeout_ms;
    return x->c->lcfg->idle_timeout_ms;
}

/* --- checkout and hold ------------------------------------------------------ */

static int http_status_for(int err, const char **cause) {
    switch (err) {
    case UV_ETIMEDOUT: *cause = "connect timeout"; return 504;
    case UV_ECONNREFUSED: *cause = "connection refused"; return 502;
    case UV_EAI_NONAME: *cause = "no server available"; return 503;
    default: *cause = uv_strerror(err); return 502;
    }
}

/* Leaves the hold, counting how it ended. */
void exchange_unhold(struct exchange *x, bool served) {
    struct conn *c = x->c;
    if (!x->holding) return;
    x->holding = false;
    c->ctx->held--;
    struct stats_upstream *st = &x->upstream->stats->u.upstream;
    stat_add(served ? &st->held_served : &st->held_expired, 1);
}

/* `hold`: when no server takes the request because all are down or refuse
 * (an app restarting), an idempotent request without a body waits and
 * tries again until `hold` runs out. Returns true when it will retry. */
static bool exchange_hold(struct exchange *x, int err) {
    struct conn *c = x->c;
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
        if (c->ctx->held >= EXCHANGE_HOLD_MAX) {
            x->hold_full = true;
            return false;
        }
        x->hold_until = x->t_up + u->hold_ms;
        x->holding = true;
        c->ctx->held++;
    }
    if (now + EXCHANGE_HOLD_RETRY_MS > x->hold_until) return false;
    exchange_set_state(x, EXCHANGE_HOLDING);
    x->down->arm(x, EXCHANGE_HOLD_RETRY_MS);
    return true;
}

/* No upstream connection for this request: hold it, or answer. */
static void exchange_checkout_failed(struct exchange *x, int err) {
    if (exchange_hold(x, err)) return;
    exchange_unhold(x, false);
    if (x->hold_full) { /* would wait, but too many already do */
        exchange_fail_upstream(x, 503, "too many requests waiting for a server");
        return;
    }
    const char *cause;
    int code = http_status_for(err, &cause);
    if (x->checkout.last_cause && err == x->checkout.last_error) cause = x->checkout.last_cause;
    exchange_fail_upstream(x, code, cause);
}

void exchange_checkout(struct exchange *x) {
    struct conn *c = x->c;
    exchange_set_state(x, EXCHANGE_CONNECTING);
    struct upstream_want want = conn_want(c, false);
    if (x->hold_until) { /* held: try marked servers too, and never past the hold */
        uint64_t now = uv_now(c->ctx->loop);
        want.probe = true;
        want.connect_timeout_ms = x->hold_until > now ? x->hold_until - now : 1;
        if (want.connect_timeout_ms > x->upstream->cfg->connect_timeout_ms)
            want.connect_timeout_ms = 0;
    }
    int err = upstream_checkout(x->upstream, &x->checkout, exchange_on_checkout, &want);
    if (err < 0) { /* no attempt could even start: no callback either */
        exchange_checkout_failed(x, err);
    }
}

static void exchange_on_checkout(struct upstream_checkout *co, struct upstream_conn *uc,
                                 int status) {
    struct exchange *x = container_of(co, struct exchange, checkout);
    if (!uc) {
        exchange_checkout_failed(x, status);
        return;
    }
    exchange_unhold(x, true);
    exchange_set_state(x, EXCHANGE_WAITING);
    upstream_http_attach(x, uc);
}

/* A reused connection died before answering (see upstream_http.c): the
 * same request on a connection of its own. */
void exchange_retry_fresh(struct exchange *x) {
    exchange_set_state(x, EXCHANGE_CONNECTING);
    struct upstream_want want = conn_want(x->c, true);
    int err = upstream_checkout(x->upstream, &x->checkout, exchange_on_checkout, &want);
    if (err < 0) exchange_fail_upstream(x, 502, "connection reset");
}

/* "route api, upstream app: connection refused" (no server addresses). */
void exchange_fail_upstream(struct exchange *x, int status, const char *cause) {
    char detail[256];
    snprintf(detail, sizeof(detail), "route %s, upstream %s: %s",
             x->route ? x->route->name : "-", x->upstream->cfg->name, cause);
    x->down->fail(x, status, detail);
}
