/* config: the INI file turned into one validated struct config.
 *
 * Why our own line reader. inih splits `key = value` lines and strips inline
 * comments well, but Debian's build (r55, no INI_HANDLER_LINENO) cannot give
 * `ferry -t` what users need: the handler never learns the line number; a
 * line longer than INI_MAX_LINE is cut and its tail parsed as a new line,
 * shifting every later line number; an indented line continues the value
 * above it (INI_ALLOW_MULTILINE), so an indented `key = v` would silently
 * become part of another value; empty sections never reach the handler;
 * section names are cut at 50 bytes; `key: value` is accepted too.
 *
 * So the file is read into memory and fed to ini_parse_stream() through
 * loader_read(), which hands inih exactly one physical line per call and
 * counts them. It strips indentation (which turns continuation off), skips
 * blank lines and comments, parses `[type name]` headers itself, reports
 * lines that are too long or are not `key = value`, and gives inih an empty
 * line in place of anything it handled or refused. inih therefore only ever
 * sees valid `key = value` lines, and because it handles each line before
 * reading the next, loader_on_key() finds the current line number and
 * section in the loader.
 *
 * A value goes through ${VAR} expansion, then through the parser its key's
 * table entry names. When a section ends, its required keys are checked.
 * After the whole file, names are resolved to pointers (the arrays are
 * complete then and never move again) and routes are compared by a
 * normalized match key to find two that match the same requests. Errors are
 * kept with their line, sorted by line at the end, and handed out as
 * "FILE:LINE: message"; a config is returned only when there were none.
 *
 * Decisions the spec leaves open: keywords (on, auto, http, round_robin ...)
 * are case-insensitive; names, paths, methods and header names are taken as
 * written (methods are case-sensitive HTTP tokens). Size suffixes are k/K
 * (KiB) and m/M (MiB) only; duration suffixes are lower-case ms, s, m, h,
 * d, and a duration is at most 3650d.
 * Only `;` starts an inline comment (after whitespace); `#` only at the
 * start of a line, because values may hold one (a color, a URL fragment);
 * a refused value with " #" in it says so. Port 0 (ask the kernel) is for `bind` only. A key whose
 * value was refused still counts as present, so one mistake is one error. */
#include "ferry/config.h"

#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/strbuf.h"

#include "config_internal.h"

#define CONFIG_MAX_FILE    (16u << 20) /* a bigger "config" is a mistake (/dev/zero) */

static char *vformat(const char *fmt, va_list ap) {
    struct strbuf b = STRBUF_INIT;
    strbuf_vprintf(&b, fmt, ap);
    return strbuf_take(&b);
}

/* ---- errors ----------------------------------------------------------- */

void loader_error(struct loader *ld, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ld->errors = grow(ld->errors, ld->nerrors, sizeof *ld->errors);
    ld->errors[ld->nerrors].line = line;
    ld->errors[ld->nerrors].msg = vformat(fmt, ap);
    ld->nerrors++;
    if (ld->bad) *ld->bad = true;
    va_end(ap);
}

/* Whether V holds what looks like a '#' comment after the value: '#' after
 * whitespace. It is part of the value (a color, a URL's fragment), so a
 * refused value says why the user's comment did not work. */
static bool has_hash_comment(const char *v) {
    for (const char *p = v ? strchr(v, '#') : NULL; p; p = strchr(p + 1, '#'))
        if (p > v && is_space(p[-1])) return true;
    return false;
}

/* A bad value on the current line: "KEY: message". */
void loader_key_error(struct loader *ld, const char *key, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *msg = vformat(fmt, ap);
    va_end(ap);
    loader_error(ld, ld->line, "%s: %s%s", key, msg,
                 has_hash_comment(ld->value)
                     ? " (inline '#' comments are not supported: '#' starts a comment only "
                       "at the start of a line; use ' ; comment' after a value)"
                     : "");
    free(msg);
}

static void errs_add(struct config_errors *errs, char *msg) {
    errs->items = xrealloc(errs->items, (errs->count + 1) * sizeof *errs->items);
    errs->items[errs->count++] = msg;
}

/* ---- ${VAR} expansion ------------------------------------------------- */

/* Appends the expansion of one "${...}" whose inside is [IN, CLOSE).
 * Returns -1 after recording an error. ${VAR:-default} uses the default
 * when VAR is unset or empty, as a shell does. */
