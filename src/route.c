/* route: the compiled route table of one http listener and its matching.
 *
 * Which route wins. SPEC orders routes by host (exact beats `*.suffix`, a
 * longer suffix beats a shorter one, both beat no host), then by path (`path`
 * beats `path_prefix`, a longer prefix beats a shorter one), then by methods
 * (a route with `methods` beats one without). We read that as a lexicographic
 * preference over the routes that match the WHOLE request (host, path and
 * method): a route whose path or methods do not fit never wins because its
 * host is better. So `GET api.example.com/v1` with routes
 * `host=api.example.com path_prefix=/v2` and `path_prefix=/` goes to the
 * second, as it would in nginx (server block, then location) if the server
 * block had no `/` location, and as HAProxy users write it with ACLs
 * `host_api path_v2` then a default. Ties SPEC leaves open (two routes with the
 * same host, path and both with `methods`, e.g. `GET` and `GET POST`) go to the
 * one listing fewer methods (the more specific), then to the smaller name, so
 * the outcome never depends on file order.
 *
 * Layout. Every (route, host pattern) pair lands in one bucket:
 *
 *   struct route_table
 *     exact   host map: "api.example.com" -> bucket
 *     suffix  host map: ".example.com"    -> bucket   (pattern "*.example.com")
 *     any     bucket of the routes with no host
 *
 *   bucket = a slice of entries[], best first: exact paths, then prefixes
 *            longest first; at equal path, routes with methods first.
 *
 * Matching looks up the request's host in the exact map, then each of its
 * tails that starts at a dot (longest first) in the suffix map, then the any
 * bucket, and returns the first entry of the first bucket that fits the path
 * and method. Inside a bucket the first fit is the best fit: two entries that
 * both fit the same path with equal path rank have identical paths, so only
 * the methods rank is left, and the sort already put that first. Cost: one
 * hash probe per dot in the host plus the entries of the visited buckets; no
 * allocation. */
#include "ferry/route.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/config.h"
#include "ferry/util.h"

/* One route as it sits in a bucket, with what matching needs at hand. */
struct route_entry {
    const struct config_route *route; /* points into the config */
    size_t path_len;                  /* strlen(route->path) */
};

/* The routes of one host pattern, best first. */
struct route_bucket {
    const struct route_entry *entries; /* slice of route_table.entries */
    size_t n;                          /* entries in the slice */
};

/* A slot of a host map; key == NULL marks it empty. */
struct route_slot {
    const char *key;            /* host or ".suffix", points into the config */
    size_t len;                 /* bytes of key that count (no trailing dot) */
    uint32_t hash;              /* host_hash(key, len) */
    struct route_bucket bucket; /* routes for this key */
};

/* Open addressing with linear probing, at most half full. */
struct route_map {
    struct route_slot *slots; /* NULL when the map is empty */
    size_t mask;              /* capacity - 1; capacity is a power of two */
    size_t count;             /* keys stored */
};

struct route_table {
    struct route_map exact;      /* exact host names */
    struct route_map suffix;     /* "*.suffix" patterns, keyed ".suffix" */
    struct route_bucket any;     /* routes without `host` */
    struct route_entry *entries; /* every bucket's entries, one array */
    size_t nentries;             /* length of entries */
    uint64_t slash_lens;         /* bit (L % 64) set when a path_prefix of L bytes ends
                                  * in '/': route_slash_redirect's cheap first test */
};

/* Which map a (route, host) pair belongs to; the order is the grouping order. */
enum host_kind { HOST_EXACT = 0, HOST_SUFFIX, HOST_ANY };

/* A (route, host pattern) pair while the table is being built. */
struct route_pair {
    enum host_kind kind;      /* which map */
    const char *key;          /* NULL for HOST_ANY */
    size_t len;               /* key bytes that count */
    struct route_entry entry; /* the route */
};

static unsigned char host_lower(unsigned char c);
static uint32_t host_hash(const char *s, size_t n);
static int host_compare(const char *a, size_t alen, const char *b, size_t blen);
static size_t host_normalize(const char *host, size_t len);
static bool route_applies(const struct config_route *r, const struct config_listener *l);
static int entry_compare(const struct route_entry *a, const struct route_entry *b);
static int pair_compare(const void *pa, const void *pb);
static size_t pairs_collect(const struct config *cfg, const struct config_listener *l,
                            struct route_pair *out);
