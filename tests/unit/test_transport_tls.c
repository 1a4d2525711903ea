/* Unit tests for transport_tls.c and tls.c on a real loop: a server and a
 * client TLS transport face each other across a socketpair, with contexts
 * built by tls_set_load() from a config and certificates made by the
 * openssl command (skipped when it is missing).
 *
 *     client transport ══ socketpair ══ server transport
 *     (tls_client, ready cb)            (tls_server, counters)
 *
 * Checked: writes made before the handshake ends arrive whole and in
 * order, each callback once; a reader that stops mid-stream gets the rest
 * after read_start without another byte from the peer; a close cancels
 * waiting writes with UV_ECANCELED; a certificate that does not verify
 * ends the client's handshake with "certificate verify failed"; tickets
 * survive one rotation of the key ring and not two. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <uv.h>

#include "ferry/buffer.h"
#include "ferry/config.h"
#include "ferry/tls.h"
#include "ferry/transport_tls.h"

#define BIG (300 * 1024)

static char dir[] = "/tmp/ferry-tls-unit-XXXXXX";
static struct config *cfg;
static struct tls_set *set;
static struct config *bad_cfg;
static struct tls_set *bad_set;

struct side {
    uv_pipe_t h;
    struct transport t;
    char rbuf[4096];
    char *got;        /* every byte read */
    size_t got_len;
    int eof;          /* reads that ended with an error or EOF */
    int read_err;
    bool stop_after_first; /* read_stop in the first read callback */
    int reads;
    bool closed;
};

struct env {
    uv_loop_t loop;
    struct buffer_pool pool;
    struct tls_worker tw;
    struct side srv, cli;
    stat_t fails[STATS_TLS_REASONS];
    int ready, ready_status;
    SSL_SESSION *session;
    int write_cbs, write_status;
};

static struct env *E;

static int run(const char *cmd) {
    char line[2048];
    snprintf(line, sizeof(line), "%s >/dev/null 2>&1", cmd);
    return system(line);
}

static int group_setup(void **state) {
    (void)state;
    if (run("command -v openssl") != 0) return 0; /* tests skip */
    if (!mkdtemp(dir)) return -1;
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
             "%s/a.key -out %s/a.pem -days 2 -subj /CN=a.test -addext subjectAltName=DNS:a.test",
             dir, dir);
    if (run(cmd) != 0) return -1;
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
             "%s/b.key -out %s/b.pem -days 2 -subj /CN=b.test", dir, dir);
    if (run(cmd) != 0) return -1;
    char text[2048];
    const char *fmt = "[listener l]\nbind = 127.0.0.1:1\nupstream = u\ntls_cert = %s/a.pem %s/a.key\n"
                      "[upstream u]\nserver = a.test:1\ntls = on\ntls_ca = %s/%s.pem\n";
    struct config_errors errs = {0};
    snprintf(text, sizeof(text), fmt, dir, dir, dir, "a");
    cfg = config_load_string("t.ini", text, &errs);
    set = cfg ? tls_set_load(cfg, &errs, 0) : NULL;
    snprintf(text, sizeof(text), fmt, dir, dir, dir, "b");
    bad_cfg = config_load_string("t.ini", text, &errs);
    bad_set = bad_cfg ? tls_set_load(bad_cfg, &errs, 0) : NULL;
    for (size_t i = 0; i < errs.count; i++) fprintf(stderr, "%s\n", errs.items[i]);
    config_errors_free(&errs);
    return set && bad_set ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    tls_set_free(set);
    tls_set_free(bad_set);
    config_free(cfg);
    config_free(bad_cfg);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    run(cmd);
    return 0;
}

/* ---- the two sides ------------------------------------------------------ */

static void on_alloc(struct transport *t, uv_buf_t *out) {
    struct side *s = t->data;
    *out = uv_buf_init(s->rbuf, sizeof(s->rbuf));
}

static void on_read(struct transport *t, ssize_t n, const uv_buf_t *buf) {
    struct side *s = t->data;
    if (n < 0) {
        s->eof++;
        s->read_err = (int)n;
        return;
    }
    if (n == 0) return;
    s->got = realloc(s->got, s->got_len + (size_t)n);
    memcpy(s->got + s->got_len, buf->base, (size_t)n);
    s->got_len += (size_t)n;
    if (s->reads++ == 0 && s->stop_after_first) transport_read_stop(t);
}

static const struct transport_reader reader = {on_alloc, on_read};

static void on_ready(struct transport *t, int status) {
    (void)t;
    E->ready++;
    E->ready_status = status;
}

static void on_write(struct transport_write *w, int status) {
    (void)w;
    E->write_cbs++;
    E->write_status = status;
}

static void on_closed(uv_handle_t *h) {
    struct side *s = container_of((uv_pipe_t *)h, struct side, h);
    s->closed = true;
}

/* Both transports on a fresh socketpair; CLIENT_SET: whose upstream
 * context the client uses. */
