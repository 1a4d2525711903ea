/* tls: contexts from a config, certificate checks, SNI choice, the ticket
 * key ring; see tls.h. Runs on the main thread (load, rotation) except the
 * OpenSSL callbacks, which run on whichever worker does the handshake. */
#include "ferry/tls.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ferry/acme.h"
#include "ferry/config.h"
#include "ferry/localca.h"
#include "ferry/log.h"
#include "ferry/transport_tls.h"
#include "ferry/util.h"

#define TLS_EXPIRY_WARN_S (7 * 86400)
/* A ticket is sealed with the current key and opened with it or the
 * previous one: tickets stay good for one to two rotation periods. */
#define TLS_TICKET_ROTATE_MS (60ull * 60 * 1000)
#define TLS_TICKET_LIFETIME_S 7200

const char *const tls_fail_names[TLS_FAIL_REASONS] = {
    "protocol", "http_request", "no_shared_cipher", "bad_message",
    "certificate", "eof", "timeout", "unknown_name", "other",
};

static const unsigned char tls_sid_ctx[] = "ferry";

/* ---- errors ------------------------------------------------------------ */

static void tls_error(struct config_errors *errs, const char *file, int line, const char *fmt,
                      ...) FERRY_PRINTF(4, 5);
static void tls_error(struct config_errors *errs, const char *file, int line, const char *fmt,
                      ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t n = strlen(file) + strlen(msg) + 32;
    char *item = xmalloc(n);
    snprintf(item, n, "%s:%d: %s", file, line, msg);
    errs->items = xrealloc(errs->items, (errs->count + 1) * sizeof(*errs->items));
    errs->items[errs->count++] = item;
}

/* OpenSSL's reason for the last failure, and the queue emptied. */
static const char *tls_last_reason(void) {
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unknown error";
}

/* Whether PATH can be opened for reading; else a message in MSG. */
static bool tls_file_readable(const char *path, char *msg, size_t len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(msg, len, "cannot read %s: %s", path, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

/* ---- the ticket key ring ----------------------------------------------- */

struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
};

static struct {
    pthread_mutex_t mu;
    struct ticket_key keys[2]; /* [0] seals, both open */
    bool ready;
    uv_timer_t timer;
    bool timer_open;
} ring = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void ticket_key_make(struct ticket_key *k) {
    if (RAND_bytes((unsigned char *)k, sizeof(*k)) != 1) {
        log_error("TLS: no randomness for a session ticket key");
        abort(); /* a predictable key would let anyone forge sessions */
    }
}

/* Under ring.mu. */
static void ring_ready(void) {
    if (ring.ready) return;
    ticket_key_make(&ring.keys[0]);
    ticket_key_make(&ring.keys[1]);
    ring.ready = true;
}

void tls_tickets_rotate(void) {
    pthread_mutex_lock(&ring.mu);
    ring_ready();
    ring.keys[1] = ring.keys[0];
    ticket_key_make(&ring.keys[0]);
    pthread_mutex_unlock(&ring.mu);
}

static void ring_on_timer(uv_timer_t *t) {
    FERRY_UNUSED(t);
    tls_tickets_rotate();
}

void tls_tickets_start(uv_loop_t *loop) {
    pthread_mutex_lock(&ring.mu);
    ring_ready();
    pthread_mutex_unlock(&ring.mu);
    uv_timer_init(loop, &ring.timer);
    uv_timer_start(&ring.timer, ring_on_timer, TLS_TICKET_ROTATE_MS, TLS_TICKET_ROTATE_MS);
    uv_unref((uv_handle_t *)&ring.timer);
    ring.timer_open = true;
}

void tls_tickets_stop(void) {
    if (!ring.timer_open) return;
    ring.timer_open = false;
    uv_close((uv_handle_t *)&ring.timer, NULL);
}

static int ticket_mac_init(EVP_MAC_CTX *hctx, unsigned char *key) {
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, 32),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"sha256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(hctx, params);
}

/* OpenSSL's ticket callback: 1 sealed, 2 opened (OpenSSL then issues a
 * fresh ticket), 0 unknown key (a full handshake), -1 failure. Opening
 * always asks for a fresh ticket: OpenSSL clients use a TLS 1.3 session
 * once, so a client that resumed and got nothing new (ferry towards a
 * ferry, say) would fall back to a full handshake every other time. */
