/* http_rewrite: a route's `rewrite_redirects`, the response headers an app
 * behind a stripped path prefix gets wrong, put back into the client's view.
 *
 * An app mounted at /api by `strip_prefix` sees /users, not /api/users, and
 * answers as if it lived at the root: `Location: /login`, an absolute URL
 * built from its own address (`http://127.0.0.1:8002/sub/`) or from the
 * Host it was sent, `Set-Cookie: ...; Path=/`. Each would send the browser
 * out of the prefix. This module rewrites such values:
 *
 *   Location, Content-Location
 *     scheme://AUTH/rest, AUTH the upstream server's address or the request's
 *       Host                      -> CLIENT_SCHEME://HOST PREFIX /rest
 *     //AUTH/rest (same AUTHs)    -> the same
 *     /rest                       -> PREFIX /rest
 *     anything else (other hosts, relative "sub/", "?q") is left alone.
 *   Set-Cookie: a `Path=/rest` attribute -> `Path=PREFIX/rest` (Path=/ gives
 *     Path=PREFIX).
 *
 * A path already under PREFIX (PREFIX itself, or PREFIX followed by '/',
 * '?' or '#') keeps it: an app told the prefix (X-Forwarded-Prefix, Django's
 * FORCE_SCRIPT_NAME) writes it itself and must not get it twice.
 *
 * Pure: no allocation; the values come from the upstream (outside bytes)
 * and are read only within the given lengths. */
#ifndef FERRY_HTTP_REWRITE_H
#define FERRY_HTTP_REWRITE_H

#include <stddef.h>
#include <stdint.h>

/* What a rewrite needs to know about one request. */
struct http_rewrite {
    const char *scheme;     /* the client's: "http" or "https" */
    const char *host;       /* the request's Host as received (host[:port]) */
    size_t host_len;        /* 0: the request had none (HTTP/1.0) */
    const char *prefix;     /* "/api": what the route strips; no trailing '/' */
    size_t prefix_len;      /* 0: nothing stripped (absolute URLs are still fixed) */
    const char *up_host;    /* the upstream server's host as configured ("127.0.0.1", "app",
                             * "::1" without brackets); NULL: a unix socket */
    uint16_t up_port;       /* its port */
};

/* Rewrites a Location or Content-Location value V[0, LEN). Returns the
 * length of the new value written to OUT (at most CAP bytes), or 0 when
 * it stays as it is (also when the new one would not fit in CAP). */
size_t http_rewrite_location(const struct http_rewrite *rw, const char *v, size_t len, char *out,
                             size_t cap);

/* Rewrites the Path attribute of a Set-Cookie value V[0, LEN), the same
 * way: returns the new value's length in OUT, or 0 when unchanged. */
size_t http_rewrite_cookie(const struct http_rewrite *rw, const char *v, size_t len, char *out,
                           size_t cap);

#endif
