/* Unit tests for explain.c (`ferry --explain`) and route_explain.
 *
 * Each test loads a small config through the real loader, runs explain_run
 * into memory streams and checks the lines a user would read: the winning
 * route with its file:line and rule, why it won, the upstream, the target the
 * upstream sees, each route that also matched with why it lost, each route
 * that did not match with what did not fit, and the exit status. SPEC's
 * precedence examples ("Route choice") each have a test. Line numbers in
 * assertions are those of the config text in the same test. */
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
#include "ferry/explain.h"
#include "ferry/route.h"

/* One explain_run: its exit status and what it wrote. */
struct run {
    int status;
    char *out;
    char *err;
};

static struct config *load(const char *text) {
    struct config_errors errs = {0};
    struct config *cfg = config_load_string("t.ini", text, &errs);
    for (size_t i = 0; i < errs.count; i++)
        print_message("config error: %s\n", errs.items[i]);
    config_errors_free(&errs);
    assert_non_null(cfg);
    return cfg;
}

/* Runs REQUEST against config TEXT. */
static struct run explain(const char *text, const char *request) {
    struct config *cfg = load(text);
    struct run r = {0};
    size_t on = 0, en = 0;
    FILE *out = open_memstream(&r.out, &on);
    FILE *err = open_memstream(&r.err, &en);
    assert_non_null(out);
    assert_non_null(err);
    r.status = explain_run(cfg, NULL, request, out, err);
    fclose(out);
    fclose(err);
    config_free(cfg);
    return r;
}

static void run_free(struct run *r) {
    free(r->out);
    free(r->err);
}

/* HAYSTACK must contain LINE as a whole line (or, with a trailing "...",
 * a line starting with it); prints the output when it does not. */
static void expect_line(const char *haystack, const char *line) {
    size_t n = strlen(line);
    bool prefix = n >= 3 && strcmp(line + n - 3, "...") == 0;
    if (prefix) n -= 3;
    for (const char *p = haystack; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, line, n) == 0 && (prefix || p[n] == '\n' || p[n] == '\0')) return;
    }
    print_message("expected line: %s\n--- output ---\n%s--------------\n", line, haystack);
    fail();
}

static void expect_no(const char *haystack, const char *text) {
    if (!strstr(haystack, text)) return;
    print_message("unexpected: %s\n--- output ---\n%s--------------\n", text, haystack);
    fail();
}

/* Lines 1-9: listener web on 8080 without a default upstream, upstreams app
 * (line 5) and other (line 9). Routes follow from line 11. */
#define HEAD                                                                                       \
    "[listener web]\n"                                                                             \
    "bind = 0.0.0.0:8080\n"                                                                        \
    "mode = http\n"                                                                                \
    "\n"                                                                                           \
    "[upstream app]\n"                                                                             \
    "server = 127.0.0.1:3000 weight=2\n"                                                           \
    "server = app2:3000\n"                                                                         \
    "\n"                                                                                           \
    "[upstream other]\n"                                                                           \
    "server = 127.0.0.1:4000\n"

