/* transport_tls: see transport_tls.h for the design, transport.h for the
 * contract it keeps.
 *
 * One rule keeps the scratch buffer safe: every OpenSSL call on a
 * connection is followed by tls_flush() before anything else runs, so the
 * scratch holds one connection's ciphertext at a time and a reader's
 * callback (which may write on another TLS transport) always finds it
 * empty. */
#include "ferry/transport_tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/log.h"
#include "ferry/tls.h"

_Static_assert(TLS_FAIL_REASONS == STATS_TLS_REASONS, "stats and tls disagree on reasons");

/* One TLS connection's state; the transport's stream->data points here. */
struct tls_conn {
    struct transport *t;
    struct tls_worker *tw;
    SSL *ssl;
    char *in;                      /* pool block: ciphertext OpenSSL has not taken */
    size_t in_off, in_len;
    struct transport_write *pend_head, *pend_tail; /* writes waiting for the handshake */
    size_t pend_bytes;
    stat_t *fails;                 /* server: handshake failures by reason */
    SSL_SESSION **session;         /* client: where this server's session is kept */
    uv_close_cb close_cb;
    transport_tls_ready_cb ready;  /* client: told once how the handshake ended */
    struct list_node deferred;     /* in tw->deferred */
    const char *error;             /* static text of a failure */
    bool server;
    bool handshake_done;
    bool sock_reading;             /* uv_read_start is in effect */
    bool got_bytes;                /* the peer sent something */
    bool failed;                   /* unusable: no more reads or writes */
    bool read_done;                /* the peer ended its side (EOF, close_notify) */
    bool closing;
};

/* Ciphertext the kernel did not take at once. */
struct tls_out {
    uv_write_t req;
    struct transport_write *user; /* completed with this record, or NULL */
    char data[];
};

static void tls_pump(struct tls_conn *tc);
static void tls_sock_update(struct tls_conn *tc);

static struct tls_conn *tls_of(const struct transport *t) {
    return t->stream->data;
}

/* ---- the BIO: reads from tc->in, writes to the worker's scratch -------- */

static BIO_METHOD *tls_bio_method;
static pthread_once_t tls_bio_once = PTHREAD_ONCE_INIT;

static int bio_write(BIO *b, const char *data, int len) {
    struct tls_conn *tc = BIO_get_data(b);
    struct tls_worker *tw = tc->tw;
    size_t need = tw->out_len + (size_t)len;
    if (need > tw->out_cap) {
        size_t cap = tw->out_cap ? tw->out_cap : 16384;
        while (cap < need) cap *= 2;
        char *p = realloc(tw->out, cap);
        if (!p) return -1;
        tw->out = p;
        tw->out_cap = cap;
    }
    memcpy(tw->out + tw->out_len, data, (size_t)len);
    tw->out_len = need;
    return len;
}

