/* transport: the byte stream under a connection, as an ops table.
 *
 * Everything above a socket (a downstream conn, an upstream_conn, a pipe)
 * reads and writes through a struct transport instead of a uv_stream_t, so
 * that TLS can be a second implementation of the same table, not `if`s:
 *
 *     conn / exchange / pipe            (readers and writers)
 *            │ transport_read_start / transport_write / ...
 *            ▼
 *     struct transport ── ops ──> plain: uv_read_start, uv_try_write, uv_write
 *            │                    tls (later): decrypt/encrypt around those
 *            ▼
 *     uv_stream_t (tcp or unix), owned by whoever embeds it
 *
 * The contract every implementation keeps:
 * - Reads. read_start delivers bytes to t->reader's alloc and read, with
 *   the meaning of libuv's uv_alloc_cb and uv_read_cb (nread > 0 bytes;
 *   0 nothing, hand the buffer back; < 0 UV_EOF or an error; an empty
 *   buffer from alloc_cb becomes UV_ENOBUFS). The callbacks find their
 *   reader in t->data, which the reader sets. While reading, read_start
 *   again only swaps the callbacks: no system call. `reading` says that
 *   bytes may still come: read_start succeeded, and neither read_stop nor
 *   an EOF or error (which end reading by themselves) came since; a
 *   read_start after those really starts again.
 * - Writes. write either takes all LEN bytes at once (returns 0: REQ is
 *   free again and CB never runs), or queues what it could not take
 *   (returns 1: CB runs exactly once later, with UV_ECANCELED when the
 *   transport was closed first; DATA and REQ stay untouched until then), or
 *   fails (a UV_E* code: nothing queued, CB never runs). Writes go out in
 *   order. queued() is the number of bytes accepted and not yet handed to
 *   the kernel: the measure of backpressure.
 * - Shutdown and close have libuv's meaning. Close callbacks get the uv
 *   handle as libuv gives it, so an owner finds itself with container_of
 *   on its own handle, as before. The handle's memory stays the owner's.
 *
 * The block write (transport_send) is the one way ferry writes a pool
 * block: the write request lives in the block's first TRANSPORT_HEADROOM
 * bytes, so a write costs no allocation and the block goes back to its
 * pool the moment its bytes are out. */
#ifndef FERRY_TRANSPORT_H
#define FERRY_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ferry/buffer.h"
#include "ferry/util.h"

struct transport;
struct transport_write;

/* Like uv_alloc_cb: a buffer for the next read, or an empty one. */
typedef void (*transport_alloc_cb)(struct transport *t, uv_buf_t *out);
/* Like uv_read_cb: nread > 0 bytes, 0 nothing, < 0 UV_EOF or an error.
 * BUF is the one alloc_cb gave, on every call (put it back). */
typedef void (*transport_read_cb)(struct transport *t, ssize_t nread, const uv_buf_t *buf);
typedef void (*transport_write_cb)(struct transport_write *req, int status);

/* Who reads a transport now: a static table per kind of reader, so a
 * transport carries one pointer for it (ten thousand idle connections
 * each carry one). */
struct transport_reader {
    transport_alloc_cb alloc;
    transport_read_cb read;
};

/* A queued write; the caller's memory until its callback has run. */
struct transport_write {
    union {
        uv_write_t req;   /* plain: libuv's request */
        struct {          /* TLS: a write waiting for the handshake */
            const char *data;
            size_t len;
            struct transport_write *next;
        } tls;
    } u;
    struct transport *t;  /* the transport it was queued on */
    transport_write_cb cb; /* runs once, only when write() returned 1 */
};