static void env_open(struct env *e, struct tls_set *client_set, SSL_SESSION *session) {
    memset(e, 0, sizeof(*e));
    e->session = session;
    E = e;
    assert_int_equal(uv_loop_init(&e->loop), 0);
    buffer_pool_init(&e->pool, 8);
    tls_worker_init(&e->tw, &e->loop, &e->pool);
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    struct side *sides[2] = {&e->srv, &e->cli};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(uv_pipe_init(&e->loop, &sides[i]->h, 0), 0);
        assert_int_equal(uv_pipe_open(&sides[i]->h, fds[i]), 0);
    }
    assert_int_equal(transport_tls_server_init(&e->srv.t, (uv_stream_t *)&e->srv.h, &e->tw,
                                               set->listeners[0], e->fails, NULL, 0, 0),
                     0);
    assert_int_equal(transport_tls_client_init(&e->cli.t, (uv_stream_t *)&e->cli.h, &e->tw,
                                               client_set->upstreams[0], "a.test", &e->session,
                                               on_ready),
                     0);
    e->srv.t.data = &e->srv;
    e->cli.t.data = &e->cli;
}

static void env_close(struct env *e) {
    if (!e->srv.closed && !uv_is_closing((uv_handle_t *)&e->srv.h))
        transport_close(&e->srv.t, false, on_closed);
    if (!e->cli.closed && !uv_is_closing((uv_handle_t *)&e->cli.h))
        transport_close(&e->cli.t, false, on_closed);
    tls_worker_close(&e->tw);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    tls_session_free(e->session);
    assert_int_equal(e->pool.in_use, 0); /* every ciphertext block went back */
    buffer_pool_destroy(&e->pool);
    free(e->srv.got);
    free(e->cli.got);
}

/* Runs the loop until COND or 5 s (a hang fails the test, not the run). */
#define RUN_UNTIL(e, cond)                                                                         \
    do {                                                                                           \
        uint64_t until = uv_hrtime() + 5000000000ull;                                              \
        while (!(cond) && uv_hrtime() < until) uv_run(&(e)->loop, UV_RUN_NOWAIT);                  \
        assert_true(cond);                                                                         \
    } while (0)

#define SKIP_WITHOUT_OPENSSL()                                                                     \
    do {                                                                                           \
        if (!set) skip();                                                                          \
    } while (0)

/* ---- tests -------------------------------------------------------------- */

static char *pattern(size_t n) {
    char *p = malloc(n);
    for (size_t i = 0; i < n; i++) p[i] = (char)(i * 7 + i / 251);
    return p;
}

static void test_writes_before_handshake(void **state) {
    (void)state;
    SKIP_WITHOUT_OPENSSL();
    struct env e;
    env_open(&e, set, NULL);
    char *data = pattern(BIG);
    struct transport_write w[3];
    /* the handshake has not run: all three wait, in order */
    for (int i = 0; i < 3; i++)
        assert_int_equal(transport_write(&e.cli.t, &w[i], data + i * (BIG / 3), BIG / 3, on_write),
                         1);
    assert_true(transport_queued(&e.cli.t) >= BIG / 3 * 3);
    assert_int_equal(transport_read_start(&e.srv.t, &reader), 0);
    RUN_UNTIL(&e, e.srv.got_len == BIG / 3 * 3 && e.write_cbs == 3);
    assert_int_equal(e.ready, 1);
    assert_int_equal(e.ready_status, 0);
    assert_memory_equal(e.srv.got, data, BIG / 3 * 3);
    assert_int_equal(e.write_status, 0);
    assert_int_equal(transport_queued(&e.cli.t), 0);
    assert_string_equal(transport_tls_version(&e.cli.t), "TLSv1.3");
    free(data);
    env_close(&e);
}

static void test_reader_stops_midstream(void **state) {
    (void)state;
    SKIP_WITHOUT_OPENSSL();
    struct env e;
    env_open(&e, set, NULL);
    char *data = pattern(64 * 1024);
    struct transport_write w;
    int r = transport_write(&e.cli.t, &w, data, 64 * 1024, on_write);
    assert_int_equal(r, 1);
    e.srv.stop_after_first = true;
    assert_int_equal(transport_read_start(&e.srv.t, &reader), 0);
    RUN_UNTIL(&e, e.write_cbs == 1 && e.srv.reads == 1);
    /* let everything settle: the reader stopped, so nothing more comes */
    for (int i = 0; i < 20; i++) uv_run(&e.loop, UV_RUN_NOWAIT);
    assert_int_equal(e.srv.reads, 1);
    assert_true(e.srv.got_len < 64 * 1024);
    /* the peer sends nothing more: the rest is already in ferry */
    assert_int_equal(transport_read_start(&e.srv.t, &reader), 0);
    assert_int_equal(e.srv.reads, 1); /* never from inside read_start */
    RUN_UNTIL(&e, e.srv.got_len == 64 * 1024);
    assert_memory_equal(e.srv.got, data, 64 * 1024);
    free(data);
    env_close(&e);
}

