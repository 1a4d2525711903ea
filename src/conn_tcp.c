/* conn_tcp: the byte relay, for tcp mode and for an HTTP connection after a
 * 101 to a websocket. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "ferry/config.h"
#include "ferry/log.h"
#include "ferry/proxy_proto.h"
#include "ferry/stats.h"
#include "ferry/upstream.h"
#include "ferry/worker_ctx.h"

#include "conn_internal.h"

static void conn_on_pipe(struct pipe_dir *d, enum pipe_event ev, int err);
static void conn_on_idle_timer(struct wheel_timer *t);
static void conn_on_checkout(struct upstream_checkout *co, struct upstream_conn *uc, int status);

static void tcp_start(struct conn *c) {
    conn_set_state(c, CONN_CONNECTING);
    if (!conn_relay_new(c)) {
        conn_close(c, "out of memory");
        return;
    }
    struct upstream_want want = conn_want(c, true);
    int err = upstream_checkout(view_upstream(c->view, c->lcfg->upstream), &c->relay->checkout,
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
                 c->lcfg->upstream->name, CONN_PEER(c), uv_strerror(status));
        conn_close(c, "upstream connect failed");
        return;
    }
    c->up = uc;
    c->relay->upstream_text = uc->server->cfg->addr.text;
    stat_add(&uc->server->stats->u.server.requests, 1);
    int err = conn_send_proxy_header(c);
    uint32_t early = c->in_len;
    if (err == 0 && early > 0) { /* bytes that came right behind a PROXY header */
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
    if (err == 0)
        conn_arm(c, c->lcfg->idle_timeout_ms, conn_on_idle_timer);
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
    uint64_t deadline = last + c->lcfg->idle_timeout_ms;
    uint64_t now = uv_now(c->ctx->loop);
    if (now < deadline) {
        conn_arm(c, deadline - now, conn_on_idle_timer);
        return;
    }
    conn_close(c, "idle timeout");
}

static void conn_log_access(struct conn *c) {
    if (c->lcfg->mode != MODE_TCP || !c->relay) return;
    struct access_tcp_entry e = {
        .client = CONN_PEER(c),
        .listener = c->lcfg->name,
        .upstream = c->relay->upstream_text,
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
    memtrim_note(&c->ctx->freed, sizeof(*r));
    free(r);
    c->relay = NULL;
}

const struct conn_proto conn_proto_tcp = {
    .name = "tcp",
    .start = tcp_start,
    .refuse = tcp_refuse,
    .on_write_done = tcp_on_write_done,
    .on_close = tcp_on_close,
    .free = tcp_free,
};
