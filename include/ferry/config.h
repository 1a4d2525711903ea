/* config: the INI file turned into one immutable, validated object.
 *
 * config_load() parses and validates everything (syntax, values, references,
 * duplicate route matches) and reports every problem as "FILE:LINE: message"
 * into a struct config_errors, all of them in one run. Code that runs after a
 * successful load trusts the object completely and never parses a string
 * from it again: durations are milliseconds, sizes are bytes, references are
 * pointers. The object is never modified after load; a reload builds a new
 * one. Every string and array inside is owned by the config and freed by
 * config_free(). */
#ifndef FERRY_CONFIG_H
#define FERRY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/util.h"

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

enum access_log_target {
    ACCESS_LOG_OFF = 0,
    ACCESS_LOG_STDOUT,
    ACCESS_LOG_STDERR,
    ACCESS_LOG_FILE, /* path in config_global.access_log_path */
};

enum access_log_format { ACCESS_LOG_TEXT = 0, ACCESS_LOG_JSON };

enum listener_mode { MODE_HTTP = 0, MODE_TCP };

/* `tls_auto`: who makes the listener's certificates. */
enum tls_auto { TLS_AUTO_OFF = 0, TLS_AUTO_ACME, TLS_AUTO_INTERNAL };

#define CONFIG_STATE_DIR_DEFAULT "/var/lib/ferry"
#define CONFIG_ACME_DIRECTORY_DEFAULT "https://acme-v02.api.letsencrypt.org/directory"

enum balance_kind {
    BALANCE_ROUND_ROBIN = 0,
    BALANCE_LEAST_CONN,
    BALANCE_IP_HASH,
    BALANCE_RANDOM2,
};

enum health_check_kind { HEALTH_OFF = 0, HEALTH_TCP, HEALTH_HTTP };

enum proxy_protocol_version { PROXY_PROTOCOL_OFF = 0, PROXY_PROTOCOL_V1, PROXY_PROTOCOL_V2 };

enum addr_kind {
    ADDR_INET = 0, /* host (IP literal or name) and port */
    ADDR_UNIX,     /* filesystem path */
};

/* An address exactly as written in the file, split but not resolved:
 * listeners resolve at bind time, upstream servers may be DNS names that
 * are resolved (and re-resolved) at run time. */
struct config_addr {
    enum addr_kind kind; /* inet or unix */
    char *host;          /* inet: "127.0.0.1", "::1" (no brackets), "app";
                          * "" for ":PORT" (every address, v4 and v6);
                          * NULL for unix */
    uint16_t port;       /* inet: 1..65535; 0 for unix */
    char *path;          /* unix: socket path; NULL for inet */
    char *text;          /* the address as written, for logs and /status */
};

/* One `server =` line of an upstream. */
struct config_server {
    struct config_addr addr; /* where to connect */
    unsigned weight;         /* weight=N, default 1, 1..1000 */
    bool backup;             /* takes traffic only when no primary is up */
    int line;                /* line of the `server =` key */
};

/* One `add_*_header = Name: value` line. */
struct config_header {
    char *name;  /* a token, as written */
    char *value; /* trimmed; may be empty */
};

struct config_global {
    unsigned workers; /* 0 = auto (one per CPU) */
    enum log_level log_level;
    enum access_log_target access_log;
    char *access_log_path; /* ACCESS_LOG_FILE only, else NULL */
    int access_log_line;   /* line of `access_log`, 0 when not set */
    enum access_log_format access_log_format;
    bool has_admin;            /* `admin` set */
    struct config_addr admin;  /* valid when has_admin; inet only */
    unsigned max_connections;  /* downstream connections, whole process; >= 1 */
    uint64_t shutdown_timeout_ms;
    char *state_dir;           /* never NULL: `state_dir`, or CONFIG_STATE_DIR_DEFAULT */
    int state_dir_line;        /* line of `state_dir`, 0 when not set */
    char *acme_directory;      /* never NULL: `acme_directory`, or Let's Encrypt's */
    char *acme_email;          /* `acme_email`, or NULL */
    char *acme_ca;             /* `acme_ca` (a CA file for the directory's HTTPS), or NULL */
    int acme_ca_line;          /* its line, 0 when not set */
    bool watch_config; /* reload when the file changes (watch.h) */
};

