/* upstream: servers, outbound connections, and the checkout with retries.
 *
 * An attempt is: pick a server the balancer allows and this checkout has not
 * tried yet, open a socket, connect with a timer of connect_timeout. The
 * attempt ends in one of three ways, each exactly once:
 *   connected      -> the checkout's callback gets the connection
 *   failed/timeout -> the connection is closed and, if `retries` allows and an
 *                     untried server remains, the next attempt starts
 *   cancelled      -> the user went away; the connection is closed quietly
 * libuv still calls the connect callback (UV_ECANCELED) after uv_close, so
 * the callback checks `closing` before touching anything.
 *
 * The keep-alive pool. A connection whose response ended exactly at its
 * framed length goes back to its server's idle list (most recent first, so
 * few connections stay warm and the rest time out). While idle it keeps
 * reading: libuv asks for a buffer only when bytes or EOF arrive, so this
 * costs nothing, and an upstream that closes an idle connection is noticed
 * at once instead of on the next request. Any byte or EOF while idle, or
 * keepalive_timeout without use, closes it. A checkout takes an idle
 * connection of the chosen server before it opens a new one, and then
 * calls back before upstream_checkout() returns. */
#include "ferry/upstream.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/config.h"
#include "ferry/health.h"
#include "ferry/log.h"
#include "ferry/stats.h"
#include "ferry/transport_tls.h"

static void upstream_on_connect(uv_connect_t *req, int status);
static void upstream_on_connect_timeout(uv_timer_t *t);
static void upstream_on_handle_closed(uv_handle_t *h);
static int upstream_attempt(struct upstream_checkout *co);
static void upstream_unpool(struct upstream_conn *uc);
static void upstream_on_idle_read(struct transport *t, ssize_t nread, const uv_buf_t *buf);
static void upstream_on_idle_timeout(uv_timer_t *t);
static void upstream_sync(struct upstream *up);
static void upstream_build_ring(struct upstream *up);

struct upstream *upstream_create(const struct config_upstream *cfg, uv_loop_t *loop,
                                 struct stats *stats) {
    struct upstream *up = xcalloc(1, sizeof(*up));
    up->cfg = cfg;
    up->loop = loop;
    up->wstats = stats;
    up->stats = stats_node(stats, STATS_UPSTREAM, cfg->name, NULL);
    up->names = xcalloc(cfg->nservers + 1, sizeof(*up->names));
    for (size_t i = 0; i < cfg->nservers; i++) {
        up->names[i].set = health_find(cfg->name, cfg->servers[i].addr.text);
        up->names[i].version = health_version(up->names[i].set) - 1; /* stale: build below */
    }
    up->rng = (uint64_t)(uintptr_t)up ^ uv_hrtime();
    up->nsources = cfg->nsources;
    up->sources = xcalloc(cfg->nsources + 1, sizeof(*up->sources));
    for (size_t i = 0; i < cfg->nsources; i++) {
        struct sockaddr_storage *ss = &up->sources[i];
        if (uv_ip4_addr(cfg->sources[i], 0, (struct sockaddr_in *)ss) != 0)
            uv_ip6_addr(cfg->sources[i], 0, (struct sockaddr_in6 *)ss);
    }
    upstream_sync(up);
    return up;
}

static struct upstream_server *
upstream_server_new(struct upstream *up, const struct config_server *cs, struct server_state *st) {
    struct upstream_server *s = xcalloc(1, sizeof(*s));
    s->cfg = cs;
    s->up = up;
    s->state = st;
    s->stats = stats_node3(up->wstats, STATS_SERVER, up->cfg->name, cs->addr.text, st->address);
    list_init(&s->idle);
    return s;
}

static void upstream_server_free(struct upstream_server *s) {
    tls_session_free(s->tls_session);
    free(s);
}

/* The entry of OLD (N entries) for member ST, or NULL. */
static struct upstream_server *upstream_entry_of(struct upstream_server **old, size_t n,
                                                 const struct server_state *st, size_t *at) {
    for (size_t i = 0; i < n; i++)
        if (old[i] && old[i]->state == st) return *at = i, old[i];
    return NULL;
}

