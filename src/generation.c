/* generation: see generation.h. */
#include "ferry/generation.h"

#include <stdlib.h>

#include "ferry/config.h"
#include "ferry/route.h"
#include "ferry/tls.h"
#include "ferry/util.h"

struct generation *generation_new(struct config *cfg, struct tls_set *tls, unsigned id) {
    struct generation *g = xcalloc(1, sizeof(*g));
    atomic_init(&g->refs, 1);
    g->id = id;
    g->cfg = cfg;
    g->tls = tls;
    g->routes = xcalloc(cfg->nlisteners + 1, sizeof(*g->routes));
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (cfg->listeners[i].mode == MODE_HTTP || config_listener_has_sni(cfg, &cfg->listeners[i]))
            g->routes[i] = route_table_build(cfg, &cfg->listeners[i]);
    return g;
}

void generation_ref(struct generation *g) {
    atomic_fetch_add(&g->refs, 1);
}

void generation_unref(struct generation *g) {
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1) return;
    for (size_t i = 0; i < g->cfg->nlisteners; i++) route_table_free(g->routes[i]);
    free(g->routes);
    tls_set_free(g->tls);
    config_free(g->cfg);
    free(g);
}

const struct tls_server *generation_listener_tls(const struct generation *g,
                                                 const struct config_listener *l) {
    size_t i = (size_t)(l - g->cfg->listeners);
    return g->tls && i < g->tls->nlisteners ? g->tls->listeners[i] : NULL;
}
