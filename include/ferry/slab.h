/* slab: fixed-size objects packed into 64 KiB pages of their own.
 *
 * Connections live for minutes; the buffers and exchanges a request uses
 * live for microseconds. From one malloc heap, each connection ends up
 * next to the holes its first request left, and those holes keep their
 * pages resident: with ten thousand idle connections that was a quarter of
 * their memory. Connections and exchanges come from slabs of their own
 * instead, densely packed. A slab that empties is kept for reuse; the ones
 * that stayed unused for a whole decay period (a second) go back to the
 * system, so a burst's slabs are returned while steady load, whose
 * objects come and go across slab boundaries all the time, maps nothing.
 * A pool belongs to one loop thread.
 *
 * Under AddressSanitizer, or built with FERRY_SLAB_MALLOC (valgrind runs),
 * every object is a calloc() of its own, so that use-after-free is still
 * caught. */
#ifndef FERRY_SLAB_H
#define FERRY_SLAB_H

#include <stdbool.h>
#include <stddef.h>

#include "ferry/util.h"

#define SLAB_SIZE (64 * 1024)

struct slab;

struct slab_pool {
    size_t obj_size;          /* rounded up to 16 */
    unsigned per_slab;        /* objects in one slab */
    struct list_node partial; /* slabs with at least one free object, none in use */
    struct list_node empty;   /* slabs with no object in use, kept for reuse */
    size_t nempty;            /* entries in `empty` */
    size_t empty_low;         /* fewest empty at once since the last decay */
    size_t nslabs;            /* slabs mapped, empty ones included */
    size_t in_use;            /* objects handed out */
};

/* True when objects are plain callocs (see above): no slabs to count. */
bool slab_uses_malloc(void);

void slab_pool_init(struct slab_pool *pool, size_t obj_size);
/* Unmaps every slab. Every object must have been freed. */
void slab_pool_destroy(struct slab_pool *pool);

/* A zeroed object, or NULL when memory is exhausted. */
void *slab_alloc(struct slab_pool *pool) FERRY_MUSTCHECK;
/* OBJ came from slab_alloc(POOL); NULL is ignored. */
void slab_free(struct slab_pool *pool, void *obj);
/* Unmaps the empty slabs that no allocation needed since the last call,
 * keeping at least KEEP empty ones. */
void slab_pool_decay(struct slab_pool *pool, size_t keep);

#endif
