/* health: the process-wide view of upstream servers; see health.h.
 *
 * Everything that waits (getaddrinfo, check connections) runs on the main
 * loop, driven by one 250 ms tick that walks the registry: a few hundred
 * servers cost nothing, and there is no timer per server to keep in step
 * with reloads. */
#include "ferry/health.h"

#include <arpa/inet.h>
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
/* Addresses taken from one answer: more replicas than this behind one name
 * is a job for several names (and keeps every per-answer array bounded). */
#define HEALTH_MAX_ADDRS 64

static uv_loop_t *hloop;
static uv_timer_t htick;
static uv_mutex_t hlock; /* guards the list shape (find vs create) */
static struct server_set *hlist;
static bool hstarted;

uint64_t health_now_ms(void) {
    return uv_hrtime() / 1000000u;
}

/* --- members ------------------------------------------------------------ */

struct server_state *health_first(struct server_set *set) {
    return atomic_load_explicit(&set->members, memory_order_acquire);
}

struct server_state *health_next(struct server_state *s) {
    return atomic_load_explicit(&s->next, memory_order_acquire);
}

bool health_gone(struct server_state *s) {
    return atomic_load_explicit(&s->gone, memory_order_relaxed);
}

unsigned health_version(struct server_set *set) {
    return atomic_load_explicit(&set->version, memory_order_acquire);
}

bool health_address(struct server_state *s, struct sockaddr_storage *out) {
    if (s->addr.ss_family != AF_INET && s->addr.ss_family != AF_INET6) return false; /* unix */
    *out = s->addr;
    return true;
}

bool health_usable(struct server_state *s, uint64_t now_ms) {
    if (health_gone(s) || atomic_load_explicit(&s->check_down, memory_order_relaxed)) return false;
    return atomic_load_explicit(&s->down_until, memory_order_relaxed) <= now_ms;
}

bool health_probeable(struct server_state *s) {
    return !health_gone(s) && !atomic_load_explicit(&s->check_down, memory_order_relaxed);
}

void health_clear_mark(struct server_state *s) {
    if (atomic_load_explicit(&s->down_until, memory_order_relaxed) == 0) return;
    char who[320];
    if (atomic_exchange(&s->down_until, 0) > health_now_ms())
        log_info("upstream %s: server %s answers again", s->set->upstream,
                 health_name(s, who, sizeof(who)));
}

void health_mark_down(struct server_state *s, uint64_t until_ms) {
    uint64_t prev = atomic_exchange(&s->down_until, until_ms);
    char who[320];
    if (prev <= health_now_ms())
        log_warn("upstream %s: server %s marked down for %llums after repeated failures",
                 s->set->upstream, health_name(s, who, sizeof(who)),
                 (unsigned long long)(until_ms - health_now_ms()));
}

void health_want_resolve(struct server_set *set) {
    atomic_store_explicit(&set->resolve_wanted, true, memory_order_relaxed);
}

const char *health_name(struct server_state *s, char *buf, size_t len) {
    if (strcmp(s->set->server, s->address) == 0) return s->address;
    snprintf(buf, len, "%s (%s)", s->set->server, s->address);
    return buf;
}

/* "1.2.3.4:80", "[::1]:80": how metrics, /status and logs name an address. */
static void health_format(const struct sockaddr_storage *ss, char *out, size_t len) {
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(s6, ip, sizeof(ip));
        port = ntohs(s6->sin6_port);
        snprintf(out, len, "[%s]:%u", ip, port);
        return;
    }
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
    uv_ip4_name(s4, ip, sizeof(ip));
    snprintf(out, len, "%s:%u", ip, (unsigned)ntohs(s4->sin_port));
}

static size_t health_sockaddr_len(const struct sockaddr_storage *ss) {
    return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

static bool health_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
    return a->ss_family == b->ss_family && memcmp(a, b, health_sockaddr_len(a)) == 0;
}

static bool health_in(const struct sockaddr_storage *addrs, size_t n,
                      const struct sockaddr_storage *ss) {
    for (size_t i = 0; i < n; i++)
        if (health_same_addr(&addrs[i], ss)) return true;
    return false;
}

/* Appends a member; readers see it whole (release store of the link). */
static struct server_state *health_member_add(struct server_set *set, const char *address,
                                              const struct sockaddr_storage *ss) {
    struct server_state *s = xcalloc(1, sizeof(*s));
    s->set = set;
    s->address = xstrdup(address);
    if (ss) s->addr = *ss;
    _Atomic(struct server_state *) *link = &set->members;
    struct server_state *m;
    while ((m = atomic_load_explicit(link, memory_order_relaxed)))
        link = &m->next;
    atomic_store_explicit(link, s, memory_order_release);
    return s;
}

/* Adds ADDR's text to the change line, within bounds. */
static void health_note(char *line, size_t len, const char *what, const char *addr) {
    size_t used = strlen(line);
    if (used < len) snprintf(line + used, len - used, "%s%s %s", used ? "; " : "", what, addr);
}

