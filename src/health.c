/* health: the process-wide view of upstream servers; see health.h.
 *
 * Everything that waits (getaddrinfo, check connections) runs on the main
 * loop, driven by one 250 ms tick that walks the registry: a few hundred
 * servers cost nothing, and there is no timer per server to keep in step
 * with reloads. */
#include "ferry/health.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/config.h"
#include "ferry/log.h"
#include "ferry/util.h"

#define HEALTH_TICK_MS 250
#define HEALTH_RISE 2
#define HEALTH_FALL 2
#define HEALTH_RESOLVE_MIN_GAP_MS 1000

static uv_loop_t *hloop;
static uv_timer_t htick;
static uv_mutex_t hlock; /* guards the list shape (find vs create) */
static struct server_state *hlist;
static bool hstarted;

uint64_t health_now_ms(void) {
    return uv_hrtime() / 1000000u;
}

/* --- the address, under a sequence lock -------------------------------- */

static void health_set_address(struct server_state *s, const struct sockaddr_storage *ss) {
    atomic_fetch_add_explicit(&s->seq, 1, memory_order_acq_rel); /* odd: writing */
    s->addr = *ss;
    s->has_addr = true;
    atomic_fetch_add_explicit(&s->seq, 1, memory_order_release);
}

bool health_address(struct server_state *s, struct sockaddr_storage *out) {
    for (;;) {
        unsigned a = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (a & 1u) continue;
        bool has = s->has_addr;
        if (has) memcpy(out, &s->addr, sizeof(*out));
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) == a) return has;
    }
}

bool health_usable(struct server_state *s, uint64_t now_ms) {
    if (!s->has_addr || atomic_load_explicit(&s->check_down, memory_order_relaxed)) return false;
    return atomic_load_explicit(&s->down_until, memory_order_relaxed) <= now_ms;
}

bool health_probeable(struct server_state *s) {
    return s->has_addr && !atomic_load_explicit(&s->check_down, memory_order_relaxed);
}

void health_clear_mark(struct server_state *s) {
    if (atomic_load_explicit(&s->down_until, memory_order_relaxed) == 0) return;
    if (atomic_exchange(&s->down_until, 0) > health_now_ms())
        log_info("upstream %s: server %s answers again", s->upstream, s->server);
}

void health_mark_down(struct server_state *s, uint64_t until_ms) {
    uint64_t prev = atomic_exchange(&s->down_until, until_ms);
    if (prev <= health_now_ms())
        log_warn("upstream %s: server %s marked down for %llums after repeated failures",
                 s->upstream, s->server, (unsigned long long)(until_ms - health_now_ms()));
}

void health_want_resolve(struct server_state *s) {
    atomic_store_explicit(&s->resolve_wanted, true, memory_order_relaxed);
}

/* --- the registry ------------------------------------------------------- */

struct server_state *health_find(const char *upstream, const char *server) {
    uv_mutex_lock(&hlock);
    struct server_state *s = hlist;
    while (s && (strcmp(s->upstream, upstream) != 0 || strcmp(s->server, server) != 0)) s = s->next;
    uv_mutex_unlock(&hlock);
    return s;
}

static bool health_is_name(const struct config_addr *a) {
    unsigned char buf[sizeof(struct in6_addr)];
    return a->kind == ADDR_INET && uv_inet_pton(AF_INET, a->host, buf) != 0 &&
           uv_inet_pton(AF_INET6, a->host, buf) != 0;
}

static int health_resolve_now(struct server_state *s, struct sockaddr_storage *out) {
    const struct config_addr *a = &s->scfg->addr;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)a->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(a->host, port, &hints, &res);
    if (rc != 0 || !res) return rc ? rc : EAI_NONAME;
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static struct server_state *health_create(const struct config_upstream *u,
                                          const struct config_server *cs) {
    struct server_state *s = xcalloc(1, sizeof(*s));
    s->upstream = xstrdup(u->name);
    s->server = xstrdup(cs->addr.text);
    s->ucfg = u;
    s->scfg = cs;
    if (cs->addr.kind == ADDR_UNIX) {
        s->has_addr = true;
    } else {
        struct sockaddr_storage ss = {0};
        int rc = health_resolve_now(s, &ss);
        if (rc == 0)
            health_set_address(s, &ss);
        else
            log_warn("upstream %s: server %s does not resolve (%s); it stays down until it does",
                     u->name, cs->addr.text, gai_strerror(rc));
    }
    uv_mutex_lock(&hlock);
    s->next = hlist;
    hlist = s;
    uv_mutex_unlock(&hlock);
    return s;
}

