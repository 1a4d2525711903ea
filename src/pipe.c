/* pipe: one direction of a byte relay; see pipe.h for the contract.
 *
 * Every read buffer is a pool buffer whose first bytes hold the write
 * request that may carry it (struct pipe_write), so forwarding costs no
 * allocation. The common case on a fast peer is uv_try_write taking all
 * bytes at once: the buffer goes straight back to the pool and no request
 * is queued. Only the rest of a partial write is queued with uv_write. */
#include "ferry/pipe.h"

#include <assert.h>

#include "ferry/buffer.h"

struct pipe_write {
    uv_write_t req;
    struct pipe_dir *dir;
};

/* Keep the data area aligned the way malloc would have aligned it. */
#define PIPE_HEADER_SIZE ((sizeof(struct pipe_write) + 63) & ~(size_t)63)

static void pipe_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out);
static void pipe_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void pipe_on_write(uv_write_t *req, int status);
static void pipe_on_shutdown(uv_shutdown_t *req, int status);

static char *pipe_block_of(const uv_buf_t *buf) {
    return buf->base ? buf->base - PIPE_HEADER_SIZE : NULL;
}

void pipe_init(struct pipe_dir *d, uv_stream_t *src, uv_stream_t *dst, struct buffer_pool *pool,
               pipe_event_cb on_event, void *owner) {
    *d = (struct pipe_dir){.src = src, .dst = dst, .pool = pool, .on_event = on_event,
                           .owner = owner, .state = PIPE_IDLE};
}

int pipe_start(struct pipe_dir *d) {
    assert(d->state == PIPE_IDLE);
    /* src->data lets the read callback find this direction. */
    d->src->data = d;
    d->last_active = uv_now(d->src->loop);
    int err = uv_read_start(d->src, pipe_alloc, pipe_on_read);
    if (err == 0) d->state = PIPE_READING;
    return err;
}

void pipe_stop(struct pipe_dir *d) {
    if (d->state == PIPE_READING) uv_read_stop(d->src);
    d->state = PIPE_FINISHED;
}

/* Reports EV once and ends the pipe; the owner may free nothing yet (see
 * pipe.h) but may close both streams from inside the callback. */
static void pipe_finish(struct pipe_dir *d, enum pipe_event ev, int err) {
    if (d->state == PIPE_FINISHED) return;
    if (d->state == PIPE_READING) uv_read_stop(d->src);
    d->state = PIPE_FINISHED;
    d->on_event(d, ev, err);
}

static void pipe_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
    FERRY_UNUSED(suggested);
    struct pipe_dir *d = h->data;
    char *block = buffer_get(d->pool);
    if (!block) {
        *out = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS to the read callback */
        return;
    }
    ((struct pipe_write *)(void *)block)->dir = d;
    *out = uv_buf_init(block + PIPE_HEADER_SIZE, (unsigned)(BUFFER_SIZE - PIPE_HEADER_SIZE));
}

/* Writes LEN bytes at DATA (inside BLOCK) to dst. Takes ownership of BLOCK. */
static int pipe_forward(struct pipe_dir *d, char *block, char *data, size_t len) {
    uv_buf_t b = uv_buf_init(data, (unsigned)len);
    int n = uv_try_write(d->dst, &b, 1);
    if (n == (int)len) {
        buffer_put(d->pool, block);
        return 0;
    }
    if (n < 0 && n != UV_EAGAIN) {
        buffer_put(d->pool, block);
        return n;
    }
    if (n > 0) b = uv_buf_init(data + n, (unsigned)(len - (size_t)n));
    struct pipe_write *pw = (struct pipe_write *)(void *)block;
    pw->dir = d;
    int err = uv_write(&pw->req, d->dst, &b, 1, pipe_on_write);
    if (err < 0) {
        buffer_put(d->pool, block);
        return err;
    }
    d->writes++;
    return 0;
}

static void pipe_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    struct pipe_dir *d = s->data;
    char *block = pipe_block_of(buf);
    if (nread <= 0 || d->state != PIPE_READING) {
        buffer_put(d->pool, block);
        if (nread == 0 || d->state != PIPE_READING) return;
        if (nread != UV_EOF) {
            pipe_finish(d, PIPE_ERROR, (int)nread);
            return;
        }
        /* libuv has stopped reading; pass the half-close on once queued
         * writes are out (uv_shutdown waits for them). */
        d->state = PIPE_SHUTTING;
        int err = uv_shutdown(&d->shutdown_req, d->dst, pipe_on_shutdown);
        if (err < 0) pipe_finish(d, PIPE_ERROR, err);
        return;
    }
    d->bytes += (uint64_t)nread;
    d->last_active = uv_now(s->loop);
    int err = pipe_forward(d, block, buf->base, (size_t)nread);
    if (err < 0) {
        pipe_finish(d, PIPE_ERROR, err);
        return;
    }
    /* Bytes bound the queue, and so does the count of blocks: many tiny
     * reads would otherwise pin a 64 KiB block each under the byte mark. */
    if (d->dst->write_queue_size >= PIPE_HIGH_WATER || d->writes >= PIPE_MAX_WRITES) {
        uv_read_stop(d->src);
        d->state = PIPE_WAIT_PEER;
    }
}

static void pipe_on_write(uv_write_t *req, int status) {
    struct pipe_write *pw = container_of(req, struct pipe_write, req);
    struct pipe_dir *d = pw->dir;
    buffer_put(d->pool, (char *)pw);
    d->writes--;
    if (status == UV_ECANCELED) return; /* the owner is closing the streams */
    if (status < 0) {
        pipe_finish(d, PIPE_ERROR, status);
        return;
    }
    if (d->state != PIPE_WAIT_PEER || d->dst->write_queue_size > PIPE_LOW_WATER ||
        d->writes >= PIPE_MAX_WRITES / 2)
        return;
    int err = uv_read_start(d->src, pipe_alloc, pipe_on_read);
    if (err < 0) {
        pipe_finish(d, PIPE_ERROR, err);
        return;
    }
    d->state = PIPE_READING;
}

static void pipe_on_shutdown(uv_shutdown_t *req, int status) {
    struct pipe_dir *d = container_of(req, struct pipe_dir, shutdown_req);
    if (status == UV_ECANCELED || d->state != PIPE_SHUTTING) return;
    if (status < 0)
        pipe_finish(d, PIPE_ERROR, status);
    else
        pipe_finish(d, PIPE_DONE, 0);
}
