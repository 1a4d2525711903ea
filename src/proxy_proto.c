/* proxy_proto: see proxy_proto.h. Follows HAProxy's "The PROXY protocol"
 * (versions 1 and 2). The parser is incremental in the only way a caller
 * needs: it is handed everything read so far and says "complete, N bytes",
 * "a valid prefix, read more" or "malformed", so a connection can be closed
 * on the first byte that cannot start a header (e.g. "GET ") instead of
 * waiting for a timeout. Nothing here allocates. */
#include "ferry/proxy_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#define PROXY_V1_MAX 107     /* "PROXY TCP6 " + 2 * 39 + 2 * 5 + 3 spaces + CRLF, per the spec */
#define PROXY_V2_FIXED 16    /* signature, ver_cmd, fam, 16-bit length */
#define PROXY_V2_LEN_MAX (PROXY_HEADER_MAX - PROXY_V2_FIXED)
#define PROXY_V2_INET_LEN 12 /* 2 * 4 address bytes + 2 * 2 port bytes */
#define PROXY_V2_INET6_LEN 36

static const unsigned char proxy_v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                               0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* A v1 step's outcome: consumed what it expected, ran out of bytes while
 * what it saw was still a valid prefix, or saw something that can never be
 * a header. */
enum v1_step { V1_OK, V1_NEED, V1_BAD };

/* The bytes of a v1 line still to be read: the header itself never extends
 * past PROXY_V1_MAX, so END is min(len, 107). */
struct v1_cursor {
    const char *p;
    size_t pos;
    size_t end;
};

enum v1_field { V1_IP4, V1_IP6, V1_PORT };

static int v1_parse(const char *data, size_t len, struct proxy_header *out);
static enum v1_step v1_literal(struct v1_cursor *c, const char *lit);
static enum v1_step v1_literal_at(struct v1_cursor *c, size_t at, const char *lit);
static enum v1_step v1_token(struct v1_cursor *c, enum v1_field kind, char term, char *tok,
                             size_t cap);
static enum v1_step v1_unknown_tail(struct v1_cursor *c);
static int v1_char_ok(enum v1_field kind, char ch);
static int v1_addr_prefix_ok(int family, const char *tok, size_t n);
static int v1_port_value(const char *tok, size_t n, int partial);
static int v2_parse(const unsigned char *data, size_t len, struct proxy_header *out);
static void v2_fill(struct proxy_header *out, int family, const unsigned char *addrs);

int proxy_header_parse(const char *data, size_t len, struct proxy_header *out) {
    if (len == 0) return PROXY_NEED_MORE;
    if (data[0] == 'P') return v1_parse(data, len, out);
    if ((unsigned char)data[0] == proxy_v2_sig[0])
        return v2_parse((const unsigned char *)data, len, out);
    return PROXY_MALFORMED;
}

/* ---- v1 ---------------------------------------------------------------- */

/* The text header: "PROXY TCP4 a.b.c.d a.b.c.d sport dport\r\n", the same
 * with TCP6 and IPv6 addresses, or "PROXY UNKNOWN" followed by anything up
 * to CRLF. Exactly one space between fields, no leading or trailing blanks,
 * and the line ends with CRLF: a bare LF is refused, since what we pass on
 * must not be read differently by anyone else. A line that has not ended by
 * byte 107 is malformed. Returns the line's length, PROXY_NEED_MORE or
 * PROXY_MALFORMED; OUT is written only on success. */
