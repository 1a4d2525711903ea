/* transport_tls: the TLS implementation of the transport contract
 * (transport.h), with OpenSSL over a libuv stream.
 *
 * Ciphertext never sits in a per-connection buffer while a connection is
 * idle: what the socket delivers is read into a pool block, handed to
 * OpenSSL through a small BIO, and the block goes back as soon as OpenSSL
 * has taken it; what OpenSSL writes goes to one per-worker scratch buffer
 * and straight to uv_try_write, and only what the kernel does not take at
 * once is copied into a write request. With SSL_MODE_RELEASE_BUFFERS an
 * idle TLS connection holds its SSL object and nothing else.
 *
 * The handshake runs by itself: the socket is read while it lasts, whoever
 * reads the transport first sees decrypted bytes, and writes made before
 * it ends (a client's request head) wait in order and go out after it. A
 * reader that stops in the middle of a decrypted record gets the rest from
 * the worker's idle handle after read_start, never from inside read_start.
 * A failed handshake ends reading with UV_EPROTO (writes waiting get it
 * too); transport_tls_error() then says why in words a 502 may carry. */
#ifndef FERRY_TRANSPORT_TLS_H
#define FERRY_TRANSPORT_TLS_H

#include <stdbool.h>
#include <uv.h>

#include "ferry/buffer.h"
#include "ferry/stats.h"
#include "ferry/transport.h"
#include "ferry/util.h"

struct tls_server;
struct tls_client;
typedef struct ssl_session_st SSL_SESSION;

/* What every TLS transport on one loop shares. */
struct tls_worker {
    uv_loop_t *loop;
    struct buffer_pool *pool;   /* ciphertext read blocks */
    uv_idle_t idle;             /* runs deferred deliveries */
    struct list_node deferred;  /* transports with decrypted bytes for a reader */
    char *out;                  /* ciphertext of the OpenSSL call in progress */
    size_t out_len, out_cap;
};

void tls_worker_init(struct tls_worker *tw, uv_loop_t *loop, struct buffer_pool *pool);
/* Closes the idle handle; the loop must then run once more. */
void tls_worker_close(struct tls_worker *tw);
/* The same, with CB run on the idle handle once it has closed (when TW's
 * memory may go). */
void tls_worker_close_then(struct tls_worker *tw, uv_close_cb cb);

/* A server-side TLS transport on STREAM (initialised, not moving).
 * FAILS, when not NULL, counts failed handshakes by tls_fail_reason.
 * BLOCK, when not NULL, is a pool block whose LEN bytes at OFF arrived
 * before the transport began (after a PROXY header): the transport takes
 * it. Returns 0, or UV_ENOMEM with T and BLOCK untouched. */
int transport_tls_server_init(struct transport *t, uv_stream_t *stream, struct tls_worker *tw,
                              const struct tls_server *srv, stat_t *fails, char *block,
                              size_t off, size_t len) FERRY_MUSTCHECK;

/* A client-side TLS transport to HOST (the name sent as SNI unless it is an
 * IP address, and the name the certificate must carry when verifying).
 * SESSION, when not NULL, is where the last session for this server is
 * kept (tried on this connection, replaced by new tickets); free it with
 * tls_session_free(). */
/* STREAM must be connected: the ClientHello goes out at once. READY runs
 * once, when the handshake is done (0) or has failed (a UV_E* code;
 * transport_tls_error() says why); the transport may be closed in it. */
typedef void (*transport_tls_ready_cb)(struct transport *t, int status);
int transport_tls_client_init(struct transport *t, uv_stream_t *stream, struct tls_worker *tw,
                              const struct tls_client *cli, const char *host,
                              SSL_SESSION **session, transport_tls_ready_cb ready) FERRY_MUSTCHECK;

void tls_session_free(SSL_SESSION *s);

/* Called once on each client SSL_CTX (tls.c) so that sessions reach the
 * slot a client transport was given. */
typedef struct ssl_ctx_st SSL_CTX;
void transport_tls_client_ctx_prepare(SSL_CTX *ctx);

bool transport_is_tls(const struct transport *t);
/* Why a TLS transport failed ("certificate verify failed", ...), or NULL. */
const char *transport_tls_error(const struct transport *t);
/* The negotiated protocol version ("TLSv1.3") and whether the session was
 * resumed; for tests and the debug log. */
const char *transport_tls_version(const struct transport *t);
bool transport_tls_resumed(const struct transport *t);
/* True when ALPN chose h2 (known once the handshake is done). */
bool transport_tls_alpn_h2(const struct transport *t);

#endif
