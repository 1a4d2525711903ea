/* Unit tests for jws.c: base64url against RFC 4648 vectors; the JWK is
 * sorted and compact with 32-byte coordinates; the thumbprint is the
 * SHA-256 of exactly that text; a JWS verifies with OpenSSL over
 * "protected.payload" with r||s turned back into DER, and carries kid or
 * jwk as asked; the account key is made 0600 once and read back after,
 * and a file that holds no P-256 key is refused, not replaced. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "ferry/jws.h"

static char dir[] = "/tmp/ferry-jws-unit-XXXXXX";
static EVP_PKEY *key;

/* base64url (no padding) decoded; *N its length. */
static unsigned char *unb64(const char *s, size_t *n) {
    size_t len = strlen(s);
    unsigned char *out = malloc(len * 3 / 4 + 3);
    unsigned v = 0;
    int bits = 0;
    *n = 0;
    for (size_t i = 0; i < len; i++) {
        const char *abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const char *p = strchr(abc, s[i]);
        assert_non_null(p);
        v = v << 6 | (unsigned)(p - abc);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[(*n)++] = (unsigned char)(v >> bits);
        }
    }
    return out;
}

static void test_b64url(void **state) {
    (void)state;
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *want[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char *got = jws_b64url((const unsigned char *)in[i], strlen(in[i]));
        assert_string_equal(got, want[i]);
        free(got);
    }
    const unsigned char odd[] = {0xfb, 0xff, 0xbf};
    char *got = jws_b64url(odd, 3);
    assert_string_equal(got, "-_-_");
    free(got);
}

static void test_jwk_and_thumbprint(void **state) {
    (void)state;
    char *jwk = jws_jwk(key);
    assert_non_null(jwk);
    const char *head = "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"";
    assert_int_equal(strncmp(jwk, head, strlen(head)), 0);
    assert_null(strchr(jwk, ' '));
    json_t *j = json_loads(jwk, 0, NULL);
    size_t n;
    unsigned char *x = unb64(json_string_value(json_object_get(j, "x")), &n);
    assert_int_equal(n, 32);
    free(x);
    json_decref(j);
    unsigned char md[32];
    unsigned int mdn;
    EVP_Digest(jwk, strlen(jwk), md, &mdn, EVP_sha256(), NULL);
    char *want = jws_b64url(md, mdn), *got = jws_thumbprint(key);
    assert_string_equal(got, want);
    assert_int_equal(strlen(got), 43);
    free(want);
    free(got);
    free(jwk);
}

/* Verifies the flattened JWS TEXT with KEY; returns its protected header. */
static json_t *verify(const char *text) {
    json_t *jws = json_loads(text, 0, NULL);
    assert_non_null(jws);
    const char *h64 = json_string_value(json_object_get(jws, "protected"));
    const char *p64 = json_string_value(json_object_get(jws, "payload"));
    size_t n;
    unsigned char *raw = unb64(json_string_value(json_object_get(jws, "signature")), &n);
    assert_int_equal(n, 64);
    ECDSA_SIG *sig = ECDSA_SIG_new();
    ECDSA_SIG_set0(sig, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL));
    unsigned char *der = NULL;
    int der_len = i2d_ECDSA_SIG(sig, &der);
    char input[4096];
    snprintf(input, sizeof(input), "%s.%s", h64, p64);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestVerify(md, der, (size_t)der_len, (unsigned char *)input,
                                      strlen(input)),
                     1);
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ECDSA_SIG_free(sig);
    free(raw);
    unsigned char *h = unb64(h64, &n);
    json_t *hdr = json_loadb((const char *)h, n, 0, NULL);
    free(h);
    json_decref(jws);
    assert_non_null(hdr);
    return hdr;
}

static void test_sign(void **state) {
    (void)state;
    char *s = jws_sign(key, NULL, "nonce1", "https://ca/new-acct", "{\"a\":1}");
    json_t *hdr = verify(s);
    assert_string_equal(json_string_value(json_object_get(hdr, "alg")), "ES256");
    assert_string_equal(json_string_value(json_object_get(hdr, "nonce")), "nonce1");
    assert_string_equal(json_string_value(json_object_get(hdr, "url")), "https://ca/new-acct");
    assert_non_null(json_object_get(hdr, "jwk"));
    assert_null(json_object_get(hdr, "kid"));
    json_decref(hdr);
    free(s);
    s = jws_sign(key, "https://ca/acct/1", "n2", "https://ca/order", ""); /* POST-as-GET */
    hdr = verify(s);
    assert_string_equal(json_string_value(json_object_get(hdr, "kid")), "https://ca/acct/1");
    assert_null(json_object_get(hdr, "jwk"));
    json_t *jws = json_loads(s, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(jws, "payload")), "");
    json_decref(jws);
    json_decref(hdr);
    free(s);
}

static void test_key_file(void **state) {
    (void)state;
    char path[128], err[256];
    snprintf(path, sizeof(path), "%s/account.key", dir);
    bool created;
    EVP_PKEY *a = jws_key_open(path, &created, err, sizeof(err));
    assert_non_null(a);
    assert_true(created);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    EVP_PKEY *b = jws_key_open(path, &created, err, sizeof(err));
    assert_non_null(b);
    assert_false(created);
    assert_int_equal(EVP_PKEY_eq(a, b), 1);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
    FILE *f = fopen(path, "w");
    fputs("garbage\n", f);
    fclose(f);
    assert_null(jws_key_open(path, &created, err, sizeof(err)));
    assert_non_null(strstr(err, "no EC P-256 private key"));
    f = fopen(path, "r");
    char line[32] = "";
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    assert_string_equal(line, "garbage\n"); /* not replaced */
}

static int setup(void **state) {
    (void)state;
    key = EVP_EC_gen("P-256");
    return mkdtemp(dir) && key ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    EVP_PKEY_free(key);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url),
        cmocka_unit_test(test_jwk_and_thumbprint),
        cmocka_unit_test(test_sign),
        cmocka_unit_test(test_key_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
