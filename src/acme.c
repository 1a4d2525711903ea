/* acme: the ACME engine (RFC 8555) on the main loop; see acme.h.
 *
 * One order at a time, one name per order, each a job that walks these
 * steps, each step one request (job_run) and its answer (job_on_resp):
 *
 *   DIRECTORY -> ACCOUNT -> ORDER -> AUTHZ -> CHALLENGE -> POLL_AUTHZ
 *       (once)     (once)              |  (valid already)     |
 *                                      +-------------+--------+
 *                                                    v
 *                                 FINALIZE -> POLL_ORDER -> CERT -> stored
 *
 * Every POST is a JWS with a fresh nonce (from the last answer, or HEAD
 * newNonce); a badNonce answer is retried with the nonce it carries. Any
 * failure ends the job: the name is tried again after a backoff (5 s,
 * doubling, at most an hour, or the CA's Retry-After when longer) and the
 * certificate it has, if any, keeps serving. The scheduler (one timer)
 * starts the next due name when no job runs: a name is due when it has no
 * certificate, or two thirds of its certificate's lifetime have passed. */
#include "ferry/acme.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ferry/acme_http.h"
#include "ferry/config.h"
#include "ferry/jws.h"
#include "ferry/localca.h"
#include "ferry/log.h"
#include "ferry/statefile.h"
#include "ferry/util.h"

#define ACME_BACKOFF_FIRST_S 5
#define ACME_BACKOFF_MAX_S   3600
#define ACME_POLL_FIRST_MS   250 /* validation often takes well under a second */
#define ACME_POLL_MAX_MS     2000
#define ACME_MAX_POLLS       60 /* two minutes of pending: the CA is stuck */
#define ACME_MAX_BAD_NONCE   5  /* retries of one POST; a CA rejects nonces rarely */

enum job_step {
    J_DIRECTORY = 0,
    J_ACCOUNT,
    J_ORDER,
    J_AUTHZ,
    J_CHALLENGE,
    J_POLL_AUTHZ,
    J_FINALIZE,
    J_POLL_ORDER,
    J_CERT,
};

struct job {
    char *name;
    enum job_step step;
    char *post_url, *post_body; /* the POST in progress (kept for a badNonce retry) */
    int bad_nonces;
    bool waiting; /* a poll is due when the timer fires */
    int polls;
    uint64_t retry_after_s; /* from the last answer */
    char *order_url, *authz_url, *chall_url, *finalize_url, *cert_url;
    EVP_PKEY *cert_key; /* the key the CSR was made with */
    bool finalized;     /* the CSR went out: "ready" now means wait */
};

/* When each wanted name is next due. */
struct due {
    char *name;
    time_t at;
    unsigned failures;
};

static struct {
    uv_loop_t *loop;
    uv_timer_t timer;
    bool started;
    struct acme_http *http;
    char *directory, *ca_file, *email, *dir; /* dir: state_dir/acme */
    bool http01;                             /* a cleartext http listener answers HTTP-01 */
    char *new_nonce, *new_account, *new_order;
    char *nonce; /* unused nonce from the last answer */
    char *kid;   /* the account URL */
    EVP_PKEY *account;
    char *thumb; /* the account key's JWK thumbprint */
    struct due *due;
    size_t ndue;
    struct job *job; /* the job in progress */
} eng;

static void job_run(struct job *j);
static void schedule(void);
static void on_timer(uv_timer_t *t);

/* ---- small helpers ----------------------------------------------------- */

static void set_str(char **slot, const char *v) {
    free(*slot);
    *slot = v ? xstrdup(v) : NULL;
}

static time_t renew_at(X509 *leaf) {
    struct tm a, b;
    if (ASN1_TIME_to_tm(X509_get0_notBefore(leaf), &a) != 1 ||
        ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &b) != 1)
        return 0;
    time_t from = timegm(&a), to = timegm(&b);
    return from + (to - from) * 2 / 3;
}

static struct due *due_of(const char *name) {
    for (size_t i = 0; i < eng.ndue; i++)
        if (eng.due[i].name && strcmp(eng.due[i].name, name) == 0) return &eng.due[i];
    return NULL;
}

static void job_free(struct job *j) {
    free(j->name);
    free(j->post_url);
    free(j->post_body);
    free(j->order_url);
    free(j->authz_url);
    free(j->chall_url);
    free(j->finalize_url);
    free(j->cert_url);
    EVP_PKEY_free(j->cert_key);
    free(j);
}