static int expand_one(struct loader *ld, const char *key, const char *in, const char *close,
                      struct strbuf *out) {
    const char *p = in;
    if (*p == '_' || (is_alnum(*p) && !is_digit(*p)))
        while (p < close && (is_alnum(*p) || *p == '_'))
            p++;
    bool has_default = close - p >= 2 && p[0] == ':' && p[1] == '-';
    if (p == in || (p != close && !has_default)) {
        loader_key_error(ld, key, "bad variable reference '${%.*s}'", (int)(close - in), in);
        return -1;
    }
    char *name = xstrndup(in, (size_t)(p - in));
    const char *val = getenv(name);
    if (has_default && (!val || *val == '\0')) {
        strbuf_add(out, p + 2, (size_t)(close - p - 2));
    } else if (val) {
        strbuf_adds(out, val);
    } else {
        loader_key_error(ld, key, "environment variable '%s' is not set", name);
        free(name);
        return -1;
    }
    free(name);
    return 0;
}

/* VALUE with every ${VAR} and ${VAR:-default} replaced, newly allocated,
 * or NULL after recording an error. A '$' not followed by '{' is literal. */
static char *expand_env(struct loader *ld, const char *key, const char *value) {
    struct strbuf out = STRBUF_INIT;
    const char *p = value;
    while (*p) {
        if (p[0] != '$' || p[1] != '{') {
            strbuf_add(&out, p++, 1);
            continue;
        }
        const char *close = strchr(p + 2, '}');
        if (!close) {
            loader_key_error(ld, key, "unterminated '${' in '%s'", value);
            strbuf_free(&out);
            return NULL;
        }
        if (expand_one(ld, key, p + 2, close, &out) < 0) {
            strbuf_free(&out);
            return NULL;
        }
        p = close + 1;
    }
    return strbuf_take(&out);
}

/* inih's handler: one valid `key = value` line of the current section.
 * Always returns 1: errors are ours to record, with their line. */
static int loader_on_key(void *user, const char *section, const char *name, const char *value) {
    struct loader *ld = user;
    FERRY_UNUSED(section);      /* always "": section lines never reach inih */
    if (ld->skipping) return 1; /* the header's error says it all */
    if (!ld->sect) {
        loader_error(ld, ld->line, "'%s' outside of any section", name);
        return 1;
    }
    const struct key_def *k = NULL;
    for (size_t i = 0; i < ld->sect->nkeys && !k; i++)
        if (strcmp(ld->sect->keys[i].name, name) == 0) k = &ld->sect->keys[i];
    if (!k) {
        loader_error(ld, ld->line, "unknown key '%s' in [%s]", name, ld->label);
        return 1;
    }
    int *seen = &ld->seen[k - ld->sect->keys];
    if (*seen && !k->repeat) {
        loader_error(ld, ld->line, "duplicate key '%s' (first at line %d)", name, *seen);
        return 1;
    }
    if (!*seen) *seen = ld->line;
    ld->value = value;
    char *v = expand_env(ld, name, value);
    if (v) config_key_apply(ld, k, v);
    free(v);
    ld->value = NULL;
    return 1;
}

/* The section before a new header (or the end of the file) is complete:
 * check its required keys. */
static void section_end(struct loader *ld) {
    if (ld->sect && ld->sect->finish) ld->sect->finish(ld, ld->obj);
    ld->sect = NULL;
    ld->obj = NULL;
    ld->bad = NULL;
    ld->skipping = false;
    free(ld->label);
    ld->label = NULL;
    memset(ld->seen, 0, sizeof ld->seen);
}

/* Finds the section type TYPE and checks NAME against it. Returns NULL
 * after recording an error. */
static const struct section_def *section_check(struct loader *ld, const char *type,
                                               const char *name, const char *extra) {
    const struct section_def *def = NULL;
    for (size_t i = 0; i < config_nsections && !def; i++)
        if (strcmp(config_sections[i].type, type) == 0) def = &config_sections[i];
    if (!def)
        loader_error(ld, ld->line,
                     "unknown section type '%s' (expected global, listener, upstream or route)",
                     type);
    else if (!def->named && name)
        loader_error(ld, ld->line, "[%s] takes no name", type);
    else if (def->named && !name)
        loader_error(ld, ld->line, "[%s] needs a name: [%s NAME]", type, type);
    else if (extra)
        loader_error(ld, ld->line, "[%s] takes one name, got '%s %s'", type, name, extra);
    else if (name && !config_name_ok(name))
        loader_error(ld, ld->line, "bad %s name '%s' (letters, digits, '_', '.' and '-' only)",
                     type, name);
    else
        return def;
    return NULL;
}

