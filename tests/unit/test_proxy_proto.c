/* Unit tests for proxy_proto.c: PROXY protocol v1 and v2, parsing (whole,
 * byte by byte, malformed) and writing (byte-exact, round trips). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/proxy_proto.h"

/* Parses exactly DATA[0, LEN) from a heap copy of that size, so that a read
 * past LEN shows up under AddressSanitizer. */
static int parse_exact(const void *data, size_t len, struct proxy_header *h) {
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, data, len);
    int r = proxy_header_parse(copy, len, h);
    free(copy);
    return r;
}

/* Every proper prefix of a valid header needs more; the whole is accepted. */
static void assert_prefixes_need_more(const void *data, size_t len) {
    struct proxy_header h;
    for (size_t i = 0; i < len; i++) {
        int r = parse_exact(data, i, &h);
        if (r != PROXY_NEED_MORE) fail_msg("prefix of %zu bytes: %d, want NEED_MORE", i, r);
    }
}

static void assert_malformed(const char *s) {
    struct proxy_header h;
    int r = parse_exact(s, strlen(s), &h);
    if (r != PROXY_MALFORMED) fail_msg("\"%s\": %d, want MALFORMED", s, r);
}

static void assert_v4(const struct sockaddr_storage *ss, const char *ip, unsigned port) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
    char buf[INET_ADDRSTRLEN];
    assert_int_equal(ss->ss_family, AF_INET);
    assert_non_null(inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf)));
    assert_string_equal(buf, ip);
    assert_int_equal(ntohs(in->sin_port), port);
}

static void assert_v6(const struct sockaddr_storage *ss, const char *ip, unsigned port) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    char buf[INET6_ADDRSTRLEN];
    assert_int_equal(ss->ss_family, AF_INET6);
    assert_non_null(inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof(buf)));
    assert_string_equal(buf, ip);
    assert_int_equal(ntohs(in6->sin6_port), port);
}

static struct sockaddr_in make_v4(const char *ip, unsigned port) {
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    assert_int_equal(inet_pton(AF_INET, ip, &in.sin_addr), 1);
    return in;
}

static struct sockaddr_in6 make_v6(const char *ip, unsigned port) {
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    assert_int_equal(inet_pton(AF_INET6, ip, &in6.sin6_addr), 1);
    return in6;
}

/* ---- v1 parsing -------------------------------------------------------- */

static void test_v1_tcp4(void **state) {
    (void)state;
    const char line[] = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
    const char data[] = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
    size_t n = sizeof(line) - 1;
    assert_prefixes_need_more(line, n);
    struct proxy_header h;
    assert_int_equal(parse_exact(line, n, &h), (int)n);
    assert_int_equal(parse_exact(data, sizeof(data) - 1, &h), (int)n); /* stops at CRLF */
    assert_int_equal(h.version, 1);
    assert_int_equal(h.local, 0);
    assert_v4(&h.src, "192.0.2.1", 56324);
    assert_v4(&h.dst, "198.51.100.2", 443);
}

static void test_v1_tcp6(void **state) {
    (void)state;
    const char line[] = "PROXY TCP6 2001:db8::1 2001:DB8:0:0:0:0:0:2 0 65535\r\n";
    size_t n = sizeof(line) - 1;
    assert_prefixes_need_more(line, n);
    struct proxy_header h;
    assert_int_equal(parse_exact(line, n, &h), (int)n);
    assert_int_equal(h.version, 1);
    assert_int_equal(h.local, 0);
    assert_v6(&h.src, "2001:db8::1", 0);
    assert_v6(&h.dst, "2001:db8::2", 65535);

    const char mapped[] = "PROXY TCP6 ::ffff:192.0.2.1 :: 1 2\r\n";
    assert_prefixes_need_more(mapped, sizeof(mapped) - 1);
    assert_int_equal(parse_exact(mapped, sizeof(mapped) - 1, &h), (int)sizeof(mapped) - 1);
    assert_v6(&h.src, "::ffff:192.0.2.1", 1);
    assert_v6(&h.dst, "::", 2);
}

