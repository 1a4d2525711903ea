/* localca: ferry's own CA for `tls_auto = internal`; see localca.h.
 *
 * Files in state_dir: ca.key (the CA's private key) and ca.pem (its
 * certificate), both 0600, written to a temporary name and renamed so that
 * a crash never leaves half a key. Leaves are never written to disk: they
 * are cheap to make (one P-256 key and one signature, well under a
 * millisecond) and a restart simply issues them again. */
#include "ferry/localca.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry/log.h"
#include "ferry/statefile.h"

#define LOCALCA_BUCKETS 2048 /* twice the cache bound: chains stay short */
/* A CA this close to its end is replaced: leaves it signs would outlive it. */
#define LOCALCA_CA_MIN_LEFT_S (30 * 86400)

/* One issued leaf, in the hash chain of its name and in the LRU list. */
struct leaf {
    struct list_node lru; /* in ca->lru, most recently used first */
    struct leaf *next;    /* next in its bucket */
    char *name;           /* lower case */
    X509 *cert;
    EVP_PKEY *key;
    time_t renew_at; /* issue again from here on (two thirds of its life) */
};

struct localca {
    struct localca *next_open; /* in the registry of open CAs */
    atomic_uint refs;          /* generations using it */
    char *dir;                 /* state_dir as configured */
    char *cert_path;           /* DIR/ca.pem */
    X509 *cert;
    EVP_PKEY *key;
    pthread_mutex_t mu; /* guards everything below */
    struct leaf *buckets[LOCALCA_BUCKETS];
    struct list_node lru;
    size_t nleaves;
    unsigned long long issued;
};

/* Open CAs by directory. Opened on the main thread, released on any. */
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct localca *registry;

/* ---- names -------------------------------------------------------------- */

bool localca_name_ok(const char *name) {
    size_t len = strlen(name), label = 0;
    if (len == 0 || len > 253) return false;
    for (size_t i = 0; i <= len; i++) {
        char ch = name[i];
        if (ch == '.' || ch == '\0') {
            if (label == 0 || label > 63 || name[i - 1] == '-') return false;
            label = 0;
            continue;
        }
        bool alnum =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && !(ch == '-' && label > 0)) return false;
        label++;
    }
    return true;
}

/* ---- files -------------------------------------------------------------- */

int localca_check_dir(const char *dir, char *err, size_t len) {
    char path[4096];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
        snprintf(err, len, "state_dir %s: path too long", dir);
        return -1;
    }
    /* The nearest part of the path that exists decides: it must be a
     * directory we may write (to make what is missing below it). */
    for (;;) {
        struct stat st;
        if (stat(path, &st) == 0) {
            if (!S_ISDIR(st.st_mode)) {
                snprintf(err, len, "state_dir %s: %s is not a directory", dir, path);
                return -1;
            }
            if (access(path, W_OK | X_OK) < 0) {
                snprintf(err, len, "state_dir %s: %s is not writable: %s", dir, path,
                         strerror(errno));
                return -1;
            }
            return 0;
        }
        if (errno != ENOENT && errno != ENOTDIR) { /* ENOTDIR: a file above; found next */
            snprintf(err, len, "state_dir %s: %s", dir, strerror(errno));
            return -1;
        }
        char *slash = strrchr(path, '/');
        if (!slash)
            snprintf(path, sizeof(path), ".");
        else if (slash == path)
            path[1] = '\0';
        else
            *slash = '\0';
    }
}

static int write_key(FILE *f, void *key) {
    return PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
}

static int write_cert(FILE *f, void *cert) {
    return PEM_write_X509(f, cert);
}

/* ---- certificates ------------------------------------------------------- */

static EVP_PKEY *key_make(void) {
    return EVP_EC_gen("P-256");
}

static bool ext_add(X509 *x, X509 *issuer, int nid, const char *value) {
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    bool ok = e && X509_add_ext(x, e, -1) == 1;
    X509_EXTENSION_free(e);
    return ok;
}

static bool serial_set(X509 *x) {
    BIGNUM *bn = BN_new();
    /* 127 random bits: unique without coordination, positive as DER wants */
    bool ok = bn && BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
              BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok;
}

/* A certificate for KEY signed by ISSUER_KEY (ISSUER NULL: self-signed),
 * valid from NOW - backdate for LIFETIME seconds. CA: a CA certificate named
 * CN; else a server certificate for the DNS name CN. */
