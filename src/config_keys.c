/* config_keys: the key schema. Per section, the keys it takes (the tables),
 * how each value is parsed and stored (the setters), the section's defaults
 * (its open function) and the keys it requires (its finish function). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ferry/strbuf.h"

#include "config_internal.h"

#define CONFIG_MAX_WORKERS 1024
#define CONFIG_MAX_WEIGHT  1000
/* 10 years (3650d): longer is surely a mistake, and a value near 2^64 ms
 * would wrap when a timer adds it to the clock. */
#define CONFIG_MAX_DURATION_MS (3650ull * 86400 * 1000)
#define CONFIG_ADDR_HINT   "HOST:PORT, [IPV6]:PORT, :PORT or unix:/path"

/* One word of an enumerated value ("least_conn") and the enum it means. */
struct keyword {
    const char *word;
    int value;
};

/* ---- keyword values --------------------------------------------------- */

static int keyword_find(const struct keyword *kw, size_t n, const char *v, int *out) {
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(kw[i].word, v) == 0) {
            *out = kw[i].value;
            return 0;
        }
    }
    return -1;
}

/* "KEY: expected a, b or c, got 'V'". */
static void keyword_error(struct loader *ld, const char *key, const struct keyword *kw, size_t n,
                          const char *v) {
    struct strbuf list = STRBUF_INIT;
    for (size_t i = 0; i < n; i++) {
        if (i > 0) strbuf_adds(&list, i + 1 == n ? " or " : ", ");
        strbuf_adds(&list, kw[i].word);
    }
    loader_key_error(ld, key, "expected %s, got '%s'", strbuf_cstr(&list), v);
    strbuf_free(&list);
}

/* Parses V as one of KW into *OUT; records an error and returns -1 if not. */
static int keyword_parse(struct loader *ld, const char *key, const struct keyword *kw, size_t n,
                         const char *v, int *out) {
    if (keyword_find(kw, n, v, out) == 0) return 0;
    keyword_error(ld, key, kw, n, v);
    return -1;
}

#define KEYWORD(ld, key, table, v, out)                                                            \
    keyword_parse(ld, key, table, FERRY_ARRAY_LEN(table), v, out)

static const struct keyword log_levels[] = {
    {"error", LOG_ERROR},
    {"warn", LOG_WARN},
    {"info", LOG_INFO},
    {"debug", LOG_DEBUG},
};
static const struct keyword log_formats[] = {{"text", ACCESS_LOG_TEXT}, {"json", ACCESS_LOG_JSON}};
static const struct keyword modes[] = {{"http", MODE_HTTP}, {"tcp", MODE_TCP}};
static const struct keyword tls_autos[] = {
    {"off", TLS_AUTO_OFF}, {"acme", TLS_AUTO_ACME}, {"internal", TLS_AUTO_INTERNAL}};
static const struct keyword balances[] = {
    {"round_robin", BALANCE_ROUND_ROBIN},
    {"least_conn", BALANCE_LEAST_CONN},
    {"ip_hash", BALANCE_IP_HASH},
    {"random2", BALANCE_RANDOM2},
};
static const struct keyword proxy_versions[] = {
    {"off", PROXY_PROTOCOL_OFF},
    {"v1", PROXY_PROTOCOL_V1},
    {"v2", PROXY_PROTOCOL_V2},
};

/* ---- word lists: methods, source -------------------------------------- */

/* Splits V into words, each accepted by OK and none twice, into a new
 * array. WHAT names one word in messages. Returns -1 after recording an
 * error (nothing is kept then). */
static int parse_words(struct loader *ld, const char *key, const char *v, bool (*ok)(const char *),
                       const char *what, char ***out, size_t *nout) {
    char **list = NULL;
    size_t n = 0, len;
    const char *w, *cursor = v;
    while ((w = config_next_word(&cursor, &len))) {
        char *word = xstrndup(w, len);
        bool dup = false;
        for (size_t i = 0; i < n && !dup; i++)
            dup = strcmp(list[i], word) == 0;
        if (!ok(word) || dup) {
            loader_key_error(ld, key, dup ? "%s '%s' listed twice" : "bad %s '%s'", what, word);
            free(word);
            strv_free(list, n);
            return -1;
        }
        list = grow(list, n, sizeof *list);
        list[n++] = word;
    }
    if (n == 0) {
        loader_key_error(ld, key, "expected at least one %s", what);
        return -1;
    }
    *out = list;
    *nout = n;
    return 0;
}

/* ---- [global] --------------------------------------------------------- */

static void set_workers(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_global *g = obj;
    uint64_t n;
    if (strcasecmp(v, "auto") == 0) {
        g->workers = 0;
    } else if (config_parse_uint(v, &n) == 0 && n >= 1 && n <= CONFIG_MAX_WORKERS) {
        g->workers = (unsigned)n;
    } else {
        loader_key_error(ld, key, "expected auto or a number from 1 to %d, got '%s'",
                         CONFIG_MAX_WORKERS, v);
    }
}

static void set_log_level(struct loader *ld, void *obj, const char *key, const char *v) {
    int level;
    if (KEYWORD(ld, key, log_levels, v, &level) == 0)
        ((struct config_global *)obj)->log_level = (enum log_level)level;
}

/* off | stdout | stderr | PATH. A path must contain a '/' ("./access.log"),
 * so a misspelt keyword is an error instead of a file named "stdot". */
