/* explain: `ferry --explain 'METHOD URL'`.
 *
 * Three steps, each its own group of functions below:
 *
 *   "GET http://api.example.com/api/users"
 *      | req_parse: method, host (authority as written), port, path, query;
 *      |            the path normalised as the proxy does (or a 400)
 *      v
 *   listeners_pick: http listeners bound to the URL's port, else all of them
 *      |
 *      v  for each listener: route_table_build + route_explain
 *   verdicts[], in precedence order (route.c decides, we only describe)
 *      |
 *      v
 *   print: listener, winning route and why, upstream, target upstream-side,
 *          routes that matched and lost (why), routes that did not match (why)
 *
 * Why a route lost is found by comparing it with the winner rule by rule in
 * SPEC's order (host, then path, then methods, then route.c's tie-breaks);
 * the first rule on which they differ is the reason. Why the winner won is
 * the same comparison against the runner-up. The output is meant to be
 * pasted into a bug report: every route and upstream carries FILE:LINE.
 *
 * `SNI NAME[:PORT]` asks the same of the tcp listeners that route by sni:
 * which route a ClientHello naming NAME takes (explain_sni, at the end). */
#include "ferry/explain.h"
#include "ferry/http.h"

#include <assert.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ferry/config.h"
#include "ferry/http_path.h"
#include "ferry/route.h"
#include "ferry/tls.h"
#include "ferry/util.h"

#define EXPLAIN_USAGE                                                                              \
    "expected 'METHOD http://HOST[:PORT]/PATH[?QUERY]', 'METHOD /PATH' or 'SNI NAME[:PORT]'"

/* The request text taken apart. Every string is owned (req_free). */
struct explain_req {
    char *method;        /* the token as written ("GET") */
    char *url;           /* the URL as written, fragment included, for the header */
    char *host;          /* authority as written ("api.example.com:8080"); "" for a bare path */
    char *path;          /* "/api/users" (or "*"), without query or fragment, normalised */
    char *sent;          /* the path as written when normalising changed it, else NULL */
    const char *refused; /* why ferry answers 400 to this path, else NULL */
    char *query;         /* "?x=1" or "" */
    unsigned port;       /* the URL's port, 80 when absent; 0 for a bare path */
    bool fragment;       /* a "#fragment" was dropped, as a client would */
};

/* One listener's walk of its route table. */
struct explain_walk {
    struct route_verdict *v; /* verdicts in precedence order */
    size_t n;                /* verdicts recorded */
    size_t cap;              /* room in v */
};

/* The rule that separates a winner from a route that lost to it. */
enum explain_rule {
    RULE_HOST = 0,  /* exact > longer suffix > shorter suffix > no host */
    RULE_PATH_KIND, /* `path` beats `path_prefix` */
    RULE_PATH_LEN,  /* a longer prefix beats a shorter one */
    RULE_METHODS,   /* a route with `methods` beats one without */
    RULE_FEWER,     /* route.c's tie-break: fewer methods */
    RULE_NAME,      /* route.c's last tie-break: the smaller name */
};

static int req_parse(struct explain_req *q, const char *text, const char **why);
static int req_url(struct explain_req *q, const char *url, const char **why);
static int req_authority(struct explain_req *q, const char *a, size_t n, const char **why);
static int req_port(const char *p, size_t n, unsigned *port);
static void req_normalise(struct explain_req *q);
static void req_free(struct explain_req *q);
static const struct config_listener **
listeners_pick(const struct config *cfg, const struct explain_req *q, size_t *n, bool *all);
static void walk_on_verdict(const struct route_verdict *v, void *arg);
static bool explain_listener(const struct config *cfg, const struct config_listener *l,
                             const struct explain_req *q, FILE *out);
static enum explain_rule rule_between(const struct route_verdict *w, const struct route_verdict *l);
static void print_request(FILE *out, const struct explain_req *q);
struct tls_set;
static void print_certificate(FILE *out, const struct config *cfg, const struct tls_set *tls,
                              const struct config_listener *l, const struct explain_req *q);
static void print_listener(FILE *out, const struct config *cfg, const struct config_listener *l,
                           const struct explain_req *q, bool all);
static void print_methods(FILE *out, const struct config_route *r);
static void print_rule(FILE *out, const struct route_verdict *v);
static void print_host(FILE *out, const struct route_verdict *v);
static void print_winner(FILE *out, const struct config *cfg, const struct explain_walk *w,
                         size_t win, const struct explain_req *q);
