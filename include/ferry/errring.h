/* errring: the last errors a worker answered itself (a 502 for a refused
 * connection, a 404 for no route, a 408 for a slow head ...), for the admin
 * dashboard.
 *
 * One ring per worker, written by that worker's thread only, read by the
 * admin endpoint on the main thread. Errors are rare next to requests, so a
 * small mutex per ring is simpler than a lock-free scheme and costs nothing
 * on the request path that succeeds. A reader copies a whole ring under its
 * lock; it never holds two locks at once.
 *
 * What an entry may hold is deliberate: the status, the route and upstream
 * names (from the config), the cause text as ferry words it, and the
 * request id. Never a client address or a header value: the dashboard is a
 * page anyone with the admin address can read. */
#ifndef FERRY_ERRRING_H
#define FERRY_ERRRING_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define ERRRING_SIZE 50 /* entries per worker, and the most errring_merge() returns */

struct errring_entry {
    uint64_t time_ms;  /* wall clock, ms since the epoch */
    uint64_t seq;      /* process-wide order of recording: breaks ties of time_ms */
    int status;        /* the status ferry answered */
    char route[64];    /* route name, "-" for none (truncated if longer) */
    char upstream[64]; /* upstream name, "-" for none */
    char cause[192];   /* ferry's own words, e.g. "route api, upstream app: connection refused" */
    char rid[48];      /* the X-Request-Id ferry sent (truncated if longer) */
};

struct errring {
    uv_mutex_t lock;                      /* guards everything below */
    struct errring_entry e[ERRRING_SIZE]; /* oldest overwritten first */
    unsigned next;                        /* slot of the next write */
    unsigned count;                       /* entries held, at most ERRRING_SIZE */
};

void errring_init(struct errring *r);
void errring_destroy(struct errring *r);

/* Owner thread: records one error. NULL strings are recorded as "-";
 * longer ones are cut at their field's size. TIME_MS 0 means now. */
void errring_add(struct errring *r, uint64_t time_ms, int status, const char *route,
                 const char *upstream, const char *cause, const char *rid);

/* Any thread: the latest min(MAX, ERRRING_SIZE) entries of the NRINGS rings,
 * oldest first (by time, then recording order), into OUT. Returns how many. */
size_t errring_merge(struct errring *const *rings, size_t nrings, struct errring_entry *out,
                     size_t max);

#endif
