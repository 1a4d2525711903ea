/* slab: see slab.h. A slab is a SLAB_SIZE-aligned mapping, so the slab
 * of an object is its address rounded down; its header holds a free list
 * threaded through the free objects. */
#include "ferry/slab.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(FERRY_SLAB_MALLOC) || defined(__SANITIZE_ADDRESS__)
#define SLAB_USE_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLAB_USE_MALLOC 1
#endif
#endif

struct slab {
    struct list_node link; /* in pool->partial while it has a free object */
    void *free;            /* first free object; each holds the next */
    unsigned used;         /* objects handed out */
    unsigned fresh;        /* objects never handed out start here (index) */
};

#define SLAB_HEADER ((sizeof(struct slab) + 15) & ~(size_t)15)

bool slab_uses_malloc(void) {
#ifdef SLAB_USE_MALLOC
    return true;
#else
    return false;
#endif
}

void slab_pool_init(struct slab_pool *pool, size_t obj_size) {
    *pool = (struct slab_pool){.obj_size = (obj_size + 15) & ~(size_t)15};
    if (pool->obj_size < sizeof(void *)) pool->obj_size = 16;
    pool->per_slab = (unsigned)((SLAB_SIZE - SLAB_HEADER) / pool->obj_size);
    assert(pool->per_slab > 0);
    list_init(&pool->partial);
    list_init(&pool->empty);
}

#ifndef SLAB_USE_MALLOC
static struct slab *slab_of(const void *obj) {
    return (struct slab *)((uintptr_t)obj & ~(uintptr_t)(SLAB_SIZE - 1));
}

/* A SLAB_SIZE-aligned mapping: map twice the size, unmap the slack. */
static struct slab *slab_map(void) {
    size_t len = 2 * SLAB_SIZE;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    uintptr_t start = ((uintptr_t)p + SLAB_SIZE - 1) & ~(uintptr_t)(SLAB_SIZE - 1);
    size_t head = start - (uintptr_t)p;
    if (head) munmap(p, head);
    munmap((char *)start + SLAB_SIZE, SLAB_SIZE - head);
    return (struct slab *)start;
}

static void slab_unmap(struct slab_pool *pool, struct slab *s) {
    munmap(s, SLAB_SIZE);
    pool->nslabs--;
}
#endif

void *slab_alloc(struct slab_pool *pool) {
#ifdef SLAB_USE_MALLOC
    void *obj = calloc(1, pool->obj_size);
    if (obj) pool->in_use++;
    return obj;
#else
    struct slab *s;
    if (!list_empty(&pool->partial)) {
        s = container_of(pool->partial.next, struct slab, link);
    } else {
        if (!list_empty(&pool->empty)) {
            s = container_of(pool->empty.next, struct slab, link);
            list_remove(&s->link);
            if (--pool->nempty < pool->empty_low) pool->empty_low = pool->nempty;
        } else {
            if (!(s = slab_map())) return NULL;
            pool->nslabs++;
        }
        *s = (struct slab){0};
        list_push_front(&pool->partial, &s->link);
    }
    void *obj;
    if (s->free) {
        obj = s->free;
        s->free = *(void **)obj;
    } else { /* objects are carved in order, so untouched pages stay untouched */
        obj = (char *)s + SLAB_HEADER + (size_t)s->fresh++ * pool->obj_size;
    }
    memset(obj, 0, pool->obj_size);
    if (++s->used == pool->per_slab) list_remove(&s->link);
    pool->in_use++;
    return obj;
#endif
}

void slab_free(struct slab_pool *pool, void *obj) {
    if (!obj) return;
    assert(pool->in_use > 0);
    pool->in_use--;
#ifdef SLAB_USE_MALLOC
    free(obj);
#else
    struct slab *s = slab_of(obj);
    if (s->used-- == pool->per_slab) list_push_front(&pool->partial, &s->link);
    *(void **)obj = s->free;
    s->free = obj;
    if (s->used > 0) return;
    list_remove(&s->link); /* kept: slab_pool_decay() unmaps it if it stays unused */
    list_push_front(&pool->empty, &s->link);
    pool->nempty++;
#endif
}

#ifndef SLAB_USE_MALLOC
static void slab_unmap_list(struct slab_pool *pool, struct list_node *list, size_t n) {
    while (n-- > 0 && !list_empty(list)) {
        struct slab *s = container_of(list->prev, struct slab, link); /* the oldest */
        list_remove(&s->link);
        slab_unmap(pool, s);
    }
}
#endif

void slab_pool_decay(struct slab_pool *pool, size_t keep) {
#ifndef SLAB_USE_MALLOC
    size_t spare = pool->nempty > keep ? pool->nempty - keep : 0;
    size_t n = pool->empty_low < spare ? pool->empty_low : spare;
    slab_unmap_list(pool, &pool->empty, n);
    pool->nempty -= n;
#else
    (void)keep;
#endif
    pool->empty_low = pool->nempty;
}

void slab_pool_destroy(struct slab_pool *pool) {
    assert(pool->in_use == 0);
#ifndef SLAB_USE_MALLOC
    slab_unmap_list(pool, &pool->empty, SIZE_MAX);
    slab_unmap_list(pool, &pool->partial, SIZE_MAX);
    pool->nempty = 0;
#endif
}