static void test_close_cancels_waiting_writes(void **state) {
    (void)state;
    SKIP_WITHOUT_OPENSSL();
    struct env e;
    env_open(&e, set, NULL);
    char data[100] = {0};
    struct transport_write w;
    assert_int_equal(transport_write(&e.cli.t, &w, data, sizeof(data), on_write), 1);
    transport_close(&e.cli.t, false, on_closed);
    RUN_UNTIL(&e, e.cli.closed);
    assert_int_equal(e.write_cbs, 1);
    assert_int_equal(e.write_status, UV_ECANCELED);
    env_close(&e);
}

static void test_verify_failure(void **state) {
    (void)state;
    SKIP_WITHOUT_OPENSSL();
    struct env e;
    env_open(&e, bad_set, NULL); /* trusts b.test's certificate, gets a.test's */
    char data[10] = {0};
    struct transport_write w;
    assert_int_equal(transport_write(&e.cli.t, &w, data, sizeof(data), on_write), 1);
    assert_int_equal(transport_read_start(&e.srv.t, &reader), 0);
    RUN_UNTIL(&e, e.ready == 1 && e.write_cbs == 1);
    assert_int_equal(e.ready_status, UV_EPROTO);
    assert_int_equal(e.write_status, UV_EPROTO);
    assert_string_equal(transport_tls_error(&e.cli.t), "certificate verify failed");
    /* the server saw the client's alert: a failed handshake, counted */
    RUN_UNTIL(&e, e.srv.eof == 1);
    uint64_t fails = 0;
    for (int i = 0; i < STATS_TLS_REASONS; i++) fails += stat_get(&e.fails[i]);
    assert_int_equal(fails, 1);
    assert_int_equal(stat_get(&e.fails[TLS_FAIL_CERTIFICATE]), 1);
    env_close(&e);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    (void)req;
    assert_int_equal(status, 0);
}

/* A half-close: the client sends and shuts its side down (close_notify,
 * FIN); the server reads everything, then EOF, and can still answer. */
static void test_half_close(void **state) {
    (void)state;
    SKIP_WITHOUT_OPENSSL();
    struct env e;
    env_open(&e, set, NULL);
    char *data = pattern(5000);
    struct transport_write w, w2;
    uv_shutdown_t sd;
    assert_int_equal(transport_read_start(&e.srv.t, &reader), 0);
    assert_int_equal(transport_read_start(&e.cli.t, &reader), 0);
    assert_int_equal(transport_write(&e.cli.t, &w, data, 5000, on_write), 1);
    RUN_UNTIL(&e, e.ready == 1 && e.write_cbs == 1);
    assert_int_equal(transport_shutdown(&e.cli.t, &sd, on_shutdown), 0);
    RUN_UNTIL(&e, e.srv.eof == 1);
    assert_int_equal(e.srv.read_err, UV_EOF);
    assert_int_equal(e.srv.got_len, 5000);
    assert_false(e.srv.t.reading);
    int r = transport_write(&e.srv.t, &w2, "answer", 6, on_write);
    assert_true(r == 0 || r == 1);
    RUN_UNTIL(&e, e.cli.got_len == 6);
    assert_memory_equal(e.cli.got, "answer", 6);
    free(data);
    env_close(&e);
}

/* One connection that exchanges a byte each way, so the client gets its
 * ticket; returns whether it resumed the session kept in SESSION. */
static bool one_connection(SSL_SESSION **session) {
    struct env e;
    env_open(&e, set, *session); /* the slot now owns it */
    *session = NULL;
    char b = 'x';
    struct transport_write w;
    (void)w;
    transport_read_start(&e.cli.t, &reader);
    transport_read_start(&e.srv.t, &reader);
    int r = transport_write(&e.srv.t, &w, &b, 1, on_write);
    assert_true(r == 0 || r == 1);
    RUN_UNTIL(&e, e.cli.got_len == 1);
    bool resumed = transport_tls_resumed(&e.cli.t);
    *session = e.session;
    e.session = NULL;
    env_close(&e);
    return resumed;
}

static void test_tickets_rotate(void **state) {
    (void)state;
    SKIP_WITHOUT_OPENSSL();
    SSL_SESSION *session = NULL;
    assert_false(one_connection(&session));
    assert_true(one_connection(&session));
    assert_true(one_connection(&session)); /* every resumption brings a fresh ticket */
    tls_tickets_rotate(); /* the ticket's key is now the previous one */
    assert_true(one_connection(&session));
    tls_tickets_rotate();
    tls_tickets_rotate(); /* two rotations past the newest ticket: gone */
    assert_false(one_connection(&session));
    tls_session_free(session);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN); /* as ferry does: a closed peer is an error code */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writes_before_handshake),
        cmocka_unit_test(test_reader_stops_midstream),
        cmocka_unit_test(test_close_cancels_waiting_writes),
        cmocka_unit_test(test_verify_failure),
        cmocka_unit_test(test_tickets_rotate),
        cmocka_unit_test(test_half_close),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