/* SPEC: exact host beats *.suffix beats no host; strip_prefix; headers. */
static void test_exact_host_wins(void **state) {
    (void)state;
    struct run r = explain(HEAD "[route root]\n"           /* 11 */
                                "upstream = other\n"       /* 12 */
                                "[route any-api]\n"        /* 13 */
                                "host = *.example.com\n"   /* 14 */
                                "path_prefix = /api/\n"    /* 15 */
                                "upstream = other\n"       /* 16 */
                                "[route api]\n"            /* 17 */
                                "host = api.example.com\n" /* 18 */
                                "path_prefix = /api/\n"    /* 19 */
                                "upstream = app\n"         /* 20 */
                                "strip_prefix = on\n"      /* 21 */
                                "add_request_header = X-Env: prod\n"
                                "remove_request_header = X-Debug\n"
                                "add_response_header = X-Frame-Options: DENY\n",
                           "GET http://api.example.com/api/users?id=7");
    assert_int_equal(r.status, 0);
    expect_line(r.out, "request:  GET http://api.example.com/api/users?id=7");
    expect_line(r.out, "listener: web (0.0.0.0:8080, t.ini:1)  [port 80 matches no http "
                       "listener: showing every http listener]");
    expect_line(r.out, "route:    api (t.ini:17) host api.example.com (exact), path_prefix "
                       "/api/, methods any");
    expect_line(r.out, "why:      exact host api.example.com beats suffix *.example.com "
                       "(runner-up: any-api)");
    expect_line(r.out, "upstream: app (t.ini:5) round_robin: 127.0.0.1:3000 weight=2, "
                       "app2:3000");
    expect_line(r.out, "upstream sees: GET /users?id=7   (strip_prefix /api/)");
    expect_line(r.out, "prefix:   X-Forwarded-Prefix: /api");
    expect_line(r.out, "rewrite:  Location, Content-Location and Set-Cookie Path back to the "
                       "client's scheme, host and prefix (rewrite_redirects)");
    expect_no(r.out, "timeouts:");
    expect_line(r.out, "request headers: +X-Env: prod, -X-Debug");
    expect_line(r.out, "response headers: +X-Frame-Options: DENY");
    expect_line(r.out, "also matched, lost:");
    expect_line(r.out, "  any-api (t.ini:13): *.example.com is a suffix match, exact host "
                       "api.example.com wins");
    expect_line(r.out, "  root (t.ini:11): no host (any) loses to exact host api.example.com");
    expect_no(r.out, "did not match");
    assert_string_equal(r.err, "");
    run_free(&r);
}

/* SPEC: a longer suffix beats a shorter one; suffix beats no host. */
static void test_longer_suffix_wins(void **state) {
    (void)state;
    struct run r = explain(HEAD "[route wide]\n"             /* 11 */
                                "host = *.example.com\n"     /* 12 */
                                "upstream = other\n"         /* 13 */
                                "[route narrow]\n"           /* 14 */
                                "host = *.api.example.com\n" /* 15 */
                                "upstream = app\n"           /* 16 */
                                "[route root]\n"             /* 17 */
                                "upstream = other\n",        /* 18 */
                           "GET http://eu.api.example.com:8080/");
    assert_int_equal(r.status, 0);
    expect_line(r.out, "listener: web (0.0.0.0:8080, t.ini:1)");
    expect_line(r.out, "route:    narrow (t.ini:14) host *.api.example.com (suffix)...");
    expect_line(r.out, "why:      longer suffix *.api.example.com beats suffix *.example.com "
                       "(runner-up: wide)");
    expect_line(r.out, "  wide (t.ini:11): suffix *.example.com is shorter than "
                       "*.api.example.com");
    expect_line(r.out, "  root (t.ini:17): no host (any) loses to suffix *.api.example.com");
    expect_line(r.out, "upstream sees: GET /");
    run_free(&r);
}

/* SPEC: `path` beats `path_prefix`, whatever the prefix's length. */
static void test_exact_path_wins(void **state) {
    (void)state;
    struct run r = explain(HEAD "[route users]\n"            /* 11 */
                                "path = /api/users\n"        /* 12 */
                                "upstream = app\n"           /* 13 */
                                "[route api]\n"              /* 14 */
                                "path_prefix = /api/users\n" /* 15 */
                                "upstream = other\n",
                           "GET http://x:8080/api/users");
    assert_int_equal(r.status, 0);
    expect_line(r.out, "route:    users (t.ini:11) no host (any), path /api/users (exact), "
                       "methods any");
    expect_line(r.out,
                "why:      exact path /api/users beats path_prefix /api/users (runner-up: api)");
    expect_line(r.out, "upstream sees: GET /api/users");
    expect_line(r.out, "  api (t.ini:14): path_prefix /api/users loses to exact path "
                       "/api/users");
    run_free(&r);
}

