/* tls_hello: see tls_hello.h. Two passes over the bytes:
 *
 *  1. The record scan (incremental). It walks the TLS record headers
 *     (type 22 handshake, version 3.x, length 1..2^14) as bytes arrive and
 *     counts handshake bytes, keeping its place in struct tls_hello, until
 *     the ClientHello's length (from its 4-byte handshake header) is all in.
 *     The first record's first two bytes decide NOT_TLS early, so a plain
 *     text client is never kept waiting.
 *  2. The hello parse (once, when the scan is complete). A cursor reads the
 *     handshake bytes through the record headers (the hello may be split
 *     over several records) and checks every length against the one that
 *     encloses it: RFC 8446 4.1.2 (RFC 5246 7.4.1.2 for a TLS 1.2 hello,
 *     whose extensions may be absent), each extension once (RFC 8446 4.2),
 *     and server_name as RFC 6066 3 has it: one host_name, a DNS name.
 *
 * Nothing is copied but the name; nothing allocates. A decision made on a
 * prefix is the one the whole input would get, because both passes only
 * ever look at bytes in order and stop at the first verdict. */
#include "ferry/tls_hello.h"

#include <stdbool.h>
#include <string.h>

#define TLS_RECORD_HEADER 5
#define TLS_RECORD_MAX (16 * 1024) /* RFC 8446 5.1: 2^14 bytes of plaintext */
#define TLS_CT_HANDSHAKE 22
#define TLS_HS_CLIENT_HELLO 1
#define TLS_EXT_SERVER_NAME 0
#define TLS_NAME_HOST 0 /* RFC 6066 NameType host_name */
#define TLS_LABEL_MAX 63

/* Reads the handshake bytes of a scanned hello across record headers,
 * within the innermost vector being read (`left`). */
struct hs_cursor {
    const uint8_t *data; /* the connection's first bytes */
    uint32_t pos;        /* next byte of data */
    uint32_t rec_left;   /* payload bytes left in the current record */
    uint32_t left;       /* bytes left in the vector being read */
};

static enum tls_hello_verdict hello_decide(struct tls_hello *h, enum tls_hello_verdict v,
                                           const char *why);
static enum tls_hello_verdict record_header(struct tls_hello *h, const uint8_t *p, size_t avail);
static enum tls_hello_verdict hello_parse(struct tls_hello *h, const uint8_t *data);
static enum tls_hello_verdict extensions_parse(struct tls_hello *h, struct hs_cursor *c);
static enum tls_hello_verdict server_name_parse(struct tls_hello *h, struct hs_cursor *c);

void tls_hello_init(struct tls_hello *h) {
    memset(h, 0, sizeof(*h));
}

const char *tls_hello_verdict_name(enum tls_hello_verdict v) {
    switch (v) {
    case TLS_HELLO_NEED_MORE: return "incomplete";
    case TLS_HELLO_FOUND: return "found";
    case TLS_HELLO_NO_SNI: return "no SNI";
    case TLS_HELLO_NOT_TLS: return "not TLS";
    case TLS_HELLO_MALFORMED: return "malformed";
    }
    return "?";
}

static enum tls_hello_verdict hello_decide(struct tls_hello *h, enum tls_hello_verdict v,
                                           const char *why) {
    h->verdict = (uint8_t)v;
    h->why = why;
    return v;
}

/* --- pass 1: the record scan ------------------------------------------------ */

/* Checks the record header at P, of which AVAIL bytes (1..5) are in, as far
 * as they go, in byte order. The first record decides whether this is TLS
 * at all: a handshake record starts 0x16 0x03 (an SSLv2-style hello starts
 * with a length byte with its top bit set, HTTP with a letter). Later
 * records must continue the handshake (RFC 8446 5.1: handshake messages
 * are not interleaved with other record types). Returns NEED_MORE while
 * the header is fine so far. */
