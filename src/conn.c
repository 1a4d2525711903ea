/* conn: a downstream connection, from accept to its one close.
 *
 *   listener ──accept──> conn ──proto->start──> what it speaks (struct conn_proto)
 *                         │                      tcp   (conn_tcp.c):  a relay of two pipes
 *                         │                      http  (conn_http.c): exchanges, then
 *                         │                                           maybe a relay (101)
 *                         │ client_tp: the transport every client byte goes through
 *                         └──── conn_close(c, why): the one exit
 *
 * This file owns what every protocol shares: accept (the client's address,
 * max_connections, the PROXY header via conn_proxy.c), the client's reads
 * (conn_read_start hands them to proto->alloc/on_read), writes of pool
 * blocks to the client or to c->up (conn_write, counted here), the
 * lingering close (shut the write side, drain input for a while), and the
 * close and free. It never asks the listener's mode: c->proto decides.
 *
 *   CONN_ACCEPTED, CONN_PROXY_HDR   before the protocol starts
 *   CONN_TLS_HELLO                  the relay reads the ClientHello (sni routes)
 *   CONN_CONNECTING, CONN_RELAYING  the relay (conn_tcp.c)
 *   CONN_HTTP_IDLE/HEAD/BUSY        HTTP/1.x (conn_http.c)
 *   CONN_LINGER                     last response written, write side shut
 *   CONN_CLOSED                     conn_close() ran: waiting for callbacks
 *
 * The conn is freed only when every close callback that can still point
 * into it has run: its client handle, its timer, and its upstream
 * connection (whose queued writes reference blocks the conn counts). `refs`
 * counts them. Every error path calls conn_close(); it is idempotent and the
 * first reason wins, so a callback that may have closed the conn checks
 * `closing` before touching it again. */
#include "ferry/conn.h"

#include <arpa/inet.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <uv.h>

#include "ferry/config.h"
#include "ferry/generation.h"
#include "ferry/transport_tls.h"
#include "ferry/listener.h"
#include "ferry/log.h"
#include "ferry/pipe.h"
#include "ferry/proxy_proto.h"
#include "ferry/stats.h"
#include "ferry/upstream.h"
#include "ferry/worker_ctx.h"

#include "conn_internal.h"

static void conn_on_handle_closed(uv_handle_t *h);
static void conn_on_upstream_closed(void *arg);
static void conn_release(struct conn *c);
static void conn_unlist(struct conn *c);
static bool conn_input_waiting(struct conn *c);

_Static_assert(CONN_NSTATES <= 16, "conn.state is 4 bits");

static const char *const conn_state_names[] = {
    "accepted", "proxy-header", "tls-hello", "connecting", "relaying",
    "idle",     "head",         "busy",      "linger",     "closed",
    "h2"};
_Static_assert(FERRY_ARRAY_LEN(conn_state_names) == CONN_NSTATES, "a name per state");

void conn_arm(struct conn *c, uint64_t ms, wheel_cb cb) {
    if (!c->closing) wheel_start(&c->ctx->wheel, &c->timer, ms, cb);
}

void conn_set_state(struct conn *c, enum conn_state next) {
    assert(c->state != CONN_CLOSED); /* closed is final */
    log_debug("conn %p (%s): %s -> %s", (void *)c, CONN_PEER(c), conn_state_names[c->state],
              conn_state_names[next]);
    c->state = next;
}

/* A v4 client on a dual-stack socket counts as plain v4, in logs and
 * X-Forwarded-For here as for ip_hash in conn_want(). */
const char *conn_peer(const struct conn *c, char *buf) {
    const struct sockaddr *ss = &c->peer_addr.sa;
    if (ss->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        const void *bytes = &a->sin6_addr;
        int family = AF_INET6;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) { /* logged as the v4 address it is */
            bytes = a->sin6_addr.s6_addr + 12;
            family = AF_INET;
        }
        if (inet_ntop(family, bytes, buf, CONN_PEER_TEXT)) return buf;
    } else if (ss->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        if (inet_ntop(AF_INET, &a->sin_addr, buf, CONN_PEER_TEXT)) return buf;
    } else {
        return "unix";
    }
    return "?";
}

size_t conn_object_size(void) {
    return sizeof(struct conn);
}

