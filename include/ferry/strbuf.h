/* strbuf: one string builder, on the heap or in the caller's buffer.
 *
 * Growing (a zeroed struct, STRBUF_INIT): the bytes live on the heap and
 * grow as needed, so an append never fails; out of memory aborts, as every
 * x* allocation does (util.h). Read the result with strbuf_cstr(), hand it
 * over with strbuf_take(), or drop it with strbuf_free().
 *
 * Fixed (strbuf_fixed()): the bytes go into the caller's buffer and never
 * past its size. An append that does not fit whole is dropped and sets
 * `full`; every later append is then ignored too, so the caller checks
 * `full` once, at the end: what was built is unusable then. A fixed buffer is not
 * NUL-terminated: its text is p[0, len).
 *
 * strbuf_add() is inline: building a request head appends some thirty
 * pieces into a fixed buffer on every request, and this way each costs one
 * comparison and a memcpy, as the hand-written appender it replaced did. */
#ifndef FERRY_STRBUF_H
#define FERRY_STRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "ferry/util.h"

struct strbuf {
    char *p;    /* the bytes, p[0, len); growing: NULL until the first append */
    size_t len; /* bytes written */
    size_t cap; /* bytes p can take; growing: one more is kept for the NUL */
    bool fixed; /* p is the caller's buffer and never grows */
    bool full;  /* fixed: an append did not fit; the content is unusable */
};

#define STRBUF_INIT {NULL, 0, 0, false, false}

/* A builder writing into BUF[0, CAP). */
static inline struct strbuf strbuf_fixed(char *buf, size_t cap) {
    return (struct strbuf){.p = buf, .len = 0, .cap = cap, .fixed = true, .full = false};
}

/* What strbuf_add does when N bytes do not fit (or N is 0): grow, or mark
 * a fixed buffer full. */
void strbuf_add_slow(struct strbuf *b, const char *s, size_t n);

/* Appends S[0, N). */
static inline void strbuf_add(struct strbuf *b, const char *s, size_t n) {
    if (n == 0 || n > b->cap - b->len) {
        strbuf_add_slow(b, s, n);
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* Appends the string S. */
static inline void strbuf_adds(struct strbuf *b, const char *s) {
    strbuf_add(b, s, strlen(s));
}

/* Appends printf(FMT, ...). In a fixed buffer it needs one byte of room
 * past the text, for vsnprintf's NUL (not counted in len). */
void strbuf_printf(struct strbuf *b, const char *fmt, ...) FERRY_PRINTF(2, 3);
void strbuf_vprintf(struct strbuf *b, const char *fmt, va_list ap) FERRY_PRINTF(2, 0);

/* Growing only: the text so far, NUL-terminated ("" when empty); valid
 * until the next append. */
const char *strbuf_cstr(struct strbuf *b);

/* Growing only: the text as a malloc'ed string (never NULL, "" when empty)
 * for the caller to free; B is empty afterwards. */
char *strbuf_take(struct strbuf *b) FERRY_MUSTCHECK;

/* Growing only: frees the bytes; B is empty afterwards. */
void strbuf_free(struct strbuf *b);

#endif
