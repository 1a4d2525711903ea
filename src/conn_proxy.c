/* conn_proxy: the PROXY protocol on a connection, in (from a balancer in
 * front, before any other byte) and out (to an upstream that expects it). */
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

/* --- PROXY protocol in ------------------------------------------------------ */

static void conn_proxy_alloc(struct transport *t, uv_buf_t *out) {
    struct conn *c = container_of(t, struct conn, client_tp);
    if (!c->in) c->in = buffer_get(&c->ctx->pool);
    *out = c->in ? uv_buf_init(conn_block_data(c->in) + c->in_len,
                               (unsigned)(PROXY_HEADER_MAX - c->in_len))
                 : uv_buf_init(NULL, 0);
}

/* Reads the header byte by byte as it comes (never past it: reads are
 * capped at the longest header, and what follows it is kept in c->in for
 * the protocol that comes next). */
static void conn_proxy_read(struct transport *t, ssize_t nread, const uv_buf_t *buf) {
    FERRY_UNUSED(buf);
    struct conn *c = container_of(t, struct conn, client_tp);
    if (nread == 0) return;
    if (nread < 0) {
        conn_close(c, nread == UV_EOF ? "client closed before its PROXY header" : uv_strerror((int)nread));
        return;
    }
    c->in_len += (uint32_t)nread;
    struct proxy_header h;
    int r = proxy_header_parse(conn_block_data(c->in), c->in_len, &h);
    if (r == PROXY_NEED_MORE && c->in_len < PROXY_HEADER_MAX) return;
    if (r <= 0) {
        log_warn("listener %s: malformed PROXY header from %s", c->lcfg->name, CONN_PEER(c));
        conn_close(c, "malformed PROXY header");
        return;
    }
    transport_read_stop(t);
    wheel_stop(&c->ctx->wheel, &c->timer);
    if (!h.local) conn_set_peer_addr(c, &h.src);
    c->in_len -= (uint32_t)r;
    memmove(conn_block_data(c->in), conn_block_data(c->in) + r, c->in_len);
    conn_begin(c);
}

static const struct transport_reader conn_proxy_reader = {conn_proxy_alloc, conn_proxy_read};

static void conn_on_proxy_timeout(struct wheel_timer *t) {
    conn_close(container_of(t, struct conn, timer), "no PROXY header in time");
}

/* The socket peer's address as IPv6 bytes, IPv4 as v4-mapped (which is how
 * a dual-stack socket reports a v4 client already). False: it has none. */
static bool conn_peer_v6(const struct conn *c, uint8_t a[16]) {
    memset(a, 0, 16);
    if (c->peer_addr.sa.sa_family == AF_INET6) {
        memcpy(a, &c->peer_addr.in6.sin6_addr, 16);
        return true;
    }
    if (c->peer_addr.sa.sa_family != AF_INET) return false;
    a[10] = a[11] = 0xff;
    memcpy(a + 12, &c->peer_addr.in.sin_addr, 4);
    return true;
}

/* proxy_protocol_from: only the balancers listed may say who the client
 * is; anyone else could claim any address (and with it X-Forwarded-For,
 * an ip_hash bucket, the log's client). Such a connection is closed before
 * a byte of it is read. A scan must not flood the error log: each refusal
 * is logged at debug, and a warning at most once a minute per worker says
 * how many there were since the last one. Returns false after closing C. */
#define CONN_REFUSED_REPORT_MS (60 * 1000)

static bool conn_proxy_source_allowed(struct conn *c) {
    static _Thread_local uint64_t refused, reported_at; /* this worker's */
    const struct config_listener *l = c->lcfg;
    uint8_t a[16];
    if (l->nproxy_from == 0) return true;
    if (conn_peer_v6(c, a) && config_cidr_match(l->proxy_from, l->nproxy_from, a)) return true;
    refused++;
    log_debug("listener %s: %s is not in proxy_protocol_from: closed", l->name, CONN_PEER(c));
    uint64_t now = uv_now(c->ctx->loop);
    if (reported_at == 0 || now - reported_at >= CONN_REFUSED_REPORT_MS) {
        log_warn("listener %s: closed %llu connection%s from sources not in proxy_protocol_from "
                 "(last from %s); further ones are counted here at most once a minute",
                 l->name, (unsigned long long)refused, refused == 1 ? "" : "s", CONN_PEER(c));
        refused = 0;
        reported_at = now;
    }
    conn_close(c, "source not in proxy_protocol_from");
    return false;
}

void conn_read_proxy_header(struct conn *c) {
    if (!conn_proxy_source_allowed(c)) return;
    conn_set_state(c, CONN_PROXY_HDR);
    uint64_t limit = c->lcfg->mode == MODE_HTTP ? c->lcfg->header_timeout_ms
                                                : c->lcfg->idle_timeout_ms;
    conn_arm(c, limit, conn_on_proxy_timeout);
    if (transport_read_start(&c->client_tp, &conn_proxy_reader) < 0)
        conn_close(c, "read failed");
}

/* --- PROXY protocol out ----------------------------------------------------- */

/* Rewrites an IPv4 address as v4-mapped IPv6 when the other one is IPv6,
 * so a header can carry both (a v6 client behind a v4 listener, say). */
static void conn_map_v4(struct sockaddr_storage *ss) {
    struct sockaddr_in v4 = *(struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    v6->sin6_family = AF_INET6;
    v6->sin6_port = v4.sin_port;
    v6->sin6_addr.s6_addr[10] = v6->sin6_addr.s6_addr[11] = 0xff;
    memcpy(v6->sin6_addr.s6_addr + 12, &v4.sin_addr, 4);
}

static void conn_same_family(struct sockaddr_storage *a, struct sockaddr_storage *b) {
    if (a->ss_family == AF_INET && b->ss_family == AF_INET6) conn_map_v4(a);
    if (a->ss_family == AF_INET6 && b->ss_family == AF_INET) conn_map_v4(b);
}

int conn_send_proxy_header(struct conn *c) {
    enum proxy_protocol_version v = c->up->server->up->cfg->proxy_protocol;
    if (v == PROXY_PROTOCOL_OFF) return 0;
    struct sockaddr_storage local = {0};
    int len = sizeof(local);
    if (c->lcfg->bind.kind != ADDR_UNIX)
        uv_tcp_getsockname(&c->client.tcp, (struct sockaddr *)&local, &len);
    struct sockaddr_storage src = {0};
    memcpy(&src, &c->peer_addr, sizeof(c->peer_addr));
    conn_same_family(&src, &local);
    char *blk = buffer_get(&c->ctx->pool);
    if (!blk) return UV_ENOMEM;
    char *out = conn_block_data(blk);
    size_t n = v == PROXY_PROTOCOL_V1
                   ? proxy_header_write_v1(out, CONN_BLOCK_DATA_SIZE,
                                           (struct sockaddr *)&src,
                                           (struct sockaddr *)&local)
                   : proxy_header_write_v2(out, CONN_BLOCK_DATA_SIZE,
                                           (struct sockaddr *)&src,
                                           (struct sockaddr *)&local);
    return conn_write(c, false, blk, out, n, false);
}
