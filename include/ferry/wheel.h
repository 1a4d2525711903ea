/* wheel: a hashed timer wheel, one per worker, for per-connection timeouts.
 *
 * Every connection needs one timer (idle, header, read, linger), almost
 * always re-armed long before it fires. A libuv timer is a 152-byte handle
 * that must be closed; a wheel timer is a list node and a deadline, so ten
 * thousand idle connections cost 1.1 MB less. Timers fire on the tick after
 * their deadline: at most WHEEL_TICK_MS late, which no timeout here needs
 * finer. The tick runs only while some timer is armed. Loop thread only. */
#ifndef FERRY_WHEEL_H
#define FERRY_WHEEL_H

#include <stdint.h>
#include <uv.h>

#include "ferry/util.h"

#define WHEEL_TICK_MS 50
#define WHEEL_SLOTS 256 /* one revolution: 12.8 s; later deadlines wait in their slot */

struct wheel_timer;
typedef void (*wheel_cb)(struct wheel_timer *t);

struct wheel_timer {
    struct list_node link; /* in a slot while armed; points to itself otherwise */
    uint64_t due;          /* loop time (ms) at which it fires */
    wheel_cb cb;
};

struct wheel {
    uv_timer_t tick;                      /* runs while armed > 0 */
    struct list_node slots[WHEEL_SLOTS];  /* timers by (due / tick) % slots */
    uint64_t done;                        /* ticks processed up to (due / tick) */
    size_t armed;                         /* timers in the slots */
};

void wheel_init(struct wheel *w, uv_loop_t *loop);
/* Closes the tick handle; no timer may be armed. */
void wheel_close(struct wheel *w);

void wheel_timer_init(struct wheel_timer *t);
/* (Re)arms T to call CB after MS milliseconds. */
void wheel_start(struct wheel *w, struct wheel_timer *t, uint64_t ms, wheel_cb cb);
void wheel_stop(struct wheel *w, struct wheel_timer *t);

#endif