static void pair_key(struct route_pair *p, const char *host);
static size_t pairs_dedup(struct route_pair *pairs, size_t n);
static void map_init(struct route_map *m, size_t keys);
static void map_insert(struct route_map *m, const char *key, size_t len,
                       struct route_bucket bucket);
static const struct route_bucket *map_find(const struct route_map *m, const char *key, size_t len);
static bool pair_same_key(const struct route_pair *a, const struct route_pair *b);
static void table_fill(struct route_table *t, const struct route_pair *pairs, size_t n);
static bool path_fits(const struct route_entry *e, const char *path, size_t path_len);
static bool method_fits(const struct config_route *r, const char *method, size_t method_len);
static const struct config_route *bucket_match(const struct route_bucket *b, const char *path,
                                               size_t path_len, const char *method,
                                               size_t method_len);
static const struct config_route *suffix_match(const struct route_table *t, const char *host,
                                               size_t host_len, const char *path, size_t path_len,
                                               const char *method, size_t method_len);

/* ASCII only: host names are compared byte-wise, never through the locale. */
static unsigned char host_lower(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* FNV-1a over the lower-cased bytes, so "API.example.com" and
 * "api.example.com" land in the same slot without copying either. */
static uint32_t host_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= host_lower((unsigned char)s[i]);
        h *= 16777619u;
    }
    return h;
}

/* Case-insensitive ordering of two counted host strings: shorter first, then
 * by lower-cased bytes. 0 means the same host. */
static int host_compare(const char *a, size_t alen, const char *b, size_t blen) {
    if (alen != blen) return alen < blen ? -1 : 1;
    for (size_t i = 0; i < alen; i++) {
        int d = host_lower((unsigned char)a[i]) - host_lower((unsigned char)b[i]);
        if (d != 0) return d;
    }
    return 0;
}

/* The length of the part of a Host header value that names the host: without
 * ":port" and without one trailing dot ("example.com." is the same name). An
 * IPv6 literal keeps its brackets ("[::1]:8080" -> "[::1]"), which is also how
 * a route names it. A reg-name cannot contain ':', so anything from the first
 * ':' on is the port. Returns 0 for an empty host (HTTP/1.0 without Host). */
static size_t host_normalize(const char *host, size_t len) {
    size_t n = len;
    if (len == 0) return 0;
    if (host[0] == '[') {
        const char *end = memchr(host, ']', len);
        if (end) return (size_t)(end - host) + 1;
    } else {
        const char *colon = memchr(host, ':', len);
        if (colon) n = (size_t)(colon - host);
    }
    if (n > 0 && host[n - 1] == '.') n--;
    return n;
}

/* A route applies to listener L when it names L, or names no listener and L
 * is an http listener (a route of a tcp listener always names it). */
static bool route_applies(const struct config_route *r, const struct config_listener *l) {
    return r->listener == l || (r->listener == NULL && l->mode == MODE_HTTP);
}

/* Best first within one host bucket: exact paths before prefixes, longer
 * paths before shorter ones, routes with methods before routes without; then
 * fewer methods first and finally the name, so the order is total and never
 * depends on the file. Names are unique (the loader checks), so 0 means the
 * same route. */
static int entry_compare(const struct route_entry *a, const struct route_entry *b) {
    const struct config_route *ra = a->route, *rb = b->route;
    if (ra->path_exact != rb->path_exact) return ra->path_exact ? -1 : 1;
    if (a->path_len != b->path_len) return a->path_len > b->path_len ? -1 : 1;
    if ((ra->nmethods > 0) != (rb->nmethods > 0)) return ra->nmethods > 0 ? -1 : 1;
    if (ra->nmethods != rb->nmethods) return ra->nmethods < rb->nmethods ? -1 : 1;
    return strcmp(ra->name, rb->name);
}