static void print_why_won(FILE *out, const struct route_verdict *w, const struct route_verdict *r);
static void print_why_lost(FILE *out, const struct route_verdict *w, const struct route_verdict *l);
static void print_upstream(FILE *out, const struct config *cfg, const struct config_upstream *u);
static void print_target(FILE *out, const struct explain_req *q, const struct config_route *r);
static void print_headers(FILE *out, const struct config_route *r);
static void print_route_extras(FILE *out, const struct config_route *r);
static void print_losers(FILE *out, const struct config *cfg, const struct explain_walk *w,
                         size_t win);
static void print_misses(FILE *out, const struct config *cfg, const struct explain_walk *w,
                         const struct config_listener *l, const struct explain_req *q);
static void print_miss(FILE *out, const struct route_verdict *v, const struct explain_req *q);
static const char *sni_request(const char *text);
static int explain_sni(const struct config *cfg, const char *request, const char *name, FILE *out,
                       FILE *err);

/* ---- the request text ---------------------------------------------------- */

/* "METHOD URL", blanks around and between allowed (it comes from a shell).
 * Returns 0, or -1 with *WHY set (Q then holds nothing to free). */
static int req_parse(struct explain_req *q, const char *text, const char **why) {
    *q = (struct explain_req){0};
    while (*text == ' ' || *text == '\t')
        text++;
    size_t m = 0;
    while (util_is_tchar((unsigned char)text[m]))
        m++;
    const char *rest = text + m;
    if (m == 0 || (*rest != ' ' && *rest != '\t' && *rest != '\0')) {
        *why = "the method must be a token such as GET";
        return -1;
    }
    while (*rest == ' ' || *rest == '\t')
        rest++;
    size_t u = strlen(rest);
    while (u > 0 && (rest[u - 1] == ' ' || rest[u - 1] == '\t'))
        u--;
    if (u == 0) {
        *why = "no URL after the method";
        return -1;
    }
    q->method = xstrndup(text, m);
    q->url = xstrndup(rest, u);
    if (req_url(q, q->url, why) == 0) return 0;
    req_free(q);
    return -1;
}

/* Splits URL (NUL-terminated) into host, port, path and query. */
static int req_url(struct explain_req *q, const char *url, const char **why) {
    for (const char *p = url; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            *why = "the URL contains a space or a control byte";
            return -1;
        }
    }
    const char *p = url;
    size_t scheme = strncasecmp(url, "http://", 7) == 0    ? 7
                    : strncasecmp(url, "https://", 8) == 0 ? 8
                                                           : 0;
    if (scheme) {
        const char *a = url + scheme;
        size_t n = strcspn(a, "/?#");
        q->port = scheme == 8 ? 443 : 80;
        if (req_authority(q, a, n, why) < 0) return -1;
        p = a + n;
    } else if (url[0] != '/' && strcmp(url, "*") != 0) {
        *why = "the URL must start with http://, https:// or /";
        return -1;
    }
    size_t plen = strcspn(p, "?#");
    size_t qlen = p[plen] == '?' ? strcspn(p + plen, "#") : 0;
    q->path = plen ? xstrndup(p, plen) : xstrdup("/");
    req_normalise(q);
    q->query = xstrndup(p + plen, qlen);
    q->fragment = p[plen + qlen] == '#';
    if (!q->host) q->host = xstrdup("");
    return 0;
}

/* HOST[:PORT] or [IPV6][:PORT], A not NUL-terminated. */
static int req_authority(struct explain_req *q, const char *a, size_t n, const char **why) {
    const char *colon = NULL;
    if (n > 0 && a[0] == '[') {
        const char *end = memchr(a, ']', n);
        if (!end || (end + 1 < a + n && end[1] != ':')) {
            *why = "a bracketed IPv6 host must look like [::1] or [::1]:8080";
            return -1;
        }
        if (end + 1 < a + n) colon = end + 1;
    } else {
        colon = memchr(a, ':', n);
    }
    size_t hlen = colon ? (size_t)(colon - a) : n;
    if (hlen == 0 || memchr(a, '@', n)) {
        *why = hlen ? "user@ in the URL is not allowed (SPEC: Host has no userinfo)"
                    : "no host after the scheme";
        return -1;
    }
    if (colon && req_port(colon + 1, (size_t)(a + n - colon - 1), &q->port) < 0) {
        *why = "the port must be a number 1..65535";
        return -1;
    }
    q->host = xstrndup(a, n);
    return 0;
}

