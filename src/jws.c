/* jws: ES256 JWS for ACME; see jws.h. */
#include "ferry/jws.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry/statefile.h"

#define JWS_COORD 32 /* bytes of a P-256 coordinate, and of r and s */

char *jws_b64url(const unsigned char *data, size_t n) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = xmalloc(n / 3 * 4 + 5), *o = out;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8 | data[i + 2];
        *o++ = abc[v >> 18];
        *o++ = abc[(v >> 12) & 63];
        *o++ = abc[(v >> 6) & 63];
        *o++ = abc[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)data[i] << 16;
        *o++ = abc[v >> 18];
        *o++ = abc[(v >> 12) & 63];
    } else if (n - i == 2) {
        unsigned v = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8;
        *o++ = abc[v >> 18];
        *o++ = abc[(v >> 12) & 63];
        *o++ = abc[(v >> 6) & 63];
    }
    *o = '\0';
    return out;
}

static bool key_is_p256(EVP_PKEY *key) {
    char group[64];
    return EVP_PKEY_is_a(key, "EC") &&
           EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                          NULL) == 1 &&
           strcmp(group, "prime256v1") == 0;
}

static int write_key(FILE *f, void *key) {
    return PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
}

EVP_PKEY *jws_key_open(const char *path, bool *created, char *err, size_t len) {
    *created = false;
    FILE *f = fopen(path, "r");
    if (f) {
        EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
        ERR_clear_error();
        if (key && key_is_p256(key)) return key;
        EVP_PKEY_free(key);
        snprintf(err, len, "%s holds no EC P-256 private key", path);
        return NULL;
    }
    if (errno != ENOENT) {
        snprintf(err, len, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (!key || statefile_write(path, write_key, key) < 0) {
        snprintf(err, len, "cannot make %s: %s", path, key ? strerror(errno) : "no key");
        EVP_PKEY_free(key);
        ERR_clear_error();
        return NULL;
    }
    *created = true;
    return key;
}

/* The key's public point as base64url coordinates (X, Y allocated). */
static bool key_coords(EVP_PKEY *key, char **x, char **y) {
    BIGNUM *bx = NULL, *by = NULL;
    unsigned char bin[2][JWS_COORD];
    bool ok = EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &bx) == 1 &&
              EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &by) == 1 &&
              BN_bn2binpad(bx, bin[0], JWS_COORD) == JWS_COORD &&
              BN_bn2binpad(by, bin[1], JWS_COORD) == JWS_COORD;
    BN_free(bx);
    BN_free(by);
    if (!ok) return false;
    *x = jws_b64url(bin[0], JWS_COORD);
    *y = jws_b64url(bin[1], JWS_COORD);
    return true;
}

static json_t *jwk_object(EVP_PKEY *key) {
    char *x, *y;
    if (!key_coords(key, &x, &y)) return NULL;
    json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "crv", "P-256", "kty", "EC", "x", x, "y", y);
    free(x);
    free(y);
    return j;
}

char *jws_jwk(EVP_PKEY *key) {
    json_t *j = jwk_object(key);
    /* sorted and compact: exactly the form RFC 7638 hashes */
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    return s;
}

char *jws_thumbprint(EVP_PKEY *key) {
    char *jwk = jws_jwk(key);
    if (!jwk) return NULL;
    unsigned char md[32];
    unsigned int n = 0;
    int ok = EVP_Digest(jwk, strlen(jwk), md, &n, EVP_sha256(), NULL);
    free(jwk);
    return ok == 1 ? jws_b64url(md, n) : NULL;
}

/* ES256 over INPUT: r and s, 32 bytes each (RFC 7518 3.4), base64url. */
static char *es256(EVP_PKEY *key, const char *input) {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[128], raw[2 * JWS_COORD];
    size_t der_len = sizeof(der);
    bool ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
              EVP_DigestSign(md, der, &der_len, (const unsigned char *)input, strlen(input)) == 1;
    EVP_MD_CTX_free(md);
    const unsigned char *p = der;
    ECDSA_SIG *sig = ok ? d2i_ECDSA_SIG(NULL, &p, (long)der_len) : NULL;
    ok = sig && BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, JWS_COORD) == JWS_COORD &&
         BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + JWS_COORD, JWS_COORD) == JWS_COORD;
    ECDSA_SIG_free(sig);
    ERR_clear_error();
    return ok ? jws_b64url(raw, sizeof(raw)) : NULL;
}

char *jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
               const char *payload) {
    json_t *hdr = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "nonce", nonce, "url", url);
    json_t *who = kid ? json_string(kid) : jwk_object(key);
    if (!hdr || !who || json_object_set_new(hdr, kid ? "kid" : "jwk", who) < 0) {
        json_decref(hdr);
        return NULL;
    }
    char *h = json_dumps(hdr, JSON_COMPACT);
    json_decref(hdr);
    if (!h) return NULL;
    char *h64 = jws_b64url((const unsigned char *)h, strlen(h));
    char *p64 = jws_b64url((const unsigned char *)payload, strlen(payload));
    free(h);
    size_t n = strlen(h64) + strlen(p64) + 2;
    char *input = xmalloc(n);
    snprintf(input, n, "%s.%s", h64, p64);
    char *sig = es256(key, input);
    free(input);
    json_t *jws =
        sig ? json_pack("{s:s, s:s, s:s}", "protected", h64, "payload", p64, "signature", sig)
            : NULL;
    char *out = jws ? json_dumps(jws, JSON_COMPACT) : NULL;
    json_decref(jws);
    free(sig);
    free(h64);
    free(p64);
    return out;
}
