/* admin: the admin endpoint; see admin.h.
 *
 * It runs on the main thread so a slow scrape never delays a request, and
 * reads the workers' counters with relaxed atomic loads (stats.h): a scrape
 * sees each counter whole, though not all of them at the same instant,
 * which is what Prometheus expects of any exporter. */
#include "ferry/acme.h"
#include "ferry/admin.h"
#include "admin_internal.h"

#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/config.h"
#include "ferry/generation.h"
#include "ferry/health.h"
#include "ferry/http.h"
#include "ferry/listener.h"
#include "ferry/localca.h"
#include "ferry/log.h"
#include "ferry/ports.h"
#include "ferry/stats.h"
#include "ferry/strbuf.h"
#include "ferry/tls.h"
#include "ferry/transport_h2.h"
#include "ferry/worker.h"

#define ADMIN_REQUEST_MAX 8192
#define ADMIN_TIMEOUT_MS 10000

struct admin {
    uv_tcp_t listener;
    uv_loop_t *loop;
    struct admin_source src;
    struct list_node conns;
    struct dash *dash; /* history and reloads for the dashboard */
    bool closing;
};

struct admin_conn {
    struct list_node link;
    struct admin *a;
    uv_tcp_t h;
    uv_timer_t timer;
    uv_write_t write;
    struct http_msg msg;
    char in[ADMIN_REQUEST_MAX];
    size_t len;
    char *out; /* response, malloc'ed */
    int open;  /* handles still to close */
    bool closing;
};

/* --- escaping ------------------------------------------------------------ */

/* Prometheus label values and JSON strings escape the same three bytes;
 * names come from the config loader, which allows no control bytes. */
void admin_escaped(struct strbuf *b, const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            strbuf_printf(b, "\\%c", *s);
        else if (*s == '\n')
            strbuf_printf(b, "\\n");
        else
            strbuf_printf(b, "%c", *s);
    }
}

/* --- gathering the workers' counters ----------------------------------- */

/* Calls FN for every node of KIND with labels K, in every worker. */
static void each_node(const struct admin_source *src, enum stats_kind kind, struct admin_key k,
                      void (*fn)(const struct stats_node *n, void *acc), void *acc) {
    for (unsigned w = 0; w < src->nworkers; w++) {
        struct stats_node *n = atomic_load_explicit(&src->workers[w].stats.head,
                                                    memory_order_acquire);
        for (; n; n = n->next)
            if (n->kind == kind && stats_label_eq(n->name, k.name) &&
                stats_label_eq(n->name2, k.name2) && stats_label_eq(n->name3, k.name3))
                fn(n, acc);
    }
}

/* The distinct label sets of KIND, sorted for a stable output. */
static int key_cmp(const void *x, const void *y) {
    const struct admin_key *a = x, *b = y;
    int c = strcmp(a->name ? a->name : "", b->name ? b->name : "");
    if (!c) c = strcmp(a->name2 ? a->name2 : "", b->name2 ? b->name2 : "");
    return c ? c : strcmp(a->name3 ? a->name3 : "", b->name3 ? b->name3 : "");
}

size_t admin_keys_of(const struct admin_source *src, enum stats_kind kind, struct admin_key **out) {
    size_t n = 0, cap = 16;
    struct admin_key *keys = xmalloc(cap * sizeof(*keys));
    for (unsigned w = 0; w < src->nworkers; w++) {
        struct stats_node *s = atomic_load_explicit(&src->workers[w].stats.head,
                                                    memory_order_acquire);
        for (; s; s = s->next) {
            if (s->kind != kind) continue;
            size_t i = 0;
            while (i < n && !(stats_label_eq(keys[i].name, s->name) &&
                              stats_label_eq(keys[i].name2, s->name2) &&
                              stats_label_eq(keys[i].name3, s->name3)))
                i++;
            if (i < n) continue;
            if (n == cap) keys = xrealloc(keys, (cap *= 2) * sizeof(*keys));
            keys[n++] = (struct admin_key){s->name, s->name2, s->name3};
        }
    }
    qsort(keys, n, sizeof(*keys), key_cmp);
    *out = keys;
    return n;
}

static void add_node(const struct stats_node *node, void *acc) {
    struct admin_sum *s = acc;
    const stat_t *c = (const stat_t *)(const void *)&node->u;
    for (size_t i = 0; i < s->n; i++) s->v[i] += stat_get(&c[i]);
}

struct admin_sum admin_sum_of(const struct admin_source *src, enum stats_kind kind,
                              struct admin_key k, size_t nvalues) {
    struct admin_sum s = {.n = nvalues};
    each_node(src, kind, k, add_node, &s);
    return s;
}

