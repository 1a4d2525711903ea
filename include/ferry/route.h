/* route: the compiled route table of one listener and its matching: http
 * routes by host, path and method, or a tcp listener's routes by sni.
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

#include <stdbool.h>
#include <stddef.h>

struct config;
struct config_listener;
struct config_route;
struct route_table;

/* Routes of CFG that apply to listener L (naming L, or, for an http
 * listener, naming none). The table points into CFG, which must outlive it. */
struct route_table *route_table_build(const struct config *cfg, const struct config_listener *l);
void route_table_free(struct route_table *t);

/* The route for a request, or NULL when none matches.
 * HOST is the Host header value as received (any case, may carry ":port",
 * may end in one dot), PATH the target's path (no query: the caller cuts at
 * '?'), METHOD the request method. None is NUL-terminated. */
const struct config_route *route_match(const struct route_table *t, const char *host,
                                       size_t host_len, const char *path, size_t path_len,
                                       const char *method, size_t method_len);

/* A request for a prefix route's root without its trailing slash: PATH is
 * "/api", a route with `path_prefix = /api/` would take "/api/", and what
 * matched PATH itself (MATCHED, route_match's answer, may be NULL) is less
 * specific (no route, or a shorter prefix such as "/"). Returns that route:
 * the client gets a redirect to "/api/" instead of another route's answer.
 * NULL when PATH is served as it is. Arguments as for route_match. */
const struct config_route *route_slash_redirect(const struct route_table *t, const char *host,
                                                size_t host_len, const char *path,
                                                size_t path_len, const char *method,
                                                size_t method_len,
                                                const struct config_route *matched);

/* On a tcp listener's table: the route whose `sni` fits NAME (a server name
 * from a ClientHello, lower-case, no port, no trailing dot), by the same
 * precedence as hosts (exact, then the longest `*.suffix`), or NULL. */
const struct config_route *route_match_sni(const struct route_table *t, const char *name,
                                           size_t name_len);

/* How a route's host rule relates to a request's host, best first. */
enum route_host_fit {
    ROUTE_HOST_EXACT = 0, /* one of its hosts is the request's host */
    ROUTE_HOST_SUFFIX,    /* one of its "*.suffix" hosts ends the request's host */
    ROUTE_HOST_ANY,       /* it names no host, so any host fits */
    ROUTE_HOST_MISS,      /* it names hosts and none fits */
};

/* One route of a table as route_explain saw it for one request. */
struct route_verdict {
    const struct config_route *route; /* points into the config */
    enum route_host_fit host;         /* how its host rule fit */
    const char *host_pattern;         /* EXACT/SUFFIX: the route's host that fit, as in
                                       * the config; NULL for ANY and MISS */
    size_t suffix_len;                /* SUFFIX: bytes of ".suffix" that fit; else 0 */
    bool path_fits;                   /* its path or path_prefix fits the path */
    bool method_fits;                 /* its methods (or none) admit the method */
    bool matched;                     /* host, path and method all fit */
    bool won;                         /* the route route_match returns */
};

/* For diagnostics (ferry --explain), not the request path: calls CB once for
 * every route of T, in precedence order: the routes whose host fits first
 * (exact, then suffixes longest first, then no host; within each, the order
 * route_match tries them), then the routes whose host does not fit. So the
 * first verdict with `matched` set is the winner (`won`), and every later
 * matched one lost to it. Arguments as for route_match. Returns what
 * route_match returns. Allocates a little; never fails. */
const struct config_route *route_explain(const struct route_table *t, const char *host,
                                         size_t host_len, const char *path, size_t path_len,
                                         const char *method, size_t method_len,
                                         void (*cb)(const struct route_verdict *v, void *arg),
                                         void *arg);

#endif
