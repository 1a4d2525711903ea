/* worker: one thread, one loop; see worker.h.
 *
 * Ending a worker is the mirror of starting it. DRAIN closes the listeners
 * and idle keep-alive connections; when the last connection has been freed,
 * the upstream pools are closed, then the wakeup handle, the loop runs out
 * of handles and uv_run returns. FORCE_STOP closes every connection first
 * and then ends the same way. After uv_run returns every handle has had its
 * close callback, so uv_loop_close must succeed; if it does not, something
 * leaked a handle and we say so.
 *
 * A reload swaps the worker's view: new connections (and new requests on
 * kept-alive ones) use the new generation; the old view is retired, its
 * idle pooled connections closed, and it is freed with its last
 * connection. Listening sockets whose address did not change are kept, so
 * no connection attempt is refused during a reload. */
#include "ferry/worker.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "ferry/config.h"
#include "ferry/conn.h"
#include "ferry/generation.h"
#include "ferry/listener.h"
#include "ferry/log.h"
#include "ferry/tls.h"
#include "ferry/upstream.h"

/* Enough free buffers to serve a burst without going back to malloc,
 * few enough (16 MiB) that an idle worker gives memory back. */
#define WORKER_FREE_BUFFERS 256
/* Kept through quiet times: enough for a few requests without malloc. */
#define WORKER_KEEP_BUFFERS 16
#define WORKER_DECAY_MS 1000

static void worker_on_wakeup(uv_async_t *a);
static void worker_on_decay(uv_timer_t *t);
static void worker_maybe_exit(struct worker *w);
static void worker_on_conn_gone(struct worker_ctx *ctx);
static void worker_run(void *arg);

/* --- views -------------------------------------------------------------- */

static struct view *view_new(struct worker *w, struct generation *gen) {
    const struct config *cfg = gen->cfg;
    struct view *v = xcalloc(1, sizeof(*v));
    generation_ref(gen);
    v->gen = gen;
    v->refs = 1;
    v->upstreams = xcalloc(cfg->nupstreams + 1, sizeof(*v->upstreams));
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        v->upstreams[i] = upstream_create(&cfg->upstreams[i], &w->loop, &w->stats);
        if (gen->tls && gen->tls->upstreams[i])
            upstream_set_tls(v->upstreams[i], gen->tls->upstreams[i], &w->ctx.tls);
    }
    v->route_stats = xcalloc(cfg->nroutes + 1, sizeof(*v->route_stats));
    for (size_t i = 0; i < cfg->nroutes; i++)
        v->route_stats[i] = stats_node(&w->stats, STATS_ROUTE, cfg->routes[i].name, NULL);
    v->route_stats[cfg->nroutes] = stats_node(&w->stats, STATS_ROUTE, "-", NULL);
    return v;
}

const struct config *view_config(const struct view *v) {
    return v->gen->cfg;
}

struct upstream *view_upstream(struct view *v, const struct config_upstream *cu) {
    return v->upstreams[cu - v->gen->cfg->upstreams];
}

void view_ref(struct view *v) {
    v->refs++;
}

void view_unref(struct view *v) {
    if (!v || --v->refs > 0) return;
    for (size_t i = 0; i < v->gen->cfg->nupstreams; i++) upstream_destroy(v->upstreams[i]);
    free(v->upstreams);
    free(v->route_stats);
    generation_unref(v->gen);
    free(v);
}

/* The view is no longer current: its pools close now, the rest with its
 * last connection. */
static void view_retire(struct view *v) {
    for (size_t i = 0; i < v->gen->cfg->nupstreams; i++) upstream_retire(v->upstreams[i]);
    view_unref(v);
}

/* --- start and commands ---------------------------------------------- */