/* The job failed: log why with the name, count it, back off. */
static void job_fail(struct job *j, const char *fmt, ...) FERRY_PRINTF(2, 3);
static void job_fail(struct job *j, const char *fmt, ...) {
    char why[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    struct due *d = due_of(j->name);
    uint64_t wait = ACME_BACKOFF_FIRST_S;
    if (d) {
        for (unsigned i = 0; i < d->failures && wait < ACME_BACKOFF_MAX_S; i++)
            wait *= 2;
        if (wait > ACME_BACKOFF_MAX_S) wait = ACME_BACKOFF_MAX_S;
        if (j->retry_after_s > wait) wait = j->retry_after_s;
        d->failures++;
        d->at = time(NULL) + (time_t)wait;
    }
    log_error("acme: %s: order failed: %s; trying again in %llus", j->name, why,
              (unsigned long long)wait);
    acme_store_set_state(j->name, ACME_FAILED, why);
    acme_store_count(false);
    acme_store_clear_challenges();
    eng.job = NULL;
    job_free(j);
    schedule();
}

/* The problem document of an error answer (RFC 8555 6.7) in words. */
static void problem(const struct acme_resp *r, char *out, size_t len) {
    json_t *p = json_loads(r->body, 0, NULL);
    const char *type = json_string_value(json_object_get(p, "type"));
    const char *detail = json_string_value(json_object_get(p, "detail"));
    snprintf(out, len, "HTTP %d%s%s%s%s", r->status, type ? ", " : "", type ? type : "",
             detail ? ": " : "", detail ? detail : "");
    json_decref(p);
}

static bool is_bad_nonce(const struct acme_resp *r) {
    json_t *p = json_loads(r->body, 0, NULL);
    const char *type = json_string_value(json_object_get(p, "type"));
    bool bad = r->status == 400 && type && strcmp(type, "urn:ietf:params:acme:error:badNonce") == 0;
    json_decref(p);
    return bad;
}

/* ---- requests ------------------------------------------------------------ */

static void job_on_resp(void *arg, int err, const struct acme_resp *r);

static void job_get(struct job *j, const char *method, const char *url) {
    int err = acme_http_request(eng.http, method, url, NULL, job_on_resp, j);
    if (err < 0) job_fail(j, "bad URL %s", url);
}

static void job_post_now(struct job *j) {
    char *jws = jws_sign(eng.account, j->step == J_ACCOUNT ? NULL : eng.kid, eng.nonce, j->post_url,
                         j->post_body);
    set_str(&eng.nonce, NULL); /* a nonce is good once */
    if (!jws) {
        job_fail(j, "cannot sign a request");
        return;
    }
    int err = acme_http_request(eng.http, "POST", j->post_url, jws, job_on_resp, j);
    free(jws);
    if (err < 0) job_fail(j, "bad URL %s", j->post_url);
}

static void job_on_nonce(void *arg, int err, const struct acme_resp *r) {
    struct job *j = arg;
    if (err == UV_ECANCELED) return; /* the job is being freed */
    if (err < 0 || !r->nonce) {
        job_fail(j, "no nonce from %s: %s", eng.new_nonce,
                 err < 0 ? acme_http_error(eng.http) : "no Replay-Nonce header");
        return;
    }
    set_str(&eng.nonce, r->nonce);
    job_post_now(j);
}

/* POSTs BODY (a JSON text; "" for POST-as-GET) to URL as a JWS. */
static void job_post(struct job *j, const char *url, const char *body) {
    set_str(&j->post_url, url);
    set_str(&j->post_body, body);
    j->bad_nonces = 0;
    if (eng.nonce) {
        job_post_now(j);
        return;
    }
    int err = acme_http_request(eng.http, "HEAD", eng.new_nonce, NULL, job_on_nonce, j);
    if (err < 0) job_fail(j, "bad newNonce URL %s", eng.new_nonce);
}

/* ---- steps ---------------------------------------------------------------- */

/* A CSR for NAME with a new key (kept in J) as base64url DER. */
static char *job_csr(struct job *j) {
    EVP_PKEY_free(j->cert_key);
    j->cert_key = EVP_EC_gen("P-256");
    X509_REQ *req = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    char san[300];
    snprintf(san, sizeof(san), "DNS:%s", j->name);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
    unsigned char *der = NULL;
    int n = -1;
    if (j->cert_key && req && exts && e && sk_X509_EXTENSION_push(exts, e) &&
        X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC,
                                   (const unsigned char *)j->name, -1, -1, 0) == 1 &&
        X509_REQ_add_extensions(req, exts) == 1 && X509_REQ_set_pubkey(req, j->cert_key) == 1 &&
        X509_REQ_sign(req, j->cert_key, EVP_sha256()) > 0) {
        e = NULL; /* the stack owns it */
        n = i2d_X509_REQ(req, &der);
    }
    X509_EXTENSION_free(e);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    ERR_clear_error();
    char *out = n > 0 ? jws_b64url(der, (size_t)n) : NULL;
    OPENSSL_free(der);
    return out;
}

