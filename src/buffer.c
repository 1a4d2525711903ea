/* buffer: fixed-size buffer pool; see buffer.h for the policy. */
#include "ferry/buffer.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

void buffer_pool_init(struct buffer_pool *pool, size_t max_free) {
    pool->free_list = xcalloc(max_free ? max_free : 1, sizeof(void *));
    pool->nfree = 0;
    pool->max_free = max_free;
    pool->in_use = 0;
    pool->low_water = 0;
    atomic_init(&pool->freed.bytes, 0);
}

void buffer_pool_destroy(struct buffer_pool *pool) {
    assert(pool->in_use == 0);
    for (size_t i = 0; i < pool->nfree; i++) free(pool->free_list[i]);
    free(pool->free_list);
    pool->free_list = NULL;
    pool->nfree = 0;
}

char *buffer_get(struct buffer_pool *pool) {
    char *buf = pool->nfree ? pool->free_list[--pool->nfree] : malloc(BUFFER_SIZE);
    if (pool->nfree < pool->low_water) pool->low_water = pool->nfree;
    if (buf) pool->in_use++;
    return buf;
}

void buffer_put(struct buffer_pool *pool, char *buf) {
    if (!buf) return;
    assert(pool->in_use > 0);
    pool->in_use--;
    if (pool->nfree < pool->max_free)
        pool->free_list[pool->nfree++] = buf;
    else {
        free(buf);
        memtrim_note(&pool->freed, BUFFER_SIZE);
    }
}

void buffer_pool_decay(struct buffer_pool *pool, size_t keep) {
    size_t spare = pool->nfree > keep ? pool->nfree - keep : 0;
    size_t n = pool->low_water < spare ? pool->low_water : spare;
    /* The oldest (coldest) entries are at the bottom of the stack. */
    for (size_t i = 0; i < n; i++) free(pool->free_list[i]);
    memmove(pool->free_list, pool->free_list + n, (pool->nfree - n) * sizeof(void *));
    pool->nfree -= n;
    pool->low_water = pool->nfree;
    if (n) memtrim_note(&pool->freed, (uint64_t)n * BUFFER_SIZE);
}
