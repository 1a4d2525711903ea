/* strbuf: one string builder; see strbuf.h. */
#include "ferry/strbuf.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

/* Room for N more bytes and the NUL in a growing buffer: at least double,
 * so appending byte by byte stays linear. */
static void strbuf_reserve(struct strbuf *b, size_t n) {
    assert(!b->fixed);
    if (n <= b->cap - b->len) return;
    size_t want = b->len + n;
    size_t cap = b->cap * 2 > want ? b->cap * 2 : want;
    if (cap < 32) cap = 32;
    b->p = xrealloc(b->p, cap + 1);
    b->cap = cap;
}

void strbuf_add_slow(struct strbuf *b, const char *s, size_t n) {
    if (n == 0) return;
    if (b->fixed) {
        if (!b->full && n <= b->cap - b->len) { /* not reached through strbuf_add */
            memcpy(b->p + b->len, s, n);
            b->len += n;
            return;
        }
        b->full = true;
        b->cap = b->len; /* nothing more fits: later appends are ignored */
        return;
    }
    strbuf_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

void strbuf_vprintf(struct strbuf *b, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    size_t room = b->cap - b->len;
    /* room + 1 in a growing buffer: the byte kept for the NUL */
    int n = vsnprintf(b->p ? b->p + b->len : NULL, b->fixed ? room : (b->p ? room + 1 : 0), fmt,
                      ap);
    if (n <= 0) { /* nothing to add, or an encoding error: add nothing */
        va_end(ap2);
        return;
    }
    if (b->fixed) {
        if ((size_t)n < room) {
            b->len += (size_t)n;
        } else {
            b->full = true;
            b->cap = b->len;
        }
    } else if ((size_t)n <= room && b->p) {
        b->len += (size_t)n;
    } else {
        strbuf_reserve(b, (size_t)n);
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

void strbuf_printf(struct strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    strbuf_vprintf(b, fmt, ap);
    va_end(ap);
}

const char *strbuf_cstr(struct strbuf *b) {
    assert(!b->fixed);
    if (!b->p) return "";
    b->p[b->len] = '\0';
    return b->p;
}

char *strbuf_take(struct strbuf *b) {
    assert(!b->fixed);
    char *s = b->p ? b->p : xstrdup("");
    if (b->p) s[b->len] = '\0';
    *b = (struct strbuf)STRBUF_INIT;
    return s;
}

void strbuf_free(struct strbuf *b) {
    assert(!b->fixed);
    free(b->p);
    *b = (struct strbuf)STRBUF_INIT;
}
