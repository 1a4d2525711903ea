/* echo.c - --tcp-echo: every byte read is written back.
 *
 * Each read lands in its own block, which becomes the write request for the
 * same bytes and returns to a small free list when written. Reading stops
 * while more than ECHO_HIGH bytes wait in the kernel-refused write queue and
 * resumes below ECHO_LOW, so a client that sends without reading costs at
 * most ECHO_HIGH plus one block. On the client's EOF the pending writes
 * finish, then we shut down our side and close. */
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ECHO_BLOCK    (64 * 1024)
#define ECHO_HIGH     (1024 * 1024)
#define ECHO_LOW      (256 * 1024)
#define ECHO_FREE_MAX 64 /* blocks kept for reuse */

struct echo_conn {
    union {
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;                           /* the client socket */
    uv_shutdown_t sreq;            /* our FIN after the client's */
    struct echo_conn *prev, *next; /* every live echo conn */
    unsigned inflight;             /* writes not yet called back */
    unsigned closing : 1;          /* uv_close issued */
    unsigned paused : 1;           /* reading stopped for backpressure */
    unsigned eof : 1;              /* the client shut its side */
    unsigned shutting : 1;         /* uv_shutdown issued */
};

struct echo_block {
    uv_write_t req;          /* the write of data; req.data = the conn */
    struct echo_block *next; /* free list link */
    char data[ECHO_BLOCK];   /* bytes read, then written back */
};

static struct echo_conn *g_echo_conns;
static struct echo_block *g_free_blocks;
static unsigned g_free_count;

static void echo_close(struct echo_conn *e);
static void echo_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void echo_block_put(struct echo_block *b) {
    if (g_free_count >= ECHO_FREE_MAX || g_up.stopping) {
        free(b);
        return;
    }
    b->next = g_free_blocks;
    g_free_blocks = b;
    g_free_count++;
}

static void echo_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    struct echo_block *b = g_free_blocks;
    (void)h;
    (void)hint;
    if (b) {
        g_free_blocks = b->next;
        g_free_count--;
    } else if ((b = malloc(sizeof *b)) == NULL) {
        *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
        return;
    }
    *buf = uv_buf_init(b->data, sizeof b->data);
}

static void echo_on_shutdown(uv_shutdown_t *req, int status) {
    (void)status;
    echo_close(container_of(req, struct echo_conn, sreq));
}

/* All echoed and the client is done: our FIN, then close. */
static void echo_maybe_finish(struct echo_conn *e) {
    if (!e->eof || e->inflight > 0 || e->shutting || e->closing) return;
    e->shutting = 1;
    if (uv_shutdown(&e->sreq, &e->h.stream, echo_on_shutdown) < 0) echo_close(e);
}

static void echo_on_write(uv_write_t *req, int status) {
    struct echo_conn *e = req->data;
    echo_block_put(container_of(req, struct echo_block, req));
    e->inflight--;
    if (e->closing) return;
    if (status < 0) {
        echo_close(e);
        return;
    }
    if (e->paused && e->h.stream.write_queue_size < ECHO_LOW) {
        e->paused = 0;
        if (!e->eof && uv_read_start(&e->h.stream, echo_on_alloc, echo_on_read) < 0) {
            echo_close(e);
            return;
        }
    }
    echo_maybe_finish(e);
}

static void echo_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    struct echo_conn *e = s->data;
    struct echo_block *b = buf->base ? container_of(buf->base, struct echo_block, data) : NULL;
    if (nread <= 0) {
        if (b) echo_block_put(b);
        if (nread == UV_EOF) {
            e->eof = 1;
            uv_read_stop(s);
            echo_maybe_finish(e);
        } else if (nread < 0) {
            echo_close(e);
        }
        return;
    }
    uv_buf_t out = uv_buf_init(b->data, (unsigned)nread);
    b->req.data = e;
    if (uv_write(&b->req, s, &out, 1, echo_on_write) < 0) {
        echo_block_put(b);
        echo_close(e);
        return;
    }
    e->inflight++;
    if (s->write_queue_size >= ECHO_HIGH) {
        uv_read_stop(s);
        e->paused = 1;
    }
}

void echo_accept(uv_stream_t *server, int is_pipe) {
    struct echo_conn *e = calloc(1, sizeof *e);
    if (e == NULL) {
        fprintf(stderr, "ferry-upstream: out of memory\n");
        abort();
    }
    if (is_pipe)
        uv_pipe_init(g_up.loop, &e->h.pipe, 0);
    else
        uv_tcp_init(g_up.loop, &e->h.tcp);
    e->h.stream.data = e;
    e->next = g_echo_conns;
    if (g_echo_conns) g_echo_conns->prev = e;
    g_echo_conns = e;
    if (uv_accept(server, &e->h.stream) < 0 ||
        uv_read_start(&e->h.stream, echo_on_alloc, echo_on_read) < 0) {
        echo_close(e);
        return;
    }
    g_up.accepted++;
    if (!is_pipe) uv_tcp_nodelay(&e->h.tcp, 1);
}

static void echo_on_close(uv_handle_t *h) {
    struct echo_conn *e = h->data;
    if (e->prev)
        e->prev->next = e->next;
    else
        g_echo_conns = e->next;
    if (e->next) e->next->prev = e->prev;
    free(e);
}

static void echo_close(struct echo_conn *e) {
    if (e->closing) return;
    e->closing = 1;
    uv_close((uv_handle_t *)&e->h.stream, echo_on_close);
}

/* Closes every connection and empties the block free list. */
void echo_close_all(void) {
    for (struct echo_conn *e = g_echo_conns; e; e = e->next)
        echo_close(e);
    while (g_free_blocks) {
        struct echo_block *b = g_free_blocks;
        g_free_blocks = b->next;
        free(b);
    }
    g_free_count = 0;
}
