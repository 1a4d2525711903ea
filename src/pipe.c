/* pipe: one direction of a byte relay; see pipe.h for the contract.
 *
 * Every read buffer is a pool block with TRANSPORT_HEADROOM bytes in front
 * for the write that may carry it (transport_send), so forwarding costs no
 * allocation. The common case on a fast peer is the transport taking all
 * bytes at once: the block goes straight back to the pool and nothing is
 * queued. */
#include "ferry/pipe.h"

#include <assert.h>

#include "ferry/buffer.h"
#include "ferry/transport.h"

static void pipe_alloc(struct transport *t, uv_buf_t *out);
static void pipe_on_read(struct transport *t, ssize_t nread, const uv_buf_t *buf);
static void pipe_on_write(void *owner, uint8_t tag, int status);
static void pipe_on_shutdown(uv_shutdown_t *req, int status);

static char *pipe_block_of(const uv_buf_t *buf) {
    return buf->base ? buf->base - TRANSPORT_HEADROOM : NULL;
}

void pipe_init(struct pipe_dir *d, struct transport *src, struct transport *dst,
               struct buffer_pool *pool, pipe_event_cb on_event, void *owner) {
    *d = (struct pipe_dir){.src = src, .dst = dst, .pool = pool, .on_event = on_event,
                           .owner = owner, .state = PIPE_IDLE};
}

static const struct transport_reader pipe_reader = {pipe_alloc, pipe_on_read};

/* Makes this direction src's reader and reads. */
static int pipe_read(struct pipe_dir *d) {
    d->src->data = d;
    return transport_read_start(d->src, &pipe_reader);
}

int pipe_start(struct pipe_dir *d) {
    assert(d->state == PIPE_IDLE);
    d->last_active = uv_now(d->src->stream->loop);
    int err = pipe_read(d);
    if (err == 0) d->state = PIPE_READING;
    return err;
}

void pipe_stop(struct pipe_dir *d) {
    if (d->state == PIPE_READING) transport_read_stop(d->src);
    d->state = PIPE_FINISHED;
}

/* Reports EV once and ends the pipe; the owner may free nothing yet (see
 * pipe.h) but may close both transports from inside the callback. */
static void pipe_finish(struct pipe_dir *d, enum pipe_event ev, int err) {
    if (d->state == PIPE_FINISHED) return;
    if (d->state == PIPE_READING) transport_read_stop(d->src);
    d->state = PIPE_FINISHED;
    d->on_event(d, ev, err);
}

static void pipe_alloc(struct transport *t, uv_buf_t *out) {
    struct pipe_dir *d = t->data;
    char *block = buffer_get(d->pool);
    if (!block) {
        *out = uv_buf_init(NULL, 0); /* reported to the read callback as UV_ENOBUFS */
        return;
    }
    *out = uv_buf_init(transport_block_data(block), (unsigned)TRANSPORT_BLOCK_DATA_SIZE);
}

static void pipe_on_read(struct transport *t, ssize_t nread, const uv_buf_t *buf) {
    struct pipe_dir *d = t->data;
    char *block = pipe_block_of(buf);
    if (nread <= 0 || d->state != PIPE_READING) {
        buffer_put(d->pool, block);
        if (nread == 0 || d->state != PIPE_READING) return;
        if (nread != UV_EOF) {
            pipe_finish(d, PIPE_ERROR, (int)nread);
            return;
        }
        /* Reading has stopped; pass the half-close on once queued writes
         * are out (a shutdown waits for them). */
        d->state = PIPE_SHUTTING;
        int err = transport_shutdown(d->dst, &d->shutdown_req, pipe_on_shutdown);
        if (err < 0) pipe_finish(d, PIPE_ERROR, err);
        return;
    }
    d->bytes += (uint64_t)nread;
    d->last_active = uv_now(t->stream->loop);
    int r = transport_send(d->dst, d->pool, block, buf->base, (size_t)nread, false, pipe_on_write,
                           d, 0);
    if (r < 0) {
        pipe_finish(d, PIPE_ERROR, r);
        return;
    }
    d->writes += (unsigned)r;
    /* Bytes bound the queue, and so does the count of blocks: many tiny
     * reads would otherwise pin a 64 KiB block each under the byte mark. */
    if (transport_queued(d->dst) >= PIPE_HIGH_WATER || d->writes >= PIPE_MAX_WRITES) {
        transport_read_stop(d->src);
        d->state = PIPE_WAIT_PEER;
    }
}

static void pipe_on_write(void *owner, uint8_t tag, int status) {
    FERRY_UNUSED(tag);
    struct pipe_dir *d = owner;
    d->writes--;
    if (status == UV_ECANCELED) return; /* the owner is closing the transports */
    if (status < 0) {
        pipe_finish(d, PIPE_ERROR, status);
        return;
    }
    if (d->state != PIPE_WAIT_PEER || transport_queued(d->dst) > PIPE_LOW_WATER ||
        d->writes >= PIPE_MAX_WRITES / 2)
        return;
    int err = pipe_read(d);
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
