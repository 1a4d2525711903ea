/* upstream.h - the test/demo upstream server: shared types.
 *
 * One libuv loop, one thread. A listener accepts either HTTP connections
 * (struct conn, conn.c + http.c + ws.c) or, with --tcp-echo, raw echo
 * connections (echo.c). The HTTP side is built for the benchmark path: the
 * read buffer is shared by every connection, responses are appended to a
 * per-connection output buffer that is reused, and everything produced by one
 * read goes out in one uv_try_write.
 *
 *   read_cb ──> http_process (llhttp) ──> response bytes in out[cur]
 *      │              │ pauses on async work (delay, stream, hang, upgrade,
 *      │              │ close): unparsed bytes wait in c->in
 *      └──────> conn_drive: process c->in, conn_flush, choose read on/off
 *   write_cb ───────> conn_drive (next stream piece, resumed parsing)
 */
#ifndef FERRY_UPSTREAM_H
#define FERRY_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "hash.h"
#include "llhttp.h"

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define UPSTREAM_READ_SIZE      (64 * 1024)   /* one read; also the shared read buffer */
#define UPSTREAM_HEAD_MAX       (64 * 1024)   /* request line + headers; over it: 431 */
#define UPSTREAM_IN_MAX         (256 * 1024)  /* unparsed HTTP input kept while paused */
#define UPSTREAM_OUT_HIGH       (1024 * 1024) /* stop reading/producing above this backlog */
#define UPSTREAM_WS_MAX_PAYLOAD (16u << 20)   /* larger frames: close 1009 */
#define UPSTREAM_SMALL_BODY     (16 * 1024) /* pattern bodies up to this are copied, not streamed */
#define UPSTREAM_LINGER_MS      1000        /* after our FIN, drain input this long before close */

/* Process-wide state: settings from the command line and counters. */
struct upstream_globals {
    uv_loop_t *loop;   /* the only loop */
    const char *name;  /* --name: "server" in JSON, X-Upstream-Name */
    size_t name_len;   /* strlen(name) */
    char *name_json;   /* name, JSON-escaped with quotes, built once */
    uint64_t accepted; /* connections accepted since start */
    uint64_t requests; /* HTTP requests completed since start */
    int stopping;      /* a signal arrived: no new work, close everything */
};
extern struct upstream_globals g_up;

/* A growable byte buffer that is kept (not freed) between uses. */
struct obuf {
    char *data; /* heap block or NULL */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated */
};

enum conn_mode { CONN_HTTP, CONN_WS };

/* Why parsing is paused; WAIT_NONE means requests are being answered in order. */
enum conn_wait {
    WAIT_NONE,   /* free to parse the next request */
    WAIT_DELAY,  /* /delay: timer running */
    WAIT_STREAM, /* /bytes, /chunked: body pieces still to queue */
    WAIT_HANG,   /* /hang: never answer; input is discarded */
};

enum body_kind { BODY_FIXED, BODY_CHUNKED };

/* One header as offsets into c->head. */
struct hdr {
    uint32_t name_off; /* start of the name in c->head */
    uint32_t name_len; /* length of the name */
    uint32_t val_off;  /* start of the value in c->head */
    uint32_t val_len;  /* length of the value */
};

struct conn {
    union {
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;                      /* the client socket; freed after its close callback */
    uv_timer_t timer;         /* /delay and the linger after our FIN */
    uv_write_t wreq;          /* the one write in flight (wbusy) */
    uv_shutdown_t sreq;       /* our FIN */
    struct conn *prev, *next; /* every live conn, for shutdown */
    int refs;                 /* handles not yet closed; free at 0 */

    enum conn_mode mode;      /* HTTP until a WebSocket upgrade */
    enum conn_wait wait;      /* why parsing is paused */
    unsigned wbusy : 1;       /* wreq is in flight; out[cur ^ 1] is its buffer */
    unsigned closing : 1;     /* conn_close ran; handles are closing */
    unsigned close_after : 1; /* shut down gracefully once output is written */
    unsigned abort_after : 1; /* close at once once output is written (/close-mid) */
    unsigned shutting : 1;    /* uv_shutdown issued */
    unsigned lingering : 1;   /* FIN sent: discard input until EOF or timer */
    unsigned read_eof : 1;    /* the client half-closed */
    unsigned reading : 1;     /* uv_read_start is in effect */

    /* input not yet parsed (only while paused, or WebSocket frames) */
    char *in;      /* heap block or NULL */
    size_t in_off; /* first unparsed byte */
    size_t in_len; /* end of data */
    size_t in_cap; /* allocated */

    /* output: out[cur] collects, out[cur ^ 1] belongs to the write in flight */
    struct obuf out[2];
    int cur;

    /* streaming pattern body (WAIT_STREAM) */
    enum body_kind body; /* fixed length or chunked */
    uint64_t body_left;  /* bytes not yet queued */
    uint64_t body_pos;   /* bytes queued (pattern offset) */
    unsigned chunk_seq;  /* chunked: picks the next chunk size */

    /* the request being parsed or answered */
    llhttp_t parser;
    struct obuf head;       /* target, then header names and values */
    uint32_t target_len;    /* target is head.data[0 .. target_len) */
    struct hdr *hdrs;       /* headers in order */
    size_t nhdrs;           /* headers used */
    size_t hdrs_cap;        /* headers allocated */
    int hdr_open;           /* 0 none, 1 reading a name, 2 reading a value */
    int err_status;         /* set by a callback that refused the request (431) */
    int keep_alive;         /* llhttp_should_keep_alive at message end */
    int is_head;            /* HEAD: headers only */
    uint64_t body_len;      /* request body bytes */
    struct sha256 body_sha; /* request body hash */
};

/* conn.c */
void conn_accept(uv_stream_t *server, int is_pipe);
void conn_close(struct conn *c, const char *why);
void conn_close_all(void);
void conn_drive(struct conn *c);
void ob_reserve(struct obuf *o, size_t more);
void ob_add(struct obuf *o, const void *p, size_t n);
void ob_u64(struct obuf *o, uint64_t v);
void ob_free(struct obuf *o);
#define ob_lit(o, s) ob_add((o), (s), sizeof(s) - 1)
extern char g_pattern[];
void pattern_init(void);
size_t pattern_piece(uint64_t pos, uint64_t left, const char **data);

/* http.c */
void http_conn_init(struct conn *c);
size_t http_process(struct conn *c, char *data, size_t len);
void http_on_delay(uv_timer_t *t);
void http_respond_error(struct conn *c, int status, const char *msg);

/* ws.c */
size_t ws_process(struct conn *c, char *data, size_t len);
void ws_respond_upgrade(struct conn *c, const char *key, size_t key_len);

/* echo.c */
void echo_accept(uv_stream_t *server, int is_pipe);
void echo_close_all(void);

#endif