static int bio_read(BIO *b, char *data, int len) {
    struct tls_conn *tc = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    size_t avail = tc->in ? tc->in_len - tc->in_off : 0;
    if (avail == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = avail < (size_t)len ? avail : (size_t)len;
    memcpy(data, tc->in + tc->in_off, n);
    tc->in_off += n;
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
    FERRY_UNUSED(b);
    FERRY_UNUSED(num);
    FERRY_UNUSED(ptr);
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b) {
    BIO_set_init(b, 1);
    return 1;
}

static void tls_bio_make(void) {
    tls_bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ferry");
    if (!tls_bio_method) return;
    BIO_meth_set_write(tls_bio_method, bio_write);
    BIO_meth_set_read(tls_bio_method, bio_read);
    BIO_meth_set_ctrl(tls_bio_method, bio_ctrl);
    BIO_meth_set_create(tls_bio_method, bio_create);
}

/* ---- the worker -------------------------------------------------------- */

static void tls_on_idle(uv_idle_t *h) {
    struct tls_worker *tw = container_of(h, struct tls_worker, idle);
    /* Only those queued now: a pump may queue its transport again. */
    struct list_node batch;
    list_init(&batch);
    if (!list_empty(&tw->deferred)) {
        batch.next = tw->deferred.next;
        batch.prev = tw->deferred.prev;
        batch.next->prev = &batch;
        batch.prev->next = &batch;
        list_init(&tw->deferred);
    }
    while (!list_empty(&batch)) {
        struct tls_conn *tc = container_of(batch.next, struct tls_conn, deferred);
        list_remove(&tc->deferred);
        tls_pump(tc);
    }
    if (list_empty(&tw->deferred)) uv_idle_stop(&tw->idle);
}

void tls_worker_init(struct tls_worker *tw, uv_loop_t *loop, struct buffer_pool *pool) {
    *tw = (struct tls_worker){.loop = loop, .pool = pool};
    list_init(&tw->deferred);
    uv_idle_init(loop, &tw->idle);
}

void tls_worker_close(struct tls_worker *tw) {
    uv_close((uv_handle_t *)&tw->idle, NULL);
    free(tw->out);
    tw->out = NULL;
    tw->out_cap = tw->out_len = 0;
}

static void tls_defer(struct tls_conn *tc) {
    if (tc->deferred.next != &tc->deferred) return; /* queued already */
    list_push_front(&tc->tw->deferred, &tc->deferred);
    uv_idle_start(&tc->tw->idle, tls_on_idle);
}

/* ---- output ------------------------------------------------------------ */

static void tls_on_out(uv_write_t *req, int status) {
    struct tls_out *o = container_of(req, struct tls_out, req);
    struct transport_write *user = o->user;
    free(o);
    if (user) user->cb(user, status);
}

/* Sends what the last OpenSSL call produced. USER, when not NULL, is the
 * write these bytes complete. Returns 0 (all out now), 1 (queued: USER's
 * callback runs later) or a UV_E* code. */
static int tls_flush(struct tls_conn *tc, struct transport_write *user) {
    struct tls_worker *tw = tc->tw;
    size_t len = tw->out_len, off = 0;
    tw->out_len = 0;
    if (len == 0) return 0;
    uv_stream_t *s = tc->t->stream;
    if (s->write_queue_size == 0) {
        uv_buf_t b = uv_buf_init(tw->out, (unsigned)len);
        int n = uv_try_write(s, &b, 1);
        if (n < 0 && n != UV_EAGAIN) return n;
        if (n > 0) off = (size_t)n;
    }
    if (off == len) return 0;
    struct tls_out *o = malloc(sizeof(*o) + (len - off));
    if (!o) return UV_ENOMEM;
    memcpy(o->data, tw->out + off, len - off);
    o->user = user;
    uv_buf_t b = uv_buf_init(o->data, (unsigned)(len - off));
    int err = uv_write(&o->req, s, &b, 1, tls_on_out);
    if (err < 0) {
        free(o);
        return err;
    }
    return 1;
}

/* ---- failures ---------------------------------------------------------- */

static enum tls_fail_reason tls_reason_of(unsigned long e) {
    if (ERR_GET_LIB(e) != ERR_LIB_SSL) return TLS_FAIL_OTHER;
    switch (ERR_GET_REASON(e)) {
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST: return TLS_FAIL_HTTP;
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION: return TLS_FAIL_PROTOCOL;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_KEY_SHARE:
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE: return TLS_FAIL_CIPHER;
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_CERTIFICATE_VERIFY_FAILED: return TLS_FAIL_CERTIFICATE;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING: return TLS_FAIL_EOF;
    case SSL_R_BAD_PACKET:
    case SSL_R_BAD_LENGTH:
    case SSL_R_BAD_EXTENSION:
    case SSL_R_LENGTH_MISMATCH:
    case SSL_R_LENGTH_TOO_SHORT:
    case SSL_R_RECORD_LENGTH_MISMATCH:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_ENCRYPTED_LENGTH_TOO_LONG:
    case SSL_R_EXCESSIVE_MESSAGE_SIZE:
    case SSL_R_UNEXPECTED_MESSAGE:
    case SSL_R_UNEXPECTED_RECORD:
    case SSL_R_NO_RENEGOTIATION: return TLS_FAIL_MESSAGE;
    default: return TLS_FAIL_OTHER;
    }
}

/* A plain HTTP client on a TLS port gets an answer it can show. */
static void tls_answer_plain_http(struct tls_conn *tc) {
    static const char resp[] = "HTTP/1.1 400 Bad Request\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 56\r\n"
                               "Connection: close\r\n"
                               "\r\n"
                               "400 Bad Request: this port speaks HTTPS, not plain HTTP\n";
    uv_buf_t b = uv_buf_init((char *)resp, sizeof(resp) - 1);
    (void)uv_try_write(tc->t->stream, &b, 1);
}

static void tls_count(struct tls_conn *tc, enum tls_fail_reason r) {
    if (tc->server && tc->fails && !tc->failed) stat_add(&tc->fails[r], 1);
}

/* Tells the reader its side ended with ERR (UV_EOF for an orderly end);
 * nothing more will be read. */
static void tls_end_reading(struct tls_conn *tc, int err) {
    struct transport *t = tc->t;
    if (!t->reading || tc->closing) return;
    uv_buf_t none = uv_buf_init(NULL, 0);
    t->reading = false;
    t->reader->read(t, err, &none);
}

/* Sends our close_notify when it costs one try: a peer must not count on
 * it, and the peer's is not awaited. */
static void tls_say_goodbye(struct tls_conn *tc) {
    (void)SSL_shutdown(tc->ssl);
    ERR_clear_error();
    (void)tls_flush(tc, NULL);
}

/* The connection cannot go on: reading ends with ERR and writes waiting
 * for the handshake fail with it. */
static void tls_fail(struct tls_conn *tc, int err, enum tls_fail_reason reason, const char *why) {
    struct transport *t = tc->t;
    if (tc->failed || tc->closing) return;
    if (!tc->handshake_done) {
        tls_count(tc, reason);
        log_debug("TLS handshake failed (%s): %s", tls_fail_names[reason], why);
        if (reason == TLS_FAIL_HTTP) tls_answer_plain_http(tc);
    }
    tc->failed = true;
    if (!tc->error) tc->error = why;
    ERR_clear_error();
    tls_sock_update(tc);
    if (tc->ready) {
        transport_tls_ready_cb ready = tc->ready;
        tc->ready = NULL;
        ready(t, err);
    }
    while (tc->pend_head && !tc->closing) {
        struct transport_write *w = tc->pend_head;
        tc->pend_head = w->u.tls.next;
        tc->pend_bytes -= w->u.tls.len;
        w->cb(w, err);
    }
    tc->pend_tail = NULL;
    tls_end_reading(tc, err);
}

/* After an OpenSSL call returned R <= 0. */
static void tls_fail_ssl(struct tls_conn *tc, int r) {
    int e = SSL_get_error(tc->ssl, r);
    unsigned long code = ERR_peek_last_error();
    if (!tc->server && SSL_get_verify_result(tc->ssl) != X509_V_OK) {
        log_debug("TLS to upstream: certificate verify failed: %s",
                  X509_verify_cert_error_string(SSL_get_verify_result(tc->ssl)));
        tls_fail(tc, UV_EPROTO, TLS_FAIL_CERTIFICATE, "certificate verify failed");
        return;
    }
    if (e == SSL_ERROR_SYSCALL && !code) {
        tls_fail(tc, UV_EOF, TLS_FAIL_EOF, "connection closed during the TLS handshake");
        return;
    }
    enum tls_fail_reason reason = tls_reason_of(code);
    const char *why = code ? ERR_reason_error_string(code) : NULL;
    tls_fail(tc, UV_EPROTO, reason, why ? why : "TLS error");
}

/* ---- the handshake and reads ------------------------------------------- */

/* Encrypts and sends one write; 0, 1 or a UV_E* code as transport_write. */
static int tls_write_now(struct tls_conn *tc, struct transport_write *w, const char *data,
                         size_t len) {
    if (len == 0) return 0;
    int r = SSL_write(tc->ssl, data, (int)len);
    if (r <= 0) {
        tc->tw->out_len = 0;
        ERR_clear_error();
        return UV_EPROTO;
    }
    return tls_flush(tc, w);
}

static void tls_send_pending(struct tls_conn *tc) {
    while (tc->pend_head && !tc->closing && !tc->failed) {
        struct transport_write *w = tc->pend_head;
        tc->pend_head = w->u.tls.next;
        if (!tc->pend_head) tc->pend_tail = NULL;
        tc->pend_bytes -= w->u.tls.len;
        int r = tls_write_now(tc, w, w->u.tls.data, w->u.tls.len);
        if (r != 1) w->cb(w, r); /* promised a callback when it was queued */
    }
}

/* Runs the handshake on what arrived; false when the connection failed or
 * the handshake needs more bytes. */
static bool tls_handshake(struct tls_conn *tc) {
    if (tc->handshake_done) return true;
    int r = SSL_do_handshake(tc->ssl);
    int ferr = tls_flush(tc, NULL);
    if (r == 1 && ferr >= 0) {
        tc->handshake_done = true;
        if (tc->ready) {
            transport_tls_ready_cb ready = tc->ready;
            tc->ready = NULL;
            ready(tc->t, 0);
            if (tc->closing) return false;
        }
        tls_send_pending(tc);
        return !tc->closing && !tc->failed;
    }
    if (ferr < 0) {
        tls_fail(tc, ferr, TLS_FAIL_OTHER, uv_strerror(ferr));
        return false;
    }
    int e = SSL_get_error(tc->ssl, r);
    if (e != SSL_ERROR_WANT_READ) tls_fail_ssl(tc, r);
    return false;
}

static bool tls_has_input(const struct tls_conn *tc) {
    return (tc->in && tc->in_off < tc->in_len) || SSL_has_pending(tc->ssl);
}

/* Moves what arrived through OpenSSL to the reader, as far as it reads. */
static void tls_pump(struct tls_conn *tc) {
    struct transport *t = tc->t;
    if (tc->closing || tc->failed || tc->read_done) return;
    if (!tls_handshake(tc)) goto done;
    while (t->reading && tls_has_input(tc)) {
        uv_buf_t b = uv_buf_init(NULL, 0);
        t->reader->alloc(t, &b);
        if (tc->closing) return;
        if (b.len == 0) {
            t->reader->read(t, UV_ENOBUFS, &b);
            if (tc->closing) return;
            if (t->reading) tls_defer(tc); /* try again soon, as libuv would */
            break;
        }
        int n = SSL_read(tc->ssl, b.base, (int)b.len);
        int ferr = tls_flush(tc, NULL); /* a KeyUpdate answer, say */
        if (n > 0 && ferr >= 0) {
            t->reader->read(t, n, &b);
            if (tc->closing || tc->failed) return;
            continue;
        }
        int e = n > 0 ? SSL_ERROR_NONE : SSL_get_error(tc->ssl, n);
        if (ferr >= 0 && e == SSL_ERROR_WANT_READ) {
            t->reader->read(t, 0, &b);
            if (tc->closing) return;
            break;
        }
        t->reader->read(t, 0, &b); /* hand the buffer back first */
        if (tc->closing) return;
        if (ferr < 0) {
            tls_fail(tc, ferr, TLS_FAIL_OTHER, uv_strerror(ferr));
        } else if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: an orderly end */
            tc->read_done = true; /* we may still write: a half-close */
            tls_sock_update(tc);
            tls_end_reading(tc, UV_EOF);
        } else {
            tls_fail_ssl(tc, n);
        }
        return;
    }
done:
    if (tc->closing) return;
    if (tc->in && tc->in_off == tc->in_len) {
        buffer_put(tc->tw->pool, tc->in);
        tc->in = NULL;
    }
    tls_sock_update(tc);
}

