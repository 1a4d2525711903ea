/* Unit tests for tls_hello.c: ClientHellos captured from openssl s_client
 * and python's ssl module, hellos built here byte by byte (split into
 * records of every size, oversized, with each length wrong in turn), and
 * inputs that are no TLS at all. Every input is fed whole, in two parts at
 * every split point, and one byte at a time: the verdict must not differ. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/tls_hello.h"

#ifndef FERRY_TEST_DATA
#error "FERRY_TEST_DATA must name tests/data"
#endif

#define BIG (40 * 1024)

/* --- feeding -------------------------------------------------------------- */

/* One parse of DATA[0, LEN) from a heap copy of exactly that size, so that
 * a read past LEN shows under AddressSanitizer. */
static enum tls_hello_verdict feed(struct tls_hello *h, const uint8_t *data, size_t len) {
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, data, len);
    enum tls_hello_verdict v = tls_hello_parse(h, copy, len);
    free(copy);
    return v;
}

/* Parses DATA whole, then checks that a split at every point and a byte at
 * a time give the same verdict and name, and that no verdict is reached
 * before the one byte that decides it and then changes. Returns the verdict;
 * *H is the whole parse. */
static enum tls_hello_verdict parse_all_ways(const uint8_t *data, size_t len,
                                             struct tls_hello *h) {
    tls_hello_init(h);
    enum tls_hello_verdict whole = feed(h, data, len);
    struct tls_hello inc;
    tls_hello_init(&inc);
    size_t decided = 0;
    for (size_t i = 0; i <= len; i++) {
        enum tls_hello_verdict v = feed(&inc, data, i);
        if (decided == 0 && v != TLS_HELLO_NEED_MORE) decided = i;
        if (decided == 0) continue;
        if (v != whole) fail_msg("byte by byte, %zu bytes: %d, whole: %d", i, v, whole);
    }
    if (whole != TLS_HELLO_NEED_MORE) assert_true(decided > 0);
    assert_int_equal(inc.verdict, whole);
    if (whole == TLS_HELLO_FOUND) assert_string_equal(inc.name, h->name);
    for (size_t cut = 0; cut <= len; cut += len > 2000 ? 97 : 1) {
        struct tls_hello two;
        tls_hello_init(&two);
        enum tls_hello_verdict first = feed(&two, data, cut);
        if (first != TLS_HELLO_NEED_MORE) assert_int_equal(first, whole);
        enum tls_hello_verdict v = feed(&two, data, len);
        if (v != whole) fail_msg("split at %zu of %zu: %d, whole: %d", cut, len, v, whole);
        if (v == TLS_HELLO_FOUND) assert_string_equal(two.name, h->name);
    }
    return whole;
}

static void assert_verdict(const uint8_t *data, size_t len, enum tls_hello_verdict want) {
    struct tls_hello h;
    enum tls_hello_verdict v = parse_all_ways(data, len, &h);
    if (v != want)
        fail_msg("verdict %s (%s), want %s", tls_hello_verdict_name(v), h.why ? h.why : "-",
                 tls_hello_verdict_name(want));
}

static void assert_found(const uint8_t *data, size_t len, const char *name) {
    struct tls_hello h;
    enum tls_hello_verdict v = parse_all_ways(data, len, &h);
    if (v != TLS_HELLO_FOUND)
        fail_msg("verdict %s (%s), want found %s", tls_hello_verdict_name(v),
                 h.why ? h.why : "-", name);
    assert_string_equal(h.name, name);
    assert_int_equal(h.name_len, strlen(name));
}

/* --- captured hellos ---------------------------------------------------------- */

static size_t load(const char *name, uint8_t *out, size_t cap) {
    char path[512];
    snprintf(path, sizeof(path), "%s/tls/%s", FERRY_TEST_DATA, name);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    size_t n = fread(out, 1, cap, f);
    fclose(f);
    assert_true(n > 0 && n < cap);
    return n;
}