int worker_init(struct worker *w, unsigned id, struct runtime *rt, struct generation *gen,
                const int *listen_fds) {
    const struct config *cfg = gen->cfg;
    *w = (struct worker){.id = id, .rt = rt};
    w->ctx.loop = &w->loop;
    w->ctx.stats = &w->stats;
    errring_init(&w->errors);
    w->ctx.errors = &w->errors;
    w->ctx.connections = &rt->connections;
    w->ctx.on_conn_gone = worker_on_conn_gone;
    int err = uv_loop_init(&w->loop);
    if (err < 0) return err;
    uv_async_init(&w->loop, &w->wakeup, worker_on_wakeup);
    uv_mutex_init(&w->wakeup_lock);
    w->wakeup.data = w;
    list_init(&w->ctx.conns);
    buffer_pool_init(&w->ctx.pool, WORKER_FREE_BUFFERS);
    tls_worker_init(&w->ctx.tls, &w->loop, &w->ctx.pool);
    h2_worker_init(&w->ctx.h2, &w->loop);
    atomic_init(&w->ctx.freed.bytes, 0);
    slab_pool_init(&w->ctx.conn_slab, conn_object_size());
    slab_pool_init(&w->ctx.exchange_slab, conn_exchange_size());
    wheel_init(&w->ctx.wheel, &w->loop);
    uv_timer_init(&w->loop, &w->decay);
    w->decay.data = w;
    uv_timer_start(&w->decay, worker_on_decay, WORKER_DECAY_MS, WORKER_DECAY_MS);
    uv_unref((uv_handle_t *)&w->decay);
    if (getrandom(&w->ctx.rid_seed, sizeof(w->ctx.rid_seed), 0) != sizeof(w->ctx.rid_seed))
        w->ctx.rid_seed = util_now_ms() ^ ((uint64_t)id << 48);
    w->ctx.rid_seed ^= (uint64_t)id << 56;
    w->ctx.wstats = stats_node(&w->stats, STATS_WORKER, NULL, NULL);
    w->ctx.view = view_new(w, gen);
    w->nlisteners = cfg->nlisteners;
    w->listeners = xcalloc(cfg->nlisteners + 1, sizeof(*w->listeners));
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        w->listeners[i] = listener_start(&w->ctx, &cfg->listeners[i], listen_fds[i]);
        if (!w->listeners[i]) return UV_EINVAL;
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

void worker_reload(struct worker *w, struct generation *gen, int *fds) {
    generation_ref(gen);
    uv_mutex_lock(&w->wakeup_lock);
    struct generation *old_gen = w->pending_gen;
    int *old_fds = w->pending_fds;
    w->pending_gen = gen;
    w->pending_fds = fds;
    if (!w->stopping) uv_async_send(&w->wakeup);
    uv_mutex_unlock(&w->wakeup_lock);
    if (old_gen) { /* a reload the worker had not picked up yet: superseded */
        for (size_t i = 0; i < old_gen->cfg->nlisteners; i++)
            if (old_fds[i] >= 0) close(old_fds[i]);
        free(old_fds);
        generation_unref(old_gen);
    }
}

struct listener *worker_find_listener(struct worker *w, const struct config_listener *cl) {
    for (size_t i = 0; i < w->nlisteners; i++) {
        struct listener *l = w->listeners[i];
        if (l && strcmp(l->cfg->name, cl->name) == 0) return l;
    }
    return NULL;
}

/* Keeps listening sockets whose address is unchanged, starts the new ones,
 * closes the ones the new config no longer has. */
static void worker_swap_listeners(struct worker *w, const struct config *cfg, const int *fds) {
    struct listener **next = xcalloc(cfg->nlisteners + 1, sizeof(*next));
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct config_listener *cl = &cfg->listeners[i];
        if (fds[i] >= 0) {
            next[i] = listener_start(&w->ctx, cl, fds[i]);
            continue;
        }
        for (size_t j = 0; j < w->nlisteners; j++) {
            struct listener *old = w->listeners[j];
            if (old && strcmp(old->cfg->bind.text, cl->bind.text) == 0) {
                old->cfg = cl;
                old->stats = stats_node(&w->stats, STATS_LISTENER, cl->name, NULL);
                next[i] = old;
                w->listeners[j] = NULL;
                break;
            }
        }
    }
    for (size_t j = 0; j < w->nlisteners; j++)
        if (w->listeners[j]) listener_close(w->listeners[j]);
    free(w->listeners);
    w->listeners = next;
    w->nlisteners = cfg->nlisteners;
}

