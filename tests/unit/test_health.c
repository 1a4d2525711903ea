/* Unit tests for health.c: the re-resolution rate limit, and how a name's
 * set of addresses follows its answers (health_set_apply). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <uv.h>

#include "ferry/config.h"
#include "ferry/health.h"

static void test_interval_runs_out(void **state) {
    (void)state;
    /* resolve = 30 s: due at the interval, not before, whether asked or not */
    assert_false(health_resolve_due(29999, 0, 30000, false));
    assert_true(health_resolve_due(30000, 0, 30000, false));
    assert_true(health_resolve_due(45000, 0, 30000, false));
}

static void test_failure_asks_at_most_once_a_second(void **state) {
    (void)state;
    /* a connect failure asks at once: granted when the last one is old */
    assert_true(health_resolve_due(10000, 5000, 35000, true));
    /* asked again 300 ms after a resolution: refused ... */
    assert_false(health_resolve_due(10300, 10000, 40000, true));
    assert_false(health_resolve_due(10999, 10000, 40000, true));
    /* ... and granted a second after it */
    assert_true(health_resolve_due(11000, 10000, 40000, true));
    /* not asked: only the interval counts */
    assert_false(health_resolve_due(11000, 10000, 40000, false));
}

static void test_hundred_failures_in_a_second_resolve_once(void **state) {
    (void)state;
    uint64_t last = 0, next = 30000;
    int resolved = 0;
    for (uint64_t now = 5000; now < 6000; now += 10) { /* a failure every 10 ms */
        if (health_resolve_due(now, last, next, true)) {
            resolved++;
            last = now;
            next = now + 30000;
        }
    }
    assert_int_equal(resolved, 1);
}

static struct sockaddr_storage sa(const char *ip, int port) {
    struct sockaddr_storage ss = {0};
    if (uv_ip4_addr(ip, port, (struct sockaddr_in *)&ss) != 0)
        assert_int_equal(uv_ip6_addr(ip, port, (struct sockaddr_in6 *)&ss), 0);
    return ss;
}

static size_t live(struct server_set *set, const char **out, size_t max) {
    size_t n = 0;
    for (struct server_state *m = health_first(set); m; m = health_next(m))
        if (!health_gone(m) && n < max) out[n++] = m->address;
    return n;
}

/* New addresses are appended in the order first seen; the same addresses in
 * another order, or repeated, change nothing (same version, no new member);
 * a vanished one is gone (not usable) but kept, and the same member returns;
 * IPv6 addresses are named in brackets. */
static void test_set_follows_answers(void **state) {
    (void)state;
    struct config_errors errs = {0};
    struct config *cfg = config_load_string(
        "t.ini", "[listener w]\nbind = 127.0.0.1:1\nmode = http\nupstream = u\n"
                 "[upstream u]\nserver = 127.0.0.1:80\n", &errs);
    assert_non_null(cfg);
    health_adopt(cfg);
    struct server_set *set = health_find("u", "127.0.0.1:80");
    assert_non_null(set);
    struct server_state *first = health_first(set);
    assert_string_equal(first->address, "127.0.0.1:80");
    assert_null(health_next(first));

    struct sockaddr_storage a = sa("127.0.0.1", 80), b = sa("10.0.0.2", 80), c = sa("::1", 80);
    unsigned v0 = health_version(set);
    struct sockaddr_storage same[3] = {a, a, a};
    assert_false(health_set_apply(set, same, 3));
    assert_int_equal(health_version(set), v0);

    struct sockaddr_storage cba[3] = {c, b, a};
    assert_true(health_set_apply(set, cba, 3));
    unsigned v1 = health_version(set);
    assert_int_not_equal(v1, v0);
    const char *names[4];
    assert_int_equal(live(set, names, 4), 3);
    assert_string_equal(names[0], "127.0.0.1:80"); /* first seen first */
    assert_string_equal(names[1], "[::1]:80");
    assert_string_equal(names[2], "10.0.0.2:80");

    struct sockaddr_storage bac[4] = {b, a, c, b};
    assert_false(health_set_apply(set, bac, 4));
    assert_int_equal(health_version(set), v1);

    struct sockaddr_storage ca[2] = {c, a};
    assert_true(health_set_apply(set, ca, 2));
    struct server_state *gone = health_next(health_next(first));
    assert_true(health_gone(gone));
    assert_false(health_usable(gone, health_now_ms()));
    assert_false(health_probeable(gone));
    assert_int_equal(live(set, names, 4), 2);

    assert_true(health_set_apply(set, bac, 4));
    assert_false(health_gone(gone));
    assert_null(health_next(gone)); /* the same member came back: none added */
    assert_true(health_usable(gone, health_now_ms()));

    config_free(cfg);
    health_free();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interval_runs_out),
        cmocka_unit_test(test_failure_asks_at_most_once_a_second),
        cmocka_unit_test(test_hundred_failures_in_a_second_resolve_once),
        cmocka_unit_test(test_set_follows_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
