/* http: HTTP/1.x message heads, read strictly and written exactly.
 *
 * Reading: llhttp (built with LLHTTP_STRICT_MODE, every lenient flag off)
 * drives the parse and gives us spans of the head; ferry then checks what
 * llhttp still lets through (obs-fold, bare CR/LF, empty names, whitespace
 * before the colon, odd request lines, repeated or malformed framing and
 * Host headers) so that nothing ambiguous reaches an upstream.
 *
 * Every span is an offset into the caller's buffer, which must hold the
 * whole head contiguously and must not move while the head is in use: no
 * header is copied while parsing.
 *
 * Writing: the head ferry sends upstream is built once, from the original
 * bytes plus the changes the route and the spec ask for; likewise the head
 * sent back to the client, and ferry's own error responses.
 *
 * Pure: no sockets, no libuv, no allocation. */
#ifndef FERRY_HTTP_H
#define FERRY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llhttp.h"

#include "ferry/util.h"

struct config_route;
struct http_rewrite;

/* More fields than this in one head: 431 (request) or 502 (response). */
#define HTTP_MAX_FIELDS 100

struct http_span {
    uint32_t off; /* from the start of the buffer */
    uint32_t len;
};

/* Names ferry acts on; anything else is HTTP_F_OTHER. */
enum http_field_id {
    HTTP_F_OTHER = 0,
    HTTP_F_HOST,
    HTTP_F_CONTENT_LENGTH,
    HTTP_F_TRANSFER_ENCODING,
    HTTP_F_CONNECTION,
    HTTP_F_KEEP_ALIVE,
    HTTP_F_PROXY_CONNECTION,
    HTTP_F_TE,
    HTTP_F_UPGRADE,
    HTTP_F_TRAILER,
    HTTP_F_EXPECT,
    HTTP_F_X_FORWARDED_FOR,
    HTTP_F_X_FORWARDED_PROTO,
    HTTP_F_X_FORWARDED_HOST,
    HTTP_F_X_FORWARDED_PREFIX,
    HTTP_F_X_REQUEST_ID,
};

struct http_field {
    struct http_span name;
    struct http_span value; /* without surrounding whitespace */
    uint8_t id;             /* enum http_field_id */
    bool hop;               /* hop-by-hop: never forwarded as is */
};

/* One message head (request or response) and what the checks learnt. */
struct http_msg {
    llhttp_t parser;        /* owned; its data pointer is the msg */
    const char *base;       /* the buffer the spans point into */
    bool is_request;
    bool head_done;         /* the head is complete and checked */
    uint8_t minor;          /* HTTP/1.<minor> */
    uint8_t method;         /* llhttp_method_t */
    uint16_t status;        /* responses */
    uint32_t head_start;    /* first byte after skipped empty lines */
    uint32_t head_end;      /* one past the blank line ending the head */
    struct http_span method_text;
    struct http_span target;
    struct http_span reason;
    struct http_field fields[HTTP_MAX_FIELDS];
    unsigned nfields;
    bool in_value;          /* parser state: inside a header value */
    bool too_many;          /* more than HTTP_MAX_FIELDS fields: 431/502 once the head ends */
    /* Learnt from the head. */
    int host;               /* index of Host, or -1 */
    int request_id;         /* index of X-Request-Id, or -1 */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool has_length;        /* Content-Length present */
    uint64_t content_length;
    bool conn_close;        /* Connection: close (or 1.0 without keep-alive) */
    bool upgrade_websocket; /* Connection: upgrade + Upgrade: websocket */
    bool expect_continue;   /* Expect: 100-continue */
    struct http_span path;  /* target's path: no query, absolute-form cut to its path;
                             * shorter once http_normalise_path has run */
    struct http_span query; /* target's "?query", or empty; never normalised */
    struct http_span authority; /* absolute-form only: host[:port] of the target */
    /* The error that ended parsing, when one did. */
    int error_status;       /* 400, 413, 431, 502, 505 */
    const char *error_text; /* short, names the cause; static storage */
    /* ferry's own check of chunked framing, run on the same bytes as
     * llhttp: both must accept (see http_chunk_scan). */
    uint8_t chunk_state;
    uint8_t chunk_digits;
    uint64_t chunk_left;
    bool head_request;      /* responses: the request was HEAD */
    /* Body progress (decoded bytes, for max_body_size). */
    uint64_t body_bytes;
    bool message_done;      /* the whole message (head and body) was parsed */
    /* Dechunking: when `compact` is set, body bytes are moved down to
     * compact_to + compact_len as they are parsed, so after a call the
     * decoded body of that call lies contiguous at compact_to (used to
     * re-frame a chunked response for an HTTP/1.0 client). */
    bool compact;
    char *compact_to;
    size_t compact_len;
    bool upgraded;          /* llhttp stopped at an upgrade (101 or upgrade request) */
};

enum http_result {
    HTTP_MORE = 0,  /* need more bytes */
    HTTP_DONE = 1,  /* head complete (http_parse_head) / message complete (http_parse_body) */
    HTTP_ERROR = -1 /* see error_status and error_text */
};

/* Prepares M for a new message. HEAD_REQUEST (responses only): the request
 * was HEAD, so the response has no body whatever its headers say. */
void http_msg_init(struct http_msg *m, bool is_request, bool head_request);

/* Parses head bytes BASE[FROM, TO); BASE[0, FROM) was fed before and every
 * call must pass the same BASE. On HTTP_DONE the head is BASE[head_start,
 * head_end) and was checked; bytes from head_end on belong to the body or
 * the next message and were not consumed. */