static int on_ticket_key(SSL *ssl, unsigned char name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                         EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc) {
    FERRY_UNUSED(ssl);
    struct ticket_key k;
    int result = 0;
    pthread_mutex_lock(&ring.mu);
    ring_ready();
    if (enc) {
        k = ring.keys[0];
        result = 1;
    } else {
        for (int i = 0; i < 2 && !result; i++)
            if (memcmp(name, ring.keys[i].name, 16) == 0) {
                k = ring.keys[i];
                result = 2;
            }
    }
    pthread_mutex_unlock(&ring.mu);
    if (!result) return 0;
    if (enc) {
        memcpy(name, k.name, 16);
        if (RAND_bytes(iv, 16) != 1) return -1;
        if (EVP_EncryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1) return -1;
    } else if (EVP_DecryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1) {
        return -1;
    }
    if (ticket_mac_init(hctx, k.hmac) != 1) return -1;
    OPENSSL_cleanse(&k, sizeof(k));
    return result;
}

/* ---- certificates ------------------------------------------------------ */

static void names_add(struct tls_cert *c, const unsigned char *data, int len) {
    if (len <= 0 || len > 253 || memchr(data, '\0', (size_t)len)) return;
    char *n = xstrndup((const char *)data, (size_t)len);
    for (char *p = n; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    c->names = xrealloc(c->names, (c->nnames + 1) * sizeof(*c->names));
    c->names[c->nnames++] = n;
}

/* DNS names of X: its subjectAltName entries, or its CN when it has none. */
static void cert_names(struct tls_cert *c, X509 *x) {
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_DNS)
            names_add(c, ASN1_STRING_get0_data(g->d.dNSName), ASN1_STRING_length(g->d.dNSName));
    }
    GENERAL_NAMES_free(sans);
    if (c->nnames) return;
    X509_NAME *subj = X509_get_subject_name(x);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx < 0) return;
    ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
    names_add(c, ASN1_STRING_get0_data(cn), ASN1_STRING_length(cn));
}

static time_t asn1_time_epoch(const ASN1_TIME *t) {
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
    return timegm(&tm);
}

const struct tls_cert *tls_server_pick(const struct tls_server *srv, const char *host) {
    if (!srv->ncerts) return NULL;
    if (!host || !*host) return &srv->certs[0];
    const struct tls_cert *wild = NULL;
    size_t wild_len = 0;
    for (size_t i = 0; i < srv->ncerts; i++) {
        const struct tls_cert *c = &srv->certs[i];
        for (size_t n = 0; n < c->nnames; n++) {
            const char *name = c->names[n];
            if (strcasecmp(name, host) == 0) return c;
            /* "*.example.com" covers exactly one label in front */
            if (name[0] != '*' || name[1] != '.') continue;
            const char *dot = strchr(host, '.');
            size_t suffix = strlen(name + 1);
            if (dot && dot > host && strcasecmp(dot, name + 1) == 0 && suffix > wild_len) {
                wild = c;
                wild_len = suffix;
            }
        }
    }
    return wild ? wild : &srv->certs[0];
}

bool tls_server_serves(const struct tls_server *srv, const char *name) {
    size_t len = strlen(name);
    for (size_t i = 0; i < srv->nhosts; i++) {
        const char *h = srv->hosts[i];
        if (h[0] != '*') {
            if (strcasecmp(h, name) == 0) return true;
            continue;
        }
        /* "*.example.com" serves any name that ends in ".example.com", as
         * the route does (route.c), one label or more in front */
        size_t slen = strlen(h + 1);
        if (len > slen && strcasecmp(name + len - slen, h + 1) == 0) return true;
    }
    return false;
}

/* tls_auto = internal: a leaf from the local CA for the name asked for,
 * set on this connection alone. A name no route serves, or no name at
 * all, gets no certificate: ferry must not become a signing oracle for
 * whatever name a client makes up. The handshake then fails with
 * unrecognized_name and is counted as TLS_FAIL_UNKNOWN_NAME. */
