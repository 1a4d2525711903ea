/* proxy_proto: the PROXY protocol (HAProxy's spec, v1 text and v2 binary),
 * read on listeners with `proxy_protocol = on` and written to upstreams with
 * `proxy_protocol = v1 | v2`. Pure: no sockets. */
#ifndef FERRY_PROXY_PROTO_H
#define FERRY_PROXY_PROTO_H

#include <stddef.h>
#include <sys/socket.h>

#include "ferry/util.h"

/* The longest header we accept: v1 is at most 107 bytes; v2 is 16 bytes
 * plus its length field, which we cap (TLVs beyond are refused). */
#define PROXY_HEADER_MAX 536

struct proxy_header {
    int version;                 /* 1 or 2 */
    int local;                   /* v2 LOCAL command or v1 UNKNOWN: no addresses, use the socket's */
    struct sockaddr_storage src; /* the original client (AF_INET / AF_INET6) */
    struct sockaddr_storage dst; /* the address it connected to */
};

enum { PROXY_NEED_MORE = 0, PROXY_MALFORMED = -1 };

/* Parses a header at the start of DATA[0, LEN). Returns the header's length
 * (> 0) when complete and valid, PROXY_NEED_MORE when LEN bytes are a valid
 * prefix of a header, PROXY_MALFORMED otherwise (including a v1 line longer
 * than 107 bytes, bad addresses or ports, unknown v2 version/command/family,
 * a v2 length over PROXY_HEADER_MAX - 16). TLVs are skipped. */
int proxy_header_parse(const char *data, size_t len, struct proxy_header *out) FERRY_MUSTCHECK;

/* Writes a header for a connection from SRC to DST (both AF_INET or both
 * AF_INET6; anything else writes "PROXY UNKNOWN\r\n" / a v2 LOCAL header).
 * Returns its length, or 0 if CAP is too small. */
size_t proxy_header_write_v1(char *out, size_t cap, const struct sockaddr *src,
                             const struct sockaddr *dst);
size_t proxy_header_write_v2(char *out, size_t cap, const struct sockaddr *src,
                             const struct sockaddr *dst);

#endif