/* What the current step asks. */
static void job_run(struct job *j) {
    char *body = NULL;
    switch (j->step) {
    case J_DIRECTORY: job_get(j, "GET", eng.directory); return;
    case J_ACCOUNT: {
        json_t *o = json_pack("{s:b}", "termsOfServiceAgreed", 1);
        if (eng.email) json_object_set_new(o, "contact", json_pack("[s+]", "mailto:", eng.email));
        body = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        job_post(j, eng.new_account, body);
        break;
    }
    case J_ORDER: {
        json_t *o = json_pack("{s:[{s:s, s:s}]}", "identifiers", "type", "dns", "value", j->name);
        body = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        job_post(j, eng.new_order, body);
        break;
    }
    case J_AUTHZ:
    case J_POLL_AUTHZ: job_post(j, j->authz_url, ""); return;
    case J_CHALLENGE: job_post(j, j->chall_url, "{}"); return;
    case J_FINALIZE: {
        char *csr = job_csr(j);
        if (!csr) {
            job_fail(j, "cannot make a CSR");
            return;
        }
        json_t *o = json_pack("{s:s}", "csr", csr);
        free(csr);
        j->finalized = true;
        body = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        job_post(j, j->finalize_url, body);
        break;
    }
    case J_POLL_ORDER: job_post(j, j->order_url, ""); return;
    case J_CERT: job_post(j, j->cert_url, ""); return;
    }
    free(body);
}

/* Waits and runs the step again. */
static void job_poll(struct job *j, const char *what) {
    if (++j->polls > ACME_MAX_POLLS) {
        job_fail(j, "%s still pending after %d polls", what, ACME_MAX_POLLS);
        return;
    }
    /* 250 ms, doubling to 2 s; the CA's Retry-After when it gives one,
     * up to 10 s (an order must not stall on a confused header) */
    uint64_t ms = ACME_POLL_FIRST_MS << (j->polls < 4 ? j->polls - 1 : 3);
    if (ms > ACME_POLL_MAX_MS) ms = ACME_POLL_MAX_MS;
    if (j->retry_after_s) ms = j->retry_after_s < 10 ? j->retry_after_s * 1000 : 10000;
    j->waiting = true;
    uv_timer_start(&eng.timer, on_timer, ms, 0);
}

/* The challenge we answer: HTTP-01 when a cleartext http listener exists
 * (the CA connects to port 80 of the name), else TLS-ALPN-01 (port 443). */
static bool job_pick_challenge(struct job *j, json_t *authz) {
    const char *want = eng.http01 ? "http-01" : "tls-alpn-01";
    json_t *chs = json_object_get(authz, "challenges"), *c;
    size_t i;
    json_array_foreach(chs, i, c) {
        const char *type = json_string_value(json_object_get(c, "type"));
        const char *url = json_string_value(json_object_get(c, "url"));
        const char *token = json_string_value(json_object_get(c, "token"));
        if (!type || !url || !token || strcmp(type, want) != 0) continue;
        /* a token is base64url (RFC 8555 8.1): anything else could not be
         * looked up in a path or would break the key authorization */
        for (const char *p = token; *p; p++)
            if (!(strchr("-_", *p) || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                  (*p >= 'A' && *p <= 'Z')))
                return false;
        char keyauth[512];
        snprintf(keyauth, sizeof(keyauth), "%s.%s", token, eng.thumb);
        if (eng.http01)
            acme_store_add_http01(token, keyauth);
        else if (!acme_store_add_alpn(j->name, keyauth))
            return false;
        set_str(&j->chall_url, url);
        return true;
    }
    return false;
}

