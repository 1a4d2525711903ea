/* pipe: a one-way byte pump from one transport to another.
 *
 * A bidirectional relay is two pipes over the same two streams. A pipe
 * knows no protocol: it reads from `src`, writes every byte to `dst` in
 * order, stops reading while dst's queued bytes are above PIPE_HIGH_WATER and
 * resumes below PIPE_LOW_WATER, so a fast sender and a slow receiver cost at
 * most a few buffers per direction. An EOF on src becomes a shutdown of
 * dst's write half (a half-close is passed on, not turned into a close).
 * It reports to its owner through one callback:
 *   PIPE_DONE   src ended and dst's write half is shut: this direction is over
 *   PIPE_ERROR  a read, write or shutdown failed (err is a UV_E* code)
 * The owner closes the transports; writes still queued then complete with
 * UV_ECANCELED before the handles' close callbacks, so a pipe embedded in
 * the owner is valid until those close callbacks have run. While it reads,
 * the pipe is src's reader (src->data points to it). */
#ifndef FERRY_PIPE_H
#define FERRY_PIPE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "ferry/util.h"

struct buffer_pool;
struct transport;

#define PIPE_HIGH_WATER (256 * 1024)
#define PIPE_LOW_WATER (64 * 1024)
#define PIPE_MAX_WRITES 8 /* queued writes (each holds a pool block) per direction */

enum pipe_event { PIPE_DONE, PIPE_ERROR };

/* Why a pipe is not reading right now. */
enum pipe_state {
    PIPE_IDLE = 0,   /* not started */
    PIPE_READING,    /* reading src */
    PIPE_WAIT_PEER,  /* paused: dst's queue is above the high mark, or PIPE_MAX_WRITES */
    PIPE_SHUTTING,   /* src ended; shutdown of dst queued */
    PIPE_FINISHED,   /* done, failed or stopped: no more events */
};

struct pipe_dir;
typedef void (*pipe_event_cb)(struct pipe_dir *d, enum pipe_event ev, int err);

struct pipe_dir {
    struct transport *src;    /* read from here */
    struct transport *dst;    /* write to here */
    struct buffer_pool *pool; /* read buffers come from and return to it */
    pipe_event_cb on_event;   /* the owner's single callback */
    void *owner;              /* for the owner's use */
    enum pipe_state state;    /* the one place that says what the pipe waits for */
    uint64_t bytes;           /* bytes read from src (each is written to dst or the pair dies) */
    uint64_t last_active;     /* uv_now() of the last byte read */
    unsigned writes;          /* queued block writes on dst */
    uv_shutdown_t shutdown_req;
};

void pipe_init(struct pipe_dir *d, struct transport *src, struct transport *dst,
               struct buffer_pool *pool, pipe_event_cb on_event, void *owner);
/* Starts reading src. Returns 0 or a UV_E* code. */
int pipe_start(struct pipe_dir *d) FERRY_MUSTCHECK;
/* The owner is closing: stop reading, report nothing more. Idempotent. */
void pipe_stop(struct pipe_dir *d);

#endif