void health_adopt(const struct config *cfg) {
    for (struct server_state *s = hlist; s; s = s->next) s->ucfg = NULL, s->scfg = NULL;
    uint64_t now = hloop ? uv_now(hloop) : 0;
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const struct config_upstream *u = &cfg->upstreams[i];
        for (size_t j = 0; j < u->nservers; j++) {
            const struct config_server *cs = &u->servers[j];
            struct server_state *s = health_find(u->name, cs->addr.text);
            if (!s) s = health_create(u, cs);
            s->ucfg = u;
            s->scfg = cs;
            s->next_resolve = now + u->resolve_ms;
            if (u->health_check == HEALTH_OFF) {
                atomic_store(&s->check_down, false); /* checks turned off: trust it again */
                s->rise = s->fall = 0;
            }
        }
    }
}

/* --- re-resolution -------------------------------------------------------- */

struct health_resolve {
    uv_getaddrinfo_t req;
    struct server_state *s;
};

static void health_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    struct health_resolve *r = container_of(req, struct health_resolve, req);
    struct server_state *s = r->s;
    s->resolving = false;
    s->resolve = NULL;
    if (status == 0 && res) {
        struct sockaddr_storage ss = {0}, old;
        memcpy(&ss, res->ai_addr, res->ai_addrlen);
        bool had = health_address(s, &old);
        bool changed = !had || memcmp(&old, &ss, sizeof(ss)) != 0;
        atomic_fetch_add(changed ? &s->resolves_changed : &s->resolves_same, 1);
        if (changed) {
            char ip[64] = "?";
            uv_ip_name(res->ai_addr, ip, sizeof(ip));
            log_info("upstream %s: server %s now resolves to %s", s->upstream, s->server, ip);
            health_set_address(s, &ss);
        }
    } else if (status != UV_ECANCELED) {
        atomic_fetch_add(&s->resolves_failed, 1);
        log_warn("upstream %s: resolving %s: %s (keeping the last address)", s->upstream,
                 s->server, uv_strerror(status));
    }
    uv_freeaddrinfo(res);
    free(r);
}

bool health_resolve_due(uint64_t now, uint64_t last, uint64_t next, bool wanted) {
    if (now >= next) return true;
    return wanted && now >= last + HEALTH_RESOLVE_MIN_GAP_MS;
}

static void health_maybe_resolve(struct server_state *s, uint64_t now) {
    if (s->resolving || !health_is_name(&s->scfg->addr)) return;
    bool wanted = atomic_load_explicit(&s->resolve_wanted, memory_order_relaxed);
    if (!health_resolve_due(now, s->last_resolve, s->next_resolve, wanted)) return;
    atomic_store(&s->resolve_wanted, false);
    struct health_resolve *r = xcalloc(1, sizeof(*r));
    r->s = s;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)s->scfg->addr.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    s->last_resolve = now;
    s->next_resolve = now + s->ucfg->resolve_ms;
    if (uv_getaddrinfo(hloop, &r->req, health_on_resolved, s->scfg->addr.host, port, &hints) < 0) {
        free(r);
        return;
    }
    s->resolving = true;
    s->resolve = r;
}

/* --- active checks ---------------------------------------------------------- */

struct health_probe {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } h;
    uv_connect_t connect;
    uv_write_t write;
    uv_timer_t timer;
    struct server_state *s;
    char req[320];  /* the request, valid until written */
    char buf[512];  /* the response's first bytes */
    size_t len;
    int open;     /* handles still to close */
    bool done;
};

static void health_probe_closed(uv_handle_t *h) {
    struct health_probe *p = h->data;
    if (--p->open == 0) free(p);
}

static void health_verdict(struct server_state *s, bool ok, const char *why) {
    bool down = atomic_load(&s->check_down);
    if (ok) {
        s->fall = 0;
        if (++s->rise >= HEALTH_RISE && down) {
            atomic_store(&s->check_down, false);
            log_info("upstream %s: server %s is up (health check passed)", s->upstream, s->server);
        }
    } else {
        s->rise = 0;
        if (++s->fall >= HEALTH_FALL && !down) {
            atomic_store(&s->check_down, true);
            log_warn("upstream %s: server %s is down (health check: %s)", s->upstream, s->server,
                     why);
        }
    }
}

static void health_probe_end(struct health_probe *p, bool ok, const char *why) {
    if (p->done) return;
    p->done = true;
    p->s->checking = false;
    p->s->probe = NULL;
    health_verdict(p->s, ok, why);
    uv_close(&p->h.handle, health_probe_closed);
    uv_close((uv_handle_t *)&p->timer, health_probe_closed);
}

static void health_probe_timeout(uv_timer_t *t) {
    health_probe_end(t->data, false, "timeout");
}

static void health_probe_alloc(uv_handle_t *h, size_t n, uv_buf_t *out) {
    FERRY_UNUSED(n);
    struct health_probe *p = h->data;
    *out = uv_buf_init(p->buf + p->len, (unsigned)(sizeof(p->buf) - 1 - p->len));
}

