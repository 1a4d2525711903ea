/* Unit tests for upstream.c's checkout contract, on a real loop against a
 * listening socket of the test's own: a new connection is handed over
 * later, from the loop; a pooled one before upstream_checkout() returns; a
 * checkout that cannot even start returns an error and never calls back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <uv.h>

#include "ferry/config.h"
#include "ferry/health.h"
#include "ferry/stats.h"
#include "ferry/upstream.h"

struct probe {
    struct upstream_checkout co; /* first: the callback finds the probe from it */
    struct upstream_conn *uc;
    int status;
    int calls;
};

static void on_checkout(struct upstream_checkout *co, struct upstream_conn *uc, int status) {
    struct probe *p = (struct probe *)co;
    p->uc = uc;
    p->status = status;
    p->calls++;
}

/* The server side: accepts and keeps every connection until the end. */
static uv_tcp_t server, accepted[4];
static int naccepted;

static void on_server_conn(uv_stream_t *s, int status) {
    assert_int_equal(status, 0);
    assert_true(naccepted < 4);
    uv_tcp_t *t = &accepted[naccepted++];
    assert_int_equal(uv_tcp_init(s->loop, t), 0);
    assert_int_equal(uv_accept(s, (uv_stream_t *)t), 0);
}

static void on_closed(uv_handle_t *h) {
    (void)h;
}

static void test_checkout_contract(void **state) {
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(uv_tcp_init(&loop, &server), 0);
    struct sockaddr_in any;
    uv_ip4_addr("127.0.0.1", 0, &any);
    assert_int_equal(uv_tcp_bind(&server, (const struct sockaddr *)&any, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&server, 8, on_server_conn), 0);
    struct sockaddr_in name;
    int namelen = sizeof(name);
    assert_int_equal(uv_tcp_getsockname(&server, (struct sockaddr *)&name, &namelen), 0);

    char text[512];
    snprintf(text, sizeof(text),
             "[listener web]\nbind = 127.0.0.1:1\nmode = http\nupstream = app\n"
             "[upstream app]\nserver = 127.0.0.1:%d\nkeepalive = 4\nretries = 0\n"
             "[upstream none]\nserver = nonexistent.invalid:80\nretries = 0\n",
             ntohs(name.sin_port));
    struct config_errors errs = {0};
    struct config *cfg = config_load_string("t.ini", text, &errs);
    assert_non_null(cfg);
    health_adopt(cfg);
    struct stats stats = {0};
    struct upstream *up = upstream_create(&cfg->upstreams[0], &loop, &stats);
    struct upstream_want want = {0};

    /* A new connection: the callback runs later, from the loop. */
    struct probe p = {0};
    assert_int_equal(upstream_checkout(up, &p.co, on_checkout, &want), 0);
    assert_int_equal(p.calls, 0);
    for (int i = 0; i < 2000 && !p.calls; i++) uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(p.calls, 1);
    assert_non_null(p.uc);
    assert_false(p.uc->reused);
    struct upstream_conn *first = p.uc;
    upstream_release(first, true);

    /* A pooled connection: handed over before upstream_checkout() returns. */
    struct probe q = {0};
    assert_int_equal(upstream_checkout(up, &q.co, on_checkout, &want), 0);
    assert_int_equal(q.calls, 1);
    assert_ptr_equal(q.uc, first);
    assert_true(q.uc->reused);

    /* fresh: never from the pool, so later again. */
    struct probe r = {0};
    want.fresh = true;
    assert_int_equal(upstream_checkout(up, &r.co, on_checkout, &want), 0);
    assert_int_equal(r.calls, 0);
    upstream_checkout_cancel(&r.co);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(r.calls, 0); /* cancelled: never called back */

    /* No server can be tried (the only one does not resolve): an error,
     * and no callback, ever. */
    struct upstream *none = upstream_create(&cfg->upstreams[1], &loop, &stats);
    struct probe n = {0};
    want.fresh = false;
    assert_int_equal(upstream_checkout(none, &n.co, on_checkout, &want), UV_EAI_NONAME);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(n.calls, 0);
    upstream_destroy(none);

    upstream_conn_close(q.uc, NULL, NULL);
    upstream_close_idle(up);
    for (int i = 0; i < naccepted; i++) uv_close((uv_handle_t *)&accepted[i], on_closed);
    uv_close((uv_handle_t *)&server, on_closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    upstream_destroy(up);
    stats_free(&stats);
    config_free(cfg);
    health_free();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkout_contract),
    };
    return cmocka_run_group_tests_name("upstream", tests, NULL, NULL);
}
