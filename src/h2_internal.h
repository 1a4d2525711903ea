/* h2_internal.h: an HTTP/2 connection and its streams. Private to
 * conn_h2.c (the session on the client connection) and transport_h2.c (a
 * stream as the byte transport of a conn of its own).
 *
 *   client socket ── conn (CONN_H2, conn_proto_h2) ── nghttp2 session
 *                                                        │ one per stream
 *                                                        v
 *           struct h2_stream ══ transport ══ conn (stream = 1, conn_proto_http)
 *
 * A stream's conn is an ordinary HTTP/1.1 conn: it reads a request head
 * that conn_h2.c writes from the stream's decoded fields (after checking
 * them as RFC 9113 8.2 and 8.3 ask), then the body from DATA frames
 * (chunked when no content-length was given), and its response, as
 * conn_http.c writes it, becomes HEADERS and DATA again. So routing,
 * rewriting, limits, timeouts, retries, holds and the access log are the
 * HTTP/1.1 code's, not a copy of it.
 *
 * Lifetime: a stream is allocated when its HEADERS begin and freed when
 * both nghttp2 has closed it (ng_open) and its conn has closed the
 * transport (conn_open), whichever comes last. The session is the client
 * conn's; when it goes first, its streams are detached (s = NULL) and
 * fail their reads and writes. */
#ifndef FERRY_H2_INTERNAL_H
#define FERRY_H2_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <nghttp2/nghttp2.h>
#include <uv.h>

#include "ferry/buffer.h"
#include "ferry/http.h"
#include "ferry/transport_h2.h"
#include "ferry/transport.h"
#include "ferry/util.h"

struct conn;
struct h2_session;

/* How the request body reaches the stream's conn. */
enum h2_body_phase {
    H2_BODY_DATA,       /* raw bytes (content-length given), or a chunk's bytes */
    H2_BODY_CHUNK_HEAD, /* chunked: the size line of the next chunk */
    H2_BODY_CHUNK_END,  /* chunked: the CRLF after a chunk */
};

struct h2_stream {
    struct list_node link;     /* in s->streams */
    struct list_node deferred; /* in the worker's h2.deferred while a delivery is due */
    struct h2_session *s;      /* NULL once the session is gone */
    struct h2_worker *hw;      /* the worker's deferred deliveries */
    struct buffer_pool *pool;  /* the worker's blocks */
    struct conn *pc;           /* the stream's conn, once started */
    struct transport *t;       /* pc->client_tp */
    int32_t id;
    bool ng_open;              /* nghttp2 still knows the stream */
    bool conn_open;            /* the conn has not closed its transport yet */

    /* The request. */
    char *head;                /* block: the HTTP/1.1 head written from the fields */
    uint32_t head_len, head_sent;
    char *cookie;              /* malloc: cookie fields joined with "; " (RFC 9113 8.2.3) */
    uint32_t cookie_len;
    char method[24];           /* :method */
    char *path;                /* malloc: :path */
    uint32_t path_len;
    char authority[256];       /* :authority, or "" */
    uint32_t host_off, host_len; /* the host field's value inside `head` */
    bool has_authority, has_host, head_request, head_overflow, bad_field;
    bool has_length;           /* content-length given: the body goes as it is */
    char *body;                /* block: DATA not yet read by the conn */
    uint32_t body_off, body_len;
    uint32_t chunk_left;       /* chunked: bytes of the current chunk still to give */
    uint8_t body_phase;        /* enum h2_body_phase */
    char chunk_line[16];       /* chunked: "%x\r\n" of the current chunk */
    uint8_t chunk_line_len, chunk_line_sent;
    bool in_end;               /* END_STREAM came: nothing more to read after the body */
    bool last_chunk_sent;      /* chunked: "0\r\n\r\n" was given */
    bool eof_given;            /* the reader had UV_EOF */
    bool read_failed;          /* reads end with read_err */
    int read_err;

    /* The response. */
    struct http_msg resp;      /* parsed from what the conn writes */
    char *resp_head;           /* block: the response head as written, until parsed */
    uint32_t resp_head_len;
    char *out;                 /* block: decoded body bytes waiting for DATA frames */
    uint32_t out_off, out_len;
    struct transport_write *wq_head, *wq_tail; /* writes not yet taken into `out` */
    size_t wq_taken;           /* bytes of wq_head already taken */
    size_t wq_bytes;           /* bytes in the queued writes, not taken */
    bool submitted;            /* the response HEADERS were submitted */
    bool resp_done;            /* the whole response is in `out` (or had no body) */
    bool resp_failed;          /* the response cannot be completed: RST_STREAM */
    bool deferred_data;        /* nghttp2 waits for DATA (NGHTTP2_ERR_DEFERRED) */
    bool end_sent;             /* the response's END_STREAM went out */
    bool rst_after_end;        /* RST_STREAM NO_ERROR once it has (request not all read) */
    bool head_done;            /* its header block ended (or the stream did first) */
    bool closing;              /* the conn closed the transport */
    uv_close_cb close_cb;
    uv_shutdown_t *shut_req;   /* a shutdown whose callback is due */
    uv_shutdown_cb shut_cb;
};

/* --- transport_h2.c ------------------------------------------------------ */

/* Makes T the transport of ST's conn (STREAM is the conn's socketless
 * handle, given back to the close callback). */
void h2_stream_transport_init(struct h2_stream *st, struct transport *t, uv_stream_t *stream);
/* The session has more input for ST (head, DATA or END_STREAM). */
void h2_stream_input(struct h2_stream *st);
/* ST cannot go on (peer reset, session gone): reads end with ERR, writes
 * fail. */
void h2_stream_fail(struct h2_stream *st, int err);
/* nghttp2's data source read callback for a response body. */
ssize_t h2_stream_read_data(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *user);
/* Runs the worker's idle callback on this loop turn (sessions to flush). */
void h2_worker_wake(struct h2_worker *hw);
/* Frees what ST still holds; both sides are done with it. */
void h2_stream_free(struct h2_stream *st);

/* --- conn_h2.c ----------------------------------------------------------- */

/* Sends what nghttp2 has to send, as far as the client takes it: at the
 * end of this loop turn, so that what many streams say at once goes out
 * in one write (h2_worker_flush). */
void h2_session_send(struct h2_session *s);
/* Writes for every session h2_session_send() named since the last call. */
void h2_worker_flush(struct h2_worker *hw);
nghttp2_session *h2_session_ng(struct h2_session *s);
/* ST's conn closed its transport; RESET: the response was cut short. */
void h2_session_stream_closed(struct h2_session *s, struct h2_stream *st, bool reset);
/* ST failed while its conn waits on its upstream, not reading: end that
 * conn (a reset stream must not keep an upstream busy: rapid reset). */
void h2_stream_abort_conn(struct h2_stream *st);
/* N bytes of request body were read by ST's conn: open its window. */
void h2_session_consumed(struct h2_session *s, struct h2_stream *st, size_t n);

#endif
