/* upstream: the servers of one [upstream] section as one worker sees them,
 * and the outbound connections to them.
 *
 * Each worker builds its own struct upstream per configured upstream, so the
 * balancer state and the counters are never shared between threads. An
 * outbound connection (struct upstream_conn) is an object of its own,
 * allocated apart from the downstream connection that uses it: it has its
 * own handles and its own lifetime (it may outlive its user, e.g. while its
 * close completes, or later while it idles in a keep-alive pool).
 *
 * upstream_checkout() is how a user gets a connected upstream_conn: it picks
 * a server with the balancer, connects with connect_timeout, and on failure
 * tries another server until `retries` extra attempts are used up. */
#ifndef FERRY_UPSTREAM_H
#define FERRY_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "ferry/balance.h"
#include "ferry/transport.h"
#include "ferry/util.h"

struct config_upstream;
struct config_server;
struct upstream;
struct upstream_checkout;
struct stats;
struct server_state;
struct server_set;
struct stats_node;

/* One address of one configured server, as this worker sees it. */
struct upstream_server {
    const struct config_server *cfg; /* the server line: name, weight, backup */
    struct upstream *up;             /* owner */
    struct server_state *state;      /* process-wide: this address and its health (health.h) */
    unsigned fails;                  /* consecutive connect failures seen by this worker */
    uint64_t last_warned;            /* loop time of the last connect-failure warning */
    unsigned active;                 /* connections open now (connecting included) */
    uint64_t opened;                 /* connections opened since start */
    uint64_t connect_errors;         /* failed connection attempts since start */
    struct stats_node *stats;        /* this worker's counters for it (STATS_SERVER) */
    struct list_node idle;           /* pooled idle connections, most recent first */
    unsigned nidle;                  /* entries in idle */
    struct ssl_session_st *tls_session; /* tls: the last session, to resume */
};

/* A configured server line and the membership version last taken from it. */
struct upstream_name {
    struct server_set *set; /* process-wide: the name's addresses (health.h) */
    unsigned version;       /* health_version(set) when servers was built */
};

struct upstream {
    const struct config_upstream *cfg;
    uv_loop_t *loop;                 /* the owning worker's loop */
    struct upstream_name *names;     /* cfg->nservers entries, in config order */
    struct upstream_server **servers; /* every address of every name, nservers entries; each
                                       * allocated apart: connections point at them */
    struct balance_peer *peers;      /* balancer state, peers[i] is servers[i] */
    unsigned *load;                  /* scratch for least_conn/random2: servers[i]->active */
    size_t ngone;                    /* entries whose address vanished, still with connections */
    struct stats *wstats;            /* the worker's counters, for entries made later */
    struct balance_ring ring;        /* ip_hash: built from the weights with the entries */
    uint64_t rng;                    /* random2's state */
    struct sockaddr_storage *sources; /* `source` addresses, port 0 */
    size_t nsources;
    size_t next_source;              /* used in turn */
    bool retired;                    /* a reload replaced it: nothing goes back to its pools */
    struct stats_node *stats;        /* this worker's counters for it (STATS_UPSTREAM) */
    size_t nservers;
    const struct tls_client *tls;    /* tls = on: the context (the generation's); else NULL */
    struct tls_worker *tw;           /* with tls: the loop's TLS state */
};

/* An outbound connection. Whoever holds it owns it until
 * upstream_conn_close(); the memory is freed after its handles' close
 * callbacks, after which `on_closed` (if set) tells the last user. */
struct upstream_conn {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } h;                              /* tcp or unix; see server->cfg->addr.kind */
    struct transport tp;              /* plain, on h: every read, write and close goes here */
    uv_connect_t connect_req;         /* in flight while connecting */
    uv_timer_t timer;                 /* connect timeout */
    struct upstream_server *server;   /* where it goes */
    struct upstream_checkout *checkout; /* set while connecting for a checkout */
    void (*on_closed)(void *arg);     /* called once, after the memory is unusable */
    void *on_closed_arg;
    struct list_node link;            /* in server->idle while pooled */
    int handles_open;                 /* close callbacks still to come */
    unsigned requests;                /* requests served on it, for reuse decisions */
    bool connected;                   /* connect completed successfully */
    bool reused;                      /* came out of the idle pool for this checkout */
    bool pooled;                      /* in server->idle now */
    bool closing;                     /* upstream_conn_close() was called */
};

