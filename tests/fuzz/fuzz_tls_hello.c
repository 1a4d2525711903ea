/* fuzz_tls_hello: any bytes as the start of a connection to a tcp listener
 * with sni routes, through tls_hello_parse.
 *
 * Input: byte 0 picks a split point (as a fraction of the rest); the rest
 * is the client's bytes. Properties (abort on violation):
 *  - the verdict is one of the five; FOUND carries a name of 1..253 bytes,
 *    lower-case letters, digits, '-' and '.', no empty label, NUL-ended;
 *  - one read of everything = two reads split at the chosen point = one
 *    byte per read: same verdict, same name;
 *  - a verdict never changes with more bytes: fed one byte at a time, the
 *    first verdict other than NEED_MORE is the one every later call returns;
 *  - NEED_MORE only while fewer than TLS_HELLO_MAX bytes have come. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/tls_hello.h"
#include "fuzz_common.h"

static void check_name(const struct tls_hello *h) {
    FUZZ_CHECK(h->name_len >= 1 && h->name_len <= TLS_HELLO_NAME_MAX, "name length");
    FUZZ_CHECK(h->name[h->name_len] == '\0' && strlen(h->name) == h->name_len, "NUL-ended");
    size_t label = 0;
    for (size_t i = 0; i < h->name_len; i++) {
        char c = h->name[i];
        FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.',
                   "name bytes are lower-case LDH");
        if (c == '.') {
            FUZZ_CHECK(label > 0, "no empty label");
            label = 0;
        } else {
            label++;
        }
    }
    FUZZ_CHECK(label > 0, "no trailing dot");
}

static bool same(const struct tls_hello *a, const struct tls_hello *b) {
    if (a->verdict != b->verdict) return false;
    return a->verdict != TLS_HELLO_FOUND || strcmp(a->name, b->name) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    size_t n = size - 1;
    size_t cut = n * data[0] / 255;
    uint8_t *buf = malloc(n ? n : 1); /* exact size: overreads show */
    FUZZ_CHECK(buf, "memory");
    memcpy(buf, data + 1, n);

    struct tls_hello whole;
    tls_hello_init(&whole);
    enum tls_hello_verdict v = tls_hello_parse(&whole, buf, n);
    FUZZ_CHECK(v <= TLS_HELLO_MALFORMED && v == whole.verdict, "a verdict");
    FUZZ_CHECK(v != TLS_HELLO_NEED_MORE || n < TLS_HELLO_MAX, "decided by 16 KiB");
    if (v == TLS_HELLO_FOUND) check_name(&whole);
    FUZZ_CHECK(tls_hello_parse(&whole, buf, n) == v, "asking again changes nothing");

    struct tls_hello two;
    tls_hello_init(&two);
    enum tls_hello_verdict first = tls_hello_parse(&two, buf, cut);
    FUZZ_CHECK(first == TLS_HELLO_NEED_MORE || first == v, "a verdict on a prefix is final");
    FUZZ_CHECK(tls_hello_parse(&two, buf, n) == v && same(&two, &whole),
               "two reads give what one read gives");

    struct tls_hello inc;
    tls_hello_init(&inc);
    enum tls_hello_verdict decided = TLS_HELLO_NEED_MORE;
    for (size_t i = 0; i <= n; i++) {
        enum tls_hello_verdict r = tls_hello_parse(&inc, buf, i);
        if (decided != TLS_HELLO_NEED_MORE)
            FUZZ_CHECK(r == decided, "a verdict never changes with more bytes");
        decided = r;
    }
    FUZZ_CHECK(same(&inc, &whole), "byte by byte gives what one read gives");
    free(buf);
    return 0;
}