static int req_port(const char *p, size_t n, unsigned *port) {
    unsigned long v = 0;
    if (n == 0 || n > 5) return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    if (v == 0 || v > 65535) return -1;
    *port = (unsigned)v;
    return 0;
}

/* The proxy routes by the normalised path and forwards it (http_path.h):
 * so does the explanation. A path the proxy refuses keeps its text, for
 * the output, and the reason in q->refused. */
static void req_normalise(struct explain_req *q) {
    size_t n = strlen(q->path);
    char *sent = xstrdup(q->path);
    q->refused = http_path_normalise(q->path, &n);
    if (q->refused) {
        free(q->path);
        q->path = sent;
        return;
    }
    q->path[n] = '\0';
    if (strcmp(sent, q->path) != 0)
        q->sent = sent;
    else
        free(sent);
}

static void req_free(struct explain_req *q) {
    free(q->method);
    free(q->url);
    free(q->host);
    free(q->path);
    free(q->sent);
    free(q->query);
    *q = (struct explain_req){0};
}

/* ---- deciding --------------------------------------------------------------- */

/* The http listeners a request to Q's port reaches: those bound to that port
 * (any address: we cannot tell which one the client dials), or, with *ALL
 * set, every http listener when none is or the URL names no host. The array
 * is the caller's to free; *N may be 0 (no http listener at all). */
static const struct config_listener **
listeners_pick(const struct config *cfg, const struct explain_req *q, size_t *n, bool *all) {
    const struct config_listener **out = xcalloc(cfg->nlisteners + 1, sizeof(*out));
    *n = 0;
    *all = false;
    for (size_t pass = 0; pass < 2 && *n == 0; pass++) {
        *all = pass == 1;
        for (size_t i = 0; i < cfg->nlisteners; i++) {
            const struct config_listener *l = &cfg->listeners[i];
            bool port_ok = l->bind.kind == ADDR_INET && l->bind.port == q->port;
            if (l->mode == MODE_HTTP && (*all || port_ok)) out[(*n)++] = l;
        }
    }
    return out;
}

static void walk_on_verdict(const struct route_verdict *v, void *arg) {
    struct explain_walk *w = arg;
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 8;
        w->v = xrealloc(w->v, w->cap * sizeof(*w->v));
    }
    w->v[w->n++] = *v;
}

/* The first rule, in SPEC's order, on which winner W and loser L differ.
 * W is better on that rule: route_explain reports in precedence order. */
static enum explain_rule rule_between(const struct route_verdict *w,
                                      const struct route_verdict *l) {
    const struct config_route *rw = w->route, *rl = l->route;
    if (w->host != l->host || w->suffix_len != l->suffix_len) return RULE_HOST;
    if (rw->path_exact != rl->path_exact) return RULE_PATH_KIND;
    if (strlen(rw->path) != strlen(rl->path)) return RULE_PATH_LEN;
    if ((rw->nmethods > 0) != (rl->nmethods > 0)) return RULE_METHODS;
    if (rw->nmethods != rl->nmethods) return RULE_FEWER;
    return RULE_NAME;
}

/* Explains Q on listener L. Returns whether the request gets an upstream
 * there (a route, or the listener's default). */
static bool explain_listener(const struct config *cfg, const struct config_listener *l,
                             const struct explain_req *q, FILE *out) {
    struct route_table *t = route_table_build(cfg, l);
    struct explain_walk w = {0};
    const struct config_route *r =
        route_explain(t, q->host, strlen(q->host), q->path, strlen(q->path), q->method,
                      strlen(q->method), walk_on_verdict, &w);
    size_t win = 0;
    while (r && win < w.n && w.v[win].route != r)
        win++;
    assert(!r || (win < w.n && w.v[win].won));
    const struct config_route *slash =
        route_slash_redirect(t, q->host, strlen(q->host), q->path, strlen(q->path), q->method,
                             strlen(q->method), r);
    if (slash) {
        fprintf(out, "route:    %s (%s:%d) path_prefix %s would take %s/\n", slash->name,
                cfg->file, slash->line, slash->path, q->path);
        fprintf(out, "result:   308 to %s/%s (the prefix without its slash)\n", q->path, q->query);
        free(w.v);
        route_table_free(t);
        return true;
    }
    if (r) {
        print_winner(out, cfg, &w, win, q);
    } else {
        fprintf(out, "route:    none matched");
        if (l->upstream) {
            fprintf(out, ": listener %s's default upstream takes it\n", l->name);
            print_upstream(out, cfg, l->upstream);
            print_target(out, q, NULL);
        } else {
            fprintf(out, "\nresult:   404: no route and no default upstream\n");
        }
    }
    if (r) print_losers(out, cfg, &w, win);
    print_misses(out, cfg, &w, l, q);
    free(w.v);
    route_table_free(t);
    return r || l->upstream;
}

