/* Unit tests for route.c: precedence and matching edges, table driven.
 *
 * Each scenario is a list of routes (built by hand into a struct config, not
 * through the loader) and a table of requests with the route name expected,
 * or NULL for no match. Every scenario is built in every order of its routes
 * (all permutations up to 6 routes, else reversed and rotated) and must give
 * the same answers: SPEC says file order never changes behaviour. Request
 * strings are passed in exact-size heap copies without a NUL, so the
 * sanitizer catches any read past the lengths route_match is given. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/config.h"
#include "ferry/route.h"

#define SPEC_MAX   4 /* hosts or methods per test route */
#define ROUTES_MAX 8 /* routes per scenario */

enum { L_NONE = 0, L_WEB, L_OTHER, L_TCP, L_COUNT };

/* A route as a test writes it; hosts and methods end at the first NULL. */
struct rspec {
    const char *name;
    const char *hosts[SPEC_MAX]; /* lower-cased like the loader's; none = any host */
    const char *path;            /* NULL = no path (prefix "/") */
    bool exact;                  /* `path =` rather than `path_prefix =` */
    const char *methods[SPEC_MAX];
    int listener; /* L_NONE = every http listener */
    const char *snis[SPEC_MAX]; /* a tcp route's names (listener L_TCP) */
};

/* One request and the route name it must get (NULL = no route). A case
 * with a NULL method is a ClientHello's server name (HOST) on a tcp
 * listener: route_match_sni. */
struct rcase {
    const char *host;
    const char *path;
    const char *method;
    const char *expect;
};

static char lname_web[] = "web", lname_other[] = "other", lname_tcp[] = "raw";
static struct config_listener listeners[L_COUNT] = {
    [L_WEB] = {.name = lname_web, .mode = MODE_HTTP},
    [L_OTHER] = {.name = lname_other, .mode = MODE_HTTP},
    [L_TCP] = {.name = lname_tcp, .mode = MODE_TCP},
};
static char uname_app[] = "app";
static struct config_upstream upstream_app = {.name = uname_app};

static size_t count_list(const char *const *list) {
    size_t n = 0;
    while (n < SPEC_MAX && list[n])
        n++;
    return n;
}

static char **dup_list(const char *const *list, size_t n) {
    char **out = calloc(n ? n : 1, sizeof(*out));
    assert_non_null(out);
    for (size_t i = 0; i < n; i++)
        assert_non_null(out[i] = strdup(list[i]));
    return out;
}

static void free_list(char **list, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

/* A config holding SPECS in the order ORDER gives. */
static struct config *cfg_build(const struct rspec *specs, size_t n, const size_t *order) {
    struct config *cfg = calloc(1, sizeof(*cfg));
    assert_non_null(cfg);
    cfg->listeners = &listeners[1];
    cfg->nlisteners = L_COUNT - 1;
    cfg->routes = calloc(n ? n : 1, sizeof(*cfg->routes));
    assert_non_null(cfg->routes);
    cfg->nroutes = n;
    for (size_t i = 0; i < n; i++) {
        const struct rspec *s = &specs[order[i]];
        struct config_route *r = &cfg->routes[i];
        assert_non_null(r->name = strdup(s->name));
        r->line = (int)order[i] + 1;
        r->nhosts = count_list(s->hosts);
        r->hosts = dup_list(s->hosts, r->nhosts);
        assert_non_null(r->path = strdup(s->path ? s->path : "/"));
        r->path_exact = s->exact;
        r->nmethods = count_list(s->methods);
        r->methods = dup_list(s->methods, r->nmethods);
        r->listener = s->listener == L_NONE ? NULL : &listeners[s->listener];
        r->nsnis = count_list(s->snis);
        r->snis = dup_list(s->snis, r->nsnis);
        r->upstream = &upstream_app;
    }
    return cfg;
}

static void cfg_destroy(struct config *cfg) {
    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct config_route *r = &cfg->routes[i];
        free(r->name);
        free_list(r->hosts, r->nhosts);
        free(r->path);
        free_list(r->methods, r->nmethods);
        free_list(r->snis, r->nsnis);
    }
    free(cfg->routes);
    free(cfg);
}

