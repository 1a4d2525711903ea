/* memtrim: malloc_trim(0) after a burst; see memtrim.h for the policy. */
#include "ferry/memtrim.h"

#include <malloc.h>
#include <stdlib.h>

#include "ferry/log.h"

bool memtrim_due(struct memtrim_state *s, uint64_t total) {
    uint64_t period = total - s->last_total;
    s->last_total = total;
    if (total - s->at_trim < MEMTRIM_MIN_FREED || period >= MEMTRIM_QUIET_FREED) return false;
    s->at_trim = total;
    return true;
}

struct memtrim {
    uv_timer_t timer;
    struct memtrim_state state;
    uint64_t (*total)(void *arg);
    void *arg;
};

static void memtrim_on_timer(uv_timer_t *t) {
    struct memtrim *m = t->data;
    uint64_t total = m->total(m->arg);
    if (!memtrim_due(&m->state, total)) return;
    uint64_t t0 = uv_hrtime();
    int released = malloc_trim(0);
    log_debug("memtrim: %s memory to the system in %.2f ms",
              released ? "returned" : "no", (double)(uv_hrtime() - t0) / 1e6);
}

struct memtrim *memtrim_start(uv_loop_t *loop, uint64_t (*total)(void *arg), void *arg) {
    struct memtrim *m = calloc(1, sizeof(*m));
    if (!m) return NULL;
    m->total = total;
    m->arg = arg;
    m->state.last_total = m->state.at_trim = total(arg);
    uv_timer_init(loop, &m->timer);
    m->timer.data = m;
    uv_timer_start(&m->timer, memtrim_on_timer, MEMTRIM_PERIOD_MS, MEMTRIM_PERIOD_MS);
    uv_unref((uv_handle_t *)&m->timer);
    return m;
}

static void memtrim_on_close(uv_handle_t *h) {
    free(h->data);
}

void memtrim_stop(struct memtrim *m) {
    if (m) uv_close((uv_handle_t *)&m->timer, memtrim_on_close);
}
