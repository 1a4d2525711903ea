/* acme_http: an HTTPS client on libuv for the ACME client; see acme_http.h.
 *
 * A request's life, each step a callback on the main loop:
 *   getaddrinfo -> tcp connect -> TLS handshake (transport_tls) -> write the
 *   request -> read and parse the response (llhttp) -> callback -> close.
 * finish() is the one exit: it runs the callback once and closes what is
 * open; the request is freed when its last handle has closed. */
#include "ferry/acme_http.h"

#include <llhttp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ferry/buffer.h"
#include "ferry/strbuf.h"
#include "ferry/tls.h"
#include "ferry/transport_tls.h"

struct acme_http {
    uv_loop_t *loop;
    struct buffer_pool pool; /* transport_tls reads ciphertext into these */
    struct tls_worker tw;
    struct tls_client cli; /* the CA's server is verified against cli.ctx */
    struct list_node reqs; /* requests not yet freed */
    bool freeing;          /* acme_http_free ran: free once reqs is empty */
    char error[256];
};

struct acme_req {
    struct list_node node; /* in c->reqs */
    struct acme_http *c;
    acme_http_cb cb;
    void *arg;
    char *host, *port; /* from the URL */
    bool head;         /* a HEAD request: the response has no body */
    char *out;         /* the request bytes, until written */
    size_t out_len;
    uv_getaddrinfo_t gai;
    bool gai_active;
    uv_tcp_t tcp;
    bool tcp_open, tls_open; /* tcp initialised; the TLS transport made on it */
    uv_connect_t connect;
    struct transport tp;
    struct transport_write w;
    uv_timer_t timer;
    int handles; /* open handles: timer, tcp */
    llhttp_t parser;
    struct strbuf field, value, body;
    bool in_value; /* llhttp is in a header value */
    char *location, *nonce, *ctype;
    uint64_t retry_after;
    bool complete, done;
    char rbuf[16384];
};

static void req_finish(struct acme_req *r, int err, const char *why);
static void req_free(struct acme_req *r);

/* ---- response parsing -------------------------------------------------- */

static struct acme_req *req_of(llhttp_t *p) {
    return container_of(p, struct acme_req, parser);
}

static int on_field(llhttp_t *p, const char *at, size_t n) {
    struct acme_req *r = req_of(p);
    if (r->field.len + n > ACME_HTTP_MAX_HEADER) return -1;
    strbuf_add(&r->field, at, n);
    return 0;
}

static int on_value(llhttp_t *p, const char *at, size_t n) {
    struct acme_req *r = req_of(p);
    if (r->value.len + n > ACME_HTTP_MAX_HEADER) return -1;
    strbuf_add(&r->value, at, n);
    return 0;
}

/* A header is whole: keep the few ACME needs. */
static int on_value_complete(llhttp_t *p) {
    struct acme_req *r = req_of(p);
    const char *name = strbuf_cstr(&r->field), *v = strbuf_cstr(&r->value);
    char **slot = strcasecmp(name, "location") == 0       ? &r->location
                  : strcasecmp(name, "replay-nonce") == 0 ? &r->nonce
                  : strcasecmp(name, "content-type") == 0 ? &r->ctype
                                                          : NULL;
    if (slot) {
        free(*slot);
        *slot = xstrdup(v);
    } else if (strcasecmp(name, "retry-after") == 0) {
        /* the delta-seconds form; an HTTP-date counts as absent */
        char *end;
        unsigned long long s = strtoull(v, &end, 10);
        if (end != v && *end == '\0' && s < 86400ull * 30) r->retry_after = s;
    }
    r->field.len = r->value.len = 0;
    return 0;
}

static int on_headers_complete(llhttp_t *p) {
    return req_of(p)->head ? 1 : 0; /* 1: no body follows */
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
    struct acme_req *r = req_of(p);
    if (r->body.len + n > ACME_HTTP_MAX_BODY) return -1;
    strbuf_add(&r->body, at, n);
    return 0;
}

static int on_complete(llhttp_t *p) {
    req_of(p)->complete = true;
    return HPE_PAUSED; /* one response; anything after it is not ours */
}

static const llhttp_settings_t parse_settings = {
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_header_value_complete = on_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_complete,
};

/* ---- the exchange ------------------------------------------------------ */

static void req_alloc(struct transport *t, uv_buf_t *out) {
    struct acme_req *r = t->data;
    *out = uv_buf_init(r->rbuf, sizeof(r->rbuf));
}