/* --- /metrics ---------------------------------------------------------- */

static void metric_head(struct strbuf *b, const char *name, const char *type, const char *help) {
    strbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metrics_listeners(struct strbuf *b, const struct admin_source *src) {
    struct admin_key *keys;
    size_t n = admin_keys_of(src, STATS_LISTENER, &keys);
    const char *names[2] = {"ferry_connections_active", "ferry_connections_total"};
    const char *types[2] = {"gauge", "counter"};
    const char *help[2] = {"Downstream connections open now.", "Downstream connections accepted."};
    for (int m = 0; m < 2; m++) {
        metric_head(b, names[m], types[m], help[m]);
        for (size_t i = 0; i < n; i++) {
            struct admin_sum s =
                admin_sum_of(src, STATS_LISTENER, keys[i], NVAL(struct stats_listener));
            strbuf_printf(b, "%s{listener=\"", names[m]);
            admin_escaped(b, keys[i].name);
            strbuf_printf(b, "\"} %llu\n", (unsigned long long)s.v[m == 0 ? 1 : 0]);
        }
    }
    free(keys);
}

/* Handshake failures of every TLS listener of the current config, and the
 * expiry (Unix time) of each of its certificates. */
static void metrics_tls(struct strbuf *b, const struct admin_source *src) {
    const struct generation *gen = *src->gen;
    const struct config *cfg = gen->cfg;
    metric_head(b, "ferry_tls_handshake_errors_total", "counter",
                "TLS handshakes that failed, by listener and reason.");
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct config_listener *l = &cfg->listeners[i];
        if (!config_listener_tls(l)) continue;
        struct admin_sum s =
            admin_sum_of(src, STATS_LISTENER, (struct admin_key){l->name, NULL, NULL},
                         NVAL(struct stats_listener));
        const uint64_t *fails = s.v + offsetof(struct stats_listener, tls_handshake_errors) /
                                          sizeof(stat_t);
        for (int r = 0; r < TLS_FAIL_REASONS; r++) {
            strbuf_adds(b, "ferry_tls_handshake_errors_total{listener=\"");
            admin_escaped(b, l->name);
            strbuf_printf(b, "\",reason=\"%s\"} %llu\n", tls_fail_names[r],
                          (unsigned long long)fails[r]);
        }
    }
    metric_head(b, "ferry_h2_connections_total", "counter",
                "Client connections that spoke HTTP/2 (ALPN h2 or h2c), by listener.");
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct config_listener *l = &cfg->listeners[i];
        if (l->mode != MODE_HTTP || (!config_listener_tls(l) && !l->h2c)) continue;
        struct admin_sum s = admin_sum_of(src, STATS_LISTENER, (struct admin_key){l->name, NULL, NULL},
                                          NVAL(struct stats_listener));
        strbuf_adds(b, "ferry_h2_connections_total{listener=\"");
        admin_escaped(b, l->name);
        strbuf_printf(b, "\"} %llu\n",
                      (unsigned long long)s.v[offsetof(struct stats_listener, h2_connections) /
                                              sizeof(stat_t)]);
    }
    metric_head(b, "ferry_h2_abuse_total", "counter",
                "HTTP/2 connections ended with GOAWAY ENHANCE_YOUR_CALM, by listener and kind.");
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct config_listener *l = &cfg->listeners[i];
        if (l->mode != MODE_HTTP || (!config_listener_tls(l) && !l->h2c)) continue;
        struct admin_sum s = admin_sum_of(src, STATS_LISTENER, (struct admin_key){l->name, NULL, NULL},
                                          NVAL(struct stats_listener));
        const uint64_t *n = s.v + offsetof(struct stats_listener, h2_abuse) / sizeof(stat_t);
        for (int k = 0; k < H2_ABUSE_KINDS; k++) {
            strbuf_adds(b, "ferry_h2_abuse_total{listener=\"");
            admin_escaped(b, l->name);
            strbuf_printf(b, "\",kind=\"%s\"} %llu\n", h2_abuse_names[k], (unsigned long long)n[k]);
        }
    }
    uint64_t ok, failed;
    acme_store_orders(&ok, &failed);
    metric_head(b, "ferry_acme_orders_total", "counter",
                "ACME orders (tls_auto = acme) that ended, by result.");
    strbuf_printf(b, "ferry_acme_orders_total{result=\"ok\"} %llu\n", (unsigned long long)ok);
    strbuf_printf(b, "ferry_acme_orders_total{result=\"error\"} %llu\n",
                  (unsigned long long)failed);
    metric_head(b, "ferry_tls_certificate_expiry_seconds", "gauge",
                "When each certificate expires, in seconds since the Unix epoch.");
    for (size_t i = 0; gen->tls && i < gen->tls->nlisteners; i++) {
        const struct tls_server *srv = gen->tls->listeners[i];
        for (size_t h = 0; srv && srv->acme && h < srv->nhosts; h++) {
            time_t end = acme_store_not_after(srv->hosts[h]); /* 0: none yet */
            if (!end) continue;
            strbuf_adds(b, "ferry_tls_certificate_expiry_seconds{listener=\"");
            admin_escaped(b, srv->listener);
            strbuf_adds(b, "\",name=\"");
            admin_escaped(b, srv->hosts[h]);
            strbuf_printf(b, "\"} %lld\n", (long long)end);
        }
        for (size_t c = 0; srv && c < srv->ncerts; c++) {
            const struct tls_cert *cert = &srv->certs[c];
            strbuf_adds(b, "ferry_tls_certificate_expiry_seconds{listener=\"");
            admin_escaped(b, srv->listener);
            strbuf_adds(b, "\",name=\"");
            admin_escaped(b, cert->nnames ? cert->names[0] : cert->file);
            strbuf_printf(b, "\"} %lld\n", (long long)cert->not_after);
        }
    }
}

