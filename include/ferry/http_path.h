/* http_path: a request path normalised before routing.
 *
 * A proxy that routes by one reading of a path and forwards another lets
 * `GET /public/../secret/x` through the `/public/` route to an upstream
 * that serves `/secret/x`. So the path is normalised once, in place, and
 * that one result is both what routes and what goes upstream:
 *
 *   - `%XX` of an unreserved character (ALPHA DIGIT - . _ ~) is decoded,
 *     first, so that `%2e%2e` is a `..` segment; any other `%XX` (`%2F`,
 *     `%20`, ...) stays exactly as sent: an encoded `/` is no separator;
 *   - `.` and `..` segments are removed (RFC 3986 5.2.4) and repeated `/`
 *     merged, a trailing `/` kept (`/a/.` is `/a/`, `/a/..` is `/`);
 *   - refused (the caller answers 400): a `..` that would climb above `/`,
 *     `%00`, and a `%` not followed by two hex digits.
 *
 * Only the path: the caller cuts the query off first. Pure, no allocation. */
#ifndef FERRY_HTTP_PATH_H
#define FERRY_HTTP_PATH_H

#include <stddef.h>

#include "ferry/util.h"

/* Normalises PATH[0, *LEN) in place; the result is never longer. A path
 * that does not start with '/' (empty, or the `*` of `OPTIONS *`) is left
 * alone. Returns NULL with *LEN set to the new length, or a short reason
 * for the 400 (static storage); then *LEN is unchanged and the bytes of
 * PATH are unspecified: the request must not be forwarded. */
const char *http_path_normalise(char *path, size_t *len) FERRY_MUSTCHECK;

#endif