/* qsort order for pairs: grouped by map and key, each group best first. */
static int pair_compare(const void *pa, const void *pb) {
    const struct route_pair *a = pa, *b = pb;
    if (a->kind != b->kind) return a->kind < b->kind ? -1 : 1;
    int d = host_compare(a->key, a->len, b->key, b->len);
    if (d != 0) return d;
    return entry_compare(&a->entry, &b->entry);
}

/* Sorts a host pattern into its map. "*.example.com" is keyed ".example.com"
 * (a pointer into the config string, nothing copied): the dot is part of the
 * key, so the bare "example.com" never finds it. A trailing dot is dropped as
 * on the request side. */
static void pair_key(struct route_pair *p, const char *host) {
    size_t len = strlen(host);
    if (len > 0 && host[len - 1] == '.') len--;
    if (len >= 2 && host[0] == '*' && host[1] == '.') {
        p->kind = HOST_SUFFIX;
        p->key = host + 1;
        p->len = len - 1;
    } else {
        p->kind = HOST_EXACT;
        p->key = host;
        p->len = len;
    }
}

/* Writes one pair per (applicable route, host), or one HOST_ANY pair for a
 * route without hosts, into OUT (or only counts them when OUT is NULL). On a
 * tcp listener a route's `sni` names stand in for hosts (the loader saw to
 * it that each such route has some). */
static size_t pairs_collect(const struct config *cfg, const struct config_listener *l,
                            struct route_pair *out) {
    size_t n = 0;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct config_route *r = &cfg->routes[i];
        if (!route_applies(r, l)) continue;
        char *const *names = l->mode == MODE_TCP ? r->snis : r->hosts;
        size_t nnames = l->mode == MODE_TCP ? r->nsnis : r->nhosts;
        size_t hosts = nnames ? nnames : 1;
        for (size_t h = 0; out && h < hosts; h++) {
            struct route_pair *p = &out[n + h];
            p->entry.route = r;
            p->entry.path_len = strlen(r->path);
            p->kind = HOST_ANY;
            p->key = NULL;
            p->len = 0;
            if (nnames) pair_key(p, names[h]);
        }
        n += hosts;
    }
    return n;
}

/* Drops a pair equal to its predecessor: a route that lists the same host
 * twice (or "a.com" and "A.com.") needs one entry. Returns the new count. */
static size_t pairs_dedup(struct route_pair *pairs, size_t n) {
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (w > 0 && pair_compare(&pairs[w - 1], &pairs[i]) == 0) continue;
        pairs[w++] = pairs[i];
    }
    return w;
}

/* Sizes a map for KEYS keys at most half full. */
static void map_init(struct route_map *m, size_t keys) {
    m->count = 0;
    m->slots = NULL;
    m->mask = 0;
    if (keys == 0) return;
    size_t cap = 4;
    while (cap < keys * 2)
        cap *= 2;
    m->slots = xcalloc(cap, sizeof(*m->slots));
    m->mask = cap - 1;
}

/* Keys are unique here: pairs were grouped by key before insertion. */
static void map_insert(struct route_map *m, const char *key, size_t len,
                       struct route_bucket bucket) {
    uint32_t hash = host_hash(key, len);
    size_t i = hash & m->mask;
    while (m->slots[i].key)
        i = (i + 1) & m->mask;
    m->slots[i] = (struct route_slot){.key = key, .len = len, .hash = hash, .bucket = bucket};
    m->count++;
}

/* The bucket for KEY (any case), or NULL. */
static const struct route_bucket *map_find(const struct route_map *m, const char *key, size_t len) {
    if (!m->slots) return NULL;
    uint32_t hash = host_hash(key, len);
    for (size_t i = hash & m->mask; m->slots[i].key; i = (i + 1) & m->mask) {
        const struct route_slot *s = &m->slots[i];
        if (s->hash == hash && host_compare(s->key, s->len, key, len) == 0) return &s->bucket;
    }
    return NULL;
}

/* Whether two pairs go into the same bucket. */
static bool pair_same_key(const struct route_pair *a, const struct route_pair *b) {
    return a->kind == b->kind && host_compare(a->key, a->len, b->key, b->len) == 0;
}

/* Copies the sorted pairs into one entries array and hangs each run of equal
 * keys, as a bucket, on its map (or on the any bucket). */