/* Opens the section of header INSIDE ("listener web", already unbracketed). */
static void section_open(struct loader *ld, const char *inside) {
    const char *cursor = inside;
    char *words[3] = {NULL, NULL, NULL};
    size_t len;
    const char *w;
    for (size_t i = 0; i < 3 && (w = config_next_word(&cursor, &len)); i++)
        words[i] = xstrndup(w, len);
    const struct section_def *def = NULL;
    if (!words[0])
        loader_error(ld, ld->line, "empty section header");
    else
        def = section_check(ld, words[0], words[1], words[2]);
    void *obj = def ? def->open(ld, words[1]) : NULL;
    if (obj) {
        struct strbuf label = STRBUF_INIT;
        strbuf_adds(&label, words[0]);
        if (words[1]) {
            strbuf_adds(&label, " ");
            strbuf_adds(&label, words[1]);
        }
        ld->sect = def;
        ld->obj = obj;
        ld->skipping = false;
        ld->label = strbuf_take(&label);
    }
    for (size_t i = 0; i < 3; i++)
        free(words[i]);
}

/* A line starting with '['; [S, E) has no surrounding space. */
static void section_line(struct loader *ld, const char *s, const char *e) {
    section_end(ld);
    ld->skipping = true; /* until the header proves good */
    const char *close = memchr(s, ']', (size_t)(e - s));
    if (!close) {
        loader_error(ld, ld->line, "missing ']' in section header");
        return;
    }
    const char *rest = close + 1;
    while (rest < e && is_space(*rest))
        rest++;
    if (rest < e && *rest != ';' && *rest != '#') {
        loader_error(ld, ld->line, "unexpected text after ']'");
        return;
    }
    char *inside = xstrndup(s + 1, (size_t)(close - s - 1));
    section_open(ld, inside);
    free(inside);
}

/* ---- the reader --------------------------------------------------------- */

/* Does [S, E) split the way inih will split it, at an '=' that comes before
 * any ':' and any inline comment, with a non-empty key? */
static bool is_key_value(const char *s, const char *e) {
    bool was_space = false;
    const char *p = s;
    for (; p < e && *p != '=' && *p != ':' && !(was_space && *p == ';'); p++)
        was_space = is_space(*p);
    if (p == e || *p != '=') return false;
    while (p > s && is_space(p[-1]))
        p--;
    return p > s;
}

/* What one physical line [S, E) means; fills BUF with what inih should see
 * ("\n" unless it is a valid key = value line). */
static void line_classify(struct loader *ld, const char *s, const char *e, char *buf, int size) {
    if (memchr(s, '\0', (size_t)(e - s))) {
        loader_error(ld, ld->line, "line contains a NUL byte");
        return;
    }
    while (s < e && is_space(*s))
        s++;
    while (e > s && is_space(e[-1]))
        e--;
    if (s == e || *s == ';' || *s == '#') return;
    if (*s == '[') {
        section_line(ld, s, e);
        return;
    }
    /* room for the line, the '\n' that tells newer inih it is complete, NUL */
    if (e - s > size - 2) {
        loader_error(ld, ld->line, "line too long (more than %d characters)", size - 2);
        return;
    }
    if (!is_key_value(s, e)) {
        loader_error(ld, ld->line,
                     "syntax error: expected 'key = value', '[section]' or a comment");
        return;
    }
    memcpy(buf, s, (size_t)(e - s));
    memcpy(buf + (e - s), "\n", 2);
}

/* inih's reader: one physical line per call, so inih's line count is ours. */
static char *loader_read(char *buf, int size, void *stream) {
    struct loader *ld = stream;
    if (ld->pos >= ld->end || size < 3) return NULL;
    const char *s = ld->pos;
    const char *nl = memchr(s, '\n', (size_t)(ld->end - s));
    const char *e = nl ? nl : ld->end;
    ld->pos = nl ? nl + 1 : ld->end;
    ld->line++;
    memcpy(buf, "\n", 2);
    line_classify(ld, s, e, buf, size);
    return buf;
}