static void test_v1_tcp6_longest(void **state) {
    (void)state;
    /* The spec's worst case: 104 bytes, under the 107 limit. */
    const char line[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    size_t n = sizeof(line) - 1;
    assert_int_equal(n, 104);
    assert_prefixes_need_more(line, n);
    struct proxy_header h;
    assert_int_equal(parse_exact(line, n, &h), (int)n);
    /* 45-character addresses (embedded IPv4) make a line too long for v1. */
    assert_malformed("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
                     "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 65535 65535\r\n");
}

static void test_v1_unknown(void **state) {
    (void)state;
    struct proxy_header h;
    const char bare[] = "PROXY UNKNOWN\r\n";
    assert_prefixes_need_more(bare, sizeof(bare) - 1);
    assert_int_equal(parse_exact(bare, sizeof(bare) - 1, &h), (int)sizeof(bare) - 1);
    assert_int_equal(h.version, 1);
    assert_int_equal(h.local, 1);
    assert_int_equal(h.src.ss_family, AF_UNSPEC);

    const char junk[] = "PROXY UNKNOWN whatever \t:: the sender likes 99999\r\nGET";
    size_t n = sizeof(junk) - 1 - 3;
    assert_prefixes_need_more(junk, n);
    assert_int_equal(parse_exact(junk, sizeof(junk) - 1, &h), (int)n);
    assert_int_equal(h.local, 1);
}

static void test_v1_length_limit(void **state) {
    (void)state;
    char line[200];
    struct proxy_header h;
    /* Exactly 107 bytes including CRLF: accepted. */
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + 105, "\r\n", 2);
    assert_int_equal(parse_exact(line, 107, &h), 107);
    /* 108: the CRLF comes one byte late. */
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + 106, "\r\n", 2);
    assert_int_equal(parse_exact(line, 106, &h), PROXY_NEED_MORE);
    assert_int_equal(parse_exact(line, 107, &h), PROXY_MALFORMED);
    assert_int_equal(parse_exact(line, 108, &h), PROXY_MALFORMED);
    /* No CRLF at all within 107 bytes. */
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    assert_int_equal(parse_exact(line, sizeof(line), &h), PROXY_MALFORMED);
}

static void test_v1_malformed(void **state) {
    (void)state;
    assert_malformed("GET ");
    assert_malformed("G");
    assert_malformed("proxy TCP4 192.0.2.1 198.51.100.2 56324 443\r\n");
    assert_malformed("PROXY  TCP4 192.0.2.1 198.51.100.2 56324 443\r\n");
    assert_malformed("PROXY TCP4  192.0.2.1 198.51.100.2 56324 443\r\n");
    assert_malformed("PROXY TCP4 192.0.2.1  198.51.100.2 56324 443\r\n");
    assert_malformed("PROXY TCP4 192.0.2.1 198.51.100.2 56324  443\r\n");
    assert_malformed("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 \r\n");
    assert_malformed("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n");
    assert_malformed("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\rX");
    assert_malformed("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\r\n");
    assert_malformed("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 80\r\n");
    assert_malformed("PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n");
    assert_malformed("PROXY TCP4 192.0.2.1 198.51.100.2\r\n");
    assert_malformed("PROXY TCP5 192.0.2.1 198.51.100.2 56324 443\r\n");
    assert_malformed("PROXY tcp4 192.0.2.1 198.51.100.2 56324 443\r\n");
    assert_malformed("PROXY\tTCP4 192.0.2.1 198.51.100.2 56324 443\r\n");
    assert_malformed("PROXY TCP4 256.1.1.1 198.51.100.2 56324 443\r\n");
    assert_malformed("PROXY TCP4 192.0.2 198.51.100.2 56324 443\r\n");
    assert_malformed("PROXY TCP4 192.0.2.1.5 198.51.100.2 56324 443\r\n");
    assert_malformed("PROXY TCP4 192.0.02.1 198.51.100.2 56324 443\r\n");
    assert_malformed("PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n");
    assert_malformed("PROXY TCP4 192.0.2.1 198.51.100.2 56324 99999\r\n");
    assert_malformed("PROXY TCP4 192.0.2.1 198.51.100.2 +80 443\r\n");
    assert_malformed("PROXY TCP4 192.0.2.1 198.51.100.2 -80 443\r\n");
    assert_malformed("PROXY TCP4 192.0.2.1 198.51.100.2 080 443\r\n");
    assert_malformed("PROXY TCP4 192.0.2.1 198.51.100.2 56324 00\r\n");
    assert_malformed("PROXY TCP4 2001:db8::1 2001:db8::2 56324 443\r\n");
    assert_malformed("PROXY TCP6 192.0.2.1 198.51.100.2 56324 443\r\n");
    assert_malformed("PROXY TCP6 2001:db8:::1 2001:db8::2 56324 443\r\n");
    assert_malformed("PROXY TCP6 1:2:3:4:5:6:7:8:9 2001:db8::2 56324 443\r\n");
    assert_malformed("PROXY TCP6 12345::1 2001:db8::2 56324 443\r\n");
    assert_malformed("PROXY TCP6 2001:db8::g 2001:db8::2 56324 443\r\n");
    assert_malformed("PROXY TCP6 [2001:db8::1] 2001:db8::2 56324 443\r\n");
    assert_malformed("PROXY UNKNOWNX\r\n");
    assert_malformed("PROXY UNKNOWN bare\nLF\r\n");
    assert_malformed("PROXY UNKNOWN\n");
}