/* An exact-size copy without a terminating NUL. */
static char *bytes(const char *s, size_t *len) {
    *len = strlen(s);
    char *p = malloc(*len ? *len : 1);
    assert_non_null(p);
    memcpy(p, s, *len);
    return p;
}

static void check_case(const struct route_table *t, const struct rcase *c, const char *what) {
    size_t hl, pl, ml;
    char *h = bytes(c->host, &hl);
    const struct config_route *r;
    if (c->method) {
        char *p = bytes(c->path, &pl), *m = bytes(c->method, &ml);
        r = route_match(t, h, hl, p, pl, m, ml);
        free(p);
        free(m);
    } else {
        r = route_match_sni(t, h, hl);
    }
    free(h);
    const char *got = r ? r->name : NULL;
    bool ok =
        (got == NULL && c->expect == NULL) || (got && c->expect && strcmp(got, c->expect) == 0);
    if (!ok) {
        print_error("%s: %s %s%s -> %s, want %s\n", what, c->method ? c->method : "SNI",
                    c->host, c->path ? c->path : "",
                    got ? got : "(none)", c->expect ? c->expect : "(none)");
        fail();
    }
}

/* Builds the table of listener LIS from SPECS in ORDER and checks every case. */
static void check_order(const struct rspec *specs, size_t n, const size_t *order,
                        const struct rcase *cases, size_t ncases, int lis) {
    char what[64];
    int off = snprintf(what, sizeof(what), "order");
    for (size_t i = 0; i < n && off < (int)sizeof(what) - 4; i++)
        off += snprintf(what + off, sizeof(what) - (size_t)off, " %zu", order[i]);
    struct config *cfg = cfg_build(specs, n, order);
    struct route_table *t = route_table_build(cfg, &listeners[lis]);
    assert_non_null(t);
    for (size_t i = 0; i < ncases; i++)
        check_case(t, &cases[i], what);
    route_table_free(t);
    cfg_destroy(cfg);
}

/* Next lexicographic permutation of A; false after the last one. */
static bool next_permutation(size_t *a, size_t n) {
    if (n < 2) return false;
    size_t i = n - 1;
    while (i > 0 && a[i - 1] >= a[i])
        i--;
    if (i == 0) return false;
    size_t j = n - 1;
    while (a[j] <= a[i - 1])
        j--;
    size_t tmp = a[i - 1];
    a[i - 1] = a[j];
    a[j] = tmp;
    for (size_t lo = i, hi = n - 1; lo < hi; lo++, hi--) {
        tmp = a[lo];
        a[lo] = a[hi];
        a[hi] = tmp;
    }
    return true;
}

/* Every order for small scenarios; each rotation, forwards and backwards,
 * for larger ones. */
static void run_on(const struct rspec *specs, size_t n, const struct rcase *cases, size_t ncases,
                   int lis) {
    assert_true(n <= ROUTES_MAX);
    size_t order[ROUTES_MAX] = {0};
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    if (n <= 6) {
        do
            check_order(specs, n, order, cases, ncases, lis);
        while (next_permutation(order, n));
        return;
    }
    for (size_t rot = 0; rot < n; rot++) {
        for (size_t i = 0; i < n; i++)
            order[i] = (i + rot) % n;
        check_order(specs, n, order, cases, ncases, lis);
        for (size_t i = 0; i < n; i++)
            order[i] = (n - 1 - i + rot) % n;
        check_order(specs, n, order, cases, ncases, lis);
    }
}

#define RUN(specs, cases)                                                                          \
    run_on(specs, FERRY_ARRAY_LEN(specs), cases, FERRY_ARRAY_LEN(cases), L_WEB)