/* Brings the entries in line with the names' members (health.h): an entry
 * per address in the answer, in a stable order (config order, then first
 * seen), so the balancer's rotation does not depend on the resolver's order.
 * A vanished address's entry takes no new request: its pool is closed now,
 * and the entry is dropped once its last connection has closed (ngone counts
 * those still waiting, so the next pick looks again). Balancer state is kept
 * for the entries that stay. Indexes shift, so a checkout in flight may try
 * one address twice or skip one: harmless, and only when the set changes. */
static void upstream_sync(struct upstream *up) {
    bool stale = false;
    for (size_t i = up->nservers - up->ngone; i < up->nservers && !stale; i++)
        stale = up->servers[i]->active == 0; /* a vanished address's last connection ended */
    for (size_t i = 0; i < up->cfg->nservers && !stale; i++)
        stale = up->names[i].set && health_version(up->names[i].set) != up->names[i].version;
    if (!stale) return;
    size_t nold = up->nservers, n = 0, cap = nold + 1;
    struct upstream_server **old = up->servers;
    struct balance_peer *oldpeers = up->peers;
    for (size_t i = 0; i < up->cfg->nservers; i++) {
        struct server_set *set = up->names[i].set;
        if (!set) continue;
        up->names[i].version = health_version(set);
        for (struct server_state *m = health_first(set); m; m = health_next(m))
            cap++;
    }
    up->servers = xcalloc(cap, sizeof(*up->servers));
    up->peers = xcalloc(cap, sizeof(*up->peers));
    for (size_t i = 0; i < up->cfg->nservers; i++) {
        struct server_set *set = up->names[i].set;
        for (struct server_state *m = set ? health_first(set) : NULL; m; m = health_next(m)) {
            if (health_gone(m)) continue;
            size_t at = 0;
            struct upstream_server *s = upstream_entry_of(old, nold, m, &at);
            if (s) {
                old[at] = NULL;
                up->peers[n].current = oldpeers[at].current;
            } else {
                s = upstream_server_new(up, &up->cfg->servers[i], m);
            }
            up->peers[n].weight = (int)s->cfg->weight;
            up->servers[n++] = s;
        }
    }
    up->ngone = 0;
    for (size_t i = 0; i < nold; i++) {
        struct upstream_server *s = old[i];
        if (!s) continue;
        while (s->nidle > 0)
            upstream_conn_close(container_of(s->idle.next, struct upstream_conn, link), NULL, NULL);
        if (s->active == 0) {
            upstream_server_free(s);
            continue;
        }
        up->peers[n].weight = (int)s->cfg->weight; /* never eligible: health says gone */
        up->servers[n++] = s;
        up->ngone++;
    }
    free(old);
    free(oldpeers);
    free(up->load);
    up->nservers = n;
    up->load = xcalloc(n + 1, sizeof(*up->load));
    upstream_build_ring(up);
}

/* ip_hash: a ring over the entries, each named by server and address, so a
 * client keeps its address while others come and go. */
static void upstream_build_ring(struct upstream *up) {
    if (up->cfg->balance != BALANCE_IP_HASH) return;
    balance_ring_free(&up->ring);
    char **ids = xcalloc(up->nservers + 1, sizeof(*ids));
    for (size_t i = 0; i < up->nservers; i++) {
        const struct upstream_server *s = up->servers[i];
        size_t len = strlen(s->cfg->addr.text) + strlen(s->state->address) + 2;
        ids[i] = xmalloc(len);
        snprintf(ids[i], len, "%s/%s", s->cfg->addr.text, s->state->address);
    }
    if (balance_ring_build(&up->ring, up->peers, (const char *const *)ids, up->nservers) != 0)
        log_error("upstream %s: cannot build the ip_hash ring", up->cfg->name);
    for (size_t i = 0; i < up->nservers; i++)
        free(ids[i]);
    free(ids);
}

void upstream_set_tls(struct upstream *up, const struct tls_client *tls, struct tls_worker *tw) {
    up->tls = tls;
    up->tw = tw;
}