static void metrics_routes(struct strbuf *b, const struct admin_source *src) {
    struct admin_key *keys;
    size_t n = admin_keys_of(src, STATS_ROUTE, &keys);
    metric_head(b, "ferry_requests_total", "counter",
                "HTTP requests answered, by route and status.");
    struct admin_sum *sums = xcalloc(n + 1, sizeof(*sums));
    for (size_t i = 0; i < n; i++) {
        sums[i] = admin_sum_of(src, STATS_ROUTE, keys[i], NVAL(struct stats_route));
        for (int code = 0; code < STATS_CODES; code++) {
            if (!sums[i].v[code]) continue;
            strbuf_printf(b, "ferry_requests_total{route=\"");
            admin_escaped(b, keys[i].name);
            strbuf_printf(b, "\",code=\"%d\"} %llu\n", code + 100,
                          (unsigned long long)sums[i].v[code]);
        }
    }
    metric_head(b, "ferry_request_duration_seconds", "histogram",
                "Time from the first byte of a request to the last byte of its response.");
    for (size_t i = 0; i < n; i++) {
        const uint64_t *bk = sums[i].v + STATS_CODES;
        uint64_t cum = 0;
        for (int k = 0; k < STATS_BUCKETS; k++) {
            cum += bk[k];
            strbuf_printf(b, "ferry_request_duration_seconds_bucket{route=\"");
            admin_escaped(b, keys[i].name);
            if (k < STATS_BUCKETS - 1)
                strbuf_printf(b, "\",le=\"%g\"} %llu\n", stats_bucket_bounds[k],
                              (unsigned long long)cum);
            else
                strbuf_printf(b, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        }
        strbuf_printf(b, "ferry_request_duration_seconds_sum{route=\"");
        admin_escaped(b, keys[i].name);
        strbuf_printf(b, "\"} %.6f\nferry_request_duration_seconds_count{route=\"",
                      (double)sums[i].v[STATS_CODES + STATS_BUCKETS] / 1e6);
        admin_escaped(b, keys[i].name);
        strbuf_printf(b, "\"} %llu\n", (unsigned long long)cum);
    }
    free(sums);
    free(keys);
}

static void server_labels(struct strbuf *b, const char *metric, struct admin_key k) {
    strbuf_printf(b, "%s{upstream=\"", metric);
    admin_escaped(b, k.name);
    strbuf_printf(b, "\",server=\"");
    admin_escaped(b, k.name2);
    strbuf_printf(b, "\",address=\"");
    admin_escaped(b, k.name3 ? k.name3 : "");
    strbuf_printf(b, "\"}");
}

/* A server address that left its name's answer: once it has no connection
 * left its series are dropped, as a scraped target that goes away is, so a
 * long run of rolling updates does not grow /metrics without end. */
static bool admin_address_gone(struct admin_key k) {
    struct server_set *set = k.name3 ? health_find(k.name, k.name2) : NULL;
    for (struct server_state *m = set ? health_first(set) : NULL; m; m = health_next(m))
        if (strcmp(m->address, k.name3) == 0) return health_gone(m);
    return false;
}

static void metrics_servers(struct strbuf *b, const struct admin_source *src) {
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"ferry_upstream_connections_opened_total", "counter", "Upstream connections opened."},
        {"ferry_upstream_requests_total", "counter", "Requests (tcp: connections) sent upstream."},
        {"ferry_upstream_connections_active", "gauge", "Upstream connections in use (not idle)."},
        {"ferry_upstream_connections_idle", "gauge", "Upstream connections idle in the pool."},
    };
    struct admin_key *keys;
    size_t n = admin_keys_of(src, STATS_SERVER, &keys);
    for (size_t j = 0; j < FERRY_ARRAY_LEN(m); j++) {
        metric_head(b, m[j].name, m[j].type, m[j].help);
        for (size_t i = 0; i < n; i++) {
            struct admin_sum s =
                admin_sum_of(src, STATS_SERVER, keys[i], NVAL(struct stats_server));
            if (s.v[2] == 0 && admin_address_gone(keys[i])) continue;
            s.v[2] -= s.v[2] >= s.v[3] ? s.v[3] : s.v[2]; /* open - idle = in use */
            server_labels(b, m[j].name, keys[i]);
            strbuf_printf(b, " %llu\n", (unsigned long long)s.v[j]);
        }
    }
    metric_head(
        b, "ferry_upstream_server_up", "gauge",
        "1 when the server can take traffic (address known, checks pass, not marked down).");
    const struct config *cfg = (*src->gen)->cfg;
    uint64_t now = health_now_ms();
    for (size_t u = 0; u < cfg->nupstreams; u++) {
        for (size_t i = 0; i < cfg->upstreams[u].nservers; i++) {
            struct admin_key k = {cfg->upstreams[u].name, cfg->upstreams[u].servers[i].addr.text,
                                  NULL};
            struct server_set *set = health_find(k.name, k.name2);
            bool any = false;
            for (struct server_state *st = set ? health_first(set) : NULL; st;
                 st = health_next(st)) {
                if (health_gone(st)) continue;
                any = true;
                k.name3 = st->address;
                server_labels(b, "ferry_upstream_server_up", k);
                strbuf_printf(b, " %d\n", health_usable(st, now) ? 1 : 0);
            }
            if (any) continue;
            k.name3 = NULL; /* resolves to nothing: down, with an empty address */
            server_labels(b, "ferry_upstream_server_up", k);
            strbuf_printf(b, " 0\n");
        }
    }
    free(keys);
}