/* route_slash_redirect: "/api" goes to "/api/" only when a route with
 * exactly that prefix would take it and nothing more specific names "/api"
 * itself. Each case: host, path, the route the redirect is for (NULL: none). */
static void test_slash_redirect(void **state) {
    (void)state;
    static const struct rspec routes[] = {
        {.name = "api", .path = "/api/"},
        {.name = "all", .path = "/"},
        {.name = "v2", .path = "/v2/"},
        {.name = "v2root", .path = "/v2", .exact = true},
        {.name = "docs", .path = "/docs"},
        {.name = "docs2", .path = "/docs/"},
        {.name = "deep", .path = "/a/b/"},
        {.name = "hosted", .hosts = {"h.example"}, .path = "/"},
    };
    static const struct rcase cases[] = {
        {"x", "/api", "GET", "api"},
        {"x", "/a/b", "GET", "deep"},
        {"x", "/api/", "GET", NULL},
        {"x", "/apix", "GET", NULL},
        {"x", "/v2", "GET", NULL},   /* an exact route names it */
        {"x", "/docs", "GET", NULL}, /* a prefix route without the slash names it */
        {"x", "/a", "GET", NULL},
        {"x", "/", "GET", NULL},
        {"x", "", "GET", NULL},
        {"h.example", "/api", "GET", NULL}, /* its host's catch-all takes /api/ too */
    };
    size_t order[FERRY_ARRAY_LEN(routes)];
    for (size_t i = 0; i < FERRY_ARRAY_LEN(routes); i++) order[i] = i;
    struct config *cfg = cfg_build(routes, FERRY_ARRAY_LEN(routes), order);
    struct route_table *t = route_table_build(cfg, &listeners[L_WEB]);
    assert_non_null(t);
    for (size_t i = 0; i < FERRY_ARRAY_LEN(cases); i++) {
        const struct rcase *c = &cases[i];
        size_t hl, pl, ml;
        char *h = bytes(c->host, &hl), *p = bytes(c->path, &pl), *m = bytes(c->method, &ml);
        const struct config_route *matched = route_match(t, h, hl, p, pl, m, ml);
        const struct config_route *r = route_slash_redirect(t, h, hl, p, pl, m, ml, matched);
        const char *got = r ? r->name : NULL;
        if (!((!got && !c->expect) || (got && c->expect && strcmp(got, c->expect) == 0)))
            fail_msg("%s %s: redirect for %s, want %s", c->host, c->path, got ? got : "(none)",
                     c->expect ? c->expect : "(none)");
        free(h);
        free(p);
        free(m);
    }
    route_table_free(t);
    cfg_destroy(cfg);
}

/* The scenario tables keep one route or request per line. */
/* clang-format off */

/* Exact host beats *.suffix beats no host; the suffix needs a label in front. */
static void test_host_classes(void **state) {
    (void)state;
    static const struct rspec routes[] = {
        {.name = "exact", .hosts = {"api.example.com"}},
        {.name = "suffix", .hosts = {"*.example.com"}},
        {.name = "any"},
    };
    static const struct rcase cases[] = {
        {"api.example.com", "/", "GET", "exact"},
        {"www.example.com", "/", "GET", "suffix"},
        {"a.b.example.com", "/x", "GET", "suffix"},
        {"api.example.com.evil", "/", "GET", "any"},
        {"example.com", "/", "GET", "any"},
        {".example.com", "/", "GET", "any"},
        {"xexample.com", "/", "GET", "any"},
        {"other.org", "/", "GET", "any"},
        {"", "/", "GET", "any"},
    };
    RUN(routes, cases);
}