/* Bytes that cannot start any header are refused at once, without waiting
 * for the rest of the line. */
static void test_v1_malformed_early(void **state) {
    (void)state;
    assert_malformed("PROXY TCP4 256");
    assert_malformed("PROXY TCP4 1.2.3.4.");
    assert_malformed("PROXY TCP4 01");
    assert_malformed("PROXY TCP4 1.2.3.4 5.6.7.8 08");
    assert_malformed("PROXY TCP4 1.2.3.4 5.6.7.8 65536");
    assert_malformed("PROXY TCP6 1:2:3:4:5:6:7:8:");
    assert_malformed("PROXY TCP6 ::1::");
    assert_malformed("PROXY TCP6 12345");
    assert_malformed("PROXY TCP6 1:2:3:4:5:1.2");
    assert_malformed("PROXY TCPX");
    assert_malformed("PROXY UNKNOWN\rX");
    /* and prefixes that could still become valid wait for more */
    struct proxy_header h;
    assert_int_equal(parse_exact("PRO", 3, &h), PROXY_NEED_MORE);
    assert_int_equal(parse_exact("PROXY TCP4 25", 13, &h), PROXY_NEED_MORE);
    assert_int_equal(parse_exact("PROXY TCP6 1:2:3:4:5:6:7", 24, &h), PROXY_NEED_MORE);
    assert_int_equal(parse_exact("PROXY TCP6 ::ffff:1.2.", 22, &h), PROXY_NEED_MORE);
    assert_int_equal(parse_exact("PROXY TCP4 1.2.3.4 5.6.7.8 0", 28, &h), PROXY_NEED_MORE);
}

/* ---- v2 parsing -------------------------------------------------------- */

#define SIG "\r\n\r\n\0\r\nQUIT\n"

static size_t v2_build(unsigned char *buf, unsigned char ver_cmd, unsigned char fam,
                       const void *body, size_t body_len, size_t declared) {
    memcpy(buf, SIG, 12);
    buf[12] = ver_cmd;
    buf[13] = fam;
    buf[14] = (unsigned char)(declared >> 8);
    buf[15] = (unsigned char)declared;
    if (body_len) memcpy(buf + 16, body, body_len);
    return 16 + body_len;
}

static void test_v2_ipv4_with_tlvs(void **state) {
    (void)state;
    /* 192.0.2.1:56324 -> 198.51.100.2:443, then ALPN "h2" and a NOOP TLV */
    const unsigned char body[] = {192, 0, 2, 1, 198, 51, 100, 2, 0xDC, 0x04, 0x01, 0xBB,
                                  0x01, 0x00, 0x02, 'h', '2', 0x04, 0x00, 0x01, 0x00};
    unsigned char buf[64];
    size_t n = v2_build(buf, 0x21, 0x11, body, sizeof(body), sizeof(body));
    memcpy(buf + n, "GET", 3);
    assert_prefixes_need_more(buf, n);
    struct proxy_header h;
    assert_int_equal(parse_exact(buf, n + 3, &h), (int)n);
    assert_int_equal(h.version, 2);
    assert_int_equal(h.local, 0);
    assert_v4(&h.src, "192.0.2.1", 56324);
    assert_v4(&h.dst, "198.51.100.2", 443);
}