static void metrics_upstreams(struct strbuf *b, const struct admin_source *src) {
    struct admin_key *keys;
    size_t n = admin_keys_of(src, STATS_UPSTREAM, &keys);
    metric_head(b, "ferry_upstream_connect_errors_total", "counter",
                "Failed connection attempts to upstream servers, by reason.");
    for (size_t i = 0; i < n; i++) {
        struct admin_sum s =
            admin_sum_of(src, STATS_UPSTREAM, keys[i], NVAL(struct stats_upstream));
        for (int r = 0; r < STATS_ERR_REASONS; r++) {
            strbuf_printf(b, "ferry_upstream_connect_errors_total{upstream=\"");
            admin_escaped(b, keys[i].name);
            strbuf_printf(b, "\",reason=\"%s\"} %llu\n", stats_reason_names[r],
                          (unsigned long long)s.v[r]);
        }
    }
    metric_head(b, "ferry_requests_held_total", "counter",
                "Requests that waited out `hold` for a server, by outcome.");
    for (size_t i = 0; i < n; i++) {
        struct admin_sum s =
            admin_sum_of(src, STATS_UPSTREAM, keys[i], NVAL(struct stats_upstream));
        for (int o = 0; o < 2; o++) {
            strbuf_printf(b, "ferry_requests_held_total{upstream=\"");
            admin_escaped(b, keys[i].name);
            strbuf_printf(b, "\",outcome=\"%s\"} %llu\n", o ? "expired" : "served",
                          (unsigned long long)s.v[STATS_ERR_REASONS + o]);
        }
    }
    free(keys);
    metric_head(b, "ferry_upstream_resolves_total", "counter",
                "Resolutions of server names, by result.");
    const struct config *cfg = (*src->gen)->cfg;
    for (size_t u = 0; u < cfg->nupstreams; u++) {
        uint64_t r[3] = {0, 0, 0};
        for (size_t i = 0; i < cfg->upstreams[u].nservers; i++) {
            struct server_set *st =
                health_find(cfg->upstreams[u].name, cfg->upstreams[u].servers[i].addr.text);
            if (!st) continue;
            r[0] += atomic_load(&st->resolves_changed);
            r[1] += atomic_load(&st->resolves_same);
            r[2] += atomic_load(&st->resolves_failed);
        }
        static const char *const result[3] = {"changed", "same", "failed"};
        for (int k = 0; k < 3; k++) {
            strbuf_printf(b, "ferry_upstream_resolves_total{upstream=\"");
            admin_escaped(b, cfg->upstreams[u].name);
            strbuf_printf(b, "\",result=\"%s\"} %llu\n", result[k], (unsigned long long)r[k]);
        }
    }
}