int explain_run(const struct config *cfg, const struct tls_set *tls, const char *request,
                FILE *out, FILE *err) {
    struct explain_req q;
    const char *why = NULL;
    const char *sni = sni_request(request);
    if (sni) return explain_sni(cfg, request, sni, out, err);
    if (req_parse(&q, request, &why) < 0) {
        fprintf(err, "ferry: --explain '%s': %s\n  %s\n", request, why, EXPLAIN_USAGE);
        return 2; /* bad usage, as the spec says of the command line */
    }
    size_t n;
    bool all;
    const struct config_listener **ls = listeners_pick(cfg, &q, &n, &all);
    print_request(out, &q);
    if (q.refused) {
        fprintf(out, "result:   400: %s\n", q.refused); /* on every listener, before routing */
        n = 0;
    } else if (n == 0) {
        fprintf(out, "listener: none: %s has no http listener\n", cfg->file);
    }
    bool routed = false;
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "\n");
        print_listener(out, cfg, ls[i], &q, all);
        print_certificate(out, cfg, tls, ls[i], &q);
        routed |= explain_listener(cfg, ls[i], &q, out);
    }
    free(ls);
    req_free(&q);
    return routed ? 0 : 1;
}

/* ---- printing ---------------------------------------------------------------- */

static void print_request(FILE *out, const struct explain_req *q) {
    fprintf(out, "request:  %s %s\n", q->method, q->url);
    if (q->host[0])
        fprintf(out, "          host %s, port %u, path %s", q->host, q->port, q->path);
    else
        fprintf(out, "          no host (routes that name hosts cannot match), path %s", q->path);
    if (q->sent) fprintf(out, " (normalised from %s)", q->sent);
    fprintf(out, "%s%s\n", q->query[0] ? ", query " : "", q->query);
    if (q->fragment) fprintf(out, "          (#fragment dropped: clients do not send it)\n");
}

static void print_listener(FILE *out, const struct config *cfg, const struct config_listener *l,
                           const struct explain_req *q, bool all) {
    fprintf(out, "listener: %s (%s, %s:%d)", l->name, l->bind.text, cfg->file, l->line);
    if (all && q->port)
        fprintf(out, "  [port %u matches no http listener: showing every http listener]", q->port);
    else if (all)
        fprintf(out, "  [no port in the URL: showing every http listener]");
    fprintf(out, "\n");
}

/* The certificate a TLS listener presents when the client asks for the
 * URL's host by SNI. */
static void print_certificate(FILE *out, const struct config *cfg, const struct tls_set *tls,
                              const struct config_listener *l, const struct explain_req *q) {
    size_t i = (size_t)(l - cfg->listeners);
    const struct tls_server *srv = tls && i < tls->nlisteners ? tls->listeners[i] : NULL;
    if (!srv) return;
    char host[256];
    size_t hlen = q->host[0] == '[' ? strcspn(q->host, "]") + 1 : strcspn(q->host, ":");
    snprintf(host, sizeof(host), "%.*s", (int)hlen, q->host);
    const struct tls_cert *c = tls_server_pick(srv, host[0] ? host : NULL);
    fprintf(out, "certificate: %s (%s:%d), names", c->file, cfg->file, c->line);
    for (size_t n = 0; n < c->nnames; n++) fprintf(out, "%s%s", n ? ", " : " ", c->names[n]);
    fprintf(out, "%s\n", c == &srv->certs[0] ? " [the default]" : "");
}

static void print_methods(FILE *out, const struct config_route *r) {
    for (size_t i = 0; i < r->nmethods; i++)
        fprintf(out, "%s%s", i ? " " : "", r->methods[i]);
    if (r->nmethods == 0) fprintf(out, "any");
}

static void print_host(FILE *out, const struct route_verdict *v) {
    switch (v->host) {
    case ROUTE_HOST_EXACT: fprintf(out, "host %s (exact)", v->host_pattern); break;
    case ROUTE_HOST_SUFFIX: fprintf(out, "host %s (suffix)", v->host_pattern); break;
    case ROUTE_HOST_ANY:
    case ROUTE_HOST_MISS: fprintf(out, "no host (any)"); break;
    }
}

/* A route's rule as it applied: "host api.example.com (exact), path_prefix
 * /api/, methods GET POST". */