struct transport_ops {
    const char *name; /* "plain"; "tls" later */
    /* Delivers to t->reader; when already reading only the reader
     * changes. Returns 0 or a UV_E* code. */
    int (*read_start)(struct transport *t);
    void (*read_stop)(struct transport *t);
    /* 0: all LEN bytes taken now; 1: queued, CB runs once later; < 0: a
     * UV_E* code, nothing queued. */
    int (*write)(struct transport *t, struct transport_write *req, const char *data, size_t len,
                 transport_write_cb cb);
    /* Bytes accepted and not yet handed to the kernel. */
    size_t (*queued)(const struct transport *t);
    /* libuv's uv_shutdown semantics (TLS will send close_notify first). */
    int (*shutdown)(struct transport *t, uv_shutdown_t *req, uv_shutdown_cb cb);
    /* Closes the handle; RESET asks for an abortive close (RST) where the
     * stream is TCP, and falls back to an orderly one. */
    void (*close)(struct transport *t, bool reset, uv_close_cb cb);
};

struct transport {
    const struct transport_ops *ops;
    uv_stream_t *stream;         /* the socket under it (owned by the embedder) */
    const struct transport_reader *reader; /* the current reader's callbacks */
    void *data;                  /* the current reader's: its callbacks find it here */
    bool reading;                /* bytes may still come (see the contract above) */
};

/* A plain socket. STREAM must be initialised (uv_tcp_init, uv_pipe_init)
 * and must not move; its `data` now belongs to the transport. */
void transport_plain_init(struct transport *t, uv_stream_t *stream);

static inline int transport_read_start(struct transport *t, const struct transport_reader *r) {
    t->reader = r;
    return t->ops->read_start(t);
}

static inline void transport_read_stop(struct transport *t) {
    t->ops->read_stop(t);
}

static inline int transport_write(struct transport *t, struct transport_write *req,
                                  const char *data, size_t len, transport_write_cb cb) {
    return t->ops->write(t, req, data, len, cb);
}

static inline size_t transport_queued(const struct transport *t) {
    return t->ops->queued(t);
}

static inline int transport_shutdown(struct transport *t, uv_shutdown_t *req, uv_shutdown_cb cb) {
    return t->ops->shutdown(t, req, cb);
}

static inline void transport_close(struct transport *t, bool reset, uv_close_cb cb) {
    t->ops->close(t, reset, cb);
}

/* --- block writes ------------------------------------------------------ */

/* One headroom for every write block: data starts at block +
 * TRANSPORT_HEADROOM, and the first bytes hold a struct transport_send. */
#define TRANSPORT_HEADROOM 256
#define TRANSPORT_BLOCK_DATA_SIZE (BUFFER_SIZE - TRANSPORT_HEADROOM)

static inline char *transport_block_data(char *block) {
    return block + TRANSPORT_HEADROOM;
}

/* Called once when a queued block write ends: OWNER and TAG as given to
 * transport_send, STATUS 0, UV_ECANCELED (closed first) or an error. The
 * block is back in its pool by then, unless it was kept. */
typedef void (*transport_send_cb)(void *owner, uint8_t tag, int status);

/* Lives in a block's headroom while its write is queued. */
struct transport_send {
    struct transport_write w;  /* first: the block's address is this record's */
    struct buffer_pool *pool;  /* where the block goes back */
    transport_send_cb done;    /* the owner's callback */
    void *owner;               /* for DONE */
    uint8_t tag;               /* for DONE: which of the owner's writes this was */
    bool keep;                 /* the owner keeps the block: do not put it back */
};

/* Writes LEN bytes at DATA, which lie inside BLOCK (a pool block of POOL),
 * on T, with the request in BLOCK's headroom; a block carries one write at
 * a time. Returns 0 when all was written now (DONE never runs; BLOCK went
 * back to POOL unless KEEP), 1 when queued (DONE runs once later, after
 * BLOCK went back unless KEEP), or a UV_E* code (DONE never runs; BLOCK
 * went back unless KEEP). */
int transport_send(struct transport *t, struct buffer_pool *pool, char *block, const char *data,
                   size_t len, bool keep, transport_send_cb done, void *owner,
                   uint8_t tag) FERRY_MUSTCHECK;

#endif