static int servername_internal(SSL *ssl, int *alert, const struct tls_server *srv,
                               const char *host) {
    X509 *cert;
    EVP_PKEY *key;
    if (!host || !srv->ca || !tls_server_serves(srv, host) ||
        localca_leaf(srv->ca, host, time(NULL), &cert, &key) < 0) {
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    int ok = SSL_use_cert_and_key(ssl, cert, key, NULL, 1);
    X509_free(cert);
    EVP_PKEY_free(key);
    if (ok != 1) {
        ERR_clear_error();
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* tls_auto = acme: the name's certificate from the ACME engine, or the
 * self-signed placeholder until it has one (or for a name it does not
 * order), so that the TLS-ALPN-01 validation and curious clients alike
 * complete a handshake. */
static int servername_acme(SSL *ssl, int *alert, const char *host) {
    if (acme_store_use(ssl, host) >= 0) return SSL_TLSEXT_ERR_OK;
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static int on_servername(SSL *ssl, int *alert, void *arg) {
    const struct tls_server *srv = arg;
    const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (srv->internal) return servername_internal(ssl, alert, srv, host);
    if (srv->acme) return servername_acme(ssl, alert, host);
    const struct tls_cert *c = tls_server_pick(srv, host);
    if (c->ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, c->ctx);
    return SSL_TLSEXT_ERR_OK;
}

/* HTTP listeners offer what `alpn` lists, h2 first: a client that offers
 * both gets HTTP/2. A client that offers none of ours goes on without
 * ALPN (HTTP/1.1), as nginx does. On a tls_auto = acme listener a client
 * offering acme-tls/1 for a name with a TLS-ALPN-01 challenge pending is
 * the CA validating it (RFC 8737): it gets the challenge certificate, and
 * the connection carries nothing after the handshake. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg) {
    const struct tls_server *srv = arg;
    const struct config_listener *l = srv->lcfg;
    static const unsigned char both[] = "\x02h2\x08http/1.1";
    static const unsigned char acme[] = "\x0a" "acme-tls/1";
    unsigned char *sel;
    if (srv->acme &&
        SSL_select_next_proto(&sel, outlen, acme, sizeof(acme) - 1, in, inlen) ==
            OPENSSL_NPN_NEGOTIATED &&
        acme_store_alpn(ssl, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name))) {
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
    }
    const unsigned char *ours = both;
    unsigned ours_len = sizeof(both) - 1;
    if (!l->alpn_h2) {
        ours += 3;
        ours_len -= 3;
    } else if (!l->alpn_http1) {
        ours_len = 3;
    }
    if (SSL_select_next_proto(&sel, outlen, ours, ours_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *server_ctx_new(const struct config_listener *l, struct tls_server *srv) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) return NULL;
    SSL_CTX_set_min_proto_version(ctx, l->tls_min);
    SSL_CTX_set_max_proto_version(ctx, l->tls_max);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_COMPRESSION);
    /* Forward secrecy only: ECDHE key exchange, AEAD ciphers (TLS 1.2);
     * TLS 1.3's suites are all AEAD and the groups below are all EC. */
    SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
    SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384");
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_session_id_context(ctx, tls_sid_ctx, sizeof(tls_sid_ctx) - 1);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_timeout(ctx, TLS_TICKET_LIFETIME_S);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, srv);
    if (l->mode == MODE_HTTP) SSL_CTX_set_alpn_select_cb(ctx, on_alpn, srv);
    return ctx;
}

static void cert_free(struct tls_cert *c) {
    SSL_CTX_free(c->ctx);
    for (size_t i = 0; i < c->nnames; i++) free(c->names[i]);
    free(c->names);
}

/* Loads one `tls_cert` line into C; false with errors appended. */
static bool cert_load(const char *file, const struct config_listener *l,
                      const struct config_tls_cert *cc, struct tls_server *srv,
                      struct tls_cert *c, struct config_errors *errs) {
    char msg[512];
    const char *key = cc->key ? cc->key : cc->cert;
    c->file = cc->cert;
    c->line = cc->line;
    if (!tls_file_readable(cc->cert, msg, sizeof(msg)) ||
        (cc->key && !tls_file_readable(cc->key, msg, sizeof(msg)))) {
        tls_error(errs, file, cc->line, "listener %s: tls_cert: %s", l->name, msg);
        return false;
    }
    if (!(c->ctx = server_ctx_new(l, srv))) {
        tls_error(errs, file, cc->line, "listener %s: tls_cert: %s", l->name, tls_last_reason());
        return false;
    }
    if (SSL_CTX_use_certificate_chain_file(c->ctx, cc->cert) != 1) {
        tls_error(errs, file, cc->line, "listener %s: tls_cert: no PEM certificate in %s (%s)",
                  l->name, cc->cert, tls_last_reason());
        return false;
    }
    if (SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            tls_error(errs, file, cc->line,
                      "listener %s: tls_cert: the key in %s does not match the certificate in %s",
                      l->name, key, cc->cert);
        } else {
            tls_error(errs, file, cc->line, "listener %s: tls_cert: no PEM private key in %s (%s)",
                      l->name, key, tls_last_reason());
        }
        return false;
    }
    if (SSL_CTX_check_private_key(c->ctx) != 1) {
        ERR_clear_error();
        tls_error(errs, file, cc->line,
                  "listener %s: tls_cert: the key in %s does not match the certificate in %s",
                  l->name, key, cc->cert);
        return false;
    }
    X509 *x = SSL_CTX_get0_certificate(c->ctx);
    cert_names(c, x);
    c->not_after = asn1_time_epoch(X509_get0_notAfter(x));
    time_t now = time(NULL);
    char when[32];
    struct tm tm;
    gmtime_r(&c->not_after, &tm);
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
    const char *name = c->nnames ? c->names[0] : "(no name)";
    if (c->not_after <= now) {
        tls_error(errs, file, cc->line, "listener %s: tls_cert: %s (%s) expired on %s", l->name,
                  cc->cert, name, when);
        return false;
    }
    if (c->not_after - now < TLS_EXPIRY_WARN_S)
        log_warn("%s:%d: listener %s: certificate %s (%s) expires on %s", file, cc->line,
                 l->name, cc->cert, name, when);
    return true;
}

static void server_free(struct tls_server *srv) {
    if (!srv) return;
    for (size_t i = 0; i < srv->ncerts; i++) cert_free(&srv->certs[i]);
    free(srv->certs);
    SSL_CTX_free(srv->auto_ctx);
    localca_release(srv->ca);
    free(srv->hosts);
    free(srv);
}

/* The hosts of the routes that apply to http listener L: those naming it
 * and those naming no listener. A route without `host` adds nothing: it
 * would make every name a client invents eligible for a certificate. */
static void server_hosts(const struct config *cfg, const struct config_listener *l,
                         struct tls_server *srv) {
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct config_route *r = &cfg->routes[i];
        if (r->listener && r->listener != l) continue;
        srv->hosts = xrealloc(srv->hosts, (srv->nhosts + r->nhosts + 1) * sizeof(*srv->hosts));
        for (size_t h = 0; h < r->nhosts; h++) srv->hosts[srv->nhosts++] = r->hosts[h];
    }
}