static void set_access_log(struct loader *ld, void *obj, const char *key, const char *v) {
    static const struct keyword targets[] = {
        {"off", ACCESS_LOG_OFF},
        {"stdout", ACCESS_LOG_STDOUT},
        {"stderr", ACCESS_LOG_STDERR},
    };
    struct config_global *g = obj;
    int target;
    g->access_log_line = ld->line; /* whether the file opens is known only at start (or -t) */
    if (keyword_find(targets, FERRY_ARRAY_LEN(targets), v, &target) == 0) {
        g->access_log = (enum access_log_target)target;
        return;
    }
    bool printable = true;
    for (const char *p = v; *p; p++)
        printable = printable && !is_ctl(*p);
    if (!strchr(v, '/') || !printable) {
        loader_key_error(ld, key, "expected off, stdout, stderr or a path containing '/', got '%s'",
                         v);
        return;
    }
    g->access_log = ACCESS_LOG_FILE;
    g->access_log_path = xstrdup(v);
}

static void set_access_log_format(struct loader *ld, void *obj, const char *key, const char *v) {
    int format;
    if (KEYWORD(ld, key, log_formats, v, &format) == 0)
        ((struct config_global *)obj)->access_log_format = (enum access_log_format)format;
}

/* off, or an inet address with a real port. */
static void set_admin(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_global *g = obj;
    struct config_addr a;
    if (strcasecmp(v, "off") == 0) return;
    int err = config_parse_addr(v, &a);
    if (err == 0 && a.kind == ADDR_INET && a.port != 0) {
        g->has_admin = true;
        g->admin = a;
        return;
    }
    loader_key_error(ld, key, "expected off or HOST:PORT, got '%s'", v);
    if (err == 0) config_addr_free(&a);
}

/* A directory for keys and certificates ferry makes (tls_auto). Whether it
 * can be written is known only when a listener needs it (tls.c). */
static void set_state_dir(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_global *g = obj;
    if (v[0] != '/') {
        loader_key_error(ld, key, "expected an absolute path, got '%s'", v);
        return;
    }
    free(g->state_dir);
    size_t n = strlen(v);
    while (n > 1 && v[n - 1] == '/') n--; /* "/var/lib/ferry/" names the same directory */
    g->state_dir = xstrndup(v, n);
    g->state_dir_line = ld->line;
}

/* ACME: where the CA is (https only: RFC 8555 6.1), who to tell, what to
 * trust for its HTTPS. */
static void set_acme_directory(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_global *g = obj;
    if (strncasecmp(v, "https://", 8) != 0 || !v[8] || strpbrk(v, " \t")) {
        loader_key_error(ld, key, "expected an https:// URL, got '%s'", v);
        return;
    }
    free(g->acme_directory);
    g->acme_directory = xstrdup(v);
}

static void set_acme_email(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_global *g = obj;
    const char *at = strchr(v, '@');
    if (!at || at == v || !at[1] || strpbrk(v, " \t,<>\"")) {
        loader_key_error(ld, key, "expected an email address, got '%s'", v);
        return;
    }
    free(g->acme_email);
    g->acme_email = xstrdup(v);
}

static void set_acme_ca(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_global *g = obj;
    if (v[0] != '/') {
        loader_key_error(ld, key, "expected an absolute path, got '%s'", v);
        return;
    }
    free(g->acme_ca);
    g->acme_ca = xstrdup(v);
    g->acme_ca_line = ld->line; /* tls_set_load() reads it */
}

/* ---- [listener NAME] -------------------------------------------------- */

static void set_bind(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_listener *l = obj;
    if (config_parse_addr(v, &l->bind) < 0)
        loader_key_error(ld, key, "bad address '%s' (expected %s)", v, CONFIG_ADDR_HINT);
}

static void set_mode(struct loader *ld, void *obj, const char *key, const char *v) {
    int mode;
    if (KEYWORD(ld, key, modes, v, &mode) == 0)
        ((struct config_listener *)obj)->mode = (enum listener_mode)mode;
}

static void set_listener_upstream(struct loader *ld, void *obj, const char *key, const char *v) {
    FERRY_UNUSED(obj);
    FERRY_UNUSED(key);
    ld->lrefs[ld->index].upstream = xstrdup(v);
    ld->lrefs[ld->index].upstream_line = ld->line;
}

/* proxy_protocol_from = CIDR ...: repeatable, each line adds its blocks.
 * A block with host bits set ("10.1.0.0/8") is refused: it is more likely
 * a typo than a way to write 10.0.0.0/8. */
static void set_proxy_protocol_from(struct loader *ld, void *obj, const char *key,
                                    const char *v) {
    struct config_listener *l = obj;
    const char *w, *cursor = v;
    size_t len, added = 0;
    while ((w = config_next_word(&cursor, &len))) {
        char *word = xstrndup(w, len);
        struct config_cidr c;
        int rc = config_parse_cidr(word, &c);
        if (rc == -1)
            loader_key_error(ld, key,
                             "bad address or CIDR '%s' (expected e.g. 10.0.0.0/8, 192.0.2.7, "
                             "2001:db8::/32)",
                             word);
        if (rc == -2) {
            static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
            bool v4 = c.prefix >= 96 && memcmp(c.addr, v4mapped, sizeof v4mapped) == 0;
            char net[INET6_ADDRSTRLEN];
            inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? c.addr + 12 : c.addr, net, sizeof net);
            loader_key_error(ld, key, "'%s' has bits set past its prefix (the block is %s/%u)",
                             word, net, c.prefix - (v4 ? 96u : 0u));
        }
        free(word);
        if (rc < 0) return;
        l->proxy_from = grow(l->proxy_from, l->nproxy_from, sizeof *l->proxy_from);
        l->proxy_from[l->nproxy_from++] = c;
        added++;
    }
    if (added == 0) loader_key_error(ld, key, "expected at least one address or CIDR");
}

