/* Unit tests for balance.c: the smooth weighted round robin sequence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "ferry/balance.h"

static void pick_sequence(struct balance_peer *peers, size_t n, int count, char *out) {
    for (int i = 0; i < count; i++) {
        int idx = balance_rr_pick(peers, n);
        out[i] = idx < 0 ? '-' : (char)('a' + idx);
    }
    out[count] = '\0';
}

static void test_rr_weights_are_smooth(void **state) {
    (void)state;
    /* nginx's documented example: weights 5,1,1 -> a a b a c a a */
    struct balance_peer p[3] = {{.weight = 5, .eligible = true},
                                {.weight = 1, .eligible = true},
                                {.weight = 1, .eligible = true}};
    char seq[16];
    pick_sequence(p, 3, 14, seq);
    assert_string_equal(seq, "aabacaaaabacaa");
}

static void test_rr_equal_weights_alternate(void **state) {
    (void)state;
    struct balance_peer p[3] = {{.weight = 1, .eligible = true},
                                {.weight = 1, .eligible = true},
                                {.weight = 1, .eligible = true}};
    char seq[16];
    pick_sequence(p, 3, 9, seq);
    assert_string_equal(seq, "abcabcabc");
}

static void test_rr_skips_ineligible(void **state) {
    (void)state;
    struct balance_peer p[3] = {{.weight = 1, .eligible = true},
                                {.weight = 3, .eligible = false},
                                {.weight = 1, .eligible = true}};
    char seq[16];
    pick_sequence(p, 3, 6, seq);
    assert_string_equal(seq, "acacac");
    p[0].eligible = p[2].eligible = false;
    assert_int_equal(balance_rr_pick(p, 3), -1);
}

static void test_rr_distribution_matches_weights(void **state) {
    (void)state;
    struct balance_peer p[2] = {{.weight = 2, .eligible = true}, {.weight = 1, .eligible = true}};
    int counts[2] = {0, 0};
    for (int i = 0; i < 300; i++) counts[balance_rr_pick(p, 2)]++;
    assert_int_equal(counts[0], 200);
    assert_int_equal(counts[1], 100);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rr_weights_are_smooth),
        cmocka_unit_test(test_rr_equal_weights_alternate),
        cmocka_unit_test(test_rr_skips_ineligible),
        cmocka_unit_test(test_rr_distribution_matches_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