/* The prefix without its slash is a 308 to it when only that prefix
 * would take it; a route's own timeouts are shown. */
static void test_slash_redirect_and_timeouts(void **state) {
    (void)state;
    const char *cfg = HEAD "[route api]\n"         /* 11 */
                           "path_prefix = /api/\n" /* 12 */
                           "upstream = app\n"      /* 13 */
                           "read_timeout = 90s\n"
                           "idle_timeout = 250ms\n";
    struct run r = explain(cfg, "GET http://x:8080/api?q=1");
    assert_int_equal(r.status, 0);
    expect_line(r.out, "route:    api (t.ini:11) path_prefix /api/ would take /api/");
    expect_line(r.out, "result:   308 to /api/?q=1 (the prefix without its slash)");
    run_free(&r);
    r = explain(cfg, "GET http://x:8080/api/x");
    expect_line(r.out, "timeouts: read_timeout 90s idle_timeout 250ms (the route's own)");
    expect_no(r.out, "prefix:");
    expect_no(r.out, "rewrite:");
    run_free(&r);
}

/* SPEC: a longer prefix beats a shorter one; prefixes end at a segment. */
static void test_longer_prefix_wins(void **state) {
    (void)state;
    const char *cfg = HEAD "[route short]\n"       /* 11 */
                           "path_prefix = /api\n"  /* 12 */
                           "upstream = other\n"    /* 13 */
                           "strip_prefix = on\n"   /* 14 */
                           "[route long]\n"        /* 15 */
                           "path_prefix = /api/\n" /* 16 */
                           "upstream = app\n";     /* 17 */
    struct run r = explain(cfg, "GET http://x:8080/api/v1");
    assert_int_equal(r.status, 0);
    expect_line(r.out, "route:    long (t.ini:15)...");
    expect_line(r.out,
                "why:      longest prefix /api/ (5 bytes) beats /api (4 bytes) (runner-up: short)");
    expect_line(r.out, "  short (t.ini:11): prefix /api is shorter than /api/");
    run_free(&r);

    r = explain(cfg, "GET http://x:8080/api");
    expect_line(r.out, "route:    short (t.ini:11)...");
    expect_line(r.out, "why:      the only route that matches");
    expect_line(r.out, "upstream sees: GET /   (strip_prefix /api)");
    expect_line(r.out, "did not match:");
    expect_line(r.out, "  long (t.ini:15): path differs (route: path_prefix /api/)");
    run_free(&r);

    r = explain(cfg, "GET http://x:8080/apix");
    assert_int_equal(r.status, 1);
    expect_line(r.out, "route:    none matched");
    expect_line(r.out, "result:   404: no route and no default upstream");
    expect_line(r.out, "  short (t.ini:11): path differs (route: path_prefix /api)");
    run_free(&r);
}

/* SPEC: a route with methods beats one without; a method outside the list
 * does not match. */
static void test_methods_win(void **state) {
    (void)state;
    const char *cfg = HEAD "[route read]\n"       /* 11 */
                           "methods = GET HEAD\n" /* 12 */
                           "upstream = app\n"     /* 13 */
                           "[route all]\n"        /* 14 */
                           "upstream = other\n";  /* 15 */
    struct run r = explain(cfg, "GET /x");
    assert_int_equal(r.status, 0);
    expect_line(r.out, "route:    read (t.ini:11) no host (any), path_prefix /, methods GET "
                       "HEAD");
    expect_line(r.out, "why:      methods GET HEAD beats any method (runner-up: all)");
    expect_line(r.out, "  all (t.ini:14): any method loses to methods GET HEAD");
    run_free(&r);

    r = explain(cfg, "POST /x");
    expect_line(r.out, "route:    all (t.ini:14)...");
    expect_line(r.out, "  read (t.ini:11): method POST not in GET HEAD");
    run_free(&r);
}