static void print_rule(FILE *out, const struct route_verdict *v) {
    const struct config_route *r = v->route;
    print_host(out, v);
    if (r->path_exact)
        fprintf(out, ", path %s (exact)", r->path);
    else
        fprintf(out, ", path_prefix %s", r->path);
    fprintf(out, ", methods ");
    print_methods(out, r);
}

/* The winning route, why it won, its upstream and what the upstream sees. */
static void print_winner(FILE *out, const struct config *cfg, const struct explain_walk *w,
                         size_t win, const struct explain_req *q) {
    const struct route_verdict *v = &w->v[win];
    const struct route_verdict *runner = NULL;
    for (size_t i = win + 1; i < w->n && !runner; i++)
        if (w->v[i].matched) runner = &w->v[i];
    fprintf(out, "route:    %s (%s:%d) ", v->route->name, cfg->file, v->route->line);
    print_rule(out, v);
    fprintf(out, "\nwhy:      ");
    if (runner)
        print_why_won(out, v, runner);
    else
        fprintf(out, "the only route that matches");
    fprintf(out, "\n");
    print_upstream(out, cfg, v->route->upstream);
    print_target(out, q, v->route);
    print_headers(out, v->route);
    print_route_extras(out, v->route);
}

/* "KEY 90s", or "KEY 250ms" when not whole seconds. */
static void print_duration(FILE *out, const char *key, uint64_t ms) {
    if (ms % 1000)
        fprintf(out, "%s %llums", key, (unsigned long long)ms);
    else
        fprintf(out, "%s %llus", key, (unsigned long long)(ms / 1000));
}

/* What else the route changes: the prefix its app is told, the response
 * headers rewritten for the client, its own timeouts. */
static void print_route_extras(FILE *out, const struct config_route *r) {
    size_t plen;
    const char *prefix = http_route_prefix(r, &plen);
    if (plen) fprintf(out, "prefix:   X-Forwarded-Prefix: %.*s\n", (int)plen, prefix);
    if (r->rewrite_redirects)
        fprintf(out, "rewrite:  Location, Content-Location and Set-Cookie Path back to the "
                     "client's scheme, host%s (rewrite_redirects)\n",
                plen ? " and prefix" : "");
    if (r->read_timeout_ms || r->idle_timeout_ms) {
        fprintf(out, "timeouts:");
        if (r->read_timeout_ms) print_duration(out, " read_timeout", r->read_timeout_ms);
        if (r->idle_timeout_ms) print_duration(out, " idle_timeout", r->idle_timeout_ms);
        fprintf(out, " (the route's own)\n");
    }
}

/* Why W beat the runner-up R, naming W's deciding rule first. */
static void print_why_won(FILE *out, const struct route_verdict *w, const struct route_verdict *r) {
    const struct config_route *rw = w->route, *rr = r->route;
    switch (rule_between(w, r)) {
    case RULE_HOST:
        if (w->host == ROUTE_HOST_EXACT)
            fprintf(out, "exact host %s beats ", w->host_pattern);
        else
            fprintf(out, "%ssuffix %s beats ", r->host == ROUTE_HOST_SUFFIX ? "longer " : "",
                    w->host_pattern);
        if (r->host == ROUTE_HOST_SUFFIX)
            fprintf(out, "suffix %s", r->host_pattern);
        else
            fprintf(out, "no host");
        break;
    case RULE_PATH_KIND:
        fprintf(out, "exact path %s beats path_prefix %s", rw->path, rr->path);
        break;
    case RULE_PATH_LEN:
        fprintf(out, "longest prefix %s (%zu bytes) beats %s (%zu bytes)", rw->path,
                strlen(rw->path), rr->path, strlen(rr->path));
        break;
    case RULE_METHODS:
        fprintf(out, "methods ");
        print_methods(out, rw);
        fprintf(out, " beats any method");
        break;
    case RULE_FEWER:
        fprintf(out, "same host and path; tie-break: fewer methods (%zu < %zu)", rw->nmethods,
                rr->nmethods);
        break;
    case RULE_NAME: fprintf(out, "same rules; tie-break: name %s < %s", rw->name, rr->name); break;
    }
    fprintf(out, " (runner-up: %s)", rr->name);
}

