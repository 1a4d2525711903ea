/* fuzz_route: a request's host, path and method against the FUZZ_ROUTES
 * table.
 *
 * Input: host, path and method separated by NUL bytes (missing parts are
 * empty). Properties (abort on violation):
 *  - route_match equals route_explain's answer, and route_explain reports
 *    every route of the table once, the first matched one marked `won` and
 *    being that answer, no other marked `won`;
 *  - route_match equals a reference written here from SPEC's precedence
 *    alone, by brute force over the config's routes: among the routes whose
 *    host, path and method all fit, the best by (exact host, then longer
 *    *.suffix, then no host), then (exact path, then longer prefix), then
 *    (with methods, then fewer methods), then the smaller name;
 *  - route_slash_redirect names a route only when the path does not end in
 *    '/', that route is what the reference picks for the path plus '/', its
 *    path_prefix is exactly the path plus '/', and what matched the path
 *    itself is less specific (none, or a shorter prefix). */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "ferry/route.h"
#include "fuzz_common.h"

struct walk {
    const struct config_route *first_matched;
    size_t reported, won;
    const struct config_route *seen[64];
};

static void on_verdict(const struct route_verdict *v, void *arg) {
    struct walk *w = arg;
    for (size_t i = 0; i < w->reported; i++)
        FUZZ_CHECK(w->seen[i] != v->route, "each route reported once");
    FUZZ_CHECK(w->reported < 64, "table size");
    w->seen[w->reported++] = v->route;
    FUZZ_CHECK(v->matched == (v->host != ROUTE_HOST_MISS && v->path_fits && v->method_fits),
               "matched means host, path and method fit");
    if (v->matched && !w->first_matched) {
        w->first_matched = v->route;
        FUZZ_CHECK(v->won, "the first matched route won");
    }
    if (v->won) w->won++;
}