/* route.c's tie-break, which SPEC leaves open: fewer methods, then name. */
static void test_tie_breaks(void **state) {
    (void)state;
    struct run r = explain(HEAD "[route b]\n"              /* 11 */
                                "methods = GET PUT\n"      /* 12 */
                                "upstream = app\n"         /* 13 */
                                "[route a]\n"              /* 14 */
                                "methods = GET POST\n"     /* 15 */
                                "upstream = app\n"         /* 16 */
                                "[route c]\n"              /* 17 */
                                "methods = GET POST PUT\n" /* 18 */
                                "upstream = app\n",        /* 19 */
                           "GET /");
    expect_line(r.out, "route:    a (t.ini:14)...");
    expect_line(r.out, "why:      same rules; tie-break: name a < b (runner-up: b)");
    expect_line(r.out, "  b (t.ini:11): same rules; tie-break: name b > a");
    expect_line(r.out, "  c (t.ini:17): same host and path; tie-break: more methods (3 > 2)");
    run_free(&r);
}

/* The whole request must fit: a better host with the wrong path never wins. */
static void test_whole_request(void **state) {
    (void)state;
    struct run r = explain(HEAD "[route v2]\n"                 /* 11 */
                                "host = api.example.com\n"     /* 12 */
                                "path_prefix = /v2\n"          /* 13 */
                                "upstream = app\n"             /* 14 */
                                "[route admin]\n"              /* 15 */
                                "host = admin.example.com\n"   /* 16 */
                                "host = *.admin.example.com\n" /* 17 */
                                "methods = POST\n"             /* 18 */
                                "upstream = app\n"             /* 19 */
                                "[route root]\n"               /* 20 */
                                "upstream = other\n",          /* 21 */
                           "GET http://API.example.com.:8080/v1");
    assert_int_equal(r.status, 0);
    expect_line(r.out, "route:    root (t.ini:20)...");
    expect_line(r.out, "  v2 (t.ini:11): path differs (route: path_prefix /v2)");
    expect_line(r.out, "  admin (t.ini:15): host differs (route: admin.example.com, "
                       "*.admin.example.com); method GET not in POST");
    expect_no(r.out, "also matched");
    run_free(&r);
}

/* No route: the listener's default upstream takes it. */
static void test_listener_default(void **state) {
    (void)state;
    struct run r = explain("[listener web]\n"
                           "bind = :80\n"
                           "mode = http\n"
                           "upstream = app\n"
                           "[upstream app]\n" /* 5 */
                           "server = 10.0.0.1:80 backup\n"
                           "server = 10.0.0.2:80\n"
                           "balance = least_conn\n"
                           "[route api]\n" /* 9 */
                           "host = api.example.com\n"
                           "upstream = app\n",
                           "DELETE http://www.example.com/a?b");
    assert_int_equal(r.status, 0);
    expect_line(r.out, "listener: web (:80, t.ini:1)");
    expect_line(r.out, "route:    none matched: listener web's default upstream takes it");
    expect_line(r.out, "upstream: app (t.ini:5) least_conn: 10.0.0.1:80 backup, 10.0.0.2:80");
    expect_line(r.out, "upstream sees: DELETE /a?b");
    expect_line(r.out, "  api (t.ini:9): host differs (route: api.example.com)");
    expect_no(r.out, "port 80 matches no");
    run_free(&r);
}

/* No route and no default upstream: 404 and exit 1. */
static void test_no_route_no_default(void **state) {
    (void)state;
    struct run r = explain(HEAD "[route api]\n"
                                "host = api.example.com\n"
                                "upstream = app\n",
                           "GET /");
    assert_int_equal(r.status, 1);
    expect_line(r.out, "          no host (routes that name hosts cannot match), path /");
    expect_line(r.out, "listener: web (0.0.0.0:8080, t.ini:1)  [no port in the URL: showing "
                       "every http listener]");
    expect_line(r.out, "result:   404: no route and no default upstream");
    expect_line(r.out, "  api (t.ini:11): no host in request (route: api.example.com)");
    run_free(&r);
}

