/* Unit tests for upstream.c's checkout contract and keep-alive pool, on a
 * real loop against a listening socket of the test's own: a new connection
 * is handed over later, from the loop; a pooled one before
 * upstream_checkout() returns; a checkout that cannot even start returns an
 * error and never calls back; a cancelled one never calls back and leaks
 * nothing; the pool hands out the most recent idle connection first and
 * drops one the server closed; a server's addresses follow its name's
 * answers (each address its own entry and pool, a vanished one drained). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
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
static uv_tcp_t server, accepted[8];
static int naccepted;

static void on_server_conn(uv_stream_t *s, int status) {
    assert_int_equal(status, 0);
    assert_true(naccepted < 8);
    uv_tcp_t *t = &accepted[naccepted++];
    assert_int_equal(uv_tcp_init(s->loop, t), 0);
    assert_int_equal(uv_accept(s, (uv_stream_t *)t), 0);
}

static void on_closed(uv_handle_t *h) {
    (void)h;
}

/* A loop, a listening server on an ephemeral port, and upstream "app" of
 * a config (keepalive 4, no retries) pointing at it; "none" does not
 * resolve. */
struct env {
    uv_loop_t loop;
    struct config *cfg;
    struct stats stats;
    struct upstream *up;
    int port; /* the server's */
};

static void env_init(struct env *e) {
    memset(e, 0, sizeof(*e));
    naccepted = 0;
    assert_int_equal(uv_loop_init(&e->loop), 0);
    assert_int_equal(uv_tcp_init(&e->loop, &server), 0);
    struct sockaddr_in any;
    uv_ip4_addr("127.0.0.1", 0, &any);
    assert_int_equal(uv_tcp_bind(&server, (const struct sockaddr *)&any, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&server, 8, on_server_conn), 0);
    struct sockaddr_in name;
    int namelen = sizeof(name);
    assert_int_equal(uv_tcp_getsockname(&server, (struct sockaddr *)&name, &namelen), 0);
    e->port = ntohs(name.sin_port);

    char text[512];
    snprintf(text, sizeof(text),
             "[listener web]\nbind = 127.0.0.1:1\nmode = http\nupstream = app\n"
             "[upstream app]\nserver = 127.0.0.1:%d\nkeepalive = 4\nretries = 0\n"
             "[upstream none]\nserver = nonexistent.invalid:80\nretries = 0\n",
             ntohs(name.sin_port));
    struct config_errors errs = {0};
    e->cfg = config_load_string("t.ini", text, &errs);
    assert_non_null(e->cfg);
    health_adopt(e->cfg);
    e->up = upstream_create(&e->cfg->upstreams[0], &e->loop, &e->stats);
}

/* Closes what is left and proves no handle leaked. */
static void env_free(struct env *e) {
    upstream_close_idle(e->up);
    for (int i = 0; i < naccepted; i++)
        if (!uv_is_closing((uv_handle_t *)&accepted[i]))
            uv_close((uv_handle_t *)&accepted[i], on_closed);
    uv_close((uv_handle_t *)&server, on_closed);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    assert_int_equal(e->up->servers[0]->active, 0);
    upstream_destroy(e->up);
    stats_free(&e->stats);
    config_free(e->cfg);
    health_free();
}

/* A connection to "app" (FRESH: a new one, connected by the loop; else
 * pooled when one is idle). */
static struct upstream_conn *checkout_any(struct env *e, bool fresh) {
    struct probe p = {0};
    struct upstream_want want = {.fresh = fresh};
    assert_int_equal(upstream_checkout(e->up, &p.co, on_checkout, &want), 0);
    for (int i = 0; i < 2000 && !p.calls; i++) uv_run(&e->loop, UV_RUN_ONCE);
    assert_int_equal(p.calls, 1);
    assert_non_null(p.uc);
    return p.uc;
}

static struct upstream_conn *connect_new(struct env *e) {
    return checkout_any(e, true);
}

