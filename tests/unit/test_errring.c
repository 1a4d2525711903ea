/* Unit tests for errring.c: the per-worker ring of errors ferry answered
 * itself, which the dashboard shows. A ring must keep only its latest
 * ERRRING_SIZE entries; a merge of several must come out in time order
 * (recording order for equal times) and never hold more than ERRRING_SIZE;
 * and a worker writing while the admin thread merges must never give the
 * reader a torn entry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "ferry/errring.h"

static void add(struct errring *r, uint64_t t, int n) {
    char cause[64], rid[32];
    snprintf(cause, sizeof(cause), "cause %d", n);
    snprintf(rid, sizeof(rid), "rid-%d", n);
    errring_add(r, t, 502, "api", "app", cause, rid);
}

static void test_empty(void **state) {
    (void)state;
    struct errring r;
    errring_init(&r);
    struct errring *rings[1] = {&r};
    struct errring_entry out[ERRRING_SIZE];
    assert_int_equal(errring_merge(rings, 1, out, ERRRING_SIZE), 0);
    assert_int_equal(errring_merge(rings, 0, out, ERRRING_SIZE), 0);
    errring_destroy(&r);
}

static void test_fields(void **state) {
    (void)state;
    struct errring r;
    errring_init(&r);
    char longcause[400];
    memset(longcause, 'c', sizeof(longcause) - 1);
    longcause[sizeof(longcause) - 1] = '\0';
    errring_add(&r, 1000, 404, NULL, "", longcause, "abc");
    struct errring *rings[1] = {&r};
    struct errring_entry out[1];
    assert_int_equal(errring_merge(rings, 1, out, 1), 1);
    assert_int_equal(out[0].time_ms, 1000);
    assert_int_equal(out[0].status, 404);
    assert_string_equal(out[0].route, "-"); /* none is "-" */
    assert_string_equal(out[0].upstream, "-");
    assert_int_equal(strlen(out[0].cause), sizeof(out[0].cause) - 1); /* cut, terminated */
    assert_string_equal(out[0].rid, "abc");
    errring_add(&r, 0, 503, "r", "u", "x", "y"); /* 0: now, a wall-clock time */
    assert_int_equal(errring_merge(rings, 1, out, 1), 1);
    assert_int_equal(out[0].status, 503);
    assert_true(out[0].time_ms > 1500000000000ull);
    errring_destroy(&r);
}

/* 120 errors into one ring: it keeps the latest 50, oldest first. */
static void test_bounded(void **state) {
    (void)state;
    struct errring r;
    errring_init(&r);
    for (int i = 0; i < 120; i++)
        add(&r, 1000 + (uint64_t)i, i);
    assert_int_equal(r.count, ERRRING_SIZE);
    struct errring *rings[1] = {&r};
    struct errring_entry out[ERRRING_SIZE + 10];
    size_t n = errring_merge(rings, 1, out, ERRRING_SIZE + 10);
    assert_int_equal(n, ERRRING_SIZE);
    for (size_t i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof(want), "rid-%zu", 70 + i);
        assert_string_equal(out[i].rid, want);
    }
    assert_int_equal(errring_merge(rings, 1, out, 5), 5); /* the latest 5 */
    assert_string_equal(out[0].rid, "rid-115");
    assert_string_equal(out[4].rid, "rid-119");
    errring_destroy(&r);
}

/* Three workers, interleaved times, one of them noisy: the merge is in time
 * order across rings, equal times in recording order, and 50 at most. */
static void test_merge_order(void **state) {
    (void)state;
    struct errring r[3];
    for (int i = 0; i < 3; i++)
        errring_init(&r[i]);
    add(&r[0], 10, 1);
    add(&r[1], 5, 2);
    add(&r[2], 10, 3); /* same time as #1, recorded later */
    add(&r[1], 20, 4);
    struct errring *rings[3] = {&r[0], &r[1], &r[2]};
    struct errring_entry out[ERRRING_SIZE];
    size_t n = errring_merge(rings, 3, out, ERRRING_SIZE);
    assert_int_equal(n, 4);
    const char *want[4] = {"rid-2", "rid-1", "rid-3", "rid-4"};
    for (size_t i = 0; i < n; i++)
        assert_string_equal(out[i].rid, want[i]);

    for (int i = 0; i < 45; i++)
        add(&r[2], 100 + (uint64_t)i * 2, 100 + i);
    for (int i = 0; i < 45; i++)
        add(&r[0], 101 + (uint64_t)i * 2, 200 + i);
    n = errring_merge(rings, 3, out, ERRRING_SIZE);
    assert_int_equal(n, ERRRING_SIZE);
    for (size_t i = 1; i < n; i++)
        assert_true(out[i - 1].time_ms <= out[i].time_ms);
    assert_string_equal(out[n - 1].rid, "rid-244"); /* the newest, t = 189 */
    assert_int_equal(out[0].time_ms, 189 - (ERRRING_SIZE - 1));
    for (int i = 0; i < 3; i++)
        errring_destroy(&r[i]);
}

/* A writer thread fills the ring while this thread merges: every entry
 * read is whole (its fields agree) and times never go backwards. Run
 * under ASan/TSan builds, this is the race check. */
#define STRESS_WRITES 200000
static atomic_int stress_done;

static void stress_writer(void *arg) {
    struct errring *r = arg;
    for (int i = 1; i <= STRESS_WRITES; i++) {
        char cause[32], rid[32];
        snprintf(cause, sizeof(cause), "c%d", i);
        snprintf(rid, sizeof(rid), "r%d", i);
        errring_add(r, (uint64_t)i, 500 + i % 5, "route", "up", cause, rid);
    }
    atomic_store(&stress_done, 1);
}

static void test_concurrent(void **state) {
    (void)state;
    struct errring r[2];
    errring_init(&r[0]);
    errring_init(&r[1]);
    atomic_store(&stress_done, 0);
    uv_thread_t t;
    assert_int_equal(uv_thread_create(&t, stress_writer, &r[0]), 0);
    struct errring *rings[2] = {&r[0], &r[1]};
    struct errring_entry out[ERRRING_SIZE];
    unsigned merges = 0;
    while (!atomic_load(&stress_done) || merges < 10) {
        add(&r[1], 1, 0); /* this thread writes its own ring too */
        size_t n = errring_merge(rings, 2, out, ERRRING_SIZE);
        assert_true(n <= ERRRING_SIZE);
        for (size_t i = 0; i < n; i++) {
            if (i) assert_true(out[i - 1].time_ms <= out[i].time_ms);
            if (strcmp(out[i].route, "api") == 0) continue; /* ours */
            char cause[32], rid[32];
            snprintf(cause, sizeof(cause), "c%llu", (unsigned long long)out[i].time_ms);
            snprintf(rid, sizeof(rid), "r%llu", (unsigned long long)out[i].time_ms);
            assert_string_equal(out[i].cause, cause);
            assert_string_equal(out[i].rid, rid);
            assert_int_equal(out[i].status, 500 + (int)(out[i].time_ms % 5));
        }
        merges++;
    }
    assert_int_equal(uv_thread_join(&t), 0);
    size_t n = errring_merge(rings, 2, out, ERRRING_SIZE);
    assert_int_equal(n, ERRRING_SIZE);
    char last[32];
    snprintf(last, sizeof(last), "r%d", STRESS_WRITES);
    assert_string_equal(out[n - 1].rid, last);
    errring_destroy(&r[0]);
    errring_destroy(&r[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),      cmocka_unit_test(test_fields),
        cmocka_unit_test(test_bounded),    cmocka_unit_test(test_merge_order),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
