/* health: what the whole process knows about each upstream server.
 *
 * A `server` line stands for every address its name resolves to (A and
 * AAAA): compose's `--scale`, swarm's `tasks.app` and a Kubernetes headless
 * Service all scale an app that way. So the registry has two levels:
 *   - struct server_set, one per (upstream name, server as written): the
 *     name, its resolution (uv_getaddrinfo on the main loop at start, every
 *     `resolve`, and at once, at most once a second, after a worker
 *     reports a connect failure) and its members;
 *   - struct server_state, one per address of a set: the address (fixed
 *     for the state's life), the verdict of active checks (`health_check`,
 *     rise 2 / fall 2 so one blip does not flap) and passive marks (a
 *     worker that sees `max_fails` consecutive failures marks the address
 *     down for `fail_timeout`, for every worker).
 * Members are only ever appended (in the order first seen, so the order of
 * a later answer changes nothing) and never freed before exit: workers walk
 * the list without a lock. An address that vanishes from the answer is
 * marked gone (no new requests; workers close its pool and drop their entry
 * when its last connection ends) and comes back as the same member if it
 * reappears. A set's version changes whenever its membership does, which is
 * how a worker knows to rebuild its view. A name that does not resolve has
 * no member (it is down); a failed re-resolution keeps the last set.
 * Checks and resolution run on the main loop only, off the request path. */
#ifndef FERRY_HEALTH_H
#define FERRY_HEALTH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

struct config;
struct config_server;
struct config_upstream;
struct health_probe;
struct health_resolve;
struct server_set;

struct server_state {
    struct server_set *set;           /* the name it belongs to */
    char *address;                    /* "172.18.0.4:3000", "[::1]:3000"; unix: the path */
    struct sockaddr_storage addr;     /* inet: the address, fixed; unix: unused */
    atomic_bool gone;                 /* no longer in the name's answer */
    atomic_bool check_down;           /* active checks say down */
    atomic_ullong down_until;         /* passive: down until this uv_hrtime()/1e6 ms */
    /* Main thread only. */
    unsigned rise, fall;                 /* consecutive check results */
    bool checking;                       /* a check is in flight */
    uint64_t next_check;                 /* ms, main loop clock */
    struct health_probe *probe;          /* the check in flight */
    _Atomic(struct server_state *) next; /* the set's next member */
};

struct server_set {
    char *upstream;                         /* upstream name */
    char *server;                           /* address as written */
    _Atomic(struct server_state *) members; /* first seen first; see above */
    atomic_uint version;                    /* changes with the membership */
    atomic_bool resolve_wanted;       /* a worker asks for re-resolution now */
    atomic_ullong resolves_changed;   /* re-resolutions that changed the set */
    atomic_ullong resolves_same;      /* ... found the same addresses (any order) */
    atomic_ullong resolves_failed;    /* ... no answer (the last set is kept) */
    /* Main thread only. */
    const struct config_upstream *ucfg; /* latest config naming it; NULL when none does */
    const struct config_server *scfg;
    bool resolving;                      /* a getaddrinfo is in flight */
    uint64_t next_resolve, last_resolve; /* ms, main loop clock */
    struct health_resolve *resolve;   /* the getaddrinfo in flight */
    struct server_set *next;          /* registry list */
};

/* Starts the registry on the main loop (its timer ticks every 250 ms). */
void health_start(uv_loop_t *loop);
/* Stops timers and in-flight work; call before the loop's last run. */
void health_stop(void);
/* Frees every state (after the workers have ended). */
void health_free(void);

/* Main thread: registers every server of CFG (creating sets, resolving
 * names that were never resolved, synchronously: start-up and reload must
 * know addresses before workers use them) and makes CFG the config the
 * checks follow. Servers no longer named keep their state but stop being
 * checked and resolved. */
void health_adopt(const struct config *cfg);

/* Any thread: the set of (UPSTREAM, SERVER), or NULL. Registered sets are
 * found by workers when they build their views. */
struct server_set *health_find(const char *upstream, const char *server);
/* Any thread: the first member of SET / the member after S (NULL at the
 * end). Gone members are included: check health_gone(). */
struct server_state *health_first(struct server_set *set);
struct server_state *health_next(struct server_state *s);
/* Any thread: S vanished from its name's answer. */
bool health_gone(struct server_state *s);
/* Any thread: SET's membership version (changes when members come or go). */
unsigned health_version(struct server_set *set);

/* Main thread: makes SET's members exactly the N addresses in ADDRS (inet,
 * port included; duplicates and order do not matter): new ones are
 * appended, missing ones marked gone, returning ones no longer gone.
 * Returns true when anything changed (then the version has moved and one
 * info line says how). For the resolver, and for tests. */
bool health_set_apply(struct server_set *set, const struct sockaddr_storage *addrs, size_t n);

/* Any thread: copies the address; false for a unix server (no sockaddr). */
bool health_address(struct server_state *s, struct sockaddr_storage *out);
/* Any thread: usable now (in the answer, checks pass, not marked down). */
bool health_usable(struct server_state *s, uint64_t now_ms);
/* Any thread: usable if the passive mark is ignored (a held request probes
 * servers that recent failures marked down: the app may be back already). */
bool health_probeable(struct server_state *s);
/* Worker: a connect succeeded; a passive mark is lifted for everyone. */
void health_clear_mark(struct server_state *s);
/* Worker: a connect failed / succeeded; after max_fails consecutive
 * failures (counted by the caller) the address is marked down. */
void health_mark_down(struct server_state *s, uint64_t until_ms);
/* Any thread: how logs name S: "app:3000 (172.18.0.4:3000)", or just the
 * address when the server is written as one. BUF (LEN bytes) may hold it. */
const char *health_name(struct server_state *s, char *buf, size_t len);
/* Worker: ask the main loop to re-resolve SET's name now (names only). */
void health_want_resolve(struct server_set *set);

/* Whether a name is resolved again at NOW: its `resolve` interval ran out
 * (NEXT), or a worker asked (WANTED, after a connect failure) and the last
 * resolution (LAST) is at least a second old: a server refusing every
 * connection must not turn into a stream of DNS queries. Pure; for tests. */
bool health_resolve_due(uint64_t now, uint64_t last, uint64_t next, bool wanted);

/* Monotonic milliseconds shared by all threads (uv_hrtime based). */
uint64_t health_now_ms(void);

#endif
