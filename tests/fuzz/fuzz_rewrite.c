/* fuzz_rewrite: http_rewrite_location and http_rewrite_cookie on any bytes.
 *
 * Input: the first byte picks the header (even: Location, odd: Set-Cookie)
 * and the request (bit 1: with a Host, else HTTP/1.0 without one); the rest
 * is the value as an upstream sent it, in an exact-size heap copy so ASan
 * sees any read past it.
 *
 * Properties (abort on violation):
 *  - the result fits the room it was given, and a value is changed only
 *    into one that holds the prefix (a cookie) or starts with the prefix or
 *    the client's scheme and host (a location);
 *  - rewriting the result again changes nothing: a value already in the
 *    client's view (an app that knows its prefix) is never prefixed twice. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "ferry/http_rewrite.h"
#include "fuzz_common.h"

typedef size_t rewrite_fn(const struct http_rewrite *, const char *, size_t, char *, size_t);

static size_t starts(const char *p, size_t n, const char *lit) {
    size_t l = strlen(lit);
    return n >= l && memcmp(p, lit, l) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    struct http_rewrite rw = {
        .scheme = "https",
        .host = (data[0] & 2) ? "ferry.test:8443" : NULL,
        .host_len = (data[0] & 2) ? 15 : 0,
        .prefix = "/api",
        .prefix_len = 4,
        .up_host = "127.0.0.1",
        .up_port = 8002,
    };
    bool cookie = data[0] & 1;
    rewrite_fn *fn = cookie ? http_rewrite_cookie : http_rewrite_location;
    size_t n = size - 1;
    char *v = malloc(n ? n : 1);
    FUZZ_CHECK(v, "memory");
    memcpy(v, data + 1, n);
    size_t cap = n + 64;
    char *out = malloc(cap);
    FUZZ_CHECK(out, "memory");
    memset(out, 0x5a, cap);
    size_t got = fn(&rw, v, n, out, cap - 32);
    FUZZ_CHECK(got <= cap - 32, "the result fits its room");
    for (size_t i = cap - 32; i < cap; i++) FUZZ_CHECK(out[i] == 0x5a, "nothing written past the room");
    if (got > 0) {
        if (cookie)
            FUZZ_CHECK(memmem(out, got, "=/api", 5) != NULL, "a changed cookie has the prefix");
        else
            FUZZ_CHECK(starts(out, got, "/api") || starts(out, got, "https://ferry.test:8443/"),
                       "a changed location is under the prefix or the client's host");
        char *again = malloc(got);
        FUZZ_CHECK(again, "memory");
        memcpy(again, out, got);
        char *out2 = malloc(got + 64);
        FUZZ_CHECK(out2, "memory");
        size_t got2 = fn(&rw, again, got, out2, got + 64);
        FUZZ_CHECK(got2 == 0 || (got2 == got && memcmp(out2, again, got) == 0),
                   "rewriting twice changes nothing");
        free(again);
        free(out2);
    }
    free(v);
    free(out);
    return 0;
}