/* The longest matching suffix wins; "*.eu.example.com" skips "eu.example.com". */
static void test_longer_suffix_wins(void **state) {
    (void)state;
    static const struct rspec routes[] = {
        {.name = "short", .hosts = {"*.example.com"}},
        {.name = "long", .hosts = {"*.eu.example.com"}},
        {.name = "tld", .hosts = {"*.com"}},
    };
    static const struct rcase cases[] = {
        {"x.eu.example.com", "/", "GET", "long"},
        {"a.b.eu.example.com", "/", "GET", "long"},
        {"eu.example.com", "/", "GET", "short"},
        {"x.us.example.com", "/", "GET", "short"},
        {"example.com", "/", "GET", "tld"},
        {"com", "/", "GET", NULL},
        {"example.org", "/", "GET", NULL},
        {"", "/", "GET", NULL},
    };
    RUN(routes, cases);
}

/* Host as received: any case, ":port", one trailing dot, IPv6 in brackets. */
static void test_host_normalization(void **state) {
    (void)state;
    static const struct rspec routes[] = {
        {.name = "api", .hosts = {"api.example.com"}},
        {.name = "wild", .hosts = {"*.example.org"}},
        {.name = "v6", .hosts = {"[::1]"}},
        {.name = "v4", .hosts = {"127.0.0.1"}},
        {.name = "local", .hosts = {"localhost"}},
    };
    static const struct rcase cases[] = {
        {"API.Example.COM", "/", "GET", "api"},
        {"api.example.com:8080", "/", "GET", "api"},
        {"api.example.com.", "/", "GET", "api"},
        {"Api.Example.Com.:443", "/", "GET", "api"},
        {"api.example.com..", "/", "GET", NULL},
        {"api.example.co", "/", "GET", NULL},
        {"api.example.comx", "/", "GET", NULL},
        {"WWW.Example.ORG.:80", "/", "GET", "wild"},
        {"example.org:80", "/", "GET", NULL},
        {"[::1]:8080", "/", "GET", "v6"},
        {"[::1]", "/", "GET", "v6"},
        {"[::2]:8080", "/", "GET", NULL},
        {"::1", "/", "GET", NULL},
        {"127.0.0.1:80", "/", "GET", "v4"},
        {"127.0.0.1", "/", "GET", "v4"},
        {"LOCALHOST:80", "/", "GET", "local"},
        {":8080", "/", "GET", NULL},
        {".", "/", "GET", NULL},
        {"", "/", "GET", NULL},
    };
    RUN(routes, cases);
}

/* path beats path_prefix; a longer prefix beats a shorter one; whole bytes. */
static void test_path_precedence(void **state) {
    (void)state;
    static const struct rspec routes[] = {
        {.name = "root"},
        {.name = "api", .path = "/api"},
        {.name = "api_slash", .path = "/api/"},
        {.name = "api_exact", .path = "/api", .exact = true},
        {.name = "users_exact", .path = "/api/users", .exact = true},
        {.name = "users_prefix", .path = "/api/users"},
    };
    static const struct rcase cases[] = {
        {"h", "/api", "GET", "api_exact"},
        {"h", "/api/", "GET", "api_slash"},
        {"h", "/api/x", "GET", "api_slash"},
        {"h", "/apix", "GET", "root"},
        {"h", "/api/users", "GET", "users_exact"},
        {"h", "/api/users/", "GET", "users_prefix"},
        {"h", "/api/users/1", "GET", "users_prefix"},
        {"h", "/api/usersx", "GET", "api_slash"},
        {"h", "/API", "GET", "root"},
        {"h", "/", "GET", "root"},
        {"h", "", "GET", "root"},
        {"h", "*", "OPTIONS", "root"},
    };
    RUN(routes, cases);
}

/* Prefix edges without a catch-all route. */
static void test_prefix_boundaries(void **state) {
    (void)state;
    static const struct rspec routes[] = {
        {.name = "v1", .path = "/v1"},
        {.name = "static", .path = "/static/"},
        {.name = "exact_root", .path = "/", .exact = true},
        {.name = "health", .path = "/health", .exact = true},
    };
    static const struct rcase cases[] = {
        {"h", "/v1", "GET", "v1"},
        {"h", "/v1/", "GET", "v1"},
        {"h", "/v1/a/b", "GET", "v1"},
        {"h", "/v1x", "GET", NULL},
        {"h", "/v", "GET", NULL},
        {"h", "/static/", "GET", "static"},
        {"h", "/static/a.css", "GET", "static"},
        {"h", "/static", "GET", NULL},
        {"h", "/staticx", "GET", NULL},
        {"h", "/", "GET", "exact_root"},
        {"h", "//", "GET", NULL},
        {"h", "/health", "GET", "health"},
        {"h", "/health/", "GET", NULL},
        {"h", "/healthz", "GET", NULL},
        {"h", "", "GET", NULL},
    };
    RUN(routes, cases);
}