/* One block of `proxy_protocol_from`. IPv4 blocks are kept as v4-mapped
 * IPv6 (a.b.c.d/N as ::ffff:a.b.c.d/96+N), so one comparison serves a v4
 * client on a v4 socket and one on a dual-stack socket alike. */
struct config_cidr {
    uint8_t addr[16]; /* the block's first address (bits past the prefix are 0) */
    uint8_t prefix;   /* 0..128 */
};

struct config_upstream;

/* One `tls_cert = CERT [KEY]` line: a PEM chain and its key (KEY NULL: the
 * key is in CERT). Loaded and checked by tls_set_load(). */
struct config_tls_cert {
    char *cert;
    char *key;
    int line;
};

/* TLS protocol versions, as OpenSSL numbers them (TLS1_2_VERSION, ...). */
#define CONFIG_TLS_1_2 0x0303
#define CONFIG_TLS_1_3 0x0304

struct config_listener {
    char *name;
    int line;                        /* line of the section header */
    struct config_addr bind;         /* where to listen */
    unsigned backlog;                /* listen() queue */
    enum listener_mode mode;
    struct config_upstream *upstream; /* http: NULL = 404; tcp: NULL only when routes
                                       * with `sni` name this listener (no match: closed) */
    uint64_t header_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t max_header_size; /* bytes */
    uint64_t max_body_size;   /* bytes; 0 = unlimited */
    bool proxy_protocol;      /* expect PROXY v1/v2 from a balancer in front */
    struct config_cidr *proxy_from; /* sources that may send one; empty = any */
    size_t nproxy_from;
    struct config_tls_cert *tls_certs; /* non-empty: the listener speaks TLS */
    size_t ntls_certs;
    int tls_min, tls_max;     /* CONFIG_TLS_1_2 or CONFIG_TLS_1_3 */
    bool redirect_https;      /* http, cleartext: 308 every request to https */
    uint64_t hsts_ms;         /* TLS: Strict-Transport-Security max-age; 0 = off */
    enum tls_auto tls_auto;   /* certificates made by ferry (never with tls_cert) */
    int tls_auto_line;        /* line of `tls_auto`, 0 when not set */
    bool alpn_h2;             /* TLS, http: ALPN offers h2 (`alpn`) */
    bool alpn_http1;          /* TLS, http: ALPN offers http/1.1 */
    bool h2c;                 /* cleartext http: HTTP/2 with prior knowledge too */
    unsigned h2_max_streams;  /* HTTP/2: SETTINGS_MAX_CONCURRENT_STREAMS */
};

static inline bool config_listener_tls(const struct config_listener *l) {
    return l->ntls_certs > 0 || l->tls_auto != TLS_AUTO_OFF;
}

struct config_upstream {
    char *name;
    int line;                       /* line of the section header */
    struct config_server *servers;  /* at least one */
    size_t nservers;
    enum balance_kind balance;
    uint64_t resolve_ms;
    uint64_t connect_timeout_ms;
    uint64_t read_timeout_ms;
    unsigned keepalive;             /* idle pooled connections per server per worker */
    uint64_t keepalive_timeout_ms;
    unsigned retries;
    uint64_t hold_ms;
    unsigned max_fails;
    uint64_t fail_timeout_ms;
    enum health_check_kind health_check;
    char *health_path;              /* HEALTH_HTTP: "/path", else NULL */
    uint64_t health_interval_ms;
    enum proxy_protocol_version proxy_protocol;
    char **sources;                 /* IP literals for outbound binds; may be empty */
    size_t nsources;
    bool tls;                       /* TLS to the servers */
    bool tls_verify;                /* verify their certificates (default on) */
    char *tls_ca;                   /* CA file; NULL: the system's */
    char *tls_sni;                  /* name sent and verified; NULL: the server's host */
    int tls_line;                   /* line of `tls`, for messages; 0 = absent */
    int tls_ca_line;                /* line of `tls_ca` */
};