static X509 *cert_make(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       time_t now, long long lifetime, bool ca) {
    X509 *x = X509_new();
    if (!x) return NULL;
    X509_NAME *name = X509_get_subject_name(x);
    bool ok = X509_set_version(x, X509_VERSION_3) == 1 && serial_set(x) &&
              ASN1_TIME_set(X509_getm_notBefore(x), now - LOCALCA_BACKDATE_S) &&
              ASN1_TIME_set(X509_getm_notAfter(x), (time_t)(now + lifetime)) &&
              (!ca || X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                                 (const unsigned char *)"ferry", -1, -1, 0)) &&
              X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1,
                                         -1, 0) &&
              X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) == 1 &&
              X509_set_pubkey(x, key) == 1 &&
              ext_add(x, issuer, NID_subject_key_identifier, "hash");
    if (ok && ca) {
        ok = ext_add(x, NULL, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
             ext_add(x, NULL, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else if (ok) {
        char san[300];
        snprintf(san, sizeof(san), "DNS:%s", cn);
        ok = ext_add(x, issuer, NID_basic_constraints, "critical,CA:FALSE") &&
             ext_add(x, issuer, NID_key_usage, "critical,digitalSignature") &&
             ext_add(x, issuer, NID_ext_key_usage, "serverAuth") &&
             ext_add(x, issuer, NID_subject_alt_name, san) &&
             ext_add(x, issuer, NID_authority_key_identifier, "keyid:always");
    }
    ok = ok && X509_sign(x, issuer_key, EVP_sha256()) > 0;
    if (ok) return x;
    X509_free(x);
    ERR_clear_error();
    return NULL;
}

/* Reads the CA of CA->dir into CA. 1 loaded, 0 nothing stored, -1 what is
 * stored is unusable (why in ERR), -2 it cannot be read (why in ERR). */
static int ca_load(struct localca *ca, const char *key_path, char *err, size_t len) {
    bool have_key = access(key_path, F_OK) == 0, have_cert = access(ca->cert_path, F_OK) == 0;
    if (!have_key && !have_cert) return 0;
    FILE *kf = fopen(key_path, "r"), *cf = fopen(ca->cert_path, "r");
    if ((have_key && !kf) || (have_cert && !cf)) {
        /* there but not ours to read (permissions): replacing it would
         * throw away a CA the user trusts, so stop instead */
        snprintf(err, len, "cannot read %s: %s", kf ? ca->cert_path : key_path, strerror(errno));
        if (kf) fclose(kf);
        if (cf) fclose(cf);
        return -2;
    }
    ca->key = kf ? PEM_read_PrivateKey(kf, NULL, NULL, NULL) : NULL;
    ca->cert = cf ? PEM_read_X509(cf, NULL, NULL, NULL) : NULL;
    if (kf) fclose(kf);
    if (cf) fclose(cf);
    ERR_clear_error();
    const char *why = NULL;
    if (!ca->key)
        why = have_key ? "ca.key holds no readable PEM private key" : "ca.key is missing";
    else if (!ca->cert)
        why = have_cert ? "ca.pem holds no readable PEM certificate" : "ca.pem is missing";
    else if (X509_check_private_key(ca->cert, ca->key) != 1)
        why = "ca.key does not match ca.pem";
    else if (X509_check_ca(ca->cert) == 0)
        why = "ca.pem is not a CA certificate";
    else if (X509_cmp_time(X509_get0_notAfter(ca->cert),
                           &(time_t){time(NULL) + LOCALCA_CA_MIN_LEFT_S}) < 0)
        why = "ca.pem expires within 30 days";
    ERR_clear_error();
    if (!why) return 1;
    snprintf(err, len, "%s", why);
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    ca->cert = NULL;
    ca->key = NULL;
    return -1;
}

/* PATH moved to PATH.bad, so that a broken CA is kept for inspection and
 * not overwritten. */
static void file_set_aside(const char *path) {
    size_t n = strlen(path) + 8;
    char *bad = xmalloc(n);
    snprintf(bad, n, "%s.bad", path);
    if (access(path, F_OK) == 0 && rename(path, bad) < 0)
        log_warn("local CA: cannot move %s aside: %s", path, strerror(errno));
    free(bad);
}

static int ca_make(struct localca *ca, const char *key_path, char *err, size_t len) {
    char cn[128], host[64] = "";
    gethostname(host, sizeof(host) - 1);
    snprintf(cn, sizeof(cn), "ferry local CA %s", host[0] ? host : "");
    if (!(ca->key = key_make()) || !(ca->cert = cert_make(ca->key, cn, NULL, ca->key, time(NULL),
                                                          LOCALCA_CA_LIFETIME_S, true))) {
        snprintf(err, len, "cannot make a CA key and certificate");
        ERR_clear_error();
        return -1;
    }
    if (statefile_write(key_path, write_key, ca->key) < 0 ||
        statefile_write(ca->cert_path, write_cert, ca->cert) < 0) {
        snprintf(err, len, "state_dir %s: cannot write the CA: %s", ca->dir, strerror(errno));
        return -1;
    }
    return 0;
}

static void ca_free(struct localca *ca) {
    for (size_t i = 0; i < LOCALCA_BUCKETS; i++) {
        for (struct leaf *l = ca->buckets[i], *next; l; l = next) {
            next = l->next;
            X509_free(l->cert);
            EVP_PKEY_free(l->key);
            free(l->name);
            free(l);
        }
    }
    pthread_mutex_destroy(&ca->mu);
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    free(ca->cert_path);
    free(ca->dir);
    free(ca);
}

struct localca *localca_open(const char *dir, bool *created, char *err, size_t len) {
    *created = false;
    pthread_mutex_lock(&registry_mu);
    for (struct localca *c = registry; c; c = c->next_open) {
        if (strcmp(c->dir, dir) == 0) {
            atomic_fetch_add(&c->refs, 1);
            pthread_mutex_unlock(&registry_mu);
            return c;
        }
    }
    pthread_mutex_unlock(&registry_mu);
    if (statefile_mkdir(dir, err, len) < 0) return NULL;
    struct localca *ca = xcalloc(1, sizeof(*ca));
    ca->dir = xstrdup(dir);
    ca->cert_path = statefile_path(dir, "ca.pem");
    atomic_init(&ca->refs, 1);
    pthread_mutex_init(&ca->mu, NULL);
    list_init(&ca->lru);
    char *key_path = statefile_path(dir, "ca.key"), why[256];
    int loaded = ca_load(ca, key_path, why, sizeof(why));
    if (loaded == -2) {
        snprintf(err, len, "state_dir %s: %s", dir, why);
        free(key_path);
        ca_free(ca);
        return NULL;
    }
    if (loaded < 0) {
        log_warn("local CA in %s: %s; moved aside (.bad) and made a new CA, which browsers "
                 "must be told to trust again (ferry --trust)",
                 dir, why);
        file_set_aside(key_path);
        file_set_aside(ca->cert_path);
    }
    if (loaded <= 0 && ca_make(ca, key_path, err, len) < 0) {
        free(key_path);
        ca_free(ca);
        return NULL;
    }
    free(key_path);
    *created = loaded <= 0;
    pthread_mutex_lock(&registry_mu);
    ca->next_open = registry;
    registry = ca;
    pthread_mutex_unlock(&registry_mu);
    return ca;
}

void localca_ref(struct localca *ca) {
    atomic_fetch_add(&ca->refs, 1);
}

void localca_release(struct localca *ca) {
    if (!ca || atomic_fetch_sub(&ca->refs, 1) != 1) return;
    pthread_mutex_lock(&registry_mu);
    for (struct localca **p = &registry; *p; p = &(*p)->next_open) {
        if (*p == ca) {
            *p = ca->next_open;
            break;
        }
    }
    pthread_mutex_unlock(&registry_mu);
    ca_free(ca);
}

const char *localca_cert_path(const struct localca *ca) {
    return ca->cert_path;
}

X509 *localca_cert(const struct localca *ca) {
    return ca->cert;
}

time_t localca_not_after(const struct localca *ca) {
    struct tm tm;
    const ASN1_TIME *t = X509_get0_notAfter(ca->cert);
    return t && ASN1_TIME_to_tm(t, &tm) == 1 ? timegm(&tm) : 0;
}

/* ---- leaves and their cache -------------------------------------------- */

static size_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)(h % LOCALCA_BUCKETS);
}