static void test_captured(void **state) {
    (void)state;
    static uint8_t buf[BIG];
    size_t n = load("clienthello-openssl-sni.bin", buf, sizeof(buf));
    assert_found(buf, n, "api.example.com");
    n = load("clienthello-openssl-tls12.bin", buf, sizeof(buf)); /* -servername Www.Example.ORG */
    assert_found(buf, n, "www.example.org");
    n = load("clienthello-python-sni.bin", buf, sizeof(buf));
    assert_found(buf, n, "db.internal.example.net");
    n = load("clienthello-openssl-nosni.bin", buf, sizeof(buf));
    assert_verdict(buf, n, TLS_HELLO_NO_SNI);
    n = load("clienthello-python-nosni.bin", buf, sizeof(buf));
    assert_verdict(buf, n, TLS_HELLO_NO_SNI);
}

/* Bytes after the hello (a client that pipelines early data, or garbage)
 * change nothing: the verdict was reached at the hello's last byte. */
static void test_bytes_after_hello(void **state) {
    (void)state;
    static uint8_t buf[BIG];
    size_t n = load("clienthello-openssl-sni.bin", buf, sizeof(buf));
    struct tls_hello h;
    tls_hello_init(&h);
    assert_int_equal(feed(&h, buf, n - 1), TLS_HELLO_NEED_MORE);
    memset(buf + n, 'x', 100);
    assert_int_equal(feed(&h, buf, n + 100), TLS_HELLO_FOUND);
    assert_string_equal(h.name, "api.example.com");
    assert_int_equal(feed(&h, buf, n + 100), TLS_HELLO_FOUND);
}

/* --- built hellos --------------------------------------------------------- */

struct out {
    uint8_t b[BIG];
    size_t n;
};

static void put(struct out *o, const void *p, size_t n) {
    assert_true(o->n + n <= sizeof(o->b));
    memcpy(o->b + o->n, p, n);
    o->n += n;
}
static void put8(struct out *o, unsigned v) {
    uint8_t b = (uint8_t)v;
    put(o, &b, 1);
}
static void put16(struct out *o, unsigned v) {
    put8(o, v >> 8);
    put8(o, v);
}
static void put24(struct out *o, unsigned v) {
    put8(o, v >> 16);
    put16(o, v);
}

/* What a built hello looks like; zero is a valid hello with no SNI. Each
 * *_delta is added to that length field as written, to make it lie. */
struct spec {
    const char *sni;    /* host_name to send, or NULL: no server_name */
    size_t sni_len;     /* bytes of sni (it may hold a NUL); 0: strlen */
    int sni_len_delta;  /* HostName length */
    int list_delta;     /* server_name_list length */
    int ext_sni_delta;  /* the server_name extension's length */
    int exts_delta;     /* the extensions block's length */
    int hs_delta;       /* the handshake length */
    unsigned name_type; /* NameType of the entry (0 host_name) */
    bool two_names;     /* a second host_name entry in the list */
    bool dup_sni;       /* the server_name extension twice */
    bool dup_other;     /* another extension twice */
    bool no_exts;       /* no extensions block at all (TLS 1.2 style) */
    int sid_len;        /* session id bytes (-1: 32, the usual) */
    int suites_len;     /* cipher suite bytes (0: 4) */
    int suites_delta;   /* their length field */
    int comp_len;       /* compression method bytes (-1: 1) */
    size_t pad;         /* bytes of a padding extension (RFC 7685) */
    unsigned hs_type;   /* handshake type (0: 1 ClientHello) */
    unsigned major;     /* client_version major (0: 3) */
};

static void put_sni_ext(struct out *o, const struct spec *s) {
    size_t n = s->sni_len ? s->sni_len : strlen(s->sni);
    size_t entry = 1 + 2 + n;
    size_t list = s->two_names ? 2 * entry : entry;
    put16(o, 0);
    put16(o, (unsigned)((int)(2 + list) + s->ext_sni_delta));
    put16(o, (unsigned)((int)list + s->list_delta));
    for (int i = 0; i < (s->two_names ? 2 : 1); i++) {
        put8(o, s->name_type);
        put16(o, (unsigned)((int)n + s->sni_len_delta));
        put(o, s->sni, n);
    }
}