static void tls_sock_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
    FERRY_UNUSED(suggested);
    struct tls_conn *tc = h->data;
    char *block = tc->in ? NULL : buffer_get(tc->tw->pool);
    *out = uv_buf_init(block, block ? BUFFER_SIZE : 0);
}

static void tls_sock_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    struct tls_conn *tc = s->data;
    if (nread > 0) {
        tc->got_bytes = true;
        tc->in = buf->base;
        tc->in_off = 0;
        tc->in_len = (size_t)nread;
        tls_pump(tc);
        return;
    }
    if (buf->base) buffer_put(tc->tw->pool, buf->base);
    if (nread == 0 || nread == UV_ENOBUFS) return;
    tc->sock_reading = false; /* libuv stopped by itself */
    if (!tc->handshake_done) {
        if (nread == UV_EOF && !tc->got_bytes) {
            /* a port probe or a load balancer's check: not a failed handshake */
            tc->failed = true;
            tc->error = "connection closed before the TLS handshake";
            tls_end_reading(tc, UV_EOF);
            return;
        }
        tls_fail(tc, (int)nread, TLS_FAIL_EOF, nread == UV_EOF
                                                   ? "connection closed during the TLS handshake"
                                                   : uv_strerror((int)nread));
        return;
    }
    /* A TCP end without close_notify: HTTP's own framing says whether a
     * message was whole, as for a plain connection. Writing may go on (a
     * half-close), unless the socket itself failed. */
    if (nread == UV_EOF)
        tc->read_done = true;
    else
        tc->failed = true;
    tls_end_reading(tc, (int)nread);
}