/* Under ca->mu. */
static void leaf_unlink(struct localca *ca, struct leaf *l) {
    for (struct leaf **p = &ca->buckets[name_hash(l->name)]; *p; p = &(*p)->next) {
        if (*p == l) {
            *p = l->next;
            break;
        }
    }
    list_remove(&l->lru);
    ca->nleaves--;
    X509_free(l->cert);
    EVP_PKEY_free(l->key);
    free(l->name);
    free(l);
}

/* Issues a leaf for NAME (lower case, valid) into the cache. Under ca->mu:
 * issuing takes well under a millisecond, and handshakes that miss the
 * cache at the same moment are rare (first contact with a name). */
static struct leaf *leaf_issue(struct localca *ca, const char *name, time_t now) {
    EVP_PKEY *key = key_make();
    X509 *cert =
        key ? cert_make(key, name, ca->cert, ca->key, now, LOCALCA_LEAF_LIFETIME_S, false) : NULL;
    if (!cert) {
        EVP_PKEY_free(key);
        ERR_clear_error();
        return NULL;
    }
    if (ca->nleaves >= LOCALCA_CACHE_MAX)
        leaf_unlink(ca, container_of(ca->lru.prev, struct leaf, lru));
    struct leaf *l = xcalloc(1, sizeof(*l));
    l->name = xstrdup(name);
    l->cert = cert;
    l->key = key;
    l->renew_at = now + LOCALCA_LEAF_LIFETIME_S * 2 / 3;
    size_t b = name_hash(name);
    l->next = ca->buckets[b];
    ca->buckets[b] = l;
    list_push_front(&ca->lru, &l->lru);
    ca->nleaves++;
    ca->issued++;
    return l;
}