/* The first failed challenge's error, in words. */
static void authz_error(json_t *authz, char *out, size_t len) {
    json_t *chs = json_object_get(authz, "challenges"), *c;
    size_t i;
    snprintf(out, len, "authorization invalid");
    json_array_foreach(chs, i, c) {
        json_t *e = json_object_get(c, "error");
        if (!e) continue;
        const char *ct = json_string_value(json_object_get(c, "type"));
        const char *et = json_string_value(json_object_get(e, "type"));
        const char *detail = json_string_value(json_object_get(e, "detail"));
        snprintf(out, len, "%s challenge failed: %s: %s", ct ? ct : "a", et ? et : "error",
                 detail ? detail : "");
        return;
    }
}

struct pem_text {
    const char *p;
    size_t len;
};

static int write_text(FILE *f, void *arg) {
    const struct pem_text *t = arg;
    return fwrite(t->p, 1, t->len, f) == t->len ? 1 : 0;
}

static int write_key(FILE *f, void *key) {
    return PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
}

/* Writes NAME.crt and NAME.key and hands them to the store. */
static void job_store(struct job *j, const char *pem, size_t len) {
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    STACK_OF(X509) *chain = sk_X509_new_null();
    for (X509 *x; (x = PEM_read_bio_X509(bio, NULL, NULL, NULL));)
        sk_X509_push(chain, x);
    BIO_free(bio);
    ERR_clear_error();
    if (!leaf || X509_check_private_key(leaf, j->cert_key) != 1) {
        X509_free(leaf);
        sk_X509_pop_free(chain, X509_free);
        ERR_clear_error();
        job_fail(j, "the certificate the CA sent does not load or does not match our key");
        return;
    }
    char file[300];
    snprintf(file, sizeof(file), "%s.crt", j->name);
    char *crt = statefile_path(eng.dir, file);
    snprintf(file, sizeof(file), "%s.key", j->name);
    char *key = statefile_path(eng.dir, file);
    struct pem_text text = {pem, len};
    /* the key first: a certificate on disk without its key is useless */
    bool ok = statefile_write(key, write_key, j->cert_key) == 0 &&
              statefile_write(crt, write_text, &text) == 0;
    if (!ok)
        log_error("acme: %s: cannot store the certificate in %s: %s", j->name, eng.dir,
                  strerror(errno));
    free(crt);
    free(key);
    time_t renew = renew_at(leaf);
    char until[32], at[32];
    struct tm tm = {0}, na = {0};
    ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &na);
    strftime(until, sizeof(until), "%Y-%m-%d %H:%M:%S UTC", &na);
    gmtime_r(&renew, &tm);
    strftime(at, sizeof(at), "%Y-%m-%d %H:%M:%S UTC", &tm);
    log_info("acme: %s: certificate valid until %s, renewal from %s", j->name, until, at);
    EVP_PKEY_up_ref(j->cert_key);
    acme_store_set_cert(j->name, leaf, chain, j->cert_key);
    acme_store_count(true);
    acme_store_clear_challenges();
    struct due *d = due_of(j->name);
    if (d) {
        d->at = renew;
        d->failures = 0;
    }
    eng.job = NULL;
    job_free(j);
    schedule();
}