/* methods beat no methods; a mismatch falls back; tokens are case-sensitive. */
static void test_methods(void **state) {
    (void)state;
    static const struct rspec routes[] = {
        {.name = "read", .path = "/api", .methods = {"GET", "HEAD"}},
        {.name = "api_any", .path = "/api"},
        {.name = "admin_post", .path = "/api/admin", .methods = {"POST"}},
        {.name = "x_post", .path = "/x", .exact = true, .methods = {"POST"}},
        {.name = "x_any_prefix", .path = "/x/"},
    };
    static const struct rcase cases[] = {
        {"h", "/api", "GET", "read"},
        {"h", "/api/x", "HEAD", "read"},
        {"h", "/api", "POST", "api_any"},
        {"h", "/api", "get", "api_any"},
        {"h", "/api", "GE", "api_any"},
        {"h", "/api", "GETX", "api_any"},
        {"h", "/api", "", "api_any"},
        {"h", "/api/admin", "POST", "admin_post"},
        {"h", "/api/admin/users", "POST", "admin_post"},
        {"h", "/api/admin", "GET", "read"},
        {"h", "/api/admin", "PUT", "api_any"},
        {"h", "/x", "POST", "x_post"},
        {"h", "/x", "GET", NULL},
        {"h", "/x/1", "GET", "x_any_prefix"},
    };
    RUN(routes, cases);
}

/* Same host and path, both with methods: the shorter list wins the overlap. */
static void test_methods_tie(void **state) {
    (void)state;
    static const struct rspec routes[] = {
        {.name = "a_get_post", .path = "/f", .methods = {"GET", "POST"}},
        {.name = "z_get", .path = "/f", .methods = {"GET"}},
    };
    static const struct rcase cases[] = {
        {"h", "/f", "GET", "z_get"},
        {"h", "/f", "POST", "a_get_post"},
        {"h", "/f", "PUT", NULL},
    };
    RUN(routes, cases);
}

/* The whole request must match: a better host whose path or methods do not
 * fit loses to a worse host class, never to nothing. Host beats path. */
static void test_whole_request_precedence(void **state) {
    (void)state;
    static const struct rspec routes[] = {
        {.name = "host_v2", .hosts = {"api.example.com"}, .path = "/v2"},
        {.name = "host_health_get",
         .hosts = {"api.example.com"},
         .path = "/health",
         .exact = true,
         .methods = {"GET"}},
        {.name = "sfx_health", .hosts = {"*.example.com"}, .path = "/health", .exact = true},
        {.name = "deep_any", .path = "/v2/a/b", .exact = true},
        {.name = "any"},
        {.name = "h_root", .hosts = {"h.test"}},
    };
    static const struct rcase cases[] = {
        {"api.example.com", "/v2/x", "GET", "host_v2"},
        {"api.example.com", "/v2/a/b", "GET", "host_v2"},
        {"www.example.com", "/v2/a/b", "GET", "deep_any"},
        {"api.example.com", "/v1", "GET", "any"},
        {"api.example.com", "/health", "GET", "host_health_get"},
        {"api.example.com", "/health", "POST", "sfx_health"},
        {"www.example.com", "/health", "GET", "sfx_health"},
        {"www.example.com", "/healthz", "GET", "any"},
        {"h.test", "/v2/a/b", "GET", "h_root"},
        {"", "/v2/a/b", "GET", "deep_any"},
    };
    RUN(routes, cases);
}

