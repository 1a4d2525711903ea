/* Unit tests for wheel.c on a real loop: timers fire once, not early, in
 * deadline order, at most a tick late; stop and re-arm from a callback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <uv.h>

#include "ferry/wheel.h"

struct probe {
    struct wheel_timer t;
    uint64_t armed_at, fired_at, want_ms;
    int fired;
};

static uv_loop_t loop;
static struct wheel wheel;
static int order[8], norder;

static void on_fire(struct wheel_timer *t) {
    struct probe *p = container_of(t, struct probe, t);
    p->fired++;
    p->fired_at = uv_now(&loop);
    order[norder++] = (int)p->want_ms;
}

static void arm(struct probe *p, uint64_t ms) {
    wheel_timer_init(&p->t);
    p->want_ms = ms;
    p->armed_at = uv_now(&loop);
    wheel_start(&wheel, &p->t, ms, on_fire);
}

static void run_until_idle(void) {
    while (wheel.armed > 0) uv_run(&loop, UV_RUN_ONCE);
}

static void test_fire_in_order_not_early(void **state) {
    (void)state;
    uv_loop_init(&loop);
    wheel_init(&wheel, &loop);
    norder = 0;
    struct probe a = {0}, b = {0}, c = {0};
    arm(&c, 300);
    arm(&a, 10);
    arm(&b, 120);
    run_until_idle();
    assert_int_equal(a.fired, 1);
    assert_int_equal(b.fired, 1);
    assert_int_equal(c.fired, 1);
    assert_int_equal(order[0], 10);
    assert_int_equal(order[1], 120);
    assert_int_equal(order[2], 300);
    struct probe *all[] = {&a, &b, &c};
    for (int i = 0; i < 3; i++) {
        uint64_t took = all[i]->fired_at - all[i]->armed_at;
        assert_true(took >= all[i]->want_ms);
        assert_true(took <= all[i]->want_ms + 2 * WHEEL_TICK_MS + 20);
    }
    wheel_close(&wheel);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static struct probe rearmed;
static int rearm_count;

static void on_rearm(struct wheel_timer *t) {
    if (++rearm_count < 3) wheel_start(&wheel, t, 30, on_rearm);
}

static void test_stop_and_rearm(void **state) {
    (void)state;
    uv_loop_init(&loop);
    wheel_init(&wheel, &loop);
    norder = 0;
    struct probe stopped = {0};
    arm(&stopped, 50);
    wheel_stop(&wheel, &stopped.t);
    wheel_stop(&wheel, &stopped.t); /* idempotent */
    assert_int_equal(wheel.armed, 0);
    wheel_timer_init(&rearmed.t);
    rearm_count = 0;
    wheel_start(&wheel, &rearmed.t, 30, on_rearm);
    run_until_idle();
    assert_int_equal(rearm_count, 3);
    assert_int_equal(stopped.fired, 0);
    wheel_close(&wheel);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Deadlines past one revolution wait their turn instead of firing early. */
static void test_beyond_one_revolution(void **state) {
    (void)state;
    uv_loop_init(&loop);
    wheel_init(&wheel, &loop);
    norder = 0;
    struct probe far = {0}, near = {0};
    uint64_t rev = (uint64_t)WHEEL_SLOTS * WHEEL_TICK_MS;
    arm(&far, rev + 100);
    arm(&near, 100);
    uv_sleep(0);
    while (near.fired == 0) uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(far.fired, 0);
    wheel_stop(&wheel, &far.t); /* do not wait a whole revolution */
    assert_int_equal(wheel.armed, 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    wheel_close(&wheel);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A deadline past the end of uint64_t (a huge timeout from a config, say)
 * saturates to "never" instead of wrapping to the past and firing at the
 * next tick. */
static void test_huge_timeout_never_fires(void **state) {
    (void)state;
    uv_loop_init(&loop);
    wheel_init(&wheel, &loop);
    norder = 0;
    struct probe huge = {0}, almost = {0}, near = {0};
    arm(&huge, UINT64_MAX);
    arm(&almost, UINT64_MAX - uv_now(&loop) - 1);
    arm(&near, 3 * WHEEL_TICK_MS);
    while (near.fired == 0) uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(huge.fired, 0);
    assert_int_equal(almost.fired, 0);
    assert_true(huge.t.due == UINT64_MAX);
    wheel_stop(&wheel, &huge.t);
    wheel_stop(&wheel, &almost.t);
    assert_int_equal(wheel.armed, 0);
    wheel_close(&wheel);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fire_in_order_not_early),
        cmocka_unit_test(test_stop_and_rearm),
        cmocka_unit_test(test_beyond_one_revolution),
        cmocka_unit_test(test_huge_timeout_never_fires),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
