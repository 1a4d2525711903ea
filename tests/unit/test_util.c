/* Unit tests for util.h's character classes: the tchar table that http_parse.c,
 * the config loader and --explain share, and the hex digit helper. Each is
 * checked against its definition on all 256 byte values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <string.h>

#include "ferry/util.h"

/* RFC 9110 5.6.2, spelled out as the RFC does. */
static int tchar_by_definition(unsigned c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", (int)c) != NULL);
}

static void test_tchar_table(void **state) {
    (void)state;
    for (unsigned c = 0; c < 256; c++) {
        if (util_is_tchar((unsigned char)c) != tchar_by_definition(c))
            fail_msg("byte 0x%02x: table says %d", c, util_is_tchar((unsigned char)c));
    }
}

/* The separators HTTP parsing relies on are never part of a token. */
static void test_tchar_separators(void **state) {
    (void)state;
    const char *seps = "\"(),/:;<=>?@[\\]{} \t\r\n";
    for (const char *p = seps; *p; p++)
        assert_false(util_is_tchar((unsigned char)*p));
    assert_false(util_is_tchar(0x7f));
    assert_false(util_is_tchar(0x80));
    assert_false(util_is_tchar(0xff));
}

static void test_hex_digit(void **state) {
    (void)state;
    const char *hex = "0123456789abcdef", *HEX = "0123456789ABCDEF";
    for (unsigned c = 0; c < 256; c++) {
        const char *lo = c ? strchr(hex, (int)c) : NULL, *up = c ? strchr(HEX, (int)c) : NULL;
        int want = lo ? (int)(lo - hex) : up ? (int)(up - HEX) : -1;
        assert_int_equal(util_hex_digit((unsigned char)c), want);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tchar_table),
        cmocka_unit_test(test_tchar_separators),
        cmocka_unit_test(test_hex_digit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
