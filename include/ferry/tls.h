/* tls: OpenSSL contexts made from a config, once per generation.
 *
 * A config only names files; tls_set_load() reads them, checks them (the
 * file is readable, the PEM holds a certificate, the key matches it, it has
 * not expired) and builds the contexts every worker shares:
 *   - per TLS listener, one SSL_CTX per certificate; the first is the
 *     default and the SNI callback switches to the one whose names match
 *     the requested host (exact beats wildcard, longer wildcard wins);
 *   - per upstream with `tls = on`, one client SSL_CTX (CA store, verify).
 * A generation owns its tls_set; SSL objects hold a reference on their
 * SSL_CTX, so a reload frees the old set while old connections finish.
 *
 * Session tickets of every listener and every generation are sealed with
 * one process-wide key ring (tls_tickets_*): all workers resume each
 * other's sessions, a reload keeps them valid, and the keys rotate on the
 * main loop with the previous key still accepted. No server-side session
 * cache exists, so nothing grows per connection. */
#ifndef FERRY_TLS_H
#define FERRY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

struct config;
struct config_errors;
struct config_listener;
struct config_upstream;
struct localca;

typedef struct ssl_ctx_st SSL_CTX;

/* One `tls_cert` line, loaded. */
struct tls_cert {
    SSL_CTX *ctx;     /* a server context serving this certificate */
    char **names;     /* DNS names from subjectAltName (or the CN), lower case */
    size_t nnames;
    time_t not_after; /* expiry, seconds since the epoch */
    const char *file; /* the certificate file, as configured (config-owned) */
    int line;         /* line of its `tls_cert` key */
};

struct tls_server {
    SSL_CTX *ctx;           /* handshakes start here: certs[0].ctx, or auto_ctx */
    struct tls_cert *certs; /* tls_cert: at least one, certs[0] is the default;
                             * tls_auto: none */
    size_t ncerts;
    const char *listener;   /* the listener's name (config-owned) */
    const struct config_listener *lcfg; /* its config (`alpn`; config-owned) */
    /* tls_auto = internal: leaves from CA for the names the routes of the
     * listener serve (HOSTS: exact names and "*.suffix", config-owned) */
    struct localca *ca;     /* tls_auto = internal: one reference; NULL after a -t or
                             * --explain load, which opens no CA */
    bool internal;          /* tls_auto = internal */
    bool acme;              /* tls_auto = acme: certificates from the ACME store */
    SSL_CTX *auto_ctx;      /* no certificate of its own: the SNI callback sets one */
    const char **hosts;
    size_t nhosts;
};

struct tls_client {
    SSL_CTX *ctx;
    bool verify;     /* tls_verify */
    const char *sni; /* tls_sni, or NULL: the server's host name (config-owned) */
};

struct tls_set {
    struct tls_server **listeners; /* per cfg->listeners entry; NULL: plain */
    struct tls_client **upstreams; /* per cfg->upstreams entry; NULL: plain */
    size_t nlisteners, nupstreams;
};

/* Loads every certificate and builds every context of CFG. Returns the set
 * (empty arrays of NULLs when nothing uses TLS), or NULL with each problem
 * appended to ERRS as "FILE:LINE: message". Warns (log_warn) about
 * certificates that expire within 7 days and about tls_verify = off.
 * tls_auto = internal opens (or makes, printing how to trust it) the local
 * CA in state_dir; with TLS_LOAD_CHECK (ferry -t) nothing is written and
 * only whether state_dir could be written is checked. */
#define TLS_LOAD_CHECK 1u
struct tls_set *tls_set_load(const struct config *cfg, struct config_errors *errs,
                             unsigned flags);
void tls_set_free(struct tls_set *set);

/* The certificate a handshake for HOST (NULL: no SNI) gets; NULL on a
 * tls_auto listener, which has no configured certificates. */
const struct tls_cert *tls_server_pick(const struct tls_server *srv, const char *host);

/* tls_auto: whether a route of the listener serves NAME (no port, any
 * case), so that it may have a certificate. */
bool tls_server_serves(const struct tls_server *srv, const char *name);

/* The ticket key ring: start once on the main loop before any handshake;
 * rotate() makes a new current key and keeps one previous key. */
void tls_tickets_start(uv_loop_t *loop);
void tls_tickets_rotate(void);
void tls_tickets_stop(void);

/* Why a handshake failed, as counted in
 * ferry_tls_handshake_errors_total{listener,reason}. */
enum tls_fail_reason {
    TLS_FAIL_PROTOCOL = 0, /* no common version, or not TLS at all */
    TLS_FAIL_HTTP,         /* plain HTTP sent to a TLS port */
    TLS_FAIL_CIPHER,       /* no shared cipher or group */
    TLS_FAIL_MESSAGE,      /* a malformed or unexpected handshake message */
    TLS_FAIL_CERTIFICATE,  /* the peer refused our certificate (alert) */
    TLS_FAIL_EOF,          /* the peer closed mid-handshake */
    TLS_FAIL_TIMEOUT,      /* header_timeout ran out mid-handshake */
    TLS_FAIL_UNKNOWN_NAME, /* tls_auto: no route serves the name asked for */
    TLS_FAIL_OTHER,
    TLS_FAIL_REASONS,
};
extern const char *const tls_fail_names[TLS_FAIL_REASONS];

#endif