struct config_route {
    char *name;
    int line;                   /* line of the section header */
    char **hosts;               /* lower-cased; exact or "*.suffix"; empty = any host */
    size_t nhosts;
    char *path;                 /* never NULL: `path` or `path_prefix` value, "/" if absent */
    bool path_exact;            /* true for `path =`, false for `path_prefix` */
    char **methods;             /* upper-case tokens as written; empty = any */
    size_t nmethods;
    char **snis;                /* tcp routes: lower-cased; exact or "*.suffix"; else empty */
    size_t nsnis;
    struct config_listener *listener; /* NULL = every http listener; a tcp one for sni routes */
    struct config_upstream *upstream; /* never NULL */
    bool strip_prefix;
    bool rewrite_redirects;     /* Location, Content-Location, Set-Cookie Path back to the
                                 * client's view; default: strip_prefix */
    uint64_t read_timeout_ms;   /* overrides the upstream's; 0 = the upstream's */
    uint64_t idle_timeout_ms;   /* overrides the listener's; 0 = the listener's */
    struct config_header *add_request_headers;
    size_t nadd_request_headers;
    char **remove_request_headers;
    size_t nremove_request_headers;
    struct config_header *add_response_headers;
    size_t nadd_response_headers;
};

struct config {
    char *file; /* path it was loaded from, as given */
    struct config_global global;
    struct config_listener *listeners;
    size_t nlisteners;
    struct config_upstream *upstreams;
    size_t nupstreams;
    struct config_route *routes;
    size_t nroutes;
};

/* Every problem found by one load, each already formatted "FILE:LINE: message"
 * (or "FILE: message" when no line applies, e.g. the file cannot be read). */
struct config_errors {
    char **items;
    size_t count;
};

/* Loads and validates PATH. Returns the config, or NULL with at least one
 * entry in ERRS. ERRS must be zeroed by the caller and freed with
 * config_errors_free() in either case. */
struct config *config_load(const char *path, struct config_errors *errs) FERRY_MUSTCHECK;

/* The same from a string in memory; NAME stands in for the file name in
 * messages. For tests and for the admin endpoint's future use. */
struct config *config_load_string(const char *name, const char *text,
                                  struct config_errors *errs) FERRY_MUSTCHECK;

void config_free(struct config *cfg);
void config_errors_free(struct config_errors *errs);

struct config_upstream *config_find_upstream(const struct config *cfg, const char *name);
struct config_listener *config_find_listener(const struct config *cfg, const char *name);
/* Whether routes with `sni` name tcp listener L: it reads each client's
 * ClientHello to pick an upstream. */
bool config_listener_has_sni(const struct config *cfg, const struct config_listener *l);

/* Value parsers, exposed for unit tests and the command line. Each returns 0
 * on success or -1 when TEXT is not a valid value (nothing is written then).
 * Durations: "250ms", "10s", "5m", "1h", "365d", a bare number is seconds
 * (any size here: the loader refuses more than 3650d).
 * Sizes: "512", "16k", "1m" (bytes, KiB, MiB). Booleans: on|off|yes|no|true|false.
 * Addresses: HOST:PORT, [IPV6]:PORT, :PORT, unix:/path. */
int config_parse_duration(const char *text, uint64_t *ms) FERRY_MUSTCHECK;
int config_parse_size(const char *text, uint64_t *bytes) FERRY_MUSTCHECK;
int config_parse_bool(const char *text, bool *value) FERRY_MUSTCHECK;
int config_parse_addr(const char *text, struct config_addr *addr) FERRY_MUSTCHECK;
void config_addr_free(struct config_addr *addr);

/* Whether ADDR (IPv6 bytes; an IPv4 address as v4-mapped ::ffff:a.b.c.d)
 * is in one of the N blocks of LIST. */
bool config_cidr_match(const struct config_cidr *list, size_t n, const uint8_t addr[16]);

#endif
