/* stats: see stats.h. */
#include "ferry/stats.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "ferry/util.h"

const double stats_bucket_bounds[STATS_BUCKETS - 1] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                       0.25,  0.5,   1,    2.5,   10};

const char *const stats_reason_names[STATS_ERR_REASONS] = {"refused", "timeout", "addrnotavail",
                                                           "unreachable", "other"};

bool stats_label_eq(const char *a, const char *b) {
    return a == b || (a && b && strcmp(a, b) == 0);
}

struct stats_node *stats_node(struct stats *s, enum stats_kind kind, const char *name,
                              const char *name2) {
    return stats_node3(s, kind, name, name2, NULL);
}

struct stats_node *stats_node3(struct stats *s, enum stats_kind kind, const char *name,
                               const char *name2, const char *name3) {
    struct stats_node *head = atomic_load_explicit(&s->head, memory_order_relaxed);
    for (struct stats_node *n = head; n; n = n->next)
        if (n->kind == kind && stats_label_eq(n->name, name) && stats_label_eq(n->name2, name2) &&
            stats_label_eq(n->name3, name3))
            return n;
    struct stats_node *n = xcalloc(1, sizeof(*n));
    n->kind = kind;
    n->name = name ? xstrdup(name) : NULL;
    n->name2 = name2 ? xstrdup(name2) : NULL;
    n->name3 = name3 ? xstrdup(name3) : NULL;
    n->next = head;
    atomic_store_explicit(&s->head, n, memory_order_release);
    return n;
}

void stats_free(struct stats *s) {
    struct stats_node *n = atomic_load(&s->head);
    while (n) {
        struct stats_node *next = n->next;
        free(n->name);
        free(n->name2);
        free(n->name3);
        free(n);
        n = next;
    }
    atomic_store(&s->head, NULL);
}

void stats_request(struct stats_node *route, int status, uint64_t duration_us) {
    struct stats_route *r = &route->u.route;
    if (status >= 100 && status <= 599) stat_add(&r->codes[status - 100], 1);
    double secs = (double)duration_us / 1e6;
    size_t b = 0;
    while (b < STATS_BUCKETS - 1 && secs > stats_bucket_bounds[b]) b++;
    stat_add(&r->buckets[b], 1);
    stat_add(&r->duration_us, duration_us);
}

enum stats_connect_reason stats_reason_of(int uv_err) {
    switch (uv_err) {
    case UV_ECONNREFUSED: return STATS_ERR_REFUSED;
    case UV_ETIMEDOUT: return STATS_ERR_TIMEOUT;
    case UV_EADDRNOTAVAIL: return STATS_ERR_ADDRNOTAVAIL;
    case UV_EHOSTUNREACH:
    case UV_ENETUNREACH: return STATS_ERR_UNREACHABLE;
    default: return STATS_ERR_OTHER;
    }
}