/* An answer to the current step: the next step, a poll, or a failure. */
static void job_on_resp(void *arg, int err, const struct acme_resp *r) {
    struct job *j = arg;
    if (err == UV_ECANCELED) return; /* acme_stop: the job is being freed */
    if (err < 0) {
        job_fail(j, "no answer from the CA: %s", acme_http_error(eng.http));
        return;
    }
    if (r->nonce) set_str(&eng.nonce, r->nonce);
    j->retry_after_s = r->retry_after_s;
    if (j->step != J_DIRECTORY && is_bad_nonce(r) && ++j->bad_nonces <= ACME_MAX_BAD_NONCE) {
        log_info("acme: %s: the CA refused our nonce (badNonce): sending again", j->name);
        job_post_now(j); /* with the fresh nonce the refusal carried */
        return;
    }
    char why[600];
    if (r->status >= 400) {
        problem(r, why, sizeof(why));
        /* an account the CA no longer knows is made again next time */
        if (strstr(why, "accountDoesNotExist") || strstr(why, ":unauthorized"))
            set_str(&eng.kid, NULL);
        job_fail(j, "%s", why);
        return;
    }
    if (j->step == J_CERT) {
        job_store(j, r->body, r->body_len);
        return;
    }
    json_t *o = json_loads(r->body, 0, NULL);
    const char *status = json_string_value(json_object_get(o, "status"));
    switch (j->step) {
    case J_DIRECTORY:
        set_str(&eng.new_nonce, json_string_value(json_object_get(o, "newNonce")));
        set_str(&eng.new_account, json_string_value(json_object_get(o, "newAccount")));
        set_str(&eng.new_order, json_string_value(json_object_get(o, "newOrder")));
        if (!eng.new_nonce || !eng.new_account || !eng.new_order) {
            json_decref(o);
            job_fail(j, "%s is not an ACME directory", eng.directory);
            return;
        }
        j->step = eng.kid ? J_ORDER : J_ACCOUNT;
        break;
    case J_ACCOUNT:
        if (!r->location) {
            json_decref(o);
            job_fail(j, "the new account has no URL (Location)");
            return;
        }
        set_str(&eng.kid, r->location);
        log_info("acme: account %s", eng.kid);
        j->step = J_ORDER;
        break;
    case J_ORDER:
    case J_FINALIZE:
    case J_POLL_ORDER: {
        if (j->step == J_ORDER) {
            set_str(&j->order_url, r->location);
            set_str(&j->authz_url,
                    json_string_value(json_array_get(json_object_get(o, "authorizations"), 0)));
            set_str(&j->finalize_url, json_string_value(json_object_get(o, "finalize")));
        }
        set_str(&j->cert_url, json_string_value(json_object_get(o, "certificate")));
        if (!status || !j->order_url || !j->authz_url || !j->finalize_url ||
            strcmp(status, "invalid") == 0) {
            json_decref(o);
            job_fail(j, "the order is %s", status ? status : "malformed");
            return;
        }
        if (strcmp(status, "valid") == 0 && j->cert_url) {
            j->step = J_CERT;
        } else if (strcmp(status, "ready") == 0 && !j->finalized) {
            j->step = J_FINALIZE;
        } else if (strcmp(status, "pending") == 0 && j->step == J_ORDER) {
            j->step = J_AUTHZ;
        } else {
            j->step = J_POLL_ORDER; /* processing: the CA is issuing */
            json_decref(o);
            job_poll(j, "the order");
            return;
        }
        break;
    }
    case J_AUTHZ:
    case J_POLL_AUTHZ:
        if (status && strcmp(status, "valid") == 0) {
            acme_store_clear_challenges();
            j->step = J_FINALIZE;
            j->polls = 0; /* the order's polling starts quick again */
        } else if (status && strcmp(status, "pending") == 0 && j->step == J_AUTHZ) {
            if (!job_pick_challenge(j, o)) {
                json_decref(o);
                job_fail(j, "the CA offers no usable %s challenge",
                         eng.http01 ? "http-01" : "tls-alpn-01");
                return;
            }
            j->step = J_CHALLENGE;
        } else if (status && strcmp(status, "pending") == 0) {
            json_decref(o);
            job_poll(j, "the authorization");
            return;
        } else {
            authz_error(o, why, sizeof(why));
            json_decref(o);
            job_fail(j, "%s", why);
            return;
        }
        break;
    case J_CHALLENGE:
        j->step = J_POLL_AUTHZ;
        json_decref(o);
        job_poll(j, "the authorization");
        return;
    case J_CERT: break;
    }
    json_decref(o);
    job_run(j);
}

/* ---- the scheduler ---------------------------------------------------------- */

static void on_timer(uv_timer_t *t) {
    FERRY_UNUSED(t);
    if (eng.job && eng.job->waiting) {
        eng.job->waiting = false;
        job_run(eng.job);
        return;
    }
    schedule();
}

/* Starts the next due name when no job runs; sets the timer for the one
 * after. */
static void schedule(void) {
    if (!eng.started || eng.job) return;
    time_t now = time(NULL), next = 0;
    for (size_t i = 0; i < eng.ndue; i++) {
        struct due *d = &eng.due[i];
        if (d->at > now) {
            if (!next || d->at < next) next = d->at;
            continue;
        }
        struct job *j = xcalloc(1, sizeof(*j));
        j->name = xstrdup(d->name);
        j->step = eng.new_order ? (eng.kid ? J_ORDER : J_ACCOUNT) : J_DIRECTORY;
        eng.job = j;
        log_info("acme: %s: ordering a certificate from %s", j->name, eng.directory);
        acme_store_set_state(j->name, ACME_PENDING, NULL);
        job_run(j);
        return;
    }
    if (next) {
        uint64_t ms = (uint64_t)(next - now) * 1000;
        if (ms > 3600 * 1000) ms = 3600 * 1000; /* the clock may jump: look again hourly */
        uv_timer_start(&eng.timer, on_timer, ms, 0);
    }
}