/* ---- [upstream NAME] -------------------------------------------------- */

/* One `weight=N` or `backup` after a server's address. */
static int server_option(struct loader *ld, const char *key, const char *opt,
                         struct config_server *s, bool *weighted) {
    uint64_t n;
    if (strcmp(opt, "backup") == 0 && !s->backup) {
        s->backup = true;
        return 0;
    }
    if (strncmp(opt, "weight=", 7) == 0 && !*weighted) {
        if (config_parse_uint(opt + 7, &n) < 0 || n < 1 || n > CONFIG_MAX_WEIGHT) {
            loader_key_error(ld, key, "weight must be a number from 1 to %d, got '%s'",
                             CONFIG_MAX_WEIGHT, opt + 7);
            return -1;
        }
        s->weight = (unsigned)n;
        *weighted = true;
        return 0;
    }
    if (strcmp(opt, "backup") == 0 || strncmp(opt, "weight=", 7) == 0)
        loader_key_error(ld, key, "option '%s' given twice", opt);
    else
        loader_key_error(ld, key, "unknown option '%s' (expected weight=N or backup)", opt);
    return -1;
}

/* The address of a server: like a bind address, but it needs a host and a
 * real port, since ferry connects to it. */
static int server_addr(struct loader *ld, const char *key, const char *text,
                       struct config_addr *a) {
    if (config_parse_addr(text, a) < 0) {
        loader_key_error(ld, key,
                         "bad address '%s' (expected HOST:PORT, [IPV6]:PORT or unix:/path)", text);
        return -1;
    }
    if (a->kind == ADDR_INET && (a->host[0] == '\0' || a->port == 0)) {
        loader_key_error(ld, key, "'%s' needs a host and a port from 1 to 65535", text);
        config_addr_free(a);
        return -1;
    }
    return 0;
}

/* server = ADDR [weight=N] [backup]; each line adds one server. */
static void set_server(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_upstream *u = obj;
    struct config_server s = {.weight = 1, .line = ld->line};
    const char *w, *cursor = v;
    size_t len;
    bool weighted = false;
    w = config_next_word(&cursor, &len);
    char *word = xstrndup(w ? w : "", w ? len : 0);
    int err = server_addr(ld, key, word, &s.addr);
    while (err == 0 && (w = config_next_word(&cursor, &len))) {
        free(word);
        word = xstrndup(w, len);
        err = server_option(ld, key, word, &s, &weighted);
    }
    free(word);
    if (err < 0) {
        config_addr_free(&s.addr);
        return;
    }
    u->servers = grow(u->servers, u->nservers, sizeof *u->servers);
    u->servers[u->nservers++] = s;
}

static void set_balance(struct loader *ld, void *obj, const char *key, const char *v) {
    int kind;
    if (KEYWORD(ld, key, balances, v, &kind) == 0)
        ((struct config_upstream *)obj)->balance = (enum balance_kind)kind;
}

static void set_health_check(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_upstream *u = obj;
    if (strcasecmp(v, "off") == 0) {
        u->health_check = HEALTH_OFF;
    } else if (strcasecmp(v, "tcp") == 0) {
        u->health_check = HEALTH_TCP;
    } else if (strncasecmp(v, "http:", 5) == 0 && config_url_path_ok(v + 5)) {
        u->health_check = HEALTH_HTTP;
        u->health_path = xstrdup(v + 5);
    } else {
        loader_key_error(ld, key, "expected off, tcp or http:/path, got '%s'", v);
    }
}

static void set_upstream_proxy_protocol(struct loader *ld, void *obj, const char *key,
                                        const char *v) {
    int version;
    if (KEYWORD(ld, key, proxy_versions, v, &version) == 0)
        ((struct config_upstream *)obj)->proxy_protocol = (enum proxy_protocol_version)version;
}

static void set_source(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_upstream *u = obj;
    parse_words(ld, key, v, config_ip_literal_ok, "IP address", &u->sources, &u->nsources);
}

/* ---- TLS keys --------------------------------------------------------- */

/* `tls_cert = CERT [KEY]`: paths only; tls_set_load() reads the files. */
static void set_tls_cert(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_listener *l = obj;
    const char *cur = v;
    size_t len[3] = {0};
    const char *w[3] = {NULL};
    int n = 0;
    while (n < 3 && (w[n] = config_next_word(&cur, &len[n]))) n++;
    if (n == 0 || n > 2) {
        loader_key_error(ld, key, "expected a certificate file and optionally its key file, got '%s'",
                         v);
        return;
    }
    l->tls_certs = grow(l->tls_certs, l->ntls_certs, sizeof *l->tls_certs);
    struct config_tls_cert *c = &l->tls_certs[l->ntls_certs++];
    c->cert = xstrndup(w[0], len[0]);
    c->key = n == 2 ? xstrndup(w[1], len[1]) : NULL;
    c->line = ld->line;
}

/* `tls_auto`: off, acme or internal. */
static void set_tls_auto(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_listener *l = obj;
    int kind;
    if (KEYWORD(ld, key, tls_autos, v, &kind) < 0) return;
    l->tls_auto = (enum tls_auto)kind;
    l->tls_auto_line = ld->line;
}

