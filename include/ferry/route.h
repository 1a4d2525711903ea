/* route: the compiled route table of one http listener and its matching.
 *
 * Built once per listener at config load (route_table_build) from every
 * route that applies to that listener; matching never allocates and never
 * depends on the order of routes in the file. Precedence (SPEC, "Config
 * file"): exact host beats `*.suffix` (longer suffix wins) beats no host;
 * then `path` (exact) beats `path_prefix`, a longer prefix beats a shorter
 * one; then a route with `methods` beats one without. Prefixes match on
 * whole bytes: `/api/` matches `/api/x` not `/apix`; `/api` matches `/api`
 * and `/api/x` but not `/apix`. */
#ifndef FERRY_ROUTE_H
#define FERRY_ROUTE_H

#include <stddef.h>

struct config;
struct config_listener;
struct config_route;
struct route_table;

/* Routes of CFG that apply to listener L (routes with no `listener`, or
 * naming L). The table points into CFG, which must outlive it. */
struct route_table *route_table_build(const struct config *cfg, const struct config_listener *l);
void route_table_free(struct route_table *t);

/* The route for a request, or NULL when none matches.
 * HOST is the Host header value as received (any case, may carry ":port",
 * may end in one dot), PATH the target's path (no query: the caller cuts at
 * '?'), METHOD the request method. None is NUL-terminated. */
const struct config_route *route_match(const struct route_table *t, const char *host,
                                       size_t host_len, const char *path, size_t path_len,
                                       const char *method, size_t method_len);

#endif
