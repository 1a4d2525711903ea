/* conn_tcp: the byte relay, for tcp mode and for an HTTP connection after a
 * 101 to a websocket.
 *
 * A tcp listener that sni routes name first reads the client's ClientHello
 * without consuming it, to pick the upstream by its server name:
 *
 *   accept ─(PROXY header)─> CONN_TLS_HELLO ──> CONN_CONNECTING ──> CONN_RELAYING
 *                            reads into c->in,   the route's        c->in goes out
 *                            tls_hello_parse     upstream, or the   first, untouched,
 *                            (header_timeout,    listener's, or     then the pipes
 *                            at most 16 KiB)     close               run
 *
 * Without sni routes a connection goes straight to CONN_CONNECTING. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "ferry/config.h"
#include "ferry/generation.h"
#include "ferry/log.h"
#include "ferry/proxy_proto.h"
#include "ferry/route.h"
#include "ferry/stats.h"
#include "ferry/tls_hello.h"
#include "ferry/upstream.h"
#include "ferry/worker_ctx.h"

#include "conn_internal.h"

static void conn_on_pipe(struct pipe_dir *d, enum pipe_event ev, int err);
static void conn_on_idle_timer(struct wheel_timer *t);
static void conn_on_checkout(struct upstream_checkout *co, struct upstream_conn *uc, int status);
static void tcp_connect(struct conn *c, const struct config_upstream *u);
static void tcp_hello_start(struct conn *c);
static void tcp_hello_decide(struct conn *c);

/* The listener's sni routes, or NULL when it has none. */
static const struct route_table *tcp_sni_routes(const struct conn *c) {
    return c->view->gen->routes[c->lcfg - view_config(c->view)->listeners];
}

static void tcp_start(struct conn *c) {
    if (!conn_relay_new(c)) {
        conn_close(c, "out of memory");
        return;
    }
    if (tcp_sni_routes(c))
        tcp_hello_start(c);
    else
        tcp_connect(c, c->lcfg->upstream);
}

/* --- sni routing: the ClientHello -------------------------------------------- */

static void tcp_on_hello_timeout(struct wheel_timer *t) {
    conn_close(container_of(t, struct conn, timer), "no ClientHello within header_timeout");
}

/* Reads go on after whatever a PROXY header left in c->in, and never past
 * TLS_HELLO_MAX bytes: the reader decides by then. */
static void tcp_hello_alloc(struct conn *c, uv_buf_t *out) {
    if (!c->in) c->in = buffer_get(&c->ctx->pool);
    *out = c->in ? uv_buf_init(conn_block_data(c->in) + c->in_len,
                               (unsigned)(TLS_HELLO_MAX - c->in_len))
                 : uv_buf_init(NULL, 0);
}

static void tcp_hello_read(struct conn *c, ssize_t nread, const uv_buf_t *buf) {
    FERRY_UNUSED(buf); /* c->in: kept, its bytes go upstream */
    if (nread == 0) return;
    if (nread < 0) {
        conn_close(c, nread == UV_EOF      ? "client closed before its ClientHello ended"
                      : nread == UV_ENOBUFS ? "no buffer for the ClientHello"
                                            : uv_strerror((int)nread));
        return;
    }
    c->in_len = (uint16_t)(c->in_len + nread);
    tcp_hello_decide(c);
}

/* Starts reading the ClientHello under header_timeout. Bytes that came
 * behind a PROXY header may hold part of it, or all of it, already. */
static void tcp_hello_start(struct conn *c) {
    struct relay *r = c->relay;
    conn_set_state(c, CONN_TLS_HELLO);
    r->route = "-";
    r->hello = calloc(1, sizeof(*r->hello));
    if (!r->hello) {
        conn_close(c, "out of memory");
        return;
    }
    conn_arm(c, c->lcfg->header_timeout_ms, tcp_on_hello_timeout);
    if (c->in_len > 0) {
        tcp_hello_decide(c);
        if (c->closing || c->state != CONN_TLS_HELLO) return;
    }
    if (conn_read_start(c) < 0) conn_close(c, "read failed");
}

