/* healthcheck: `ferry --healthcheck`, the container's health probe.
 *
 * A scratch image has no shell and no curl, and Docker's and swarm's
 * HEALTHCHECK need a command inside the container; ferry itself asks its
 * admin endpoint (`admin =` of the config, so `${VAR}` ports work) for
 * GET /healthz. An admin bound to every address (0.0.0.0, ::, :PORT) is
 * asked on loopback. Blocking and bounded: it runs as a separate process. */
#ifndef FERRY_HEALTHCHECK_H
#define FERRY_HEALTHCHECK_H

#include <stdio.h>

struct config;

#define HEALTHCHECK_TIMEOUT_S 3

/* 0 when GET /healthz on CFG's admin address answers 200 within
 * HEALTHCHECK_TIMEOUT_S, else 1 with the reason on ERR. */
int healthcheck_run(const struct config *cfg, FILE *err);

#endif