/* NAME's stored certificate and key, when both load and match: into the
 * store, and its renewal time into D. A broken one is reported and
 * ordered again. */
static void load_stored(const char *name, struct due *d) {
    char file[300];
    snprintf(file, sizeof(file), "%s.crt", name);
    char *crt = statefile_path(eng.dir, file);
    snprintf(file, sizeof(file), "%s.key", name);
    char *keyp = statefile_path(eng.dir, file);
    FILE *cf = fopen(crt, "r"), *kf = fopen(keyp, "r");
    X509 *leaf = cf ? PEM_read_X509(cf, NULL, NULL, NULL) : NULL;
    STACK_OF(X509) *chain = sk_X509_new_null();
    for (X509 *x; cf && leaf && (x = PEM_read_X509(cf, NULL, NULL, NULL));)
        sk_X509_push(chain, x);
    EVP_PKEY *key = kf ? PEM_read_PrivateKey(kf, NULL, NULL, NULL) : NULL;
    if (cf) fclose(cf);
    if (kf) fclose(kf);
    ERR_clear_error();
    bool ok = leaf && key && X509_check_private_key(leaf, key) == 1 &&
              X509_cmp_time(X509_get0_notAfter(leaf), NULL) > 0;
    ERR_clear_error();
    if (ok) {
        d->at = renew_at(leaf);
        acme_store_set_cert(name, leaf, chain, key);
        log_info("acme: %s: using the certificate stored in %s", name, crt);
    } else {
        if (cf || kf)
            log_warn("acme: %s: the stored certificate (%s) does not load, does not match its "
                     "key or has expired: ordering a new one",
                     name, crt);
        log_warn("acme: %s: no certificate yet: its handshakes get a self-signed placeholder "
                 "until the order succeeds",
                 name);
        X509_free(leaf);
        sk_X509_pop_free(chain, X509_free);
        EVP_PKEY_free(key);
    }
    free(crt);
    free(keyp);
}

/* ---- start, adopt, stop --------------------------------------------------- */

void acme_start(uv_loop_t *loop) {
    eng.loop = loop;
    uv_timer_init(loop, &eng.timer);
    uv_unref((uv_handle_t *)&eng.timer);
    eng.started = true;
}

/* The exact hosts of the routes on CFG's tls_auto = acme listeners. */
static void wanted_names(const struct config *cfg, char ***out, size_t *n) {
    *out = NULL;
    *n = 0;
    for (size_t l = 0; l < cfg->nlisteners; l++) {
        const struct config_listener *lis = &cfg->listeners[l];
        if (lis->tls_auto != TLS_AUTO_ACME) continue;
        size_t before = *n;
        for (size_t i = 0; i < cfg->nroutes; i++) {
            const struct config_route *r = &cfg->routes[i];
            if (r->listener && r->listener != lis) continue;
            for (size_t h = 0; h < r->nhosts; h++) {
                const char *host = r->hosts[h];
                bool dup = false;
                for (size_t k = 0; k < *n && !dup; k++)
                    dup = strcasecmp((*out)[k], host) == 0;
                if (dup || host[0] == '*' || !localca_name_ok(host)) continue;
                *out = xrealloc(*out, (*n + 1) * sizeof(**out));
                (*out)[(*n)++] = (char *)host;
            }
        }
        if (*n == before) /* every handshake would get the placeholder */
            log_warn("%s:%d: listener %s: tls_auto = acme, but no route on it names an exact "
                     "host: no certificate will be ordered for it",
                     cfg->file, lis->tls_auto_line, lis->name);
    }
}

/* The account key and the engine's settings from CFG; false (logged) when
 * the account key cannot be had. */