void upstream_destroy(struct upstream *up) {
    if (!up) return;
    for (size_t i = 0; i < up->nservers; i++)
        upstream_server_free(up->servers[i]);
    free(up->servers);
    free(up->names);
    free(up->peers);
    free(up->load);
    free(up->sources);
    balance_ring_free(&up->ring);
    free(up);
}

/* A failed attempt: counted, and after max_fails in a row the server is
 * marked down for fail_timeout (for every worker). A server given by name
 * is re-resolved at once: the app behind it may have moved. */
/* ERR is the attempt's code; CAUSE says more when the code says too
 * little (a TLS failure is UV_EPROTO, "protocol error"), or is NULL. */
static void upstream_count_error(struct upstream_server *s, int err, const char *cause) {
    const struct config_upstream *cfg = s->up->cfg;
    /* The first failure in a row is news; the rest (a held request
     * retrying, a port shortage hitting every connect) only repeat it, so
     * they are warnings at most once a second. */
    uint64_t now = uv_now(s->up->loop);
    bool news = s->fails == 0 && now >= s->last_warned + 1000;
    if (news) s->last_warned = now;
    char who[320];
    log_msg(news ? LOG_WARN : LOG_DEBUG, "upstream %s: connect to %s: %s", cfg->name,
            health_name(s->state, who, sizeof(who)), cause ? cause : uv_strerror(err));
    s->connect_errors++;
    stat_add(&s->up->stats->u.upstream.connect_errors[stats_reason_of(err)], 1);
    /* Our own shortages (ports, descriptors, memory) say nothing about the
     * server: they must not mark it down. */
    if (err == UV_EADDRNOTAVAIL || err == UV_EMFILE || err == UV_ENFILE || err == UV_ENOMEM ||
        err == UV_ENOBUFS)
        return;
    health_want_resolve(s->state->set);
    if (++s->fails >= cfg->max_fails) {
        s->fails = 0;
        health_mark_down(s->state, health_now_ms() + cfg->fail_timeout_ms);
    }
}

static size_t upstream_index(const struct upstream *up, const struct upstream_server *s) {
    size_t i = 0;
    while (i < up->nservers && up->servers[i] != s)
        i++;
    return i;
}

static bool upstream_tried(const struct upstream_checkout *co, size_t i) {
    return i < 64 && (co->tried >> i) & 1u;
}

/* Applies the upstream's `balance` to the peers marked eligible. */
static int upstream_balance(struct upstream *up, struct upstream_checkout *co) {
    switch (up->cfg->balance) {
    case BALANCE_LEAST_CONN:
    case BALANCE_RANDOM2:
        for (size_t i = 0; i < up->nservers; i++)
            up->load[i] = up->servers[i]->active;
        return up->cfg->balance == BALANCE_LEAST_CONN
                   ? balance_least_conn_pick(up->peers, up->nservers, up->load)
                   : balance_random2_pick(up->peers, up->nservers, up->load, &up->rng);
    case BALANCE_IP_HASH:
        if (co->want.key_len && up->ring.npoints)
            return balance_ring_pick(&up->ring, up->peers, co->want.key, co->want.key_len);
        return balance_rr_pick(up->peers, up->nservers);
    case BALANCE_ROUND_ROBIN:
    default:
        return balance_rr_pick(up->peers, up->nservers);
    }
}

/* No address at all (no name resolves yet): ask for every name again, as a
 * connect failure would (at most once a second, health.h). */
static void upstream_want_names(struct upstream *up) {
    for (size_t i = 0; i < up->cfg->nservers; i++)
        if (up->names[i].set) health_want_resolve(up->names[i].set);
}

/* Picks among primaries first and falls back to backups only when no
 * primary is eligible, so backups take traffic only when every primary is
 * unusable for this request. */