static int v1_parse(const char *data, size_t len, struct proxy_header *out) {
    struct v1_cursor c = {data, 0, len < PROXY_V1_MAX ? len : PROXY_V1_MAX};
    char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN], sport[8], dport[8];
    enum v1_step st = v1_literal(&c, "PROXY ");
    if (st != V1_OK) goto out;

    /* "TCP" is a prefix of two keywords: need more while any still fits. */
    size_t proto_at = c.pos;
    enum v1_step st4 = v1_literal_at(&c, proto_at, "TCP4 ");
    enum v1_step st6 = v1_literal_at(&c, proto_at, "TCP6 ");
    enum v1_step stu = v1_literal_at(&c, proto_at, "UNKNOWN");
    if (stu == V1_OK) {
        if ((st = v1_unknown_tail(&c)) != V1_OK) goto out;
        memset(out, 0, sizeof(*out));
        out->version = 1;
        out->local = 1;
        return (int)c.pos;
    }
    if (st4 != V1_OK && st6 != V1_OK) {
        st = (st4 == V1_NEED || st6 == V1_NEED || stu == V1_NEED) ? V1_NEED : V1_BAD;
        goto out;
    }
    int family = st4 == V1_OK ? AF_INET : AF_INET6;
    c.pos = proto_at + 5;

    enum v1_field ip = family == AF_INET ? V1_IP4 : V1_IP6;
    if ((st = v1_token(&c, ip, ' ', src, sizeof(src))) != V1_OK) goto out;
    if ((st = v1_token(&c, ip, ' ', dst, sizeof(dst))) != V1_OK) goto out;
    if ((st = v1_token(&c, V1_PORT, ' ', sport, sizeof(sport))) != V1_OK) goto out;
    if ((st = v1_token(&c, V1_PORT, '\r', dport, sizeof(dport))) != V1_OK) goto out;
    if ((st = v1_literal(&c, "\n")) != V1_OK) goto out;

    memset(out, 0, sizeof(*out));
    out->version = 1;
    if (family == AF_INET) {
        struct sockaddr_in s = {.sin_family = AF_INET}, d = {.sin_family = AF_INET};
        if (inet_pton(AF_INET, src, &s.sin_addr) != 1 || inet_pton(AF_INET, dst, &d.sin_addr) != 1)
            return PROXY_MALFORMED; /* not reached: v1_token checked both */
        s.sin_port = htons((uint16_t)v1_port_value(sport, strlen(sport), 0));
        d.sin_port = htons((uint16_t)v1_port_value(dport, strlen(dport), 0));
        memcpy(&out->src, &s, sizeof(s));
        memcpy(&out->dst, &d, sizeof(d));
    } else {
        struct sockaddr_in6 s = {.sin6_family = AF_INET6}, d = {.sin6_family = AF_INET6};
        if (inet_pton(AF_INET6, src, &s.sin6_addr) != 1 ||
            inet_pton(AF_INET6, dst, &d.sin6_addr) != 1)
            return PROXY_MALFORMED; /* not reached: v1_token checked both */
        s.sin6_port = htons((uint16_t)v1_port_value(sport, strlen(sport), 0));
        d.sin6_port = htons((uint16_t)v1_port_value(dport, strlen(dport), 0));
        memcpy(&out->src, &s, sizeof(s));
        memcpy(&out->dst, &d, sizeof(d));
    }
    return (int)c.pos;

out:
    /* Out of bytes at the 107th: the line is too long whatever comes next. */
    if (st == V1_NEED && c.end == PROXY_V1_MAX) return PROXY_MALFORMED;
    return st == V1_NEED ? PROXY_NEED_MORE : PROXY_MALFORMED;
}

/* Consumes LIT at the cursor. V1_NEED when the bytes left are a proper
 * prefix of it; the cursor is then at the end of the data. */
static enum v1_step v1_literal(struct v1_cursor *c, const char *lit) {
    for (; *lit; lit++, c->pos++) {
        if (c->pos == c->end) return V1_NEED;
        if (c->p[c->pos] != *lit) return V1_BAD;
    }
    return V1_OK;
}

/* v1_literal from offset AT, so alternatives can be tried in turn. */
static enum v1_step v1_literal_at(struct v1_cursor *c, size_t at, const char *lit) {
    c->pos = at;
    return v1_literal(c, lit);
}