static void worker_apply_reload(struct worker *w) {
    uv_mutex_lock(&w->wakeup_lock);
    struct generation *gen = w->pending_gen;
    int *fds = w->pending_fds;
    w->pending_gen = NULL;
    w->pending_fds = NULL;
    uv_mutex_unlock(&w->wakeup_lock);
    if (!gen) return;
    if (w->ctx.draining) { /* stopping anyway: the new config would serve nobody */
        for (size_t i = 0; i < gen->cfg->nlisteners; i++)
            if (fds[i] >= 0) close(fds[i]);
    } else {
        struct view *old = w->ctx.view;
        w->ctx.view = view_new(w, gen);
        worker_swap_listeners(w, gen->cfg, fds);
        view_retire(old);
        conn_after_reload(&w->ctx);
        log_debug("worker %u: now on config generation %u", w->id, gen->id);
    }
    free(fds);
    generation_unref(gen);
}

static void worker_maybe_exit(struct worker *w) {
    if (!w->ctx.draining || w->ctx.nconns > 0 || w->stopping) return;
    struct view *v = w->ctx.view;
    for (size_t i = 0; i < v->gen->cfg->nupstreams; i++) upstream_close_idle(v->upstreams[i]);
    wheel_close(&w->ctx.wheel);
    tls_worker_close(&w->ctx.tls);
    h2_worker_close(&w->ctx.h2);
    uv_close((uv_handle_t *)&w->decay, NULL);
    uv_mutex_lock(&w->wakeup_lock);
    w->stopping = true;
    uv_close((uv_handle_t *)&w->wakeup, NULL);
    uv_mutex_unlock(&w->wakeup_lock);
}

static void worker_on_wakeup(uv_async_t *a) {
    struct worker *w = a->data;
    worker_apply_reload(w);
    int cmd = atomic_load(&w->command);
    if (cmd == WORKER_RUN || w->stopping) return;
    if (!w->ctx.draining) {
        w->ctx.draining = true;
        for (size_t i = 0; i < w->nlisteners; i++) {
            if (w->listeners[i]) listener_close(w->listeners[i]);
            w->listeners[i] = NULL;
        }
        conn_close_idle(&w->ctx);
        log_debug("worker %u: draining %zu connections", w->id, w->ctx.nconns);
    }
    if (cmd == WORKER_FORCE_STOP && w->ctx.nconns > 0) {
        log_warn("worker %u: shutdown timeout: closing %zu connections", w->id, w->ctx.nconns);
        conn_close_all(&w->ctx, "shutdown timeout");
    }
    worker_maybe_exit(w);
}

static void worker_on_decay(uv_timer_t *t) {
    struct worker *w = t->data;
    buffer_pool_decay(&w->ctx.pool, WORKER_KEEP_BUFFERS);
    slab_pool_decay(&w->ctx.conn_slab, 1);
    slab_pool_decay(&w->ctx.exchange_slab, 1);
}

static void worker_on_conn_gone(struct worker_ctx *ctx) {
    worker_maybe_exit(container_of(ctx, struct worker, ctx));
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
    view_unref(w->ctx.view);
    w->ctx.view = NULL;
    if (w->pending_gen) { /* a reload that arrived as the worker ended */
        for (size_t i = 0; i < w->pending_gen->cfg->nlisteners; i++)
            if (w->pending_fds[i] >= 0) close(w->pending_fds[i]);
        free(w->pending_fds);
        generation_unref(w->pending_gen);
    }
    free(w->listeners);
    buffer_pool_destroy(&w->ctx.pool);
    slab_pool_destroy(&w->ctx.conn_slab);
    slab_pool_destroy(&w->ctx.exchange_slab);
    uv_mutex_destroy(&w->wakeup_lock);
    stats_free(&w->stats);
    errring_destroy(&w->errors);
}

uint64_t worker_freed_bytes(const struct worker *w) {
    return memtrim_read(&w->ctx.freed) + memtrim_read(&w->ctx.pool.freed);
}
