/* config_value: the config's value parsers, pure functions on text:
 * numbers, durations, sizes, booleans, addresses, CIDR blocks, host names,
 * paths and tokens. They record no errors; the setters in config_keys.c do. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "config_internal.h"

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

bool config_cidr_match(const struct config_cidr *list, size_t n, const uint8_t addr[16]) {
    for (size_t i = 0; i < n; i++) {
        unsigned full = list[i].prefix / 8, rest = list[i].prefix % 8;
        if (memcmp(list[i].addr, addr, full) != 0) continue;
        uint8_t mask = (uint8_t)(0xff00u >> rest);
        if (rest == 0 || (addr[full] & mask) == list[i].addr[full]) return true;
    }
    return false;
}

/* Exact name, "*.suffix", or a bracketed IPv6 literal as it appears in a
 * Host header. No port: routes match the host whatever the port. */
/* An `sni` pattern: a DNS host name or "*." and one, as a ClientHello can
 * carry it (RFC 6066 3: no IP literal, no trailing dot), and in the bytes
 * ferry's reader accepts (letters, digits, '-', '.'; no '_'), so that a
 * route that could never match is an error rather than a silent miss. */
bool config_sni_ok(const char *h) {
    const char *name = strncmp(h, "*.", 2) == 0 ? h + 2 : h;
    bool numeric = true;
    for (const char *p = name; *p; p++) {
        if (*p == '_') return false;
        if (!is_digit(*p) && *p != '.') numeric = false;
    }
    return !numeric && host_name_ok(name);
}

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