struct upstream_want conn_want(const struct conn *c, bool fresh) {
    struct upstream_want w = {.fresh = fresh};
    if (c->peer_addr.sa.sa_family == AF_INET) {
        w.key = &c->peer_addr.in.sin_addr;
        w.key_len = 4;
    } else if (c->peer_addr.sa.sa_family == AF_INET6) {
        bool mapped = IN6_IS_ADDR_V4MAPPED(&c->peer_addr.in6.sin6_addr);
        w.key = c->peer_addr.in6.sin6_addr.s6_addr + (mapped ? 12 : 0);
        w.key_len = mapped ? 4 : 16;
    }
    return w;
}

void conn_set_peer_addr(struct conn *c, const struct sockaddr_storage *ss) {
    memset(&c->peer_addr, 0, sizeof(c->peer_addr));
    if (ss->ss_family == AF_INET)
        c->peer_addr.in = *(const struct sockaddr_in *)ss;
    else if (ss->ss_family == AF_INET6)
        c->peer_addr.in6 = *(const struct sockaddr_in6 *)ss;
    else
        c->peer_addr.sa.sa_family = AF_UNSPEC;
}

/* Learns the client's address. A TCP peer that reset before we asked
 * has none to give (ENOTCONN): returns that error, and the connection must
 * not be served, or its request would go upstream as if from nowhere (no
 * address in X-Forwarded-For or the PROXY header, ip_hash falling back). */
static int conn_format_peer(struct conn *c) {
    struct sockaddr_storage ss = {0};
    int len = sizeof(ss);
    int err = 0;
    if (c->lcfg->bind.kind == ADDR_UNIX)
        ss.ss_family = AF_UNSPEC;
    else
        err = uv_tcp_getpeername(&c->client.tcp, (struct sockaddr *)&ss, &len);
    if (err == 0 && c->lcfg->bind.kind != ADDR_UNIX && ss.ss_family != AF_INET &&
        ss.ss_family != AF_INET6)
        err = UV_EAFNOSUPPORT;
    if (err < 0) return err;
    conn_set_peer_addr(c, &ss);
    return 0;
}

static int conn_init_client(struct conn *c, uv_loop_t *loop) {
    int err = c->lcfg->bind.kind == ADDR_UNIX
                  ? uv_pipe_init(loop, &c->client.pipe, 0)
                  : uv_tcp_init(loop, &c->client.tcp); /* TCP_NODELAY comes from the listener */
    if (err == 0) transport_plain_init(&c->client_tp, &c->client.stream);
    return err;
}

int conn_accept(struct listener *l) {
    struct worker_ctx *ctx = l->ctx;
    struct conn *c = slab_alloc(&ctx->conn_slab);
    if (!c) {
        log_error("listener %s: out of memory accepting a connection", l->cfg->name);
        return UV_ENOMEM;
    }
    c->ctx = ctx;
    c->view = ctx->view;
    view_ref(c->view);
    c->lcfg = l->cfg;
    c->lstats = l->stats;
    stat_add(&c->lstats->u.listener.connections_total, 1);
    stat_add(&c->lstats->u.listener.connections_active, 1);
    c->started = uv_now(ctx->loop);
    c->state = CONN_ACCEPTED;
    c->proto = l->cfg->mode == MODE_HTTP ? &conn_proto_http : &conn_proto_tcp;
    list_push_front(&ctx->conns, &c->link);
    ctx->nconns++;
    wheel_timer_init(&c->timer);
    if (conn_init_client(c, ctx->loop) != 0) { /* nothing to close yet */
        stat_sub(&c->lstats->u.listener.connections_active, 1);
        conn_unlist(c);
        view_unref(c->view);
        slab_free(&ctx->conn_slab, c);
        return UV_ENOMEM;
    }
    c->refs = 1; /* the client handle's close callback */
    int err = uv_accept(&l->h.stream, &c->client.stream);
    if (err == 0) err = conn_format_peer(c);
    if (err < 0) {
        log_debug("listener %s: dropping a connection: %s", l->cfg->name, uv_strerror(err));
        conn_close(c, uv_strerror(err));
        return 0;
    }
    c->counted = true;
    unsigned open = atomic_fetch_add(ctx->connections, 1) + 1;
    const struct config *cfg = view_config(c->view);
    bool over = open > cfg->global.max_connections;
    if (over)
        log_warn("listener %s: max_connections (%u) reached, refusing %s", c->lcfg->name,
                 cfg->global.max_connections, CONN_PEER(c));
    if (over) {
        c->proto->refuse(c, "max_connections reached");
        return 0;
    }
    if (c->lcfg->proxy_protocol)
        conn_read_proxy_header(c);
    else
        conn_begin(c);
    return 0;
}

