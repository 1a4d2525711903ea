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
 * start of a line. Port 0 (ask the kernel) is for `bind` only. A key whose
 * value was refused still counts as present, so one mistake is one error. */
#include "ferry/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "ferry/strbuf.h"

#define CONFIG_MAX_KEYS    16          /* keys of the largest section */
#define CONFIG_MAX_FILE    (16u << 20) /* a bigger "config" is a mistake (/dev/zero) */
#define CONFIG_MAX_WORKERS 1024
#define CONFIG_MAX_WEIGHT  1000
/* 10 years (3650d): longer is surely a mistake, and a value near 2^64 ms
 * would wrap when a timer adds it to the clock. */
#define CONFIG_MAX_DURATION_MS (3650ull * 86400 * 1000)
#define CONFIG_ADDR_HINT   "HOST:PORT, [IPV6]:PORT, :PORT or unix:/path"

struct loader;

/* How a key's value is parsed and where the result goes. */
enum key_type {
    KEY_FUNC,     /* a setter of its own */
    KEY_UINT,     /* unsigned, within [min, max] */
    KEY_DURATION, /* uint64_t milliseconds, within [min, max] */
    KEY_SIZE,     /* uint64_t bytes, within [min, max] */
    KEY_BOOL,     /* bool */
};

typedef void key_setter(struct loader *ld, void *obj, const char *key, const char *value);

struct key_def {
    const char *name;   /* as written in the file */
    enum key_type type; /* how to parse the value */
    bool repeat;        /* each occurrence adds one item */
    size_t offset;      /* field in the section's struct (not KEY_FUNC) */
    uint64_t min, max;  /* range for KEY_UINT, KEY_DURATION, KEY_SIZE */
    key_setter *set;    /* KEY_FUNC only */
};

struct section_def {
    const char *type;           /* "listener" in [listener NAME] */
    bool named;                 /* needs a NAME */
    const struct key_def *keys; /* what may appear in it */
    size_t nkeys;
    void *(*open)(struct loader *ld, const char *name); /* NULL: duplicate */
    void (*finish)(struct loader *ld, void *obj);       /* required keys */
};

/* Names a listener refers to, resolved after the whole file is read. */
struct listener_refs {
    char *upstream;    /* `upstream =`, or NULL */
    int upstream_line; /* its line */
};

/* Names a route refers to, resolved after the whole file is read. */
struct route_refs {
    bool bad;          /* a key of it was refused: its match is not what was meant */
    char *upstream;    /* `upstream =`, or NULL */
    int upstream_line; /* its line */
    char *listener;    /* `listener =`, or NULL for every http listener */
    int listener_line; /* its line */
};

/* One problem, kept with its line until all are sorted. */
struct load_error {
    int line;  /* 0: the file as a whole */
    char *msg; /* without the "FILE:LINE: " prefix */
};

/* Everything one load needs; lives on load_text()'s stack. */
struct loader {
    const char *file;               /* name for messages */
    struct config *cfg;             /* being built */
    const char *pos, *end;          /* reader: rest of the text */
    int line;                       /* reader: number of the current line */
    const struct section_def *sect; /* current section, NULL: none or skipped */
    bool skipping;                  /* the current header was bad: ignore its keys */
    void *obj;                      /* current section's struct */
    size_t index;                   /* its index in its config array */
    bool *bad;                      /* set by every error while the section is open */
    char *label;                    /* "listener web", for messages */
    int seen[CONFIG_MAX_KEYS];      /* line of each key's first occurrence, 0 = absent */
    int global_line;                /* line of [global], 0 = none yet */
    struct listener_refs *lrefs;    /* parallel to cfg->listeners */
    struct route_refs *rrefs;       /* parallel to cfg->routes */
    struct load_error *errors;      /* in the order found; sorted by line at the end */
    size_t nerrors;
};

/* One word of an enumerated value ("least_conn") and the enum it means. */
struct keyword {
    const char *word;
    int value;
};

/* What the value parsers, the key schema and the loader share. */

/* value parsers (pure functions on text) */
int config_parse_uint(const char *text, uint64_t *value);
const char *config_next_word(const char **cursor, size_t *len);
bool config_token_ok(const char *s);
bool config_name_ok(const char *s);
void config_lower(char *s);
bool config_url_path_ok(const char *p);
bool config_ip_literal_ok(const char *s);
bool config_route_host_ok(const char *h);
int config_parse_cidr(const char *word, struct config_cidr *out);

/* key schema: the sections, their keys and setters */
extern const struct section_def config_sections[];
extern const size_t config_nsections;
void config_key_apply(struct loader *ld, const struct key_def *k, const char *v);

/* loader: errors, each with its line */
void loader_error(struct loader *ld, int line, const char *fmt, ...) FERRY_PRINTF(3, 4);
void loader_key_error(struct loader *ld, const char *key, const char *fmt, ...) FERRY_PRINTF(3, 4);

