/* Unit tests for listener_start(): the descriptor it is handed is owned by
 * it on every path. On success the listener's handle closes it; when libuv
 * refuses to adopt it (uv_tcp_open / uv_pipe_open fail), listener_start
 * closes it itself. The failure is injected by watching the descriptor with
 * a uv_poll_t first: libuv refuses to open a descriptor its loop already
 * watches (UV_EEXIST). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ferry/config.h"
#include "ferry/listener.h"
#include "ferry/stats.h"
#include "ferry/worker_ctx.h"

static uv_loop_t loop;
static struct stats stats;
static struct worker_ctx ctx;

static int setup(void **state) {
    (void)state;
    memset(&stats, 0, sizeof(stats));
    ctx = (struct worker_ctx){.loop = &loop, .stats = &stats};
    assert_int_equal(uv_loop_init(&loop), 0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    uv_run(&loop, UV_RUN_DEFAULT); /* close callbacks */
    assert_int_equal(uv_loop_close(&loop), 0);
    stats_free(&stats);
    return 0;
}

static bool fd_open(int fd) {
    return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

/* A listening socket: TCP on 127.0.0.1, port 0, or unix at a temp path. */
static int listening(bool unix_socket, char *path, size_t pathlen) {
    int fd = socket(unix_socket ? AF_UNIX : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (unix_socket) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        snprintf(path, pathlen, "/tmp/ferry-test-listener-%d.sock", (int)getpid());
        unlink(path);
        snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
        assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    } else {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    }
    assert_int_equal(listen(fd, 8), 0);
    return fd;
}

static void on_poll(uv_poll_t *p, int status, int events) {
    (void)p;
    (void)status;
    (void)events;
}

static void start_once(bool unix_socket, bool inject_failure) {
    char path[108] = "";
    int fd = listening(unix_socket, path, sizeof(path));
    struct config_listener cl = {.name = "t", .backlog = 8};
    cl.bind.kind = unix_socket ? ADDR_UNIX : ADDR_INET;
    uv_poll_t poll;
    if (inject_failure) {
        assert_int_equal(uv_poll_init(&loop, &poll, fd), 0);
        assert_int_equal(uv_poll_start(&poll, UV_READABLE, on_poll), 0);
    }
    struct listener *l = listener_start(&ctx, &cl, fd);
    if (inject_failure) {
        bool leaked = fd_open(fd); /* nobody else holds it: it must be closed at once */
        uv_close((uv_handle_t *)&poll, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        if (leaked) close(fd); /* so that the failure below is the only one */
        assert_null(l);
        if (leaked) fail_msg("listener_start leaked fd %d after a failed open", fd);
    } else {
        assert_non_null(l);
        assert_true(fd_open(fd));
        listener_close(l);
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_false(fd_open(fd)); /* the handle's close closed it */
    }
    if (path[0]) unlink(path);
}

static void test_tcp_ok(void **state) {
    (void)state;
    start_once(false, false);
}

static void test_tcp_open_fails(void **state) {
    (void)state;
    start_once(false, true);
}

static void test_unix_ok(void **state) {
    (void)state;
    start_once(true, false);
}

static void test_unix_open_fails(void **state) {
    (void)state;
    start_once(true, true);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tcp_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_open_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_open_fails, setup, teardown),
    };
    return cmocka_run_group_tests_name("listener_start", tests, NULL, NULL);
}