/* The handshake message (header included) S describes. */
static void build_handshake(struct out *hs, const struct spec *s) {
    struct out body = {.n = 0};
    put8(&body, s->major ? s->major : 3);
    put8(&body, 3);
    for (int i = 0; i < 32; i++)
        put8(&body, (unsigned)i);
    int sid = s->sid_len < 0 ? 32 : s->sid_len;
    put8(&body, (unsigned)sid);
    for (int i = 0; i < sid && i < 255; i++)
        put8(&body, 0xaa);
    int suites = s->suites_len ? s->suites_len : 4;
    put16(&body, (unsigned)(suites + s->suites_delta));
    for (int i = 0; i < suites; i++)
        put8(&body, 0x13);
    int comp = s->comp_len < 0 ? 1 : s->comp_len;
    put8(&body, (unsigned)comp);
    for (int i = 0; i < comp; i++)
        put8(&body, 0);
    if (!s->no_exts) {
        struct out ext = {.n = 0};
        put16(&ext, 0x000b); /* ec_point_formats */
        put16(&ext, 2);
        put16(&ext, 0x0100);
        if (s->sni) put_sni_ext(&ext, s);
        if (s->sni && s->dup_sni) put_sni_ext(&ext, s);
        if (s->dup_other) {
            put16(&ext, 0x000b);
            put16(&ext, 2);
            put16(&ext, 0x0100);
        }
        if (s->pad) {
            put16(&ext, 0x0015);
            put16(&ext, (unsigned)s->pad);
            for (size_t i = 0; i < s->pad; i++)
                put8(&ext, 0);
        }
        put16(&body, (unsigned)((int)ext.n + s->exts_delta));
        put(&body, ext.b, ext.n);
    }
    put8(hs, s->hs_type ? s->hs_type : 1);
    put24(hs, (unsigned)((int)body.n + s->hs_delta));
    put(hs, body.b, body.n);
}

/* HS split into handshake records of at most FRAG bytes each. */
static void wrap(struct out *rec, const struct out *hs, size_t frag) {
    rec->n = 0;
    for (size_t off = 0; off < hs->n; off += frag) {
        size_t n = hs->n - off < frag ? hs->n - off : frag;
        put8(rec, 22);
        put16(rec, 0x0301);
        put16(rec, (unsigned)n);
        put(rec, hs->b + off, n);
    }
}

static struct out hs_buf, rec_buf;

static const struct out *built(const struct spec *s, size_t frag) {
    hs_buf.n = 0;
    build_handshake(&hs_buf, s);
    wrap(&rec_buf, &hs_buf, frag);
    return &rec_buf;
}

static void expect(const struct spec *s, enum tls_hello_verdict want) {
    const struct out *o = built(s, 16384);
    assert_verdict(o->b, o->n, want);
}

static void expect_name(const char *sni, const char *want) {
    const struct out *o = built(&(struct spec){.sni = sni, .sid_len = -1, .comp_len = -1}, 16384);
    assert_found(o->b, o->n, want);
}

static void test_built_valid(void **state) {
    (void)state;
    expect(&(struct spec){.sid_len = -1, .comp_len = -1}, TLS_HELLO_NO_SNI);
    expect(&(struct spec){.sid_len = 0, .comp_len = -1, .no_exts = true}, TLS_HELLO_NO_SNI);
    expect_name("example.com", "example.com");
    expect_name("A-1.Example.COM", "a-1.example.com");
    expect_name("localhost", "localhost");
}

/* A hello split into records of every size from 1 byte: RFC 8446 5.1 lets a
 * handshake message be fragmented anywhere, header included. */
static void test_multi_record(void **state) {
    (void)state;
    struct spec s = {.sni = "multi.example.com", .sid_len = -1, .comp_len = -1};
    for (size_t frag = 1; frag <= 140; frag++) {
        const struct out *o = built(&s, frag);
        struct tls_hello h;
        tls_hello_init(&h);
        assert_int_equal(feed(&h, o->b, o->n), TLS_HELLO_FOUND);
        assert_string_equal(h.name, "multi.example.com");
    }
    assert_found(built(&s, 1)->b, built(&s, 1)->n, "multi.example.com");
    assert_found(built(&s, 9)->b, built(&s, 9)->n, "multi.example.com");
}

