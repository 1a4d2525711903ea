/* Unit tests for http_path.c: path normalisation before routing.
 *
 * Each test is one rule, checked on a table of paths and what must come
 * out: the normalised path, or the reason for the 400. Every input is
 * copied into a heap block of exactly its size, so ASan sees any read or
 * write past the path; every result is normalised a second time, which
 * must change nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/http_path.h"

/* A path and what normalising it gives: OUT, or an error whose text holds
 * ERR. */
struct path_case {
    const char *in;
    const char *out; /* NULL: refused */
    const char *err; /* a word the reason must contain */
};

/* The copy being normalised: freed by held_teardown when an assertion
 * ends a test early (cmocka longjmps out of it), so a failure is not also
 * reported as a leak. */
static char *held;

static int held_teardown(void **state) {
    (void)state;
    free(held);
    held = NULL;
    return 0;
}

/* Normalises IN in an exact-size copy; checks the result against C. */
static void check_case(const struct path_case *c) {
    size_t n = strlen(c->in);
    char *p = held = malloc(n ? n : 1);
    assert_non_null(p);
    memcpy(p, c->in, n);
    size_t len = n;
    const char *why = http_path_normalise(p, &len);
    if (!c->out) {
        if (!why) print_error("%s: accepted as %.*s, want refused\n", c->in, (int)len, p);
        assert_non_null(why);
        if (!strstr(why, c->err))
            print_error("%s: reason \"%s\" lacks \"%s\"\n", c->in, why, c->err);
        assert_non_null(strstr(why, c->err));
        assert_int_equal(len, n); /* a refused path yields no length */
        held_teardown(NULL);
        return;
    }
    if (why) print_error("%s: refused (%s), want %s\n", c->in, why, c->out);
    assert_null(why);
    if (len != strlen(c->out) || memcmp(p, c->out, len) != 0)
        print_error("%s: got %.*s, want %s\n", c->in, (int)len, p, c->out);
    assert_int_equal(len, strlen(c->out));
    assert_memory_equal(p, c->out, len);
    size_t again = len;
    assert_null(http_path_normalise(p, &again)); /* idempotent */
    assert_int_equal(again, len);
    assert_memory_equal(p, c->out, len);
    held_teardown(NULL);
}

static void check_all(const struct path_case *cases, size_t n) {
    for (size_t i = 0; i < n; i++)
        check_case(&cases[i]);
}

#define CHECK_ALL(cases) check_all(cases, sizeof(cases) / sizeof(cases[0]))

/* RFC 3986 5.2.4: "." and ".." segments go, a trailing slash stays. */
static void test_dot_segments(void **state) {
    (void)state;
    static const struct path_case cases[] = {
        {"/public/../secret/x", "/secret/x", NULL},
        {"/a/./b", "/a/b", NULL},
        {"/a/../b", "/b", NULL},
        {"/a/b/../../c", "/c", NULL},
        {"/a/b/c/./../../g", "/a/g", NULL}, /* RFC 3986 5.2.4's example */
        {"/./a", "/a", NULL},
        {"/a/.", "/a/", NULL},
        {"/a/..", "/", NULL},
        {"/a/b/..", "/a/", NULL},
        {"/a/b/.", "/a/b/", NULL},
        {"/.", "/", NULL},
        {"/./", "/", NULL},
        {"/a/./", "/a/", NULL},
        {"/a/../", "/", NULL},
        {"/", "/", NULL},
        {"/a/b/", "/a/b/", NULL},
        {"/a/b", "/a/b", NULL},
    };
    CHECK_ALL(cases);
}

/* Dots inside a segment are a name, not a dot segment. */
static void test_dots_in_names(void **state) {
    (void)state;
    static const struct path_case cases[] = {
        {"/.hidden", "/.hidden", NULL},
        {"/a..b", "/a..b", NULL},
        {"/...", "/...", NULL},
        {"/..a", "/..a", NULL},
        {"/a../", "/a../", NULL},
        {"/a/.../b", "/a/.../b", NULL},
        {"/.a/..b/c.", "/.a/..b/c.", NULL},
        {"/x/.well-known/../y", "/x/y", NULL},
    };
    CHECK_ALL(cases);
}

/* Repeated slashes are one; so `//evil.com/x` can never look like a
 * network-path reference upstream. */
static void test_repeated_slashes(void **state) {
    (void)state;
    static const struct path_case cases[] = {
        {"//", "/", NULL},
        {"///", "/", NULL},
        {"//evil.com/x", "/evil.com/x", NULL},
        {"/a//b///c", "/a/b/c", NULL},
        {"/a//", "/a/", NULL},
        {"/a//../b", "/b", NULL}, /* merged first, as nginx's merge_slashes does */
        {"/.//a", "/a", NULL},
        {"//..//", NULL, "above"},
    };
    CHECK_ALL(cases);
}