static void test_v2_ipv6(void **state) {
    (void)state;
    unsigned char body[36 + 5] = {0};
    struct in6_addr a, b;
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", &a), 1);
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::2", &b), 1);
    memcpy(body, &a, 16);
    memcpy(body + 16, &b, 16);
    body[32] = 0xDC, body[33] = 0x04, body[34] = 0x01, body[35] = 0xBB;
    body[36] = 0x04, body[37] = 0x00, body[38] = 0x02; /* NOOP, 2 bytes */
    unsigned char buf[64];
    size_t n = v2_build(buf, 0x21, 0x21, body, sizeof(body), sizeof(body));
    assert_prefixes_need_more(buf, n);
    struct proxy_header h;
    assert_int_equal(parse_exact(buf, n, &h), (int)n);
    assert_int_equal(h.version, 2);
    assert_int_equal(h.local, 0);
    assert_v6(&h.src, "2001:db8::1", 56324);
    assert_v6(&h.dst, "2001:db8::2", 443);
}

static void test_v2_local(void **state) {
    (void)state;
    struct proxy_header h;
    unsigned char buf[64];
    /* A balancer's own health check: LOCAL, UNSPEC, no addresses. */
    size_t n = v2_build(buf, 0x20, 0x00, NULL, 0, 0);
    assert_prefixes_need_more(buf, n);
    assert_int_equal(parse_exact(buf, n, &h), 16);
    assert_int_equal(h.version, 2);
    assert_int_equal(h.local, 1);
    assert_int_equal(h.src.ss_family, AF_UNSPEC);
    /* LOCAL with TLVs only. */
    const unsigned char tlv[] = {0x04, 0x00, 0x03, 1, 2, 3};
    n = v2_build(buf, 0x20, 0x00, tlv, sizeof(tlv), sizeof(tlv));
    assert_prefixes_need_more(buf, n);
    assert_int_equal(parse_exact(buf, n, &h), (int)n);
    assert_int_equal(h.local, 1);
    /* LOCAL with an INET family: its addresses are ignored. */
    const unsigned char addrs[12] = {10, 0, 0, 1, 10, 0, 0, 2, 0, 80, 0, 81};
    n = v2_build(buf, 0x20, 0x11, addrs, sizeof(addrs), sizeof(addrs));
    assert_int_equal(parse_exact(buf, n, &h), (int)n);
    assert_int_equal(h.local, 1);
    assert_int_equal(h.src.ss_family, AF_UNSPEC);
}

static void test_v2_length_cap(void **state) {
    (void)state;
    static unsigned char buf[PROXY_HEADER_MAX + 16];
    static unsigned char body[PROXY_HEADER_MAX];
    struct proxy_header h;
    body[12] = 0x04; /* one NOOP TLV filling the rest */
    size_t max = PROXY_HEADER_MAX - 16;
    body[13] = (unsigned char)((max - 15) >> 8);
    body[14] = (unsigned char)(max - 15);
    size_t n = v2_build(buf, 0x21, 0x11, body, max, max);
    assert_int_equal(n, PROXY_HEADER_MAX);
    assert_int_equal(parse_exact(buf, n, &h), PROXY_HEADER_MAX);
    assert_int_equal(parse_exact(buf, n - 1, &h), PROXY_NEED_MORE);
    /* One more is refused as soon as the length field is in. */
    n = v2_build(buf, 0x21, 0x11, NULL, 0, max + 1);
    assert_int_equal(parse_exact(buf, n, &h), PROXY_MALFORMED);
    n = v2_build(buf, 0x21, 0x11, NULL, 0, 0xFFFF);
    assert_int_equal(parse_exact(buf, n, &h), PROXY_MALFORMED);
}