/* Only the listeners on the URL's port; routes bound elsewhere are named. */
static void test_listener_by_port(void **state) {
    (void)state;
    const char *cfg = "[listener web]\n"
                      "bind = 0.0.0.0:8080\n"
                      "mode = http\n"
                      "[listener admin]\n" /* 4 */
                      "bind = 127.0.0.1:9090\n"
                      "mode = http\n"
                      "[listener raw]\n" /* 7 */
                      "bind = 127.0.0.1:9091\n"
                      "mode = tcp\n"
                      "upstream = app\n"
                      "[upstream app]\n" /* 11 */
                      "server = 127.0.0.1:3000\n"
                      "[route web-only]\n" /* 13 */
                      "listener = web\n"
                      "upstream = app\n"
                      "[route ops]\n" /* 16 */
                      "listener = admin\n"
                      "path_prefix = /ops\n"
                      "upstream = app\n";
    struct run r = explain(cfg, "GET http://127.0.0.1:9090/ops/x");
    assert_int_equal(r.status, 0);
    expect_line(r.out, "listener: admin (127.0.0.1:9090, t.ini:4)");
    expect_no(r.out, "listener: web");
    expect_no(r.out, "listener: raw");
    expect_line(r.out, "route:    ops (t.ini:16)...");
    expect_line(r.out, "  web-only (t.ini:13): listener web only");
    run_free(&r);

    r = explain(cfg, "GET http://127.0.0.1:9091/"); /* the tcp port: every http listener */
    assert_int_equal(r.status, 0);
    expect_line(r.out, "listener: web (0.0.0.0:8080, t.ini:1)  [port 9091 matches no http "
                       "listener: showing every http listener]");
    expect_line(r.out, "listener: admin (127.0.0.1:9090, t.ini:4)  [port 9091...");
    expect_line(r.out, "result:   404: no route and no default upstream");
    run_free(&r);
}

/* Request text that is not 'METHOD URL': exit 1, a message on err. */
static void test_bad_request(void **state) {
    (void)state;
    static const char *const bad[] = {
        "",
        "GET",
        "GET    ",
        "/path",
        "G(ET /",
        "GET api.example.com/x",
        "GET http:///x",
        "GET http://:8080/x",
        "GET http://user@host/x",
        "GET http://host:0/",
        "GET http://host:65536/",
        "GET http://host:80x/",
        "GET ftp://host/",
        "GET http://[::1/",
        "GET http://host/a b",
        "GET http://host/a\x01",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct run r = explain(HEAD, bad[i]);
        if (r.status != 2 || strncmp(r.err, "ferry: --explain '", 18) != 0 ||
            !strstr(r.err, "expected 'METHOD http://") || r.out[0] != '\0') {
            print_message("request '%s': status %d\nerr: %sout: %s\n", bad[i], r.status, r.err,
                          r.out);
            fail();
        }
        run_free(&r);
    }
    /* https:// is a URL like any other, on port 443 unless it names one */
    struct run r = explain(HEAD, "GET https://x/");
    assert_int_not_equal(r.status, 2);
    assert_non_null(strstr(r.out, "host x, port 443, path /"));
    run_free(&r);
}