/* A ".." with nothing left to remove would climb above the root. */
static void test_climb_above_root(void **state) {
    (void)state;
    static const struct path_case cases[] = {
        {"/..", NULL, "above"},
        {"/../", NULL, "above"},
        {"/../x", NULL, "above"},
        {"/a/../..", NULL, "above"},
        {"/a/../../b", NULL, "above"},
        {"/./..", NULL, "above"},
        {"/%2e%2E/", NULL, "above"},
        {"/%2E.", NULL, "above"},
        {"/a/%2e%2e/%2e%2e", NULL, "above"},
    };
    CHECK_ALL(cases);
}

/* Unreserved characters are decoded, before dot segments are looked for;
 * hex digits in either case. */
static void test_decode_unreserved(void **state) {
    (void)state;
    static const struct path_case cases[] = {
        {"/%7E", "/~", NULL},
        {"/%7euser", "/~user", NULL},
        {"/%41%62%5a%7a%30%39", "/AbZz09", NULL},
        {"/%2d%2E%5f%7e", "/-._~", NULL},
        {"/%4a%4A", "/JJ", NULL},
        {"/a/%2e/b", "/a/b", NULL},
        {"/a/%2E%2e/b", "/b", NULL},
        {"/a/.%2e", "/", NULL},
        {"/%2e", "/", NULL},
        {"/public/%2e%2e/secret/x", "/secret/x", NULL},
        {"/%2e%2e%2e", "/...", NULL},
    };
    CHECK_ALL(cases);
}

/* `%2F` is data, not a separator: it is neither decoded nor split on, and
 * a segment holding it is removed by a following ".." as a whole. */
static void test_encoded_slash(void **state) {
    (void)state;
    static const struct path_case cases[] = {
        {"/%2F..%2F", "/%2F..%2F", NULL},
        {"/a%2Fb/../c", "/c", NULL},
        {"/a%2fb", "/a%2fb", NULL},
        {"/group%2Fproject/-/issues", "/group%2Fproject/-/issues", NULL},
        {"/a/%2F/../b", "/a/b", NULL},
        {"/%2e%2e%2F", "/..%2F", NULL}, /* one segment "..%2F", not ".." */
    };
    CHECK_ALL(cases);
}

/* Any other escape is passed on exactly as sent, case included. */
static void test_other_escapes_kept(void **state) {
    (void)state;
    static const struct path_case cases[] = {
        {"/a%20b", "/a%20b", NULL},
        {"/%c3%A9", "/%c3%A9", NULL},
        {"/%25", "/%25", NULL},
        {"/%252e%252e/x", "/%252e%252e/x", NULL}, /* decoded once only: no ".." */
        {"/%3F", "/%3F", NULL},                   /* an encoded '?' is no query */
        {"/%ff%80", "/%ff%80", NULL},
        {"/a;b=c,d", "/a;b=c,d", NULL},
    };
    CHECK_ALL(cases);
}

/* NUL and broken escapes: 400, as nginx answers. */
static void test_refused_escapes(void **state) {
    (void)state;
    static const struct path_case cases[] = {
        {"/%00", NULL, "NUL"},     {"/a%00b", NULL, "NUL"},    {"/%", NULL, "percent"},
        {"/%4", NULL, "percent"},  {"/%zz", NULL, "percent"},  {"/%4g", NULL, "percent"},
        {"/a%", NULL, "percent"},  {"/%%41", NULL, "percent"}, {"/a%2", NULL, "percent"},
        {"/%g4", NULL, "percent"},
    };
    CHECK_ALL(cases);
}

/* Not a path: `*` of OPTIONS and the empty path of `http://host`. */
static void test_not_a_path(void **state) {
    (void)state;
    static const struct path_case cases[] = {
        {"*", "*", NULL},
        {"", "", NULL},
    };
    CHECK_ALL(cases);
}

/* The normaliser writes only inside the path: bytes after it (the query,
 * the rest of the head) are never touched. */
static void test_writes_only_the_path(void **state) {
    (void)state;
    char buf[] = "/a/./%7e/../b?x=/../y HTTP/1.1";
    size_t len = strcspn(buf, "?");
    assert_null(http_path_normalise(buf, &len));
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "/a/b", 4);
    assert_string_equal(buf + strcspn(buf, "?"), "?x=/../y HTTP/1.1");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_dot_segments, held_teardown),
        cmocka_unit_test_teardown(test_dots_in_names, held_teardown),
        cmocka_unit_test_teardown(test_repeated_slashes, held_teardown),
        cmocka_unit_test_teardown(test_climb_above_root, held_teardown),
        cmocka_unit_test_teardown(test_decode_unreserved, held_teardown),
        cmocka_unit_test_teardown(test_encoded_slash, held_teardown),
        cmocka_unit_test_teardown(test_other_escapes_kept, held_teardown),
        cmocka_unit_test_teardown(test_refused_escapes, held_teardown),
        cmocka_unit_test_teardown(test_not_a_path, held_teardown),
        cmocka_unit_test_teardown(test_writes_only_the_path, held_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