static void req_read(struct transport *t, ssize_t n, const uv_buf_t *buf) {
    struct acme_req *r = t->data;
    if (n == 0 || r->done) return;
    llhttp_errno_t e;
    if (n < 0) {
        /* a response delimited by the end of the connection ends here */
        e = n == UV_EOF ? llhttp_finish(&r->parser) : HPE_USER;
        if (!r->complete)
            req_finish(r, n == UV_EOF ? UV_EPROTO : (int)n,
                       e == HPE_OK ? "the connection ended mid-response" : uv_strerror((int)n));
        else
            req_finish(r, 0, NULL);
        return;
    }
    e = llhttp_execute(&r->parser, buf->base, (size_t)n);
    if (r->complete)
        req_finish(r, 0, NULL);
    else if (e != HPE_OK)
        req_finish(r, UV_EPROTO, "a malformed or oversized response");
}

static const struct transport_reader req_reader = {req_alloc, req_read};

static void req_on_write(struct transport_write *w, int status) {
    struct acme_req *r = container_of(w, struct acme_req, w);
    if (status < 0) req_finish(r, status, uv_strerror(status));
}

static void req_on_ready(struct transport *t, int status) {
    struct acme_req *r = container_of(t, struct acme_req, tp);
    if (r->done) return;
    if (status < 0) {
        const char *why = transport_tls_error(t);
        req_finish(r, status, why ? why : uv_strerror(status));
        return;
    }
    t->data = r;
    int err = transport_write(t, &r->w, r->out, r->out_len, req_on_write);
    if (err < 0 || (err = transport_read_start(t, &req_reader)) < 0)
        req_finish(r, err, uv_strerror(err));
}

static void req_on_connect(uv_connect_t *cr, int status) {
    struct acme_req *r = container_of(cr, struct acme_req, connect);
    if (r->done) return;
    if (status < 0) {
        req_finish(r, status, uv_strerror(status));
        return;
    }
    int err = transport_tls_client_init(&r->tp, (uv_stream_t *)&r->tcp, &r->c->tw, &r->c->cli,
                                        r->host, NULL, req_on_ready);
    if (err < 0) {
        req_finish(r, err, "out of memory for TLS");
        return;
    }
    r->tls_open = true;
}

static void req_on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res) {
    struct acme_req *r = container_of(g, struct acme_req, gai);
    r->gai_active = false;
    if (r->done) { /* finished (timeout, free) while resolving */
        uv_freeaddrinfo(res);
        if (r->handles == 0) req_free(r);
        return;
    }
    int err = status;
    if (err == 0) {
        /* the first address only: a CA's name that resolves to a dead
         * address is retried with the whole order, with backoff */
        uv_tcp_init(r->c->loop, &r->tcp);
        r->tcp_open = true;
        r->handles++;
        err = uv_tcp_connect(&r->connect, &r->tcp, res->ai_addr, req_on_connect);
    }
    uv_freeaddrinfo(res);
    if (err < 0) req_finish(r, err, uv_strerror(err));
}

static void client_on_close(uv_handle_t *h) {
    struct acme_http *c = container_of((uv_idle_t *)h, struct acme_http, tw.idle);
    buffer_pool_destroy(&c->pool); /* every block is back: no transport is left */
    SSL_CTX_free(c->cli.ctx);
    free(c);
}

static void client_close(struct acme_http *c) {
    tls_worker_close_then(&c->tw, client_on_close);
}

static void req_free(struct acme_req *r) {
    struct acme_http *c = r->c;
    list_remove(&r->node);
    strbuf_free(&r->field);
    strbuf_free(&r->value);
    strbuf_free(&r->body);
    free(r->location);
    free(r->nonce);
    free(r->ctype);
    free(r->out);
    free(r->host);
    free(r->port);
    free(r);
    if (c->freeing && list_empty(&c->reqs)) client_close(c);
}

static void req_on_close(uv_handle_t *h) {
    struct acme_req *r = h->data;
    if (--r->handles == 0 && !r->gai_active) req_free(r);
}

static void req_on_tcp_close(uv_handle_t *h) {
    struct acme_req *r = container_of((uv_tcp_t *)h, struct acme_req, tcp);
    h->data = r;
    req_on_close(h);
}

static void req_on_timeout(uv_timer_t *t) {
    req_finish(t->data, UV_ETIMEDOUT, "timed out");
}