static void set_tls_protocols(struct loader *ld, void *obj, const char *key, const char *v) {
    static const struct keyword versions[] = {{"TLSv1.2", CONFIG_TLS_1_2},
                                              {"TLSv1.3", CONFIG_TLS_1_3}};
    struct config_listener *l = obj;
    const char *cur = v;
    size_t len;
    const char *w;
    int lo = 0, hi = 0;
    while ((w = config_next_word(&cur, &len))) {
        char word[16];
        int ver;
        snprintf(word, sizeof(word), "%.*s", (int)(len < 15 ? len : 15), w);
        if (len >= sizeof(word) || KEYWORD(ld, key, versions, word, &ver) < 0) return;
        if (!lo || ver < lo) lo = ver;
        if (ver > hi) hi = ver;
    }
    if (!lo) {
        loader_key_error(ld, key, "expected TLSv1.2, TLSv1.3 or both");
        return;
    }
    l->tls_min = lo;
    l->tls_max = hi;
}

/* `alpn = h2 http/1.1`: the protocols a TLS http listener offers; order
 * does not matter (h2 is preferred when the client offers both). */
static void set_alpn(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_listener *l = obj;
    l->alpn_h2 = l->alpn_http1 = false;
    char word[32];
    for (const char *p = v; *p;) {
        size_t n = strcspn(p, " \t");
        if (n == 0) {
            p++;
            continue;
        }
        if (n < sizeof(word)) {
            memcpy(word, p, n);
            word[n] = '\0';
        }
        if (n < sizeof(word) && strcmp(word, "h2") == 0) {
            l->alpn_h2 = true;
        } else if (n < sizeof(word) && strcmp(word, "http/1.1") == 0) {
            l->alpn_http1 = true;
        } else {
            loader_error(ld, ld->line, "%s: '%.*s' is not a protocol ferry speaks (h2, http/1.1)",
                         key, (int)n, p);
            return;
        }
        p += n;
    }
    if (!l->alpn_h2 && !l->alpn_http1) loader_error(ld, ld->line, "%s: no protocol given", key);
}

/* `hsts = off | DURATION` (the max-age). */
static void set_hsts(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_listener *l = obj;
    bool on;
    uint64_t ms;
    if (config_parse_bool(v, &on) == 0 && !on) {
        l->hsts_ms = 0;
    } else if (config_parse_duration(v, &ms) < 0 || ms < 1000 || ms > CONFIG_MAX_DURATION_MS) {
        loader_key_error(ld, key, "expected off or a duration from 1s to 3650d, got '%s'", v);
    } else {
        l->hsts_ms = ms;
    }
}

static void set_tls_ca(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_upstream *u = obj;
    FERRY_UNUSED(key);
    free(u->tls_ca);
    u->tls_ca = xstrdup(v);
    u->tls_ca_line = ld->line;
}

static void set_tls_sni(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_upstream *u = obj;
    char *h = xstrdup(v);
    config_lower(h);
    if (!config_route_host_ok(h) || h[0] == '*' || h[0] == '[') {
        loader_key_error(ld, key, "expected a host name, got '%s'", v);
        free(h);
        return;
    }
    free(u->tls_sni);
    u->tls_sni = h;
}

/* ---- [route NAME] ----------------------------------------------------- */

/* host and sni: V lower-cased, accepted by OK (else an error that says
 * what was EXPECTED), and not already in the route's LIST of N. */
static void add_name_pattern(struct loader *ld, const char *key, const char *v,
                             bool (*ok)(const char *), const char *expected, char ***list,
                             size_t *n) {
    char *h = xstrdup(v);
    config_lower(h);
    if (!ok(h)) {
        loader_key_error(ld, key, "expected %s, got '%s'", expected, v);
        free(h);
        return;
    }
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*list)[i], h) == 0) {
            loader_key_error(ld, key, "'%s' listed twice", h);
            free(h);
            return;
        }
    }
    *list = grow(*list, *n, sizeof **list);
    (*list)[(*n)++] = h;
}

static void set_host(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_route *r = obj;
    add_name_pattern(ld, key, v, config_route_host_ok, "a host name, *.suffix or [IPv6]",
                     &r->hosts, &r->nhosts);
}

/* sni = NAME | *.suffix: matched against a ClientHello's server name on a
 * tcp listener (resolve_routes checks the listener). */
static void set_sni(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_route *r = obj;
    add_name_pattern(ld, key, v, config_sni_ok,
                     "a DNS host name or *.suffix (letters, digits, '-' and '.'; no IP address)",
                     &r->snis, &r->nsnis);
}

static int seen_line(const struct loader *ld, const char *key) {
    for (size_t i = 0; ld->sect && i < ld->sect->nkeys; i++)
        if (strcmp(ld->sect->keys[i].name, key) == 0) return ld->seen[i];
    return 0;
}

/* path and path_prefix: one of them, '/'-rooted. */
static void set_path_common(struct loader *ld, struct config_route *r, const char *key,
                            const char *other, const char *v, bool exact) {
    int other_line = seen_line(ld, other);
    if (other_line) {
        loader_key_error(ld, key, "path and path_prefix are mutually exclusive (%s at line %d)",
                         other, other_line);
        return;
    }
    if (!config_url_path_ok(v)) {
        loader_key_error(ld, key,
                         "expected a path starting with '/' (no spaces, '?' or '#'), got '%s'", v);
        return;
    }
    free(r->path);
    r->path = xstrdup(v);
    r->path_exact = exact;
}

static void set_path(struct loader *ld, void *obj, const char *key, const char *v) {
    set_path_common(ld, obj, key, "path_prefix", v, true);
}

static void set_path_prefix(struct loader *ld, void *obj, const char *key, const char *v) {
    set_path_common(ld, obj, key, "path", v, false);
}

static void set_methods(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_route *r = obj;
    parse_words(ld, key, v, config_token_ok, "method", &r->methods, &r->nmethods);
}

