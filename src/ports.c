/* ports: how close ferry is to running out of ephemeral ports.
 *
 * Every outbound connection ferry cannot pool takes a local port, and a
 * port stays taken in TIME_WAIT for a minute after the side that closed
 * first. The kernel needs a free port per (local address, server address
 * and port): at a few hundred new connections a second to one app, the
 * default range of about 28,000 ports runs out and connect() fails with
 * EADDRNOTAVAIL. Every 5 s, in libuv's thread pool (never on the request
 * path, nor on the main loop that serves the admin endpoint), this module
 * reads the range and /proc/net/tcp{,6}, counts the sockets
 * (TIME_WAIT included) from each local address to each configured server,
 * and keeps the worst pair per local address. A warning goes to the error
 * log when fewer than 10% of the ports remain. */
#include "ferry/ports.h"

#include <arpa/inet.h>
#include <stdatomic.h>
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
static bool pbusy; /* a sample is being taken in the thread pool */
/* Set by ports_stop(): a scan in progress gives up, so that a graceful stop
 * never waits for one (with 100,000 sockets a scan takes seconds). */
static atomic_bool pstop;

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

/* What one sample counts: taken on the main loop, filled in the thread
 * pool (reading /proc/net/tcp with 100,000 sockets in TIME_WAIT takes a
 * while, and the admin endpoint shares the main loop). */
struct ports_job {
    uv_work_t req;
    struct sockaddr_storage servers[PORTS_MAX_PAIRS]; /* inet servers, with port */
    size_t nservers;
    struct sockaddr_storage sources[PORTS_MAX_SOURCES]; /* configured `source`s, port 0 */
    size_t nsources;
    uint32_t lo, hi;
    struct pair pairs[PORTS_MAX_PAIRS];
    size_t npairs;
};

static bool ports_in(const struct sockaddr_storage *set, size_t n,
                     const struct sockaddr_storage *a) {
    for (size_t i = 0; i < n; i++)
        if (same_addr(&set[i], a)) return true;
    return false;
}

static void ports_count_file(struct ports_job *j, const char *path, bool v6) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    /* Each read() makes the kernel walk its socket table back to where the
     * last one stopped: read in big bites. */
    char *big = malloc(1 << 20);
    if (big) setvbuf(f, big, _IOFBF, 1 << 20);
    char line[512];
    if (!fgets(line, sizeof(line), f)) { /* header */
        fclose(f);
        return;
    }
    while (!atomic_load_explicit(&pstop, memory_order_relaxed) && fgets(line, sizeof(line), f)) {
        char la[64], ra[64];
        struct pair p = {0};
        if (sscanf(line, "%*s %63s %63s", la, ra) != 2 || !ports_parse_addr(la, v6, &p.local) ||
            !ports_parse_addr(ra, v6, &p.remote))
            continue;
        uint16_t lport = port_of(&p.local);
        if (lport < j->lo || lport > j->hi || !ports_in(j->servers, j->nservers, &p.remote))
            continue;
        set_port(&p.local, 0);
        if (j->nsources && !ports_in(j->sources, j->nsources, &p.local)) continue;
        size_t k = 0;
        while (k < j->npairs && !(same_addr(&j->pairs[k].local, &p.local) &&
                                  same_addr(&j->pairs[k].remote, &p.remote)))
            k++;
        if (k == j->npairs) {
            if (j->npairs == PORTS_MAX_PAIRS) continue;
            j->pairs[j->npairs++] = p;
        }
        j->pairs[k].count++;
    }
    fclose(f);
    free(big);
}

static void ports_work(uv_work_t *req) {
    struct ports_job *j = container_of(req, struct ports_job, req);
    ports_range(&j->lo, &j->hi);
    if (j->nservers == 0) return; /* no inet server: no socket to count */
    ports_count_file(j, "/proc/net/tcp", false);
    ports_count_file(j, "/proc/net/tcp6", true);
}

static size_t ports_source_index(struct ports_sample *s, const char *name) {
    size_t i = 0;
    while (i < s->nsources && strcmp(s->sources[i].name, name) != 0) i++;
    if (i == s->nsources && s->nsources < PORTS_MAX_SOURCES) {
        snprintf(s->sources[i].name, sizeof(s->sources[i].name), "%s", name);
        s->sources[i].in_use = 0;
        s->nsources++;
    }
    return i;
}

