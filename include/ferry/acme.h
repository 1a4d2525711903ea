/* acme: certificates for `tls_auto = acme` listeners from an ACME CA
 * (RFC 8555), obtained and renewed on the main loop.
 *
 *   main loop                                  workers
 *   ---------                                  -------
 *   acme.c: the engine, one order at a time    tls.c SNI/ALPN callbacks,
 *     directory, nonce, account, order,          conn_http.c (HTTP-01)
 *     challenge, finalize, download, store        │
 *        │ acme_store_set_*                       │ acme_store_use/_http01/_alpn
 *        ▼                                        ▼
 *   acme_store.c: names, certificates, pending challenges, counters
 *     (one mutex; what workers read is never freed under them: they take
 *     references)
 *
 * Files, in state_dir/acme: account.key, and per name NAME.crt (the chain
 * as the CA sent it) and NAME.key, all 0600. A name with no certificate yet
 * (or whose stored one does not load) gets a self-signed placeholder at
 * the handshake until its order succeeds. */
#ifndef FERRY_ACME_H
#define FERRY_ACME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

struct config;
struct strbuf;
typedef struct ssl_st SSL;
typedef struct x509_st X509;
typedef struct evp_pkey_st EVP_PKEY;
typedef struct stack_st_X509 STACK_OF_X509;

/* ---- the engine (main loop) -------------------------------------------- */

/* Starts the engine on LOOP (idle until acme_adopt gives it names). */
void acme_start(uv_loop_t *loop);
/* The names CFG wants (exact hosts of the routes of tls_auto = acme
 * listeners) and where and how to get them. Names new to the engine are
 * ordered (or loaded from state_dir); names no longer wanted are no longer
 * renewed. Call at start and after each reload. */
void acme_adopt(const struct config *cfg);
/* Cancels what is in flight and closes the engine's handles. */
void acme_stop(void);

/* ---- the store (any thread) -------------------------------------------- */

/* Where a name stands, for /status. */
enum acme_state {
    ACME_PENDING = 0, /* being ordered, or waiting to be */
    ACME_VALID,       /* has its certificate */
    ACME_FAILED,      /* the last order failed and no certificate is there */
    ACME_UNUSED,      /* no route wants it since a reload: not renewed */
};

/* Sets the certificate for NAME on SSL: its own when it has one, else the
 * placeholder. 1 its own, 0 the placeholder, -1 failure. */
int acme_store_use(SSL *ssl, const char *name);
/* The key authorization HTTP-01 must answer for TOKEN (RFC 8555 8.3) into
 * OUT; false when ferry has no such challenge pending. */
bool acme_store_http01(const char *token, char *out, size_t len);
/* TLS-ALPN-01 (RFC 8737): when NAME has a challenge pending, sets its
 * acmeIdentifier certificate on SSL and returns true. */
bool acme_store_alpn(SSL *ssl, const char *name);

/* For the engine. Each takes what it is given (references / copies). */
void acme_store_want(const char *name); /* known, state pending */
void acme_store_set_cert(const char *name, X509 *leaf, STACK_OF_X509 *chain, EVP_PKEY *key);
void acme_store_set_state(const char *name, enum acme_state st, const char *error);
void acme_store_add_http01(const char *token, const char *keyauth);
/* TLS-ALPN-01 for NAME: makes its acmeIdentifier certificate. */
bool acme_store_add_alpn(const char *name, const char *keyauth);
void acme_store_clear_challenges(void);
void acme_store_count(bool ok);
/* NAME's certificate expiry (0: none). */
time_t acme_store_not_after(const char *name);
/* Every name, for the engine's scheduler: calls FN for each. */
void acme_store_each(void (*fn)(const char *name, void *arg), void *arg);

/* JSON for /status: [{"name", "state", "not_after", "last_error"}...] and
 * the orders counters. */
void acme_store_status(struct strbuf *b);
void acme_store_orders(uint64_t *ok, uint64_t *error);

#endif
