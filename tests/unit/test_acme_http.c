/* Unit tests for acme_http.c against a real pebble (skipped without it):
 * GET of the directory (200, JSON), HEAD of newNonce (a Replay-Nonce and
 * no body), a CA that does not vouch for the server (the handshake fails
 * with "certificate verify failed"), a refused port, a bad URL refused at
 * once, and acme_http_free with a request in flight (its callback runs
 * with UV_ECANCELED). Every test ends with the loop closing cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <uv.h>

#include "ferry/acme_http.h"
#include "pebble_fixture.h"

static struct pebble peb;
static bool have_pebble;

struct result {
    int calls, err, status;
    char body[8192];
    char nonce[256], ctype[128];
};

static void on_resp(void *arg, int err, const struct acme_resp *r) {
    struct result *res = arg;
    res->calls++;
    res->err = err;
    if (!r) return;
    res->status = r->status;
    snprintf(res->body, sizeof(res->body), "%s", r->body);
    snprintf(res->nonce, sizeof(res->nonce), "%s", r->nonce ? r->nonce : "");
    snprintf(res->ctype, sizeof(res->ctype), "%s", r->content_type ? r->content_type : "");
}

/* One request on a fresh loop and client trusting CA; the client is freed
 * and the loop must close. */
static struct result run(const char *ca, const char *method, const char *url) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    struct acme_http *c = acme_http_new(&loop, ca, err, sizeof(err));
    assert_non_null(c);
    struct result res = {0};
    assert_int_equal(acme_http_request(c, method, url, NULL, on_resp, &res), 0);
    assert_int_equal(res.calls, 0); /* never from inside the call */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(res.calls, 1);
    if (res.err < 0) assert_true(acme_http_error(c)[0] != '\0');
    acme_http_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    return res;
}

#define NEED_PEBBLE()                                                                              \
    do {                                                                                           \
        if (!have_pebble) skip();                                                                  \
    } while (0)

static void test_directory(void **state) {
    (void)state;
    NEED_PEBBLE();
    struct result r = run(peb.ca, "GET", peb.url);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    json_t *dir = json_loads(r.body, 0, NULL);
    assert_non_null(dir);
    const char *nonce_url = json_string_value(json_object_get(dir, "newNonce"));
    assert_non_null(nonce_url);
    assert_non_null(json_object_get(dir, "newOrder"));
    char url[256];
    snprintf(url, sizeof(url), "%s", nonce_url);
    json_decref(dir);
    r = run(peb.ca, "HEAD", url);
    assert_int_equal(r.err, 0);
    assert_true(r.status == 200 || r.status == 204);
    assert_true(strlen(r.nonce) > 10);
    assert_string_equal(r.body, "");
}

static void test_untrusted(void **state) {
    (void)state;
    NEED_PEBBLE();
    /* the system's CAs do not know pebble's local CA */
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    struct acme_http *c = acme_http_new(&loop, NULL, err, sizeof(err));
    struct result res = {0};
    assert_int_equal(acme_http_request(c, "GET", peb.url, NULL, on_resp, &res), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(res.calls, 1);
    assert_true(res.err < 0);
    assert_non_null(strstr(acme_http_error(c), "certificate verify failed"));
    acme_http_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_refused_and_bad_url(void **state) {
    (void)state;
    char url[64];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/dir", pebble_free_port());
    struct result r = run(NULL, "GET", url);
    assert_int_equal(r.err, UV_ECONNREFUSED);
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    struct acme_http *c = acme_http_new(&loop, NULL, err, sizeof(err));
    struct result res = {0};
    assert_int_equal(acme_http_request(c, "GET", "http://plain/", NULL, on_resp, &res), UV_EINVAL);
    assert_int_equal(acme_http_request(c, "GET", "https:///x", NULL, on_resp, &res), UV_EINVAL);
    acme_http_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(res.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_free_in_flight(void **state) {
    (void)state;
    NEED_PEBBLE();
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    struct acme_http *c = acme_http_new(&loop, peb.ca, err, sizeof(err));
    struct result res = {0};
    assert_int_equal(acme_http_request(c, "GET", peb.url, NULL, on_resp, &res), 0);
    uv_run(&loop, UV_RUN_NOWAIT); /* resolving or connecting now */
    acme_http_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(res.calls, 1);
    assert_true(res.err == UV_ECANCELED || res.err == 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static int setup(void **state) {
    (void)state;
    have_pebble = pebble_start(&peb, "");
    if (!have_pebble) fprintf(stderr, "pebble is not installed or did not start: tests skip\n");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    pebble_stop(&peb);
    return 0;
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_directory),
        cmocka_unit_test(test_untrusted),
        cmocka_unit_test(test_refused_and_bad_url),
        cmocka_unit_test(test_free_in_flight),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
