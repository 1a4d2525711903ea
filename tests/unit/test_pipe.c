/* Unit tests for pipe.c and the plain transport on a real loop: each test
 * puts a pipe (or a bare transport) between two socketpairs, drives the far
 * ends with plain system calls and checks what a relay must guarantee:
 * order, backpressure bounded by pool blocks, a half-close passed on, one
 * error event, silence after pipe_stop; and transport_send's two paths.
 *
 *     app_in ══ socketpair ══ src ──pipe──> dst ══ socketpair ══ app_out
 *     (test fd)              (uv_pipe_t + transport)            (test fd) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <uv.h>

#include "ferry/buffer.h"
#include "ferry/pipe.h"
#include "ferry/transport.h"

/* One side of ferry: a libuv stream on one end of a socketpair, the other
 * end (APP) left to the test. */
struct side {
    uv_pipe_t h;
    struct transport t;
    int app;
};

struct env {
    uv_loop_t loop;
    struct buffer_pool pool;
    struct side a, b; /* a: the pipe's source; b: its destination */
    struct pipe_dir d;
    int events, last_ev, last_err; /* what on_event saw */
    bool b_closed;                 /* a test closed b's handle itself */
};

static void side_open(struct env *e, struct side *s) {
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    assert_int_equal(fcntl(fds[1], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(uv_pipe_init(&e->loop, &s->h, 0), 0);
    assert_int_equal(uv_pipe_open(&s->h, fds[0]), 0);
    transport_plain_init(&s->t, (uv_stream_t *)&s->h);
    s->app = fds[1];
}

static void on_event(struct pipe_dir *d, enum pipe_event ev, int err) {
    struct env *e = d->owner;
    e->events++;
    e->last_ev = (int)ev;
    e->last_err = err;
}

static struct env *env_new(void) {
    signal(SIGPIPE, SIG_IGN); /* as ferry's main does: a dead peer is EPIPE */
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    buffer_pool_init(&e->pool, 64);
    side_open(e, &e->a);
    side_open(e, &e->b);
    e->last_ev = -1;
    return e;
}

static void on_closed(uv_handle_t *h) {
    (void)h;
}

/* Closes everything and proves nothing leaked: no handle, no pool block. */
static void env_free(struct env *e) {
    uv_close((uv_handle_t *)&e->a.h, on_closed);
    if (!e->b_closed) uv_close((uv_handle_t *)&e->b.h, on_closed);
    if (e->a.app >= 0) close(e->a.app);
    if (e->b.app >= 0) close(e->b.app);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    assert_int_equal(e->pool.in_use, 0);
    buffer_pool_destroy(&e->pool);
    free(e);
}

static void pipe_open(struct env *e) {
    pipe_init(&e->d, &e->a.t, &e->b.t, &e->pool, on_event, e);
    assert_int_equal(pipe_start(&e->d), 0);
}

/* Runs the loop until COND holds, at most about two seconds. */
#define RUN_UNTIL(e, cond)                                                                         \
    do {                                                                                           \
        for (int spin_ = 0; spin_ < 2000 && !(cond); spin_++) {                                    \
            uv_run(&(e)->loop, UV_RUN_NOWAIT);                                                     \
            if (!(cond)) usleep(1000);                                                             \
        }                                                                                          \
    } while (0)

static unsigned char pattern(size_t i) {
    return (unsigned char)(i * 7 + i / 251);
}

/* Writes what FD takes of the pattern from *SENT up to TOTAL. */
static void app_send(int fd, size_t *sent, size_t total) {
    unsigned char chunk[16384];
    while (*sent < total) {
        size_t n = total - *sent < sizeof(chunk) ? total - *sent : sizeof(chunk);
        for (size_t i = 0; i < n; i++) chunk[i] = pattern(*sent + i);
        ssize_t w = send(fd, chunk, n, MSG_DONTWAIT);
        if (w <= 0) return;
        *sent += (size_t)w;
    }
}

/* Reads what FD has and checks it against the pattern. Returns -1 on EOF. */
static int app_recv(int fd, size_t *got) {
    unsigned char chunk[65536];
    for (;;) {
        ssize_t n = recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
        if (n == 0) return -1;
        if (n < 0) return 0;
        for (ssize_t i = 0; i < n; i++) assert_int_equal(chunk[i], pattern(*got + (size_t)i));
        *got += (size_t)n;
    }
}

/* Sends TOTAL bytes through the pipe and reads them at the far end. */
static void pump(struct env *e, size_t *sent, size_t *got, size_t total) {
    for (int spin = 0; spin < 20000 && *got < total; spin++) {
        app_send(e->a.app, sent, total);
        uv_run(&e->loop, UV_RUN_NOWAIT);
        app_recv(e->b.app, got);
    }
}

static void test_pipe_forwards_in_order(void **state) {
    (void)state;
    struct env *e = env_new();
    pipe_open(e);
    size_t total = 3 * 1024 * 1024 + 17, sent = 0, got = 0;
    pump(e, &sent, &got, total);
    assert_int_equal(got, total);
    assert_int_equal(e->d.bytes, total);
    assert_int_equal(e->events, 0);
    assert_int_equal(e->d.state, PIPE_READING);
    pipe_stop(&e->d);
    env_free(e);
}

/* Feeds the source until the pipe stops taking bytes. */
static size_t fill_until_paused(struct env *e, size_t *sent, size_t total) {
    size_t most = 0;
    for (int idle = 0; idle < 50 && *sent < total;) {
        size_t before = *sent;
        app_send(e->a.app, sent, total);
        uv_run(&e->loop, UV_RUN_NOWAIT);
        if (e->pool.in_use > most) most = e->pool.in_use;
        idle = *sent == before ? idle + 1 : 0;
        if (*sent == before) usleep(1000);
    }
    return most;
}

static void test_pipe_backpressure(void **state) {
    (void)state;
    struct env *e = env_new();
    pipe_open(e);
    /* Far more than the kernel's buffers and the pipe's marks together. */
    size_t total = 64 * 1024 * 1024, sent = 0, got = 0;
    size_t most = fill_until_paused(e, &sent, total);
    assert_true(sent < total); /* the source blocked: the pipe stopped reading */
    assert_int_equal(e->d.state, PIPE_WAIT_PEER);
    assert_true(e->d.writes <= PIPE_MAX_WRITES);
    assert_true(most <= PIPE_MAX_WRITES); /* only the queued blocks */
    assert_true(e->pool.in_use <= PIPE_MAX_WRITES);
    assert_true(transport_queued(&e->b.t) > 0);
    /* The destination drains: the pipe reads again, and every byte arrives. */
    pump(e, &sent, &got, total);
    assert_int_equal(got, total);
    assert_int_equal(e->d.bytes, total);
    assert_int_equal(e->events, 0);
    pipe_stop(&e->d);
    env_free(e);
}

static void on_event_back(struct pipe_dir *d, enum pipe_event ev, int err) {
    (void)ev;
    (void)err;
    int *events = d->owner;
    (*events)++;
}

static void test_pipe_eof_is_a_half_close(void **state) {
    (void)state;
    struct env *e = env_new();
    pipe_open(e);
    int back_events = 0;
    struct pipe_dir back;
    pipe_init(&back, &e->b.t, &e->a.t, &e->pool, on_event_back, &back_events);
    assert_int_equal(pipe_start(&back), 0);
    size_t total = 100000, sent = 0, got = 0;
    pump(e, &sent, &got, total);
    assert_int_equal(shutdown(e->a.app, SHUT_WR), 0);
    int eof = 0;
    for (int spin = 0; spin < 2000 && !eof; spin++) {
        uv_run(&e->loop, UV_RUN_NOWAIT);
        eof = app_recv(e->b.app, &got) < 0;
        if (!eof) usleep(1000);
    }
    assert_true(eof); /* the far end saw a FIN, after every byte */
    assert_int_equal(got, total);
    RUN_UNTIL(e, e->events > 0);
    assert_int_equal(e->events, 1);
    assert_int_equal(e->last_ev, PIPE_DONE);
    assert_int_equal(e->d.state, PIPE_FINISHED);
    /* The other direction still works. */
    assert_int_equal(send(e->b.app, "pong", 4, 0), 4);
    char buf[8];
    ssize_t n = -1;
    for (int spin = 0; spin < 2000 && n <= 0; spin++) {
        uv_run(&e->loop, UV_RUN_NOWAIT);
        n = recv(e->a.app, buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0) usleep(1000);
    }
    assert_int_equal(n, 4);
    assert_memory_equal(buf, "pong", 4);
    assert_int_equal(back.state, PIPE_READING);
    assert_int_equal(back_events, 0);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    assert_int_equal(e->events, 1); /* once */
    pipe_stop(&back);
    env_free(e);
}

static void test_pipe_write_error_reported_once(void **state) {
    (void)state;
    struct env *e = env_new();
    pipe_open(e);
    size_t total = 64 * 1024 * 1024, sent = 0;
    fill_until_paused(e, &sent, total);
    assert_int_equal(e->d.state, PIPE_WAIT_PEER);
    assert_true(e->d.writes > 0); /* several writes queued: each will fail */
    close(e->b.app);
    e->b.app = -1;
    RUN_UNTIL(e, e->d.writes == 0);
    assert_int_equal(e->d.writes, 0);
    assert_int_equal(e->events, 1);
    assert_int_equal(e->last_ev, PIPE_ERROR);
    assert_true(e->last_err == UV_EPIPE || e->last_err == UV_ECONNRESET);
    /* Nothing more, whatever the source does now. */
    app_send(e->a.app, &sent, total);
    shutdown(e->a.app, SHUT_WR);
    for (int i = 0; i < 20; i++) uv_run(&e->loop, UV_RUN_NOWAIT);
    assert_int_equal(e->events, 1);
    env_free(e);
}

static void test_pipe_stop_silences(void **state) {
    (void)state;
    struct env *e = env_new();
    pipe_open(e);
    pipe_stop(&e->d);
    assert_int_equal(e->d.state, PIPE_FINISHED);
    assert_int_equal(send(e->a.app, "data", 4, 0), 4);
    shutdown(e->a.app, SHUT_WR);
    for (int i = 0; i < 20; i++) uv_run(&e->loop, UV_RUN_NOWAIT);
    assert_int_equal(e->events, 0);
    assert_int_equal(e->d.bytes, 0);
    char b;
    assert_true(recv(e->b.app, &b, 1, MSG_DONTWAIT) < 0); /* nothing forwarded, no FIN */
    pipe_stop(&e->d); /* idempotent */
    env_free(e);
}

/* --- transport_send ------------------------------------------------------ */

struct sends {
    int calls;
    int status;
    uint8_t tag;
};

static void on_sent(void *owner, uint8_t tag, int status) {
    struct sends *s = owner;
    s->calls++;
    s->tag = tag;
    s->status = status;
}

static char *block_with(struct env *e, const char *text, size_t *len) {
    char *block = buffer_get(&e->pool);
    assert_non_null(block);
    *len = strlen(text);
    memcpy(transport_block_data(block), text, *len);
    return block;
}

static void test_transport_send_at_once(void **state) {
    (void)state;
    struct env *e = env_new();
    struct sends s = {0};
    size_t len;
    char *block = block_with(e, "hello", &len);
    int r = transport_send(&e->b.t, &e->pool, block, transport_block_data(block), len, false,
                           on_sent, &s, 1);
    assert_int_equal(r, 0);
    assert_int_equal(e->pool.in_use, 0); /* back at once */
    block = block_with(e, "world", &len);
    r = transport_send(&e->b.t, &e->pool, block, transport_block_data(block), len, true, on_sent,
                       &s, 1);
    assert_int_equal(r, 0);
    assert_int_equal(e->pool.in_use, 1); /* kept: still ours */
    buffer_put(&e->pool, block);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    assert_int_equal(s.calls, 0); /* never for a write taken at once */
    char buf[16];
    assert_int_equal(recv(e->b.app, buf, sizeof(buf), 0), 10);
    assert_memory_equal(buf, "helloworld", 10);
    env_free(e);
}

/* Sends full blocks until one is queued; returns that block. */
static char *send_until_queued(struct env *e, struct sends *s, bool keep) {
    for (int i = 0; i < 1000; i++) {
        char *block = buffer_get(&e->pool);
        assert_non_null(block);
        memset(transport_block_data(block), 'x', TRANSPORT_BLOCK_DATA_SIZE);
        int r = transport_send(&e->b.t, &e->pool, block, transport_block_data(block),
                               TRANSPORT_BLOCK_DATA_SIZE, keep, on_sent, s, 7);
        assert_true(r == 0 || r == 1);
        if (r == 1) return block;
        if (keep) buffer_put(&e->pool, block);
    }
    fail_msg("the kernel took 64 MiB without queueing");
    return NULL;
}

static void drain(int fd) {
    char chunk[65536];
    while (recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT) > 0) {
    }
}

static void test_transport_send_queued(void **state) {
    (void)state;
    struct env *e = env_new();
    struct sends s = {0}, k = {0};
    send_until_queued(e, &s, false);
    assert_int_equal(e->pool.in_use, 1);
    /* Behind a queued write everything queues, kept blocks too. */
    char *kept = send_until_queued(e, &k, true);
    assert_int_equal(e->pool.in_use, 2);
    assert_int_equal(s.calls, 0); /* never before the loop runs */
    for (int spin = 0; spin < 2000 && k.calls == 0; spin++) {
        drain(e->b.app);
        uv_run(&e->loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.status, 0);
    assert_int_equal(s.tag, 7);
    assert_int_equal(k.calls, 1);
    assert_int_equal(e->pool.in_use, 1); /* the kept block is still ours */
    assert_int_equal(transport_block_data(kept)[0], 'x');
    buffer_put(&e->pool, kept);
    /* Closed with a write queued: it ends once, cancelled. */
    struct sends c = {0};
    send_until_queued(e, &c, false);
    uv_close((uv_handle_t *)&e->b.h, on_closed);
    e->b_closed = true;
    uv_run(&e->loop, UV_RUN_NOWAIT);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.status, UV_ECANCELED);
    assert_int_equal(e->pool.in_use, 0);
    env_free(e);
}

/* --- the plain transport's reader swap ----------------------------------- */

struct reader {
    char buf[64];
    size_t got;
    int eofs;
};

static void reader_alloc(struct transport *t, uv_buf_t *out) {
    struct reader *r = t->data;
    *out = uv_buf_init(r->buf + r->got, (unsigned)(sizeof(r->buf) - r->got));
}

static void reader_read(struct transport *t, ssize_t nread, const uv_buf_t *buf) {
    (void)buf;
    struct reader *r = t->data;
    if (nread > 0) r->got += (size_t)nread;
    if (nread == UV_EOF) r->eofs++;
}

static void other_read(struct transport *t, ssize_t nread, const uv_buf_t *buf) {
    reader_read(t, nread, buf);
}

static const struct transport_reader first_reader = {reader_alloc, reader_read};
static const struct transport_reader second_reader = {reader_alloc, other_read};

static void test_transport_swaps_readers_while_reading(void **state) {
    (void)state;
    struct env *e = env_new();
    struct transport *t = &e->a.t;
    struct reader one = {0}, two = {0};
    t->data = &one;
    assert_int_equal(transport_read_start(t, &first_reader), 0);
    assert_int_equal(send(e->a.app, "ab", 2, 0), 2);
    RUN_UNTIL(e, one.got == 2);
    assert_int_equal(one.got, 2);
    /* A second start while reading only swaps the callbacks (libuv would
     * refuse a second uv_read_start with UV_EALREADY). */
    t->data = &two;
    assert_int_equal(transport_read_start(t, &second_reader), 0);
    assert_true(t->reading);
    assert_ptr_equal(t->reader, &second_reader);
    assert_int_equal(send(e->a.app, "cde", 3, 0), 3);
    RUN_UNTIL(e, two.got == 3);
    assert_int_equal(two.got, 3);
    assert_int_equal(one.got, 2);
    assert_memory_equal(two.buf, "cde", 3);
    /* Stopped: nothing delivered until the next start. */
    transport_read_stop(t);
    assert_false(t->reading);
    assert_int_equal(send(e->a.app, "f", 1, 0), 1);
    for (int i = 0; i < 10; i++) uv_run(&e->loop, UV_RUN_NOWAIT);
    assert_int_equal(two.got, 3);
    assert_int_equal(transport_read_start(t, &second_reader), 0);
    RUN_UNTIL(e, two.got == 4);
    assert_int_equal(two.got, 4);
    /* An EOF ends reading by itself: `reading` says so, and the next
     * start really starts again (here: reads the EOF once more). */
    assert_int_equal(shutdown(e->a.app, SHUT_WR), 0);
    RUN_UNTIL(e, two.eofs == 1);
    assert_int_equal(two.eofs, 1);
    assert_false(t->reading);
    assert_int_equal(transport_read_start(t, &second_reader), 0);
    assert_true(t->reading);
    RUN_UNTIL(e, two.eofs == 2);
    assert_int_equal(two.eofs, 2);
    transport_read_stop(t);
    env_free(e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipe_forwards_in_order),
        cmocka_unit_test(test_pipe_backpressure),
        cmocka_unit_test(test_pipe_eof_is_a_half_close),
        cmocka_unit_test(test_pipe_write_error_reported_once),
        cmocka_unit_test(test_pipe_stop_silences),
        cmocka_unit_test(test_transport_send_at_once),
        cmocka_unit_test(test_transport_send_queued),
        cmocka_unit_test(test_transport_swaps_readers_while_reading),
    };
    return cmocka_run_group_tests_name("pipe", tests, NULL, NULL);
}
