/* Small helpers every module may use. Nothing here allocates or knows about
 * the network. */
#ifndef FERRY_UTIL_H
#define FERRY_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#define FERRY_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A result that must be looked at: an ignored error is a bug. */
#define FERRY_MUSTCHECK __attribute__((warn_unused_result))
#define FERRY_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define FERRY_UNUSED(x) ((void)(x))

/* The value of hex digit C (either case), or -1. */
static inline int util_hex_digit(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* RFC 9110 tchar, the bytes of a token (methods, header names, chunk
 * extensions): one table for http.c's hot path, the loader and --explain. */
extern const uint8_t util_tchar[256];

static inline bool util_is_tchar(unsigned char c) {
    return util_tchar[c] != 0;
}

/* An intrusive doubly-linked list: a node embedded in the listed object,
 * the list head a sentinel node (empty when it points to itself). */
struct list_node {
    struct list_node *prev, *next;
};

static inline void list_init(struct list_node *head) {
    head->prev = head->next = head;
}

static inline int list_empty(const struct list_node *head) {
    return head->next == head;
}

static inline void list_push_front(struct list_node *head, struct list_node *n) {
    n->next = head->next;
    n->prev = head;
    head->next->prev = n;
    head->next = n;
}

static inline void list_remove(struct list_node *n) {
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

/* Moves every node of FROM to TO (empty before); FROM is empty after. For
 * running a batch whose handlers may queue again. */
static inline void list_move_all(struct list_node *from, struct list_node *to) {
    list_init(to);
    if (list_empty(from)) return;
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    list_init(from);
}

/* Allocation failure at start-up is fatal; on the request path callers use
 * plain malloc and turn NULL into a closed connection instead. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Monotonic milliseconds, for ages and durations outside the loop clock. */
uint64_t util_now_ms(void);

#endif