/* Why L lost to the winner W: the first rule on which W is better. */
static void print_why_lost(FILE *out, const struct route_verdict *w,
                           const struct route_verdict *l) {
    const struct config_route *rw = w->route, *rl = l->route;
    switch (rule_between(w, l)) {
    case RULE_HOST:
        if (l->host == ROUTE_HOST_ANY)
            fprintf(out, "no host (any) loses to %s %s",
                    w->host == ROUTE_HOST_EXACT ? "exact host" : "suffix", w->host_pattern);
        else if (w->host == ROUTE_HOST_EXACT)
            fprintf(out, "%s is a suffix match, exact host %s wins", l->host_pattern,
                    w->host_pattern);
        else
            fprintf(out, "suffix %s is shorter than %s", l->host_pattern, w->host_pattern);
        break;
    case RULE_PATH_KIND:
        fprintf(out, "path_prefix %s loses to exact path %s", rl->path, rw->path);
        break;
    case RULE_PATH_LEN: fprintf(out, "prefix %s is shorter than %s", rl->path, rw->path); break;
    case RULE_METHODS:
        fprintf(out, "any method loses to methods ");
        print_methods(out, rw);
        break;
    case RULE_FEWER:
        fprintf(out, "same host and path; tie-break: more methods (%zu > %zu)", rl->nmethods,
                rw->nmethods);
        break;
    case RULE_NAME: fprintf(out, "same rules; tie-break: name %s > %s", rl->name, rw->name); break;
    }
}

/* "upstream: app (ferry.ini:12) round_robin: 127.0.0.1:3000 weight=2, app2:3000 backup" */
static void print_upstream(FILE *out, const struct config *cfg, const struct config_upstream *u) {
    static const char *const balance[] = {[BALANCE_ROUND_ROBIN] = "round_robin",
                                          [BALANCE_LEAST_CONN] = "least_conn",
                                          [BALANCE_IP_HASH] = "ip_hash",
                                          [BALANCE_RANDOM2] = "random2"};
    fprintf(out, "upstream: %s (%s:%d) %s:", u->name, cfg->file, u->line, balance[u->balance]);
    for (size_t i = 0; i < u->nservers; i++) {
        const struct config_server *s = &u->servers[i];
        fprintf(out, "%s %s", i ? "," : "", s->addr.text);
        if (s->weight != 1) fprintf(out, " weight=%u", s->weight);
        if (s->backup) fprintf(out, " backup");
    }
    fprintf(out, "\n");
}

/* The request line the upstream gets: http_write.c's own stripping rule, and
 * the path is never empty. */
static void print_target(FILE *out, const struct explain_req *q, const struct config_route *r) {
    const char *path = q->path + http_strip_len(r, strlen(q->path));
    bool strip = r && r->strip_prefix && !r->path_exact;
    const char *slash = (path[0] != '/' && strcmp(q->path, "*") != 0) ? "/" : "";
    fprintf(out, "upstream sees: %s %s%s%s", q->method, slash, path, q->query);
    if (strip) fprintf(out, "   (strip_prefix %s)", r->path);
    fprintf(out, "\n");
}

static void print_headers(FILE *out, const struct config_route *r) {
    if (r->nadd_request_headers + r->nremove_request_headers > 0) {
        fprintf(out, "request headers:");
        for (size_t i = 0; i < r->nadd_request_headers; i++)
            fprintf(out, "%s +%s: %s", i ? "," : "", r->add_request_headers[i].name,
                    r->add_request_headers[i].value);
        for (size_t i = 0; i < r->nremove_request_headers; i++)
            fprintf(out, "%s -%s", i + r->nadd_request_headers ? "," : "",
                    r->remove_request_headers[i]);
        fprintf(out, "\n");
    }
    if (r->nadd_response_headers > 0) {
        fprintf(out, "response headers:");
        for (size_t i = 0; i < r->nadd_response_headers; i++)
            fprintf(out, "%s +%s: %s", i ? "," : "", r->add_response_headers[i].name,
                    r->add_response_headers[i].value);
        fprintf(out, "\n");
    }
}

/* Every matched route after the winner, in precedence order. */
static void print_losers(FILE *out, const struct config *cfg, const struct explain_walk *w,
                         size_t win) {
    bool title = false;
    for (size_t i = win + 1; i < w->n; i++) {
        const struct route_verdict *v = &w->v[i];
        if (!v->matched) continue;
        if (!title) fprintf(out, "also matched, lost:\n");
        title = true;
        fprintf(out, "  %s (%s:%d): ", v->route->name, cfg->file, v->route->line);
        print_why_lost(out, &w->v[win], v);
        fprintf(out, "\n");
    }
}

/* The routes that did not match and what did not fit, then the routes that
 * are not on this listener at all. */
