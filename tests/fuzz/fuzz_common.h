/* fuzz_common: what the libFuzzer targets share.
 *
 * FUZZ_CHECK states a property: when it does not hold, the target prints
 * which one and the input's size, then aborts, so libFuzzer saves the input
 * as a crash (the stack names the line). FUZZ_ROUTES is the route table the
 * request, response and route targets run against: a config loaded once,
 * with strip_prefix routes (a prefix ending in '/', one without, an exact path), header edits,
 * hosts (exact and suffix) and methods, as an operator would write them. */
#ifndef FERRY_FUZZ_COMMON_H
#define FERRY_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>

#include "ferry/config.h"
#include "ferry/route.h"

#define FUZZ_CHECK(cond, what)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz: property violated at %s:%d: %s (%s)\n", __FILE__, __LINE__,     \
                    what, #cond);                                                                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A property a reported, not yet fixed bug violates (each use names the
 * reproducer in tests/fuzz/crashers/). It aborts like FUZZ_CHECK, except in
 * a build with -DFUZZ_IGNORE_KNOWN (FUZZ_CFLAGS=-DFUZZ_IGNORE_KNOWN
 * tests/fuzz/build.sh ...), where the input is skipped instead, so a long
 * run keeps looking for new bugs rather than the known one. Use it in
 * LLVMFuzzerTestOneInput or where returning 0 skips the input. */
#ifdef FUZZ_IGNORE_KNOWN
#define FUZZ_KNOWN(cond, what)                                                                     \
    do {                                                                                           \
        if (!(cond)) return 0;                                                                     \
    } while (0)
#else
#define FUZZ_KNOWN(cond, what) FUZZ_CHECK(cond, what)
#endif

static const char fuzz_routes_ini[] = "[listener web]\n"
                                      "bind = 127.0.0.1:8080\n"
                                      "upstream = app\n"
                                      "[upstream app]\n"
                                      "server = 127.0.0.1:3000\n"
                                      "[route api]\n"
                                      "path_prefix = /api/\n"
                                      "strip_prefix = on\n"
                                      "upstream = app\n"
                                      "add_request_header = X-Env: prod\n"
                                      "remove_request_header = X-Debug\n"
                                      "remove_request_header = X-Request-Id\n"
                                      "add_response_header = X-Frame-Options: DENY\n"
                                      "[route short]\n"
                                      "path_prefix = /s\n"
                                      "strip_prefix = on\n"
                                      "upstream = app\n"
                                      "remove_request_header = Cookie\n"
                                      "[route exact]\n"
                                      "path = /exact\n"
                                      "upstream = app\n"
                                      "[route hosts]\n"
                                      "host = a.example.com\n"
                                      "host = *.example.com\n"
                                      "path_prefix = /h/\n"
                                      "methods = GET POST\n"
                                      "strip_prefix = on\n"
                                      "upstream = app\n"
                                      "add_request_header = X-Host-Route: yes\n"
                                      "[route hosts-any]\n"
                                      "host = *.b.example.com\n"
                                      "host = B.Example.org\n"
                                      "upstream = app\n"
                                      "[route put-only]\n"
                                      "path_prefix = /h/\n"
                                      "methods = PUT\n"
                                      "upstream = app\n"
                                      "[route ipv6]\n"
                                      "host = [::1]\n"
                                      "path = /\n"
                                      "upstream = app\n";

struct fuzz_routes {
    struct config *cfg;
    struct route_table *table;
};

/* Loaded on first use and kept for the process (LeakSanitizer does not
 * count what a static still points to). */
static inline const struct fuzz_routes *fuzz_routes(void) {
    static struct fuzz_routes r;
    if (!r.cfg) {
        struct config_errors errs = {0};
        r.cfg = config_load_string("fuzz-routes.ini", fuzz_routes_ini, &errs);
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "%s\n", errs.items[i]);
        config_errors_free(&errs);
        if (!r.cfg) abort();
        r.table = route_table_build(r.cfg, &r.cfg->listeners[0]);
    }
    return &r;
}

#endif