static void set_route_listener(struct loader *ld, void *obj, const char *key, const char *v) {
    FERRY_UNUSED(obj);
    FERRY_UNUSED(key);
    ld->rrefs[ld->index].listener = xstrdup(v);
    ld->rrefs[ld->index].listener_line = ld->line;
}

static void set_route_upstream(struct loader *ld, void *obj, const char *key, const char *v) {
    FERRY_UNUSED(obj);
    FERRY_UNUSED(key);
    ld->rrefs[ld->index].upstream = xstrdup(v);
    ld->rrefs[ld->index].upstream_line = ld->line;
}

/* Headers ferry itself owns: adding or removing them would break framing
 * (Content-Length, Transfer-Encoding), Host routing, or hop-by-hop rules. */
static bool header_managed(const char *name) {
    static const char *const managed[] = {
        "content-length", "transfer-encoding", "host", "connection",
        "keep-alive",     "proxy-connection",  "te",   "trailer",
        "upgrade",
    };
    for (size_t i = 0; i < FERRY_ARRAY_LEN(managed); i++)
        if (strcasecmp(name, managed[i]) == 0) return true;
    return false;
}

/* A header name given to add_* or remove_*: a token ferry does not own. */
static bool header_name_check(struct loader *ld, const char *key, const char *name) {
    if (!config_token_ok(name)) {
        loader_key_error(ld, key, "bad header name '%s'", name);
        return false;
    }
    if (header_managed(name)) {
        loader_key_error(ld, key, "header '%s' is managed by ferry and cannot be changed", name);
        return false;
    }
    return true;
}

/* `Name: value`, value trimmed, no control bytes but tab. */
static void add_header(struct loader *ld, const char *key, const char *v,
                       struct config_header **list, size_t *n) {
    const char *colon = strchr(v, ':');
    if (!colon) {
        loader_key_error(ld, key, "expected 'Name: value', got '%s'", v);
        return;
    }
    char *name = xstrndup(v, (size_t)(colon - v));
    const char *val = colon + 1, *end = v + strlen(v);
    while (*val == ' ' || *val == '\t')
        val++;
    while (end > val && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    bool clean = true;
    for (const char *p = val; p < end; p++)
        clean = clean && (!is_ctl(*p) || *p == '\t');
    if (!clean) loader_key_error(ld, key, "control character in the value of '%s'", name);
    if (!clean || !header_name_check(ld, key, name)) {
        free(name);
        return;
    }
    *list = grow(*list, *n, sizeof **list);
    (*list)[*n].name = name;
    (*list)[(*n)++].value = xstrndup(val, (size_t)(end - val));
}

/* Request headers ferry writes itself on every request: a second copy
 * from the config would leave the upstream to guess which one is true.
 * remove_request_header of one of them is allowed: it drops the client's. */
static bool header_forwarding(const char *name, size_t len) {
    static const char *const own[] = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
                                      "x-forwarded-prefix", "x-request-id"};
    for (size_t i = 0; i < FERRY_ARRAY_LEN(own); i++)
        if (strlen(own[i]) == len && strncasecmp(name, own[i], len) == 0) return true;
    return false;
}

static void set_add_request_header(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_route *r = obj;
    const char *colon = strchr(v, ':');
    if (colon && header_forwarding(v, (size_t)(colon - v))) {
        loader_key_error(ld, key,
                         "header '%.*s' is set by ferry on every request and cannot be added",
                         (int)(colon - v), v);
        return;
    }
    add_header(ld, key, v, &r->add_request_headers, &r->nadd_request_headers);
}

static void set_add_response_header(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_route *r = obj;
    add_header(ld, key, v, &r->add_response_headers, &r->nadd_response_headers);
}

static void set_remove_request_header(struct loader *ld, void *obj, const char *key,
                                      const char *v) {
    struct config_route *r = obj;
    if (!header_name_check(ld, key, v)) return;
    r->remove_request_headers =
        grow(r->remove_request_headers, r->nremove_request_headers, sizeof(char *));
    r->remove_request_headers[r->nremove_request_headers++] = xstrdup(v);
}

/* ---- key tables ------------------------------------------------------- */

#define K_FUNC(n, fn)                                                                              \
    { .name = n, .type = KEY_FUNC, .set = fn }
#define K_REPEAT(n, fn)                                                                            \
    { .name = n, .type = KEY_FUNC, .repeat = true, .set = fn }
#define K_NUM(n, t, st, f, lo, hi)                                                                 \
    { .name = n, .type = t, .offset = offsetof(st, f), .min = lo, .max = hi }
#define K_BOOL(n, st, f)                                                                           \
    { .name = n, .type = KEY_BOOL, .offset = offsetof(st, f) }
#define NOLIMIT UINT64_MAX

static const struct key_def global_keys[] = {
    K_FUNC("workers", set_workers),
    K_FUNC("log_level", set_log_level),
    K_FUNC("access_log", set_access_log),
    K_FUNC("access_log_format", set_access_log_format),
    K_FUNC("admin", set_admin),
    K_NUM("max_connections", KEY_UINT, struct config_global, max_connections, 1, 10000000),
    K_NUM("shutdown_timeout", KEY_DURATION, struct config_global, shutdown_timeout_ms, 0, NOLIMIT),
    K_FUNC("state_dir", set_state_dir),
    K_FUNC("acme_directory", set_acme_directory),
    K_FUNC("acme_email", set_acme_email),
    K_FUNC("acme_ca", set_acme_ca),
    K_BOOL("watch_config", struct config_global, watch_config),
};