static void print_misses(FILE *out, const struct config *cfg, const struct explain_walk *w,
                         const struct config_listener *l, const struct explain_req *q) {
    bool title = false;
    for (size_t i = 0; i < w->n; i++) {
        if (w->v[i].matched) continue;
        if (!title) fprintf(out, "did not match:\n");
        title = true;
        fprintf(out, "  %s (%s:%d): ", w->v[i].route->name, cfg->file, w->v[i].route->line);
        print_miss(out, &w->v[i], q);
        fprintf(out, "\n");
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct config_route *r = &cfg->routes[i];
        if (!r->listener || r->listener == l) continue;
        if (!title) fprintf(out, "did not match:\n");
        title = true;
        fprintf(out, "  %s (%s:%d): listener %s only\n", r->name, cfg->file, r->line,
                r->listener->name);
    }
}

/* "host differs (route: a.com, *.b.com); method GET not in POST PUT" */
static void print_miss(FILE *out, const struct route_verdict *v, const struct explain_req *q) {
    const struct config_route *r = v->route;
    const char *sep = "";
    if (v->host == ROUTE_HOST_MISS) {
        fprintf(out, "%s (route: ", q->host[0] ? "host differs" : "no host in request");
        for (size_t i = 0; i < r->nhosts; i++)
            fprintf(out, "%s%s", i ? ", " : "", r->hosts[i]);
        fprintf(out, ")");
        sep = "; ";
    }
    if (!v->path_fits) {
        fprintf(out, "%spath differs (route: %s %s)", sep, r->path_exact ? "path" : "path_prefix",
                r->path);
        sep = "; ";
    }
    if (!v->method_fits) {
        fprintf(out, "%smethod %s not in ", sep, q->method);
        print_methods(out, r);
    }
}

/* ---- SNI NAME[:PORT]: tcp listeners that route by sni ---------------------- */

/* The part after "SNI " when TEXT asks about a server name ("SNI
 * api.example.com:443"), else NULL: "SNI /x" or "SNI http://..." stay HTTP
 * requests with the method SNI. */
static const char *sni_request(const char *text) {
    while (*text == ' ' || *text == '\t')
        text++;
    if (strncasecmp(text, "SNI", 3) != 0 || (text[3] != ' ' && text[3] != '\t')) return NULL;
    const char *rest = text + 4;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    if (*rest == '/' || strncasecmp(rest, "http://", 7) == 0 || strncasecmp(rest, "https://", 8) == 0)
        return NULL;
    return rest;
}

/* NAME[:PORT] into a lower-cased name as a ClientHello carries it (letters,
 * digits, '-', '.'; what ferry's reader accepts) and a port (0: none).
 * Returns the name to free, or NULL with *WHY set. */
static char *sni_name(const char *text, unsigned *port, const char **why) {
    size_t n = strcspn(text, ": \t");
    const char *p = text + n;
    *port = 0;
    if (*p == ':' && req_port(p + 1, strcspn(p + 1, " \t"), port) < 0) {
        *why = "the port must be a number 1..65535";
        return NULL;
    }
    p += *p == ':' ? 1 + strcspn(p + 1, " \t") : 0;
    while (*p == ' ' || *p == '\t')
        p++;
    bool ok = n > 0 && n <= 253 && *p == '\0' && text[0] != '.' && text[n - 1] != '.';
    char *name = xstrndup(text, n);
    for (size_t i = 0; ok && i < n; i++) {
        char c = name[i] = (char)tolower((unsigned char)name[i]);
        ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
             (c == '.' && name[i + 1] != '.');
    }
    if (ok) return name;
    free(name);
    *why = "a server name is a DNS host name (letters, digits, '-' and '.'), then :PORT if any";
    return NULL;
}

/* Why W beat the runner-up R, or why L lost to W: on one tcp listener no
 * two routes share a name, so the host rule alone separates them. */
static void print_sni_won(FILE *out, const struct route_verdict *w, const struct route_verdict *r) {
    if (w->host == ROUTE_HOST_EXACT)
        fprintf(out, "exact sni %s beats suffix %s", w->host_pattern, r->host_pattern);
    else
        fprintf(out, "longer suffix %s beats suffix %s", w->host_pattern, r->host_pattern);
    fprintf(out, " (runner-up: %s)", r->route->name);
}