struct conn *conn_stream_new(struct conn *parent) {
    struct worker_ctx *ctx = parent->ctx;
    struct conn *c = slab_alloc(&ctx->conn_slab);
    if (!c) return NULL;
    c->ctx = ctx;
    c->view = parent->view;
    view_ref(c->view);
    c->lcfg = parent->lcfg;
    c->lstats = parent->lstats;
    c->peer_addr = parent->peer_addr;
    c->started = uv_now(ctx->loop);
    c->state = CONN_ACCEPTED;
    c->proto = &conn_proto_http;
    c->stream = true;
    /* No socket: uv_fileno() on it fails, so the kernel queue checks
     * (SIOCOUTQ, FIONREAD) fall back to what the transport says. */
    memset(&c->client, 0, sizeof(c->client));
    c->client.handle.type = UV_UNKNOWN_HANDLE;
    list_push_front(&ctx->conns, &c->link);
    ctx->nconns++;
    wheel_timer_init(&c->timer);
    c->refs = 1; /* the stream transport's close callback */
    return c;
}

/* A TLS listener's connection speaks TLS from here on: after the PROXY
 * header when there is one (what came after it is the TLS transport's
 * first input). */
static int conn_start_tls(struct conn *c) {
    const struct tls_server *srv = generation_listener_tls(c->view->gen, c->lcfg);
    if (!srv) return 0;
    char *block = c->in;
    int err = transport_tls_server_init(&c->client_tp, &c->client.stream, &c->ctx->tls, srv,
                                        c->lstats->u.listener.tls_handshake_errors, block,
                                        TRANSPORT_HEADROOM, c->in_len);
    if (err == 0) {
        c->in = NULL;
        c->in_len = 0;
    }
    return err;
}

void conn_begin(struct conn *c) {
    if (conn_start_tls(c) < 0) {
        conn_close(c, "out of memory for TLS");
        return;
    }
    c->proto->start(c);
}

/* --- reads ------------------------------------------------------------- */

static void conn_on_alloc(struct transport *t, uv_buf_t *out) {
    struct conn *c = container_of(t, struct conn, client_tp);
    c->proto->alloc(c, out);
}

static void conn_on_read(struct transport *t, ssize_t nread, const uv_buf_t *buf) {
    struct conn *c = container_of(t, struct conn, client_tp);
    c->proto->on_read(c, nread, buf);
}

static const struct transport_reader conn_proto_reader = {conn_on_alloc, conn_on_read};

int conn_read_start(struct conn *c) {
    return transport_read_start(&c->client_tp, &conn_proto_reader);
}

void conn_read_stop(struct conn *c) {
    transport_read_stop(&c->client_tp);
}

/* --- writes ------------------------------------------------------------ */

static void conn_on_write(void *owner, uint8_t to_client, int status) {
    struct conn *c = owner;
    if (to_client)
        c->client_writes--;
    else
        c->up_writes--;
    if (status == UV_ECANCELED || c->closing) return;
    if (to_client) {
        c->client_progress = uv_now(c->ctx->loop);
        c->client_unsent = UINT32_MAX; /* the next check takes a fresh reading */
    }
    if (status < 0 && to_client) {
        conn_close(c, "client write failed");
        return;
    }
    c->proto->on_write_done(c, to_client, status);
}

int conn_write(struct conn *c, bool to_client, char *block, const char *data, size_t len,
               bool keep) {
    struct transport *dst = to_client ? &c->client_tp : upstream_conn_transport(c->up);
    if (to_client) {
        stat_add(&c->ctx->wstats->u.worker.bytes_out, len);
        /* Stall time counts from when the client has something to take. */
        if (transport_queued(dst) == 0) {
            c->client_progress = uv_now(c->ctx->loop);
            c->client_unsent = UINT32_MAX;
        }
    }
    int r = transport_send(dst, &c->ctx->pool, block, data, len, keep, conn_on_write, c, to_client);
    if (r <= 0) return r;
    if (to_client)
        c->client_writes++;
    else
        c->up_writes++;
    return 0;
}