int localca_leaf(struct localca *ca, const char *name, time_t now, X509 **cert, EVP_PKEY **key) {
    char lower[254];
    size_t n = strlen(name);
    if (n >= sizeof(lower) || !localca_name_ok(name)) return -1;
    for (size_t i = 0; i <= n; i++)
        lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
    pthread_mutex_lock(&ca->mu);
    struct leaf *l = ca->buckets[name_hash(lower)];
    while (l && strcmp(l->name, lower) != 0)
        l = l->next;
    if (l && now >= l->renew_at) {
        leaf_unlink(ca, l);
        l = NULL;
    }
    if (l) {
        list_remove(&l->lru);
        list_push_front(&ca->lru, &l->lru);
    } else {
        l = leaf_issue(ca, lower, now);
    }
    if (l) {
        X509_up_ref(l->cert);
        EVP_PKEY_up_ref(l->key);
        *cert = l->cert;
        *key = l->key;
    }
    pthread_mutex_unlock(&ca->mu);
    return l ? 0 : -1;
}

size_t localca_cached(struct localca *ca) {
    pthread_mutex_lock(&ca->mu);
    size_t n = ca->nleaves;
    pthread_mutex_unlock(&ca->mu);
    return n;
}

unsigned long long localca_issued(struct localca *ca) {
    pthread_mutex_lock(&ca->mu);
    unsigned long long n = ca->issued;
    pthread_mutex_unlock(&ca->mu);
    return n;
}

/* ---- telling the user ---------------------------------------------------- */

void localca_print_trust(FILE *out, const char *p) {
    fprintf(
        out,
        "ferry's local CA (tls_auto = internal) is %s\n"
        "Browsers and tools trust the certificates ferry issues once they trust this CA.\n"
        "Keep its key (ca.key, next to it) private: whoever has it can pose as any site\n"
        "to the machines that trust the CA.\n"
        "\n"
        "  Debian, Ubuntu:  sudo cp %s /usr/local/share/ca-certificates/ferry-local-ca.crt\n"
        "                   sudo update-ca-certificates\n"
        "  macOS:           sudo security add-trusted-cert -d -r trustRoot \\\n"
        "                       -k /Library/Keychains/System.keychain %s\n"
        "  Windows:         certutil -addstore -user Root ferry-local-ca.pem\n"
        "                   (a copy of the file; or double-click it and import it into\n"
        "                   \"Trusted Root Certification Authorities\")\n"
        "  Firefox:         Settings > Privacy & Security > Certificates > View Certificates\n"
        "                   > Authorities > Import, tick \"Trust this CA to identify websites\"\n"
        "                   (or set security.enterprise_roots.enabled = true in about:config\n"
        "                   to use the system's store)\n"
        "  curl:            curl --cacert %s https://app.localhost:8443/\n"
        "  docker compose:  docker compose cp ferry:%s ./ferry-local-ca.pem\n",
        p, p, p, p, p);
}
