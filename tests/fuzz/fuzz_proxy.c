/* fuzz_proxy: any bytes as the start of a connection to a listener with
 * `proxy_protocol = on`, through proxy_header_parse.
 *
 * Properties (abort on violation):
 *  - the result is PROXY_MALFORMED, PROXY_NEED_MORE, or a length R with
 *    0 < R <= len and R <= PROXY_HEADER_MAX;
 *  - a header of R bytes is the same header when parsed from exactly its R
 *    bytes, and every shorter prefix of it is PROXY_NEED_MORE (the parser
 *    decides on what it was given, never on bytes past the header);
 *  - a verdict, once reached at some length, does not change with more
 *    bytes: cutting the input at every length gives PROXY_NEED_MORE, then
 *    the verdict of the whole input from there on;
 *  - the addresses parsed, written back with proxy_header_write_v1 and
 *    _v2, parse again to the same addresses (LOCAL/UNKNOWN stay local). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "ferry/proxy_proto.h"
#include "fuzz_common.h"

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
    if (a->ss_family != b->ss_family) return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return true;
}

static bool same_header(const struct proxy_header *a, const struct proxy_header *b) {
    if (a->version != b->version || a->local != b->local) return false;
    return a->local || (same_addr(&a->src, &b->src) && same_addr(&a->dst, &b->dst));
}

/* Writes H back with WRITE and parses the result. */
static void check_roundtrip(const struct proxy_header *h, int version,
                            size_t (*write)(char *, size_t, const struct sockaddr *,
                                            const struct sockaddr *)) {
    char out[PROXY_HEADER_MAX];
    size_t n = h->local ? write(out, sizeof(out), NULL, NULL)
                        : write(out, sizeof(out), (const struct sockaddr *)&h->src,
                                (const struct sockaddr *)&h->dst);
    FUZZ_CHECK(n > 0, "a parsed header can be written");
    char *copy = malloc(n);
    FUZZ_CHECK(copy, "memory");
    memcpy(copy, out, n);
    struct proxy_header back;
    memset(&back, 0xa5, sizeof(back));
    int r = proxy_header_parse(copy, n, &back);
    FUZZ_CHECK(r == (int)n, "what the writer wrote parses whole");
    FUZZ_CHECK(back.version == version && back.local == h->local, "same version and command");
    FUZZ_CHECK(h->local || (same_addr(&back.src, &h->src) && same_addr(&back.dst, &h->dst)),
               "same addresses after a round trip");
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size ? size : 1); /* exact size: overreads show */
    FUZZ_CHECK(buf, "memory");
    memcpy(buf, data, size);
    struct proxy_header h;
    memset(&h, 0x5a, sizeof(h));
    int r = proxy_header_parse(buf, size, &h);
    FUZZ_CHECK(r == PROXY_MALFORMED || r == PROXY_NEED_MORE ||
                   (r > 0 && (size_t)r <= size && r <= PROXY_HEADER_MAX),
               "result in range");
    FUZZ_CHECK(size > 0 || r == PROXY_NEED_MORE, "nothing yet is a valid prefix");

    /* Every shorter cut: NEED_MORE up to where the verdict is reached. */
    size_t limit = size < PROXY_HEADER_MAX + 8 ? size : PROXY_HEADER_MAX + 8;
    int first_verdict = PROXY_NEED_MORE;
    for (size_t cut = 0; cut <= limit; cut++) {
        char *part = malloc(cut ? cut : 1);
        FUZZ_CHECK(part, "memory");
        memcpy(part, buf, cut);
        struct proxy_header p;
        int rc = proxy_header_parse(part, cut, &p);
        free(part);
        if (first_verdict == PROXY_NEED_MORE) {
            first_verdict = rc;
            if (rc > 0) {
                FUZZ_CHECK((size_t)rc == cut, "a header is complete at its last byte");
                FUZZ_CHECK(r == rc && same_header(&p, &h), "the same header from its own bytes");
            }
            continue;
        }
        /* Once decided, more bytes do not change the verdict. */
        FUZZ_CHECK(rc == first_verdict, "a verdict does not change with more bytes");
        if (rc > 0) FUZZ_CHECK(same_header(&p, &h), "the same header with more bytes");
    }
    if (size <= limit) FUZZ_CHECK(r == first_verdict, "consistent verdict");

    if (r > 0) {
        FUZZ_CHECK(h.version == 1 || h.version == 2, "a version");
        if (!h.local) {
            int fam = h.src.ss_family;
            FUZZ_CHECK((fam == AF_INET || fam == AF_INET6) && h.dst.ss_family == fam, "one family");
        }
        check_roundtrip(&h, 1, proxy_header_write_v1);
        check_roundtrip(&h, 2, proxy_header_write_v2);
    }
    free(buf);
    return 0;
}