/* 16 KiB is the whole budget, record headers included. */
static void test_size_bound(void **state) {
    (void)state;
    /* 20 KiB: refused from its handshake header, before it is all in */
    struct spec s = {.sni = "big.example.com", .sid_len = -1, .comp_len = -1, .pad = 20 * 1024};
    const struct out *o = built(&s, 16384);
    struct tls_hello h;
    tls_hello_init(&h);
    assert_int_equal(feed(&h, o->b, 9), TLS_HELLO_MALFORMED);
    assert_verdict(o->b, 200, TLS_HELLO_MALFORMED);
    /* fits: just under the budget in one record */
    s.pad = 16384 - 5 - 4 - 200;
    o = built(&s, 16384);
    assert_true(o->n < TLS_HELLO_MAX);
    tls_hello_init(&h);
    assert_int_equal(feed(&h, o->b, o->n), TLS_HELLO_FOUND);
    /* small enough by its own length, but in 1-byte records it does not
     * end within 16 KiB: refused at the 16 KiB-th byte, not before */
    s.pad = 3000;
    o = built(&s, 1);
    assert_true(o->n > TLS_HELLO_MAX);
    tls_hello_init(&h);
    assert_int_equal(feed(&h, o->b, TLS_HELLO_MAX - 1), TLS_HELLO_NEED_MORE);
    assert_int_equal(feed(&h, o->b, o->n), TLS_HELLO_MALFORMED);
    tls_hello_init(&h);
    assert_int_equal(feed(&h, o->b, o->n), TLS_HELLO_MALFORMED);
}

static void test_not_tls(void **state) {
    (void)state;
    const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_verdict((const uint8_t *)http, strlen(http), TLS_HELLO_NOT_TLS);
    struct tls_hello h;
    tls_hello_init(&h);
    assert_int_equal(feed(&h, (const uint8_t *)"G", 1), TLS_HELLO_NOT_TLS); /* at once */
    /* an SSLv2-compatible hello: 2-byte length with the top bit set */
    static const uint8_t v2[] = {0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10};
    assert_verdict(v2, sizeof(v2), TLS_HELLO_NOT_TLS);
    static const uint8_t ssh[] = "SSH-2.0-OpenSSH_9.2\r\n";
    assert_verdict(ssh, sizeof(ssh) - 1, TLS_HELLO_NOT_TLS);
    static const uint8_t v4[] = {0x16, 0x04, 0x01, 0x00, 0x05}; /* handshake type, no TLS version */
    assert_verdict(v4, sizeof(v4), TLS_HELLO_NOT_TLS);
    assert_verdict((const uint8_t *)"", 0, TLS_HELLO_NEED_MORE);
    static const uint8_t start[] = {0x16};
    assert_verdict(start, 1, TLS_HELLO_NEED_MORE);
}

/* Every byte that is not a letter, digit, '-' or '.' is refused, as are
 * names that are no DNS names. */