static const struct key_def listener_keys[] = {
    K_FUNC("bind", set_bind),
    K_NUM("backlog", KEY_UINT, struct config_listener, backlog, 1, 65535),
    K_FUNC("mode", set_mode),
    K_FUNC("upstream", set_listener_upstream),
    K_NUM("header_timeout", KEY_DURATION, struct config_listener, header_timeout_ms, 1, NOLIMIT),
    K_NUM("idle_timeout", KEY_DURATION, struct config_listener, idle_timeout_ms, 1, NOLIMIT),
    /* A request head is kept whole in one pool buffer (BUFFER_SIZE). */
    K_NUM("max_header_size", KEY_SIZE, struct config_listener, max_header_size, 1, 64u << 10),
    K_NUM("max_body_size", KEY_SIZE, struct config_listener, max_body_size, 0, NOLIMIT),
    K_BOOL("proxy_protocol", struct config_listener, proxy_protocol),
    K_REPEAT("proxy_protocol_from", set_proxy_protocol_from),
    K_REPEAT("tls_cert", set_tls_cert),
    K_FUNC("tls_protocols", set_tls_protocols),
    K_FUNC("tls_auto", set_tls_auto),
    K_BOOL("redirect_https", struct config_listener, redirect_https),
    K_FUNC("hsts", set_hsts),
    K_FUNC("alpn", set_alpn),
    K_BOOL("h2c", struct config_listener, h2c),
    K_NUM("h2_max_concurrent_streams", KEY_UINT, struct config_listener, h2_max_streams, 1, 1000),
};

#define UPSTREAM_DURATION(n, f, lo) K_NUM(n, KEY_DURATION, struct config_upstream, f, lo, NOLIMIT)
static const struct key_def upstream_keys[] = {
    K_REPEAT("server", set_server),
    K_FUNC("balance", set_balance),
    UPSTREAM_DURATION("resolve", resolve_ms, 1),
    UPSTREAM_DURATION("connect_timeout", connect_timeout_ms, 1),
    UPSTREAM_DURATION("read_timeout", read_timeout_ms, 1),
    K_NUM("keepalive", KEY_UINT, struct config_upstream, keepalive, 0, 65535),
    UPSTREAM_DURATION("keepalive_timeout", keepalive_timeout_ms, 1),
    K_NUM("retries", KEY_UINT, struct config_upstream, retries, 0, 100),
    UPSTREAM_DURATION("hold", hold_ms, 0),
    K_NUM("max_fails", KEY_UINT, struct config_upstream, max_fails, 1, 1000),
    UPSTREAM_DURATION("fail_timeout", fail_timeout_ms, 1),
    K_FUNC("health_check", set_health_check),
    UPSTREAM_DURATION("health_interval", health_interval_ms, 1),
    K_FUNC("proxy_protocol", set_upstream_proxy_protocol),
    K_FUNC("source", set_source),
    K_BOOL("tls", struct config_upstream, tls),
    K_FUNC("tls_ca", set_tls_ca),
    K_BOOL("tls_verify", struct config_upstream, tls_verify),
    K_FUNC("tls_sni", set_tls_sni),
};

static const struct key_def route_keys[] = {
    K_REPEAT("host", set_host),
    K_REPEAT("sni", set_sni),
    K_FUNC("path", set_path),
    K_FUNC("path_prefix", set_path_prefix),
    K_FUNC("methods", set_methods),
    K_FUNC("listener", set_route_listener),
    K_FUNC("upstream", set_route_upstream),
    K_BOOL("strip_prefix", struct config_route, strip_prefix),
    K_BOOL("rewrite_redirects", struct config_route, rewrite_redirects),
    K_NUM("read_timeout", KEY_DURATION, struct config_route, read_timeout_ms, 1, NOLIMIT),
    K_NUM("idle_timeout", KEY_DURATION, struct config_route, idle_timeout_ms, 1, NOLIMIT),
    K_REPEAT("add_request_header", set_add_request_header),
    K_REPEAT("remove_request_header", set_remove_request_header),
    K_REPEAT("add_response_header", set_add_response_header),
};

_Static_assert(FERRY_ARRAY_LEN(upstream_keys) <= CONFIG_MAX_KEYS, "raise CONFIG_MAX_KEYS");
_Static_assert(FERRY_ARRAY_LEN(listener_keys) <= CONFIG_MAX_KEYS, "raise CONFIG_MAX_KEYS");
_Static_assert(FERRY_ARRAY_LEN(route_keys) <= CONFIG_MAX_KEYS, "raise CONFIG_MAX_KEYS");
_Static_assert(FERRY_ARRAY_LEN(global_keys) <= CONFIG_MAX_KEYS, "raise CONFIG_MAX_KEYS");