static struct upstream_server *upstream_pick(struct upstream_checkout *co) {
    struct upstream *up = co->up;
    upstream_sync(up);
    uint64_t now = health_now_ms();
    if (up->nservers == 0) upstream_want_names(up);
    for (int backup = 0; backup <= 1; backup++) {
        bool any = false;
        for (size_t i = 0; i < up->nservers; i++) {
            struct upstream_server *s = up->servers[i];
            up->peers[i].eligible =
                s->cfg->backup == (bool)backup && !upstream_tried(co, i) &&
                (co->want.probe ? health_probeable(s->state) : health_usable(s->state, now));
            any |= up->peers[i].eligible;
        }
        if (!any) continue;
        int best = upstream_balance(up, co);
        return best < 0 ? NULL : up->servers[best];
    }
    return NULL;
}

static struct upstream_conn *upstream_conn_new(struct upstream_server *s) {
    struct upstream_conn *uc = calloc(1, sizeof(*uc));
    if (!uc) return NULL;
    uc->server = s;
    list_init(&uc->link);
    return uc;
}

/* `source = ADDR ...`: bind the outbound socket to the next local address of
 * the right family, with IP_BIND_ADDRESS_NO_PORT so the kernel picks the
 * port at connect time per 4-tuple; each address then brings a whole
 * ephemeral port range. Without `source` nothing is bound. */
static int upstream_bind_source(struct upstream *up, uv_tcp_t *tcp, int family) {
    for (size_t k = 0; k < up->nsources; k++) {
        struct sockaddr_storage *src = &up->sources[up->next_source++ % up->nsources];
        if (src->ss_family != family) continue;
        uv_os_fd_t fd;
        int on = 1;
        if (uv_fileno((uv_handle_t *)tcp, &fd) == 0)
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof(on));
        return uv_tcp_bind(tcp, (struct sockaddr *)src, 0);
    }
    return 0;
}

/* Starts a connection to S. On failure UC is already being closed. */
static int upstream_conn_connect(struct upstream_conn *uc) {
    struct upstream_server *s = uc->server;
    uv_loop_t *loop = s->up->loop;
    int err;
    uv_timer_init(loop, &uc->timer);
    uc->handles_open = 1;
    if (s->cfg->addr.kind == ADDR_UNIX) {
        uv_pipe_init(loop, &uc->h.pipe, 0);
        transport_plain_init(&uc->tp, &uc->h.stream);
        uc->handles_open++;
        uv_pipe_connect(&uc->connect_req, &uc->h.pipe, s->cfg->addr.path, upstream_on_connect);
        err = 0;
    } else {
        struct sockaddr_storage ss;
        bool known = health_address(s->state, &ss);
        /* The socket is made now (not at connect) so `source` can bind it; with
         * no descriptor left this fails and there is no handle to close. */
        err = uv_tcp_init_ex(loop, &uc->h.tcp, known ? ss.ss_family : AF_UNSPEC);
        if (err == 0) {
            transport_plain_init(&uc->tp, &uc->h.stream);
            uc->handles_open++;
            uv_tcp_nodelay(&uc->h.tcp, 1);
            err = known ? upstream_bind_source(s->up, &uc->h.tcp, ss.ss_family) : UV_EAI_NONAME;
        }
        if (err == 0)
            err = uv_tcp_connect(&uc->connect_req, &uc->h.tcp, (const struct sockaddr *)&ss,
                                 upstream_on_connect);
    }
    uint64_t limit = uc->checkout && uc->checkout->want.connect_timeout_ms
                         ? uc->checkout->want.connect_timeout_ms
                         : s->up->cfg->connect_timeout_ms;
    if (err == 0) err = uv_timer_start(&uc->timer, upstream_on_connect_timeout, limit, 0);
    s->active++;
    s->opened++;
    stat_add(&s->stats->u.server.open, 1);
    stat_add(&s->stats->u.server.opened, 1);
    return err;
}

int upstream_checkout(struct upstream *up, struct upstream_checkout *co, upstream_checkout_cb cb,
                      const struct upstream_want *want) {
    *co = (struct upstream_checkout){.up = up, .cb = cb, .last_error = UV_EAI_NONAME,
                                     .want = *want};
    return upstream_attempt(co);
}

/* Starts the next attempt. Returns 0 when one is in flight, else the error
 * that ends the checkout (the caller reports it). Attempts that fail at once
 * (no descriptor left, say) count and move on to the next server. */