static void test_invalid_names(void **state) {
    (void)state;
    static const char *const bad[] = {
        "a_b.example.com", "a b.com", "exa\x01mple.com", "caf\xc3\xa9.example", "a..b",
        ".example.com",    "example.com.", ".",         "a/b",                 "a:443",
        "*.example.com",   "[::1]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect(&(struct spec){.sni = bad[i], .sid_len = -1, .comp_len = -1}, TLS_HELLO_MALFORMED);
    expect(&(struct spec){.sni = "a\0b", .sni_len = 3, .sid_len = -1, .comp_len = -1},
           TLS_HELLO_MALFORMED);
    char name[300];
    /* a 63-byte label is fine, 64 is not */
    memset(name, 'a', 63);
    strcpy(name + 63, ".com");
    expect_name(name, name);
    memset(name, 'a', 64);
    strcpy(name + 64, ".com");
    expect(&(struct spec){.sni = name, .sid_len = -1, .comp_len = -1}, TLS_HELLO_MALFORMED);
    /* 253 bytes is the longest name, 254 is refused */
    for (size_t i = 0; i < 253; i++)
        name[i] = i % 4 == 3 ? '.' : 'b';
    name[253] = '\0';
    expect_name(name, name);
    name[252] = 'c';
    name[253] = 'd';
    name[254] = '\0';
    expect(&(struct spec){.sni = name, .sid_len = -1, .comp_len = -1}, TLS_HELLO_MALFORMED);
}

/* Each length field of the hello, made to lie by one byte either way. */
static void test_lengths(void **state) {
    (void)state;
    const char *n = "len.example.com";
    struct spec base = {.sni = n, .sid_len = -1, .comp_len = -1};
    struct spec s;
    expect(&base, TLS_HELLO_FOUND);
    for (int d = -1; d <= 1; d += 2) {
        s = base, s.sni_len_delta = d, expect(&s, TLS_HELLO_MALFORMED);
        s = base, s.list_delta = d, expect(&s, TLS_HELLO_MALFORMED);
        s = base, s.ext_sni_delta = d, expect(&s, TLS_HELLO_MALFORMED);
        s = base, s.exts_delta = d, expect(&s, TLS_HELLO_MALFORMED);
    }
    /* a handshake length one short: the extensions overrun it */
    s = base, s.hs_delta = -1, expect(&s, TLS_HELLO_MALFORMED);
    /* one too long: the hello never ends, so the reader waits for more */
    s = base, s.hs_delta = 1, expect(&s, TLS_HELLO_NEED_MORE);
    s = base, s.sid_len = 33, expect(&s, TLS_HELLO_MALFORMED);
    s = base, s.suites_len = 3, expect(&s, TLS_HELLO_MALFORMED);
    s = base, s.suites_delta = 2, expect(&s, TLS_HELLO_MALFORMED);
    s = base, s.suites_delta = 0x4000, expect(&s, TLS_HELLO_MALFORMED);
    s = base, s.comp_len = 0, expect(&s, TLS_HELLO_MALFORMED);
    s = base, s.sni = "", s.sni_len = 0, expect(&s, TLS_HELLO_MALFORMED);
    s = base, s.name_type = 1, expect(&s, TLS_HELLO_MALFORMED);
    s = base, s.two_names = true, expect(&s, TLS_HELLO_MALFORMED);
    s = base, s.dup_sni = true, expect(&s, TLS_HELLO_MALFORMED);
    s = base, s.dup_other = true, expect(&s, TLS_HELLO_MALFORMED);
    s = base, s.hs_type = 2, expect(&s, TLS_HELLO_MALFORMED);
    s = base, s.major = 2, expect(&s, TLS_HELLO_MALFORMED);
}

/* Truncated hellos: every proper prefix of a valid one waits for more. */
static void test_truncated(void **state) {
    (void)state;
    const struct out *o = built(&(struct spec){.sni = "t.example.com", .sid_len = -1,
                                               .comp_len = -1},
                                50);
    for (size_t i = 0; i < o->n; i++) {
        struct tls_hello h;
        tls_hello_init(&h);
        if (feed(&h, o->b, i) != TLS_HELLO_NEED_MORE) fail_msg("prefix %zu decided", i);
    }
}

/* Record headers after the first must continue the handshake. */
static void test_records(void **state) {
    (void)state;
    struct spec s = {.sni = "r.example.com", .sid_len = -1, .comp_len = -1};
    struct out o = *built(&s, 40);
    o.b[45] = 23; /* the second record's type: application_data */
    assert_verdict(o.b, o.n, TLS_HELLO_MALFORMED);
    o = *built(&s, 40);
    o.b[46] = 2; /* its version */
    assert_verdict(o.b, o.n, TLS_HELLO_MALFORMED);
    static const uint8_t empty[] = {22, 3, 1, 0, 0, 1, 0, 0, 0};
    assert_verdict(empty, sizeof(empty), TLS_HELLO_MALFORMED);
    static const uint8_t huge[] = {22, 3, 1, 0x40, 0x01, 1, 0, 0, 0};
    assert_verdict(huge, sizeof(huge), TLS_HELLO_MALFORMED);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_captured),     cmocka_unit_test(test_bytes_after_hello),
        cmocka_unit_test(test_built_valid),  cmocka_unit_test(test_multi_record),
        cmocka_unit_test(test_size_bound),   cmocka_unit_test(test_not_tls),
        cmocka_unit_test(test_invalid_names), cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_truncated),    cmocka_unit_test(test_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