static enum tls_hello_verdict record_header(struct tls_hello *h, const uint8_t *p, size_t avail) {
    bool first = h->pos == 0;
    enum tls_hello_verdict bad = first ? TLS_HELLO_NOT_TLS : TLS_HELLO_MALFORMED;
    if (p[0] != TLS_CT_HANDSHAKE)
        return hello_decide(h, bad, first ? "not a TLS handshake record"
                                          : "a record of another type inside the ClientHello");
    if (avail < 2) return TLS_HELLO_NEED_MORE;
    if (p[1] != 3) return hello_decide(h, bad, "record version is not 3.x");
    if (avail < TLS_RECORD_HEADER) return TLS_HELLO_NEED_MORE;
    uint32_t len = (uint32_t)p[3] << 8 | p[4];
    if (len == 0) return hello_decide(h, TLS_HELLO_MALFORMED, "empty handshake record");
    if (len > TLS_RECORD_MAX) return hello_decide(h, TLS_HELLO_MALFORMED, "record over 16 KiB");
    return TLS_HELLO_NEED_MORE;
}

/* Takes TAKE payload bytes at P into the handshake count; once the 4-byte
 * handshake header is in, checks that it starts a ClientHello that can end
 * within TLS_HELLO_MAX bytes. */
static enum tls_hello_verdict handshake_bytes(struct tls_hello *h, const uint8_t *p, size_t take) {
    for (size_t i = 0; i < take && h->hs_got + i < sizeof(h->hs_head); i++)
        h->hs_head[h->hs_got + i] = p[i];
    h->hs_got += (uint32_t)take;
    if (h->hs_need == 0 && h->hs_got >= sizeof(h->hs_head)) {
        if (h->hs_head[0] != TLS_HS_CLIENT_HELLO)
            return hello_decide(h, TLS_HELLO_MALFORMED, "the first handshake message is not a ClientHello");
        uint32_t body = (uint32_t)h->hs_head[1] << 16 | (uint32_t)h->hs_head[2] << 8 | h->hs_head[3];
        if (body > TLS_HELLO_MAX - TLS_RECORD_HEADER - sizeof(h->hs_head))
            return hello_decide(h, TLS_HELLO_MALFORMED, "ClientHello over 16 KiB");
        h->hs_need = (uint32_t)sizeof(h->hs_head) + body;
    }
    return TLS_HELLO_NEED_MORE;
}

/* Scans records from h->pos up to LEN; NEED_MORE until the hello is all in
 * (then pass 2 decides) or a header is wrong. */
static enum tls_hello_verdict records_scan(struct tls_hello *h, const uint8_t *data, size_t len) {
    while (h->pos < len) {
        if (h->rec_left == 0) {
            size_t avail = len - h->pos;
            if (avail > TLS_RECORD_HEADER) avail = TLS_RECORD_HEADER;
            enum tls_hello_verdict v = record_header(h, data + h->pos, avail);
            if (v != TLS_HELLO_NEED_MORE || avail < TLS_RECORD_HEADER) return v;
            h->rec_left = (uint16_t)(data[h->pos + 3] << 8 | data[h->pos + 4]);
            h->pos += TLS_RECORD_HEADER;
            continue;
        }
        size_t take = len - h->pos < h->rec_left ? len - h->pos : h->rec_left;
        enum tls_hello_verdict v = handshake_bytes(h, data + h->pos, take);
        if (v != TLS_HELLO_NEED_MORE) return v;
        h->pos += (uint32_t)take;
        h->rec_left = (uint16_t)(h->rec_left - take);
        if (h->hs_need && h->hs_got >= h->hs_need) return hello_parse(h, data);
    }
    return TLS_HELLO_NEED_MORE;
}

enum tls_hello_verdict tls_hello_parse(struct tls_hello *h, const uint8_t *data, size_t len) {
    if (h->verdict != TLS_HELLO_NEED_MORE) return h->verdict;
    if (len > TLS_HELLO_MAX) len = TLS_HELLO_MAX; /* the rest is never looked at */
    enum tls_hello_verdict v = records_scan(h, data, len);
    if (v == TLS_HELLO_NEED_MORE && len == TLS_HELLO_MAX)
        return hello_decide(h, TLS_HELLO_MALFORMED, "no complete ClientHello within 16 KiB");
    return v;
}