static int upstream_attempt(struct upstream_checkout *co) {
    unsigned max_attempts = 1 + co->up->cfg->retries;
    while (co->attempts < max_attempts) {
        struct upstream_server *s = upstream_pick(co);
        if (!s) return co->last_error;
        size_t idx = upstream_index(co->up, s);
        if (idx < 64) co->tried |= (uint64_t)1 << idx;
        co->attempts++;
        if (s->nidle > 0 && !co->want.fresh) {
            struct upstream_conn *pooled = container_of(s->idle.next, struct upstream_conn, link);
            upstream_unpool(pooled);
            pooled->reused = true;
            co->cb(co, pooled, 0);
            return 0;
        }
        struct upstream_conn *uc = upstream_conn_new(s);
        if (!uc) return UV_ENOMEM;
        uc->checkout = co;
        co->connecting = uc;
        int err = upstream_conn_connect(uc);
        if (err == 0) return 0;
        upstream_count_error(s, err, NULL);
        co->connecting = NULL;
        co->last_error = err;
        co->last_cause = NULL;
        upstream_conn_close(uc, NULL, NULL);
        /* Out of ports on this source address: the next one may have some. */
        if (err == UV_EADDRNOTAVAIL && ++co->source_tries < co->up->nsources) {
            co->attempts--;
            if (idx < 64) co->tried &= ~((uint64_t)1 << idx);
        }
    }
    return co->last_error;
}

/* Takes UC out of its server's idle list. It keeps reading (into the
 * idle watch) until its new user points the reads elsewhere. */
static void upstream_unpool(struct upstream_conn *uc) {
    list_remove(&uc->link);
    uc->server->nidle--;
    stat_sub(&uc->server->stats->u.server.idle, 1);
    uc->pooled = false;
    uv_timer_stop(&uc->timer);
}

int upstream_conn_read(struct upstream_conn *uc, const struct transport_reader *r, void *data) {
    uc->tp.data = data;
    return transport_read_start(&uc->tp, r);
}

void upstream_conn_pause(struct upstream_conn *uc) {
    transport_read_stop(&uc->tp);
}

void upstream_checkout_cancel(struct upstream_checkout *co) {
    struct upstream_conn *uc = co->connecting;
    co->connecting = NULL;
    if (!uc) return;
    uc->checkout = NULL;
    upstream_conn_close(uc, NULL, NULL);
}

/* One attempt ended with STATUS (CAUSE: its words, or NULL); continue the
 * checkout or report. */
static void upstream_attempt_done(struct upstream_conn *uc, int status, const char *cause) {
    struct upstream_checkout *co = uc->checkout;
    struct upstream_server *s = uc->server;
    uc->checkout = NULL;
    co->connecting = NULL;
    uv_timer_stop(&uc->timer);
    if (status == 0) {
        uc->connected = true;
        s->fails = 0;
        health_clear_mark(s->state);
        co->cb(co, uc, 0);
        return;
    }
    upstream_count_error(s, status, cause);
    co->last_error = status;
    co->last_cause = cause;
    upstream_conn_close(uc, NULL, NULL);
    int err = upstream_attempt(co);
    if (err < 0) co->cb(co, NULL, err);
}

/* tls = on: the attempt ends with the handshake, inside connect_timeout,
 * so a server whose certificate fails is one more failed attempt (the next
 * server is tried) and a pooled connection is always a verified one. */
static void upstream_on_tls_ready(struct transport *t, int status) {
    struct upstream_conn *uc = container_of(t, struct upstream_conn, tp);
    if (uc->closing || !uc->checkout) return;
    upstream_attempt_done(uc, status, status < 0 ? transport_tls_error(t) : NULL);
}

static void upstream_on_connect(uv_connect_t *req, int status) {
    struct upstream_conn *uc = container_of(req, struct upstream_conn, connect_req);
    if (uc->closing || !uc->checkout) return; /* cancelled or timed out */
    struct upstream_server *s = uc->server;
    struct upstream *up = s->up;
    if (status == 0 && up->tls) {
        const char *host = s->cfg->addr.host ? s->cfg->addr.host : "localhost";
        status = transport_tls_client_init(&uc->tp, &uc->h.stream, up->tw, up->tls, host,
                                           &s->tls_session, upstream_on_tls_ready);
        if (status == 0) return;
    }
    upstream_attempt_done(uc, status, NULL);
}

