/* ports: how close ferry is to running out of ephemeral ports.
 *
 * Every outbound connection ferry cannot pool takes a local port, and a
 * port stays taken in TIME_WAIT for a minute after the side that closed
 * first. The kernel needs a free port per (local address, server address
 * and port): at a few hundred new connections a second to one app, the
 * default range of about 28,000 ports runs out and connect() fails with
 * EADDRNOTAVAIL. Every 5 s, on the main loop (never on the request path),
 * this module reads the range and /proc/net/tcp{,6}, counts the sockets
 * (TIME_WAIT included) from each local address to each configured server,
 * and keeps the worst pair per local address. A warning goes to the error
 * log when fewer than 10% of the ports remain. */
#include "ferry/ports.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/config.h"
#include "ferry/health.h"
#include "ferry/log.h"
#include "ferry/util.h"

#define PORTS_INTERVAL_MS 5000
#define PORTS_MAX_PAIRS 256

struct pair {
    struct sockaddr_storage local;  /* port 0 */
    struct sockaddr_storage remote; /* with port */
    uint32_t count;
};

static uv_timer_t ptimer;
static const struct config *pcfg;
static struct ports_sample psample;
static bool pwarned;

const struct ports_sample *ports_sample(void) {
    return &psample;
}

static void ports_range(uint32_t *lo, uint32_t *hi) {
    *lo = 32768, *hi = 60999; /* Linux's default */
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (!f) return;
    unsigned a, b;
    if (fscanf(f, "%u %u", &a, &b) == 2 && a <= b) *lo = a, *hi = b;
    fclose(f);
}

/* "0100007F:1F90" (tcp) or 32 hex digits ":PORT" (tcp6), as the kernel
 * prints them: each 32-bit word in host (little-endian) order. */
static bool ports_parse_addr(const char *s, bool v6, struct sockaddr_storage *out) {
    memset(out, 0, sizeof(*out));
    unsigned words[4], port;
    if (v6) {
        if (sscanf(s, "%8x%8x%8x%8x:%x", &words[0], &words[1], &words[2], &words[3], &port) != 5)
            return false;
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        memcpy(&a->sin6_addr, words, 16);
    } else {
        if (sscanf(s, "%8x:%x", &words[0], &port) != 2) return false;
        struct sockaddr_in *a = (struct sockaddr_in *)out;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        memcpy(&a->sin_addr, &words[0], 4);
    }
    return true;
}

static uint16_t port_of(const struct sockaddr_storage *ss) {
    return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                          : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

static void set_port(struct sockaddr_storage *ss, uint16_t port) {
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
    if (a->ss_family != b->ss_family) return false;
    if (a->ss_family == AF_INET)
        return memcmp(a, b, sizeof(struct sockaddr_in)) == 0;
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
}

/* Is REMOTE one of the servers ferry connects to? */
static bool ports_is_server(const struct sockaddr_storage *remote) {
    for (size_t u = 0; pcfg && u < pcfg->nupstreams; u++) {
        for (size_t i = 0; i < pcfg->upstreams[u].nservers; i++) {
            const struct config_server *s = &pcfg->upstreams[u].servers[i];
            struct server_state *st = health_find(pcfg->upstreams[u].name, s->addr.text);
            struct sockaddr_storage ss;
            if (st && s->addr.kind == ADDR_INET && health_address(st, &ss) && same_addr(&ss, remote))
                return true;
        }
    }
    return false;
}

static void ports_count_file(const char *path, bool v6, uint32_t lo, uint32_t hi,
                             struct pair *pairs, size_t *npairs) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    if (!fgets(line, sizeof(line), f)) { /* header */
        fclose(f);
        return;
    }
    while (fgets(line, sizeof(line), f)) {
        char la[64], ra[64];
        struct pair p = {0};
        if (sscanf(line, "%*s %63s %63s", la, ra) != 2 || !ports_parse_addr(la, v6, &p.local) ||
            !ports_parse_addr(ra, v6, &p.remote))
            continue;
        uint16_t lport = port_of(&p.local);
        if (lport < lo || lport > hi || !ports_is_server(&p.remote)) continue;
        set_port(&p.local, 0);
        size_t k = 0;
        while (k < *npairs && !(same_addr(&pairs[k].local, &p.local) &&
                                same_addr(&pairs[k].remote, &p.remote)))
            k++;
        if (k == *npairs) {
            if (*npairs == PORTS_MAX_PAIRS) continue;
            pairs[(*npairs)++] = p;
        }
        pairs[k].count++;
    }
    fclose(f);
}

/* Folds the pairs into one figure per local address: its worst server. */
static void ports_summarise(const struct pair *pairs, size_t npairs, uint32_t range) {
    struct ports_sample *s = &psample;
    s->nsources = 0;
    for (size_t k = 0; k < npairs; k++) {
        char name[INET6_ADDRSTRLEN] = "?";
        uv_ip_name((const struct sockaddr *)&pairs[k].local, name, sizeof(name));
        size_t i = 0;
        while (i < s->nsources && strcmp(s->sources[i].name, name) != 0) i++;
        if (i == s->nsources) {
            if (s->nsources == PORTS_MAX_SOURCES) continue;
            snprintf(s->sources[i].name, sizeof(s->sources[i].name), "%s", name);
            s->sources[i].in_use = 0;
            s->nsources++;
        }
        if (pairs[k].count > s->sources[i].in_use) s->sources[i].in_use = pairs[k].count;
    }
    s->range = range;
    s->available = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < s->nsources; i++) {
        total += range;
        s->available += range > s->sources[i].in_use ? range - s->sources[i].in_use : 0;
    }
    if (s->nsources == 0) s->available = range; /* nothing in use: one full range */
    bool low = total && s->available * 10 < total;
    if (low && !pwarned)
        log_warn("ephemeral ports: only %llu of %llu left towards the upstream servers; "
                 "see README, 'Port exhaustion' (source addresses, keepalive, sysctls)",
                 (unsigned long long)s->available, (unsigned long long)total);
    pwarned = low;
}

static void ports_on_timer(uv_timer_t *t) {
    FERRY_UNUSED(t);
    uint32_t lo, hi;
    ports_range(&lo, &hi);
    struct pair *pairs = xcalloc(PORTS_MAX_PAIRS, sizeof(*pairs));
    size_t npairs = 0;
    ports_count_file("/proc/net/tcp", false, lo, hi, pairs, &npairs);
    ports_count_file("/proc/net/tcp6", true, lo, hi, pairs, &npairs);
    ports_summarise(pairs, npairs, hi - lo + 1);
    free(pairs);
}

void ports_start(uv_loop_t *loop) {
    uv_timer_init(loop, &ptimer);
    uv_timer_start(&ptimer, ports_on_timer, 0, PORTS_INTERVAL_MS);
}

void ports_adopt(const struct config *cfg) {
    pcfg = cfg;
}

void ports_stop(void) {
    if (!uv_is_closing((uv_handle_t *)&ptimer)) uv_close((uv_handle_t *)&ptimer, NULL);
}