/* ---- after the file: references and duplicate routes ------------------ */

static void resolve_listeners(struct loader *ld) {
    struct config *cfg = ld->cfg;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        struct listener_refs *refs = &ld->lrefs[i];
        if (!refs->upstream) continue;
        cfg->listeners[i].upstream = config_find_upstream(cfg, refs->upstream);
        if (!cfg->listeners[i].upstream)
            loader_error(ld, refs->upstream_line, "undefined upstream '%s'", refs->upstream);
    }
}

static void route_check_kind(struct loader *ld, const struct config_route *r,
                             const struct route_refs *refs);

static void resolve_routes(struct loader *ld) {
    struct config *cfg = ld->cfg;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct config_route *r = &cfg->routes[i];
        struct route_refs *refs = &ld->rrefs[i];
        if (refs->upstream) {
            r->upstream = config_find_upstream(cfg, refs->upstream);
            if (!r->upstream)
                loader_error(ld, refs->upstream_line, "undefined upstream '%s'", refs->upstream);
        }
        if (refs->listener) {
            r->listener = config_find_listener(cfg, refs->listener);
            if (!r->listener)
                loader_error(ld, refs->listener_line, "undefined listener '%s'", refs->listener);
        }
        route_check_kind(ld, r, refs);
    }
}

/* A route serves http listeners (host, path, methods) or one tcp listener
 * (sni), never both: a tcp listener sees no request to match a path or a
 * method against, and an http one never reads a ClientHello. */
static void route_check_kind(struct loader *ld, const struct config_route *r,
                             const struct route_refs *refs) {
    const struct config_listener *l = r->listener;
    if (refs->sni_line && !refs->listener) {
        loader_error(ld, refs->sni_line,
                     "route %s: sni needs 'listener = NAME' naming a tcp listener", r->name);
    } else if (refs->sni_line && l && l->mode != MODE_TCP) {
        loader_error(ld, refs->sni_line,
                     "route %s: sni applies to tcp listeners; listener '%s' is http (use host)",
                     r->name, l->name);
    } else if (l && l->mode == MODE_TCP && !refs->sni_line) {
        loader_error(ld, refs->listener_line,
                     "route %s: listener '%s' is a tcp listener; a route on it needs sni",
                     r->name, l->name);
    } else if (refs->sni_line && l && config_listener_tls(l)) {
        loader_error(ld, refs->sni_line,
                     "route %s: listener '%s' terminates TLS (tls_cert); sni routes pass TLS "
                     "through untouched, on a listener without tls_cert",
                     r->name, l->name);
    } else if (l && l->mode == MODE_TCP && refs->http_key) {
        loader_error(ld, refs->http_line,
                     "route %s: '%s' does not apply to a route of tcp listener '%s' (it routes "
                     "by sni only)",
                     r->name, refs->http_key, l->name);
    }
}

bool config_listener_has_sni(const struct config *cfg, const struct config_listener *l) {
    for (size_t i = 0; i < cfg->nroutes; i++)
        if (cfg->routes[i].listener == l && cfg->routes[i].nsnis > 0) return true;
    return false;
}

/* A tcp listener needs somewhere to send a connection: its `upstream`, or
 * sni routes (a connection that matches none of them is then closed).
 * header_timeout bounds the wait for a ClientHello, so only a tcp listener
 * that reads one takes it. */
static void check_tcp_listeners(struct loader *ld) {
    for (size_t i = 0; i < ld->cfg->nlisteners; i++) {
        const struct config_listener *l = &ld->cfg->listeners[i];
        if (l->mode != MODE_TCP) continue;
        bool sni = config_listener_has_sni(ld->cfg, l);
        if (!ld->lrefs[i].upstream && !sni)
            loader_error(ld, l->line,
                         "listener %s: mode tcp needs 'upstream' (or routes with sni and "
                         "'listener = %s')",
                         l->name, l->name);
        if (ld->lrefs[i].header_timeout_line && !sni)
            loader_error(ld, ld->lrefs[i].header_timeout_line,
                         "listener %s: 'header_timeout' applies to mode http, or to a tcp "
                         "listener with sni routes (the wait for the ClientHello)",
                         l->name);
    }
}

