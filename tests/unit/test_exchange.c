/* Unit tests for the exchange's state machine (src/exchange.h): every legal
 * step of the diagram is allowed and moves the state, every other step is
 * refused, and exchange_set_state() stops the process on a refused one
 * where assertions are compiled in (the sanitizer and debug builds; the
 * test says so and skips that part where they are not). The expected steps
 * are written out here again, from the diagram, not read from exchange.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/exchange.h"

static const struct {
    enum exchange_state from, to;
} legal[] = {
    {EXCHANGE_HEAD, EXCHANGE_ROUTED},           {EXCHANGE_HEAD, EXCHANGE_DONE},
    {EXCHANGE_ROUTED, EXCHANGE_CONNECTING},     {EXCHANGE_ROUTED, EXCHANGE_DONE},
    {EXCHANGE_CONNECTING, EXCHANGE_WAITING},    {EXCHANGE_CONNECTING, EXCHANGE_HOLDING},
    {EXCHANGE_CONNECTING, EXCHANGE_DONE},       {EXCHANGE_HOLDING, EXCHANGE_CONNECTING},
    {EXCHANGE_HOLDING, EXCHANGE_DONE},          {EXCHANGE_WAITING, EXCHANGE_CONNECTING},
    {EXCHANGE_WAITING, EXCHANGE_STREAMING},     {EXCHANGE_WAITING, EXCHANGE_DONE},
    {EXCHANGE_STREAMING, EXCHANGE_RELEASING},   {EXCHANGE_STREAMING, EXCHANGE_DONE},
    {EXCHANGE_RELEASING, EXCHANGE_DONE},
};

static bool expected_legal(enum exchange_state from, enum exchange_state to) {
    for (size_t i = 0; i < sizeof(legal) / sizeof(legal[0]); i++)
        if (legal[i].from == from && legal[i].to == to) return true;
    return false;
}

static void test_transition_table(void **state) {
    (void)state;
    int allowed = 0;
    for (int from = 0; from < EXCHANGE_NSTATES; from++) {
        for (int to = 0; to < EXCHANGE_NSTATES; to++) {
            bool want = expected_legal(from, to);
            if (exchange_transition_ok(from, to) != want)
                fail_msg("%s -> %s: expected %s", exchange_state_name(from),
                         exchange_state_name(to), want ? "legal" : "illegal");
            allowed += want;
        }
    }
    assert_int_equal(allowed, (int)(sizeof(legal) / sizeof(legal[0])));
    /* DONE is final; nothing goes back to HEAD; out of range is refused. */
    for (int to = 0; to < EXCHANGE_NSTATES; to++) {
        assert_false(exchange_transition_ok(EXCHANGE_DONE, to));
        assert_false(exchange_transition_ok(to, EXCHANGE_HEAD));
    }
    assert_false(exchange_transition_ok(EXCHANGE_NSTATES, EXCHANGE_DONE));
    assert_false(exchange_transition_ok(EXCHANGE_HEAD, EXCHANGE_NSTATES));
    assert_string_equal(exchange_state_name(EXCHANGE_RELEASING), "releasing");
    assert_string_equal(exchange_state_name(EXCHANGE_NSTATES), "?");
}

static void test_every_legal_step_moves(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(legal) / sizeof(legal[0]); i++) {
        struct exchange x;
        memset(&x, 0, sizeof(x));
        x.state = (uint8_t)legal[i].from;
        exchange_set_state(&x, legal[i].to);
        assert_int_equal(x.state, legal[i].to);
    }
}

/* The longest life: held, then connected, a stale pooled connection
 * retried, then a response streamed and its connection released. */
static void test_a_whole_life(void **state) {
    (void)state;
    static const enum exchange_state path[] = {
        EXCHANGE_ROUTED,  EXCHANGE_CONNECTING, EXCHANGE_HOLDING,   EXCHANGE_CONNECTING,
        EXCHANGE_WAITING, EXCHANGE_CONNECTING, EXCHANGE_WAITING,   EXCHANGE_STREAMING,
        EXCHANGE_RELEASING, EXCHANGE_DONE,
    };
    struct exchange x;
    memset(&x, 0, sizeof(x));
    x.state = EXCHANGE_HEAD;
    for (size_t i = 0; i < sizeof(path) / sizeof(path[0]); i++) {
        exchange_set_state(&x, path[i]);
        assert_int_equal(x.state, path[i]);
    }
}

static void test_illegal_step_stops(void **state) {
    (void)state;
#ifdef NDEBUG
    skip(); /* assertions are compiled out of this build */
#else
    int checked = 0;
    for (int from = 0; from < EXCHANGE_NSTATES; from++) {
        for (int to = 0; to < EXCHANGE_NSTATES; to++) {
            if (expected_legal(from, to)) continue;
            fflush(NULL);
            pid_t pid = fork();
            assert_true(pid >= 0);
            if (pid == 0) {
                /* The assertion's message would flood the test log. */
                if (!freopen("/dev/null", "w", stderr)) _exit(3);
                struct exchange x;
                memset(&x, 0, sizeof(x));
                x.state = (uint8_t)from;
                exchange_set_state(&x, to);
                _exit(0); /* reached only if the step was taken */
            }
            int st = 0;
            assert_int_equal(waitpid(pid, &st, 0), pid);
            if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT)
                fail_msg("%s -> %s was not stopped", exchange_state_name(from),
                         exchange_state_name(to));
            checked++;
        }
    }
    assert_int_equal(checked, EXCHANGE_NSTATES * EXCHANGE_NSTATES -
                                  (int)(sizeof(legal) / sizeof(legal[0])));
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transition_table),
        cmocka_unit_test(test_every_legal_step_moves),
        cmocka_unit_test(test_a_whole_life),
        cmocka_unit_test(test_illegal_step_stops),
    };
    return cmocka_run_group_tests_name("exchange", tests, NULL, NULL);
}