char *admin_metrics_text(const struct admin_source *src, size_t *len) {
    struct strbuf b = STRBUF_INIT;
    metrics_listeners(&b, src);
    metrics_tls(&b, src);
    metrics_routes(&b, src);
    metrics_servers(&b, src);
    metrics_upstreams(&b, src);
    struct admin_sum bytes = admin_sum_of(src, STATS_WORKER, (struct admin_key){NULL, NULL, NULL},
                                          NVAL(struct stats_worker));
    metric_head(&b, "ferry_bytes_total", "counter", "Bytes from (in) and to (out) clients.");
    strbuf_printf(&b, "ferry_bytes_total{direction=\"in\"} %llu\n", (unsigned long long)bytes.v[0]);
    strbuf_printf(&b, "ferry_bytes_total{direction=\"out\"} %llu\n",
                  (unsigned long long)bytes.v[1]);
    const struct ports_sample *ps = ports_sample();
    metric_head(&b, "ferry_ephemeral_ports_in_use", "gauge",
                "Local ports (TIME_WAIT included) from each local address to its busiest server.");
    for (size_t i = 0; i < ps->nsources; i++)
        strbuf_printf(&b, "ferry_ephemeral_ports_in_use{source=\"%s\"} %u\n", ps->sources[i].name,
                      ps->sources[i].in_use);
    metric_head(&b, "ferry_ephemeral_ports_available", "gauge",
                "Ephemeral ports left towards the upstream servers (sampled every 5 s).");
    strbuf_printf(&b, "ferry_ephemeral_ports_available %llu\n", (unsigned long long)ps->available);
    metric_head(&b, "ferry_config_reloads_total", "counter", "Config reloads (SIGHUP), by result.");
    strbuf_printf(&b, "ferry_config_reloads_total{result=\"ok\"} %lu\n",
                  atomic_load(&src->rt->reloads_ok));
    strbuf_printf(&b, "ferry_config_reloads_total{result=\"error\"} %lu\n",
                  atomic_load(&src->rt->reloads_error));
    *len = b.len;
    return strbuf_take(&b);
}

/* --- /status ----------------------------------------------------------- */

static void status_strings(struct strbuf *b, char **v, size_t n) {
    strbuf_printf(b, "[");
    for (size_t i = 0; i < n; i++) {
        strbuf_printf(b, "%s\"", i ? "," : "");
        admin_escaped(b, v[i]);
        strbuf_printf(b, "\"");
    }
    strbuf_printf(b, "]");
}

/* One address of a server (ST; NULL when the name resolves to nothing: the
 * address is null and the state down). */
static void status_server(struct strbuf *b, const struct admin_source *src,
                          const struct config_upstream *up, const struct config_server *cs,
                          struct server_state *st, bool stats, bool *first) {
    struct admin_key k = {up->name, cs->addr.text, st ? st->address : NULL};
    struct admin_sum s = st ? admin_sum_of(src, STATS_SERVER, k, NVAL(struct stats_server))
                            : (struct admin_sum){.n = NVAL(struct stats_server)};
    strbuf_printf(b, "%s{\"server\":\"", *first ? "" : ",");
    *first = false;
    admin_escaped(b, cs->addr.text);
    strbuf_printf(b, "\",\"address\":");
    if (st) {
        strbuf_printf(b, "\"");
        admin_escaped(b, st->address);
        strbuf_printf(b, "\"");
    } else {
        strbuf_printf(b, "null");
    }
    strbuf_printf(b,
                  ",\"state\":\"%s\",\"active\":%llu,\"idle\":%llu,\"weight\":%u,"
                  "\"backup\":%s",
                  st && health_usable(st, health_now_ms()) ? "up" : "down",
                  (unsigned long long)(s.v[2] >= s.v[3] ? s.v[2] - s.v[3] : 0),
                  (unsigned long long)s.v[3], cs->weight, cs->backup ? "true" : "false");
    if (stats) dash_server_fields(b, &s, st);
    strbuf_printf(b, "}");
}