bool health_set_apply(struct server_set *set, const struct sockaddr_storage *addrs, size_t n) {
    char line[512] = "", text[64];
    for (struct server_state *m = health_first(set); m; m = health_next(m)) {
        bool in = health_in(addrs, n, &m->addr);
        if (in == !health_gone(m)) continue;
        atomic_store(&m->gone, !in);
        health_note(line, sizeof(line), in ? "back" : "gone", m->address);
    }
    for (size_t i = 0; i < n; i++) {
        if (health_in(addrs, i, &addrs[i])) continue; /* a duplicate in the answer */
        bool known = false;
        for (struct server_state *m = health_first(set); m && !known; m = health_next(m))
            known = health_same_addr(&m->addr, &addrs[i]);
        if (known) continue;
        health_format(&addrs[i], text, sizeof(text));
        health_member_add(set, text, &addrs[i]);
        health_note(line, sizeof(line), "new", text);
    }
    if (!line[0]) return false;
    atomic_fetch_add_explicit(&set->version, 1, memory_order_acq_rel);
    char all[512] = "";
    size_t used = 0;
    for (struct server_state *m = health_first(set); m && used < sizeof(all); m = health_next(m))
        if (!health_gone(m))
            used += (size_t)snprintf(all + used, sizeof(all) - used, " %s", m->address);
    log_info("upstream %s: server %s now resolves to%s (%s)", set->upstream, set->server,
             all[0] ? all : " nothing", line);
    return true;
}

/* The distinct inet addresses of RES, at most HEALTH_MAX_ADDRS. */
static size_t health_collect(const struct addrinfo *res, struct sockaddr_storage *out) {
    size_t n = 0;
    for (const struct addrinfo *ai = res; ai && n < HEALTH_MAX_ADDRS; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        struct sockaddr_storage ss = {0};
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        if (!health_in(out, n, &ss)) out[n++] = ss;
    }
    return n;
}

/* --- the registry ------------------------------------------------------- */

struct server_set *health_find(const char *upstream, const char *server) {
    uv_mutex_lock(&hlock);
    struct server_set *s = hlist;
    while (s && (strcmp(s->upstream, upstream) != 0 || strcmp(s->server, server) != 0)) s = s->next;
    uv_mutex_unlock(&hlock);
    return s;
}

static bool health_is_name(const struct config_addr *a) {
    unsigned char buf[sizeof(struct in6_addr)];
    return a->kind == ADDR_INET && uv_inet_pton(AF_INET, a->host, buf) != 0 &&
           uv_inet_pton(AF_INET6, a->host, buf) != 0;
}

static struct addrinfo health_hints(void) {
    return (struct addrinfo){
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
}

/* Start-up and reload: resolve at once, on this thread. */
static void health_resolve_now(struct server_set *set) {
    const struct config_addr *a = &set->scfg->addr;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)a->port);
    struct addrinfo hints = health_hints();
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(a->host, port, &hints, &res);
    struct sockaddr_storage addrs[HEALTH_MAX_ADDRS];
    size_t n = rc == 0 ? health_collect(res, addrs) : 0;
    if (res) freeaddrinfo(res);
    if (n == 0) {
        log_warn("upstream %s: server %s does not resolve (%s); it stays down until it does",
                 set->upstream, set->server, gai_strerror(rc ? rc : EAI_NONAME));
        return;
    }
    health_set_apply(set, addrs, n);
}

static struct server_set *health_create(const struct config_upstream *u,
                                        const struct config_server *cs) {
    struct server_set *set = xcalloc(1, sizeof(*set));
    set->upstream = xstrdup(u->name);
    set->server = xstrdup(cs->addr.text);
    set->ucfg = u;
    set->scfg = cs;
    if (cs->addr.kind == ADDR_UNIX)
        health_member_add(set, cs->addr.path, NULL);
    else
        health_resolve_now(set);
    uv_mutex_lock(&hlock);
    set->next = hlist;
    hlist = set;
    uv_mutex_unlock(&hlock);
    return set;
}

void health_adopt(const struct config *cfg) {
    for (struct server_set *s = hlist; s; s = s->next)
        s->ucfg = NULL, s->scfg = NULL;
    uint64_t now = hloop ? uv_now(hloop) : 0;
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const struct config_upstream *u = &cfg->upstreams[i];
        for (size_t j = 0; j < u->nservers; j++) {
            const struct config_server *cs = &u->servers[j];
            struct server_set *set = health_find(u->name, cs->addr.text);
            if (!set) set = health_create(u, cs);
            set->ucfg = u;
            set->scfg = cs;
            set->next_resolve = now + u->resolve_ms;
            if (u->health_check != HEALTH_OFF) continue;
            for (struct server_state *m = health_first(set); m; m = health_next(m)) {
                atomic_store(&m->check_down, false); /* checks turned off: trust it again */
                m->rise = m->fall = 0;
            }
        }
    }
}

/* --- re-resolution -------------------------------------------------------- */

struct health_resolve {
    uv_getaddrinfo_t req;
    struct server_set *set;
};