/* --- pass 2: the hello ------------------------------------------------------ */

/* The next byte; false past the end of the vector. Record headers were
 * checked by the scan, so only their length is read here. */
static bool cur_byte(struct hs_cursor *c, uint8_t *out) {
    if (c->left == 0) return false;
    if (c->rec_left == 0) {
        c->rec_left = (uint32_t)c->data[c->pos + 3] << 8 | c->data[c->pos + 4];
        c->pos += TLS_RECORD_HEADER;
    }
    *out = c->data[c->pos++];
    c->rec_left--;
    c->left--;
    return true;
}

/* A big-endian number of N bytes (1..3). */
static bool cur_uint(struct hs_cursor *c, unsigned n, uint32_t *out) {
    uint8_t b;
    *out = 0;
    for (unsigned i = 0; i < n; i++) {
        if (!cur_byte(c, &b)) return false;
        *out = *out << 8 | b;
    }
    return true;
}

static bool cur_skip(struct hs_cursor *c, uint32_t n) {
    uint8_t b;
    for (uint32_t i = 0; i < n; i++)
        if (!cur_byte(c, &b)) return false;
    return true;
}

/* Enters a vector of N bytes inside the current one; *OUTER keeps what is
 * left of the enclosing one for vec_close. */
static bool vec_open(struct hs_cursor *c, uint32_t n, uint32_t *outer) {
    if (n > c->left) return false;
    *outer = c->left - n;
    c->left = n;
    return true;
}

/* Leaves a vector, which must have been read to its end. */
static bool vec_close(struct hs_cursor *c, uint32_t outer) {
    if (c->left != 0) return false;
    c->left = outer;
    return true;
}

/* A vector with a LEN_BYTES length prefix of MIN..MAX bytes, skipped. */
static bool cur_skip_vec(struct hs_cursor *c, unsigned len_bytes, uint32_t min, uint32_t max) {
    uint32_t n;
    return cur_uint(c, len_bytes, &n) && n >= min && n <= max && cur_skip(c, n);
}

#define MALFORMED(h, why) hello_decide((h), TLS_HELLO_MALFORMED, (why))

/* The ClientHello, now that all of it is in:
 *   legacy_version(2) random(32) legacy_session_id<0..32>
 *   cipher_suites<2..2^16-2> legacy_compression_methods<1..2^8-1>
 *   [extensions<0..2^16-1>]   (absent only in a hello of TLS 1.2 or older) */
static enum tls_hello_verdict hello_parse(struct tls_hello *h, const uint8_t *data) {
    struct hs_cursor c = {.data = data, .pos = 0, .rec_left = 0, .left = h->hs_need};
    uint32_t major, suites;
    if (!cur_skip(&c, sizeof(h->hs_head))) return MALFORMED(h, "truncated ClientHello");
    if (!cur_uint(&c, 1, &major) || major != 3 || !cur_skip(&c, 1 + 32))
        return MALFORMED(h, "bad client version or truncated random");
    if (!cur_skip_vec(&c, 1, 0, 32)) return MALFORMED(h, "bad session id length");
    if (!cur_uint(&c, 2, &suites) || suites < 2 || suites % 2 != 0 || !cur_skip(&c, suites))
        return MALFORMED(h, "bad cipher suites length");
    if (!cur_skip_vec(&c, 1, 1, 255)) return MALFORMED(h, "bad compression methods length");
    if (c.left == 0) return hello_decide(h, TLS_HELLO_NO_SNI, NULL);
    return extensions_parse(h, &c);
}

/* extensions<..>: each Extension is type(2) extension_data<0..2^16-1>, and
 * fills the vector exactly. A type seen twice is refused (RFC 8446 4.2):
 * two server_name extensions could be read differently by the upstream. */