static unsigned char lower(unsigned char c) {
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

static bool ieq(const char *a, const char *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return false;
    return true;
}

/* How well route R's hosts fit HOST[0, N) (already without port and
 * trailing dot): 0 exact, 1 suffix (*SUFFIX_LEN set), 2 no hosts, 3 miss. */
static int host_rank(const struct config_route *r, const char *host, size_t n, size_t *suffix_len) {
    if (r->nhosts == 0) return 2;
    int best = 3;
    *suffix_len = 0;
    for (size_t i = 0; i < r->nhosts; i++) {
        const char *h = r->hosts[i];
        size_t len = strlen(h);
        if (len && h[len - 1] == '.') len--;
        if (len >= 2 && h[0] == '*' && h[1] == '.') {
            size_t sl = len - 1; /* ".example.com" */
            if (n > sl && ieq(host + n - sl, h + 1, sl) && best >= 1) {
                if (best > 1 || sl > *suffix_len) *suffix_len = sl;
                best = 1;
            }
        } else if (n > 0 && len == n && ieq(host, h, n)) {
            best = 0;
        }
    }
    return best;
}

static bool ref_path_fits(const struct config_route *r, const char *path, size_t n) {
    size_t plen = strlen(r->path);
    if (r->path_exact) return n == plen && memcmp(path, r->path, n) == 0;
    if (plen == 1 && r->path[0] == '/') return true;
    if (n < plen || memcmp(path, r->path, plen) != 0) return false;
    return r->path[plen - 1] == '/' || n == plen || path[plen] == '/';
}

static bool ref_method_fits(const struct config_route *r, const char *m, size_t n) {
    if (r->nmethods == 0) return true;
    for (size_t i = 0; i < r->nmethods; i++)
        if (strlen(r->methods[i]) == n && memcmp(r->methods[i], m, n) == 0) return true;
    return false;
}

/* Negative when A is the better route for the request. */
static int ref_compare(const struct config_route *a, int ha, size_t sa,
                       const struct config_route *b, int hb, size_t sb) {
    if (ha != hb) return ha - hb;
    if (sa != sb) return sa > sb ? -1 : 1;
    if (a->path_exact != b->path_exact) return a->path_exact ? -1 : 1;
    size_t la = strlen(a->path), lb = strlen(b->path);
    if (la != lb) return la > lb ? -1 : 1;
    if ((a->nmethods > 0) != (b->nmethods > 0)) return a->nmethods > 0 ? -1 : 1;
    if (a->nmethods != b->nmethods) return a->nmethods < b->nmethods ? -1 : 1;
    return strcmp(a->name, b->name);
}

static const struct config_route *ref_match(const struct config *cfg, const char *host,
                                            size_t host_len, const char *path, size_t path_len,
                                            const char *method, size_t method_len) {
    /* The host part of a Host value: "[v6]" keeps its brackets; else cut at
     * ':'; then one trailing dot goes. */
    size_t n = host_len;
    const char *close = host_len && host[0] == '[' ? memchr(host, ']', host_len) : NULL;
    if (close) {
        n = (size_t)(close - host) + 1;
    } else {
        const char *colon = host_len && host[0] != '[' ? memchr(host, ':', host_len) : NULL;
        if (colon) n = (size_t)(colon - host);
        if (n && host[n - 1] == '.') n--;
    }
    const struct config_route *best = NULL;
    int best_h = 0;
    size_t best_s = 0;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct config_route *r = &cfg->routes[i];
        size_t s = 0;
        int h = host_rank(r, host, n, &s);
        if (h == 3 || !ref_path_fits(r, path, path_len) || !ref_method_fits(r, method, method_len))
            continue;
        if (!best || ref_compare(r, h, s, best, best_h, best_s) < 0) {
            best = r;
            best_h = h;
            best_s = s;
        }
    }
    return best;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const struct fuzz_routes *fr = fuzz_routes();
    char *buf = malloc(size ? size : 1);
    FUZZ_CHECK(buf, "memory");
    memcpy(buf, data, size);
    const char *part[3] = {buf, buf + size, buf + size};
    size_t len[3] = {size, 0, 0};
    for (int k = 0; k < 2; k++) {
        const char *nul = memchr(part[k], '\0', len[k]);
        if (!nul) break;
        len[k + 1] = len[k] - (size_t)(nul - part[k]) - 1;
        len[k] = (size_t)(nul - part[k]);
        part[k + 1] = nul + 1;
    }
    const struct config_route *r =
        route_match(fr->table, part[0], len[0], part[1], len[1], part[2], len[2]);
    struct walk w = {0};
    const struct config_route *e =
        route_explain(fr->table, part[0], len[0], part[1], len[1], part[2], len[2], on_verdict, &w);
    FUZZ_CHECK(e == r, "route_explain answers as route_match");
    FUZZ_CHECK(w.first_matched == r, "the first matched route is the winner");
    FUZZ_CHECK(w.won == (r != NULL), "one winner at most");
    FUZZ_CHECK(w.reported == fr->cfg->nroutes, "every route reported");
    const struct config_route *want =
        ref_match(fr->cfg, part[0], len[0], part[1], len[1], part[2], len[2]);
    if (want != r)
        fprintf(stderr, "fuzz: route_match %s, reference %s\n", r ? r->name : "none",
                want ? want->name : "none");
    FUZZ_CHECK(want == r, "route_match follows SPEC's precedence");
    const struct config_route *slash = route_slash_redirect(
        fr->table, part[0], len[0], part[1], len[1], part[2], len[2], r);
    if (slash) {
        FUZZ_CHECK(len[1] > 0 && part[1][len[1] - 1] != '/', "only a path without its slash");
        FUZZ_CHECK(!slash->path_exact && strlen(slash->path) == len[1] + 1 &&
                       memcmp(slash->path, part[1], len[1]) == 0 && slash->path[len[1]] == '/',
                   "the redirect's route has exactly the path plus '/'");
        FUZZ_CHECK(!r || (!r->path_exact && strlen(r->path) < len[1]),
                   "nothing as specific names the path itself");
        char *slashed = malloc(len[1] + 1);
        FUZZ_CHECK(slashed, "memory");
        memcpy(slashed, part[1], len[1]);
        slashed[len[1]] = '/';
        FUZZ_CHECK(ref_match(fr->cfg, part[0], len[0], slashed, len[1] + 1, part[2], len[2]) ==
                       slash,
                   "the route the path plus '/' would take");
        free(slashed);
    }
    free(buf);
    return 0;
}
