/* conn: a downstream (client) connection, from accept to its one close.
 * See the model comment at the top of conn.c. */
#ifndef FERRY_CONN_H
#define FERRY_CONN_H

struct listener;
struct worker_ctx;

#include <stddef.h>

#include "ferry/util.h"

/* Sizes of a connection and of an HTTP exchange (the worker's slab pools). */
size_t conn_object_size(void);
size_t conn_exchange_size(void);

/* Accepts one pending connection from L's handle and starts serving it.
 * Returns 0 once the socket is accepted (served, or refused and closed), or
 * UV_ENOMEM when there was no memory to even accept it: the connection is
 * still pending then, and the caller must take it off the listener. */
int conn_accept(struct listener *l) FERRY_MUSTCHECK;

/* Closes every connection of CTX (shutdown timeout reached). */
void conn_close_all(struct worker_ctx *ctx, const char *why);

/* Closes CTX's keep-alive connections that wait for their next request
 * (draining); busy ones end after their response, which says Connection:
 * close, and so do new ones that have not sent their first request yet
 * (bounded by header_timeout): it is most likely on its way. */
void conn_close_idle(struct worker_ctx *ctx);
/* After a reload: HTTP/2 connections send GOAWAY and end once their open
 * streams have, so that clients come back under the new config. */
void conn_after_reload(struct worker_ctx *ctx);

#endif
