/* acme_http: the HTTPS client the ACME client talks to its CA with.
 *
 * One request per connection (Connection: close), on the main loop, over
 * transport_tls with the server's certificate verified against the system
 * CAs or a given CA file. ACME exchanges are few (a handful per
 * certificate every few weeks), so keep-alive would buy nothing and cost
 * a pool. Everything is bounded: the response head by llhttp's and our
 * limits, the body by ACME_HTTP_MAX_BODY, the whole exchange by
 * ACME_HTTP_TIMEOUT_MS. */
#ifndef FERRY_ACME_HTTP_H
#define FERRY_ACME_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ferry/util.h"

#define ACME_HTTP_MAX_BODY   (256 * 1024) /* a certificate chain, a directory */
#define ACME_HTTP_MAX_HEADER 4096         /* one header value we keep */
#define ACME_HTTP_TIMEOUT_MS 30000

struct acme_http;

/* What came back; valid during the callback only. */
struct acme_resp {
    int status;       /* HTTP status */
    const char *body; /* NUL-terminated; "" when none */
    size_t body_len;
    const char *location;     /* Location, or NULL */
    const char *nonce;        /* Replay-Nonce, or NULL */
    const char *content_type; /* Content-Type, or NULL */
    uint64_t retry_after_s;   /* Retry-After in seconds (delta form), 0 when absent */
};

/* ERR is 0 with R, or a UV_E* code with R NULL (no answer: DNS, connect,
 * TLS, timeout, a malformed or oversized response). */
typedef void (*acme_http_cb)(void *arg, int err, const struct acme_resp *r);

/* A client on LOOP trusting CA_FILE (NULL: the system's CAs). NULL with a
 * message in ERR. */
struct acme_http *acme_http_new(uv_loop_t *loop, const char *ca_file, char *err,
                                size_t len) FERRY_MUSTCHECK;
/* Cancels what is in flight (their callbacks run with UV_ECANCELED) and
 * frees the client once its handles are closed (the loop must run). */
void acme_http_free(struct acme_http *c);

/* METHOD URL (https only) with BODY (NULL: none; else sent as
 * application/jose+json). CB runs exactly once, never from inside this
 * call. 0, or a UV_E* code (bad URL) and CB never runs. */
int acme_http_request(struct acme_http *c, const char *method, const char *url, const char *body,
                      acme_http_cb cb, void *arg) FERRY_MUSTCHECK;

/* Why the last failed request of C failed, in words ("certificate verify
 * failed", "timed out"); "" when none. */
const char *acme_http_error(const struct acme_http *c);

#endif
