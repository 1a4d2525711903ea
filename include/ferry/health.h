/* health: what the whole process knows about each upstream server.
 *
 * One struct server_state per (upstream name, server address as written),
 * shared by every worker and every config generation that names that
 * server, created on the main thread and never freed before exit. It holds
 *   - the server's current address: names are resolved on the main loop
 *     with uv_getaddrinfo at start, every `resolve`, and at once (at most
 *     once a second) after a worker reports a connect failure; workers read
 *     the address under a sequence lock, so connecting takes no lock;
 *   - the verdict of active checks (`health_check`, rise 2 / fall 2 so one
 *     blip does not flap);
 *   - passive marks: a worker that sees `max_fails` consecutive failures
 *     marks the server down for `fail_timeout`, for every worker.
 * Checks and resolution run on the main loop only, off the request path. */
#ifndef FERRY_HEALTH_H
#define FERRY_HEALTH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

struct config;
struct config_server;
struct config_upstream;
struct health_probe;
struct health_resolve;

struct server_state {
    char *upstream;                   /* upstream name */
    char *server;                     /* address as written */
    atomic_uint seq;                  /* sequence lock over addr/has_addr: odd while writing */
    struct sockaddr_storage addr;     /* inet: the resolved address */
    bool has_addr;                    /* inet: addr is valid; unix: always true */
    atomic_bool check_down;           /* active checks say down */
    atomic_ullong down_until;         /* passive: down until this uv_hrtime()/1e6 ms */
    atomic_bool resolve_wanted;       /* a worker asks for re-resolution now */
    atomic_ullong resolves_changed;   /* re-resolutions that found a new address */
    atomic_ullong resolves_same;      /* ... the same address */
    atomic_ullong resolves_failed;    /* ... no answer (the last address is kept) */
    /* Main thread only. */
    const struct config_upstream *ucfg; /* latest config naming it; NULL when none does */
    const struct config_server *scfg;
    unsigned rise, fall;              /* consecutive check results */
    bool checking, resolving;         /* a check / a getaddrinfo is in flight */
    uint64_t next_check, next_resolve, last_resolve; /* ms, main loop clock */
    struct health_probe *probe;       /* the check in flight */
    struct health_resolve *resolve;   /* the getaddrinfo in flight */
    struct server_state *next;        /* registry list */
};

/* Starts the registry on the main loop (its timer ticks every 250 ms). */
void health_start(uv_loop_t *loop);
/* Stops timers and in-flight work; call before the loop's last run. */
void health_stop(void);
/* Frees every state (after the workers have ended). */
void health_free(void);

/* Main thread: registers every server of CFG (creating states, resolving
 * names that were never resolved, synchronously: start-up and reload must
 * know addresses before workers use them) and makes CFG the config the
 * checks follow. Servers no longer named keep their state but stop being
 * checked. */
void health_adopt(const struct config *cfg);

/* Any thread: the state of (UPSTREAM, SERVER), or NULL. Registered states
 * are found by workers when they build their views. */
struct server_state *health_find(const char *upstream, const char *server);

/* Any thread: copies the current address; false when it has none. */
bool health_address(struct server_state *s, struct sockaddr_storage *out);
/* Any thread: usable now (has an address, checks pass, not marked down). */
bool health_usable(struct server_state *s, uint64_t now_ms);
/* Any thread: usable if the passive mark is ignored (a held request probes
 * servers that recent failures marked down: the app may be back already). */
bool health_probeable(struct server_state *s);
/* Worker: a connect succeeded; a passive mark is lifted for everyone. */
void health_clear_mark(struct server_state *s);
/* Worker: a connect failed / succeeded; after max_fails consecutive
 * failures (counted by the caller) the server is marked down. */
void health_mark_down(struct server_state *s, uint64_t until_ms);
/* Worker: ask the main loop to re-resolve S now (names only). */
void health_want_resolve(struct server_state *s);

/* Whether a name is resolved again at NOW: its `resolve` interval ran out
 * (NEXT), or a worker asked (WANTED, after a connect failure) and the last
 * resolution (LAST) is at least a second old: a server refusing every
 * connection must not turn into a stream of DNS queries. Pure; for tests. */
bool health_resolve_due(uint64_t now, uint64_t last, uint64_t next, bool wanted);

/* Monotonic milliseconds shared by all threads (uv_hrtime based). */
uint64_t health_now_ms(void);

#endif