/* The socket is read while the handshake runs, and after it while the
 * reader reads and OpenSSL has taken every byte already read. */
static void tls_sock_update(struct tls_conn *tc) {
    bool want = !tc->failed && !tc->read_done && !tc->closing && !tc->in &&
                (!tc->handshake_done || tc->t->reading);
    if (want == tc->sock_reading) return;
    if (want) {
        int err = uv_read_start(tc->t->stream, tls_sock_alloc, tls_sock_read);
        tc->sock_reading = err == 0;
    } else {
        uv_read_stop(tc->t->stream);
        tc->sock_reading = false;
    }
}

/* ---- the ops ----------------------------------------------------------- */

static int tls_read_start(struct transport *t) {
    struct tls_conn *tc = tls_of(t);
    if (t->reading) return 0;
    if (tc->failed || tc->read_done) return UV_EOF;
    t->reading = true;
    if (tls_has_input(tc))
        tls_defer(tc);
    else
        tls_sock_update(tc);
    return 0;
}

static void tls_read_stop(struct transport *t) {
    struct tls_conn *tc = tls_of(t);
    if (!t->reading) return;
    t->reading = false;
    tls_sock_update(tc);
}

static int tls_write(struct transport *t, struct transport_write *req, const char *data,
                     size_t len, transport_write_cb cb) {
    struct tls_conn *tc = tls_of(t);
    if (tc->failed || tc->closing) return UV_EPIPE;
    req->t = t;
    req->cb = cb;
    if (tc->handshake_done && !tc->pend_head) return tls_write_now(tc, req, data, len);
    req->u.tls.data = data;
    req->u.tls.len = len;
    req->u.tls.next = NULL;
    if (tc->pend_tail)
        tc->pend_tail->u.tls.next = req;
    else
        tc->pend_head = req;
    tc->pend_tail = req;
    tc->pend_bytes += len;
    return 1;
}

