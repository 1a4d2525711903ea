/* Unit tests for strbuf.c: the string builder the config loader, the
 * admin endpoint and http_write.c's head writers share. Growing builders must
 * hold whatever is appended (byte by byte or in one piece) and read back
 * NUL-terminated; fixed ones must take exactly what fits, refuse the rest
 * as a whole, and stay refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <stdlib.h>
#include <string.h>

#include "ferry/strbuf.h"

/* A growing builder that a failed assertion leaves behind: freed by the
 * teardown, so a failure is not also reported as a leak. */
static struct strbuf held = STRBUF_INIT;

static int held_teardown(void **state) {
    (void)state;
    strbuf_free(&held);
    return 0;
}

static void test_empty(void **state) {
    (void)state;
    assert_null(held.p);
    assert_string_equal(strbuf_cstr(&held), "");
    strbuf_add(&held, "x", 0);
    strbuf_printf(&held, "%s", "");
    assert_null(held.p); /* nothing appended, nothing allocated */
    char *s = strbuf_take(&held);
    assert_string_equal(s, "");
    free(s);
}

static void test_grows(void **state) {
    (void)state;
    char want[10001];
    for (size_t i = 0; i < 10000; i++) {
        want[i] = (char)('a' + i % 26);
        strbuf_add(&held, &want[i], 1);
    }
    want[10000] = '\0';
    assert_int_equal(held.len, 10000);
    assert_string_equal(strbuf_cstr(&held), want);
    strbuf_adds(&held, "!");
    assert_int_equal(held.len, 10001);
    assert_int_equal(strbuf_cstr(&held)[10000], '!');
}

static void test_printf_grows(void **state) {
    (void)state;
    strbuf_adds(&held, "x=");
    strbuf_printf(&held, "%d", 42);
    char big[3000];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    strbuf_printf(&held, " [%s] %s", big, "end"); /* more than any first allocation */
    assert_int_equal(held.len, 4 + 3 + (sizeof big - 1) + 4);
    const char *s = strbuf_cstr(&held);
    assert_memory_equal(s, "x=42 [bbb", 9);
    assert_string_equal(s + held.len - 5, "] end");
}

static void test_take(void **state) {
    (void)state;
    strbuf_adds(&held, "hello, ");
    strbuf_printf(&held, "%s", "world");
    char *s = strbuf_take(&held);
    assert_string_equal(s, "hello, world");
    assert_null(held.p);
    assert_int_equal(held.len, 0);
    free(s);
    strbuf_adds(&held, "again"); /* usable after take */
    assert_string_equal(strbuf_cstr(&held), "again");
}

static void test_fixed_exact_fit(void **state) {
    (void)state;
    char buf[8];
    struct strbuf b = strbuf_fixed(buf, sizeof buf);
    strbuf_adds(&b, "abc");
    strbuf_add(&b, "defgh", 5); /* exactly to the end: no NUL needed */
    assert_false(b.full);
    assert_int_equal(b.len, 8);
    assert_memory_equal(buf, "abcdefgh", 8);
}

static void test_fixed_overflow_sticks(void **state) {
    (void)state;
    char buf[8] = "--------";
    struct strbuf b = strbuf_fixed(buf, sizeof buf);
    strbuf_adds(&b, "abcdef");
    strbuf_adds(&b, "ghi"); /* one byte too many: dropped whole */
    assert_true(b.full);
    assert_int_equal(b.len, 6);
    assert_memory_equal(buf, "abcdef--", 8);
    strbuf_adds(&b, "g"); /* would fit, but the result is already unusable */
    strbuf_printf(&b, "%d", 1);
    assert_true(b.full);
    assert_int_equal(b.len, 6);
    assert_memory_equal(buf, "abcdef--", 8);
}

static void test_fixed_printf(void **state) {
    (void)state;
    char buf[8];
    struct strbuf b = strbuf_fixed(buf, sizeof buf);
    strbuf_printf(&b, "%03d", 7);
    strbuf_printf(&b, "%s", "xyz"); /* 7 bytes and vsnprintf's NUL: fits */
    assert_false(b.full);
    assert_int_equal(b.len, 6);
    assert_string_equal(buf, "007xyz");
    strbuf_printf(&b, "%s", "12"); /* 2 bytes fit, the NUL does not */
    assert_true(b.full);
    assert_int_equal(b.len, 6);
}

static void test_fixed_zero_cap(void **state) {
    (void)state;
    struct strbuf b = strbuf_fixed(NULL, 0);
    strbuf_add(&b, "", 0);
    assert_false(b.full);
    strbuf_adds(&b, "a");
    assert_true(b.full);
    assert_int_equal(b.len, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_empty, held_teardown),
        cmocka_unit_test_teardown(test_grows, held_teardown),
        cmocka_unit_test_teardown(test_printf_grows, held_teardown),
        cmocka_unit_test_teardown(test_take, held_teardown),
        cmocka_unit_test(test_fixed_exact_fit),
        cmocka_unit_test(test_fixed_overflow_sticks),
        cmocka_unit_test(test_fixed_printf),
        cmocka_unit_test(test_fixed_zero_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