static bool adopt_settings(const struct config *cfg) {
    const struct config_global *g = &cfg->global;
    bool same_ca = eng.directory && strcmp(eng.directory, g->acme_directory) == 0 &&
                   ((!eng.ca_file && !g->acme_ca) ||
                    (eng.ca_file && g->acme_ca && strcmp(eng.ca_file, g->acme_ca) == 0));
    if (!same_ca) { /* another CA: another directory, account and nonce */
        set_str(&eng.new_nonce, NULL);
        set_str(&eng.new_account, NULL);
        set_str(&eng.new_order, NULL);
        set_str(&eng.nonce, NULL);
        set_str(&eng.kid, NULL);
    }
    set_str(&eng.directory, g->acme_directory);
    set_str(&eng.ca_file, g->acme_ca);
    set_str(&eng.email, g->acme_email);
    char *dir = statefile_path(g->state_dir, "acme"), err[512];
    if (!eng.dir || strcmp(eng.dir, dir) != 0) {
        EVP_PKEY_free(eng.account);
        eng.account = NULL;
        set_str(&eng.kid, NULL);
    }
    free(eng.dir);
    eng.dir = dir;
    if (!eng.account) {
        bool created;
        char *path = statefile_path(dir, "account.key");
        eng.account = statefile_mkdir(dir, err, sizeof(err)) == 0
                          ? jws_key_open(path, &created, err, sizeof(err))
                          : NULL;
        free(path);
        if (!eng.account) {
            log_error("acme: %s: no certificates will be ordered", err);
            return false;
        }
        free(eng.thumb);
        eng.thumb = jws_thumbprint(eng.account);
    }
    if (!eng.http || !same_ca) {
        if (eng.job) { /* it talks to the old CA: it ends, and starts again */
            job_free(eng.job);
            eng.job = NULL;
            acme_store_clear_challenges();
        }
        acme_http_free(eng.http);
        eng.http = acme_http_new(eng.loop, eng.ca_file, err, sizeof(err));
        if (!eng.http) {
            log_error("acme: acme_ca: %s: no certificates will be ordered", err);
            return false;
        }
    }
    return true;
}

void acme_adopt(const struct config *cfg) {
    char **names;
    size_t n;
    wanted_names(cfg, &names, &n);
    eng.http01 = false;
    for (size_t l = 0; l < cfg->nlisteners; l++) {
        const struct config_listener *lis = &cfg->listeners[l];
        eng.http01 = eng.http01 || (lis->mode == MODE_HTTP && !config_listener_tls(lis));
    }
    if (!eng.started || (n == 0 && eng.ndue == 0) || !adopt_settings(cfg)) {
        free(names);
        return;
    }
    /* names no longer wanted are no longer renewed; new ones are loaded
     * from state_dir or ordered */
    struct due *due = xcalloc(n + 1, sizeof(*due));
    for (size_t i = 0; i < n; i++) {
        struct due *old = due_of(names[i]);
        if (old) {
            due[i] = *old;
            old->name = NULL;
            continue;
        }
        due[i].name = xstrdup(names[i]);
        due[i].at = time(NULL);
        acme_store_want(names[i]);
        load_stored(names[i], &due[i]);
    }
    for (size_t i = 0; i < eng.ndue; i++) {
        if (eng.due[i].name) { /* not carried over: dropped from the config */
            log_info("acme: %s: no longer in the config: not renewed", eng.due[i].name);
            acme_store_set_state(eng.due[i].name, ACME_UNUSED, NULL);
        }
        free(eng.due[i].name);
    }
    free(eng.due);
    eng.due = due;
    eng.ndue = n;
    free(names);
    schedule();
}

void acme_stop(void) {
    if (!eng.started) return;
    eng.started = false;
    acme_http_free(eng.http); /* in-flight requests end with UV_ECANCELED */
    eng.http = NULL;
    if (eng.job) job_free(eng.job);
    eng.job = NULL;
    uv_close((uv_handle_t *)&eng.timer, NULL);
    for (size_t i = 0; i < eng.ndue; i++)
        free(eng.due[i].name);
    free(eng.due);
    eng.due = NULL;
    eng.ndue = 0;
    EVP_PKEY_free(eng.account);
    eng.account = NULL;
    char **strs[] = {&eng.directory,   &eng.ca_file,   &eng.email, &eng.dir, &eng.new_nonce,
                     &eng.new_account, &eng.new_order, &eng.nonce, &eng.kid, &eng.thumb};
    for (size_t i = 0; i < FERRY_ARRAY_LEN(strs); i++)
        set_str(strs[i], NULL);
    acme_store_clear_challenges();
}