/* A longer suffix whose routes do not fit falls back to a shorter suffix. */
static void test_suffix_fallback(void **state) {
    (void)state;
    static const struct rspec routes[] = {
        {.name = "eu_api", .hosts = {"*.eu.example.com"}, .path = "/api"},
        {.name = "all_sub", .hosts = {"*.example.com"}},
        {.name = "eu_exact", .hosts = {"eu.example.com"}, .methods = {"DELETE"}},
    };
    static const struct rcase cases[] = {
        {"x.eu.example.com", "/api/1", "GET", "eu_api"},
        {"x.eu.example.com", "/web", "GET", "all_sub"},
        {"eu.example.com", "/api/1", "GET", "all_sub"},
        {"eu.example.com", "/api/1", "DELETE", "eu_exact"},
        {"example.com", "/", "GET", NULL},
    };
    RUN(routes, cases);
}

/* One route with several hosts sits in several buckets. */
static void test_multiple_hosts(void **state) {
    (void)state;
    static const struct rspec routes[] = {
        {.name = "multi", .hosts = {"a.test", "*.b.test", "a.test", "A.TEST."}},
        {.name = "other", .hosts = {"*.test"}},
        {.name = "api", .hosts = {"a.test", "c.test"}, .path = "/api"},
    };
    static const struct rcase cases[] = {
        {"a.test", "/", "GET", "multi"},
        {"a.test", "/api", "GET", "api"},
        {"c.test", "/api", "GET", "api"},
        {"c.test", "/", "GET", "other"},
        {"x.b.test", "/", "GET", "multi"},
        {"b.test", "/", "GET", "other"},
        {"test", "/", "GET", NULL},
    };
    RUN(routes, cases);
}

/* Routes naming another listener are not in this listener's table. */
static void test_listener_scope(void **state) {
    (void)state;
    static const struct rspec routes[] = {
        {.name = "web_w", .path = "/w", .listener = L_WEB},
        {.name = "other_w", .path = "/w", .listener = L_OTHER},
        {.name = "other_only", .path = "/o", .listener = L_OTHER},
        {.name = "all"},
    };
    static const struct rcase web[] = {
        {"h", "/w", "GET", "web_w"},
        {"h", "/o", "GET", "all"},
        {"h", "/", "GET", "all"},
    };
    static const struct rcase other[] = {
        {"h", "/w", "GET", "other_w"},
        {"h", "/o", "GET", "other_only"},
        {"h", "/", "GET", "all"},
    };
    static const struct rcase tcp[] = {
        {"h", "/w", "GET", NULL},
        {"h", "/", "GET", NULL},
    };
    run_on(routes, FERRY_ARRAY_LEN(routes), web, FERRY_ARRAY_LEN(web), L_WEB);
    run_on(routes, FERRY_ARRAY_LEN(routes), other, FERRY_ARRAY_LEN(other), L_OTHER);
    run_on(routes, FERRY_ARRAY_LEN(routes), tcp, FERRY_ARRAY_LEN(tcp), L_TCP);
}

/* No routes at all, or none for this listener: nothing matches. */
static void test_empty_tables(void **state) {
    (void)state;
    static const struct rspec routes[] = {
        {.name = "elsewhere", .listener = L_OTHER},
    };
    static const struct rcase cases[] = {
        {"h", "/", "GET", NULL},
        {"", "", "", NULL},
    };
    run_on(routes, 0, cases, FERRY_ARRAY_LEN(cases), L_WEB);
    RUN(routes, cases);
    route_table_free(NULL);
}

/* sni routes on a tcp listener: exact beats *.suffix, the longest suffix
 * wins, no name fits no route; http routes never apply there, nor sni
 * routes on an http listener. */