/* --- lingering close ------------------------------------------------- */

#define CONN_LINGER_MS 2000

static void conn_linger_alloc(struct transport *t, uv_buf_t *out) {
    FERRY_UNUSED(t);
    static _Thread_local char sink[4096]; /* discarded input: content never read */
    *out = uv_buf_init(sink, sizeof(sink));
}

static void conn_linger_read(struct transport *t, ssize_t nread, const uv_buf_t *buf) {
    FERRY_UNUSED(buf);
    struct conn *c = container_of(t, struct conn, client_tp);
    if (nread < 0) conn_close(c, nread == UV_EOF ? "done" : uv_strerror((int)nread));
}

static const struct transport_reader conn_linger_reader = {conn_linger_alloc, conn_linger_read};

static void conn_on_linger_timer(struct wheel_timer *t) {
    conn_close(container_of(t, struct conn, timer), "done (linger timeout)");
}

/* Before the write side is shut, the last response is still being
 * written: a client that takes it, however slowly, gets all of it; one
 * that stops reading for idle_timeout is cut off (with RST: it did not
 * get the whole response). */
/* Bytes still in the kernel's send queue for the client. */
static uint32_t conn_unsent(struct conn *c) {
    uv_os_fd_t fd;
    int n = 0;
    if (uv_fileno(&c->client.handle, &fd) != 0 || ioctl(fd, SIOCOUTQ, &n) != 0 || n < 0) return 0;
    return (uint32_t)n;
}

uint64_t conn_client_stall_deadline(struct conn *c, uint64_t idle_ms) {
    uint64_t deadline = c->client_progress + idle_ms;
    uint64_t now = uv_now(c->ctx->loop);
    if (now < deadline) return deadline;
    /* Our writes complete only when the kernel takes a whole buffer, and it
     * takes one only when half its (several MiB) queue has drained: a slow
     * but steady reader can go a long while without a write completing.
     * The kernel queue shrinking is progress too. */
    uint32_t unsent = conn_unsent(c);
    bool drained = unsent < c->client_unsent;
    c->client_unsent = unsent;
    if (!drained) return deadline;
    c->client_progress = now;
    return now + idle_ms;
}

static void conn_on_flush_timer(struct wheel_timer *t) {
    struct conn *c = container_of(t, struct conn, timer);
    uint64_t deadline = conn_client_stall_deadline(c, c->lcfg->idle_timeout_ms);
    uint64_t now = uv_now(c->ctx->loop);
    if (c->client_writes == 0 || now >= deadline) {
        conn_abort(c, "client stopped reading");
        return;
    }
    conn_arm(c, deadline - now, conn_on_flush_timer);
}

static void conn_on_shutdown(uv_shutdown_t *req, int status) {
    struct conn *c = req->data;
    free(req);
    if (c->closing) {
        conn_release(c);
        return;
    }
    c->refs--; /* never the last: the handles hold theirs until closed */
    if (status < 0 || c->client_eof || (!c->linger_needed && !conn_input_waiting(c))) {
        conn_close(c, status < 0 ? uv_strerror(status) : "done");
        return;
    }
    conn_read_stop(c);
    if (transport_read_start(&c->client_tp, &conn_linger_reader) < 0) {
        conn_close(c, "done");
        return;
    }
    conn_arm(c, CONN_LINGER_MS, conn_on_linger_timer);
}

/* Bytes from the client not read yet: closing now would send RST. */
static bool conn_input_waiting(struct conn *c) {
    uv_os_fd_t fd;
    int n = 1;
    if (uv_fileno(&c->client.handle, &fd) != 0 || ioctl(fd, FIONREAD, &n) != 0) return true;
    return n > 0;
}

