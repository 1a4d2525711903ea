/* slab: fixed-size objects packed into 64 KiB pages of their own.
 *
 * Connections live for minutes; the buffers and exchanges a request uses
 * live for microseconds. From one malloc heap, each connection ends up
 * next to the holes its first request left, and those holes keep their
 * pages resident: with ten thousand idle connections that was a quarter of
 * their memory. Connections and exchanges come from slabs of their own
 * instead, densely packed, and a slab that empties goes back to the system
 * at once (one is kept, so that one object coming and going costs no
 * syscall). A pool belongs to one loop thread.
 *
 * Under AddressSanitizer every object is a calloc() of its own, so that
 * use-after-free is still caught. */
#ifndef FERRY_SLAB_H
#define FERRY_SLAB_H

#include <stddef.h>

#include "ferry/util.h"

#define SLAB_SIZE (64 * 1024)

struct slab;

struct slab_pool {
    size_t obj_size;          /* rounded up to 16 */
    unsigned per_slab;        /* objects in one slab */
    struct list_node partial; /* slabs with at least one free object */
    struct slab *spare;       /* one fully free slab kept for reuse, or NULL */
    size_t nslabs;            /* slabs mapped, spare included */
    size_t in_use;            /* objects handed out */
};

void slab_pool_init(struct slab_pool *pool, size_t obj_size);
/* Unmaps every slab. Every object must have been freed. */
void slab_pool_destroy(struct slab_pool *pool);

/* A zeroed object, or NULL when memory is exhausted. */
void *slab_alloc(struct slab_pool *pool) FERRY_MUSTCHECK;
/* OBJ came from slab_alloc(POOL); NULL is ignored. */
void slab_free(struct slab_pool *pool, void *obj);

#endif