/* One (listener, sni pattern) of a route, for check_duplicate_snis. */
struct sni_rule {
    const char *listener; /* the tcp listener's name */
    const char *pattern;  /* lower-cased, as in the config */
    size_t route;         /* index in cfg->routes */
};

static int sni_rule_cmp(const void *a, const void *b) {
    const struct sni_rule *x = a, *y = b;
    int c = strcmp(x->listener, y->listener);
    if (c == 0) c = strcmp(x->pattern, y->pattern);
    return c != 0 ? c : (x->route > y->route) - (x->route < y->route);
}

/* Two routes of one tcp listener with the same sni name would make the
 * choice depend on file order: each later one is reported against the
 * first (by line). A route listing a name twice was refused at its key. */
static void check_duplicate_snis(struct loader *ld) {
    const struct config *cfg = ld->cfg;
    struct sni_rule *v = NULL;
    size_t n = 0;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct config_route *r = &cfg->routes[i];
        if (ld->rrefs[i].bad || !r->listener || r->listener->mode != MODE_TCP) continue;
        for (size_t s = 0; s < r->nsnis; s++) {
            v = grow(v, n, sizeof *v);
            v[n++] = (struct sni_rule){r->listener->name, r->snis[s], i};
        }
    }
    if (n > 1) qsort(v, n, sizeof *v, sni_rule_cmp); /* routes are in file order */
    for (size_t first = 0, i = 1; i < n; i++) {
        if (strcmp(v[i].listener, v[first].listener) || strcmp(v[i].pattern, v[first].pattern)) {
            first = i;
            continue;
        }
        const struct config_route *later = &cfg->routes[v[i].route];
        const struct config_route *earlier = &cfg->routes[v[first].route];
        loader_error(ld, later->line,
                     "route %s: sni '%s' on listener %s is already routed by route %s (line %d)",
                     later->name, v[i].pattern, v[i].listener, earlier->name, earlier->line);
    }
    free(v);
}

static int str_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends the N strings of V to OUT, sorted, each followed by '\n'. */
static void add_sorted(struct strbuf *out, char **v, size_t n) {
    if (n == 0) return;
    char **tmp = xmalloc(n * sizeof *tmp);
    memcpy(tmp, v, n * sizeof *tmp);
    qsort(tmp, n, sizeof *tmp, str_cmp);
    for (size_t i = 0; i < n; i++) {
        strbuf_adds(out, tmp[i]);
        strbuf_adds(out, "\n");
    }
    free(tmp);
}

/* A string equal for two routes exactly when they match the same requests:
 * listener (by name; "*" = every http listener, never a valid name), host
 * set (already lower-cased), path kind and value, method set. Sections are
 * separated by bytes no value may contain. */
static char *route_key(const struct config_route *r, const struct route_refs *refs) {
    struct strbuf key = STRBUF_INIT;
    strbuf_adds(&key, refs->listener ? refs->listener : "*");
    strbuf_adds(&key, "\x01");
    add_sorted(&key, r->hosts, r->nhosts);
    strbuf_adds(&key, r->path_exact ? "\x01=" : "\x01^");
    strbuf_adds(&key, r->path);
    strbuf_adds(&key, "\x01");
    add_sorted(&key, r->methods, r->nmethods);
    return strbuf_take(&key);
}

struct route_match {
    char *key;    /* route_key() */
    int line;     /* the route's header line */
    size_t index; /* in cfg->routes */
};

static int route_match_cmp(const void *a, const void *b) {
    const struct route_match *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c != 0) return c;
    return (x->line > y->line) - (x->line < y->line);
}

/* Two routes that match the same requests make the choice depend on file
 * order, which the spec forbids: report each later one against the first.
 * Routes with a refused key are left out: their match is not what the
 * file says, and their own error is the one to fix. */
