/* admin: the admin HTTP endpoint (`[global] admin = HOST:PORT`), served on
 * the main thread's loop, away from the workers:
 *   GET /healthz  200 "ok"
 *   GET /metrics  Prometheus text format, summed over workers
 *   GET /status   JSON: listeners, routes, upstreams and their servers;
 *                 /status?stats=1 adds counters, 5-minute history, the last
 *                 errors ferry answered itself, reloads and port pressure
 *   GET /         the dashboard: one HTML page that polls /status?stats=1
 * One request per connection (answered with Connection: close); requests
 * here are not counted in ferry_requests_total. */
#ifndef FERRY_ADMIN_H
#define FERRY_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "ferry/util.h"

struct generation;
struct runtime;
struct worker;

/* What the endpoint reports on; owned by main. */
struct admin_source {
    struct worker *workers;
    unsigned nworkers;
    struct generation **gen; /* the current generation (main thread's pointer) */
    struct runtime *rt;
};

struct admin;

/* Binds and starts serving. NULL with a message in ERR on failure. */
struct admin *admin_start(uv_loop_t *loop, const struct admin_source *src, char *err,
                          size_t errlen) FERRY_MUSTCHECK;
/* Main thread: a SIGHUP reload ended, OK or not (FIRST_ERROR: the first
 * line of what went wrong), for the dashboard. A (no admin) may be NULL. */
void admin_note_reload(struct admin *a, bool ok, const char *first_error);
/* Closes the listener and every admin connection; frees on close. */
void admin_stop(struct admin *a);

/* The texts, exposed for tests: malloc'ed, NUL-terminated, *LEN set. */
char *admin_metrics_text(const struct admin_source *src, size_t *len);
char *admin_status_json(const struct admin_source *src, size_t *len);

#endif
