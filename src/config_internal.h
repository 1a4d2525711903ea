/* config_internal: what the three parts of the config module share; private
 * to src/config.c (the loader), src/config_keys.c (the key schema and
 * setters) and src/config_value.c (value parsers). */
#ifndef FERRY_CONFIG_INTERNAL_H
#define FERRY_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/config.h"

#define CONFIG_MAX_KEYS    24          /* keys of the largest section */

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
    int header_timeout_line; /* `header_timeout =`, 0 = absent (tcp: sni routes only) */
};

/* Names a route refers to, resolved after the whole file is read. */
struct route_refs {
    bool bad;          /* a key of it was refused: its match is not what was meant */
    char *upstream;    /* `upstream =`, or NULL */
    int upstream_line; /* its line */
    char *listener;    /* `listener =`, or NULL for every http listener */
    int listener_line; /* its line */
    int sni_line;      /* first `sni =`, 0 = none: a route of a tcp listener */
    const char *http_key; /* the first http-only key (host, path, ...), or NULL */
    int http_line;     /* its line */
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
    const char *value;              /* the raw value of the key being applied, or NULL */
    int seen[CONFIG_MAX_KEYS];      /* line of each key's first occurrence, 0 = absent */
    int global_line;                /* line of [global], 0 = none yet */
    struct listener_refs *lrefs;    /* parallel to cfg->listeners */
    struct route_refs *rrefs;       /* parallel to cfg->routes */
    struct load_error *errors;      /* in the order found; sorted by line at the end */
    size_t nerrors;
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
bool config_sni_ok(const char *h);
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

#endif
