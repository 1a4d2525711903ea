/* dashboard: GET / on the admin address, and the fields of /status?stats=1
 * the page polls.
 *
 * The page is src/dashboard.html, turned into a C array at build time
 * (src/dashboard_embed.cmake), which also computes the SHA-256 of its
 * one <style> and one <script> for the Content-Security-Policy: the page
 * may run exactly that script and nothing else, and fetch only from the
 * admin address itself.
 *
 * Sparklines need the past, and a page opened a minute ago must still show
 * five minutes: so the history is kept here, on the main loop. Every
 * DASH_STEP_MS a timer copies every route's summed counters (status
 * classes and latency buckets, cumulative) into a ring of DASH_POINTS + 1
 * snapshots per route; a point of a sparkline is the difference of two
 * neighbouring snapshots. The snapshot ring costs 8 KB a route, bounded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/config.h"
#include "ferry/errring.h"
#include "ferry/generation.h"
#include "ferry/health.h"
#include "ferry/ports.h"
#include "ferry/strbuf.h"
#include "ferry/worker.h"

#include "admin_internal.h"

#define DASH_STEP_MS 5000 /* between two snapshots of the history */
#define DASH_POINTS  60   /* points of a sparkline: 5 minutes */
#define DASH_WINDOW  12   /* points behind p50/p99 "now": the last minute */
#define DASH_RELOADS 10   /* reloads remembered */
#define DASH_CLASSES 5    /* 1xx .. 5xx */

/* Generated from src/dashboard.html (src/dashboard_embed.cmake). */
extern const unsigned char dash_page_data[];
extern const size_t dash_page_size;
extern const char dash_page_header_lines[];

/* One route's counters at one instant, cumulative. */
struct dash_snap {
    uint64_t cls[DASH_CLASSES]; /* responses by status class */
    uint64_t bk[STATS_BUCKETS]; /* durations, per bucket (not cumulative over buckets) */
};

/* The history of one route name (routes keep their counters across reloads
 * by name, and so does this). */
struct dash_series {
    struct dash_series *next;
    char *name;
    struct dash_snap snaps[DASH_POINTS + 1]; /* ring, oldest overwritten */
    unsigned head;                           /* slot of the next snapshot */
    unsigned count;                          /* snapshots held */
};

struct dash_reload {
    uint64_t time_ms; /* wall clock */
    bool ok;
    char error[256]; /* the first line of what went wrong; "" when ok */
};

struct dash {
    uv_timer_t timer; /* takes a snapshot every DASH_STEP_MS */
    struct admin_source src;
    struct dash_series *series;               /* every route name seen */
    uint64_t started_ms;                      /* wall clock at start */
    struct dash_reload reloads[DASH_RELOADS]; /* ring */
    unsigned rhead, rcount;
};

