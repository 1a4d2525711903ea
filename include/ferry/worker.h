/* worker: one thread, one libuv loop, and everything that loop owns: its
 * listening sockets, its connections, its upstream servers and (later) pools,
 * its buffer pool. Nothing here is shared with other workers except the
 * struct runtime they all point to, whose mutable fields are atomics.
 *
 * Start-up happens on the main thread (worker_init), the loop then runs on
 * the worker's own thread (worker_start). The main thread talks to a running
 * worker only through worker_drain() / worker_force_stop(), which set a
 * command and wake the loop with uv_async_send(). */
#ifndef FERRY_WORKER_H
#define FERRY_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#include "ferry/buffer.h"
#include "ferry/util.h"

struct config;
struct config_upstream;
struct listener;
struct route_table;
struct upstream;
struct worker;

/* Process-wide state shared by every worker. */
struct runtime {
    const struct config *cfg;          /* the running config; immutable */
    struct route_table **routes;       /* per listener (cfg->listeners order); NULL for tcp */
    atomic_uint connections;           /* downstream connections open, all workers */
    void (*on_worker_exit)(struct worker *w); /* called on the worker's thread as it ends */
    void *data;                        /* for the main thread's use */
};

enum worker_command { WORKER_RUN = 0, WORKER_DRAIN, WORKER_FORCE_STOP };

struct worker {
    unsigned id;                       /* 0..n-1, for logs */
    struct runtime *rt;                /* shared state */
    const struct config *cfg;          /* config this worker serves */
    uv_loop_t loop;                    /* owned; closed when the thread ends */
    uv_thread_t thread;
    uv_async_t wakeup;                 /* main thread -> worker commands */
    uv_mutex_t wakeup_lock;            /* orders uv_async_send against closing wakeup */
    atomic_int command;                /* enum worker_command, the latest wins */
    struct buffer_pool pool;           /* read buffers for every connection here */
    struct upstream **upstreams;       /* one per cfg->upstreams entry, same index */
    struct listener *listeners;        /* one per cfg->listeners entry, same index */
    struct list_node conns;            /* every live connection (conn.link) */
    size_t nconns;                     /* entries in that list */
    bool draining;                     /* listeners closed; exit when nconns hits 0 */
    uint64_t rid_seed;                 /* random at start: request ids differ across runs */
    uint64_t rid_counter;              /* request ids made by this worker */
    bool stopping;                     /* the wakeup handle is closed: the loop is ending
                                        * (written under wakeup_lock) */
};

/* LISTEN_FDS holds one descriptor per listener (cfg->listeners order); the
 * worker takes ownership of them. Returns 0 or a UV_E* code (logged). */
int worker_init(struct worker *w, unsigned id, struct runtime *rt, const int *listen_fds) FERRY_MUSTCHECK;
int worker_start(struct worker *w) FERRY_MUSTCHECK;
/* Thread-safe: stop accepting, exit once every connection has ended. */
void worker_drain(struct worker *w);
/* Thread-safe: close every connection now and exit. */
void worker_force_stop(struct worker *w);
/* Waits for the thread and frees what the worker owns. */
void worker_join(struct worker *w);

/* Loop-thread only. */
struct upstream *worker_upstream(struct worker *w, const struct config_upstream *cu);
/* The worker's list of live connections; conn.c owns the listed objects. */
void worker_conn_add(struct worker *w, struct list_node *link);
void worker_conn_remove(struct worker *w, struct list_node *link);

#endif