static void table_fill(struct route_table *t, const struct route_pair *pairs, size_t n) {
    size_t keys[HOST_ANY + 1] = {0};
    for (size_t i = 0; i < n; i++) {
        t->entries[i] = pairs[i].entry;
        if (i == 0 || !pair_same_key(&pairs[i - 1], &pairs[i])) keys[pairs[i].kind]++;
    }
    map_init(&t->exact, keys[HOST_EXACT]);
    map_init(&t->suffix, keys[HOST_SUFFIX]);
    size_t end;
    for (size_t i = 0; i < n; i = end) {
        const struct route_pair *p = &pairs[i];
        for (end = i + 1; end < n && pair_same_key(&pairs[end], p); end++)
            continue;
        struct route_bucket b = {.entries = &t->entries[i], .n = end - i};
        if (p->kind == HOST_ANY)
            t->any = b;
        else
            map_insert(p->kind == HOST_EXACT ? &t->exact : &t->suffix, p->key, p->len, b);
    }
}

/* Every pair is sorted once here, so matching never sorts or allocates. A tcp
 * listener's table holds its sni routes, keyed by their names as if they
 * were hosts; every path and method fits them. */
struct route_table *route_table_build(const struct config *cfg, const struct config_listener *l) {
    assert(cfg && l);
    struct route_table *t = xcalloc(1, sizeof(*t));
    size_t n = pairs_collect(cfg, l, NULL);
    if (n == 0) return t;
    struct route_pair *pairs = xmalloc(n * sizeof(*pairs));
    pairs_collect(cfg, l, pairs);
    qsort(pairs, n, sizeof(*pairs), pair_compare);
    n = pairs_dedup(pairs, n);
    t->entries = xmalloc(n * sizeof(*t->entries));
    t->nentries = n;
    table_fill(t, pairs, n);
    free(pairs);
    for (size_t i = 0; i < t->nentries; i++) {
        const struct route_entry *e = &t->entries[i];
        if (!e->route->path_exact && e->path_len > 1 && e->route->path[e->path_len - 1] == '/')
            t->slash_lens |= UINT64_C(1) << (e->path_len % 64);
    }
    return t;
}

void route_table_free(struct route_table *t) {
    if (!t) return;
    free(t->exact.slots);
    free(t->suffix.slots);
    free(t->entries);
    free(t);
}

/* Exact paths match identical bytes only. A prefix P matches X when X starts
 * with P at a segment boundary: P ends in '/', or X ends right after P, or the
 * next byte of X is '/'. The prefix "/" (also what a route without a path
 * gets) means "any path" and so matches every target, "*" of `OPTIONS *`
 * included. */
static bool path_fits(const struct route_entry *e, const char *path, size_t path_len) {
    const char *p = e->route->path;
    size_t n = e->path_len;
    if (e->route->path_exact) return path_len == n && memcmp(path, p, n) == 0;
    if (n == 1 && p[0] == '/') return true;
    if (path_len < n || memcmp(path, p, n) != 0) return false;
    return n == 0 || p[n - 1] == '/' || path_len == n || path[n] == '/';
}

/* Methods are case-sensitive tokens (RFC 9110): "get" is not "GET". */
static bool method_fits(const struct config_route *r, const char *method, size_t method_len) {
    if (r->nmethods == 0) return true;
    for (size_t i = 0; i < r->nmethods; i++) {
        const char *m = r->methods[i];
        if (strlen(m) == method_len && memcmp(m, method, method_len) == 0) return true;
    }
    return false;
}

/* The first entry of B that fits; entries are best first. */
static const struct config_route *bucket_match(const struct route_bucket *b, const char *path,
                                               size_t path_len, const char *method,
                                               size_t method_len) {
    for (size_t i = 0; i < b->n; i++) {
        const struct route_entry *e = &b->entries[i];
        if (path_fits(e, path, path_len) && method_fits(e->route, method, method_len))
            return e->route;
    }
    return NULL;
}

/* Tries each tail of HOST that starts at a dot, longest first, so the longest
 * matching suffix is tried first and a shorter one only when the longer one's
 * routes do not fit the path and method. The tail must leave at least one byte
 * before the dot: "*.example.com" needs a label in front of ".example.com". */
