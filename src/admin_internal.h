/* admin_internal.h: what admin.c (the endpoint, /metrics, /status) shares
 * with dashboard.c (GET /, and the fields /status?stats=1 adds). Nothing
 * else includes this. */
#ifndef FERRY_ADMIN_INTERNAL_H
#define FERRY_ADMIN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ferry/admin.h"
#include "ferry/stats.h"

struct config_listener;
struct config_route;
struct config_upstream;
struct strbuf;

/* The labels of a stats node: (listener|route|upstream, server). */
struct admin_key {
    const char *name, *name2, *name3; /* a node's labels; name3: a server's address */
};

/* Sums over the workers of one node kind's counters, as a flat array. */
struct admin_sum {
    uint64_t v[STATS_CODES + STATS_BUCKETS + 1];
    size_t n;
};

#define NVAL(type) (sizeof(type) / sizeof(stat_t))

/* S as the inside of a JSON string (or a Prometheus label value). */
void admin_escaped(struct strbuf *b, const char *s);
/* The distinct label sets of KIND over every worker, sorted; *OUT is
 * malloc'ed. */
size_t admin_keys_of(const struct admin_source *src, enum stats_kind kind, struct admin_key **out);
/* The first NVALUES counters of the nodes of KIND labelled K, summed. */
struct admin_sum admin_sum_of(const struct admin_source *src, enum stats_kind kind,
                              struct admin_key k, size_t nvalues);

/* --- dashboard.c -------------------------------------------------------- */

/* The dashboard's own state on the main loop: a 5-minute history of every
 * route's counters, sampled by a timer, and the latest reloads. */
struct dash;

struct dash *dash_start(uv_loop_t *loop, const struct admin_source *src);
/* Closes the timer; frees on close. */
void dash_stop(struct dash *d);
void dash_note_reload(struct dash *d, bool ok, const char *first_error);

/* GET /: the page and the headers that go with it (CSP and the rest, each
 * line ending in CRLF). */
const char *dash_page(size_t *len);
const char *dash_page_headers(void);

/* /status?stats=1: fields appended inside each object of /status. */
void dash_listener_fields(struct strbuf *b, const struct admin_source *src,
                          const struct config_listener *l);
void dash_route_fields(struct strbuf *b, struct dash *d, const struct admin_source *src,
                       const struct config_route *r);
void dash_upstream_fields(struct strbuf *b, const struct admin_source *src,
                          const struct config_upstream *u);
/* SUM: the summed stats_server counters of one address; ST its state, or
 * NULL (a name that resolves to nothing). */
struct server_state;
void dash_server_fields(struct strbuf *b, const struct admin_sum *sum, struct server_state *st);
/* The top-level members that follow "upstreams" (each with a leading comma). */
void dash_tail(struct strbuf *b, struct dash *d, const struct admin_source *src);

#endif