static uint64_t dash_wall_ms(void) {
    uv_timeval64_t tv;
    if (uv_gettimeofday(&tv) != 0) return 0;
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

/* --- the page ---------------------------------------------------------- */

const char *dash_page(size_t *len) {
    *len = dash_page_size;
    return (const char *)dash_page_data;
}

const char *dash_page_headers(void) {
    return dash_page_header_lines;
}

/* --- history ----------------------------------------------------------- */

static struct dash_snap dash_snap_of(const struct admin_source *src, const char *route) {
    struct admin_sum s = admin_sum_of(src, STATS_ROUTE, (struct admin_key){route, NULL, NULL},
                                      NVAL(struct stats_route));
    struct dash_snap snap = {0};
    for (int code = 0; code < STATS_CODES; code++)
        snap.cls[code / 100] += s.v[code];
    memcpy(snap.bk, s.v + STATS_CODES, sizeof(snap.bk));
    return snap;
}

static struct dash_series *dash_series_find(struct dash *d, const char *name) {
    for (struct dash_series *s = d->series; s; s = s->next)
        if (strcmp(s->name, name) == 0) return s;
    return NULL;
}

/* The snapshot AGO steps before the newest (0 = newest); NULL past the
 * oldest. */
static const struct dash_snap *dash_snap_at(const struct dash_series *s, unsigned ago) {
    if (ago >= s->count) return NULL;
    return &s->snaps[(s->head + DASH_POINTS + 1 - 1 - ago) % (DASH_POINTS + 1)];
}

static void dash_sample(struct dash *d) {
    struct admin_key *keys;
    size_t n = admin_keys_of(&d->src, STATS_ROUTE, &keys);
    for (size_t i = 0; i < n; i++) {
        struct dash_series *s = dash_series_find(d, keys[i].name);
        if (!s) {
            s = xcalloc(1, sizeof(*s));
            s->name = xstrdup(keys[i].name);
            s->next = d->series;
            d->series = s;
        }
        s->snaps[s->head] = dash_snap_of(&d->src, keys[i].name);
        s->head = (s->head + 1) % (DASH_POINTS + 1);
        if (s->count < DASH_POINTS + 1) s->count++;
    }
    free(keys);
}

static void dash_on_timer(uv_timer_t *t) {
    dash_sample(t->data);
}

struct dash *dash_start(uv_loop_t *loop, const struct admin_source *src) {
    struct dash *d = xcalloc(1, sizeof(*d));
    d->src = *src;
    d->started_ms = dash_wall_ms();
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    dash_sample(d); /* the first point of every sparkline is DASH_STEP_MS away */
    uv_timer_start(&d->timer, dash_on_timer, DASH_STEP_MS, DASH_STEP_MS);
    uv_unref((uv_handle_t *)&d->timer); /* never what keeps the process up */
    return d;
}

static void dash_closed(uv_handle_t *h) {
    struct dash *d = h->data;
    while (d->series) {
        struct dash_series *s = d->series;
        d->series = s->next;
        free(s->name);
        free(s);
    }
    free(d);
}

void dash_stop(struct dash *d) {
    if (d) uv_close((uv_handle_t *)&d->timer, dash_closed);
}

void dash_note_reload(struct dash *d, bool ok, const char *first_error) {
    if (!d) return;
    struct dash_reload *r = &d->reloads[d->rhead];
    r->time_ms = dash_wall_ms();
    r->ok = ok;
    snprintf(r->error, sizeof(r->error), "%s", ok || !first_error ? "" : first_error);
    char *nl = strchr(r->error, '\n');
    if (nl) *nl = '\0';
    d->rhead = (d->rhead + 1) % DASH_RELOADS;
    if (d->rcount < DASH_RELOADS) d->rcount++;
}

/* --- JSON -------------------------------------------------------------- */

/* S as a JSON string, quotes included. Stricter than admin_escaped: a
 * request id may carry any byte a header value allows, and the result must
 * stay valid JSON (bytes >= 0x80 are written as \u00XX, Latin-1). */
static void dash_str(struct strbuf *b, const char *s) {
    strbuf_adds(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            strbuf_printf(b, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            strbuf_printf(b, "\\u%04x", *p);
        else
            strbuf_add(b, (const char *)p, 1);
    }
    strbuf_adds(b, "\"");
}

/* The Q-quantile (0..1) of the durations between snapshots A (older) and
 * B, in ms, interpolated inside its bucket as Prometheus'
 * histogram_quantile() does; -1 when no request ended between them. */
static double dash_quantile(const struct dash_snap *a, const struct dash_snap *b, double q) {
    uint64_t d[STATS_BUCKETS], total = 0;
    for (int k = 0; k < STATS_BUCKETS; k++) {
        d[k] = b->bk[k] - (a ? a->bk[k] : 0);
        total += d[k];
    }
    if (!total) return -1;
    double rank = q * (double)total, cum = 0;
    for (int k = 0; k < STATS_BUCKETS; k++) {
        if (cum + (double)d[k] >= rank && d[k]) {
            if (k == STATS_BUCKETS - 1) return stats_bucket_bounds[k - 1] * 1000; /* +Inf */
            double lo = k ? stats_bucket_bounds[k - 1] : 0, hi = stats_bucket_bounds[k];
            return (lo + (hi - lo) * (rank - cum) / (double)d[k]) * 1000;
        }
        cum += (double)d[k];
    }
    return stats_bucket_bounds[STATS_BUCKETS - 2] * 1000;
}

static void dash_ms(struct strbuf *b, double ms) {
    if (ms < 0)
        strbuf_adds(b, "null");
    else
        strbuf_printf(b, "%.3g", ms);
}

/* One array of the history: per second rates of class CLS (-1: all
 * requests), or (CLS = -2, -3) p50 / p99 in ms, oldest point first. */
static void dash_series_array(struct strbuf *b, const struct dash_series *s, int what) {
    strbuf_adds(b, "[");
    for (unsigned i = s->count - 1; i >= 1; i--) { /* point i: snapshots i and i - 1 ago */
        const struct dash_snap *a = dash_snap_at(s, i), *z = dash_snap_at(s, i - 1);
        if (i != s->count - 1) strbuf_adds(b, ",");
        if (what <= -2) {
            dash_ms(b, dash_quantile(a, z, what == -2 ? 0.5 : 0.99));
            continue;
        }
        uint64_t n = 0;
        for (int c = 0; c < DASH_CLASSES; c++)
            if (what < 0 || what == c) n += z->cls[c] - a->cls[c];
        strbuf_printf(b, "%g", (double)n * 1000.0 / DASH_STEP_MS);
    }
    strbuf_adds(b, "]");
}

void dash_route_fields(struct strbuf *b, struct dash *d, const struct admin_source *src,
                       const struct config_route *r) {
    const struct config *cfg = (*src->gen)->cfg;
    struct dash_snap now = dash_snap_of(src, r->name);
    uint64_t total = 0;
    for (int c = 0; c < DASH_CLASSES; c++)
        total += now.cls[c];
    strbuf_adds(b, ",\"file\":");
    dash_str(b, cfg->file);
    strbuf_printf(b, ",\"requests\":%llu,\"status\":{", (unsigned long long)total);
    for (int c = 0; c < DASH_CLASSES; c++)
        strbuf_printf(b, "%s\"%dxx\":%llu", c ? "," : "", c + 1, (unsigned long long)now.cls[c]);
    strbuf_adds(b, "}");
    /* p50/p99 over the last minute: from the snapshot a minute old (or the
     * oldest there is) to now */
    const struct dash_series *s = d ? dash_series_find(d, r->name) : NULL;
    const struct dash_snap *old = NULL;
    if (s && s->count)
        old = dash_snap_at(s, s->count - 1 < DASH_WINDOW ? s->count - 1 : DASH_WINDOW);
    strbuf_adds(b, ",\"p50_ms\":");
    dash_ms(b, dash_quantile(old, &now, 0.5));
    strbuf_adds(b, ",\"p99_ms\":");
    dash_ms(b, dash_quantile(old, &now, 0.99));
    if (!s || s->count < 2) {
        strbuf_adds(b, ",\"history\":null");
        return;
    }
    static const struct {
        const char *key;
        int what;
    } arrays[] = {{"rate", -1}, {"2xx", 1},  {"3xx", 2}, {"4xx", 3},
                  {"5xx", 4},   {"p50", -2}, {"p99", -3}};
    strbuf_adds(b, ",\"history\":{");
    for (size_t i = 0; i < FERRY_ARRAY_LEN(arrays); i++) {
        strbuf_printf(b, "%s\"%s\":", i ? "," : "", arrays[i].key);
        dash_series_array(b, s, arrays[i].what);
    }
    strbuf_adds(b, "}");
}

void dash_listener_fields(struct strbuf *b, const struct admin_source *src,
                          const struct config_listener *l) {
    struct admin_sum s = admin_sum_of(src, STATS_LISTENER, (struct admin_key){l->name, NULL, NULL},
                                      NVAL(struct stats_listener));
    strbuf_printf(b, ",\"connections\":%llu,\"connections_total\":%llu",
                  (unsigned long long)s.v[1], (unsigned long long)s.v[0]);
}

void dash_upstream_fields(struct strbuf *b, const struct admin_source *src,
                          const struct config_upstream *u) {
    struct admin_sum s = admin_sum_of(src, STATS_UPSTREAM, (struct admin_key){u->name, NULL, NULL},
                                      NVAL(struct stats_upstream));
    strbuf_adds(b, ",\"connect_errors\":{");
    for (int r = 0; r < STATS_ERR_REASONS; r++)
        strbuf_printf(b, "%s\"%s\":%llu", r ? "," : "", stats_reason_names[r],
                      (unsigned long long)s.v[r]);
    strbuf_printf(b, "},\"held\":{\"served\":%llu,\"expired\":%llu}",
                  (unsigned long long)s.v[STATS_ERR_REASONS],
                  (unsigned long long)s.v[STATS_ERR_REASONS + 1]);
}

void dash_server_fields(struct strbuf *b, const struct admin_sum *sum, struct server_state *st) {
    strbuf_printf(b,
                  ",\"requests\":%llu,\"opened\":%llu,\"resolved\":", (unsigned long long)sum->v[1],
                  (unsigned long long)sum->v[0]);
    struct sockaddr_storage ss;
    char ip[INET6_ADDRSTRLEN] = "";
    if (st && health_address(st, &ss)) {
        if (ss.ss_family == AF_INET)
            uv_ip4_name((const struct sockaddr_in *)&ss, ip, sizeof(ip));
        else if (ss.ss_family == AF_INET6)
            uv_ip6_name((const struct sockaddr_in6 *)&ss, ip, sizeof(ip));
    }
    if (ip[0])
        dash_str(b, ip);
    else
        strbuf_adds(b, "null");
}

static void dash_errors(struct strbuf *b, const struct admin_source *src) {
    struct errring **rings = xcalloc(src->nworkers + 1, sizeof(*rings));
    for (unsigned w = 0; w < src->nworkers; w++)
        rings[w] = &src->workers[w].errors;
    struct errring_entry e[ERRRING_SIZE];
    size_t n = errring_merge(rings, src->nworkers, e, ERRRING_SIZE);
    free(rings);
    strbuf_adds(b, ",\"errors\":[");
    for (size_t i = n; i-- > 0;) { /* newest first */
        strbuf_printf(b, "%s{\"time\":%llu,\"status\":%d,\"route\":", i == n - 1 ? "" : ",",
                      (unsigned long long)e[i].time_ms, e[i].status);
        dash_str(b, e[i].route);
        strbuf_adds(b, ",\"upstream\":");
        dash_str(b, e[i].upstream);
        strbuf_adds(b, ",\"cause\":");
        dash_str(b, e[i].cause);
        strbuf_adds(b, ",\"rid\":");
        dash_str(b, e[i].rid);
        strbuf_adds(b, "}");
    }
    strbuf_adds(b, "]");
}

static void dash_reloads(struct strbuf *b, const struct dash *d, const struct admin_source *src) {
    strbuf_printf(b, ",\"reloads_ok\":%lu,\"reloads_error\":%lu,\"reloads\":[",
                  atomic_load(&src->rt->reloads_ok), atomic_load(&src->rt->reloads_error));
    for (unsigned i = 0; d && i < d->rcount; i++) { /* newest first */
        const struct dash_reload *r = &d->reloads[(d->rhead + DASH_RELOADS - 1 - i) % DASH_RELOADS];
        strbuf_printf(b, "%s{\"time\":%llu,\"ok\":%s,\"error\":", i ? "," : "",
                      (unsigned long long)r->time_ms, r->ok ? "true" : "false");
        if (r->ok)
            strbuf_adds(b, "null");
        else
            dash_str(b, r->error);
        strbuf_adds(b, "}");
    }
    strbuf_adds(b, "]");
}

void dash_tail(struct strbuf *b, struct dash *d, const struct admin_source *src) {
    strbuf_printf(b,
                  ",\"now\":%llu,\"started\":%llu,\"history_step_ms\":%d,"
                  "\"history_points\":%d",
                  (unsigned long long)dash_wall_ms(), (unsigned long long)(d ? d->started_ms : 0),
                  DASH_STEP_MS, DASH_POINTS);
    dash_errors(b, src);
    dash_reloads(b, d, src);
    const struct ports_sample *ps = ports_sample();
    strbuf_printf(b, ",\"ports\":{\"range\":%u,\"available\":%llu,\"sources\":[", ps->range,
                  (unsigned long long)ps->available);
    for (size_t i = 0; i < ps->nsources; i++) {
        strbuf_printf(b, "%s{\"source\":", i ? "," : "");
        dash_str(b, ps->sources[i].name);
        strbuf_printf(b, ",\"in_use\":%u}", ps->sources[i].in_use);
    }
    strbuf_adds(b, "]}");
}
