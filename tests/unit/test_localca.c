/* Unit tests for localca.c: the CA is made once in a fresh directory with
 * private modes and reused when opened again; leaves verify against it
 * with OpenSSL (chain, name, server purpose, validity); the cache keeps at
 * most LOCALCA_CACHE_MAX names and drops the least recently used; a leaf
 * past two thirds of its life is issued again; broken stored files are
 * set aside and replaced; names that are not DNS names get nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "ferry/localca.h"

static char base[] = "/tmp/ferry-localca-unit-XXXXXX";
static int ndirs;

/* A state_dir that does not exist yet, one level below BASE. */
static void fresh_dir(char *out, size_t len) {
    snprintf(out, len, "%s/state%d", base, ndirs++);
}

static struct localca *open_ok(const char *dir, bool *created) {
    char err[512] = "";
    struct localca *ca = localca_open(dir, created, err, sizeof(err));
    if (!ca) fail_msg("localca_open %s: %s", dir, err);
    return ca;
}

/* Whether CERT verifies against CA's certificate for NAME at time AT. */
static bool verifies(struct localca *ca, X509 *cert, const char *name, time_t at) {
    X509_STORE *store = X509_STORE_new();
    X509_STORE_add_cert(store, localca_cert(ca));
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, store, cert, NULL);
    X509_VERIFY_PARAM *p = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set1_host(p, name, 0);
    X509_VERIFY_PARAM_set_purpose(p, X509_PURPOSE_SSL_SERVER);
    X509_VERIFY_PARAM_set_time(p, at);
    bool ok = X509_verify_cert(ctx) == 1;
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok;
}

static X509 *leaf(struct localca *ca, const char *name, time_t now) {
    X509 *cert;
    EVP_PKEY *key;
    assert_int_equal(localca_leaf(ca, name, now, &cert, &key), 0);
    assert_int_equal(X509_check_private_key(cert, key), 1);
    EVP_PKEY_free(key);
    return cert;
}

static int mode_of(const char *path) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (int)(st.st_mode & 07777);
}

static void test_issue_verifies(void **state) {
    (void)state;
    char dir[256], path[300];
    fresh_dir(dir, sizeof(dir));
    bool created;
    struct localca *ca = open_ok(dir, &created);
    assert_true(created);
    assert_int_equal(mode_of(dir), 0700);
    snprintf(path, sizeof(path), "%s/ca.key", dir);
    assert_int_equal(mode_of(path), 0600);
    assert_int_equal(mode_of(localca_cert_path(ca)), 0600);
    time_t now = time(NULL);
    X509 *cert = leaf(ca, "App.LocalHost", now);
    assert_true(verifies(ca, cert, "app.localhost", now));
    assert_false(verifies(ca, cert, "other.localhost", now)); /* one name per leaf */
    assert_true(verifies(ca, cert, "app.localhost", now + LOCALCA_LEAF_LIFETIME_S - 60));
    assert_false(verifies(ca, cert, "app.localhost", now + LOCALCA_LEAF_LIFETIME_S + 60));
    assert_int_equal(X509_check_ca(cert), 0);
    X509_free(cert);
    localca_release(ca);
}

static void test_reopen_reuses(void **state) {
    (void)state;
    char dir[256];
    fresh_dir(dir, sizeof(dir));
    bool created;
    struct localca *ca = open_ok(dir, &created);
    X509 *first = X509_dup(localca_cert(ca));
    struct localca *again = open_ok(dir, &created); /* still open: shared */
    assert_ptr_equal(again, ca);
    assert_false(created);
    localca_release(again);
    localca_release(ca);
    ca = open_ok(dir, &created); /* a restart: read back from the files */
    assert_false(created);
    assert_int_equal(X509_cmp(first, localca_cert(ca)), 0);
    X509_free(first);
    localca_release(ca);
}

static void test_cache_bound(void **state) {
    (void)state;
    char dir[256], name[64];
    fresh_dir(dir, sizeof(dir));
    bool created;
    struct localca *ca = open_ok(dir, &created);
    time_t now = time(NULL);
    for (int i = 0; i < LOCALCA_CACHE_MAX + 10; i++) {
        snprintf(name, sizeof(name), "n%d.localhost", i);
        X509_free(leaf(ca, name, now));
    }
    assert_int_equal(localca_cached(ca), LOCALCA_CACHE_MAX);
    unsigned long long issued = localca_issued(ca);
    assert_int_equal(issued, LOCALCA_CACHE_MAX + 10);
    snprintf(name, sizeof(name), "n%d.localhost", LOCALCA_CACHE_MAX + 9); /* newest: cached */
    X509_free(leaf(ca, name, now));
    assert_int_equal(localca_issued(ca), issued);
    X509_free(leaf(ca, "n0.localhost", now)); /* the oldest went: issued again */
    assert_int_equal(localca_issued(ca), issued + 1);
    assert_int_equal(localca_cached(ca), LOCALCA_CACHE_MAX);
    localca_release(ca);
}

