/* fuzz_config: any bytes as a config file, through config_load_string.
 *
 * Properties (abort on violation): a load either returns a config and no
 * errors, or NULL and at least one error; every error reads
 * "fuzz.ini:LINE: message" or "fuzz.ini: message"; a loaded config holds
 * what config.h promises (a route's path is never NULL, an upstream has a
 * server, a tcp listener an upstream, proxy_protocol_from blocks are whole
 * and only where they apply), and its routes build a table for
 * every listener. Everything is freed: LeakSanitizer checks. */
#include <stdint.h>
#include <string.h>

#include "ferry/config.h"
#include "ferry/route.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    FUZZ_CHECK(text, "memory");
    memcpy(text, data, size);
    text[size] = '\0';
    struct config_errors errs = {0};
    struct config *cfg = config_load_string("fuzz.ini", text, &errs);
    FUZZ_CHECK((cfg != NULL) == (errs.count == 0), "a config, or errors");
    for (size_t i = 0; i < errs.count; i++) {
        const char *e = errs.items[i];
        FUZZ_CHECK(e && strncmp(e, "fuzz.ini:", 9) == 0, "an error starts with the file name");
        const char *p = e + 9;
        if (*p >= '0' && *p <= '9') {
            while (*p >= '0' && *p <= '9')
                p++;
            FUZZ_CHECK(*p == ':', "fuzz.ini:LINE:");
            p++;
        }
        FUZZ_CHECK(*p == ' ' && p[1] != '\0', "a message follows");
    }
    if (cfg) {
        for (size_t i = 0; i < cfg->nroutes; i++) {
            const struct config_route *r = &cfg->routes[i];
            FUZZ_CHECK(r->name && r->path && r->path[0] == '/', "a route's path");
            FUZZ_CHECK(r->upstream != NULL, "a route's upstream");
        }
        for (size_t i = 0; i < cfg->nupstreams; i++)
            FUZZ_CHECK(cfg->upstreams[i].nservers > 0, "an upstream has a server");
        for (size_t i = 0; i < cfg->nlisteners; i++) {
            const struct config_listener *l = &cfg->listeners[i];
            FUZZ_CHECK(l->mode != MODE_TCP || l->upstream, "a tcp listener has an upstream");
            FUZZ_CHECK(l->nproxy_from == 0 || (l->proxy_protocol && l->bind.kind == ADDR_INET),
                       "proxy_protocol_from only on an inet listener with proxy_protocol = on");
            for (size_t k = 0; k < l->nproxy_from; k++) {
                FUZZ_CHECK(l->proxy_from[k].prefix <= 128, "a CIDR prefix is at most 128");
                FUZZ_CHECK(config_cidr_match(&l->proxy_from[k], 1, l->proxy_from[k].addr),
                           "a CIDR block contains its own first address");
            }
            struct route_table *t = route_table_build(cfg, l);
            (void)route_match(t, "a.example.com", 13, "/api/x", 6, "GET", 3);
            route_table_free(t);
        }
        config_free(cfg);
    }
    config_errors_free(&errs);
    free(text);
    return 0;
}