static void test_checkout_contract(void **state) {
    (void)state;
    struct env env;
    env_init(&env);
    struct env *e = &env;
    uv_loop_t *loop = &e->loop;
    struct upstream *up = e->up;
    struct upstream_want want = {0};

    /* A new connection: the callback runs later, from the loop. */
    struct probe p = {0};
    assert_int_equal(upstream_checkout(up, &p.co, on_checkout, &want), 0);
    assert_int_equal(p.calls, 0);
    for (int i = 0; i < 2000 && !p.calls; i++) uv_run(loop, UV_RUN_ONCE);
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
    uv_run(loop, UV_RUN_NOWAIT);
    assert_int_equal(r.calls, 0); /* cancelled: never called back */

    /* No server can be tried (the only one does not resolve): an error,
     * and no callback, ever. */
    struct upstream *none = upstream_create(&e->cfg->upstreams[1], loop, &e->stats);
    struct probe n = {0};
    want.fresh = false;
    assert_int_equal(upstream_checkout(none, &n.co, on_checkout, &want), UV_EAI_NONAME);
    uv_run(loop, UV_RUN_NOWAIT);
    assert_int_equal(n.calls, 0);
    upstream_destroy(none);

    upstream_conn_close(q.uc, NULL, NULL);
    env_free(e);
}

/* The pool hands out the connection released last: few stay warm, the
 * rest reach keepalive_timeout. */
static void test_pool_is_lifo(void **state) {
    (void)state;
    struct env e;
    env_init(&e);
    struct upstream_conn *older = connect_new(&e), *newer = connect_new(&e);
    upstream_release(older, true);
    upstream_release(newer, true);
    assert_int_equal(e.up->servers[0]->nidle, 2);
    struct upstream_want want = {0};
    struct probe p = {0}, q = {0};
    assert_int_equal(upstream_checkout(e.up, &p.co, on_checkout, &want), 0);
    assert_ptr_equal(p.uc, newer);
    assert_int_equal(upstream_checkout(e.up, &q.co, on_checkout, &want), 0);
    assert_ptr_equal(q.uc, older);
    assert_int_equal(e.up->servers[0]->nidle, 0);
    upstream_conn_close(p.uc, NULL, NULL);
    upstream_conn_close(q.uc, NULL, NULL);
    env_free(&e);
}

/* A pooled connection is handed over before upstream_checkout() returns,
 * and it is the same object, still reading into the pool's watch until
 * its new user takes the reads. */
static void test_pooled_checkout_is_synchronous(void **state) {
    (void)state;
    struct env e;
    env_init(&e);
    struct upstream_conn *uc = connect_new(&e);
    upstream_release(uc, true);
    assert_true(uc->pooled);
    struct upstream_want want = {0};
    struct probe p = {0};
    assert_int_equal(upstream_checkout(e.up, &p.co, on_checkout, &want), 0);
    assert_int_equal(p.calls, 1); /* no loop iteration in between */
    assert_ptr_equal(p.uc, uc);
    assert_int_equal(p.status, 0);
    assert_true(uc->reused);
    assert_false(uc->pooled);
    assert_true(upstream_conn_transport(uc)->reading);
    upstream_conn_close(uc, NULL, NULL);
    env_free(&e);
}

/* Cancelled while connecting: never called back, the attempt's connection
 * is closed and freed (env_free proves no handle is left). */
static void test_cancel_during_connect(void **state) {
    (void)state;
    struct env e;
    env_init(&e);
    struct upstream_want want = {0};
    struct probe p = {0};
    assert_int_equal(upstream_checkout(e.up, &p.co, on_checkout, &want), 0);
    struct upstream_conn *uc = p.co.connecting;
    assert_non_null(uc);
    assert_false(uc->connected);
    upstream_checkout_cancel(&p.co);
    assert_null(p.co.connecting);
    assert_true(uc->closing);
    assert_int_equal(e.up->servers[0]->active, 0);
    for (int i = 0; i < 50; i++) uv_run(&e.loop, UV_RUN_NOWAIT);
    assert_int_equal(p.calls, 0);
    env_free(&e);
}

/* An idle connection the server closes leaves the pool at once; the next
 * checkout opens a new one. */
static void test_idle_closed_by_server_leaves_pool(void **state) {
    (void)state;
    struct env e;
    env_init(&e);
    struct upstream_conn *uc = connect_new(&e);
    for (int i = 0; i < 2000 && naccepted < 1; i++) uv_run(&e.loop, UV_RUN_NOWAIT);
    assert_int_equal(naccepted, 1);
    upstream_release(uc, true);
    assert_int_equal(e.up->servers[0]->nidle, 1);
    uv_close((uv_handle_t *)&accepted[0], on_closed);
    for (int i = 0; i < 2000 && e.up->servers[0]->nidle > 0; i++) {
        uv_run(&e.loop, UV_RUN_NOWAIT);
        if (e.up->servers[0]->nidle > 0) usleep(1000);
    }
    assert_int_equal(e.up->servers[0]->nidle, 0);
    assert_int_equal(e.up->servers[0]->active, 0);
    struct upstream_want want = {0};
    struct probe p = {0};
    assert_int_equal(upstream_checkout(e.up, &p.co, on_checkout, &want), 0);
    assert_int_equal(p.calls, 0); /* nothing pooled: a new connection, later */
    for (int i = 0; i < 2000 && !p.calls; i++) uv_run(&e.loop, UV_RUN_ONCE);
    assert_non_null(p.uc);
    assert_false(p.uc->reused);
    upstream_conn_close(p.uc, NULL, NULL);
    env_free(&e);
}

