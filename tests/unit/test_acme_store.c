/* Unit tests for acme_store.c: HTTP-01 answers only for pending tokens;
 * the TLS-ALPN-01 certificate carries the name and a critical
 * acmeIdentifier whose value is the DER OCTET STRING of SHA-256(key
 * authorization) (RFC 8737 3); a name without a certificate gets the
 * placeholder, one with a certificate gets it; /status JSON parses and
 * says each name's state, and a failed renewal keeps "valid". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "ferry/acme.h"
#include "ferry/strbuf.h"

static SSL_CTX *ctx;

static void test_http01(void **state) {
    (void)state;
    char out[256];
    acme_store_add_http01("tok-1", "tok-1.thumb");
    assert_true(acme_store_http01("tok-1", out, sizeof(out)));
    assert_string_equal(out, "tok-1.thumb");
    assert_false(acme_store_http01("tok-2", out, sizeof(out)));
    assert_false(acme_store_http01("tok-", out, sizeof(out)));
    acme_store_clear_challenges();
    assert_false(acme_store_http01("tok-1", out, sizeof(out)));
}

static void test_alpn_certificate(void **state) {
    (void)state;
    assert_true(acme_store_add_alpn("x.test", "tok.thumb"));
    SSL *ssl = SSL_new(ctx);
    assert_false(acme_store_alpn(ssl, "y.test"));
    assert_true(acme_store_alpn(ssl, "X.test"));
    X509 *x = SSL_get_certificate(ssl);
    assert_non_null(x);
    assert_int_equal(X509_check_host(x, "x.test", 0, 0, NULL), 1);
    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    int idx = X509_get_ext_by_OBJ(x, oid, -1);
    assert_true(idx >= 0);
    X509_EXTENSION *e = X509_get_ext(x, idx);
    assert_int_equal(X509_EXTENSION_get_critical(e), 1);
    const ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(e);
    unsigned char want[34] = {0x04, 0x20};
    unsigned int n;
    EVP_Digest("tok.thumb", 9, want + 2, &n, EVP_sha256(), NULL);
    assert_int_equal(ASN1_STRING_length(v), 34);
    assert_memory_equal(ASN1_STRING_get0_data(v), want, 34);
    ASN1_OBJECT_free(oid);
    SSL_free(ssl);
    acme_store_clear_challenges();
    ssl = SSL_new(ctx);
    assert_false(acme_store_alpn(ssl, "x.test"));
    SSL_free(ssl);
}

/* A self-signed certificate for NAME on a new key. */
static X509 *make_cert(const char *name, EVP_PKEY **key) {
    *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, X509_VERSION_3);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)name, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, *key);
    X509_sign(x, *key, EVP_sha256());
    return x;
}

static json_t *status_of(const char *name) {
    struct strbuf b = STRBUF_INIT;
    acme_store_status(&b);
    json_t *all = json_loads(strbuf_cstr(&b), 0, NULL), *e, *found = NULL;
    strbuf_free(&b);
    assert_non_null(all);
    size_t i;
    json_array_foreach(all, i, e) {
        if (strcmp(json_string_value(json_object_get(e, "name")), name) == 0) found = json_incref(e);
    }
    json_decref(all);
    assert_non_null(found);
    return found;
}

static void test_use_and_status(void **state) {
    (void)state;
    acme_store_want("a.test");
    SSL *ssl = SSL_new(ctx);
    assert_int_equal(acme_store_use(ssl, "a.test"), 0); /* the placeholder */
    assert_int_equal(acme_store_use(ssl, NULL), 0);
    json_t *st = status_of("a.test");
    assert_string_equal(json_string_value(json_object_get(st, "state")), "pending");
    json_decref(st);
    acme_store_set_state("a.test", ACME_FAILED, "HTTP 500: oops \"quoted\"");
    st = status_of("a.test");
    assert_string_equal(json_string_value(json_object_get(st, "state")), "failed");
    assert_string_equal(json_string_value(json_object_get(st, "last_error")),
                        "HTTP 500: oops \"quoted\"");
    json_decref(st);
    EVP_PKEY *key;
    X509 *x = make_cert("a.test", &key);
    X509_up_ref(x);
    acme_store_set_cert("a.test", x, NULL, key);
    assert_int_equal(acme_store_use(ssl, "A.TEST"), 1);
    assert_int_equal(X509_cmp(SSL_get_certificate(ssl), x), 0);
    assert_true(acme_store_not_after("a.test") > time(NULL));
    acme_store_set_state("a.test", ACME_FAILED, "renewal failed"); /* the old one serves on */
    st = status_of("a.test");
    assert_string_equal(json_string_value(json_object_get(st, "state")), "valid");
    assert_string_equal(json_string_value(json_object_get(st, "last_error")), "renewal failed");
    json_decref(st);
    X509_free(x);
    SSL_free(ssl);
}

int main(void) {
    ctx = SSL_CTX_new(TLS_server_method());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http01),
        cmocka_unit_test(test_alpn_certificate),
        cmocka_unit_test(test_use_and_status),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    SSL_CTX_free(ctx);
    return rc;
}
