/* acme_store: what the ACME engine has obtained and what it has pending,
 * shared with the workers' handshakes and HTTP-01 answers; see acme.h.
 *
 * One mutex guards it all. Workers take references on certificates and
 * keys under it (SSL_use_cert_and_key takes its own), so the engine may
 * replace a name's certificate while handshakes are using the old one. */
#include "ferry/acme.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ferry/log.h"
#include "ferry/strbuf.h"
#include "ferry/util.h"

#define ACME_STORE_MAX_NAMES      1024 /* names of one config: bounded by its routes */
#define ACME_STORE_MAX_CHALLENGES 64

struct store_name {
    char *name;
    enum acme_state state;
    X509 *leaf;             /* NULL until obtained */
    STACK_OF(X509) * chain; /* intermediates, may be NULL */
    EVP_PKEY *key;
    time_t not_after;
    char error[512]; /* the last failure, "" when none */
};

struct store_challenge {
    char *token;   /* HTTP-01: the token; TLS-ALPN-01: NULL */
    char *keyauth; /* HTTP-01: the answer */
    char *name;    /* TLS-ALPN-01: the name */
    X509 *cert;    /* TLS-ALPN-01: the acmeIdentifier certificate */
    EVP_PKEY *key;
};

static struct {
    pthread_mutex_t mu;
    struct store_name names[ACME_STORE_MAX_NAMES];
    size_t nnames;
    struct store_challenge ch[ACME_STORE_MAX_CHALLENGES];
    size_t nch;
    X509 *placeholder; /* self-signed, made on first use */
    EVP_PKEY *placeholder_key;
    uint64_t orders_ok, orders_error;
} st = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Under st.mu. */
static struct store_name *find(const char *name) {
    for (size_t i = 0; i < st.nnames; i++)
        if (strcasecmp(st.names[i].name, name) == 0) return &st.names[i];
    return NULL;
}

/* A self-signed certificate for NAME on KEY, valid from an hour ago for
 * LIFETIME seconds, with EXT added when not NULL. */
static X509 *self_signed(EVP_PKEY *key, const char *name, long lifetime, X509_EXTENSION *ext) {
    X509 *x = X509_new();
    char san[300];
    snprintf(san, sizeof(san), "DNS:%s", name);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *s = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
    bool ok = x && s && X509_set_version(x, X509_VERSION_3) == 1 &&
              ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL)) == 1 &&
              X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
              X509_gmtime_adj(X509_getm_notAfter(x), lifetime) &&
              X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                         (const unsigned char *)name, -1, -1, 0) == 1 &&
              X509_set_issuer_name(x, X509_get_subject_name(x)) == 1 &&
              X509_set_pubkey(x, key) == 1 && X509_add_ext(x, s, -1) == 1 &&
              (!ext || X509_add_ext(x, ext, -1) == 1) && X509_sign(x, key, EVP_sha256()) > 0;
    X509_EXTENSION_free(s);
    if (ok) return x;
    X509_free(x);
    ERR_clear_error();
    return NULL;
}

/* ---- workers ------------------------------------------------------------ */

int acme_store_use(SSL *ssl, const char *name) {
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    int own = 0;
    pthread_mutex_lock(&st.mu);
    const struct store_name *n = name ? find(name) : NULL;
    if (n && n->leaf) {
        leaf = n->leaf;
        chain = n->chain;
        key = n->key;
        own = 1;
    } else {
        if (!st.placeholder && (st.placeholder_key = EVP_EC_gen("P-256")))
            st.placeholder =
                self_signed(st.placeholder_key, "ferry-certificate-pending", 3650L * 86400, NULL);
        leaf = st.placeholder;
        key = st.placeholder_key;
    }
    /* under the lock: the engine may replace the certificate right after */
    int ok = leaf && key && SSL_use_cert_and_key(ssl, leaf, key, chain, 1) == 1;
    pthread_mutex_unlock(&st.mu);
    if (!ok) ERR_clear_error();
    return ok ? own : -1;
}

bool acme_store_http01(const char *token, char *out, size_t len) {
    bool found = false;
    pthread_mutex_lock(&st.mu);
    for (size_t i = 0; i < st.nch && !found; i++) {
        if (st.ch[i].token && strcmp(st.ch[i].token, token) == 0) {
            snprintf(out, len, "%s", st.ch[i].keyauth);
            found = true;
        }
    }
    pthread_mutex_unlock(&st.mu);
    return found;
}

bool acme_store_alpn(SSL *ssl, const char *name) {
    bool done = false;
    pthread_mutex_lock(&st.mu);
    for (size_t i = 0; name && i < st.nch && !done; i++) {
        const struct store_challenge *c = &st.ch[i];
        if (c->name && strcasecmp(c->name, name) == 0)
            done = SSL_use_cert_and_key(ssl, c->cert, c->key, NULL, 1) == 1;
    }
    pthread_mutex_unlock(&st.mu);
    ERR_clear_error();
    return done;
}

/* ---- the engine --------------------------------------------------------- */

void acme_store_want(const char *name) {
    pthread_mutex_lock(&st.mu);
    if (!find(name) && st.nnames < ACME_STORE_MAX_NAMES)
        st.names[st.nnames++] = (struct store_name){.name = xstrdup(name), .state = ACME_PENDING};
    pthread_mutex_unlock(&st.mu);
}

