/* buffer: a per-worker pool of fixed-size byte buffers.
 *
 * Reads take a buffer in libuv's alloc callback and give it back as soon as
 * its bytes have been written to the other side, so an idle connection holds
 * no buffer at all. The pool keeps up to `max_free` returned buffers for
 * reuse and frees the rest, so a burst does not pin its peak memory forever.
 * How many buffers are in use at once is bounded by the callers: a pipe
 * stops reading once the peer's write queue is above its high-water mark.
 * A pool belongs to one loop thread and is never shared. */
#ifndef FERRY_BUFFER_H
#define FERRY_BUFFER_H

#include <stddef.h>

#include "ferry/memtrim.h"
#include "ferry/util.h"

/* Large enough that a bulk transfer costs few syscalls, small enough that
 * a thousand busy connections stay in tens of MiB. */
#define BUFFER_SIZE (64 * 1024)

struct buffer_pool {
    void **free_list; /* returned buffers, reused LIFO (cache-warm) */
    size_t nfree;     /* entries in free_list */
    size_t max_free;  /* capacity of free_list */
    size_t in_use;    /* handed out and not yet returned */
    size_t low_water; /* fewest free at once since the last decay */
    struct memtrim_counter freed; /* bytes given back to malloc */
};

void buffer_pool_init(struct buffer_pool *pool, size_t max_free);
/* Frees every cached buffer. All buffers must have been returned. */
void buffer_pool_destroy(struct buffer_pool *pool);

/* Returns a BUFFER_SIZE-byte buffer, or NULL when memory is exhausted. */
char *buffer_get(struct buffer_pool *pool) FERRY_MUSTCHECK;
/* Returns BUF to the pool; NULL is ignored. */
void buffer_put(struct buffer_pool *pool, char *buf);
/* Frees the cached buffers that no one needed since the last call (the
 * fewest that sat free at once), keeping at least KEEP. Called every second
 * or so, it lets a burst's buffers go while steady load keeps its own. */
void buffer_pool_decay(struct buffer_pool *pool, size_t keep);

#endif