static void test_v2_malformed(void **state) {
    (void)state;
    unsigned char buf[128];
    unsigned char body[64] = {192, 0, 2, 1, 198, 51, 100, 2, 0, 80, 0, 81};
    struct proxy_header h;
    /* Version 1 and 3 in the binary header; commands 2 and 15. Refused at
     * byte 13, before the family. */
    const unsigned char bad_ver_cmd[] = {0x11, 0x31, 0x01, 0x22, 0x2F};
    for (size_t i = 0; i < sizeof(bad_ver_cmd); i++) {
        size_t n = v2_build(buf, bad_ver_cmd[i], 0x11, body, 12, 12);
        assert_int_equal(parse_exact(buf, n, &h), PROXY_MALFORMED);
        assert_int_equal(parse_exact(buf, 13, &h), PROXY_MALFORMED);
    }
    /* UDP over IPv4 and IPv6, UNIX stream and datagram, unassigned family
     * bytes, PROXY with UNSPEC: refused at byte 14. */
    const unsigned char bad_fam[] = {0x12, 0x22, 0x31, 0x32, 0x10, 0x20, 0x41, 0x01, 0x00};
    for (size_t i = 0; i < sizeof(bad_fam); i++) {
        size_t n = v2_build(buf, 0x21, bad_fam[i], body, 64, 64);
        assert_int_equal(parse_exact(buf, n, &h), PROXY_MALFORMED);
        assert_int_equal(parse_exact(buf, 14, &h), PROXY_MALFORMED);
    }
    /* LOCAL does not make UNIX or DGRAM acceptable. */
    size_t n = v2_build(buf, 0x20, 0x31, body, 64, 64);
    assert_int_equal(parse_exact(buf, n, &h), PROXY_MALFORMED);
    n = v2_build(buf, 0x20, 0x12, body, 12, 12);
    assert_int_equal(parse_exact(buf, n, &h), PROXY_MALFORMED);
    /* Length too short for the family's addresses. */
    n = v2_build(buf, 0x21, 0x11, body, 11, 11);
    assert_int_equal(parse_exact(buf, n, &h), PROXY_MALFORMED);
    assert_int_equal(parse_exact(buf, 16, &h), PROXY_MALFORMED);
    n = v2_build(buf, 0x21, 0x21, body, 35, 35);
    assert_int_equal(parse_exact(buf, n, &h), PROXY_MALFORMED);
    n = v2_build(buf, 0x21, 0x21, body, 12, 12); /* IPv4-sized body for IPv6 */
    assert_int_equal(parse_exact(buf, n, &h), PROXY_MALFORMED);
    /* A signature that goes wrong part way. */
    memcpy(buf, SIG, 12);
    buf[7] = 'q';
    assert_int_equal(parse_exact(buf, 8, &h), PROXY_MALFORMED);
    assert_int_equal(parse_exact("\r\n\r\nGET", 7, &h), PROXY_MALFORMED);
    assert_int_equal(parse_exact("\r\n", 2, &h), PROXY_NEED_MORE);
}

/* ---- writers ----------------------------------------------------------- */

static void test_write_v1_exact(void **state) {
    (void)state;
    char out[PROXY_HEADER_MAX];
    struct sockaddr_in s4 = make_v4("192.0.2.1", 56324), d4 = make_v4("198.51.100.2", 443);
    const char want4[] = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
    size_t n = proxy_header_write_v1(out, sizeof(out), (struct sockaddr *)&s4,
                                     (struct sockaddr *)&d4);
    assert_int_equal(n, sizeof(want4) - 1);
    assert_memory_equal(out, want4, n);

    struct sockaddr_in6 s6 = make_v6("2001:db8::1", 56324), d6 = make_v6("2001:db8::2", 443);
    const char want6[] = "PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n";
    n = proxy_header_write_v1(out, sizeof(out), (struct sockaddr *)&s6, (struct sockaddr *)&d6);
    assert_int_equal(n, sizeof(want6) - 1);
    assert_memory_equal(out, want6, n);

    /* Mixed families, or none: UNKNOWN. */
    n = proxy_header_write_v1(out, sizeof(out), (struct sockaddr *)&s4, (struct sockaddr *)&d6);
    assert_int_equal(n, 15);
    assert_memory_equal(out, "PROXY UNKNOWN\r\n", 15);
    n = proxy_header_write_v1(out, sizeof(out), NULL, NULL);
    assert_int_equal(n, 15);

    /* Capacity: exact fits, one less writes nothing. */
    assert_int_equal(proxy_header_write_v1(out, sizeof(want4) - 1, (struct sockaddr *)&s4,
                                           (struct sockaddr *)&d4),
                     sizeof(want4) - 1);
    assert_int_equal(proxy_header_write_v1(out, sizeof(want4) - 2, (struct sockaddr *)&s4,
                                           (struct sockaddr *)&d4),
                     0);
}

