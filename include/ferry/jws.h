/* jws: the signed requests of ACME (RFC 8555 6.2): JWS in flattened JSON
 * serialization, ES256 (ECDSA P-256 with SHA-256, RFC 7518 3.4) with an
 * account key kept in state_dir.
 *
 * Pure functions over OpenSSL and jansson; nothing here does I/O except
 * jws_key_open(), which reads or makes the key file. */
#ifndef FERRY_JWS_H
#define FERRY_JWS_H

#include <stdbool.h>
#include <stddef.h>

#include "ferry/util.h"

typedef struct evp_pkey_st EVP_PKEY;

/* The EC P-256 key at PATH, made there (0600) when the file does not
 * exist. *CREATED says whether it was made. A file that exists and holds
 * no P-256 key is an error (NULL, message in ERR): it is not replaced, an
 * account key is the account. */
EVP_PKEY *jws_key_open(const char *path, bool *created, char *err, size_t len) FERRY_MUSTCHECK;

/* base64url without padding (RFC 7515 2) of N bytes; allocated. */
char *jws_b64url(const unsigned char *data, size_t n);

/* The public JWK of KEY with its members in lexicographic order and no
 * whitespace, as RFC 7638 hashes it: {"crv":"P-256","kty":"EC","x":..,"y":..}.
 * Allocated. */
char *jws_jwk(EVP_PKEY *key);

/* base64url(SHA-256(jwk)): the JWK thumbprint (RFC 7638), for key
 * authorizations (RFC 8555 8.1). Allocated. */
char *jws_thumbprint(EVP_PKEY *key);

/* A JWS for URL: protected header {"alg":"ES256", "kid": KID or "jwk": the
 * key when KID is NULL, "nonce", "url"}, PAYLOAD as given (a JSON text, or
 * "" for POST-as-GET). Returns the flattened JSON serialization,
 * allocated, or NULL when signing failed. */
char *jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
               const char *payload);

#endif