/* Reads one field ending in TERM into TOK (NUL-terminated) and consumes
 * TERM. Each byte is checked against the field's alphabet as it arrives;
 * the field is checked whole (inet_pton, port range) when TERM arrives,
 * and as a prefix of some valid field when the data ends first. */
static enum v1_step v1_token(struct v1_cursor *c, enum v1_field kind, char term, char *tok,
                             size_t cap) {
    size_t n = 0;
    for (;; c->pos++) {
        if (c->pos == c->end) {
            tok[n] = '\0';
            int ok = kind == V1_PORT  ? v1_port_value(tok, n, 1) >= 0
                     : kind == V1_IP4 ? v1_addr_prefix_ok(AF_INET, tok, n)
                                      : v1_addr_prefix_ok(AF_INET6, tok, n);
            return ok ? V1_NEED : V1_BAD;
        }
        char ch = c->p[c->pos];
        if (ch == term) break;
        if (!v1_char_ok(kind, ch) || n + 1 >= cap) return V1_BAD;
        tok[n++] = ch;
    }
    c->pos++;
    tok[n] = '\0';
    if (n == 0) return V1_BAD;
    if (kind == V1_PORT) return v1_port_value(tok, n, 0) >= 0 ? V1_OK : V1_BAD;
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(kind == V1_IP4 ? AF_INET : AF_INET6, tok, buf) == 1 ? V1_OK : V1_BAD;
}

static int v1_char_ok(enum v1_field kind, char ch) {
    if (ch >= '0' && ch <= '9') return 1;
    if (kind == V1_PORT) return 0;
    if (ch == '.') return 1;
    if (kind == V1_IP4) return 0;
    return ch == ':' || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* Whether TOK[0, N) can be continued into an address inet_pton accepts.
 * Rather than a second grammar, it tries short completions: every valid
 * prefix of a dotted quad or IPv6 text becomes valid by appending one of
 * these (a group or octet prefix is itself a valid group or octet; what may
 * be missing is a digit after a separator, the remaining octets of a dotted
 * quad, or a "::" standing for the remaining groups). */
static int v1_addr_prefix_ok(int family, const char *tok, size_t n) {
    static const char *const v4[] = {"", ".0", ".0.0", ".0.0.0", "0", "0.0", "0.0.0", "0.0.0.0"};
    static const char *const v6[] = {"", "0", ":", "::", ".0", ".0.0", "0.0", "0.0.0"};
    const char *const *sfx = family == AF_INET ? v4 : v6;
    size_t count = family == AF_INET ? FERRY_ARRAY_LEN(v4) : FERRY_ARRAY_LEN(v6);
    char buf[INET6_ADDRSTRLEN + 8];
    unsigned char addr[sizeof(struct in6_addr)];
    if (n >= INET6_ADDRSTRLEN) return 0;
    for (size_t i = 0; i < count; i++) {
        size_t k = strlen(sfx[i]);
        memcpy(buf, tok, n);
        memcpy(buf + n, sfx[i], k + 1);
        if (inet_pton(family, buf, addr) == 1) return 1;
    }
    return 0;
}

/* A port: decimal digits, no sign, no leading zero except "0" itself, at
 * most 65535. Returns its value, or -1. With PARTIAL, TOK may be the start
 * of a port (empty included) and -1 means no port starts this way. */
static int v1_port_value(const char *tok, size_t n, int partial) {
    if (n == 0) return partial ? 0 : -1;
    if (n > 5 || (tok[0] == '0' && n > 1)) return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (tok[i] < '0' || tok[i] > '9') return -1;
        v = v * 10 + (tok[i] - '0');
    }
    return v <= 65535 ? (int)v : -1;
}

/* After "UNKNOWN": CRLF at once, or a space and anything up to CRLF (the
 * spec lets a sender put its addresses there; we ignore them). A CR or LF
 * that is not part of that CRLF is refused. */