static void check_duplicate_routes(struct loader *ld) {
    struct config *cfg = ld->cfg;
    struct route_match *m = xcalloc(cfg->nroutes ? cfg->nroutes : 1, sizeof *m);
    size_t n = 0;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        if (ld->rrefs[i].bad || ld->rrefs[i].sni_line) continue; /* check_duplicate_snis */
        m[n].key = route_key(&cfg->routes[i], &ld->rrefs[i]);
        m[n].line = cfg->routes[i].line;
        m[n++].index = i;
    }
    qsort(m, n, sizeof *m, route_match_cmp);
    for (size_t first = 0, i = 1; i < n; i++) {
        if (strcmp(m[i].key, m[first].key) != 0) {
            first = i;
            continue;
        }
        loader_error(ld, m[i].line,
                     "route %s matches exactly the same requests as route %s (line %d)",
                     cfg->routes[m[i].index].name, cfg->routes[m[first].index].name, m[first].line);
    }
    for (size_t i = 0; i < n; i++)
        free(m[i].key);
    free(m);
}

/* ---- loading ---------------------------------------------------------- */

/* An error's place in the output: by line, then in the order found
 * (qsort is not stable, so the index breaks ties). */
struct error_ref {
    int line;
    size_t index;
};

static int error_ref_cmp(const void *a, const void *b) {
    const struct error_ref *x = a, *y = b;
    if (x->line != y->line) return x->line < y->line ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Moves the loader's errors into ERRS in line order as "FILE:LINE: msg"
 * ("FILE: msg" for line 0). */
static void errors_flush(struct loader *ld, struct config_errors *errs) {
    struct error_ref *order = xcalloc(ld->nerrors ? ld->nerrors : 1, sizeof *order);
    for (size_t i = 0; i < ld->nerrors; i++)
        order[i] = (struct error_ref){ld->errors[i].line, i};
    qsort(order, ld->nerrors, sizeof *order, error_ref_cmp);
    for (size_t i = 0; i < ld->nerrors; i++) {
        const struct load_error *e = &ld->errors[order[i].index];
        struct strbuf msg = STRBUF_INIT;
        strbuf_adds(&msg, ld->file);
        if (e->line > 0) strbuf_printf(&msg, ":%d", e->line);
        strbuf_adds(&msg, ": ");
        strbuf_adds(&msg, e->msg);
        errs_add(errs, strbuf_take(&msg));
        free(e->msg);
    }
    free(order);
    free(ld->errors);
    ld->errors = NULL;
    ld->nerrors = 0;
}

static void loader_free(struct loader *ld) {
    for (size_t i = 0; ld->cfg && i < ld->cfg->nlisteners; i++)
        free(ld->lrefs[i].upstream);
    for (size_t i = 0; ld->cfg && i < ld->cfg->nroutes; i++) {
        free(ld->rrefs[i].upstream);
        free(ld->rrefs[i].listener);
    }
    free(ld->lrefs);
    free(ld->rrefs);
    free(ld->label);
}

static struct config *config_new(const char *file) {
    struct config *cfg = xcalloc(1, sizeof *cfg);
    cfg->file = xstrdup(file);
    cfg->global.workers = 0;
    cfg->global.log_level = LOG_INFO;
    cfg->global.access_log = ACCESS_LOG_STDOUT;
    cfg->global.access_log_format = ACCESS_LOG_TEXT;
    cfg->global.max_connections = 10000;
    cfg->global.shutdown_timeout_ms = 30 * 1000;
    return cfg;
}

/* Parses and validates TEXT (LEN bytes) on behalf of file NAME. */
static struct config *load_text(const char *name, const char *text, size_t len,
                                struct config_errors *errs) {
    struct loader ld = {.file = name, .pos = text, .end = text + len};
    ld.cfg = config_new(name);
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) ld.pos += 3; /* UTF-8 BOM */
    int rc = ini_parse_stream(loader_read, &ld, loader_on_key, &ld);
    section_end(&ld);
    if (rc != 0) /* cannot happen: inih only sees lines we checked */
        loader_error(&ld, rc > 0 ? rc : 0, rc > 0 ? "syntax error" : "out of memory");
    resolve_listeners(&ld);
    resolve_routes(&ld);
    check_duplicate_routes(&ld);
    check_duplicate_snis(&ld);
    check_tcp_listeners(&ld);
    if (ld.cfg->nlisteners == 0) /* it would start, bind nothing and serve nothing */
        loader_error(&ld, 0, "no [listener NAME] section: nothing to serve");
    loader_free(&ld);
    if (ld.nerrors == 0) return ld.cfg;
    errors_flush(&ld, errs);
    config_free(ld.cfg);
    return NULL;
}