static struct sockaddr_storage addr_of(const char *ip, int port) {
    struct sockaddr_storage ss = {0};
    assert_int_equal(uv_ip4_addr(ip, port, (struct sockaddr_in *)&ss), 0);
    return ss;
}

/* One server line whose name answers with two addresses: each is an entry
 * of its own (round robin over both, a pool each); the order of an answer
 * changes nothing; an address that vanishes takes no new request, its pool
 * is closed, a connection in use on it finishes and is not pooled, and its
 * entry goes with that connection; when it comes back it is the same
 * member (its health kept). */
static void test_addresses_of_a_name(void **state) {
    (void)state;
    struct env e;
    env_init(&e);
    uv_tcp_t server2; /* 127.0.0.2, same port */
    assert_int_equal(uv_tcp_init(&e.loop, &server2), 0);
    struct sockaddr_storage a = addr_of("127.0.0.1", e.port), b = addr_of("127.0.0.2", e.port);
    assert_int_equal(uv_tcp_bind(&server2, (const struct sockaddr *)&b, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&server2, 8, on_server_conn), 0);

    struct server_set *set = health_find("app", e.cfg->upstreams[0].servers[0].addr.text);
    assert_non_null(set);
    struct server_state *first = health_first(set);
    assert_non_null(first);
    struct sockaddr_storage ab[2] = {a, b}, ba[3] = {b, a, b};
    assert_true(health_set_apply(set, ab, 2));
    unsigned v = health_version(set);
    assert_false(health_set_apply(set, ba, 3)); /* reordered, with a duplicate */
    assert_int_equal(health_version(set), v);

    struct upstream_conn *c1 = checkout_any(&e, true), *c2 = checkout_any(&e, true);
    assert_int_equal(e.up->nservers, 2);
    assert_ptr_not_equal(c1->server, c2->server);
    assert_ptr_not_equal(c1->server->state, c2->server->state);
    struct upstream_conn *on_a = c1->server->state == first ? c1 : c2;
    struct upstream_conn *on_b = on_a == c1 ? c2 : c1;
    upstream_release(on_b, true);
    assert_int_equal(on_b->server->nidle, 1);

    /* a vanishes while on_a is in use */
    assert_true(health_set_apply(set, &b, 1));
    assert_true(health_gone(first));
    assert_false(health_usable(first, health_now_ms()));
    struct upstream_conn *c3 = checkout_any(&e, false);
    assert_ptr_equal(c3, on_b);          /* b's pooled connection */
    assert_int_equal(e.up->nservers, 2); /* a's entry waits for its connection */
    assert_int_equal(e.up->ngone, 1);
    upstream_release(on_a, true); /* reusable, but a is gone: closed */
    assert_true(on_a->closing);
    struct upstream_conn *c4 = checkout_any(&e, true);
    assert_ptr_equal(c4->server, c3->server); /* only b takes requests */
    assert_int_equal(e.up->nservers, 1);      /* a's entry went with its connection */
    assert_int_equal(e.up->ngone, 0);

    /* a comes back: the same member, an entry again */
    assert_true(health_set_apply(set, ab, 2));
    assert_false(health_gone(first));
    assert_ptr_equal(health_first(set), first);
    struct upstream_conn *c5 = checkout_any(&e, true), *c6 = checkout_any(&e, true);
    assert_int_equal(e.up->nservers, 2);
    assert_true(c5->server->state == first || c6->server->state == first);

    upstream_conn_close(c3, NULL, NULL);
    upstream_conn_close(c4, NULL, NULL);
    upstream_conn_close(c5, NULL, NULL);
    upstream_conn_close(c6, NULL, NULL);
    uv_close((uv_handle_t *)&server2, on_closed);
    env_free(&e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkout_contract),
        cmocka_unit_test(test_pool_is_lifo),
        cmocka_unit_test(test_pooled_checkout_is_synchronous),
        cmocka_unit_test(test_cancel_during_connect),
        cmocka_unit_test(test_idle_closed_by_server_leaves_pool),
        cmocka_unit_test(test_addresses_of_a_name),
    };
    return cmocka_run_group_tests_name("upstream", tests, NULL, NULL);
}