/* Parses V for a table-driven key and stores it in the section's struct. */
void config_key_apply(struct loader *ld, const struct key_def *k, const char *v) {
    char *field = (char *)ld->obj + k->offset;
    uint64_t n;
    bool b;
    switch (k->type) {
    case KEY_FUNC: k->set(ld, ld->obj, k->name, v); return;
    case KEY_BOOL:
        if (config_parse_bool(v, &b) < 0)
            loader_key_error(ld, k->name, "expected on, off, yes, no, true or false, got '%s'", v);
        else
            *(bool *)(void *)field = b;
        return;
    case KEY_UINT:
        if (config_parse_uint(v, &n) < 0 || n < k->min || n > k->max)
            loader_key_error(ld, k->name, "expected a number from %llu to %llu, got '%s'",
                             (unsigned long long)k->min, (unsigned long long)k->max, v);
        else
            *(unsigned *)(void *)field = (unsigned)n;
        return;
    case KEY_DURATION:
        if (config_parse_duration(v, &n) < 0)
            loader_key_error(ld, k->name, "bad duration '%s' (expected e.g. 250ms, 10s, 5m, 1h)",
                             v);
        else if (n < k->min)
            loader_key_error(ld, k->name, "must be greater than 0");
        else if (n > CONFIG_MAX_DURATION_MS)
            loader_key_error(ld, k->name, "must be at most 3650d (10 years), got '%s'", v);
        else
            *(uint64_t *)(void *)field = n;
        return;
    case KEY_SIZE:
        if (config_parse_size(v, &n) < 0)
            loader_key_error(ld, k->name, "bad size '%s' (expected e.g. 512, 16k, 1m)", v);
        else if (n < k->min || n > k->max)
            loader_key_error(ld, k->name, "must be from %llu to %llu bytes, got '%s'",
                             (unsigned long long)k->min, (unsigned long long)k->max, v);
        else
            *(uint64_t *)(void *)field = n;
        return;
    }
}

/* ---- sections --------------------------------------------------------- */

static void *global_section_open(struct loader *ld, const char *name) {
    FERRY_UNUSED(name);
    if (ld->global_line) {
        loader_error(ld, ld->line, "duplicate [global] section (first at line %d)",
                     ld->global_line);
        return NULL;
    }
    ld->global_line = ld->line;
    return &ld->cfg->global;
}

static void *listener_section_open(struct loader *ld, const char *name) {
    struct config *cfg = ld->cfg;
    struct config_listener *l = config_find_listener(cfg, name);
    if (l) {
        loader_error(ld, ld->line, "duplicate listener '%s' (first at line %d)", name, l->line);
        return NULL;
    }
    cfg->listeners = grow(cfg->listeners, cfg->nlisteners, sizeof *cfg->listeners);
    ld->lrefs = grow(ld->lrefs, cfg->nlisteners, sizeof *ld->lrefs);
    ld->index = cfg->nlisteners++;
    l = &cfg->listeners[ld->index];
    l->name = xstrdup(name);
    l->line = ld->line;
    l->backlog = 511;
    l->mode = MODE_HTTP;
    l->header_timeout_ms = 10 * 1000;
    l->idle_timeout_ms = 60 * 1000;
    l->max_header_size = 32 * 1024;
    l->tls_min = CONFIG_TLS_1_2;
    l->tls_max = CONFIG_TLS_1_3;
    l->alpn_h2 = l->alpn_http1 = true;
    l->h2_max_streams = 128;
    return l;
}

/* Keys that mean nothing to this listener (http keys on a tcp one,
 * proxy_protocol_from without a PROXY header to check or on a unix socket)
 * are refused rather than silently ignored. */
static void listener_section_finish(struct loader *ld, void *obj) {
    static const char *const http_only[] = {"max_header_size", "max_body_size",
                                            "h2_max_concurrent_streams"};
    struct config_listener *l = obj;
    ld->lrefs[ld->index].header_timeout_line = seen_line(ld, "header_timeout");
    int from = seen_line(ld, "proxy_protocol_from");
    if (!seen_line(ld, "bind")) loader_error(ld, l->line, "listener %s: missing 'bind'", l->name);
    if (from && l->bind.kind == ADDR_UNIX)
        loader_error(
            ld, from,
            "listener %s: proxy_protocol_from cannot apply to a unix listener (its clients "
            "have no address)",
            l->name);
    else if (from && !l->proxy_protocol)
        loader_error(ld, from, "listener %s: proxy_protocol_from needs proxy_protocol = on",
                     l->name);
    int line;
    if ((line = seen_line(ld, "tls_protocols")) && !config_listener_tls(l))
        loader_error(ld, line, "listener %s: tls_protocols needs tls_cert or tls_auto", l->name);
    if ((line = seen_line(ld, "hsts")) && !config_listener_tls(l) && l->hsts_ms)
        loader_error(ld, line, "listener %s: hsts applies to a TLS listener (tls_cert or tls_auto)",
                     l->name);
    /* One source of certificates per listener: which one a name would get
     * when both could serve it is a question nobody should have to ask. */
    if (l->tls_auto != TLS_AUTO_OFF && l->ntls_certs)
        loader_error(ld, l->tls_auto_line,
                     "listener %s: tls_auto and tls_cert exclude each other: pick one", l->name);
    /* the names it serves are the `host`s of its http routes */
    if (l->tls_auto != TLS_AUTO_OFF && l->mode != MODE_HTTP)
        loader_error(ld, l->tls_auto_line, "listener %s: tls_auto applies to mode http only",
                     l->name);
    if ((line = seen_line(ld, "redirect_https")) && l->redirect_https &&
        (config_listener_tls(l) || l->mode != MODE_HTTP))
        loader_error(ld, line, "listener %s: redirect_https applies to a cleartext http listener",
                     l->name);
    if ((line = seen_line(ld, "alpn")) && (!config_listener_tls(l) || l->mode != MODE_HTTP))
        loader_error(ld, line, "listener %s: alpn applies to a TLS listener in http mode",
                     l->name);
    if ((line = seen_line(ld, "h2c")) && l->h2c && (config_listener_tls(l) || l->mode != MODE_HTTP))
        loader_error(ld, line,
                     "listener %s: h2c applies to a cleartext http listener (TLS listeners "
                     "offer h2 by ALPN)",
                     l->name);
    if (l->mode != MODE_TCP) return;
    /* whether it needs `upstream` is known once its routes are (config.c) */
    for (size_t i = 0; i < FERRY_ARRAY_LEN(http_only); i++) {
        if ((line = seen_line(ld, http_only[i])))
            loader_error(ld, line, "listener %s: '%s' applies to mode http only", l->name,
                         http_only[i]);
    }
}