void conn_linger(struct conn *c, bool after_error) {
    if (c->closing || c->state == CONN_LINGER) return;
    c->linger_needed = after_error;
    conn_set_state(c, CONN_LINGER);
    c->client_progress = uv_now(c->ctx->loop);
    conn_arm(c, c->lcfg->idle_timeout_ms, conn_on_flush_timer);
    conn_read_stop(c);
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (!req) {
        conn_close(c, "done");
        return;
    }
    req->data = c;
    c->refs++; /* the shutdown callback runs even after uv_close (UV_ECANCELED) */
    if (transport_shutdown(&c->client_tp, req, conn_on_shutdown) < 0) {
        free(req);
        c->refs--;
        conn_close(c, "done");
    }
}

/* --- the one exit ------------------------------------------------------ */

void conn_abort(struct conn *c, const char *why) {
    c->reset = true;
    conn_close(c, why);
}

void conn_drop_upstream(struct conn *c) {
    if (!c->up) return;
    assert(c->refs < 7); /* 3 bits */
    c->refs++; /* writes queued on it point into c: wait for its close */
    upstream_conn_close(c->up, conn_on_upstream_closed, c);
    c->up = NULL;
}

void conn_close(struct conn *c, const char *why) {
    if (c->closing) return;
    log_debug("conn %p (%s): close in state %s: %s (age %llums)", (void *)c, CONN_PEER(c),
              conn_state_names[c->state], why,
              (unsigned long long)(uv_now(c->ctx->loop) - c->started));
    conn_set_state(c, CONN_CLOSED);
    c->closing = true;
    c->proto->on_close(c);
    conn_drop_upstream(c);
    buffer_put(&c->ctx->pool, c->in);
    c->in = NULL;
    wheel_stop(&c->ctx->wheel, &c->timer);
    transport_close(&c->client_tp, c->reset, conn_on_handle_closed);
}

/* Takes C off its worker's list; the worker hears of it (it may be waiting
 * for its last connection to end). */
static void conn_unlist(struct conn *c) {
    struct worker_ctx *ctx = c->ctx;
    list_remove(&c->link);
    ctx->nconns--;
    if (ctx->on_conn_gone) ctx->on_conn_gone(ctx);
}

static void conn_release(struct conn *c) {
    if (--c->refs > 0) return;
    struct worker_ctx *ctx = c->ctx;
    if (c->counted) atomic_fetch_sub(ctx->connections, 1);
    c->proto->free(c);
    view_unref(c->view);
    if (!c->stream) stat_sub(&c->lstats->u.listener.connections_active, 1);
    conn_unlist(c);
    slab_free(&ctx->conn_slab, c);
}

static void conn_on_handle_closed(uv_handle_t *h) {
    conn_release(container_of(h, struct conn, client.handle));
}

static void conn_on_upstream_closed(void *arg) {
    conn_release(arg);
}

void conn_close_all(struct worker_ctx *ctx, const char *why) {
    /* A closed conn stays listed until its callbacks run, so walk with the
     * next link saved; conn_close() never frees synchronously. */
    for (struct list_node *n = ctx->conns.next, *next; n != &ctx->conns; n = next) {
        next = n->next;
        conn_close(container_of(n, struct conn, link), why);
    }
}

void conn_after_reload(struct worker_ctx *ctx) {
    for (struct list_node *n = ctx->conns.next, *next; n != &ctx->conns; n = next) {
        next = n->next;
        struct conn *c = container_of(n, struct conn, link);
        if (c->state == CONN_H2) conn_h2_drain(c);
    }
}

/* Closes the keep-alive connections waiting for their next request. One
 * that has not had a response yet is left alone: it was accepted a moment
 * ago and its first request is most likely on the way (a rolling update
 * stops a ferry while a balancer still sends it connections); closing it
 * would fail that request with no way for the client to know it is safe to
 * retry. Its header_timeout (armed at accept) or shutdown_timeout bounds
 * the wait, and its request is answered with Connection: close. Go's
 * http.Server.Shutdown treats new connections the same way. */
void conn_close_idle(struct worker_ctx *ctx) {
    for (struct list_node *n = ctx->conns.next, *next; n != &ctx->conns; n = next) {
        next = n->next;
        struct conn *c = container_of(n, struct conn, link);
        if (c->state == CONN_HTTP_IDLE && c->served) conn_close(c, "shutting down");
        if (c->state == CONN_H2) conn_h2_drain(c);
    }
}
