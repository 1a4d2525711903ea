/* worker: one thread, one libuv loop, and everything that loop owns: its
 * listening sockets, its connections, its upstream servers and pools, its
 * buffer pool. Nothing here is shared with other workers except the
 * struct runtime they all point to (atomics) and the read-only generation.
 *
 * Start-up happens on the main thread (worker_init), the loop then runs on
 * the worker's own thread (worker_start). The main thread talks to a running
 * worker only through worker_drain(), worker_force_stop() and
 * worker_reload(), which leave a command and wake the loop with
 * uv_async_send(). */
#ifndef FERRY_WORKER_H
#define FERRY_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#include "ferry/buffer.h"
#include "ferry/slab.h"
#include "ferry/stats.h"
#include "ferry/wheel.h"
#include "ferry/util.h"

struct config;
struct config_listener;
struct config_upstream;
struct generation;
struct listener;
struct upstream;
struct worker;

/* Process-wide state shared by every worker. */
struct runtime {
    atomic_uint connections;           /* downstream connections open, all workers */
    atomic_ulong reloads_ok;           /* SIGHUP reloads applied */
    atomic_ulong reloads_error;        /* SIGHUP reloads refused (invalid file, bind failure) */
    void (*on_worker_exit)(struct worker *w); /* called on the worker's thread as it ends */
    void *data;                        /* for the main thread's use */
};

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

enum worker_command { WORKER_RUN = 0, WORKER_DRAIN, WORKER_FORCE_STOP };

struct worker {
    unsigned id;                       /* 0..n-1, for logs */
    struct runtime *rt;                /* shared state */
    struct view *view;                 /* current config view: new connections use it */
    uv_loop_t loop;                    /* owned; closed when the thread ends */
    uv_thread_t thread;
    uv_async_t wakeup;                 /* main thread -> worker commands */
    uv_mutex_t wakeup_lock;            /* orders uv_async_send against closing wakeup,
                                        * and guards the reload hand-over below */
    atomic_int command;                /* enum worker_command, the latest wins */
    struct generation *pending_gen;    /* reload hand-over (under wakeup_lock) */
    int *pending_fds;                  /* its new listeners' sockets, -1 = keep (under lock) */
    struct buffer_pool pool;           /* read buffers for every connection here */
    struct slab_pool conn_slab;        /* every connection object here */
    struct slab_pool exchange_slab;    /* every HTTP exchange here */
    struct memtrim_counter freed;      /* relays freed (bytes) */
    uv_timer_t decay;                  /* lets unused buffers and slabs go, every second */
    struct wheel wheel;                /* every connection's timeout */
    struct listener **listeners;       /* nlisteners entries; NULL where closed */
    size_t nlisteners;
    struct list_node conns;            /* every live connection (conn.link) */
    size_t nconns;                     /* entries in that list */
    bool draining;                     /* listeners closed; exit when nconns hits 0 */
    bool stopping;                     /* the wakeup handle is closed: the loop is ending
                                        * (written under wakeup_lock) */
    struct stats stats;                /* this worker's counters; read by the admin endpoint */
    struct stats_node *wstats;         /* its unlabelled node (bytes in/out) */
    unsigned held;                     /* requests waiting out `hold` now */
    uint64_t rid_seed;                 /* random at start: request ids differ across runs */
    uint64_t rid_counter;              /* request ids made by this worker */
};

/* GEN gains a reference held by the worker. LISTEN_FDS holds one descriptor
 * per listener (cfg->listeners order); the worker takes them. Returns 0 or a
 * UV_E* code (logged). */
int worker_init(struct worker *w, unsigned id, struct runtime *rt, struct generation *gen,
                const int *listen_fds) FERRY_MUSTCHECK;
int worker_start(struct worker *w) FERRY_MUSTCHECK;
/* Thread-safe: stop accepting, exit once every connection has ended. */
void worker_drain(struct worker *w);
/* Thread-safe: close every connection now and exit. */
void worker_force_stop(struct worker *w);
/* Thread-safe: switch to GEN (a reference is taken). FDS[i] is a new socket
 * for GEN's listener i, or -1 when the worker already listens on that
 * address; the worker takes FDS (an array from malloc). */
void worker_reload(struct worker *w, struct generation *gen, int *fds);
/* Thread-safe: bytes the worker has given back to malloc so far. */
uint64_t worker_freed_bytes(const struct worker *w);
/* Waits for the thread and frees what the worker owns. */
void worker_join(struct worker *w);

/* Loop-thread only. */
struct upstream *view_upstream(struct view *v, const struct config_upstream *cu);
void view_ref(struct view *v);
void view_unref(struct view *v);
const struct config *view_config(const struct view *v);
/* The worker's listening socket for the listener named like CL, or NULL. */
struct listener *worker_find_listener(struct worker *w, const struct config_listener *cl);

/* The worker's list of live connections; conn.c owns the listed objects. */
void worker_conn_add(struct worker *w, struct list_node *link);
void worker_conn_remove(struct worker *w, struct list_node *link);

#endif