static enum tls_hello_verdict extensions_parse(struct tls_hello *h, struct hs_cursor *c) {
    uint64_t seen[65536 / 64] = {0};
    uint32_t total, outer, type, len, ext_outer;
    bool sni = false;
    if (!cur_uint(c, 2, &total) || !vec_open(c, total, &outer) || outer != 0)
        return MALFORMED(h, "extensions length does not match the ClientHello");
    while (c->left > 0) {
        if (!cur_uint(c, 2, &type) || !cur_uint(c, 2, &len) || !vec_open(c, len, &ext_outer))
            return MALFORMED(h, "truncated extension");
        if (seen[type / 64] & (1ull << (type % 64))) return MALFORMED(h, "duplicate extension");
        seen[type / 64] |= 1ull << (type % 64);
        if (type == TLS_EXT_SERVER_NAME) {
            enum tls_hello_verdict v = server_name_parse(h, c);
            if (v != TLS_HELLO_NEED_MORE) return v;
            sni = true;
        } else if (!cur_skip(c, len)) {
            return MALFORMED(h, "truncated extension");
        }
        if (!vec_close(c, ext_outer)) return MALFORMED(h, "extension longer than its contents");
    }
    if (!vec_close(c, outer)) return MALFORMED(h, "truncated extensions");
    return hello_decide(h, sni ? TLS_HELLO_FOUND : TLS_HELLO_NO_SNI, NULL);
}

/* Appends byte B of a host name to h->name, lower-cased; false for a byte
 * no DNS host name has (letters, digits, '-' and '.' only). */
static bool name_byte(struct tls_hello *h, uint8_t b) {
    if (b >= 'A' && b <= 'Z') b = (uint8_t)(b - 'A' + 'a');
    if (!((b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') || b == '-' || b == '.')) return false;
    h->name[h->name_len++] = (char)b;
    return true;
}

/* Whether h->name is a DNS name: labels of 1..63 bytes between dots (so no
 * leading, trailing or double dot). RFC 6066: no trailing dot. */
static bool name_labels_ok(const struct tls_hello *h) {
    size_t label = 0;
    for (size_t i = 0; i < h->name_len; i++) {
        if (h->name[i] != '.') {
            if (++label > TLS_LABEL_MAX) return false;
            continue;
        }
        if (label == 0) return false;
        label = 0;
    }
    return label > 0;
}

/* extension_data of server_name: ServerNameList server_name_list<1..2^16-1>,
 * each ServerName a name_type(1) and, for host_name, HostName<1..2^16-1>.
 * Like OpenSSL, we take exactly one entry and it must be a host_name: the
 * RFC never said how to skip another type, and a list of two names could be
 * routed by one and served by the other. Returns NEED_MORE when the name is
 * in h->name (the caller goes on with the other extensions). */
static enum tls_hello_verdict server_name_parse(struct tls_hello *h, struct hs_cursor *c) {
    uint32_t list, outer, type, len;
    uint8_t b;
    if (!cur_uint(c, 2, &list) || list == 0 || !vec_open(c, list, &outer) || outer != 0)
        return MALFORMED(h, "bad server_name list length");
    if (!cur_uint(c, 1, &type) || type != TLS_NAME_HOST)
        return MALFORMED(h, "server_name entry is not a host_name");
    if (!cur_uint(c, 2, &len) || len == 0 || len > TLS_HELLO_NAME_MAX || len > c->left)
        return MALFORMED(h, "bad host_name length");
    h->name_len = 0;
    for (uint32_t i = 0; i < len; i++) {
        if (!cur_byte(c, &b)) return MALFORMED(h, "truncated host_name");
        if (!name_byte(h, b)) return MALFORMED(h, "invalid byte in host_name");
    }
    h->name[h->name_len] = '\0';
    if (!name_labels_ok(h)) return MALFORMED(h, "host_name has an empty or overlong label");
    if (c->left != 0) return MALFORMED(h, "more than one server_name entry");
    return TLS_HELLO_NEED_MORE;
}
