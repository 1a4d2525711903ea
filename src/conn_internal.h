/* conn_internal.h: struct conn, shared by conn.c (lifecycle, tcp mode, the
 * one close) and conn_http.c (http mode). Nothing outside those two files
 * includes this. */
#ifndef FERRY_CONN_INTERNAL_H
#define FERRY_CONN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <uv.h>

#include "ferry/buffer.h"
#include "ferry/config.h"
#include "ferry/pipe.h"
#include "ferry/transport.h"
#include "ferry/upstream.h"
#include "ferry/util.h"
#include "ferry/wheel.h"

struct config_listener;
struct config_upstream;
struct exchange;
struct relay_log;
struct tls_hello;
struct worker_ctx;

enum conn_state {
    CONN_ACCEPTED,   /* just accepted, nothing decided yet */
    CONN_PROXY_HDR,  /* reading the PROXY protocol header of a balancer in front */
    CONN_TLS_HELLO,  /* tcp with sni routes: peeking at the ClientHello (header_timeout runs) */
    CONN_CONNECTING, /* tcp: checkout in flight, client not read yet */
    CONN_RELAYING,   /* tcp, or http after a 101: two pipes run */
    CONN_HTTP_IDLE,  /* http: waiting for the first byte of a request */
    CONN_HTTP_HEAD,  /* http: reading a request head (header_timeout runs) */
    CONN_HTTP_BUSY,  /* http: a request is being proxied (struct exchange) */
    CONN_LINGER,     /* last response written, write side shut: draining input */
    CONN_CLOSED,     /* conn_close() ran: waiting for callbacks */
    CONN_NSTATES     /* at most 16: conn.state is 4 bits */
};

/* What only a byte relay needs (tcp mode, or a websocket tunnel), kept out
 * of struct conn so that an idle http keep-alive connection stays small. */
struct relay {
    struct conn *c;                    /* owner */
    struct upstream_checkout checkout; /* tcp: in flight in CONN_CONNECTING */
    const char *upstream_text;         /* server address for the access log, or "-" */
    const struct config_upstream *ucfg; /* the upstream connected to (NULL before) */
    struct tls_hello *hello;           /* sni routing: the ClientHello read so far, freed
                                        * once it picked the upstream; else NULL */
    const char *route;                 /* sni routing: the route taken, "-" for none;
                                        * NULL on a listener without sni routes */
    struct pipe_dir to_up;             /* client -> upstream */
    struct pipe_dir to_client;         /* upstream -> client */
    char *held_block;                  /* a block an HTTP write queued before the switch
                                        * may still use (freed with the relay) */
    uint64_t idle_ms;                  /* idle limit: the route's idle_timeout, else the
                                        * listener's */
    struct relay_log *log;             /* http after a 101: the request's access log line,
                                        * written when the tunnel ends; else NULL */
    uint64_t early_in, early_out;      /* http after a 101: bytes each way written before
                                        * the pipes ran (for the log; counted elsewhere) */
};

/* What a connection speaks, chosen at accept from the listener's mode: the
 * byte relay (tcp mode), HTTP/1.x; HTTP/2 is the next. conn.c calls these
 * and never asks for the mode. An HTTP connection that switches protocols
 * (101 to a websocket) becomes a relay: conn_relay_start() swaps `proto`.
 *   start          the client is known (PROXY header read, if any): serve it
 *   refuse         too many connections: answer in the protocol's way, close
 *   alloc, on_read the client's bytes, while conn_read_start() is in force
 *                  (NULL: the protocol reads the client some other way)
 *   on_write_done  a write to the client (TO_CLIENT) or to c->up completed;
 *                  a failed client write never gets here (it closes the conn)
 *   on_close       conn_close() ran: stop everything, free nothing that a
 *                  queued write or a late callback may still use
 *   free           the last callback has run: free the rest */
struct conn_proto {
    const char *name;
    void (*start)(struct conn *c);
    void (*refuse)(struct conn *c, const char *why);
    void (*alloc)(struct conn *c, uv_buf_t *out);
    void (*on_read)(struct conn *c, ssize_t nread, const uv_buf_t *buf);
    void (*on_write_done)(struct conn *c, bool to_client, int status);
    void (*on_close)(struct conn *c);
    void (*free)(struct conn *c);
};

extern const struct conn_proto conn_proto_tcp;  /* conn_tcp.c */
extern const struct conn_proto conn_proto_http; /* conn_http.c */

struct conn {
    struct list_node link;              /* in the worker's list of live connections */
    const struct conn_proto *proto;     /* what it speaks now */
    struct worker_ctx *ctx;             /* the worker it lives on */
    struct view *view;                  /* the config it serves under (one reference) */
    const struct config_listener *lcfg; /* the listener it came in on */
    struct stats_node *lstats;          /* the listener's counters (connections) */
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } client;                          /* the downstream socket */
    struct transport client_tp;        /* every read, write, shutdown and close of `client` */
    struct wheel_timer timer;          /* idle, header, read and linger timeouts */
    struct upstream_conn *up;          /* the outbound connection, while one is attached */
    struct relay *relay;               /* tcp mode, or http after a 101; NULL otherwise */
    struct exchange *x;                /* http: the request in flight, if any */
    char *in;                          /* http: unparsed client bytes (a pool block), or NULL */
    uint64_t client_progress;          /* uv_now() of the last sign the client reads */
    uint64_t started;                  /* uv_now() at accept */
    /* Small fields together, bit-packed where they can be: an idle
     * connection's size is what a user with ten thousand of them pays for
     * (496 bytes here would be a 512-byte slab slot, 480 is one of 480). */
    uint32_t client_unsent;            /* kernel send queue at the last stall check */
    uint16_t in_len;                   /* bytes in `in` (at most CONN_BLOCK_DATA_SIZE) */
    uint16_t client_writes;            /* writes queued on the client (bounded by backpressure) */
    uint16_t up_writes;                /* writes queued on `up` */
    unsigned state : 4;                /* enum conn_state; changed only by conn_set_state() */
    unsigned refs : 3;                 /* close callbacks still to come (at most 3) */
    bool reset : 1;                    /* close with RST (a response cut short) */
    bool linger_needed : 1;            /* read and drop input before closing (after an error) */
    bool closing : 1;                  /* conn_close() ran */
    bool counted : 1;                  /* holds a slot of max_connections */
    bool client_eof : 1;               /* the client shut its write side */
    bool served : 1;                   /* http: a response went out on it */
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer_addr;                       /* the client (from a PROXY header when there is one);
                                        * AF_UNSPEC for unix clients */
};