/* Result of a checkout: UC is connected and now owned by the caller, or UC
 * is NULL and STATUS says why the last attempt failed (UV_ECONNREFUSED,
 * UV_ETIMEDOUT, UV_EHOSTUNREACH, ...; UV_EAI_NONAME when no server could be
 * tried at all). */
typedef void (*upstream_checkout_cb)(struct upstream_checkout *co, struct upstream_conn *uc,
                                     int status);

/* How a checkout may get its connection. */
struct upstream_want {
    const void *key;             /* ip_hash: the client's address bytes; valid until the callback */
    size_t key_len;
    bool fresh;                  /* never from the pool (tcp mode: a byte pipe needs its own) */
    bool probe;                  /* also servers marked down by recent failures (hold) */
    uint64_t connect_timeout_ms; /* 0: the upstream's connect_timeout */
};

/* Embedded in the user's object; valid from upstream_checkout() until its
 * callback runs or upstream_checkout_cancel(). */
struct upstream_checkout {
    struct upstream *up;
    upstream_checkout_cb cb;
    struct upstream_conn *connecting; /* the attempt in flight, if any */
    unsigned attempts;                /* connections tried so far */
    uint64_t tried;                   /* bit i: server i was tried (first 64 servers) */
    int last_error;                   /* of the latest failed attempt */
    const char *last_cause;           /* its words when a code says too little (TLS), or NULL */
    unsigned source_tries;            /* EADDRNOTAVAIL retries on other source addresses */
    struct upstream_want want;        /* the caller's terms */
};

/* Builds the runtime view of CFG for one loop. Every server must have been
 * registered with health_adopt() (addresses and health live there). */
struct upstream *upstream_create(const struct config_upstream *cfg, uv_loop_t *loop,
                                 struct stats *stats);
/* Every upstream_conn must have been closed (and its callbacks run). */
void upstream_destroy(struct upstream *up);
/* tls = on: connections to UP's servers speak TLS with TLS (which must
 * outlive UP), sharing TW's buffers. */
struct tls_client;
struct tls_worker;
void upstream_set_tls(struct upstream *up, const struct tls_client *tls, struct tls_worker *tw);

/* Starts a checkout (WANT is copied). Returns 0 when CB has run or will run,
 * exactly once: with an idle pooled connection it runs before this returns
 * (so the caller must be ready for it before calling, and must not touch
 * anything CB may have ended after the call); with a new connection it runs
 * later, from the loop. Returns a UV_E* code when not even one attempt could
 * start: CB never runs then. */
int upstream_checkout(struct upstream *up, struct upstream_checkout *co, upstream_checkout_cb cb,
                      const struct upstream_want *want) FERRY_MUSTCHECK;
/* Abandons a checkout in progress: its callback will not run. */
void upstream_checkout_cancel(struct upstream_checkout *co);

/* The transport to read and write UC through. */
static inline struct transport *upstream_conn_transport(struct upstream_conn *uc) {
    return &uc->tp;
}

/* Delivers UC's incoming bytes to reader R with the transport's data set
 * to DATA, starting to read if needed. Switching from the pool's EOF watch
 * to the user's callbacks (and back on release) costs no system call: the
 * transport only swaps the callbacks while it reads. Returns 0 (reading
 * now) or a UV_E* code. */
int upstream_conn_read(struct upstream_conn *uc, const struct transport_reader *r, void *data);
/* Stops reading (backpressure, or the transport is handed to a byte pipe). */
void upstream_conn_pause(struct upstream_conn *uc);

/* Gives UC back. When REUSABLE (the last response ended exactly at its
 * framed length, nothing else is pending) and the server's pool has room,
 * it idles in the pool for keepalive_timeout; otherwise it is closed. */
void upstream_release(struct upstream_conn *uc, bool reusable);

/* Closes every pooled idle connection (the worker is stopping). */
void upstream_close_idle(struct upstream *up);

/* A reload replaced UP: close its idle connections, pool nothing more. */
void upstream_retire(struct upstream *up);

/* Closes UC. ON_CLOSED(ARG), if given, runs after its last close callback,
 * when nothing in flight can refer to the caller's memory any more. */
void upstream_conn_close(struct upstream_conn *uc, void (*on_closed)(void *arg), void *arg);

#endif