static void test_renewal(void **state) {
    (void)state;
    char dir[256];
    fresh_dir(dir, sizeof(dir));
    bool created;
    struct localca *ca = open_ok(dir, &created);
    time_t now = time(NULL), renew = now + LOCALCA_LEAF_LIFETIME_S * 2 / 3;
    X509 *a = leaf(ca, "r.localhost", now);
    X509 *b = leaf(ca, "r.localhost", renew - 1);
    assert_int_equal(X509_cmp(a, b), 0);
    X509 *c = leaf(ca, "r.localhost", renew);
    assert_int_not_equal(X509_cmp(a, c), 0);
    assert_true(verifies(ca, c, "r.localhost", now + LOCALCA_LEAF_LIFETIME_S + 60));
    assert_int_equal(localca_issued(ca), 2);
    X509_free(a);
    X509_free(b);
    X509_free(c);
    localca_release(ca);
}

static void test_bad_names(void **state) {
    (void)state;
    char dir[256], longlabel[80];
    fresh_dir(dir, sizeof(dir));
    bool created;
    struct localca *ca = open_ok(dir, &created);
    memset(longlabel, 'a', 64);
    snprintf(longlabel + 64, sizeof(longlabel) - 64, ".localhost");
    const char *bad[] = {"", "a..b", ".a.b", "a.b.", "-a.b", "a-.b", "a_b.localhost",
                         "a b.localhost", "a,DNS:evil.com", "*.localhost", longlabel};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        X509 *cert = NULL;
        EVP_PKEY *key = NULL;
        if (localca_leaf(ca, bad[i], time(NULL), &cert, &key) != -1)
            fail_msg("'%s' got a certificate", bad[i]);
    }
    assert_int_equal(localca_issued(ca), 0);
    assert_true(localca_name_ok("localhost"));
    assert_true(localca_name_ok("a-b.x1.localhost"));
    localca_release(ca);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_corrupt_replaced(void **state) {
    (void)state;
    char dir[256], path[300];
    fresh_dir(dir, sizeof(dir));
    bool created;
    struct localca *ca = open_ok(dir, &created);
    X509 *first = X509_dup(localca_cert(ca));
    localca_release(ca);
    snprintf(path, sizeof(path), "%s/ca.pem", dir);
    write_file(path, "not a certificate\n");
    ca = open_ok(dir, &created);
    assert_true(created);
    assert_int_not_equal(X509_cmp(first, localca_cert(ca)), 0);
    snprintf(path, sizeof(path), "%s/ca.pem.bad", dir);
    assert_int_equal(access(path, F_OK), 0);
    X509 *cert = leaf(ca, "c.localhost", time(NULL));
    assert_true(verifies(ca, cert, "c.localhost", time(NULL)));
    X509_free(cert);
    X509_free(first);
    localca_release(ca);
}

static void test_check_dir(void **state) {
    (void)state;
    char dir[256], deep[320], file[320], sub[384], err[512];
    fresh_dir(dir, sizeof(dir));
    snprintf(deep, sizeof(deep), "%s/deep/er", dir);
    assert_int_equal(localca_check_dir(deep, err, sizeof(err)), 0);
    assert_int_equal(access(dir, F_OK), -1); /* checking makes nothing */
    snprintf(file, sizeof(file), "%s/plain", base);
    write_file(file, "x");
    snprintf(sub, sizeof(sub), "%s/sub", file);
    assert_int_equal(localca_check_dir(sub, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "is not a directory"));
    bool created;
    assert_null(localca_open(sub, &created, err, sizeof(err)));
}

static int setup(void **state) {
    (void)state;
    return mkdtemp(base) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_verifies), cmocka_unit_test(test_reopen_reuses),
        cmocka_unit_test(test_cache_bound),    cmocka_unit_test(test_renewal),
        cmocka_unit_test(test_bad_names),      cmocka_unit_test(test_corrupt_replaced),
        cmocka_unit_test(test_check_dir),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