static void print_sni_lost(FILE *out, const struct route_verdict *w,
                           const struct route_verdict *l) {
    if (w->host == ROUTE_HOST_EXACT)
        fprintf(out, "%s is a suffix match, exact sni %s wins", l->host_pattern, w->host_pattern);
    else
        fprintf(out, "suffix %s is shorter than %s", l->host_pattern, w->host_pattern);
}

/* Explains NAME on tcp listener L: the winner and why, its upstream, the
 * routes that also fit and those that did not. Returns whether a
 * connection gets an upstream there. */
static bool explain_sni_listener(const struct config *cfg, const struct config_listener *l,
                                 const char *name, FILE *out) {
    struct route_table *t = route_table_build(cfg, l);
    struct explain_walk w = {0};
    const struct config_route *r =
        route_explain(t, name, strlen(name), "/", 1, "", 0, walk_on_verdict, &w);
    size_t win = 0;
    while (r && win < w.n && w.v[win].route != r)
        win++;
    if (r) {
        const struct route_verdict *v = &w.v[win];
        fprintf(out, "route:    %s (%s:%d) sni %s (%s)\nwhy:      ", r->name, cfg->file, r->line,
                v->host_pattern, v->host == ROUTE_HOST_EXACT ? "exact" : "suffix");
        size_t i = win + 1;
        while (i < w.n && !w.v[i].matched)
            i++;
        if (i < w.n)
            print_sni_won(out, v, &w.v[i]);
        else
            fprintf(out, "the only route whose sni fits");
        fprintf(out, "\n");
        print_upstream(out, cfg, r->upstream);
    } else if (l->upstream) {
        fprintf(out, "route:    none matched: listener %s's default upstream takes it\n", l->name);
        print_upstream(out, cfg, l->upstream);
    } else {
        fprintf(out, "route:    none matched\nresult:   closed: no sni route and no default "
                     "upstream\n");
    }
    const char *title = "also matched, lost:\n";
    for (size_t i = r ? win + 1 : w.n; i < w.n; i++) {
        if (!w.v[i].matched) continue;
        fprintf(out, "%s  %s (%s:%d): ", title, w.v[i].route->name, cfg->file, w.v[i].route->line);
        print_sni_lost(out, &w.v[win], &w.v[i]);
        fprintf(out, "\n");
        title = "";
    }
    title = "did not match:\n";
    for (size_t i = 0; i < w.n; i++) {
        const struct config_route *m = w.v[i].route;
        if (w.v[i].matched) continue;
        fprintf(out, "%s  %s (%s:%d): sni differs (route:", title, m->name, cfg->file, m->line);
        for (size_t s = 0; s < m->nsnis; s++)
            fprintf(out, "%s %s", s ? "," : "", m->snis[s]);
        fprintf(out, ")\n");
        title = "";
    }
    free(w.v);
    route_table_free(t);
    return r || l->upstream;
}

/* `SNI NAME[:PORT]`: the tcp listeners with sni routes bound to PORT, or
 * all of them when there is no port or none is bound to it. Exit status as
 * for a request: 0 when one of them sends the connection to an upstream, 1
 * when none does, 2 when the text cannot be parsed. Only the name counts:
 * a hello without SNI or not TLS at all goes to the listener's upstream. */
static int explain_sni(const struct config *cfg, const char *request, const char *text,
                       FILE *out, FILE *err) {
    unsigned port;
    const char *why = NULL;
    char *name = sni_name(text, &port, &why);
    if (!name) {
        fprintf(err, "ferry: --explain '%s': %s\n  %s\n", request, why, EXPLAIN_USAGE);
        return 2;
    }
    fprintf(out, "request:  SNI %s (the server name of a TLS ClientHello)\n", name);
    size_t n = 0;
    bool all = false, routed = false;
    for (size_t pass = 0; pass < 2 && n == 0; pass++) {
        all = pass == 1 || port == 0;
        for (size_t i = 0; i < cfg->nlisteners; i++) {
            const struct config_listener *l = &cfg->listeners[i];
            if (!config_listener_has_sni(cfg, l)) continue;
            if (!all && !(l->bind.kind == ADDR_INET && l->bind.port == port)) continue;
            n++;
            fprintf(out, "\nlistener: %s (%s, %s:%d)", l->name, l->bind.text, cfg->file, l->line);
            if (port && all) fprintf(out, "  [port %u matches no such listener: showing all]", port);
            fprintf(out, "\n");
            routed |= explain_sni_listener(cfg, l, name, out);
        }
    }
    if (n == 0) fprintf(out, "listener: none: %s has no tcp listener with sni routes\n", cfg->file);
    free(name);
    return routed ? 0 : 1;
}