static void health_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    struct health_resolve *r = container_of(req, struct health_resolve, req);
    struct server_set *set = r->set;
    set->resolving = false;
    set->resolve = NULL;
    struct sockaddr_storage addrs[HEALTH_MAX_ADDRS];
    size_t n = status == 0 ? health_collect(res, addrs) : 0;
    if (n > 0) {
        bool changed = health_set_apply(set, addrs, n);
        atomic_fetch_add(changed ? &set->resolves_changed : &set->resolves_same, 1);
    } else if (status != UV_ECANCELED) {
        atomic_fetch_add(&set->resolves_failed, 1);
        log_warn("upstream %s: resolving %s: %s (keeping the last addresses)", set->upstream,
                 set->server, uv_strerror(status ? status : UV_EAI_NONAME));
    }
    uv_freeaddrinfo(res);
    free(r);
}

bool health_resolve_due(uint64_t now, uint64_t last, uint64_t next, bool wanted) {
    if (now >= next) return true;
    return wanted && now >= last + HEALTH_RESOLVE_MIN_GAP_MS;
}

static void health_maybe_resolve(struct server_set *set, uint64_t now) {
    if (set->resolving || !health_is_name(&set->scfg->addr)) return;
    bool wanted = atomic_load_explicit(&set->resolve_wanted, memory_order_relaxed);
    if (!health_resolve_due(now, set->last_resolve, set->next_resolve, wanted)) return;
    atomic_store(&set->resolve_wanted, false);
    struct health_resolve *r = xcalloc(1, sizeof(*r));
    r->set = set;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)set->scfg->addr.port);
    struct addrinfo hints = health_hints();
    set->last_resolve = now;
    set->next_resolve = now + set->ucfg->resolve_ms;
    if (uv_getaddrinfo(hloop, &r->req, health_on_resolved, set->scfg->addr.host, port, &hints) <
        0) {
        free(r);
        return;
    }
    set->resolving = true;
    set->resolve = r;
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
    char who[320];
    if (ok) {
        s->fall = 0;
        if (++s->rise >= HEALTH_RISE && down) {
            atomic_store(&s->check_down, false);
            log_info("upstream %s: server %s is up (health check passed)", s->set->upstream,
                     health_name(s, who, sizeof(who)));
        }
    } else {
        s->rise = 0;
        if (++s->fall >= HEALTH_FALL && !down) {
            atomic_store(&s->check_down, true);
            log_warn("upstream %s: server %s is down (health check: %s)", s->set->upstream,
                     health_name(s, who, sizeof(who)), why);
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
    const struct config_upstream *u = p->s->set->ucfg;
    if (!u || u->health_check != HEALTH_HTTP) {
        health_probe_end(p, true, "connected");
        return;
    }
    int n = snprintf(p->req, sizeof(p->req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ferry-health\r\n"
                     "Connection: close\r\n\r\n",
                     u->health_path, p->s->set->server);
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
    const struct server_set *set = s->set;
    bool inet = health_address(s, &ss);
    struct health_probe *p = xcalloc(1, sizeof(*p));
    p->s = s;
    p->connect.data = p;
    uv_timer_init(hloop, &p->timer);
    p->timer.data = p;
    p->open = 2;
    int err = 0;
    if (!inet) {
        uv_pipe_init(hloop, &p->h.pipe, 0);
        p->h.handle.data = p;
        uv_pipe_connect(&p->connect, &p->h.pipe, set->scfg->addr.path, health_probe_connected);
    } else {
        uv_tcp_init(hloop, &p->h.tcp);
        p->h.handle.data = p;
        err = uv_tcp_connect(&p->connect, &p->h.tcp, (struct sockaddr *)&ss,
                             health_probe_connected);
    }
    s->checking = true;
    s->probe = p;
    uv_timer_start(&p->timer, health_probe_timeout, set->ucfg->connect_timeout_ms, 0);
    if (err < 0) health_probe_end(p, false, uv_strerror(err));
}

static void health_on_tick(uv_timer_t *t) {
    FERRY_UNUSED(t);
    uint64_t now = uv_now(hloop);
    for (struct server_set *set = hlist; set; set = set->next) {
        if (!set->ucfg) continue;
        health_maybe_resolve(set, now);
        if (set->ucfg->health_check == HEALTH_OFF) continue;
        for (struct server_state *s = health_first(set); s; s = health_next(s)) {
            if (health_gone(s) || s->checking || now < s->next_check) continue;
            s->next_check = now + set->ucfg->health_interval_ms;
            health_probe_start(s);
        }
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
    for (struct server_set *set = hlist; set; set = set->next) {
        for (struct server_state *s = health_first(set); s; s = health_next(s))
            if (s->probe) health_probe_end(s->probe, false, "stopping");
        if (set->resolve) uv_cancel((uv_req_t *)&set->resolve->req);
        set->ucfg = NULL;
    }
}

void health_free(void) {
    struct server_set *set = hlist;
    while (set) {
        struct server_set *next = set->next;
        struct server_state *m = health_first(set);
        while (m) {
            struct server_state *mnext = health_next(m);
            free(m->address);
            free(m);
            m = mnext;
        }
        free(set->upstream);
        free(set->server);
        free(set);
        set = next;
    }
    hlist = NULL;
    if (hstarted) uv_mutex_destroy(&hlock);
    hstarted = false;
    hloop = NULL;
}