/* Edge forms that are fine: IPv6 host, fragment, blanks, OPTIONS *. */
static void test_request_forms(void **state) {
    (void)state;
    const char *cfg = HEAD "[route six]\n"
                           "host = [::1]\n"
                           "upstream = app\n";
    struct run r = explain(cfg, "  GET   http://[::1]:8080/x#frag  ");
    assert_int_equal(r.status, 0);
    expect_line(r.out, "request:  GET http://[::1]:8080/x#frag");
    expect_line(r.out, "          host [::1]:8080, port 8080, path /x");
    expect_line(r.out, "          (#fragment dropped: clients do not send it)");
    expect_line(r.out, "route:    six (t.ini:11) host [::1] (exact)...");
    run_free(&r);

    r = explain(HEAD "[route root]\nupstream = app\n", "OPTIONS *");
    assert_int_equal(r.status, 0);
    expect_line(r.out, "upstream sees: OPTIONS *");
    run_free(&r);

    r = explain(HEAD "[route root]\nupstream = app\n", "GET http://x:8080?q=1");
    expect_line(r.out, "upstream sees: GET /?q=1");
    run_free(&r);
}

/* The path is normalised before routing, as the proxy does it: the route
 * and the target upstream are the normalised path's, and the output says
 * the path was normalised; a path ferry refuses is a 400, routed nowhere. */
static void test_normalised_path(void **state) {
    (void)state;
    const char *cfg = HEAD "[route public]\n"         /* 11 */
                           "path_prefix = /public/\n" /* 12 */
                           "upstream = app\n"
                           "[route secret]\n" /* 14 */
                           "path_prefix = /secret/\n"
                           "upstream = other\n"
                           "strip_prefix = on\n";
    struct run r = explain(cfg, "GET /public/../secret/%7ex?q=/../y");
    assert_int_equal(r.status, 0);
    expect_line(r.out, "          no host (routes that name hosts cannot match), path /secret/~x "
                       "(normalised from /public/../secret/%7ex), query ?q=/../y");
    expect_line(r.out, "route:    secret (t.ini:14) no host (any), path_prefix /secret/, "
                       "methods any");
    expect_line(r.out, "upstream sees: GET /~x?q=/../y   (strip_prefix /secret/)");
    expect_line(r.out, "  public (t.ini:11): path differs (route: path_prefix /public/)");
    run_free(&r);

    r = explain(cfg, "GET http://h/a/../b");
    assert_int_equal(r.status, 1);
    expect_line(r.out, "          host h, port 80, path /b (normalised from /a/../b)");
    run_free(&r);

    r = explain(cfg, "GET /public/x"); /* nothing to normalise: nothing said */
    expect_line(r.out, "          no host (routes that name hosts cannot match), path /public/x");
    run_free(&r);

    r = explain(cfg, "GET /public/../../secret/x");
    assert_int_equal(r.status, 1);
    expect_line(r.out, "result:   400: path climbs above /");
    expect_no(r.out, "route:");
    run_free(&r);
}

/* route_explain reports every route of the table once, winner first among
 * the matched, and agrees with route_match. */
static void count_verdict(const struct route_verdict *v, void *arg) {
    size_t *counts = arg;
    counts[0]++;
    counts[1] += v->matched;
    counts[2] += v->won;
    if (v->matched && counts[1] == 1) assert_true(v->won);
}

static void test_route_explain_walk(void **state) {
    (void)state;
    struct config *cfg = load(HEAD "[route a]\nhost = api.example.com\nhost = *.example.com\n"
                                   "upstream = app\n"
                                   "[route b]\nhost = *.example.com\nupstream = app\n"
                                   "[route c]\nhost = other.org\nupstream = app\n"
                                   "[route d]\nupstream = app\n");
    struct route_table *t = route_table_build(cfg, &cfg->listeners[0]);
    size_t counts[3] = {0};
    const char *host = "api.example.com", *path = "/", *method = "GET";
    const struct config_route *w =
        route_explain(t, host, strlen(host), path, 1, method, 3, count_verdict, counts);
    assert_ptr_equal(w, route_match(t, host, strlen(host), path, 1, method, 3));
    assert_string_equal(w->name, "a");
    assert_int_equal(counts[0], 4); /* a once, though it sits in two buckets */
    assert_int_equal(counts[1], 3);
    assert_int_equal(counts[2], 1);
    route_table_free(t);
    config_free(cfg);
}

