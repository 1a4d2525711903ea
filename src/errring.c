/* errring: see errring.h. */
#include "ferry/errring.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/util.h"

/* The order in which errors were recorded, over every worker: two errors in
 * the same millisecond still come out in the order they happened. */
static atomic_ullong errring_seq;

void errring_init(struct errring *r) {
    memset(r->e, 0, sizeof(r->e));
    r->next = r->count = 0;
    uv_mutex_init(&r->lock);
}

void errring_destroy(struct errring *r) {
    uv_mutex_destroy(&r->lock);
}

static void copy_field(char *dst, size_t size, const char *src) {
    snprintf(dst, size, "%s", src && *src ? src : "-");
}

void errring_add(struct errring *r, uint64_t time_ms, int status, const char *route,
                 const char *upstream, const char *cause, const char *rid) {
    struct errring_entry e;
    if (!time_ms) {
        uv_timeval64_t tv;
        time_ms = uv_gettimeofday(&tv) == 0
                      ? (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u
                      : 0;
    }
    e.time_ms = time_ms;
    e.seq = atomic_fetch_add_explicit(&errring_seq, 1, memory_order_relaxed);
    e.status = status;
    copy_field(e.route, sizeof(e.route), route);
    copy_field(e.upstream, sizeof(e.upstream), upstream);
    copy_field(e.cause, sizeof(e.cause), cause);
    copy_field(e.rid, sizeof(e.rid), rid);
    uv_mutex_lock(&r->lock);
    r->e[r->next] = e;
    r->next = (r->next + 1) % ERRRING_SIZE;
    if (r->count < ERRRING_SIZE) r->count++;
    uv_mutex_unlock(&r->lock);
}

static int entry_cmp(const void *x, const void *y) {
    const struct errring_entry *a = x, *b = y;
    if (a->time_ms != b->time_ms) return a->time_ms < b->time_ms ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Copies each ring whole under its own lock, sorts the union and keeps the
 * tail: at most nrings * 50 entries, on the admin's thread, off the
 * request path. */
size_t errring_merge(struct errring *const *rings, size_t nrings, struct errring_entry *out,
                     size_t max) {
    if (max > ERRRING_SIZE) max = ERRRING_SIZE;
    if (!nrings || !max) return 0;
    struct errring_entry *all = xmalloc(nrings * ERRRING_SIZE * sizeof(*all));
    size_t n = 0;
    for (size_t i = 0; i < nrings; i++) {
        struct errring *r = rings[i];
        uv_mutex_lock(&r->lock);
        unsigned first = (r->next + ERRRING_SIZE - r->count) % ERRRING_SIZE;
        for (unsigned k = 0; k < r->count; k++)
            all[n++] = r->e[(first + k) % ERRRING_SIZE];
        uv_mutex_unlock(&r->lock);
    }
    qsort(all, n, sizeof(*all), entry_cmp);
    size_t keep = n < max ? n : max;
    memcpy(out, all + (n - keep), keep * sizeof(*out));
    free(all);
    return keep;
}