static size_t tls_queued(const struct transport *t) {
    const struct tls_conn *tc = tls_of(t);
    return t->stream->write_queue_size + tc->pend_bytes;
}

static int tls_shutdown(struct transport *t, uv_shutdown_t *req, uv_shutdown_cb cb) {
    struct tls_conn *tc = tls_of(t);
    if (tc->handshake_done && !tc->failed && !tc->pend_head) tls_say_goodbye(tc);
    return uv_shutdown(req, t->stream, cb);
}

static void tls_on_close(uv_handle_t *h) {
    struct tls_conn *tc = h->data;
    struct transport *t = tc->t;
    while (tc->pend_head) { /* as libuv cancels its queued writes */
        struct transport_write *w = tc->pend_head;
        tc->pend_head = w->u.tls.next;
        w->cb(w, UV_ECANCELED);
    }
    if (tc->in) buffer_put(tc->tw->pool, tc->in);
    SSL_free(tc->ssl);
    uv_close_cb cb = tc->close_cb;
    h->data = t;
    free(tc);
    if (cb) cb(h);
}

static void tls_close(struct transport *t, bool reset, uv_close_cb cb) {
    struct tls_conn *tc = tls_of(t);
    uv_handle_t *h = (uv_handle_t *)t->stream;
    if (tc->server && !tc->handshake_done && tc->got_bytes) tls_count(tc, TLS_FAIL_TIMEOUT);
    if (tc->handshake_done && !tc->failed && !reset && t->stream->write_queue_size == 0)
        tls_say_goodbye(tc);
    tc->closing = true;
    t->reading = false;
    list_remove(&tc->deferred);
    tc->close_cb = cb;
    if (reset && h->type == UV_TCP && uv_tcp_close_reset((uv_tcp_t *)h, tls_on_close) == 0) return;
    uv_close(h, tls_on_close);
}

