/* generation: one loaded config and what is derived from it once for all
 * workers (the route tables), shared read-only and reference-counted.
 *
 * A reload builds a new generation on the main thread and hands a
 * reference to every worker; requests that started on the old one finish
 * on it, and it is freed when its last user lets go, on whichever thread
 * that happens. Nothing in it changes after generation_new(). */
#ifndef FERRY_GENERATION_H
#define FERRY_GENERATION_H

#include <stdatomic.h>

struct config;
struct route_table;
struct tls_set;

struct generation {
    atomic_uint refs;             /* users: the main thread and each worker's view */
    unsigned id;                  /* 1 for the config loaded at start, +1 per reload */
    struct config *cfg;           /* owned */
    struct route_table **routes;  /* per listener (cfg->listeners order); NULL for a tcp
                                   * listener without sni routes (it reads no ClientHello) */
    struct tls_set *tls;          /* owned: the TLS contexts of cfg */
};

/* Takes ownership of CFG and TLS (tls_set_load(CFG)); the result has one
 * reference. */
struct generation *generation_new(struct config *cfg, struct tls_set *tls, unsigned id);

/* The TLS contexts of listener L (of G's config), or NULL when it is plain. */
struct config_listener;
struct tls_server;
const struct tls_server *generation_listener_tls(const struct generation *g,
                                                 const struct config_listener *l);
void generation_ref(struct generation *g);
void generation_unref(struct generation *g);

#endif
