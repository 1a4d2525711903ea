/* Unit tests for health.c's re-resolution rate limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interval_runs_out),
        cmocka_unit_test(test_failure_asks_at_most_once_a_second),
        cmocka_unit_test(test_hundred_failures_in_a_second_resolve_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