static enum v1_step v1_unknown_tail(struct v1_cursor *c) {
    if (c->pos == c->end) return V1_NEED;
    if (c->p[c->pos] == ' ') c->pos++;
    else if (c->p[c->pos] != '\r') return V1_BAD;
    for (; c->pos < c->end; c->pos++) {
        if (c->p[c->pos] == '\n') return V1_BAD;
        if (c->p[c->pos] == '\r') {
            c->pos++;
            return v1_literal(c, "\n");
        }
    }
    return V1_NEED;
}

/* ---- v2 ---------------------------------------------------------------- */

/* The binary header: 12-byte signature, version (high nibble, must be 2)
 * and command (LOCAL 0, PROXY 1), family and transport, then a big-endian
 * length of what follows: addresses, then TLVs, which we skip unread.
 * Each fixed byte is judged as soon as it arrives. We refuse UNIX sockets
 * (an address a TCP listener cannot use) and DGRAM (we only proxy
 * streams), and any family byte the spec leaves unassigned. LOCAL (health
 * checks from the balancer itself) may carry UNSPEC or an INET family; its
 * addresses are ignored, as the spec says. PROXY must carry TCP over IPv4
 * or IPv6, with a length at least the addresses'. Lengths over our cap
 * (PROXY_HEADER_MAX - 16) are refused. */
static int v2_parse(const unsigned char *data, size_t len, struct proxy_header *out) {
    size_t sig = len < sizeof(proxy_v2_sig) ? len : sizeof(proxy_v2_sig);
    if (memcmp(data, proxy_v2_sig, sig) != 0) return PROXY_MALFORMED;
    if (len <= 12) return PROXY_NEED_MORE;

    unsigned ver = data[12] >> 4, cmd = data[12] & 0x0F;
    if (ver != 2 || cmd > 1) return PROXY_MALFORMED;
    if (len == 13) return PROXY_NEED_MORE;

    int family;
    size_t need;
    switch (data[13]) {
    case 0x00: family = AF_UNSPEC; need = 0; break;
    case 0x11: family = AF_INET; need = PROXY_V2_INET_LEN; break;
    case 0x21: family = AF_INET6; need = PROXY_V2_INET6_LEN; break;
    default: return PROXY_MALFORMED; /* UNIX (0x3_), DGRAM (0x_2), unassigned */
    }
    if (cmd == 1 && family == AF_UNSPEC) return PROXY_MALFORMED;
    if (len < PROXY_V2_FIXED) return PROXY_NEED_MORE;

    size_t body = (size_t)data[14] << 8 | data[15];
    if (body > PROXY_V2_LEN_MAX) return PROXY_MALFORMED;
    if (cmd == 1 && body < need) return PROXY_MALFORMED;
    if (len < PROXY_V2_FIXED + body) return PROXY_NEED_MORE;

    memset(out, 0, sizeof(*out));
    out->version = 2;
    if (cmd == 0) out->local = 1;
    else v2_fill(out, family, data + PROXY_V2_FIXED);
    return (int)(PROXY_V2_FIXED + body);
}

/* Copies addresses and ports (network order on the wire and in sockaddr). */
static void v2_fill(struct proxy_header *out, int family, const unsigned char *a) {
    if (family == AF_INET) {
        struct sockaddr_in s = {.sin_family = AF_INET}, d = {.sin_family = AF_INET};
        memcpy(&s.sin_addr, a, 4);
        memcpy(&d.sin_addr, a + 4, 4);
        memcpy(&s.sin_port, a + 8, 2);
        memcpy(&d.sin_port, a + 10, 2);
        memcpy(&out->src, &s, sizeof(s));
        memcpy(&out->dst, &d, sizeof(d));
    } else {
        struct sockaddr_in6 s = {.sin6_family = AF_INET6}, d = {.sin6_family = AF_INET6};
        memcpy(&s.sin6_addr, a, 16);
        memcpy(&d.sin6_addr, a + 16, 16);
        memcpy(&s.sin6_port, a + 32, 2);
        memcpy(&d.sin6_port, a + 34, 2);
        memcpy(&out->src, &s, sizeof(s));
        memcpy(&out->dst, &d, sizeof(d));
    }
}

