/* worker: one thread, one loop; see worker.h.
 *
 * Ending a worker is the mirror of starting it. DRAIN closes the listeners;
 * when the last connection has been freed, the wakeup handle is closed, the
 * loop runs out of handles and uv_run returns. FORCE_STOP closes every
 * connection first and then ends the same way. After uv_run returns every
 * handle has had its close callback, so uv_loop_close must succeed; if it
 * does not, something leaked a handle and we say so. */
#include "ferry/worker.h"

#include <stdlib.h>
#include <sys/random.h>

#include "ferry/config.h"
#include "ferry/conn.h"
#include "ferry/listener.h"
#include "ferry/log.h"
#include "ferry/upstream.h"

/* Enough free buffers to serve a burst without going back to malloc,
 * few enough (16 MiB) that an idle worker gives memory back. */
#define WORKER_FREE_BUFFERS 256

static void worker_on_wakeup(uv_async_t *a);
static void worker_maybe_exit(struct worker *w);
static void worker_run(void *arg);

int worker_init(struct worker *w, unsigned id, struct runtime *rt, const int *listen_fds) {
    const struct config *cfg = rt->cfg;
    *w = (struct worker){.id = id, .rt = rt, .cfg = cfg};
    int err = uv_loop_init(&w->loop);
    if (err < 0) return err;
    uv_async_init(&w->loop, &w->wakeup, worker_on_wakeup);
    uv_mutex_init(&w->wakeup_lock);
    w->wakeup.data = w;
    list_init(&w->conns);
    buffer_pool_init(&w->pool, WORKER_FREE_BUFFERS);
    if (getrandom(&w->rid_seed, sizeof(w->rid_seed), 0) != sizeof(w->rid_seed))
        w->rid_seed = util_now_ms() ^ ((uint64_t)id << 48);
    w->upstreams = xcalloc(cfg->nupstreams, sizeof(*w->upstreams));
    for (size_t i = 0; i < cfg->nupstreams; i++)
        w->upstreams[i] = upstream_create(&cfg->upstreams[i], &w->loop);
    w->listeners = xcalloc(cfg->nlisteners, sizeof(*w->listeners));
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        err = listener_start(&w->listeners[i], w, &cfg->listeners[i], listen_fds[i]);
        if (err < 0) return err;
    }
    return 0;
}

int worker_start(struct worker *w) {
    return uv_thread_create(&w->thread, worker_run, w);
}

/* A worker that has already ended closed its wakeup handle; sending to it
 * then would touch a dead loop, hence the lock and the `stopping` check. */
static void worker_wake(struct worker *w) {
    uv_mutex_lock(&w->wakeup_lock);
    if (!w->stopping) uv_async_send(&w->wakeup);
    uv_mutex_unlock(&w->wakeup_lock);
}

void worker_drain(struct worker *w) {
    int expected = WORKER_RUN;
    atomic_compare_exchange_strong(&w->command, &expected, WORKER_DRAIN);
    worker_wake(w);
}

void worker_force_stop(struct worker *w) {
    atomic_store(&w->command, WORKER_FORCE_STOP);
    worker_wake(w);
}

struct upstream *worker_upstream(struct worker *w, const struct config_upstream *cu) {
    return w->upstreams[cu - w->cfg->upstreams];
}

static void worker_maybe_exit(struct worker *w) {
    if (!w->draining || w->nconns > 0 || w->stopping) return;
    for (size_t i = 0; i < w->cfg->nupstreams; i++) upstream_close_idle(w->upstreams[i]);
    uv_mutex_lock(&w->wakeup_lock);
    w->stopping = true;
    uv_close((uv_handle_t *)&w->wakeup, NULL);
    uv_mutex_unlock(&w->wakeup_lock);
}

static void worker_on_wakeup(uv_async_t *a) {
    struct worker *w = a->data;
    int cmd = atomic_load(&w->command);
    if (cmd == WORKER_RUN || w->stopping) return;
    if (!w->draining) {
        w->draining = true;
        for (size_t i = 0; i < w->cfg->nlisteners; i++) listener_close(&w->listeners[i]);
        conn_close_idle(w);
        log_debug("worker %u: draining %zu connections", w->id, w->nconns);
    }
    if (cmd == WORKER_FORCE_STOP && w->nconns > 0) {
        log_warn("worker %u: shutdown timeout: closing %zu connections", w->id, w->nconns);
        conn_close_all(w, "shutdown timeout");
    }
    worker_maybe_exit(w);
}

void worker_conn_add(struct worker *w, struct list_node *link) {
    list_push_front(&w->conns, link);
    w->nconns++;
}

void worker_conn_remove(struct worker *w, struct list_node *link) {
    list_remove(link);
    w->nconns--;
    worker_maybe_exit(w);
}

static void worker_on_leftover(uv_handle_t *h, void *arg) {
    FERRY_UNUSED(arg);
    log_error("worker: handle %p of type %s still open at exit", (void *)h,
              uv_handle_type_name(h->type));
}

static void worker_run(void *arg) {
    struct worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&w->loop) != 0) uv_walk(&w->loop, worker_on_leftover, NULL);
    if (w->rt->on_worker_exit) w->rt->on_worker_exit(w);
}

void worker_join(struct worker *w) {
    uv_thread_join(&w->thread);
    for (size_t i = 0; i < w->cfg->nupstreams; i++) upstream_destroy(w->upstreams[i]);
    free(w->upstreams);
    free(w->listeners);
    buffer_pool_destroy(&w->pool);
    uv_mutex_destroy(&w->wakeup_lock);
}