static void test_write_v2_exact(void **state) {
    (void)state;
    unsigned char out[PROXY_HEADER_MAX];
    struct sockaddr_in s4 = make_v4("192.0.2.1", 56324), d4 = make_v4("198.51.100.2", 443);
    const unsigned char want4[] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49,
                                   0x54, 0x0A, 0x21, 0x11, 0x00, 0x0C, 192,  0,    2,    1,
                                   198,  51,   100,  2,    0xDC, 0x04, 0x01, 0xBB};
    size_t n = proxy_header_write_v2((char *)out, sizeof(out), (struct sockaddr *)&s4,
                                     (struct sockaddr *)&d4);
    assert_int_equal(n, sizeof(want4));
    assert_memory_equal(out, want4, n);
    assert_int_equal(proxy_header_write_v2((char *)out, sizeof(want4) - 1,
                                           (struct sockaddr *)&s4, (struct sockaddr *)&d4),
                     0);

    struct sockaddr_in6 s6 = make_v6("2001:db8::1", 56324), d6 = make_v6("2001:db8::2", 443);
    n = proxy_header_write_v2((char *)out, sizeof(out), (struct sockaddr *)&s6,
                              (struct sockaddr *)&d6);
    assert_int_equal(n, 16 + 36);
    assert_memory_equal(out, SIG "\x21\x21\x00\x24", 16);
    assert_memory_equal(out + 16, &s6.sin6_addr, 16);
    assert_memory_equal(out + 32, &d6.sin6_addr, 16);
    assert_memory_equal(out + 48, "\xDC\x04\x01\xBB", 4);

    /* Mixed families: a LOCAL header with no addresses. */
    n = proxy_header_write_v2((char *)out, sizeof(out), (struct sockaddr *)&s6,
                              (struct sockaddr *)&d4);
    assert_int_equal(n, 16);
    assert_memory_equal(out, SIG "\x20\x00\x00\x00", 16);
}

static void round_trip(size_t (*write)(char *, size_t, const struct sockaddr *,
                                       const struct sockaddr *),
                       int version, const struct sockaddr *src, const struct sockaddr *dst,
                       socklen_t salen) {
    char out[PROXY_HEADER_MAX];
    size_t n = write(out, sizeof(out), src, dst);
    assert_true(n > 0);
    assert_prefixes_need_more(out, n);
    struct proxy_header h;
    assert_int_equal(parse_exact(out, n, &h), (int)n);
    assert_int_equal(h.version, version);
    assert_int_equal(h.local, 0);
    assert_memory_equal(&h.src, src, salen);
    assert_memory_equal(&h.dst, dst, salen);
}

static void test_round_trips(void **state) {
    (void)state;
    struct sockaddr_in s4 = make_v4("203.0.113.7", 0), d4 = make_v4("255.255.255.255", 65535);
    struct sockaddr_in6 s6 = make_v6("::ffff:203.0.113.7", 1),
                        d6 = make_v6("fe80::1:2:3:4", 8443);
    round_trip(proxy_header_write_v1, 1, (struct sockaddr *)&s4, (struct sockaddr *)&d4,
               sizeof(s4));
    round_trip(proxy_header_write_v2, 2, (struct sockaddr *)&s4, (struct sockaddr *)&d4,
               sizeof(s4));
    round_trip(proxy_header_write_v1, 1, (struct sockaddr *)&s6, (struct sockaddr *)&d6,
               sizeof(s6));
    round_trip(proxy_header_write_v2, 2, (struct sockaddr *)&s6, (struct sockaddr *)&d6,
               sizeof(s6));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp6),
        cmocka_unit_test(test_v1_tcp6_longest),
        cmocka_unit_test(test_v1_unknown),
        cmocka_unit_test(test_v1_length_limit),
        cmocka_unit_test(test_v1_malformed),
        cmocka_unit_test(test_v1_malformed_early),
        cmocka_unit_test(test_v2_ipv4_with_tlvs),
        cmocka_unit_test(test_v2_ipv6),
        cmocka_unit_test(test_v2_local),
        cmocka_unit_test(test_v2_length_cap),
        cmocka_unit_test(test_v2_malformed),
        cmocka_unit_test(test_write_v1_exact),
        cmocka_unit_test(test_write_v2_exact),
        cmocka_unit_test(test_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
