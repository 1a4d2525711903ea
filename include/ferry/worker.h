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
#include "ferry/errring.h"
#include "ferry/slab.h"
#include "ferry/stats.h"
#include "ferry/wheel.h"
#include "ferry/util.h"
#include "ferry/worker_ctx.h"

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

enum worker_command { WORKER_RUN = 0, WORKER_DRAIN, WORKER_FORCE_STOP };

struct worker {
    unsigned id;                       /* 0..n-1, for logs */
    struct runtime *rt;                /* shared state */
    uv_loop_t loop;                    /* owned; closed when the thread ends */
    struct worker_ctx ctx;             /* what its connections and listeners see */
    uv_thread_t thread;
    uv_async_t wakeup;                 /* main thread -> worker commands */
    uv_mutex_t wakeup_lock;            /* orders uv_async_send against closing wakeup,
                                        * and guards the reload hand-over below */
    atomic_int command;                /* enum worker_command, the latest wins */
    struct generation *pending_gen;    /* reload hand-over (under wakeup_lock) */
    int *pending_fds;                  /* its new listeners' sockets, -1 = keep (under lock) */
    uv_timer_t decay;                  /* lets unused buffers and slabs go, every second */
    struct listener **listeners;       /* nlisteners entries; NULL where closed */
    size_t nlisteners;
    bool stopping;                     /* the wakeup handle is closed: the loop is ending
                                        * (written under wakeup_lock) */
    struct stats stats;                /* this worker's counters; read by the admin endpoint */
    struct errring errors;             /* the last errors it answered itself; read by the admin */
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

/* Loop-thread only: the worker's listening socket for the listener named
 * like CL, or NULL. */
struct listener *worker_find_listener(struct worker *w, const struct config_listener *cl);

#endif
