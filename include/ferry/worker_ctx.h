/* worker_ctx: what a worker lends the connections and listeners on its loop.
 *
 * A connection needs a loop, buffers, its slab, the timer wheel, counters
 * and the config view that is current; it has no business with the
 * worker's thread, its command mailbox or its reload hand-over. So it sees
 * this, not struct worker: the worker owns a worker_ctx (embedded) and is
 * the only code that changes `view` and `draining`. Everything here belongs
 * to one loop thread, except `connections`, which all workers share.
 *
 * The worker learns that its last connection has gone through
 * `on_conn_gone` (it may then exit), never by a connection reaching into
 * it. */
#ifndef FERRY_WORKER_CTX_H
#define FERRY_WORKER_CTX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ferry/buffer.h"
#include "ferry/memtrim.h"
#include "ferry/slab.h"
#include "ferry/transport_h2.h"
#include "ferry/transport_tls.h"
#include "ferry/util.h"
#include "ferry/wheel.h"

struct config;
struct config_upstream;
struct errring;
struct generation;
struct stats;
struct stats_node;
struct upstream;

/* A worker's view of one generation: the generation plus this worker's
 * upstream objects built from it. Connections hold a reference for their
 * lifetime, so a reload never pulls the config or an upstream from under a
 * request in flight; a retired view's pools are closed at once and the view
 * is freed with its last connection. */
struct view {
    struct generation *gen;            /* holds one reference */
    struct upstream **upstreams;       /* one per gen->cfg->upstreams entry, same index */
    struct stats_node **route_stats;   /* one per route, same index; last: no route ("-") */
    unsigned refs;                     /* connections using it, +1 while current */
};

struct worker_ctx {
    uv_loop_t *loop;                   /* the worker's */
    struct buffer_pool pool;           /* read and write buffers of every connection here */
    struct slab_pool conn_slab;        /* every connection object here */
    struct slab_pool exchange_slab;    /* every HTTP exchange here */
    struct wheel wheel;                /* every connection's timeout */
    struct tls_worker tls;             /* what TLS transports here share */
    struct h2_worker h2;               /* what HTTP/2 streams here share */
    struct stats *stats;               /* the worker's counters (listeners add theirs) */
    struct stats_node *wstats;         /* its unlabelled node (bytes in/out) */
    struct errring *errors;            /* the worker's ring of errors ferry answered itself */
    struct view *view;                 /* current config: new connections and requests use it */
    atomic_uint *connections;          /* downstream connections open, all workers */
    struct memtrim_counter freed;      /* connection-side memory given back (bytes) */
    struct list_node conns;            /* every live connection (conn.link) */
    size_t nconns;                     /* entries in conns */
    unsigned held;                     /* requests waiting out `hold` now */
    uint64_t rid_seed;                 /* random at start, worker id mixed in */
    uint64_t rid_counter;              /* request ids made here */
    bool draining;                     /* stopping: no keep-alive, no new connections */
    void (*on_conn_gone)(struct worker_ctx *ctx); /* after a connection left `conns` */
};

/* Loop-thread only. */
struct upstream *view_upstream(struct view *v, const struct config_upstream *cu);
void view_ref(struct view *v);
void view_unref(struct view *v);
const struct config *view_config(const struct view *v);

#endif