static void upstream_on_connect_timeout(uv_timer_t *t) {
    struct upstream_conn *uc = container_of(t, struct upstream_conn, timer);
    if (uc->closing || !uc->checkout) return;
    upstream_attempt_done(uc, UV_ETIMEDOUT, transport_is_tls(&uc->tp) ? "TLS handshake timeout" : NULL);
}

static void upstream_idle_alloc(struct transport *t, uv_buf_t *out) {
    FERRY_UNUSED(t);
    /* Whatever arrives on an idle connection ends it; its content is never
     * used, so one small scratch buffer per thread serves every one. */
    static _Thread_local char scratch[64];
    *out = uv_buf_init(scratch, sizeof(scratch));
}

static void upstream_on_idle_read(struct transport *t, ssize_t nread, const uv_buf_t *buf) {
    FERRY_UNUSED(buf);
    if (nread == 0) return;
    struct upstream_conn *uc = container_of(t, struct upstream_conn, tp);
    log_debug("upstream %s: idle connection to %s %s", uc->server->up->cfg->name,
              uc->server->cfg->addr.text, nread < 0 ? "closed by the server" : "sent stray bytes");
    upstream_conn_close(uc, NULL, NULL);
}

static const struct transport_reader upstream_idle_reader = {upstream_idle_alloc,
                                                             upstream_on_idle_read};

static void upstream_on_idle_timeout(uv_timer_t *t) {
    struct upstream_conn *uc = container_of(t, struct upstream_conn, timer);
    upstream_conn_close(uc, NULL, NULL);
}

void upstream_release(struct upstream_conn *uc, bool reusable) {
    struct upstream_server *s = uc->server;
    const struct config_upstream *cfg = s->up->cfg;
    if (!reusable || uc->closing || s->up->retired || s->nidle >= cfg->keepalive ||
        health_gone(s->state)) {
        upstream_conn_close(uc, NULL, NULL);
        return;
    }
    uc->requests++;
    uc->reused = false;
    if (upstream_conn_read(uc, &upstream_idle_reader, uc) < 0) {
        upstream_conn_close(uc, NULL, NULL);
        return;
    }
    uv_timer_start(&uc->timer, upstream_on_idle_timeout, cfg->keepalive_timeout_ms, 0);
    list_push_front(&s->idle, &uc->link);
    s->nidle++;
    stat_add(&s->stats->u.server.idle, 1);
    uc->pooled = true;
}

void upstream_close_idle(struct upstream *up) {
    for (size_t i = 0; i < up->nservers; i++) {
        struct upstream_server *s = up->servers[i];
        while (s->nidle > 0)
            upstream_conn_close(container_of(s->idle.next, struct upstream_conn, link), NULL, NULL);
    }
}

void upstream_retire(struct upstream *up) {
    up->retired = true;
    upstream_close_idle(up);
}

void upstream_conn_close(struct upstream_conn *uc, void (*on_closed)(void *arg), void *arg) {
    if (uc->closing) return;
    if (uc->pooled) upstream_unpool(uc);
    uc->closing = true;
    uc->on_closed = on_closed;
    uc->on_closed_arg = arg;
    uc->server->active--;
    stat_sub(&uc->server->stats->u.server.open, 1);
    uv_close((uv_handle_t *)&uc->timer, upstream_on_handle_closed);
    if (uc->handles_open > 1) transport_close(&uc->tp, false, upstream_on_handle_closed);
}

static void upstream_on_handle_closed(uv_handle_t *h) {
    struct upstream_conn *uc = h->type == UV_TIMER ? container_of(h, struct upstream_conn, timer)
                                                   : container_of(h, struct upstream_conn, h.handle);
    if (--uc->handles_open > 0) return;
    void (*cb)(void *) = uc->on_closed;
    void *arg = uc->on_closed_arg;
    free(uc);
    if (cb) cb(arg);
}