static void status_upstreams(struct strbuf *b, const struct admin_source *src,
                             const struct config *cfg, bool stats) {
    strbuf_printf(b, "\"upstreams\":[");
    for (size_t u = 0; u < cfg->nupstreams; u++) {
        const struct config_upstream *up = &cfg->upstreams[u];
        strbuf_printf(b, "%s{\"name\":\"", u ? "," : "");
        admin_escaped(b, up->name);
        strbuf_printf(b, "\",\"servers\":[");
        bool first = true;
        for (size_t i = 0; i < up->nservers; i++) {
            struct server_set *set = health_find(up->name, up->servers[i].addr.text);
            bool any = false;
            for (struct server_state *m = set ? health_first(set) : NULL; m; m = health_next(m)) {
                if (health_gone(m)) continue;
                status_server(b, src, up, &up->servers[i], m, stats, &first);
                any = true;
            }
            if (!any) status_server(b, src, up, &up->servers[i], NULL, stats, &first);
        }
        strbuf_printf(b, "]");
        if (stats) dash_upstream_fields(b, src, up);
        strbuf_printf(b, "}");
    }
    strbuf_printf(b, "]");
}

/* /status; with STATS (and D, the dashboard's history) the fields of
 * /status?stats=1 as well. */
/* A tls_auto = internal listener: the CA its certificates come from, the
 * names it issues for, and until when the CA is good. */
static void status_localca(struct strbuf *b, const struct tls_server *srv, bool first) {
    strbuf_printf(b, "%s{\"listener\":\"", first ? "" : ",");
    admin_escaped(b, srv->listener);
    strbuf_adds(b, "\",\"file\":\"");
    admin_escaped(b, localca_cert_path(srv->ca));
    strbuf_adds(b, "\",\"names\":");
    status_strings(b, (char **)srv->hosts, srv->nhosts);
    strbuf_printf(b, ",\"not_after\":%lld,\"default\":true,\"issuer\":\"local CA\","
                  "\"issued\":%llu,\"cached\":%zu}",
                  (long long)localca_not_after(srv->ca), localca_issued(srv->ca),
                  localca_cached(srv->ca));
}

/* Every certificate of every TLS listener: what it serves and until when. */
static void status_certificates(struct strbuf *b, const struct generation *gen) {
    strbuf_adds(b, ",\"certificates\":[");
    bool first = true;
    for (size_t i = 0; gen->tls && i < gen->tls->nlisteners; i++) {
        const struct tls_server *srv = gen->tls->listeners[i];
        if (srv && srv->internal && srv->ca) {
            status_localca(b, srv, first);
            first = false;
        }
        for (size_t c = 0; srv && c < srv->ncerts; c++) {
            const struct tls_cert *cert = &srv->certs[c];
            strbuf_printf(b, "%s{\"listener\":\"", first ? "" : ",");
            admin_escaped(b, srv->listener);
            strbuf_adds(b, "\",\"file\":\"");
            admin_escaped(b, cert->file);
            strbuf_adds(b, "\",\"names\":");
            status_strings(b, cert->names, cert->nnames);
            strbuf_printf(b, ",\"not_after\":%lld,\"default\":%s}", (long long)cert->not_after,
                          c == 0 ? "true" : "false");
            first = false;
        }
    }
    strbuf_adds(b, "]");
}

static char *status_json(const struct admin_source *src, struct dash *d, bool stats,
                         size_t *len) {
    const struct generation *gen = *src->gen;
    const struct config *cfg = gen->cfg;
    struct strbuf b = STRBUF_INIT;
    strbuf_printf(&b, "{\"config_generation\":%u,\"workers\":%u,\"listeners\":[", gen->id,
                  src->nworkers);
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct config_listener *l = &cfg->listeners[i];
        strbuf_printf(&b, "%s{\"name\":\"", i ? "," : "");
        admin_escaped(&b, l->name);
        strbuf_printf(&b, "\",\"bind\":\"");
        admin_escaped(&b, l->bind.text);
        strbuf_printf(&b, "\",\"mode\":\"%s\",\"tls\":%s", l->mode == MODE_TCP ? "tcp" : "http",
                      config_listener_tls(l) ? "true" : "false");
        if (l->tls_auto == TLS_AUTO_INTERNAL) strbuf_adds(&b, ",\"tls_auto\":\"internal\"");
        if (stats) dash_listener_fields(&b, src, l);
        strbuf_printf(&b, "}");
    }
    strbuf_printf(&b, "],\"routes\":[");
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct config_route *r = &cfg->routes[i];
        strbuf_printf(&b, "%s{\"name\":\"", i ? "," : "");
        admin_escaped(&b, r->name);
        strbuf_printf(&b, "\",\"hosts\":");
        status_strings(&b, r->hosts, r->nhosts);
        if (r->nsnis > 0) { /* a tcp listener's route: no path or methods to show */
            strbuf_printf(&b, ",\"listener\":\"");
            admin_escaped(&b, r->listener->name);
            strbuf_printf(&b, "\",\"sni\":");
            status_strings(&b, r->snis, r->nsnis);
        } else {
            strbuf_printf(&b, ",\"%s\":\"", r->path_exact ? "path" : "path_prefix");
            admin_escaped(&b, r->path);
            strbuf_printf(&b, "\",\"methods\":");
            status_strings(&b, r->methods, r->nmethods);
        }
        strbuf_printf(&b, ",\"upstream\":\"");
        admin_escaped(&b, r->upstream->name);
        strbuf_printf(&b, "\",\"line\":%d", r->line);
        if (stats) dash_route_fields(&b, d, src, r);
        strbuf_printf(&b, "}");
    }
    strbuf_printf(&b, "],");
    status_upstreams(&b, src, cfg, stats);
    status_certificates(&b, gen);
    strbuf_adds(&b, ",\"acme\":");
    acme_store_status(&b); /* each name of tls_auto = acme listeners */
    if (stats) dash_tail(&b, d, src);
    strbuf_printf(&b, "}\n");
    *len = b.len;
    return strbuf_take(&b);
}

