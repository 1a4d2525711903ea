/* tls_hello: reads the server name (SNI) out of the first bytes of a TLS
 * connection, without decrypting or consuming anything. Pure: no sockets.
 *
 * A tcp listener with `sni` routes peeks at the client's ClientHello
 * (RFC 8446 4.1.2, RFC 5246 7.4.1.2) to pick an upstream, then forwards
 * every byte it read untouched. The hello may come in any number of reads
 * and may span several TLS records (RFC 8446 5.1 lets a handshake message
 * be fragmented); the reader keeps its place between calls, so each byte
 * is looked at a bounded number of times however the bytes are split.
 *
 *   bytes so far ──> tls_hello_parse ──> NEED_MORE   (call again with more)
 *                         │              FOUND       name[] holds the SNI
 *                         │              NO_SNI      a valid hello without one
 *                         │              NOT_TLS     not a TLS handshake record
 *                         └────────────> MALFORMED   a TLS record that lies
 *
 * A verdict other than NEED_MORE is final: more bytes never change it, and
 * however the same bytes were split between calls the verdict is the same.
 * Everything past the first TLS_HELLO_MAX bytes is ignored: a hello that
 * has not ended by then is MALFORMED. */
#ifndef FERRY_TLS_HELLO_H
#define FERRY_TLS_HELLO_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/util.h"

/* The most bytes (record headers included) read to find the hello's end. */
#define TLS_HELLO_MAX (16 * 1024)
/* The longest DNS name (RFC 1035 2.3.4, without the trailing dot). */
#define TLS_HELLO_NAME_MAX 253

enum tls_hello_verdict {
    TLS_HELLO_NEED_MORE = 0, /* a valid prefix: call again with more bytes */
    TLS_HELLO_FOUND,         /* a valid ClientHello with a host_name: see name */
    TLS_HELLO_NO_SNI,        /* a valid ClientHello without server_name */
    TLS_HELLO_NOT_TLS,       /* the first bytes are no TLS handshake record (plain
                              * text, an SSLv2-style hello, ...) */
    TLS_HELLO_MALFORMED,     /* TLS records, but no valid ClientHello within
                              * TLS_HELLO_MAX bytes; `why` says what was wrong */
};

/* Where a parse stands. Zero it (or tls_hello_init) before the first call;
 * the fields below are read-only for the caller. */
struct tls_hello {
    uint32_t pos;        /* next input byte the record scan looks at */
    uint16_t rec_left;   /* payload bytes of the current record not yet scanned;
                          * 0: the next byte starts a record header */
    uint32_t hs_got;     /* handshake bytes scanned so far */
    uint32_t hs_need;    /* 4 + the hello's length once its header is in, else 0 */
    uint8_t hs_head[4];  /* the handshake header (type, 24-bit length) */
    uint8_t verdict;     /* enum tls_hello_verdict: final unless NEED_MORE */
    uint8_t name_len;    /* FOUND: bytes of name */
    const char *why;     /* NOT_TLS, MALFORMED: a static phrase for logs, else NULL */
    char name[TLS_HELLO_NAME_MAX + 1]; /* FOUND: the host name, lower-cased, NUL-ended */
};

void tls_hello_init(struct tls_hello *h);

/* Parses the first LEN bytes of a connection at DATA. DATA holds every byte
 * received so far: each call passes the same bytes as the one before and
 * possibly more. Returns the verdict (also kept in H). */
enum tls_hello_verdict tls_hello_parse(struct tls_hello *h, const uint8_t *data,
                                       size_t len) FERRY_MUSTCHECK;

/* "found", "no SNI", ... for logs. */
const char *tls_hello_verdict_name(enum tls_hello_verdict v);

#endif