void acme_store_set_cert(const char *name, X509 *leaf, STACK_OF(X509) * chain, EVP_PKEY *key) {
    pthread_mutex_lock(&st.mu);
    struct store_name *n = find(name);
    if (n) {
        X509_free(n->leaf);
        sk_X509_pop_free(n->chain, X509_free);
        EVP_PKEY_free(n->key);
        n->leaf = leaf;
        n->chain = chain;
        n->key = key;
        struct tm tm;
        n->not_after = ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &tm) == 1 ? timegm(&tm) : 0;
        n->state = ACME_VALID;
        n->error[0] = '\0';
    } else {
        X509_free(leaf);
        sk_X509_pop_free(chain, X509_free);
        EVP_PKEY_free(key);
    }
    pthread_mutex_unlock(&st.mu);
}

void acme_store_set_state(const char *name, enum acme_state s, const char *error) {
    pthread_mutex_lock(&st.mu);
    struct store_name *n = find(name);
    if (n) {
        /* a failed renewal leaves a valid certificate serving */
        if (!(s == ACME_FAILED && n->leaf)) n->state = s;
        if (error) snprintf(n->error, sizeof(n->error), "%s", error);
    }
    pthread_mutex_unlock(&st.mu);
}

void acme_store_add_http01(const char *token, const char *keyauth) {
    pthread_mutex_lock(&st.mu);
    if (st.nch < ACME_STORE_MAX_CHALLENGES)
        st.ch[st.nch++] =
            (struct store_challenge){.token = xstrdup(token), .keyauth = xstrdup(keyauth)};
    pthread_mutex_unlock(&st.mu);
}

/* The acmeIdentifier extension (RFC 8737 3): critical, its value the DER
 * OCTET STRING of SHA-256(key authorization). */
static X509_EXTENSION *acme_identifier(const char *keyauth) {
    unsigned char der[2 + 32];
    unsigned int n = 0;
    der[0] = 0x04; /* OCTET STRING */
    der[1] = 32;
    if (EVP_Digest(keyauth, strlen(keyauth), der + 2, &n, EVP_sha256(), NULL) != 1) return NULL;
    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    ASN1_OCTET_STRING *v = ASN1_OCTET_STRING_new();
    X509_EXTENSION *e = oid && v && ASN1_OCTET_STRING_set(v, der, sizeof(der)) == 1
                            ? X509_EXTENSION_create_by_OBJ(NULL, oid, 1, v)
                            : NULL;
    ASN1_OBJECT_free(oid);
    ASN1_OCTET_STRING_free(v);
    return e;
}

bool acme_store_add_alpn(const char *name, const char *keyauth) {
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509_EXTENSION *ext = key ? acme_identifier(keyauth) : NULL;
    X509 *cert = ext ? self_signed(key, name, 7 * 86400, ext) : NULL;
    X509_EXTENSION_free(ext);
    pthread_mutex_lock(&st.mu);
    bool ok = cert && st.nch < ACME_STORE_MAX_CHALLENGES;
    if (ok) {
        st.ch[st.nch++] = (struct store_challenge){.name = xstrdup(name), .cert = cert, .key = key};
    }
    pthread_mutex_unlock(&st.mu);
    if (!ok) {
        X509_free(cert);
        EVP_PKEY_free(key);
        ERR_clear_error();
    }
    return ok;
}

void acme_store_clear_challenges(void) {
    pthread_mutex_lock(&st.mu);
    for (size_t i = 0; i < st.nch; i++) {
        free(st.ch[i].token);
        free(st.ch[i].keyauth);
        free(st.ch[i].name);
        X509_free(st.ch[i].cert);
        EVP_PKEY_free(st.ch[i].key);
    }
    st.nch = 0;
    pthread_mutex_unlock(&st.mu);
}

void acme_store_count(bool ok) {
    pthread_mutex_lock(&st.mu);
    if (ok)
        st.orders_ok++;
    else
        st.orders_error++;
    pthread_mutex_unlock(&st.mu);
}

time_t acme_store_not_after(const char *name) {
    pthread_mutex_lock(&st.mu);
    const struct store_name *n = find(name);
    time_t t = n && n->leaf ? n->not_after : 0;
    pthread_mutex_unlock(&st.mu);
    return t;
}

void acme_store_each(void (*fn)(const char *name, void *arg), void *arg) {
    /* copied first: FN may call back into the store */
    char *names[ACME_STORE_MAX_NAMES];
    pthread_mutex_lock(&st.mu);
    size_t n = st.nnames;
    for (size_t i = 0; i < n; i++)
        names[i] = xstrdup(st.names[i].name);
    pthread_mutex_unlock(&st.mu);
    for (size_t i = 0; i < n; i++) {
        fn(names[i], arg);
        free(names[i]);
    }
}

static void json_str(struct strbuf *b, const char *s) {
    strbuf_adds(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            strbuf_printf(b, "\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            strbuf_printf(b, "\\u%04x", ch);
        else
            strbuf_add(b, s, 1);
    }
    strbuf_adds(b, "\"");
}

void acme_store_status(struct strbuf *b) {
    static const char *const names[] = {"pending", "valid", "failed", "unused"};
    pthread_mutex_lock(&st.mu);
    strbuf_adds(b, "[");
    for (size_t i = 0; i < st.nnames; i++) {
        const struct store_name *n = &st.names[i];
        strbuf_printf(b, "%s{\"name\":", i ? "," : "");
        json_str(b, n->name);
        strbuf_printf(b, ",\"state\":\"%s\",\"not_after\":%lld,\"last_error\":", names[n->state],
                      (long long)(n->leaf ? n->not_after : 0));
        json_str(b, n->error);
        strbuf_adds(b, "}");
    }
    strbuf_adds(b, "]");
    pthread_mutex_unlock(&st.mu);
}

void acme_store_orders(uint64_t *ok, uint64_t *error) {
    pthread_mutex_lock(&st.mu);
    *ok = st.orders_ok;
    *error = st.orders_error;
    pthread_mutex_unlock(&st.mu);
}