char *admin_status_json(const struct admin_source *src, size_t *len) {
    return status_json(src, NULL, false, len);
}

/* --- the tiny server ------------------------------------------------------ */

static void admin_conn_closed(uv_handle_t *h) {
    struct admin_conn *c = h->data;
    if (--c->open > 0) return;
    list_remove(&c->link);
    free(c->out);
    free(c);
}

static void admin_conn_close(struct admin_conn *c) {
    if (c->closing) return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->h, admin_conn_closed);
    uv_close((uv_handle_t *)&c->timer, admin_conn_closed);
}

static void admin_on_written(uv_write_t *w, int status) {
    FERRY_UNUSED(status);
    admin_conn_close(w->data);
}

/* Sends STATUS with BODY (malloc'ed, taken; NULL when STATIC_BODY is the
 * body, which is not freed) and EXTRA header lines, then closes. */
static void admin_respond_with(struct admin_conn *c, int status, const char *type, char *body,
                               const char *static_body, size_t blen, const char *extra,
                               bool head_only) {
    char head[1024], date[HTTP_DATE_LEN];
    uv_timeval64_t now;
    http_date(date, uv_gettimeofday(&now) == 0 ? now.tv_sec : 0);
    /* RFC 9110 15.5.6: a 405 says which methods would do */
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n%s%sConnection: close\r\n\r\n",
                     status, http_reason(status), date, type, blen,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "", extra ? extra : "");
    assert(n > 0 && (size_t)n < sizeof(head)); /* our own headers: the CSP is ~300 bytes */
    size_t total = (size_t)n + (head_only ? 0 : blen);
    c->out = xmalloc(total + 1);
    memcpy(c->out, head, (size_t)n);
    if (!head_only && blen) memcpy(c->out + n, body ? body : static_body, blen);
    free(body);
    uv_buf_t b = uv_buf_init(c->out, (unsigned)total);
    c->write.data = c;
    uv_read_stop((uv_stream_t *)&c->h);
    if (uv_write(&c->write, (uv_stream_t *)&c->h, &b, 1, admin_on_written) < 0) admin_conn_close(c);
}

static void admin_respond(struct admin_conn *c, int status, const char *type, char *body,
                          size_t blen, bool head_only) {
    admin_respond_with(c, status, type, body, NULL, blen, NULL, head_only);
}

/* "stats=1" among the &-separated parameters of QUERY ("?..." or empty). */
static bool admin_wants_stats(const char *q, size_t qlen) {
    size_t i = qlen && q[0] == '?' ? 1 : 0;
    while (i < qlen) {
        size_t end = i;
        while (end < qlen && q[end] != '&') end++;
        if (end - i == 7 && memcmp(q + i, "stats=1", 7) == 0) return true;
        i = end + 1;
    }
    return false;
}