/* ---- writers ----------------------------------------------------------- */

/* The family both addresses share, or AF_UNSPEC when they differ, are
 * missing or are neither IPv4 nor IPv6 (then the writers say "unknown"). */
static int proxy_pair_family(const struct sockaddr *src, const struct sockaddr *dst) {
    if (!src || !dst || src->sa_family != dst->sa_family) return AF_UNSPEC;
    if (src->sa_family == AF_INET || src->sa_family == AF_INET6) return src->sa_family;
    return AF_UNSPEC;
}

/* Text form of an address and its port (host order). */
static int proxy_ntop(const struct sockaddr *sa, char *buf, size_t cap, unsigned *port) {
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof(in));
        *port = ntohs(in.sin_port);
        return inet_ntop(AF_INET, &in.sin_addr, buf, (socklen_t)cap) != NULL;
    }
    struct sockaddr_in6 in6;
    memcpy(&in6, sa, sizeof(in6));
    *port = ntohs(in6.sin6_port);
    return inet_ntop(AF_INET6, &in6.sin6_addr, buf, (socklen_t)cap) != NULL;
}

size_t proxy_header_write_v1(char *out, size_t cap, const struct sockaddr *src,
                             const struct sockaddr *dst) {
    static const char unknown[] = "PROXY UNKNOWN\r\n";
    char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN], line[PROXY_V1_MAX + 1];
    unsigned sp, dp;
    int family = proxy_pair_family(src, dst);
    const char *text = unknown;
    size_t n = sizeof(unknown) - 1;
    if (family != AF_UNSPEC && proxy_ntop(src, s, sizeof(s), &sp) &&
        proxy_ntop(dst, d, sizeof(d), &dp)) {
        int w = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
                         family == AF_INET ? "TCP4" : "TCP6", s, d, sp, dp);
        if (w > 0 && (size_t)w < sizeof(line)) {
            text = line;
            n = (size_t)w;
        }
    }
    if (n > cap) return 0;
    memcpy(out, text, n);
    return n;
}

size_t proxy_header_write_v2(char *out, size_t cap, const struct sockaddr *src,
                             const struct sockaddr *dst) {
    int family = proxy_pair_family(src, dst);
    size_t body = family == AF_INET    ? PROXY_V2_INET_LEN
                  : family == AF_INET6 ? PROXY_V2_INET6_LEN
                                       : 0;
    if (cap < PROXY_V2_FIXED + body) return 0;
    unsigned char *p = (unsigned char *)out;
    memcpy(p, proxy_v2_sig, sizeof(proxy_v2_sig));
    p[12] = family == AF_UNSPEC ? 0x20 : 0x21; /* version 2, LOCAL or PROXY */
    p[13] = family == AF_INET ? 0x11 : family == AF_INET6 ? 0x21 : 0x00;
    p[14] = 0;
    p[15] = (unsigned char)body;
    unsigned char *a = p + PROXY_V2_FIXED;
    if (family == AF_INET) {
        struct sockaddr_in s, d;
        memcpy(&s, src, sizeof(s));
        memcpy(&d, dst, sizeof(d));
        memcpy(a, &s.sin_addr, 4);
        memcpy(a + 4, &d.sin_addr, 4);
        memcpy(a + 8, &s.sin_port, 2);
        memcpy(a + 10, &d.sin_port, 2);
    } else if (family == AF_INET6) {
        struct sockaddr_in6 s, d;
        memcpy(&s, src, sizeof(s));
        memcpy(&d, dst, sizeof(d));
        memcpy(a, &s.sin6_addr, 16);
        memcpy(a + 16, &d.sin6_addr, 16);
        memcpy(a + 32, &s.sin6_port, 2);
        memcpy(a + 34, &d.sin6_port, 2);
    }
    return PROXY_V2_FIXED + body;
}
