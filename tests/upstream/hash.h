/* hash.h - SHA-256, SHA-1 and base64 for the test upstream.
 *
 * Own code, no OpenSSL: the upstream must build anywhere the proxy builds.
 * SHA-256 fingerprints request bodies (tests compare it with hashlib);
 * SHA-1 and base64 exist only for the WebSocket handshake (RFC 6455 4.2.2). */
#ifndef FERRY_UPSTREAM_HASH_H
#define FERRY_UPSTREAM_HASH_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32
#define SHA1_LEN   20

struct sha256 {
    uint32_t h[8];     /* chaining state */
    uint64_t total;    /* bytes hashed so far */
    uint8_t block[64]; /* partial block not yet compressed */
    size_t used;       /* bytes in block */
};

struct sha1 {
    uint32_t h[5];     /* chaining state */
    uint64_t total;    /* bytes hashed so far */
    uint8_t block[64]; /* partial block not yet compressed */
    size_t used;       /* bytes in block */
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
void sha256_final(struct sha256 *s, uint8_t out[SHA256_LEN]);

void sha1_init(struct sha1 *s);
void sha1_update(struct sha1 *s, const void *data, size_t len);
void sha1_final(struct sha1 *s, uint8_t out[SHA1_LEN]);

/* Writes 4*ceil(len/3) characters plus a NUL to out; returns the characters written. */
size_t base64_encode(const uint8_t *in, size_t len, char *out);
/* Writes 2*len lowercase hex digits plus a NUL to out. */
void hex_encode(const uint8_t *in, size_t len, char *out);

#endif
