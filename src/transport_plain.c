/* transport_plain: the transport of a plain socket, and the block write
 * every transport shares; see transport.h for the contract.
 *
 * Reads go through one pair of trampolines installed once by uv_read_start:
 * they call whatever t->reader says now, so a reader can hand
 * the stream to another reader (the keep-alive pool's EOF watch, an HTTP
 * exchange, a pipe) without a system call. Writes try uv_try_write first:
 * on a peer that keeps up, all bytes leave at once and nothing is queued;
 * only the rest of a partial write goes to uv_write. */
#include "ferry/transport.h"

#include "ferry/buffer.h"

_Static_assert(sizeof(struct transport_send) <= TRANSPORT_HEADROOM, "headroom too small");
_Static_assert(TRANSPORT_HEADROOM % 64 == 0, "data must stay aligned as malloc would");

static void plain_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
    FERRY_UNUSED(suggested);
    struct transport *t = h->data;
    t->reader->alloc(t, out);
}

static void plain_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    struct transport *t = s->data;
    /* libuv stops reading by itself after an EOF or an error (not after
     * UV_ENOBUFS): a later read_start must really start again. */
    if (nread < 0 && nread != UV_ENOBUFS) t->reading = false;
    t->reader->read(t, nread, buf);
}

static int plain_read_start(struct transport *t) {
    if (t->reading) return 0;
    t->stream->data = t;
    int err = uv_read_start(t->stream, plain_alloc, plain_on_read);
    t->reading = err == 0;
    return err;
}

static void plain_read_stop(struct transport *t) {
    if (!t->reading) return;
    uv_read_stop(t->stream);
    t->reading = false;
}

static void plain_on_write(uv_write_t *req, int status) {
    struct transport_write *w = container_of(req, struct transport_write, u.req);
    w->cb(w, status);
}

static int plain_write(struct transport *t, struct transport_write *req, const char *data,
                       size_t len, transport_write_cb cb) {
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write(t->stream, &b, 1);
    if (n == (int)len) return 0;
    if (n < 0 && n != UV_EAGAIN) return n;
    if (n > 0) b = uv_buf_init((char *)data + n, (unsigned)(len - (size_t)n));
    req->t = t;
    req->cb = cb;
    int err = uv_write(&req->u.req, t->stream, &b, 1, plain_on_write);
    return err < 0 ? err : 1;
}

static size_t plain_queued(const struct transport *t) {
    return t->stream->write_queue_size;
}

static int plain_shutdown(struct transport *t, uv_shutdown_t *req, uv_shutdown_cb cb) {
    return uv_shutdown(req, t->stream, cb);
}

static void plain_close(struct transport *t, bool reset, uv_close_cb cb) {
    uv_handle_t *h = (uv_handle_t *)t->stream;
    if (reset && h->type == UV_TCP && uv_tcp_close_reset((uv_tcp_t *)h, cb) == 0) return;
    uv_close(h, cb);
}

static const struct transport_ops transport_plain_ops = {
    .name = "plain",
    .read_start = plain_read_start,
    .read_stop = plain_read_stop,
    .write = plain_write,
    .queued = plain_queued,
    .shutdown = plain_shutdown,
    .close = plain_close,
};

void transport_plain_init(struct transport *t, uv_stream_t *stream) {
    *t = (struct transport){.ops = &transport_plain_ops, .stream = stream};
    stream->data = t;
}

/* --- block writes ------------------------------------------------------ */

static void transport_on_send(struct transport_write *w, int status) {
    struct transport_send *s = container_of(w, struct transport_send, w);
    /* The record lives in the block: copy what DONE needs before the block
     * goes back to the pool (the owner may reuse it at once). */
    transport_send_cb done = s->done;
    void *owner = s->owner;
    uint8_t tag = s->tag;
    if (!s->keep) buffer_put(s->pool, (char *)s);
    done(owner, tag, status);
}

int transport_send(struct transport *t, struct buffer_pool *pool, char *block, const char *data,
                   size_t len, bool keep, transport_send_cb done, void *owner, uint8_t tag) {
    struct transport_send *s = (struct transport_send *)(void *)block;
    int r = transport_write(t, &s->w, data, len, transport_on_send);
    if (r == 1) {
        /* Filled in only when queued (the callback never runs before
         * write() returns): the common all-at-once write stays as cheap as
         * a bare uv_try_write. */
        s->pool = pool;
        s->done = done;
        s->owner = owner;
        s->tag = tag;
        s->keep = keep;
        return 1;
    }
    if (!keep) buffer_put(pool, block);
    return r;
}