/* Folds the pairs into one figure per local address: its worst server.
 * With `source` configured, exactly those addresses count (a silent one
 * still brings its whole range); without, the addresses seen in use, and
 * at least one range. */
static void ports_summarise(struct ports_job *j) {
    struct ports_sample *s = &psample;
    s->nsources = 0;
    for (size_t i = 0; i < j->nsources; i++) {
        char name[INET6_ADDRSTRLEN] = "?";
        uv_ip_name((const struct sockaddr *)&j->sources[i], name, sizeof(name));
        ports_source_index(s, name);
    }
    for (size_t k = 0; k < j->npairs; k++) {
        char name[INET6_ADDRSTRLEN] = "?";
        uv_ip_name((const struct sockaddr *)&j->pairs[k].local, name, sizeof(name));
        size_t i = ports_source_index(s, name);
        if (i < s->nsources && j->pairs[k].count > s->sources[i].in_use)
            s->sources[i].in_use = j->pairs[k].count;
    }
    uint32_t range = j->hi - j->lo + 1;
    s->range = range;
    s->available = s->nsources ? 0 : range;
    uint64_t total = s->nsources ? 0 : range;
    for (size_t i = 0; i < s->nsources; i++) {
        total += range;
        s->available += range > s->sources[i].in_use ? range - s->sources[i].in_use : 0;
    }
    bool low = s->available * 10 < total;
    if (low && !pwarned)
        log_warn("ephemeral ports: only %llu of %llu left towards the upstream servers; "
                 "see README, 'Port exhaustion' (source addresses, keepalive, sysctls)",
                 (unsigned long long)s->available, (unsigned long long)total);
    pwarned = low;
}

static void ports_after(uv_work_t *req, int status) {
    struct ports_job *j = container_of(req, struct ports_job, req);
    if (status == 0 && !atomic_load(&pstop)) ports_summarise(j);
    free(j);
    pbusy = false;
}

/* Takes down the servers (every address of each) and sources of the
 * current config (main thread). */
static void ports_snapshot(struct ports_job *j) {
    for (size_t u = 0; pcfg && u < pcfg->nupstreams; u++) {
        const struct config_upstream *up = &pcfg->upstreams[u];
        for (size_t i = 0; i < up->nservers; i++) {
            struct server_set *set = health_find(up->name, up->servers[i].addr.text);
            for (struct server_state *m = set ? health_first(set) : NULL;
                 m && j->nservers < PORTS_MAX_PAIRS; m = health_next(m))
                if (!health_gone(m) && health_address(m, &j->servers[j->nservers])) j->nservers++;
        }
        for (size_t i = 0; i < up->nsources && j->nsources < PORTS_MAX_SOURCES; i++) {
            struct sockaddr_storage ss = {0};
            if (uv_ip4_addr(up->sources[i], 0, (struct sockaddr_in *)&ss) != 0 &&
                uv_ip6_addr(up->sources[i], 0, (struct sockaddr_in6 *)&ss) != 0)
                continue;
            if (!ports_in(j->sources, j->nsources, &ss)) j->sources[j->nsources++] = ss;
        }
    }
}

static void ports_on_timer(uv_timer_t *t) {
    if (pbusy) return; /* the last sample is still being taken */
    struct ports_job *j = xcalloc(1, sizeof(*j));
    ports_snapshot(j);
    if (uv_queue_work(t->loop, &j->req, ports_work, ports_after) != 0) {
        free(j);
        return;
    }
    pbusy = true;
}

void ports_start(uv_loop_t *loop) {
    atomic_store(&pstop, false);
    uv_timer_init(loop, &ptimer);
    uv_timer_start(&ptimer, ports_on_timer, 0, PORTS_INTERVAL_MS);
}

void ports_adopt(const struct config *cfg) {
    pcfg = cfg;
}

void ports_stop(void) {
    atomic_store(&pstop, true);
    if (!uv_is_closing((uv_handle_t *)&ptimer)) uv_close((uv_handle_t *)&ptimer, NULL);
}
