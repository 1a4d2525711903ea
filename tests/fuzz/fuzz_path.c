/* fuzz_path: http_path_normalise on any bytes.
 *
 * Input: a path (any bytes; the proxy hands it what follows the method and
 * precedes the '?', which starts with '/' or is empty or "*"). Each input
 * is tried as it is and with a '/' in front, in exact-size heap copies, so
 * ASan sees any access outside the path.
 *
 * Properties (abort on violation):
 *  - a path not starting with '/' is left alone;
 *  - refused exactly when fuzz_ref_normalise (fuzz_common.h, a stack of
 *    segments) refuses, and then the length is left unchanged; accepted,
 *    the result is the reference's, byte for byte;
 *  - the result is never longer than the input, starts with '/', has no
 *    "//", no "." or ".." segment, no '%' without two hex digits after it
 *    and no escape of an unreserved character or of NUL;
 *  - normalising the result again changes nothing. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "ferry/http_path.h"
#include "fuzz_common.h"

/* The shape every normalised path has. */
static void check_shape(const char *p, size_t n) {
    FUZZ_CHECK(n >= 1 && p[0] == '/', "starts with '/'");
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '/') {
            FUZZ_CHECK(i + 1 == n || p[i + 1] != '/', "no '//'");
            size_t j = i + 1;
            while (j < n && p[j] != '/')
                j++;
            size_t len = j - i - 1;
            bool dots = len >= 1 && len <= 2 && memcmp(p + i + 1, "..", len) == 0;
            FUZZ_CHECK(!dots, "no '.' or '..' segment");
        } else if (p[i] == '%') {
            FUZZ_CHECK(i + 2 < n && fuzz_hex(p[i + 1]) >= 0 && fuzz_hex(p[i + 2]) >= 0,
                       "every '%' starts an escape");
            int c = fuzz_hex(p[i + 1]) * 16 + fuzz_hex(p[i + 2]);
            FUZZ_CHECK(c != 0 && !fuzz_unreserved(c),
                       "no escape of NUL or of an unreserved character");
        }
    }
}

/* One path: normalised in an exact-size copy, compared with the reference. */
static void check_path(const char *in, size_t n) {
    char *p = malloc(n ? n : 1), *want = malloc(n ? n : 1);
    FUZZ_CHECK(p && want, "memory");
    memcpy(p, in, n);
    size_t len = n;
    const char *why = http_path_normalise(p, &len);
    long ref = fuzz_ref_normalise(in, n, want);
    if (why) {
        FUZZ_CHECK(ref < 0, "refused only what the reference refuses");
        FUZZ_CHECK(len == n, "a refused path yields no length");
        FUZZ_CHECK(n > 0 && in[0] == '/', "only a path is refused");
        free(p);
        free(want);
        return;
    }
    FUZZ_CHECK(ref >= 0, "accepted only what the reference accepts");
    FUZZ_CHECK(len <= n, "never longer");
    FUZZ_CHECK(len == (size_t)ref && memcmp(p, want, len) == 0, "the reference's result");
    if (n == 0 || in[0] != '/') {
        FUZZ_CHECK(len == n && memcmp(p, in, n) == 0, "not a path: left alone");
    } else {
        check_shape(p, len);
        size_t again = len;
        FUZZ_CHECK(http_path_normalise(p, &again) == NULL && again == len &&
                       memcmp(p, want, len) == 0,
                   "normalising twice changes nothing");
    }
    free(p);
    free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_path((const char *)data, size);
    char *slashed = malloc(size + 1);
    FUZZ_CHECK(slashed, "memory");
    slashed[0] = '/';
    memcpy(slashed + 1, data, size);
    check_path(slashed, size + 1);
    free(slashed);
    return 0;
}
