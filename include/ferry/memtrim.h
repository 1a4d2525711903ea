/* memtrim: gives memory back to the system when a burst is over.
 *
 * glibc returns freed heap memory to the system only from the top of the
 * heap. After a burst, the request buffers and exchanges it freed sit in
 * holes between the connections that stayed open, and keep their pages:
 * a proxy that once served a thousand large requests would go on holding
 * their memory while it idles. The workers count the bytes they free; the
 * main loop samples that count every MEMTRIM_PERIOD_MS and calls
 * malloc_trim(0) once a burst has ended (much freed since the last trim,
 * little in the last period). Steady load frees all the time and never
 * triggers it: a trim then would only hand back pages about to be reused.
 * Trimming runs on the main thread, off the request path; a worker that
 * allocates meanwhile waits for the arena lock, at most once per burst
 * (the debug log gives each trim's duration).
 *
 * memtrim_due() is the policy, pure, for unit tests; memtrim_start() runs
 * it on a loop. */
#ifndef FERRY_MEMTRIM_H
#define FERRY_MEMTRIM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "ferry/util.h"

#define MEMTRIM_PERIOD_MS 250
/* Freed since the last trim before one is worth its cost. */
#define MEMTRIM_MIN_FREED (4u << 20)
/* Freed in one period below which the burst counts as over. */
#define MEMTRIM_QUIET_FREED (256u << 10)

/* A count of bytes freed, written by one thread, read by any. */
struct memtrim_counter {
    atomic_uint_fast64_t bytes;
};

/* Owner thread only; costs a plain load and store. */
static inline void memtrim_note(struct memtrim_counter *c, uint64_t bytes) {
    atomic_store_explicit(&c->bytes,
                          atomic_load_explicit(&c->bytes, memory_order_relaxed) + bytes,
                          memory_order_relaxed);
}

static inline uint64_t memtrim_read(const struct memtrim_counter *c) {
    return atomic_load_explicit(&c->bytes, memory_order_relaxed);
}

struct memtrim_state {
    uint64_t last_total; /* the total at the previous sample */
    uint64_t at_trim;    /* the total at the last trim */
};

/* Given the total freed so far (monotonic), returns true when a trim is due
 * now, and records it as done. */
bool memtrim_due(struct memtrim_state *s, uint64_t total);

/* Samples TOTAL(ARG) every MEMTRIM_PERIOD_MS on LOOP and trims when due.
 * The timer does not keep the loop alive; memtrim_stop() closes it. */
struct memtrim;
struct memtrim *memtrim_start(uv_loop_t *loop, uint64_t (*total)(void *arg), void *arg)
    FERRY_MUSTCHECK;
void memtrim_stop(struct memtrim *m);

#endif