/* The one exit: the callback once, then everything closed. */
static void req_finish(struct acme_req *r, int err, const char *why) {
    if (!r->done) {
        r->done = true;
        if (err < 0 && why) snprintf(r->c->error, sizeof(r->c->error), "%s", why);
        struct acme_resp resp = {
            .status = llhttp_get_status_code(&r->parser),
            .body = r->body.len ? strbuf_cstr(&r->body) : "",
            .body_len = r->body.len,
            .location = r->location,
            .nonce = r->nonce,
            .content_type = r->ctype,
            .retry_after_s = r->retry_after,
        };
        r->cb(r->arg, err, err < 0 ? NULL : &resp);
        uv_close((uv_handle_t *)&r->timer, req_on_close);
        if (r->tls_open)
            transport_close(&r->tp, false, req_on_tcp_close);
        else if (r->tcp_open)
            uv_close((uv_handle_t *)&r->tcp, req_on_tcp_close);
        if (r->gai_active) uv_cancel((uv_req_t *)&r->gai);
    }
}

/* Splits https://HOST[:PORT]/PATH. */
static bool url_split(const char *url, char **host, char **port, const char **path) {
    if (strncasecmp(url, "https://", 8) != 0) return false;
    const char *h = url + 8, *end = h + strcspn(h, "/?#");
    const char *colon = NULL;
    if (*h == '[') {
        const char *close = memchr(h, ']', (size_t)(end - h));
        if (!close) return false;
        colon = close[1] == ':' ? close + 1 : NULL;
        *host = xstrndup(h + 1, (size_t)(close - h - 1));
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        *host = xstrndup(h, (size_t)((colon ? colon : end) - h));
    }
    *port = colon ? xstrndup(colon + 1, (size_t)(end - colon - 1)) : xstrdup("443");
    *path = *end == '/' ? end : "/";
    if (**host && **port) return true;
    free(*host);
    free(*port);
    return false;
}

int acme_http_request(struct acme_http *c, const char *method, const char *url, const char *body,
                      acme_http_cb cb, void *arg) {
    struct acme_req *r = xcalloc(1, sizeof(*r));
    const char *path;
    if (!url_split(url, &r->host, &r->port, &path)) {
        free(r);
        return UV_EINVAL;
    }
    r->c = c;
    r->cb = cb;
    r->arg = arg;
    r->head = strcmp(method, "HEAD") == 0;
    struct strbuf out = STRBUF_INIT;
    bool default_port = strcmp(r->port, "443") == 0, v6 = strchr(r->host, ':') != NULL;
    strbuf_printf(&out, "%s %s HTTP/1.1\r\nHost: %s%s%s%s%s\r\n", method, path, v6 ? "[" : "",
                  r->host, v6 ? "]" : "", default_port ? "" : ":", default_port ? "" : r->port);
    strbuf_printf(&out, "User-Agent: ferry/%s\r\nAccept: */*\r\nConnection: close\r\n",
                  FERRY_VERSION);
    if (body)
        strbuf_printf(&out, "Content-Type: application/jose+json\r\nContent-Length: %zu\r\n\r\n%s",
                      strlen(body), body);
    else
        strbuf_adds(&out, "\r\n");
    r->out_len = out.len;
    r->out = strbuf_take(&out);
    llhttp_init(&r->parser, HTTP_RESPONSE, &parse_settings);
    list_push_front(&c->reqs, &r->node);
    uv_timer_init(c->loop, &r->timer);
    r->timer.data = r;
    r->handles = 1;
    uv_timer_start(&r->timer, req_on_timeout, ACME_HTTP_TIMEOUT_MS, 0);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int err = uv_getaddrinfo(c->loop, &r->gai, req_on_resolved, r->host, r->port, &hints);
    if (err == 0) {
        r->gai_active = true;
        return 0;
    }
    /* not from inside this call: the timer's close frees it, the caller
     * hears nothing (its callback must never run for a returned error) */
    r->done = true;
    uv_close((uv_handle_t *)&r->timer, req_on_close);
    return err;
}

struct acme_http *acme_http_new(uv_loop_t *loop, const char *ca_file, char *err, size_t len) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, len, "no TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    transport_tls_client_ctx_prepare(ctx);
    if ((ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                 : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
        snprintf(err, len, "cannot load %s", ca_file ? ca_file : "the system's CAs");
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    struct acme_http *c = xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->cli = (struct tls_client){.ctx = ctx, .verify = true};
    buffer_pool_init(&c->pool, 2);
    tls_worker_init(&c->tw, loop, &c->pool);
    list_init(&c->reqs);
    return c;
}

void acme_http_free(struct acme_http *c) {
    if (!c) return;
    c->freeing = true;
    if (list_empty(&c->reqs)) {
        client_close(c);
        return;
    }
    for (struct list_node *n = c->reqs.next, *next; n != &c->reqs; n = next) {
        next = n->next;
        req_finish(container_of(n, struct acme_req, node), UV_ECANCELED, NULL);
    }
}

const char *acme_http_error(const struct acme_http *c) {
    return c->error;
}