/* "HTTP/1.x NNN": 2xx and 3xx are healthy. */
static void health_probe_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
    FERRY_UNUSED(buf);
    struct health_probe *p = st->data;
    if (n == 0) return;
    if (n < 0) {
        health_probe_end(p, false, n == UV_EOF ? "closed without a status" : uv_strerror((int)n));
        return;
    }
    p->len += (size_t)n;
    p->buf[p->len] = '\0';
    if (p->len < 12 && !memchr(p->buf, '\n', p->len)) return;
    int code = 0;
    bool ok = sscanf(p->buf, "HTTP/1.%*1d %3d", &code) == 1 && code >= 200 && code < 400;
    char why[32];
    snprintf(why, sizeof(why), "status %d", code);
    health_probe_end(p, ok, why);
}

static void health_probe_written(uv_write_t *w, int status) {
    struct health_probe *p = w->data;
    if (status < 0) health_probe_end(p, false, uv_strerror(status));
}

static void health_probe_connected(uv_connect_t *c, int status) {
    struct health_probe *p = c->data;
    if (p->done) return;
    if (status < 0) {
        health_probe_end(p, false, uv_strerror(status));
        return;
    }
    const struct config_upstream *u = p->s->ucfg;
    if (!u || u->health_check != HEALTH_HTTP) {
        health_probe_end(p, true, "connected");
        return;
    }
    int n = snprintf(p->req, sizeof(p->req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ferry-health\r\n"
                     "Connection: close\r\n\r\n",
                     u->health_path, p->s->server);
    if (n < 0 || (size_t)n >= sizeof(p->req)) {
        health_probe_end(p, false, "health_check path too long");
        return;
    }
    uv_buf_t b = uv_buf_init(p->req, (unsigned)n);
    p->write.data = p;
    uv_write(&p->write, &p->h.stream, &b, 1, health_probe_written);
    p->len = 0;
    uv_read_start(&p->h.stream, health_probe_alloc, health_probe_read);
}

static void health_probe_start(struct server_state *s) {
    struct sockaddr_storage ss;
    if (s->scfg->addr.kind == ADDR_INET && !health_address(s, &ss)) return;
    struct health_probe *p = xcalloc(1, sizeof(*p));
    p->s = s;
    p->connect.data = p;
    uv_timer_init(hloop, &p->timer);
    p->timer.data = p;
    p->open = 2;
    int err = 0;
    if (s->scfg->addr.kind == ADDR_UNIX) {
        uv_pipe_init(hloop, &p->h.pipe, 0);
        p->h.handle.data = p;
        uv_pipe_connect(&p->connect, &p->h.pipe, s->scfg->addr.path, health_probe_connected);
    } else {
        uv_tcp_init(hloop, &p->h.tcp);
        p->h.handle.data = p;
        err = uv_tcp_connect(&p->connect, &p->h.tcp, (struct sockaddr *)&ss,
                             health_probe_connected);
    }
    s->checking = true;
    s->probe = p;
    uv_timer_start(&p->timer, health_probe_timeout, s->ucfg->connect_timeout_ms, 0);
    if (err < 0) health_probe_end(p, false, uv_strerror(err));
}

static void health_on_tick(uv_timer_t *t) {
    FERRY_UNUSED(t);
    uint64_t now = uv_now(hloop);
    for (struct server_state *s = hlist; s; s = s->next) {
        if (!s->ucfg) continue;
        health_maybe_resolve(s, now);
        if (s->ucfg->health_check == HEALTH_OFF || s->checking || now < s->next_check) continue;
        s->next_check = now + s->ucfg->health_interval_ms;
        health_probe_start(s);
    }
}

void health_start(uv_loop_t *loop) {
    hloop = loop;
    if (!hstarted) uv_mutex_init(&hlock);
    hstarted = true;
    uv_timer_init(loop, &htick);
    uv_timer_start(&htick, health_on_tick, HEALTH_TICK_MS, HEALTH_TICK_MS);
}

void health_stop(void) {
    if (!hloop) return;
    uv_close((uv_handle_t *)&htick, NULL);
    for (struct server_state *s = hlist; s; s = s->next) {
        if (s->probe) health_probe_end(s->probe, false, "stopping");
        if (s->resolve) uv_cancel((uv_req_t *)&s->resolve->req);
        s->ucfg = NULL;
    }
}

void health_free(void) {
    struct server_state *s = hlist;
    while (s) {
        struct server_state *next = s->next;
        free(s->upstream);
        free(s->server);
        free(s);
        s = next;
    }
    hlist = NULL;
    if (hstarted) uv_mutex_destroy(&hlock);
    hstarted = false;
    hloop = NULL;
}