/* Once the reader has a verdict: the route whose sni fits the name, else
 * the listener's upstream for a hello without SNI or a client that speaks
 * no TLS (a default upstream may serve those: plain text, another
 * protocol), else close. A hello that is TLS but malformed (lengths that
 * lie, a name that is no host name, over 16 KiB) is closed: bytes the
 * reader refused could be read differently by the upstream. */
static void tcp_hello_decide(struct conn *c) {
    struct relay *r = c->relay;
    enum tls_hello_verdict v =
        tls_hello_parse(r->hello, (const uint8_t *)conn_block_data(c->in), c->in_len);
    if (v == TLS_HELLO_NEED_MORE) return;
    conn_read_stop(c);
    wheel_stop(&c->ctx->wheel, &c->timer);
    const struct config_route *route =
        v == TLS_HELLO_FOUND ? route_match_sni(tcp_sni_routes(c), r->hello->name,
                                               r->hello->name_len)
                             : NULL;
    log_debug("listener %s: ClientHello from %s: %s%s%s -> route %s", c->lcfg->name,
              CONN_PEER(c), tls_hello_verdict_name(v), v == TLS_HELLO_FOUND ? " " : "",
              v == TLS_HELLO_FOUND ? r->hello->name : (r->hello->why ? r->hello->why : ""),
              route ? route->name : "-");
    memtrim_note(&c->ctx->freed, sizeof(*r->hello));
    free(r->hello);
    r->hello = NULL;
    if (v == TLS_HELLO_MALFORMED) {
        conn_close(c, "malformed ClientHello");
        return;
    }
    if (route) {
        r->route = route->name;
        r->idle_ms = route->idle_timeout_ms; /* 0: the listener's */
    }
    const struct config_upstream *u = route ? route->upstream : c->lcfg->upstream;
    if (!u) {
        conn_close(c, "no sni route matched and no default upstream");
        return;
    }
    tcp_connect(c, u);
}

/* --- connect and relay -------------------------------------------------------- */

static void tcp_connect(struct conn *c, const struct config_upstream *u) {
    conn_set_state(c, CONN_CONNECTING);
    c->relay->ucfg = u;
    struct upstream_want want = conn_want(c, true);
    int err = upstream_checkout(view_upstream(c->view, u), &c->relay->checkout,
                                conn_on_checkout, &want);
    if (err < 0) {
        log_debug("listener %s: no upstream server for %s: %s", c->lcfg->name, CONN_PEER(c),
                 err == UV_EAI_NONAME ? "no server available" : uv_strerror(err));
        conn_close(c, "no upstream server available");
    }
}

static void conn_on_checkout(struct upstream_checkout *co, struct upstream_conn *uc, int status) {
    struct conn *c = container_of(co, struct relay, checkout)->c;
    if (!uc) {
        log_debug("listener %s: upstream %s failed for %s: %s", c->lcfg->name,
                 c->relay->ucfg->name, CONN_PEER(c), uv_strerror(status));
        conn_close(c, "upstream connect failed");
        return;
    }
    c->up = uc;
    c->relay->upstream_text = uc->server->cfg->addr.text;
    stat_add(&uc->server->stats->u.server.requests, 1);
    int err = conn_send_proxy_header(c);
    uint32_t early = c->in_len;
    if (err == 0 && early > 0) { /* behind a PROXY header, or a ClientHello read to route */
        err = conn_write(c, false, c->in, conn_block_data(c->in), early, false);
        c->in = NULL;
        c->in_len = 0;
    }
    if (err < 0) {
        conn_close(c, uv_strerror(err));
        return;
    }
    buffer_put(&c->ctx->pool, c->in);
    c->in = NULL;
    conn_relay_start(c);
    if (c->relay) c->relay->to_up.bytes += early;
}

struct relay *conn_relay_new(struct conn *c) {
    if (!c->relay && (c->relay = calloc(1, sizeof(*c->relay)))) {
        c->relay->c = c;
        c->relay->upstream_text = "-";
    }
    return c->relay;
}