static struct tls_server *server_load(const struct config *cfg, const struct config_listener *l,
                                      struct localca *ca, struct config_errors *errs) {
    struct tls_server *srv = xcalloc(1, sizeof(*srv));
    srv->listener = l->name;
    srv->lcfg = l;
    if (l->tls_auto != TLS_AUTO_OFF) {
        server_hosts(cfg, l, srv);
        srv->ca = ca;
        srv->internal = l->tls_auto == TLS_AUTO_INTERNAL;
        srv->acme = l->tls_auto == TLS_AUTO_ACME;
        if (!(srv->ctx = srv->auto_ctx = server_ctx_new(l, srv))) {
            tls_error(errs, cfg->file, l->tls_auto_line, "listener %s: tls_auto: %s", l->name,
                      tls_last_reason());
            server_free(srv);
            return NULL;
        }
        return srv;
    }
    srv->certs = xcalloc(l->ntls_certs, sizeof(*srv->certs));
    bool ok = true;
    for (size_t i = 0; i < l->ntls_certs; i++) {
        ok = cert_load(cfg->file, l, &l->tls_certs[i], srv, &srv->certs[i], errs) && ok;
        srv->ncerts = i + 1;
    }
    srv->ctx = srv->certs[0].ctx;
    if (ok) return srv;
    server_free(srv);
    return NULL;
}

/* ---- upstream contexts ------------------------------------------------- */

