/* wheel: see wheel.h. */
#include "ferry/wheel.h"

static void wheel_on_tick(uv_timer_t *h);

void wheel_init(struct wheel *w, uv_loop_t *loop) {
    uv_timer_init(loop, &w->tick);
    w->tick.data = w;
    for (size_t i = 0; i < WHEEL_SLOTS; i++) list_init(&w->slots[i]);
    w->done = uv_now(loop) / WHEEL_TICK_MS;
    w->armed = 0;
}

void wheel_close(struct wheel *w) {
    uv_close((uv_handle_t *)&w->tick, NULL);
}

void wheel_timer_init(struct wheel_timer *t) {
    list_init(&t->link);
    t->due = 0;
    t->cb = NULL;
}

void wheel_stop(struct wheel *w, struct wheel_timer *t) {
    if (list_empty(&t->link)) return;
    list_remove(&t->link);
    w->armed--;
}

void wheel_start(struct wheel *w, struct wheel_timer *t, uint64_t ms, wheel_cb cb) {
    wheel_stop(w, t);
    uint64_t now = uv_now(w->tick.loop);
    if (w->armed == 0) {
        w->done = now / WHEEL_TICK_MS; /* nothing pending: skip the idle ticks */
        uv_timer_start(&w->tick, wheel_on_tick, WHEEL_TICK_MS, WHEEL_TICK_MS);
    }
    /* Saturate: a deadline past 2^64 ms means never, not a wrap into the
     * past (the config caps durations; this holds whoever calls). */
    t->due = ms > UINT64_MAX - now ? UINT64_MAX : now + ms;
    t->cb = cb;
    /* A timer waits in the slot of the first tick at or after its deadline,
     * so it never fires early; one due within this very tick goes to the
     * next slot so that it is not skipped. */
    uint64_t slot = t->due / WHEEL_TICK_MS + (t->due % WHEEL_TICK_MS != 0);
    if (slot <= w->done) slot = w->done + 1;
    list_push_front(&w->slots[slot % WHEEL_SLOTS], &t->link);
    w->armed++;
}

/* Fires what is due in SLOT; later revolutions stay. A callback may stop or
 * re-arm any timer, itself included, so the walk is over a detached list. */
static void wheel_run_slot(struct wheel *w, struct list_node *slot, uint64_t now) {
    struct list_node pending;
    list_init(&pending);
    if (list_empty(slot)) return;
    /* move the whole slot aside */
    pending.next = slot->next;
    pending.prev = slot->prev;
    pending.next->prev = &pending;
    pending.prev->next = &pending;
    list_init(slot);
    while (!list_empty(&pending)) {
        struct list_node *n = pending.next;
        struct wheel_timer *t = container_of(n, struct wheel_timer, link);
        list_remove(n);
        if (t->due > now) { /* a later revolution: back to its slot */
            list_push_front(slot, n);
            continue;
        }
        w->armed--;
        t->cb(t);
    }
}

static void wheel_on_tick(uv_timer_t *h) {
    struct wheel *w = h->data;
    uint64_t now = uv_now(h->loop);
    uint64_t target = now / WHEEL_TICK_MS;
    /* After a stall, catch up at most one revolution (it covers every slot). */
    if (target - w->done > WHEEL_SLOTS) w->done = target - WHEEL_SLOTS;
    while (w->done < target) {
        w->done++;
        wheel_run_slot(w, &w->slots[w->done % WHEEL_SLOTS], now);
    }
    if (w->armed == 0) uv_timer_stop(&w->tick);
}
