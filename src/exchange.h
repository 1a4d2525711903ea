/* exchange: one request and its response, between a downstream stream (an
 * HTTP/1.x connection today, an HTTP/2 stream tomorrow) and an upstream
 * connection. Private to the HTTP files: conn_http.c (the HTTP/1.x
 * downstream), exchange.c (routing, checkout, hold, metrics and log) and
 * upstream_http.c (the HTTP/1.1 client side to the upstream).
 *
 *   HEAD ──head checked──> ROUTED ──checkout──> CONNECTING ──connected──> WAITING
 *    │                       │                   │     ^   \                 │
 *    │                       │ 404, 413, 400     │     │    hold: HOLDING    │ response head
 *    │                       v                   │     └── stale retry ──────┤ (>= 200) sent
 *    └───── 400/408/431 ──> DONE <───────────────┴── error ────────────────┐ v
 *                            ^                                          STREAMING
 *                            │ upstream writes out: released           │ whole response
 *                            └──────── RELEASING <──────────────────────┘ queued
 *
 * Every state can go to DONE (an error, a client gone, a 101 turning the
 * connection into a tunnel); DONE is final: only freeing remains.
 * exchange_set_state() is the one place that changes the state, and it
 * asserts that the step is one of the arrows above. The request side has
 * its own progress (head_sent, req_done): a body may still stream up while
 * the response streams down. */
#ifndef FERRY_EXCHANGE_H
#define FERRY_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/http.h"
#include "ferry/upstream.h"

struct config_route;
struct conn;
struct exchange;
struct upstream;

enum exchange_state {
    EXCHANGE_HEAD,       /* the request head is being read */
    EXCHANGE_ROUTED,     /* head checked and routed; a checkout or an answer comes next */
    EXCHANGE_CONNECTING, /* a checkout is in flight */
    EXCHANGE_HOLDING,    /* no server took it: the timer tries again (`hold`) */
    EXCHANGE_WAITING,    /* upstream attached, request going up, no final response head yet */
    EXCHANGE_STREAMING,  /* the response head went to the client; its body flows */
    EXCHANGE_RELEASING,  /* the whole response is queued; the upstream's writes are not out */
    EXCHANGE_DONE,       /* over: answered, failed, or turned into a tunnel */
    EXCHANGE_NSTATES
};

/* True when FROM -> TO is an arrow of the diagram above. */
bool exchange_transition_ok(enum exchange_state from, enum exchange_state to);
const char *exchange_state_name(enum exchange_state s);

/* What the upstream side hands the downstream side. An HTTP/1.x connection
 * implements it in conn_http.c; an HTTP/2 stream will. */
struct exchange_downstream {
    /* x->resp holds a complete response head (1xx included); BODY[0, LEN)
     * are the body bytes that came with it, already checked. */
    void (*send_head)(struct exchange *x, const char *body, size_t len);
    /* LEN checked body bytes at DATA inside pool block BLOCK (ownership
     * passes). Returns 0, or -1 after closing the downstream. */
    int (*send_body)(struct exchange *x, char *block, const char *data, size_t len);
    /* The whole response has been handed over. */
    void (*done)(struct exchange *x);
    /* The exchange cannot go on: STATUS to the client if nothing of the
     * response went out yet, else cut the response short. */
    void (*fail)(struct exchange *x, int status, const char *detail);
    /* A 101 to a websocket: the downstream becomes a byte tunnel; REST are
     * the upstream's bytes after the 101 head. */
    void (*tunnel)(struct exchange *x, const char *rest, size_t len);
    /* The request head went up: send what of the body came with it, and
     * keep what follows the request (the downstream may close). */
    void (*head_sent)(struct exchange *x);
    /* Recompute what to read on both sides (after any event). */
    void (*update_reading)(struct exchange *x);
    /* (Re)arms the exchange's timer for MS: in HOLDING the next checkout,
     * otherwise the read timeout watch. */
    void (*arm)(struct exchange *x, uint64_t ms);
};