static struct tls_client *client_load(const char *file, const struct config_upstream *u,
                                      struct config_errors *errs) {
    char msg[512];
    if (u->tls_ca && !tls_file_readable(u->tls_ca, msg, sizeof(msg))) {
        tls_error(errs, file, u->tls_ca_line, "upstream %s: tls_ca: %s", u->name, msg);
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        tls_error(errs, file, u->tls_line, "upstream %s: tls: %s", u->name, tls_last_reason());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Sessions are kept by the transport, per server and worker. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    transport_tls_client_ctx_prepare(ctx);
    if (u->tls_verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok = u->tls_ca ? SSL_CTX_load_verify_locations(ctx, u->tls_ca, NULL)
                           : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            tls_error(errs, file, u->tls_ca ? u->tls_ca_line : u->tls_line,
                      "upstream %s: %s: %s", u->name, u->tls_ca ? u->tls_ca : "system CAs",
                      tls_last_reason());
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        log_warn("%s:%d: upstream %s: tls_verify = off: its servers' certificates are not "
                 "checked, so anyone on the path can pose as them",
                 file, u->tls_line, u->name);
    }
    struct tls_client *cli = xcalloc(1, sizeof(*cli));
    cli->ctx = ctx;
    cli->verify = u->tls_verify;
    cli->sni = u->tls_sni;
    return cli;
}

static void client_free(struct tls_client *cli) {
    if (!cli) return;
    SSL_CTX_free(cli->ctx);
    free(cli);
}

/* ---- the set ----------------------------------------------------------- */

void tls_set_free(struct tls_set *set) {
    if (!set) return;
    for (size_t i = 0; i < set->nlisteners; i++) server_free(set->listeners[i]);
    for (size_t i = 0; i < set->nupstreams; i++) client_free(set->upstreams[i]);
    free(set->listeners);
    free(set->upstreams);
    free(set);
}

/* The line a state_dir problem is reported at: the key, or when it is not
 * set (the default directory), the first listener that needs it. */
static int state_dir_line(const struct config *cfg) {
    if (cfg->global.state_dir_line) return cfg->global.state_dir_line;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (cfg->listeners[i].tls_auto != TLS_AUTO_OFF) return cfg->listeners[i].tls_auto_line;
    return 0;
}

/* The local CA, when a listener has tls_auto = internal: opened (made the
 * first time, and then how to trust it is printed), or with CHECK only
 * whether state_dir could hold it. Returns whether all went well; *CA is
 * one reference the caller gives to each listener (or drops). */
static bool set_localca(const struct config *cfg, bool check, struct localca **ca,
                        struct config_errors *errs) {
    *ca = NULL;
    bool dir_needed = false, ca_needed = false;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        dir_needed = dir_needed || cfg->listeners[i].tls_auto != TLS_AUTO_OFF;
        ca_needed = ca_needed || cfg->listeners[i].tls_auto == TLS_AUTO_INTERNAL;
    }
    if (!dir_needed) return true;
    char msg[512];
    const struct config_global *g = &cfg->global;
    if (g->acme_ca && !tls_file_readable(g->acme_ca, msg, sizeof(msg))) {
        tls_error(errs, cfg->file, g->acme_ca_line, "acme_ca: %s", msg);
        return false;
    }
    bool created;
    const char *dir = cfg->global.state_dir;
    if (localca_check_dir(dir, msg, sizeof(msg)) < 0 ||
        (!check && ca_needed && !(*ca = localca_open(dir, &created, msg, sizeof(msg))))) {
        tls_error(errs, cfg->file, state_dir_line(cfg), "%s", msg);
        return false;
    }
    if (*ca && created) {
        log_info("made a local CA for tls_auto = internal in %s", dir);
        localca_print_trust(stderr, localca_cert_path(*ca));
    }
    return true;
}

struct tls_set *tls_set_load(const struct config *cfg, struct config_errors *errs,
                             unsigned flags) {
    struct tls_set *set = xcalloc(1, sizeof(*set));
    size_t before = errs->count;
    set->nlisteners = cfg->nlisteners;
    set->nupstreams = cfg->nupstreams;
    set->listeners = xcalloc(cfg->nlisteners + 1, sizeof(*set->listeners));
    set->upstreams = xcalloc(cfg->nupstreams + 1, sizeof(*set->upstreams));
    struct localca *ca;
    bool check = flags & TLS_LOAD_CHECK;
    if (!set_localca(cfg, check, &ca, errs)) {
        tls_set_free(set);
        return NULL;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct config_listener *l = &cfg->listeners[i];
        if (!config_listener_tls(l)) continue;
        /* -t and --explain checked state_dir and opened no CA (ca NULL) */
        if (ca && l->tls_auto == TLS_AUTO_INTERNAL) localca_ref(ca);
        set->listeners[i] = server_load(cfg, l, l->tls_auto == TLS_AUTO_INTERNAL ? ca : NULL, errs);
    }
    localca_release(ca);
    for (size_t i = 0; i < cfg->nupstreams; i++)
        if (cfg->upstreams[i].tls)
            set->upstreams[i] = client_load(cfg->file, &cfg->upstreams[i], errs);
    if (errs->count == before) return set;
    tls_set_free(set);
    return NULL;
}