/* `SNI NAME[:PORT]`: the tcp listeners that route by sni, by the host rules;
 * "SNI /x" is still an HTTP request with the method SNI. */
static void test_sni(void **state) {
    (void)state;
    static const char cfg[] = "[listener tls]\nbind = :443\nmode = tcp\n"           /* 1-3 */
                              "[listener alt]\nbind = :8443\nmode = tcp\nupstream = d\n" /* 4-7 */
                              "[listener web]\nbind = :80\nupstream = d\n"           /* 8-10 */
                              "[upstream a]\nserver = 127.0.0.1:1\n"                /* 11-12 */
                              "[upstream d]\nserver = 127.0.0.1:2\n"                /* 13-14 */
                              "[route exact]\nlistener = tls\nsni = api.example.com\nupstream = a\n"
                              "[route wild]\nlistener = tls\nsni = *.example.com\nupstream = a\n"
                              "[route eu]\nlistener = tls\nsni = *.eu.example.com\nupstream = a\n"
                              "[route other]\nlistener = alt\nsni = x.test\nupstream = a\n";
    struct run r = explain(cfg, "SNI API.example.com:443");
    assert_int_equal(r.status, 0);
    expect_line(r.out, "request:  SNI api.example.com (the server name of a TLS ClientHello)");
    expect_line(r.out, "listener: tls (:443, t.ini:1)");
    expect_line(r.out, "route:    exact (t.ini:15) sni api.example.com (exact)");
    expect_line(r.out, "why:      exact sni api.example.com beats suffix *.example.com "
                       "(runner-up: wild)");
    expect_line(r.out, "upstream: a (t.ini:11) round_robin: 127.0.0.1:1");
    expect_line(r.out, "  wild (t.ini:19): *.example.com is a suffix match, exact sni "
                       "api.example.com wins");
    expect_line(r.out, "  eu (t.ini:23): sni differs (route: *.eu.example.com)");
    expect_no(r.out, "listener: alt");
    run_free(&r);
    r = explain(cfg, "SNI db.eu.example.com:443");
    expect_line(r.out, "route:    eu (t.ini:23) sni *.eu.example.com (suffix)");
    expect_line(r.out, "why:      longer suffix *.eu.example.com beats suffix *.example.com "
                       "(runner-up: wild)");
    run_free(&r);
    /* no port: every such listener; one closes, the other has a default */
    r = explain(cfg, "SNI nothing.test");
    assert_int_equal(r.status, 0);
    expect_line(r.out, "result:   closed: no sni route and no default upstream");
    expect_line(r.out, "route:    none matched: listener alt's default upstream takes it");
    run_free(&r);
    r = explain(cfg, "SNI nothing.test:443");
    assert_int_equal(r.status, 1);
    run_free(&r);
    r = explain(cfg, "SNI bad_name");
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "'SNI NAME[:PORT]'"));
    run_free(&r);
    r = explain(cfg, "SNI http://x.test/");
    expect_line(r.out, "request:  SNI http://x.test/");
    run_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_host_wins),     cmocka_unit_test(test_longer_suffix_wins),
        cmocka_unit_test(test_exact_path_wins),     cmocka_unit_test(test_longer_prefix_wins),
        cmocka_unit_test(test_slash_redirect_and_timeouts),
        cmocka_unit_test(test_methods_win),         cmocka_unit_test(test_tie_breaks),
        cmocka_unit_test(test_whole_request),       cmocka_unit_test(test_listener_default),
        cmocka_unit_test(test_no_route_no_default), cmocka_unit_test(test_listener_by_port),
        cmocka_unit_test(test_bad_request),         cmocka_unit_test(test_request_forms),
        cmocka_unit_test(test_route_explain_walk),  cmocka_unit_test(test_normalised_path),
        cmocka_unit_test(test_sni),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