/* The scheme the client used: "https" on a TLS listener, else "http"
 * (X-Forwarded-Proto, and redirects rewritten back to the client). */
static inline const char *conn_scheme(const struct conn *c) {
    return config_listener_tls(c->lcfg) ? "https" : "http";
}

/* The client's address as text, "unix" for unix clients. Formatted when
 * asked (logs, X-Forwarded-For), so that an idle connection does not carry
 * it. BUF has CONN_PEER_TEXT bytes; CONN_PEER(c) gives one that lives to
 * the end of the enclosing block. */
#define CONN_PEER_TEXT INET6_ADDRSTRLEN
const char *conn_peer(const struct conn *c, char *buf);
#define CONN_PEER(c) conn_peer((c), (char[CONN_PEER_TEXT]){0})

void conn_set_state(struct conn *c, enum conn_state next);
/* When a client with bytes waiting counts as having stopped reading:
 * IDLE_MS (idle_timeout) after its last progress (a completed write, or the
 * kernel's send queue shrinking). */
uint64_t conn_client_stall_deadline(struct conn *c, uint64_t idle_ms);

/* (Re)arms the conn's one timer; nothing once the conn is closing. */
void conn_arm(struct conn *c, uint64_t ms, wheel_cb cb);

/* The one exit: idempotent, the first reason wins. */
void conn_close(struct conn *c, const char *why);
/* conn_close(), with an abortive close (RST) of the client: for a response
 * cut short, which a FIN could make look complete. */
void conn_abort(struct conn *c, const char *why);
/* Closes c->up at once (it may hold half a message: never reused). */
void conn_drop_upstream(struct conn *c);

/* Write blocks: pool buffers with a write request in front of the data. */
#define CONN_HEADROOM TRANSPORT_HEADROOM
static inline char *conn_block_data(char *block) {
    return block + CONN_HEADROOM;
}
#define CONN_BLOCK_DATA_SIZE (BUFFER_SIZE - CONN_HEADROOM)
_Static_assert(CONN_BLOCK_DATA_SIZE <= UINT16_MAX, "conn.in_len is 16 bits");

/* Writes LEN bytes at DATA, which lie in BLOCK, to the client (TO_CLIENT)
 * or to c->up. The write request lives in BLOCK's headroom, so a block
 * carries one write at a time. The block returns to the pool once written
 * unless KEEP (the caller still owns it then, and keeps it until the write
 * callback has run). Returns 0 or a UV_E* code; on failure a block that
 * was not KEEP has been returned. */
int conn_write(struct conn *c, bool to_client, char *block, const char *data, size_t len,
               bool keep) FERRY_MUSTCHECK;

/* Starts or stops delivering the client's bytes to c->proto's alloc and
 * on_read; idempotent. Returns 0 or a UV_E* code. */
int conn_read_start(struct conn *c) FERRY_MUSTCHECK;
void conn_read_stop(struct conn *c);

/* Bytes queued for the client and not yet taken by the kernel. */
static inline size_t conn_client_queued(const struct conn *c) {
    return transport_queued(&c->client_tp);
}

/* What a checkout wants for this client: ip_hash keys on its address
 * bytes (a v4-mapped v6 address counts as v4). */
struct upstream_want conn_want(const struct conn *c, bool fresh);

/* The conn's relay, allocated on first use (NULL when out of memory). */
struct relay *conn_relay_new(struct conn *c);

/* exchange.c: writes a tunnel's access log line L (the upgrade request,
 * then the bytes each way and the length of the tunnel), and frees L. */
void relay_log_write(struct conn *c, struct relay_log *l);

/* Pipes client <-> upstream until both directions end or idle_timeout
 * passes with no byte either way (tcp mode, and http after a 101). */
void conn_relay_start(struct conn *c);

/* Ends the conversation gracefully: shut the write side once queued writes
 * are out, then close. After an error (the client may still be sending a
 * request we refused), or when input is waiting, first read and drop what
 * the client sends for a short while, so that our close does not reset the
 * connection before the client has read our response. */
void conn_linger(struct conn *c, bool after_error);

/* Writes the PROXY header the upstream expects (its proxy_protocol), if any,
 * on c->up. Returns 0 or a UV_E* code. */
int conn_send_proxy_header(struct conn *c) FERRY_MUSTCHECK;

/* conn.c: the client is known (PROXY header read, if any): serve it. */
void conn_begin(struct conn *c);
/* conn.c: records SS as the client's address (AF_UNSPEC for unix). */
void conn_set_peer_addr(struct conn *c, const struct sockaddr_storage *ss);

/* conn_proxy.c: reads the PROXY header a balancer in front sends first,
 * then conn_begin(). */
void conn_read_proxy_header(struct conn *c);


#endif