void conn_relay_start(struct conn *c) {
    conn_set_state(c, CONN_RELAYING);
    struct relay *r = conn_relay_new(c);
    if (!r) {
        conn_close(c, "out of memory");
        return;
    }
    c->proto = &conn_proto_tcp; /* an HTTP connection after a 101 is a relay now */
    struct transport *up = upstream_conn_transport(c->up);
    pipe_init(&r->to_up, &c->client_tp, up, &c->ctx->pool, conn_on_pipe, c);
    pipe_init(&r->to_client, up, &c->client_tp, &c->ctx->pool, conn_on_pipe, c);
    int err = pipe_start(&r->to_up);
    if (err == 0) err = pipe_start(&r->to_client);
    if (!r->idle_ms) r->idle_ms = c->lcfg->idle_timeout_ms;
    if (err == 0)
        conn_arm(c, r->idle_ms, conn_on_idle_timer);
    if (err < 0) conn_close(c, uv_strerror(err));
}

static void conn_on_pipe(struct pipe_dir *d, enum pipe_event ev, int err) {
    struct conn *c = d->owner;
    if (ev == PIPE_ERROR) {
        /* An upstream that reset is passed on as a reset: a FIN would make
         * a cut-short stream look like one that ended. */
        bool upstream_reset = err == UV_ECONNRESET && d == &c->relay->to_client;
        if (upstream_reset)
            conn_abort(c, uv_strerror(err));
        else
            conn_close(c, uv_strerror(err));
        return;
    }
    if (c->relay->to_up.state == PIPE_FINISHED && c->relay->to_client.state == PIPE_FINISHED)
        conn_close(c, "both sides finished");
}

/* The timer is armed for the full idle_timeout and, when it fires, re-armed
 * for whatever is left since the last byte: no timer call per read. */
static void conn_on_idle_timer(struct wheel_timer *t) {
    struct conn *c = container_of(t, struct conn, timer);
    const struct relay *r = c->relay;
    uint64_t last = r->to_up.last_active > r->to_client.last_active ? r->to_up.last_active
                                                                     : r->to_client.last_active;
    uint64_t deadline = last + r->idle_ms;
    uint64_t now = uv_now(c->ctx->loop);
    if (now < deadline) {
        conn_arm(c, deadline - now, conn_on_idle_timer);
        return;
    }
    conn_close(c, "idle timeout");
}

static void conn_log_access(struct conn *c) {
    if (c->relay && c->relay->log) { /* an http tunnel: its request's line, now complete */
        relay_log_write(c, c->relay->log);
        c->relay->log = NULL;
        return;
    }
    if (c->lcfg->mode != MODE_TCP || !c->relay) return;
    struct access_tcp_entry e = {
        .client = CONN_PEER(c),
        .listener = c->lcfg->name,
        .upstream = c->relay->upstream_text,
        .route = c->relay->route,
        .bytes_in = c->relay->to_up.bytes,
        .bytes_out = c->relay->to_client.bytes,
        .duration_s = (double)(uv_now(c->ctx->loop) - c->started) / 1000.0,
    };
    access_log_tcp(&e);
}

static void tcp_refuse(struct conn *c, const char *why) {
    conn_close(c, why);
}

static void tcp_on_write_done(struct conn *c, bool to_client, int status) {
    FERRY_UNUSED(to_client);
    if (status < 0) conn_close(c, "upstream write failed");
}

static void tcp_on_close(struct conn *c) {
    conn_log_access(c);
    struct relay *r = c->relay;
    if (!r) return;
    stat_add(&c->ctx->wstats->u.worker.bytes_in, r->to_up.bytes);
    stat_add(&c->ctx->wstats->u.worker.bytes_out, r->to_client.bytes);
    pipe_stop(&r->to_up);
    pipe_stop(&r->to_client);
    upstream_checkout_cancel(&r->checkout);
}

/* Its pipes' writes have all called back by now. */
static void tcp_free(struct conn *c) {
    struct relay *r = c->relay;
    if (!r) return;
    buffer_put(&c->ctx->pool, r->held_block);
    free(r->hello);
    free(r->log); /* written at close; only a relay that never closed still holds it */
    memtrim_note(&c->ctx->freed, sizeof(*r));
    free(r);
    c->relay = NULL;
}

const struct conn_proto conn_proto_tcp = {
    .name = "tcp",
    .start = tcp_start,
    .refuse = tcp_refuse,
    .alloc = tcp_hello_alloc, /* only while CONN_TLS_HELLO: the relay's pipes read for themselves */
    .on_read = tcp_hello_read,
    .on_write_done = tcp_on_write_done,
    .on_close = tcp_on_close,
    .free = tcp_free,
};
