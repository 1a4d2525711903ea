/* http_internal: what http_parse.c and http_write.c share; private to
 * them. */
#ifndef FERRY_HTTP_INTERNAL_H
#define FERRY_HTTP_INTERNAL_H

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "ferry/http.h"

static inline bool http_span_eq(const struct http_msg *m, struct http_span s, const char *lit) {
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(m->base + s.off, lit, n) == 0;
}

#endif
