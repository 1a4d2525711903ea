/* Unit tests for listener.c on a real loop: a connection ferry has no
 * memory for is accepted and reset, and the listener keeps accepting (left
 * pending, libuv would stop polling the listener for good).
 *
 * listener.c is included so that conn_accept() can be replaced by a stub
 * that fails when told to, as slab_alloc() does when memory runs out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/listener.c"

/* --- the stub ------------------------------------------------------------ */

static int fail_next;       /* calls of conn_accept() still to fail */
static int calls, accepted; /* calls seen, sockets taken */
static uv_tcp_t taken[8];   /* the sockets the stub accepted */

int conn_accept(struct listener *l) {
    calls++;
    if (fail_next > 0) {
        fail_next--;
        return UV_ENOMEM;
    }
    assert_true(accepted < (int)FERRY_ARRAY_LEN(taken));
    uv_tcp_t *t = &taken[accepted++];
    assert_int_equal(uv_tcp_init(l->h.handle.loop, t), 0);
    assert_int_equal(uv_accept(&l->h.stream, (uv_stream_t *)t), 0);
    return 0;
}

/* --- helpers ------------------------------------------------------------- */

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* The kernel completes the handshake from its backlog: no accept needed. */
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* Runs LOOP until COND holds, at most about two seconds. */
#define RUN_UNTIL(loop, cond)                                                                      \
    do {                                                                                           \
        for (int spin_ = 0; spin_ < 2000 && !(cond); spin_++) {                                    \
            uv_run((loop), UV_RUN_NOWAIT);                                                         \
            if (!(cond)) usleep(1000);                                                             \
        }                                                                                          \
    } while (0)

/* What a client sees once ferry is done with it: -ECONNRESET, 0 for EOF,
 * or 1 when the connection is still open (nothing to read). */
static int client_state(int fd) {
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_DONTWAIT);
    if (n == 0) return 0;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -errno;
    return 1;
}

static void closed_cb(uv_handle_t *h) {
    (void)h;
}

/* A listener of CFG on 127.0.0.1, an ephemeral port (into *PORT), set up
 * as listener_start() would, with listener.c's own connection callback. */
static struct listener *listen_local(uv_loop_t *loop, struct config_listener *cfg, int *port) {
    cfg->name = (char *)"web";
    cfg->bind.kind = ADDR_INET;
    cfg->backlog = 16;
    struct listener *l = calloc(1, sizeof(*l));
    assert_non_null(l);
    l->cfg = cfg;
    l->open = true;
    l->handles = 1;
    l->h.handle.data = l;
    assert_int_equal(uv_tcp_init(loop, &l->h.tcp), 0);
    struct sockaddr_in any;
    uv_ip4_addr("127.0.0.1", 0, &any);
    assert_int_equal(uv_tcp_bind(&l->h.tcp, (const struct sockaddr *)&any, 0), 0);
    assert_int_equal(uv_listen(&l->h.stream, 16, listener_on_connection), 0);
    struct sockaddr_storage name;
    int namelen = sizeof(name);
    assert_int_equal(uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&name, &namelen), 0);
    *port = ntohs(((struct sockaddr_in *)&name)->sin_port);
    return l;
}

/* --- the test ------------------------------------------------------------ */

static void test_out_of_memory_accept_keeps_listening(void **state) {
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct config_listener cfg = {0};
    int port;
    struct listener *l = listen_local(&loop, &cfg, &port);

    /* Two connections come, one after the other, while memory is short:
     * both are reset. */
    fail_next = 2;
    for (int i = 0; i < 2; i++) {
        int fd = connect_to(port);
        RUN_UNTIL(&loop, calls == i + 1 && !l->rejecting);
        assert_int_equal(calls, i + 1);
        int st = 1;
        for (int spin = 0; spin < 200 && st == 1; spin++, usleep(1000)) st = client_state(fd);
        assert_int_equal(st, -ECONNRESET);
        close(fd);
    }
    assert_int_equal(accepted, 0);

    /* Memory is back: the listener still accepts. */
    int ok = connect_to(port);
    RUN_UNTIL(&loop, accepted == 1);
    assert_int_equal(accepted, 1);
    assert_int_equal(client_state(ok), 1);
    close(ok);

    uv_close((uv_handle_t *)&taken[0], closed_cb);
    listener_close(l);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* The reject handle is busy closing when the next connection needs it:
 * that one waits its turn and is not lost. */
static void test_reject_while_rejecting(void **state) {
    (void)state;
    calls = accepted = 0;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct config_listener cfg = {0};
    int port;
    struct listener *l = listen_local(&loop, &cfg, &port);

    /* Four in the backlog before the loop looks, so one poll sees them
     * all: the second comes while the reject handle is still closing. Each
     * ends reset or accepted; none is left pending. */
    fail_next = 3;
    int fds[4] = {connect_to(port), connect_to(port), connect_to(port), connect_to(port)};
    int reset = 0;
    bool was_reset[4] = {false}; /* a reset is reported once, then reads see EOF */
    for (int spin = 0; spin < 2000 && accepted + reset < 4; spin++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
        for (int i = 0; i < 4; i++) {
            if (was_reset[i] || client_state(fds[i]) != -ECONNRESET) continue;
            was_reset[i] = true;
            reset++;
        }
    }
    assert_int_equal(fail_next, 0);
    assert_true(accepted >= 1);
    assert_int_equal(accepted + reset, 4);
    assert_int_equal(calls, 3 + accepted);
    for (int i = 0; i < 4; i++) close(fds[i]);
    for (int i = 0; i < accepted; i++) uv_close((uv_handle_t *)&taken[i], closed_cb);
    listener_close(l);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_out_of_memory_accept_keeps_listening),
        cmocka_unit_test(test_reject_while_rejecting),
    };
    return cmocka_run_group_tests_name("listener", tests, NULL, NULL);
}