struct exchange {
    struct conn *c;                   /* the downstream connection it belongs to */
    const struct exchange_downstream *down;
    struct http_msg req;              /* spans into c->in until the head went up */
    struct http_msg resp;             /* spans into resp_buf */
    const struct config_route *route; /* NULL: the listener's default upstream */
    struct upstream *upstream;        /* where the request goes */
    struct upstream_checkout checkout;
    char *up_head;                    /* block: head sent upstream, kept for a retry */
    uint32_t up_head_len;
    char *resp_buf;                   /* block: response head being read */
    uint32_t resp_len;                /* bytes in resp_buf */
    uint32_t req_fed;                 /* bytes of c->in given to the request parser */
    uint32_t early_body;              /* body bytes that came with the head (checked at dispatch) */
    char *rblock;                     /* block of the upstream read in progress */
    char *client_rblock;              /* block of the client read in progress (body) */
    uint8_t state;                    /* enum exchange_state; only exchange_set_state() writes it */
    uint8_t stale_retries;
    bool head_sent;                   /* the head (and early_body) went upstream once */
    bool req_done;                    /* the whole request was read and checked */
    bool any_resp_byte;               /* the upstream answered at all */
    bool stray_bytes;                 /* upstream sent more than its response */
    bool close_client;                /* the connection ends after this response */
    bool dechunk;                     /* chunked response re-framed for HTTP/1.0 */
    bool up_reading;                  /* reading the upstream now */
    bool recorded;                    /* counted in metrics and the access log */
    bool holding;                     /* counted in ctx->held: inside a `hold` */
    bool hold_full;                   /* would be held, but the worker's limit is reached */
    uint64_t hold_until;              /* loop ms; 0 = not held */
    int status;                       /* of the response, for the log */
    uint64_t bytes_out;               /* bytes sent to the client for this response */
    uint64_t t_start;                 /* first byte of the request (loop ms) */
    uint64_t t_start_ns;              /* the same, uv_hrtime(): durations in metrics and logs */
    uint64_t t_up;                    /* checkout started */
    uint64_t t_resp;                  /* response head arrived; 0 = not yet */
    uint64_t last_up;                 /* last byte from the upstream */
    char rid[208];                    /* X-Request-Id, sent (at most 200 bytes) or generated */
    /* rewrite_redirects: the request's Host (a name of at most 253 bytes
     * and a port), copied out of c->in at routing; "" for none or longer. */
    char host[264];
    /* Access log fields, copied out of c->in before it is reused. */
    char log_method[24], log_target[512], log_referer[256], log_ua[256];
    uint8_t log_minor;
};

void exchange_set_state(struct exchange *x, enum exchange_state next);

static inline bool exchange_routed(const struct exchange *x) {
    return x->state != EXCHANGE_HEAD;
}
/* Response bytes (a final head) went to the client: an error now can only
 * cut the response short. */
static inline bool exchange_responding(const struct exchange *x) {
    return x->state == EXCHANGE_STREAMING || x->state == EXCHANGE_RELEASING;
}

/* --- exchange.c --------------------------------------------------------- */

/* A new exchange on C (from the worker's slab), in HEAD; NULL: no memory. */
struct exchange *exchange_new(struct conn *c, const struct exchange_downstream *down);
/* The one free path: blocks it still holds go back to the pool. */
void exchange_free(struct exchange *x);
/* Copies what the access log needs out of the request head. */
void exchange_capture_log(struct exchange *x);
/* Counts the request in the route's metrics and writes its access log
 * line; the first call only. */
void exchange_record(struct exchange *x);
/* X-Request-Id: the client's when the route keeps it, else a new one. */
void exchange_make_request_id(struct exchange *x);
/* Chooses the route for the checked head (or FALLBACK, the listener's
 * upstream) and the request id. False: nothing serves it (a 404). */
struct route_table;
struct config_upstream;
bool exchange_route(struct exchange *x, const struct route_table *routes,
                    const struct config_upstream *fallback);
/* The head is routed to X->upstream: find it a connection. */
void exchange_checkout(struct exchange *x);
/* A reused connection died before answering: the same request again on a
 * connection of its own. */
void exchange_retry_fresh(struct exchange *x);
/* Leaves a `hold`, counting how it ended. */
void exchange_unhold(struct exchange *x, bool served);
/* The limits of this request: its route's read_timeout and idle_timeout
 * when set, else its upstream's read_timeout and its listener's
 * idle_timeout (1 s read limit while no upstream is chosen yet). */
uint64_t exchange_read_timeout(const struct exchange *x);
uint64_t exchange_idle_timeout(const struct exchange *x);
/* "route api, upstream app: connection refused" as the failure detail. */
void exchange_fail_upstream(struct exchange *x, int status, const char *cause);

/* --- upstream_http.c ----------------------------------------------------- */

/* The checkout gave UC: send the request on it and read the response. */
void upstream_http_attach(struct exchange *x, struct upstream_conn *uc);
/* Writes LEN request body bytes at DATA inside BLOCK (ownership passes).
 * Returns 0, or -1 after failing the exchange. */
int upstream_http_send_body(struct exchange *x, char *block, const char *data, size_t len);
/* Reads the upstream (WANT) or pauses it: the downstream says which, from
 * how much it can take (the backpressure of the response). */
void upstream_http_set_reading(struct exchange *x, bool want);
/* The response is done: give the connection back, or, while writes of ours
 * are queued on it, go to RELEASING (call again once they are out). */
void upstream_http_release(struct exchange *x);

#endif