int http_parse_head(struct http_msg *m, const char *base, size_t from, size_t to) FERRY_MUSTCHECK;

/* Parses body bytes DATA[0, LEN). *CONSUMED is how many belong to this
 * message (all of LEN unless it ended inside). Returns HTTP_DONE when the
 * message ended, HTTP_MORE, or HTTP_ERROR (bad chunk framing or trailer). */
int http_parse_body(struct http_msg *m, const char *data, size_t len,
                    size_t *consumed) FERRY_MUSTCHECK;

/* The peer closed: for a read-until-close response body this completes it.
 * Returns HTTP_DONE or HTTP_ERROR (the message was cut short). */
int http_parse_eof(struct http_msg *m) FERRY_MUSTCHECK;

/* True when the body ends only when the peer closes. */
bool http_msg_needs_eof(const struct http_msg *m);
/* True when a message body follows the head. */
bool http_msg_has_body(const struct http_msg *m);

static inline const char *http_span_ptr(const struct http_msg *m, struct http_span s) {
    return m->base + s.off;
}

/* Normalises the path of a checked request in place (see http_path.h):
 * BASE is the head's buffer, M->base, writable. Afterwards M->path is the
 * normalised path, the one to route by and to forward; the bytes between
 * its new end and M->query are left over and belong to nothing. Call it
 * after anything that needs the target as sent (the access log). Returns
 * 0, or -1 with error_status 400 and error_text set. */
int http_normalise_path(struct http_msg *m, char *base) FERRY_MUSTCHECK;

/* What ferry adds to a request on its way upstream. */
struct http_request_rewrite {
    const struct config_route *route; /* strip_prefix, add/remove headers; may be NULL */
    const char *client_addr;          /* appended to X-Forwarded-For */
    const char *proto;                /* X-Forwarded-Proto: "http" */
    const char *prefix;               /* X-Forwarded-Prefix ("/api"), PREFIX_LEN bytes */
    size_t prefix_len;                /* 0: none sent */
    const char *request_id;           /* generated id, sent when the client's is not kept */
    const char *default_host;         /* Host for an HTTP/1.0 request without one */
};

/* Writes the request head for the upstream into OUT. Returns its length, or
 * 0 when it does not fit in CAP. */
size_t http_build_request(char *out, size_t cap, const struct http_msg *req,
                          const struct http_request_rewrite *rw) FERRY_MUSTCHECK;

/* Route R (may be NULL) has remove_request_header = NAME (any case). */
bool http_route_removes(const struct config_route *r, const char *name);

/* The client's X-Request-Id (REQ->request_id) is the request's id and goes
 * upstream: true unless there is none or route R removes it. */
bool http_keeps_request_id(const struct http_msg *req, const struct config_route *r);

/* How many leading bytes of a path of PATH_LEN bytes route R's
 * strip_prefix removes (0 when it does not apply). The upstream then sees
 * the rest, or "/" when nothing is left. */
size_t http_strip_len(const struct config_route *r, size_t path_len);

/* The prefix route R strips, as its apps are told (X-Forwarded-Prefix) and
 * as redirects get it back: its path_prefix without the trailing slash
 * ("/api" for "/api/"). Its length in *LEN; 0 when R strips nothing. */
const char *http_route_prefix(const struct config_route *r, size_t *len);

/* What ferry changes in a response on its way to the client. */
struct http_response_rewrite {
    const struct config_route *route; /* add_response_header; may be NULL */
    const char *request_id;           /* echoed unless the response has one */
    uint8_t client_minor;             /* the client's HTTP/1.<minor> */
    bool close;                       /* the client connection ends after this response */
    bool dechunk;                     /* body is re-framed (chunked to an HTTP/1.0 client) */
    uint64_t hsts_s;                  /* Strict-Transport-Security max-age; 0: none added */
    const struct http_rewrite *redirects; /* rewrite_redirects: Location, Content-Location,
                                           * Set-Cookie Path (http_rewrite.h); NULL: as sent */
};

size_t http_build_response(char *out, size_t cap, const struct http_msg *resp,
                           const struct http_response_rewrite *rw) FERRY_MUSTCHECK;

/* One of ferry's own responses. */
struct http_error {
    int status;
    const char *detail;     /* the cause, for the body; NULL: the reason phrase */
    const char *request_id; /* X-Request-Id; may be NULL */
    const char *date;       /* Date (http_date()); may be NULL */
    const char *location;   /* Location (a redirect); may be NULL */
    bool close;             /* Connection: close */
    bool head;              /* the request was HEAD: the same headers, no body */
};

/* Writes "HTTP/1.1 STATUS Reason" with a text/plain body "STATUS Reason:
 * DETAIL\n" into OUT. Returns the length (truncating DETAIL if it must), or 0
 * when even that does not fit in CAP. */
size_t http_build_error(char *out, size_t cap, const struct http_error *e);

/* An IMF-fixdate (RFC 9110 5.6.7), "Sun, 06 Nov 1994 08:49:37 GMT", of
 * Unix time T into OUT[HTTP_DATE_LEN]. */
#define HTTP_DATE_LEN 30
void http_date(char *out, int64_t t);

/* The message is (or, while its head is still arriving, starts as) a HEAD
 * request: what answers it carries no body. */
bool http_msg_is_head(const struct http_msg *m);

const char *http_reason(int status);

/* A request method is safe to repeat (retries, hold). */
bool http_method_idempotent(uint8_t method);

/* Writes a fresh request id (32 hex digits) into OUT[33]. */
void http_request_id(char *out, uint64_t seed_a, uint64_t seed_b);

#endif