static const struct config_route *suffix_match(const struct route_table *t, const char *host,
                                               size_t host_len, const char *path, size_t path_len,
                                               const char *method, size_t method_len) {
    if (t->suffix.count == 0) return NULL;
    for (size_t i = 1; i < host_len; i++) {
        if (host[i] != '.') continue;
        const struct route_bucket *b = map_find(&t->suffix, host + i, host_len - i);
        if (!b) continue;
        const struct config_route *r = bucket_match(b, path, path_len, method, method_len);
        if (r) return r;
    }
    return NULL;
}

const struct config_route *route_match(const struct route_table *t, const char *host,
                                       size_t host_len, const char *path, size_t path_len,
                                       const char *method, size_t method_len) {
    assert(t);
    size_t n = host_normalize(host, host_len);
    if (n > 0) {
        const struct route_bucket *b = map_find(&t->exact, host, n);
        const struct config_route *r =
            b ? bucket_match(b, path, path_len, method, method_len) : NULL;
        if (!r) r = suffix_match(t, host, n, path, path_len, method, method_len);
        if (r) return r;
    }
    return bucket_match(&t->any, path, path_len, method, method_len);
}

/* The longest path route_slash_redirect looks at: longer ones are served
 * as they are (a prefix route's root is never that long in practice). */
#define ROUTE_SLASH_MAX 2048

const struct config_route *route_slash_redirect(const struct route_table *t, const char *host,
                                                size_t host_len, const char *path,
                                                size_t path_len, const char *method,
                                                size_t method_len,
                                                const struct config_route *matched) {
    if (path_len == 0 || path[path_len - 1] == '/' || path_len + 1 > ROUTE_SLASH_MAX) return NULL;
    /* Most requests: no prefix route is one byte longer than the path. */
    if (!((t->slash_lens >> ((path_len + 1) % 64)) & 1)) return NULL;
    /* Something names this path itself (`path = /api`, `path_prefix = /api`): it is served. */
    if (matched && (matched->path_exact || strlen(matched->path) >= path_len)) return NULL;
    char slashed[ROUTE_SLASH_MAX];
    memcpy(slashed, path, path_len);
    slashed[path_len] = '/';
    const struct config_route *r =
        route_match(t, host, host_len, slashed, path_len + 1, method, method_len);
    if (!r || r->path_exact || strlen(r->path) != path_len + 1 ||
        memcmp(r->path, slashed, path_len + 1) != 0)
        return NULL;
    return r;
}

/* An sni route has path "/" and no methods, so the path and method given
 * here fit every one, and the host rules alone decide, as for hosts. */
const struct config_route *route_match_sni(const struct route_table *t, const char *name,
                                           size_t name_len) {
    return route_match(t, name, name_len, "/", 1, "", 0);
}

/* Introspection for `ferry --explain`. It walks the table in the order
 * route_match tries it, so what it reports cannot drift from what matching
 * does, and the winner is route_match's own answer. A route listing several
 * hosts sits in several buckets; it is reported once, at the first (best)
 * bucket that holds it, and routes no visited bucket holds are reported last
 * as host misses. */

/* State of one route_explain walk. */
struct route_walk {
    const struct config_route *winner;                    /* route_match's answer */
    const char *path;                                     /* request path, not NUL-terminated */
    size_t path_len;                                      /* bytes of path */
    const char *method;                                   /* request method, not NUL-terminated */
    size_t method_len;                                    /* bytes of method */
    const struct config_route **seen;                     /* routes already reported */
    size_t nseen;                                         /* entries of seen */
    void (*cb)(const struct route_verdict *v, void *arg); /* the caller's callback */
    void *arg;                                            /* its argument */
};

static const char *route_host_pattern(const struct config_route *r, enum host_kind kind,
                                      const char *key, size_t len);
static bool walk_mark(struct route_walk *w, const struct config_route *r);
static void walk_entry(struct route_walk *w, const struct route_entry *e, struct route_verdict v);
static void walk_bucket(struct route_walk *w, const struct route_bucket *b, enum host_kind kind,
                        const char *key, size_t len);