static void admin_dispatch(struct admin_conn *c) {
    const struct http_msg *m = &c->msg;
    const char *path = http_span_ptr(m, m->path);
    size_t plen = m->path.len;
    bool head = m->method == HTTP_HEAD;
    size_t len = 0;
    if (m->method != HTTP_GET && !head) {
        admin_respond(c, 405, "text/plain", xstrdup("only GET and HEAD\n"), 18, head);
        return;
    }
#define IS(p) (plen == sizeof(p) - 1 && memcmp(path, p, plen) == 0)
    if (IS("/healthz")) {
        admin_respond(c, 200, "text/plain", xstrdup("ok\n"), 3, head);
    } else if (IS("/metrics")) {
        char *body = admin_metrics_text(&c->a->src, &len);
        admin_respond(c, 200, "text/plain; version=0.0.4", body, len, head);
    } else if (IS("/status")) {
        bool stats = admin_wants_stats(http_span_ptr(m, m->query), m->query.len);
        char *body = status_json(&c->a->src, c->a->dash, stats, &len);
        admin_respond(c, 200, "application/json", body, len, head);
    } else if (IS("/")) {
        const char *page = dash_page(&len);
        admin_respond_with(c, 200, "text/html; charset=utf-8", NULL, page, len,
                           dash_page_headers(), head);
    } else {
        static const char msg[] = "not found: / /healthz /metrics /status\n";
        admin_respond(c, 404, "text/plain", xstrdup(msg), sizeof(msg) - 1, head);
    }
#undef IS
}

static void admin_alloc(uv_handle_t *h, size_t n, uv_buf_t *out) {
    FERRY_UNUSED(n);
    struct admin_conn *c = h->data;
    *out = uv_buf_init(c->in + c->len, (unsigned)(sizeof(c->in) - c->len));
}

static void admin_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    FERRY_UNUSED(buf);
    struct admin_conn *c = s->data;
    if (n == 0) return;
    if (n < 0) {
        admin_conn_close(c);
        return;
    }
    size_t from = c->len;
    c->len += (size_t)n;
    int r = http_parse_head(&c->msg, c->in, from, c->len);
    if (r == HTTP_DONE)
        admin_dispatch(c);
    else if (r == HTTP_ERROR || c->len == sizeof(c->in))
        admin_respond(c, 400, "text/plain", xstrdup("bad request\n"), 12, false);
}

static void admin_on_timeout(uv_timer_t *t) {
    admin_conn_close(t->data);
}

static void admin_on_connection(uv_stream_t *server, int status) {
    struct admin *a = server->data;
    if (status < 0) return;
    struct admin_conn *c = xcalloc(1, sizeof(*c));
    c->a = a;
    uv_tcp_init(a->loop, &c->h);
    uv_timer_init(a->loop, &c->timer);
    c->h.data = c->timer.data = c;
    c->open = 2;
    list_push_front(&a->conns, &c->link);
    http_msg_init(&c->msg, true, false);
    if (uv_accept(server, (uv_stream_t *)&c->h) < 0 ||
        uv_read_start((uv_stream_t *)&c->h, admin_alloc, admin_on_read) < 0) {
        admin_conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, admin_on_timeout, ADMIN_TIMEOUT_MS, 0);
}

static void admin_listener_closed(uv_handle_t *h) {
    free(h->data);
}

struct admin *admin_start(uv_loop_t *loop, const struct admin_source *src, char *err,
                          size_t errlen) {
    const struct config_addr *addr = &(*src->gen)->cfg->global.admin;
    struct admin *a = xcalloc(1, sizeof(*a));
    a->loop = loop;
    a->src = *src;
    list_init(&a->conns);
    uv_tcp_init(loop, &a->listener);
    a->listener.data = a;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    /* As on a listener: ":PORT" is every address, v4 and v6 (dual-stack),
     * an explicit IPv6 address is v6 only, and a host name is resolved. */
    int rc = listener_resolve(addr, &ss, &sslen);
    if (rc == 0) {
        bool v6only = ss.ss_family == AF_INET6 && addr->host[0] != '\0';
        rc = uv_tcp_bind(&a->listener, (struct sockaddr *)&ss, v6only ? UV_TCP_IPV6ONLY : 0);
    }
    if (rc == 0) rc = uv_listen((uv_stream_t *)&a->listener, 64, admin_on_connection);
    if (rc < 0) {
        snprintf(err, errlen, "admin: bind %s: %s", addr->text, uv_strerror(rc));
        a->closing = true;
        uv_close((uv_handle_t *)&a->listener, admin_listener_closed);
        return NULL;
    }
    a->dash = dash_start(loop, &a->src);
    return a;
}

void admin_note_reload(struct admin *a, bool ok, const char *first_error) {
    if (a) dash_note_reload(a->dash, ok, first_error);
}

void admin_stop(struct admin *a) {
    if (!a || a->closing) return;
    a->closing = true;
    for (struct list_node *n = a->conns.next, *next; n != &a->conns; n = next) {
        next = n->next;
        admin_conn_close(container_of(n, struct admin_conn, link));
    }
    dash_stop(a->dash);
    a->dash = NULL;
    uv_close((uv_handle_t *)&a->listener, admin_listener_closed);
}
