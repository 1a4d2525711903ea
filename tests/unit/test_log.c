/* Unit tests for the access log's escapers: what each byte becomes, cuts
 * that never split an escape or a character, and, over every two-byte
 * input and many random ones, JSON output that is valid UTF-8 with no raw
 * control byte, quote or lone backslash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/log.h"

/* ESCAPE(S) with room CAP, as a NUL-terminated string in a static buffer. */
static const char *run(size_t (*escape)(char *, size_t, const char *), const char *s, size_t cap) {
    static char out[4096];
    assert_true(cap < sizeof(out));
    memset(out, '#', sizeof(out));
    size_t n = escape(out, cap, s);
    assert_true(n <= cap);
    assert_int_equal(out[n], '#'); /* nothing written past what it returned */
    out[n] = '\0';
    return out;
}

static const char *text(const char *s) {
    return run(log_text_escape, s, 1000);
}

static const char *json(const char *s) {
    return run(log_json_escape, s, 1000);
}

static void test_text_escape(void **state) {
    (void)state;
    assert_string_equal(text(""), "");
    assert_string_equal(text("Mozilla/5.0 (X11; Linux) ~!"), "Mozilla/5.0 (X11; Linux) ~!");
    assert_string_equal(text("ua\" route=FAKE"), "ua\\x22 route=FAKE");
    assert_string_equal(text("a\\b"), "a\\x5Cb");
    assert_string_equal(text("\x01\t\x1f\x7f"), "\\x01\\x09\\x1F\\x7F");
    assert_string_equal(text("\xc3\xa9\x80\xff"), "\\xC3\\xA9\\x80\\xFF");
}

static void test_text_cut(void **state) {
    (void)state;
    /* "ab" + \x22 needs 6: with 5 it stops after "ab", not inside the escape */
    assert_string_equal(run(log_text_escape, "ab\"c", 5), "ab");
    assert_string_equal(run(log_text_escape, "ab\"c", 6), "ab\\x22");
    assert_string_equal(run(log_text_escape, "ab\"c", 7), "ab\\x22c");
    assert_string_equal(run(log_text_escape, "abc", 0), "");
}

static void test_json_escape(void **state) {
    (void)state;
    assert_string_equal(json("plain /path?q=1"), "plain /path?q=1");
    assert_string_equal(json("a\"b\\c"), "a\\\"b\\\\c");
    assert_string_equal(json("\n\t\x01\x1f\x7f"), "\\u000a\\u0009\\u0001\\u001f\\u007f");
    /* valid UTF-8 passes: 2, 3 and 4 bytes, the first and last code points */
    assert_string_equal(json("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"),
                        "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    assert_string_equal(json("\xc2\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf"),
                        "\xc2\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf");
}

/* Each byte that is not part of valid UTF-8 is \u00HH on its own; the
 * bytes after it are read afresh. */
static void test_json_invalid_utf8(void **state) {
    (void)state;
    assert_string_equal(json("\x80"), "\\u0080");
    assert_string_equal(json("\xff\xfe"), "\\u00ff\\u00fe");
    assert_string_equal(json("x\xc3"), "x\\u00c3");             /* cut short at the end */
    assert_string_equal(json("\xc3(\xc3\xa9"), "\\u00c3(\xc3\xa9"); /* then a good one */
    assert_string_equal(json("\xc0\xaf"), "\\u00c0\\u00af");     /* overlong '/' */
    assert_string_equal(json("\xe0\x80\xaf"), "\\u00e0\\u0080\\u00af");
    assert_string_equal(json("\xf0\x80\x80\xaf"), "\\u00f0\\u0080\\u0080\\u00af");
    assert_string_equal(json("\xed\xa0\x80"), "\\u00ed\\u00a0\\u0080"); /* a surrogate */
    assert_string_equal(json("\xf4\x90\x80\x80"), "\\u00f4\\u0090\\u0080\\u0080"); /* > U+10FFFF */
    assert_string_equal(json("\xf5\x80\x80\x80"), "\\u00f5\\u0080\\u0080\\u0080");
    assert_string_equal(json("\xf0\x9f\x98x"), "\\u00f0\\u009f\\u0098x"); /* 3 of 4 bytes */
}

static void test_json_cut(void **state) {
    (void)state;
    /* a 3-byte character never goes out in part */
    assert_string_equal(run(log_json_escape, "ab\xe2\x82\xac", 4), "ab");
    assert_string_equal(run(log_json_escape, "ab\xe2\x82\xac", 5), "ab\xe2\x82\xac");
    /* nor an escape: \u0080 is 6 bytes, \" 2 */
    assert_string_equal(run(log_json_escape, "a\x80", 6), "a");
    assert_string_equal(run(log_json_escape, "a\x80", 7), "a\\u0080");
    assert_string_equal(run(log_json_escape, "a\"", 2), "a");
}

/* An independent check of the result: valid UTF-8 (RFC 3629 table 4), no
 * byte below 0x20, every '"' and '\' part of an escape JSON knows. */
static bool json_string_ok(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c < 0x20 || c == '"') return false;
        if (c == '\\') {
            if (i + 1 >= n) return false;
            if (s[i + 1] == '"' || s[i + 1] == '\\') {
                i += 2;
                continue;
            }
            if (i + 5 >= n || s[i + 1] != 'u' || !strchr("0123456789abcdef", s[i + 2]) ||
                !strchr("0123456789abcdef", s[i + 3]) || !strchr("0123456789abcdef", s[i + 4]) ||
                !strchr("0123456789abcdef", s[i + 5]))
                return false;
            i += 6;
            continue;
        }
        uint32_t cp;
        size_t len;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += len;
    }
    return true;
}

static void check_json(const char *in) {
    char out[64];
    size_t n = log_json_escape(out, sizeof(out), in);
    if (!json_string_ok((const unsigned char *)out, n)) {
        print_message("bad JSON for input:");
        for (const char *p = in; *p; p++) print_message(" %02x", (unsigned char)*p);
        print_message("\n");
        fail();
    }
}

static void test_json_always_valid(void **state) {
    (void)state;
    char in[8];
    for (unsigned a = 1; a < 256; a++) {
        for (unsigned b = 1; b < 256; b++) {
            in[0] = (char)a, in[1] = (char)b, in[2] = '\0';
            check_json(in);
        }
    }
    srand(13);
    for (int i = 0; i < 200000; i++) {
        for (int k = 0; k < 7; k++) {
            /* mostly high bytes, where UTF-8 goes wrong */
            int r = rand();
            in[k] = (char)(r % 4 ? 0x80 + r % 128 : 1 + r % 127);
        }
        in[7] = '\0';
        check_json(in);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_escape),
        cmocka_unit_test(test_text_cut),
        cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_json_invalid_utf8),
        cmocka_unit_test(test_json_cut),
        cmocka_unit_test(test_json_always_valid),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