static void walk_suffixes(struct route_walk *w, const struct route_table *t, const char *host,
                          size_t host_len);

/* The host (or sni name, for a tcp listener's route: it has one kind or the
 * other) of R, as written, that lands in the bucket of KIND and KEY; NULL
 * for HOST_ANY. */
static const char *route_host_pattern(const struct config_route *r, enum host_kind kind,
                                      const char *key, size_t len) {
    char *const *names = r->nsnis ? r->snis : r->hosts;
    size_t n = r->nsnis ? r->nsnis : r->nhosts;
    for (size_t h = 0; kind != HOST_ANY && h < n; h++) {
        struct route_pair p;
        pair_key(&p, names[h]);
        if (p.kind == kind && host_compare(p.key, p.len, key, len) == 0) return names[h];
    }
    return NULL;
}

/* Records R as reported; false when it already was. */
static bool walk_mark(struct route_walk *w, const struct config_route *r) {
    for (size_t i = 0; i < w->nseen; i++)
        if (w->seen[i] == r) return false;
    w->seen[w->nseen++] = r;
    return true;
}

/* Reports entry E with the host verdict V already filled in, unless its
 * route was reported before (at a better bucket). */
static void walk_entry(struct route_walk *w, const struct route_entry *e, struct route_verdict v) {
    const struct config_route *r = e->route;
    if (!walk_mark(w, r)) return;
    v.route = r;
    v.path_fits = path_fits(e, w->path, w->path_len);
    v.method_fits = method_fits(r, w->method, w->method_len);
    v.matched = v.host != ROUTE_HOST_MISS && v.path_fits && v.method_fits;
    v.won = v.matched && r == w->winner;
    w->cb(&v, w->arg);
}

/* Reports the entries of B, the bucket of KIND and KEY, best first. */
static void walk_bucket(struct route_walk *w, const struct route_bucket *b, enum host_kind kind,
                        const char *key, size_t len) {
    static const enum route_host_fit fit[] = {[HOST_EXACT] = ROUTE_HOST_EXACT,
                                              [HOST_SUFFIX] = ROUTE_HOST_SUFFIX,
                                              [HOST_ANY] = ROUTE_HOST_ANY};
    for (size_t i = 0; b && i < b->n; i++) {
        struct route_verdict v = {
            .host = fit[kind],
            .host_pattern = route_host_pattern(b->entries[i].route, kind, key, len),
            .suffix_len = kind == HOST_SUFFIX ? len : 0,
        };
        walk_entry(w, &b->entries[i], v);
    }
}

/* The suffix buckets in suffix_match's order: longest tail first. */
static void walk_suffixes(struct route_walk *w, const struct route_table *t, const char *host,
                          size_t host_len) {
    for (size_t i = 1; t->suffix.count > 0 && i < host_len; i++) {
        if (host[i] != '.') continue;
        const char *tail = host + i;
        walk_bucket(w, map_find(&t->suffix, tail, host_len - i), HOST_SUFFIX, tail, host_len - i);
    }
}

const struct config_route *route_explain(const struct route_table *t, const char *host,
                                         size_t host_len, const char *path, size_t path_len,
                                         const char *method, size_t method_len,
                                         void (*cb)(const struct route_verdict *v, void *arg),
                                         void *arg) {
    assert(t && cb);
    struct route_walk w = {
        .winner = route_match(t, host, host_len, path, path_len, method, method_len),
        .path = path,
        .path_len = path_len,
        .method = method,
        .method_len = method_len,
        .seen = xcalloc(t->nentries ? t->nentries : 1, sizeof(*w.seen)),
        .cb = cb,
        .arg = arg,
    };
    size_t n = host_normalize(host, host_len);
    if (n > 0) {
        walk_bucket(&w, map_find(&t->exact, host, n), HOST_EXACT, host, n);
        walk_suffixes(&w, t, host, n);
    }
    walk_bucket(&w, &t->any, HOST_ANY, NULL, 0);
    for (size_t i = 0; i < t->nentries; i++)
        walk_entry(&w, &t->entries[i], (struct route_verdict){.host = ROUTE_HOST_MISS});
    free(w.seen);
    return w.winner;
}