/* ---- small helpers ---------------------------------------------------- */

static inline bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

static inline bool is_alnum(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Control bytes never belong in a value: an env variable could smuggle a
 * CR LF into a header otherwise. */
static inline bool is_ctl(char c) {
    return (unsigned char)c < 0x20 || c == 0x7f;
}

bool config_token_ok(const char *s) {
    if (*s == '\0') return false;
    for (; *s; s++)
        if (!util_is_tchar((unsigned char)*s)) return false;
    return true;
}

/* Section names: what fits in a metric label and a log line unquoted. */
bool config_name_ok(const char *s) {
    if (*s == '\0') return false;
    for (; *s; s++)
        if (!is_alnum(*s) && *s != '_' && *s != '.' && *s != '-') return false;
    return true;
}

void config_lower(char *s) {
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z') *s = (char)(*s - 'A' + 'a');
}

/* Room for one more element at the end of ARR (N in use), zeroed. */
static inline void *grow(void *arr, size_t n, size_t size) {
    char *p = xrealloc(arr, (n + 1) * size);
    memset(p + n * size, 0, size);
    return p;
}

static inline void strv_free(char **v, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static char *vformat(const char *fmt, va_list ap) {
    struct strbuf b = STRBUF_INIT;
    strbuf_vprintf(&b, fmt, ap);
    return strbuf_take(&b);
}

/* The next word of a space-separated list at *CURSOR, or NULL at the end.
 * *LEN is its length; *CURSOR moves past it. */
const char *config_next_word(const char **cursor, size_t *len) {
    const char *p = *cursor;
    while (is_space(*p))
        p++;
    if (*p == '\0') return NULL;
    const char *w = p;
    while (*p && !is_space(*p))
        p++;
    *len = (size_t)(p - w);
    *cursor = p;
    return w;
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

/* A bad value on the current line: "KEY: message". */
void loader_key_error(struct loader *ld, const char *key, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *msg = vformat(fmt, ap);
    va_end(ap);
    loader_error(ld, ld->line, "%s: %s", key, msg);
    free(msg);
}

static void errs_add(struct config_errors *errs, char *msg) {
    errs->items = xrealloc(errs->items, (errs->count + 1) * sizeof *errs->items);
    errs->items[errs->count++] = msg;
}

/* ---- value parsers ---------------------------------------------------- */

/* Leading decimal digits of TEXT. Returns -1 when there are none or they
 * overflow; *END points past them. No sign, no spaces. */
static int parse_digits(const char *text, uint64_t *value, const char **end) {
    uint64_t n = 0;
    const char *p = text;
    if (!is_digit(*p)) return -1;
    for (; is_digit(*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (n > (UINT64_MAX - d) / 10) return -1;
        n = n * 10 + d;
    }
    *value = n;
    *end = p;
    return 0;
}

int config_parse_uint(const char *text, uint64_t *value) {
    const char *end;
    uint64_t n;
    if (parse_digits(text, &n, &end) < 0 || *end != '\0') return -1;
    *value = n;
    return 0;
}

struct unit {
    const char *suffix;
    uint64_t factor;
};

/* A number with one of UNITS after it, multiplied out, overflow checked. */
static int parse_with_unit(const char *text, const struct unit *units, size_t nunits,
                           uint64_t *out) {
    uint64_t n;
    const char *end;
    if (!text || parse_digits(text, &n, &end) < 0) return -1;
    for (size_t i = 0; i < nunits; i++) {
        if (strcmp(end, units[i].suffix) != 0) continue;
        if (n > UINT64_MAX / units[i].factor) return -1;
        *out = n * units[i].factor;
        return 0;
    }
    return -1;
}

int config_parse_duration(const char *text, uint64_t *ms) {
    static const struct unit units[] = {
        {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000},
        {"d", 86400 * 1000},
    };
    return parse_with_unit(text, units, FERRY_ARRAY_LEN(units), ms);
}

/* Upper-case K and M are accepted too: "16K" is a common spelling and
 * cannot mean anything else. No g: nothing in ferry should be that big. */
int config_parse_size(const char *text, uint64_t *bytes) {
    static const struct unit units[] = {
        {"", 1}, {"k", 1024}, {"K", 1024}, {"m", 1024 * 1024}, {"M", 1024 * 1024},
    };
    return parse_with_unit(text, units, FERRY_ARRAY_LEN(units), bytes);
}

int config_parse_bool(const char *text, bool *value) {
    static const char *const yes[] = {"on", "yes", "true"};
    static const char *const no[] = {"off", "no", "false"};
    for (size_t i = 0; text && i < FERRY_ARRAY_LEN(yes); i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *value = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *value = false;
            return 0;
        }
    }
    return -1;
}

/* A host name in an address or a route: labels of letters, digits, '-' and
 * '_' (docker service names use it) joined by single dots, at most 253
 * bytes. A name of only digits and dots must be a real IPv4 address, so
 * "127.1" or "300.1.1.1" are refused rather than read by the resolver in
 * surprising ways. */
static bool host_name_ok(const char *s) {
    size_t label = 0;
    bool numeric = true;
    if (*s == '\0' || strlen(s) > 253) return false;
    for (const char *p = s; *p; p++) {
        if (*p == '.') {
            if (label == 0) return false; /* leading dot or ".." */
            label = 0;
            continue;
        }
        if (!is_alnum(*p) && *p != '-' && *p != '_') return false;
        if (!is_digit(*p)) numeric = false;
        if (++label > 63) return false;
    }
    if (label == 0) return false; /* trailing dot */
    struct in_addr a4;
    return !numeric || inet_pton(AF_INET, s, &a4) == 1;
}

static bool ipv6_ok(const char *s) {
    struct in6_addr a6;
    return inet_pton(AF_INET6, s, &a6) == 1;
}

bool config_ip_literal_ok(const char *s) {
    struct in_addr a4;
    return inet_pton(AF_INET, s, &a4) == 1 || ipv6_ok(s);
}

static int parse_port(const char *text, uint16_t *port) {
    uint64_t n;
    if (config_parse_uint(text, &n) < 0 || n > 65535) return -1;
    *port = (uint16_t)n;
    return 0;
}

/* HOST:PORT, [IPV6]:PORT or :PORT into a new host string ("" for :PORT) and
 * a port (0 allowed here; callers that need a real port check). */
static int parse_inet(const char *text, char **host, uint16_t *port) {
    const char *colon;
    char *h;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':') return -1;
        h = xstrndup(text + 1, (size_t)(close - text - 1));
        colon = close + 1;
        if (!ipv6_ok(h)) goto bad;
    } else {
        colon = strrchr(text, ':');
        if (!colon) return -1;
        h = xstrndup(text, (size_t)(colon - text));
        /* ':' is not a name byte, so an unbracketed "::1:80" fails here */
        if (h[0] != '\0' && !host_name_ok(h)) goto bad;
    }
    if (parse_port(colon + 1, port) < 0) goto bad;
    *host = h;
    return 0;
bad:
    free(h);
    return -1;
}

/* Absolute, printable, and short enough for sockaddr_un. */
static bool unix_path_ok(const char *p) {
    if (p[0] != '/' || strlen(p) >= sizeof(((struct sockaddr_un *)0)->sun_path)) return false;
    for (; *p; p++)
        if (is_ctl(*p)) return false;
    return true;
}

int config_parse_addr(const char *text, struct config_addr *addr) {
    struct config_addr a = {0};
    if (!text) return -1;
    if (strncmp(text, "unix:", 5) == 0) {
        if (!unix_path_ok(text + 5)) return -1;
        a.kind = ADDR_UNIX;
        a.path = xstrdup(text + 5);
    } else {
        if (parse_inet(text, &a.host, &a.port) < 0) return -1;
        a.kind = ADDR_INET;
    }
    a.text = xstrdup(text);
    *addr = a;
    return 0;
}

void config_addr_free(struct config_addr *addr) {
    if (!addr) return;
    free(addr->host);
    free(addr->path);
    free(addr->text);
    memset(addr, 0, sizeof *addr);
}

/* A path to match or probe: '/' first, printable ASCII, no space, no query
 * or fragment (a request path never contains them, so the rule could never
 * match). */
bool config_url_path_ok(const char *p) {
    if (p[0] != '/') return false;
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#') return false;
    }
    return true;
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

/* One word of proxy_protocol_from: ADDR or ADDR/PREFIX, IPv4 or IPv6 (no
 * brackets). Returns 0, -1 when it is not one, -2 when bits past the
 * prefix are set (then *OUT is the block the user probably meant). */
int config_parse_cidr(const char *word, struct config_cidr *out) {
    struct config_cidr c = {.addr = {0}};
    const char *slash = strchr(word, '/');
    char *ip = xstrndup(word, slash ? (size_t)(slash - word) : strlen(word));
    uint64_t prefix = 128, max = 128;
    int ok = inet_pton(AF_INET6, ip, c.addr);
    if (ok != 1 && (ok = inet_pton(AF_INET, ip, c.addr + 12)) == 1) {
        c.addr[10] = c.addr[11] = 0xff;
        prefix = max = 32;
    }
    free(ip);
    if (ok != 1 || (slash && (config_parse_uint(slash + 1, &prefix) < 0 || prefix > max)))
        return -1;
    c.prefix = (uint8_t)(prefix + (max == 32 ? 96 : 0));
    bool clean = true;
    for (unsigned bit = c.prefix; bit < 128; bit++) {
        uint8_t mask = (uint8_t)(0x80u >> (bit % 8));
        clean = clean && !(c.addr[bit / 8] & mask);
        c.addr[bit / 8] &= (uint8_t)~mask;
    }
    *out = c;
    return clean ? 0 : -2;
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

bool config_cidr_match(const struct config_cidr *list, size_t n, const uint8_t addr[16]) {
    for (size_t i = 0; i < n; i++) {
        unsigned full = list[i].prefix / 8, rest = list[i].prefix % 8;
        if (memcmp(list[i].addr, addr, full) != 0) continue;
        uint8_t mask = (uint8_t)(0xff00u >> rest);
        if (rest == 0 || (addr[full] & mask) == list[i].addr[full]) return true;
    }
    return false;
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

/* ---- [route NAME] ----------------------------------------------------- */

/* Exact name, "*.suffix", or a bracketed IPv6 literal as it appears in a
 * Host header. No port: routes match the host whatever the port. */
bool config_route_host_ok(const char *h) {
    if (strncmp(h, "*.", 2) == 0) return host_name_ok(h + 2);
    if (h[0] != '[') return host_name_ok(h);
    size_t len = strlen(h);
    if (len < 3 || h[len - 1] != ']') return false;
    char *inner = xstrndup(h + 1, len - 2);
    bool ok = ipv6_ok(inner);
    free(inner);
    return ok;
}

static void set_host(struct loader *ld, void *obj, const char *key, const char *v) {
    struct config_route *r = obj;
    char *h = xstrdup(v);
    config_lower(h);
    if (!config_route_host_ok(h)) {
        loader_key_error(ld, key, "expected a host name, *.suffix or [IPv6], got '%s'", v);
        free(h);
        return;
    }
    for (size_t i = 0; i < r->nhosts; i++) {
        if (strcmp(r->hosts[i], h) == 0) {
            loader_key_error(ld, key, "'%s' listed twice", h);
            free(h);
            return;
        }
    }
    r->hosts = grow(r->hosts, r->nhosts, sizeof *r->hosts);
    r->hosts[r->nhosts++] = h;
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
};

static const struct key_def route_keys[] = {
    K_REPEAT("host", set_host),
    K_FUNC("path", set_path),
    K_FUNC("path_prefix", set_path_prefix),
    K_FUNC("methods", set_methods),
    K_FUNC("listener", set_route_listener),
    K_FUNC("upstream", set_route_upstream),
    K_BOOL("strip_prefix", struct config_route, strip_prefix),
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
    char *v = expand_env(ld, name, value);
    if (v) config_key_apply(ld, k, v);
    free(v);
    return 1;
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
    return l;
}

/* Keys that mean nothing to this listener (http keys on a tcp one,
 * proxy_protocol_from without a PROXY header to check or on a unix socket)
 * are refused rather than silently ignored. */
static void listener_section_finish(struct loader *ld, void *obj) {
    static const char *const http_only[] = {"header_timeout", "max_header_size", "max_body_size"};
    struct config_listener *l = obj;
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
    if (l->mode != MODE_TCP) return;
    if (!seen_line(ld, "upstream"))
        loader_error(ld, l->line, "listener %s: mode tcp needs 'upstream'", l->name);
    for (size_t i = 0; i < FERRY_ARRAY_LEN(http_only); i++) {
        int line = seen_line(ld, http_only[i]);
        if (line)
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
    return u;
}

static void upstream_section_finish(struct loader *ld, void *obj) {
    struct config_upstream *u = obj;
    /* a `server` line with a bad value was reported already */
    if (!seen_line(ld, "server"))
        loader_error(ld, u->line, "upstream %s: needs at least one 'server'", u->name);
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

static void route_section_finish(struct loader *ld, void *obj) {
    struct config_route *r = obj;
    int strip = seen_line(ld, "strip_prefix");
    if (!seen_line(ld, "upstream"))
        loader_error(ld, r->line, "route %s: missing 'upstream'", r->name);
    /* path_exact: `path` won, even if a refused path_prefix came after it */
    if (r->strip_prefix && (r->path_exact || !seen_line(ld, "path_prefix")))
        loader_error(ld, strip, "route %s: strip_prefix needs path_prefix", r->name);
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
        if (!refs->listener) continue;
        r->listener = config_find_listener(cfg, refs->listener);
        if (!r->listener)
            loader_error(ld, refs->listener_line, "undefined listener '%s'", refs->listener);
        else if (r->listener->mode == MODE_TCP)
            loader_error(
                ld, refs->listener_line,
                "route %s: listener '%s' is a tcp listener; routes apply to http listeners",
                r->name, refs->listener);
    }
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
        if (ld->rrefs[i].bad) continue;
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
}

static void route_free(struct config_route *r) {
    free(r->name);
    strv_free(r->hosts, r->nhosts);
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