static const struct transport_ops transport_tls_ops = {
    .name = "tls",
    .read_start = tls_read_start,
    .read_stop = tls_read_stop,
    .write = tls_write,
    .queued = tls_queued,
    .shutdown = tls_shutdown,
    .close = tls_close,
};

/* ---- set-up ------------------------------------------------------------ */

static struct tls_conn *tls_conn_new(struct transport *t, uv_stream_t *stream,
                                     struct tls_worker *tw, SSL_CTX *ctx) {
    pthread_once(&tls_bio_once, tls_bio_make);
    if (!tls_bio_method) return NULL;
    struct tls_conn *tc = calloc(1, sizeof(*tc));
    if (!tc) return NULL;
    BIO *bio = BIO_new(tls_bio_method);
    if (!bio || !(tc->ssl = SSL_new(ctx))) {
        BIO_free(bio);
        free(tc);
        ERR_clear_error();
        return NULL;
    }
    BIO_set_data(bio, tc);
    SSL_set_bio(tc->ssl, bio, bio);
    SSL_set_app_data(tc->ssl, tc);
    tc->t = t;
    tc->tw = tw;
    list_init(&tc->deferred);
    *t = (struct transport){.ops = &transport_tls_ops, .stream = stream};
    stream->data = tc;
    return tc;
}

int transport_tls_server_init(struct transport *t, uv_stream_t *stream, struct tls_worker *tw,
                              const struct tls_server *srv, stat_t *fails, char *block,
                              size_t off, size_t len) {
    struct tls_conn *tc = tls_conn_new(t, stream, tw, srv->certs[0].ctx);
    if (!tc) return UV_ENOMEM;
    tc->server = true;
    tc->fails = fails;
    SSL_set_accept_state(tc->ssl);
    if (block && len) {
        tc->in = block;
        tc->in_off = off;
        tc->in_len = off + len;
        tc->got_bytes = true;
    } else if (block) {
        buffer_put(tw->pool, block);
    }
    return 0;
}

static bool is_ip_literal(const char *host) {
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* OpenSSL hands over a new session (a TLS 1.3 ticket may come after the
 * handshake): keep it for the next connection to the same server. */
static int tls_on_new_session(SSL *ssl, SSL_SESSION *sess) {
    struct tls_conn *tc = SSL_get_app_data(ssl);
    if (!tc || !tc->session || tc->closing) return 0;
    SSL_SESSION_free(*tc->session);
    *tc->session = sess;
    return 1; /* we keep the reference */
}

void transport_tls_client_ctx_prepare(SSL_CTX *ctx) {
    SSL_CTX_sess_set_new_cb(ctx, tls_on_new_session);
}

int transport_tls_client_init(struct transport *t, uv_stream_t *stream, struct tls_worker *tw,
                              const struct tls_client *cli, const char *host,
                              SSL_SESSION **session, transport_tls_ready_cb ready) {
    struct tls_conn *tc = tls_conn_new(t, stream, tw, cli->ctx);
    if (!tc) return UV_ENOMEM;
    const char *name = cli->sni ? cli->sni : host;
    bool ip = is_ip_literal(name);
    if (!ip) SSL_set_tlsext_host_name(tc->ssl, name);
    if (cli->verify) {
        if (ip)
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(tc->ssl), name);
        else
            SSL_set1_host(tc->ssl, name);
    }
    tc->session = session;
    tc->ready = ready;
    if (session && *session) SSL_set_session(tc->ssl, *session);
    SSL_set_connect_state(tc->ssl);
    /* The ClientHello goes out now; the answer is read by itself. */
    tls_pump(tc);
    return 0;
}

void tls_session_free(SSL_SESSION *s) {
    SSL_SESSION_free(s);
}

bool transport_is_tls(const struct transport *t) {
    return t->ops == &transport_tls_ops;
}

const char *transport_tls_error(const struct transport *t) {
    return transport_is_tls(t) ? tls_of(t)->error : NULL;
}

const char *transport_tls_version(const struct transport *t) {
    return transport_is_tls(t) ? SSL_get_version(tls_of(t)->ssl) : NULL;
}

bool transport_tls_resumed(const struct transport *t) {
    return transport_is_tls(t) && SSL_session_reused(tls_of(t)->ssl);
}
