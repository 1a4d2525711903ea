/* Unit tests for http_rewrite.c: Location, Content-Location and Set-Cookie
 * Path under a stripped prefix, table driven. Values are passed in
 * exact-size heap copies without a NUL, so the sanitizer catches a read
 * past the given length. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/http_rewrite.h"

/* A request for http://ferry.test:8080/api/... to an app at 127.0.0.1:8002. */
static const struct http_rewrite api = {
    .scheme = "http",
    .host = "ferry.test:8080",
    .host_len = 15,
    .prefix = "/api",
    .prefix_len = 4,
    .up_host = "127.0.0.1",
    .up_port = 8002,
};

struct rcase {
    const char *in;
    const char *want; /* NULL: left as it is */
};

typedef size_t rewrite_fn(const struct http_rewrite *, const char *, size_t, char *, size_t);

static void check(const struct http_rewrite *rw, rewrite_fn *fn, const struct rcase *cases,
                  size_t n) {
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(cases[i].in);
        char *v = malloc(len ? len : 1);
        assert_non_null(v);
        memcpy(v, cases[i].in, len);
        char out[512];
        size_t got = fn(rw, v, len, out, sizeof(out));
        if (!cases[i].want) {
            if (got != 0) fail_msg("'%s' became '%.*s', want it left alone", cases[i].in, (int)got, out);
        } else if (got != strlen(cases[i].want) || memcmp(out, cases[i].want, got) != 0) {
            fail_msg("'%s' became '%.*s', want '%s'", cases[i].in, (int)got, out, cases[i].want);
        }
        free(v);
    }
}

#define CHECK(rw, fn, cases) check(rw, fn, cases, sizeof(cases) / sizeof(cases[0]))

static void test_location(void **state) {
    (void)state;
    static const struct rcase cases[] = {
        /* the upstream's own address, with or without the default port */
        {"http://127.0.0.1:8002/sub/", "http://ferry.test:8080/api/sub/"},
        {"HTTP://127.0.0.1:8002/sub/?a=1#f", "http://ferry.test:8080/api/sub/?a=1#f"},
        {"http://127.0.0.1:8002", "http://ferry.test:8080/api/"},
        {"http://127.0.0.1:8002?q", "http://ferry.test:8080/api/?q"},
        {"http://127.0.0.1/x", NULL}, /* port 80 is not the app's 8002 */
        /* the request's Host, any case */
        {"http://FERRY.test:8080/x", "http://ferry.test:8080/api/x"},
        {"https://ferry.test:8080/x", "http://ferry.test:8080/api/x"},
        {"//ferry.test:8080/np", "http://ferry.test:8080/api/np"},
        /* paths */
        {"/login?next=/a", "/api/login?next=/a"},
        {"/", "/api/"},
        {"/apix", "/api/apix"},
        /* already under the prefix: an app that knows it */
        {"/api", NULL},
        {"/api/", NULL},
        {"/api?x", NULL},
        {"/api#x", NULL},
        {"http://ferry.test:8080/api/done", "http://ferry.test:8080/api/done"},
        /* not ours */
        {"https://elsewhere.example/x", NULL},
        {"http://user@ferry.test:8080/x", NULL},
        {"ftp://127.0.0.1:8002/x", NULL},
        {"sub/", NULL},
        {"../up", NULL},
        {"?q=1", NULL},
        {"", NULL},
        {"http:", NULL},
        {"http://", NULL},
        {"//", NULL},
        {"mailto:a@b", NULL},
    };
    CHECK(&api, http_rewrite_location, cases);
}

static void test_location_https_v6(void **state) {
    (void)state;
    struct http_rewrite rw = api;
    rw.scheme = "https";
    rw.host = "example.com";
    rw.host_len = 11;
    rw.up_host = "::1";
    rw.up_port = 443;
    static const struct rcase cases[] = {
        {"http://example.com/x", "https://example.com/api/x"},
        {"https://[::1]:443/x", "https://example.com/api/x"},
        {"https://[::1]/x", "https://example.com/api/x"}, /* 443 is https's own */
        {"http://[::1]/x", NULL},                         /* 80 is not */
        {"http://::1/x", NULL},
    };
    CHECK(&rw, http_rewrite_location, cases);
}

static void test_location_no_host_no_prefix(void **state) {
    (void)state;
    struct http_rewrite rw = api;
    rw.host = NULL;
    rw.host_len = 0; /* HTTP/1.0 without Host: a path the client resolves */
    static const struct rcase cases[] = {
        {"http://127.0.0.1:8002/sub/", "/api/sub/"},
        {"http://ferry.test:8080/x", NULL},
    };
    CHECK(&rw, http_rewrite_location, cases);
    rw = api;
    rw.prefix = "";
    rw.prefix_len = 0; /* rewrite_redirects on a route that strips nothing */
    rw.scheme = "https";
    static const struct rcase bare[] = {
        {"http://127.0.0.1:8002/sub/", "https://ferry.test:8080/sub/"},
        {"http://ferry.test:8080/", "https://ferry.test:8080/"},
        {"/x", NULL},
    };
    CHECK(&rw, http_rewrite_location, bare);
    rw.up_host = NULL; /* a unix socket has no address to match */
    static const struct rcase unix_up[] = {{"http://127.0.0.1:8002/sub/", NULL}};
    CHECK(&rw, http_rewrite_location, unix_up);
}

static void test_cookie(void **state) {
    (void)state;
    static const struct rcase cases[] = {
        {"sid=1; Path=/; HttpOnly", "sid=1; Path=/api; HttpOnly"},
        {"a=2; Max-Age=60; path=/x", "a=2; Max-Age=60; path=/api/x"},
        {"a=2;PATH=/x/y ;Secure", "a=2;PATH=/api/x/y ;Secure"},
        {"b=3; Path=/api/y", NULL},
        {"b=3; Path=/api", NULL},
        {"c=4", NULL},
        {"c=4; Domain=x.test", NULL},
        {"d=5; Path=", NULL},
        {"d=5; Path=relative", NULL},
        {"e=Path=/x", NULL}, /* the cookie's value, not an attribute */
        {"", NULL},
        {";", NULL},
        {"f=6; Pathx=/x", NULL},
    };
    CHECK(&api, http_rewrite_cookie, cases);
    struct http_rewrite rw = api;
    rw.prefix_len = 0;
    static const struct rcase none[] = {{"sid=1; Path=/", NULL}};
    CHECK(&rw, http_rewrite_cookie, none);
}

/* A new value that does not fit is no value: the original stays. */
static void test_no_room(void **state) {
    (void)state;
    char out[16];
    assert_int_equal(http_rewrite_location(&api, "/login", 6, out, 9), 0);
    assert_int_equal(http_rewrite_location(&api, "/login", 6, out, 10), 10);
    assert_memory_equal(out, "/api/login", 10);
    assert_int_equal(http_rewrite_cookie(&api, "a=1; Path=/", 11, out, 13), 0);
    assert_int_equal(http_rewrite_cookie(&api, "a=1; Path=/", 11, out, 14), 14);
    assert_memory_equal(out, "a=1; Path=/api", 14);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_location),
        cmocka_unit_test(test_location_https_v6),
        cmocka_unit_test(test_location_no_host_no_prefix),
        cmocka_unit_test(test_cookie),
        cmocka_unit_test(test_no_room),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
