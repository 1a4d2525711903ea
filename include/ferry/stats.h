/* stats: counters and gauges, written by one worker, read by the scraper.
 *
 * Each worker owns an append-only list of nodes, one per labelled thing it
 * has counted (a listener, a route, an upstream server, itself). Nodes are
 * found or created by name when a config view is built, never on the
 * request path, and never freed before the process ends, so counters stay
 * monotonic across reloads. The request path increments through cached
 * node pointers with a relaxed load and store: one writer per counter,
 * so no locked instruction is needed, and the admin thread reads with
 * relaxed loads. A new node is published with a release store of the list
 * head, after which its names never change. */
#ifndef FERRY_STATS_H
#define FERRY_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef atomic_ullong stat_t;

static inline void stat_add(stat_t *c, uint64_t n) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void stat_sub(stat_t *c, uint64_t n) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - n,
                          memory_order_relaxed);
}

static inline uint64_t stat_get(const stat_t *c) {
    return atomic_load_explicit((stat_t *)c, memory_order_relaxed);
}

enum stats_kind {
    STATS_WORKER = 0, /* no labels: bytes in/out */
    STATS_LISTENER,   /* {listener} */
    STATS_ROUTE,      /* {route}: requests by code, durations */
    STATS_SERVER,     /* {upstream, server, address} */
    STATS_UPSTREAM,   /* {upstream}: connect errors by reason */
};

#define STATS_CODES 500 /* status 100..599 */
#define STATS_BUCKETS 12
extern const double stats_bucket_bounds[STATS_BUCKETS - 1]; /* seconds; last bucket is +Inf */

enum stats_connect_reason {
    STATS_ERR_REFUSED = 0,
    STATS_ERR_TIMEOUT,
    STATS_ERR_ADDRNOTAVAIL,
    STATS_ERR_UNREACHABLE,
    STATS_ERR_OTHER,
    STATS_ERR_REASONS,
};
extern const char *const stats_reason_names[STATS_ERR_REASONS];

struct stats_worker {
    stat_t bytes_in;  /* from clients */
    stat_t bytes_out; /* to clients */
};

#define STATS_TLS_REASONS 9 /* tls.h: enum tls_fail_reason */
#define STATS_H2_ABUSE 7    /* transport_h2.h: enum h2_abuse */

struct stats_listener {
    stat_t connections_total;
    stat_t connections_active;
    stat_t tls_handshake_errors[STATS_TLS_REASONS];
    stat_t h2_connections;           /* connections that became HTTP/2 */
    stat_t h2_abuse[STATS_H2_ABUSE]; /* HTTP/2 connections ended with ENHANCE_YOUR_CALM */
};

struct stats_route {
    stat_t codes[STATS_CODES];     /* requests by status code */
    stat_t buckets[STATS_BUCKETS]; /* not cumulative here; the scraper sums */
    stat_t duration_us;            /* sum of durations */
};

struct stats_server {
    stat_t opened;   /* connections opened */
    stat_t requests; /* requests sent */
    stat_t open;     /* connections open, idle ones included (gauge) */
    stat_t idle;     /* connections idle in the pool (gauge) */
};

struct stats_upstream {
    stat_t connect_errors[STATS_ERR_REASONS];
    stat_t held_served;  /* held requests that found a server */
    stat_t held_expired; /* held requests answered 502/503 after `hold` */
};

struct stats_node {
    struct stats_node *next;
    enum stats_kind kind;
    char *name;  /* listener, route or upstream name; NULL for STATS_WORKER */
    char *name2; /* server as written for STATS_SERVER */
    char *name3; /* STATS_SERVER: the address it resolved to (one node per address) */
    union {
        struct stats_worker worker;
        struct stats_listener listener;
        struct stats_route route;
        struct stats_server server;
        struct stats_upstream upstream;
    } u;
};

struct stats {
    _Atomic(struct stats_node *) head;
};

/* Owner thread only: the node for (KIND, NAME, NAME2), created zeroed the
 * first time. */
struct stats_node *stats_node(struct stats *s, enum stats_kind kind, const char *name,
                              const char *name2);
/* The same with a third label (STATS_SERVER's address). */
struct stats_node *stats_node3(struct stats *s, enum stats_kind kind, const char *name,
                               const char *name2, const char *name3);
void stats_free(struct stats *s);

/* Two labels of a node are the same: both absent (NULL) or equal strings. */
bool stats_label_eq(const char *a, const char *b);

/* Records one finished request on ROUTE's node. */
void stats_request(struct stats_node *route, int status, uint64_t duration_us);

enum stats_connect_reason stats_reason_of(int uv_err);

#endif
