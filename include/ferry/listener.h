/* listener: listening sockets and accepting from them.
 *
 * The sockets are created, bound and put into listen state on the main
 * thread before any worker starts (listener_open), so a bind failure is a
 * start-up error with a clear message and exit 1. Each worker then wraps its
 * own descriptor in a libuv handle (listener_start): TCP listeners get one
 * socket per worker on the same address with SO_REUSEPORT, so the kernel
 * spreads connections over the workers without a shared accept lock; unix
 * listeners share one socket (dup'ed per worker). */
#ifndef FERRY_LISTENER_H
#define FERRY_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "ferry/util.h"

struct config_listener;
struct worker_ctx;
struct stats_node;

struct listener {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } h;                                /* the listening handle */
    const struct config_listener *cfg;  /* what it is; replaced on reload (same address) */
    struct worker_ctx *ctx;             /* the worker that owns it */
    struct stats_node *stats;           /* the owner's counters for this listener's name */
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } reject;                           /* takes a connection there is no memory for, to close it */
    int handles;                        /* handles whose close callback is still to come */
    bool open;                          /* handle initialised and not closed */
    bool rejecting;                     /* `reject` is in use (closing) */
    bool reject_waiting;                /* a connection came while it was: accept it next */
};

/* Creates NWORKERS listening descriptors for CL into FDS. On failure returns
 * a UV_E* code, closes what it opened, and writes a message such as
 * "listener web: bind 0.0.0.0:80: permission denied" into ERR. */
int listener_open(const struct config_listener *cl, unsigned nworkers, int *fds, char *err,
                  size_t errlen) FERRY_MUSTCHECK;

/* The socket address to bind for inet address A: "" (":PORT") is "::",
 * which takes v4 too when bound without IPV6_V6ONLY, or "0.0.0.0" where
 * there is no IPv6; a host name is resolved. The admin endpoint binds with
 * it too, so that an address means the same there. 0 or a UV_E* code. */
struct config_addr;
int listener_resolve(const struct config_addr *a, struct sockaddr_storage *ss,
                     socklen_t *len) FERRY_MUSTCHECK;

/* Wraps FD (ownership passes) in a new listener accepting on CTX's loop.
 * Returns NULL (logged, FD closed) on failure. */
struct listener *listener_start(struct worker_ctx *ctx, const struct config_listener *cl,
                                int fd) FERRY_MUSTCHECK;
/* Stops accepting; the listener is freed once its handle has closed. */
void listener_close(struct listener *l);

/* Removes the socket file of a unix listener (clean exit). */
void listener_unlink(const struct config_listener *cl);

#endif