static void test_sni(void **state) {
    (void)state;
    static const struct rspec routes[] = {
        {.name = "exact", .snis = {"api.example.com", "www.example.org"}, .listener = L_TCP},
        {.name = "wild", .snis = {"*.example.com"}, .listener = L_TCP},
        {.name = "deeper", .snis = {"*.eu.example.com"}, .listener = L_TCP},
        {.name = "http_all", .path = "/"},
        {.name = "http_web", .hosts = {"api.example.com"}, .listener = L_WEB},
    };
    static const struct rcase sni[] = {
        {"api.example.com", NULL, NULL, "exact"},
        {"www.example.org", NULL, NULL, "exact"},
        {"x.example.com", NULL, NULL, "wild"},
        {"a.b.example.com", NULL, NULL, "wild"},
        {"db.eu.example.com", NULL, NULL, "deeper"},
        {"eu.example.com", NULL, NULL, "wild"},
        {"example.com", NULL, NULL, NULL},
        {"other.org", NULL, NULL, NULL},
        {"", NULL, NULL, NULL},
        {"api.example.com", "/", "GET", "exact"}, /* the same table */
    };
    static const struct rcase web[] = {
        {"api.example.com", "/", "GET", "http_web"},
        {"x.example.com", "/", "GET", "http_all"},
    };
    run_on(routes, FERRY_ARRAY_LEN(routes), sni, FERRY_ARRAY_LEN(sni), L_TCP);
    run_on(routes, FERRY_ARRAY_LEN(routes), web, FERRY_ARRAY_LEN(web), L_WEB);
}

/* clang-format on */

/* Many hosts: the hash maps probe past collisions and find every key. */
static void test_many_hosts(void **state) {
    (void)state;
    enum { N = 300 };
    static char names[2 * N][32], hosts[2 * N][32];
    static struct rspec routes[2 * N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "exact%d", i);
        snprintf(hosts[i], sizeof(hosts[i]), "host%d.test", i);
        routes[i] = (struct rspec){.name = names[i], .hosts = {hosts[i]}};
        snprintf(names[N + i], sizeof(names[N + i]), "sfx%d", i);
        snprintf(hosts[N + i], sizeof(hosts[N + i]), "*.zone%d.test", i);
        routes[N + i] = (struct rspec){.name = names[N + i], .hosts = {hosts[N + i]}};
    }
    size_t order[2 * N];
    for (size_t i = 0; i < 2 * N; i++)
        order[i] = 2 * N - 1 - i;
    struct config *cfg = cfg_build(routes, 2 * N, order);
    struct route_table *t = route_table_build(cfg, &listeners[L_WEB]);
    char host[64], want[32];
    for (int i = 0; i < N; i++) {
        snprintf(host, sizeof(host), "HOST%d.test:80", i);
        snprintf(want, sizeof(want), "exact%d", i);
        check_case(t, &(struct rcase){host, "/", "GET", want}, "many exact");
        snprintf(host, sizeof(host), "a.b.zone%d.test", i);
        snprintf(want, sizeof(want), "sfx%d", i);
        check_case(t, &(struct rcase){host, "/", "GET", want}, "many suffix");
    }
    check_case(t, &(struct rcase){"host300.test", "/", "GET", NULL}, "many miss");
    check_case(t, &(struct rcase){"zone1.test", "/", "GET", NULL}, "many bare");
    route_table_free(t);
    cfg_destroy(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_classes),       cmocka_unit_test(test_longer_suffix_wins),
        cmocka_unit_test(test_host_normalization), cmocka_unit_test(test_path_precedence),
        cmocka_unit_test(test_prefix_boundaries),  cmocka_unit_test(test_methods),
        cmocka_unit_test(test_methods_tie),        cmocka_unit_test(test_whole_request_precedence),
        cmocka_unit_test(test_suffix_fallback),    cmocka_unit_test(test_multiple_hosts),
        cmocka_unit_test(test_listener_scope),     cmocka_unit_test(test_empty_tables),
        cmocka_unit_test(test_many_hosts),         cmocka_unit_test(test_sni),
        cmocka_unit_test(test_slash_redirect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