struct config *config_load_string(const char *name, const char *text, struct config_errors *errs) {
    return load_text(name, text, strlen(text), errs);
}

/* Reads all of PATH into memory. Returns -1 after adding "PATH: reason". */
static int read_file(const char *path, char **text, size_t *len, struct config_errors *errs) {
    FILE *f = fopen(path, "rb");
    struct strbuf buf = STRBUF_INIT;
    char chunk[8192];
    size_t n;
    int err = 0;
    if (!f) err = errno;
    while (f && (n = fread(chunk, 1, sizeof chunk, f)) > 0 && buf.len <= CONFIG_MAX_FILE)
        strbuf_add(&buf, chunk, n);
    if (f && ferror(f)) err = errno ? errno : EIO;
    if (f) fclose(f);
    if (err || buf.len > CONFIG_MAX_FILE) {
        struct strbuf msg = STRBUF_INIT;
        strbuf_adds(&msg, path);
        strbuf_adds(&msg, ": ");
        strbuf_adds(&msg, err ? strerror(err) : "file too large (over 16 MiB)");
        errs_add(errs, strbuf_take(&msg));
        strbuf_free(&buf);
        return -1;
    }
    *len = buf.len;
    *text = strbuf_take(&buf);
    return 0;
}

struct config *config_load(const char *path, struct config_errors *errs) {
    char *text;
    size_t len;
    if (read_file(path, &text, &len, errs) < 0) return NULL;
    struct config *cfg = load_text(path, text, len, errs);
    free(text);
    return cfg;
}

/* ---- lookup and freeing ----------------------------------------------- */

struct config_upstream *config_find_upstream(const struct config *cfg, const char *name) {
    for (size_t i = 0; cfg && name && i < cfg->nupstreams; i++)
        if (strcmp(cfg->upstreams[i].name, name) == 0) return &cfg->upstreams[i];
    return NULL;
}

struct config_listener *config_find_listener(const struct config *cfg, const char *name) {
    for (size_t i = 0; cfg && name && i < cfg->nlisteners; i++)
        if (strcmp(cfg->listeners[i].name, name) == 0) return &cfg->listeners[i];
    return NULL;
}

static void headers_free(struct config_header *h, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

static void upstream_free(struct config_upstream *u) {
    free(u->name);
    for (size_t i = 0; i < u->nservers; i++)
        config_addr_free(&u->servers[i].addr);
    free(u->servers);
    free(u->health_path);
    strv_free(u->sources, u->nsources);
    free(u->tls_ca);
    free(u->tls_sni);
}

static void route_free(struct config_route *r) {
    free(r->name);
    strv_free(r->hosts, r->nhosts);
    strv_free(r->snis, r->nsnis);
    free(r->path);
    strv_free(r->methods, r->nmethods);
    headers_free(r->add_request_headers, r->nadd_request_headers);
    strv_free(r->remove_request_headers, r->nremove_request_headers);
    headers_free(r->add_response_headers, r->nadd_response_headers);
}

void config_free(struct config *cfg) {
    if (!cfg) return;
    free(cfg->file);
    free(cfg->global.access_log_path);
    config_addr_free(&cfg->global.admin);
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        free(cfg->listeners[i].name);
        config_addr_free(&cfg->listeners[i].bind);
        free(cfg->listeners[i].proxy_from);
        for (size_t c = 0; c < cfg->listeners[i].ntls_certs; c++) {
            free(cfg->listeners[i].tls_certs[c].cert);
            free(cfg->listeners[i].tls_certs[c].key);
        }
        free(cfg->listeners[i].tls_certs);
    }
    free(cfg->listeners);
    for (size_t i = 0; i < cfg->nupstreams; i++)
        upstream_free(&cfg->upstreams[i]);
    free(cfg->upstreams);
    for (size_t i = 0; i < cfg->nroutes; i++)
        route_free(&cfg->routes[i]);
    free(cfg->routes);
    free(cfg);
}

void config_errors_free(struct config_errors *errs) {
    if (!errs) return;
    strv_free(errs->items, errs->count);
    errs->items = NULL;
    errs->count = 0;
}