static void *upstream_section_open(struct loader *ld, const char *name) {
    struct config *cfg = ld->cfg;
    struct config_upstream *u = config_find_upstream(cfg, name);
    if (u) {
        loader_error(ld, ld->line, "duplicate upstream '%s' (first at line %d)", name, u->line);
        return NULL;
    }
    cfg->upstreams = grow(cfg->upstreams, cfg->nupstreams, sizeof *cfg->upstreams);
    ld->index = cfg->nupstreams++;
    u = &cfg->upstreams[ld->index];
    u->name = xstrdup(name);
    u->line = ld->line;
    u->balance = BALANCE_ROUND_ROBIN;
    u->resolve_ms = 30 * 1000;
    u->connect_timeout_ms = 3 * 1000;
    u->read_timeout_ms = 60 * 1000;
    u->keepalive = 32;
    u->keepalive_timeout_ms = 60 * 1000;
    u->retries = 1;
    u->hold_ms = 2 * 1000;
    u->max_fails = 3;
    u->fail_timeout_ms = 10 * 1000;
    u->health_interval_ms = 5 * 1000;
    u->tls_verify = true;
    return u;
}

static void upstream_section_finish(struct loader *ld, void *obj) {
    struct config_upstream *u = obj;
    /* a `server` line with a bad value was reported already */
    if (!seen_line(ld, "server"))
        loader_error(ld, u->line, "upstream %s: needs at least one 'server'", u->name);
    u->tls_line = seen_line(ld, "tls");
    if (u->tls && u->proxy_protocol != PROXY_PROTOCOL_OFF)
        loader_error(ld, seen_line(ld, "proxy_protocol"),
                     "upstream %s: proxy_protocol cannot be combined with tls = on", u->name);
    static const char *const tls_only[] = {"tls_ca", "tls_verify", "tls_sni"};
    for (size_t i = 0; i < FERRY_ARRAY_LEN(tls_only) && !u->tls; i++) {
        int line = seen_line(ld, tls_only[i]);
        if (line)
            loader_error(ld, line, "upstream %s: '%s' needs tls = on", u->name, tls_only[i]);
    }
}

static struct config_route *find_route(const struct config *cfg, const char *name) {
    for (size_t i = 0; i < cfg->nroutes; i++)
        if (strcmp(cfg->routes[i].name, name) == 0) return &cfg->routes[i];
    return NULL;
}

static void *route_section_open(struct loader *ld, const char *name) {
    struct config *cfg = ld->cfg;
    struct config_route *r = find_route(cfg, name);
    if (r) {
        loader_error(ld, ld->line, "duplicate route '%s' (first at line %d)", name, r->line);
        return NULL;
    }
    cfg->routes = grow(cfg->routes, cfg->nroutes, sizeof *cfg->routes);
    ld->rrefs = grow(ld->rrefs, cfg->nroutes, sizeof *ld->rrefs);
    ld->index = cfg->nroutes++;
    r = &cfg->routes[ld->index];
    r->name = xstrdup(name);
    r->line = ld->line;
    r->path = xstrdup("/");
    ld->bad = &ld->rrefs[ld->index].bad;
    return r;
}

/* Keys that only mean something to an http route. resolve_routes refuses
 * them on a route of a tcp listener, which routes by `sni` alone. */
static void route_note_kind(struct loader *ld) {
    static const char *const http_keys[] = {
        "host",         "path",           "path_prefix",           "methods",
        "strip_prefix", "add_request_header", "remove_request_header", "add_response_header",
        "rewrite_redirects", "read_timeout",
    };
    struct route_refs *refs = &ld->rrefs[ld->index];
    refs->sni_line = seen_line(ld, "sni");
    for (size_t i = 0; i < FERRY_ARRAY_LEN(http_keys); i++) {
        int line = seen_line(ld, http_keys[i]);
        if (line && (!refs->http_line || line < refs->http_line)) {
            refs->http_line = line;
            refs->http_key = http_keys[i];
        }
    }
}

static void route_section_finish(struct loader *ld, void *obj) {
    struct config_route *r = obj;
    int strip = seen_line(ld, "strip_prefix");
    route_note_kind(ld);
    if (!seen_line(ld, "upstream"))
        loader_error(ld, r->line, "route %s: missing 'upstream'", r->name);
    /* path_exact: `path` won, even if a refused path_prefix came after it */
    if (r->strip_prefix && (r->path_exact || !seen_line(ld, "path_prefix")))
        loader_error(ld, strip, "route %s: strip_prefix needs path_prefix", r->name);
    /* A stripped route's app sees paths without the prefix, so its
     * redirects and cookies are wrong for the client unless rewritten. */
    if (!seen_line(ld, "rewrite_redirects")) r->rewrite_redirects = r->strip_prefix;
}

const struct section_def config_sections[] = {
    {"global", false, global_keys, FERRY_ARRAY_LEN(global_keys), global_section_open, NULL},
    {"listener", true, listener_keys, FERRY_ARRAY_LEN(listener_keys), listener_section_open,
     listener_section_finish},
    {"upstream", true, upstream_keys, FERRY_ARRAY_LEN(upstream_keys), upstream_section_open,
     upstream_section_finish},
    {"route", true, route_keys, FERRY_ARRAY_LEN(route_keys), route_section_open,
     route_section_finish},
};
const size_t config_nsections = FERRY_ARRAY_LEN(config_sections);
