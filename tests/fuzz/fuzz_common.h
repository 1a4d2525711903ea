/* fuzz_common: what the libFuzzer targets share.
 *
 * FUZZ_CHECK states a property: when it does not hold, the target prints
 * which one and the input's size, then aborts, so libFuzzer saves the input
 * as a crash (the stack names the line). FUZZ_ROUTES is the route table the
 * request, response and route targets run against: a config loaded once,
 * with strip_prefix routes (a prefix ending in '/', one without, an exact path), header edits,
 * hosts (exact and suffix) and methods, as an operator would write them.
 * fuzz_ref_normalise is the reference the request and path targets hold
 * http_path_normalise to. */
#ifndef FERRY_FUZZ_COMMON_H
#define FERRY_FUZZ_COMMON_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A hex digit's value, or -1: written again here rather than taken from
 * util_hex_digit, so that the reference below shares no code with what it
 * checks. */
static inline int fuzz_hex(char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* RFC 3986 unreserved: ALPHA DIGIT - . _ ~ */
static inline bool fuzz_unreserved(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("-._~", c));
}

/* A reference for http_path_normalise, written the obvious way and apart
 * from it: decode the unreserved escapes into a copy, split the copy on
 * '/', keep a stack of segments ("." is skipped, ".." pops), join. OUT has
 * room for N bytes. Returns the length of the result, or -1 for a path the
 * proxy must refuse (a broken escape, %00, a ".." with nothing to pop). A
 * path not starting with '/' is copied as is. */
static inline long fuzz_ref_normalise(const char *in, size_t n, char *out) {
    if (n == 0 || in[0] != '/') {
        memcpy(out, in, n);
        return (long)n;
    }
    char *dec = malloc(n), **seg = malloc(n * sizeof(*seg));
    size_t *seglen = malloc(n * sizeof(*seglen)), d = 0, top = 0;
    FUZZ_CHECK(dec && seg && seglen, "memory");
    long result = -1;
    for (size_t i = 0; i < n; i++) {
        if (in[i] != '%') {
            dec[d++] = in[i];
            continue;
        }
        if (i + 2 >= n || fuzz_hex(in[i + 1]) < 0 || fuzz_hex(in[i + 2]) < 0) goto out;
        int c = fuzz_hex(in[i + 1]) * 16 + fuzz_hex(in[i + 2]);
        if (c == 0) goto out;
        if (fuzz_unreserved(c)) {
            dec[d++] = (char)c;
            i += 2;
        } else {
            dec[d++] = in[i];
        }
    }
    bool trailing = false; /* the last segment was "", "." or ".." */
    for (size_t i = 1; i <= d;) {
        size_t j = i;
        while (j < d && dec[j] != '/')
            j++;
        size_t len = j - i;
        trailing = len == 0 || (len <= 2 && memcmp(dec + i, "..", len) == 0);
        if (len == 2 && trailing) {
            if (top == 0) goto out;
            top--;
        } else if (!trailing) {
            seg[top] = dec + i;
            seglen[top++] = len;
        }
        i = j + 1;
    }
    size_t o = 0;
    for (size_t k = 0; k < top; k++) {
        out[o++] = '/';
        memcpy(out + o, seg[k], seglen[k]);
        o += seglen[k];
    }
    if (top == 0 || trailing) out[o++] = '/';
    result = (long)o;
out:
    free(dec);
    free(seg);
    free(seglen);
    return result;
}

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
