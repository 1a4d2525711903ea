/* ports: ephemeral port pressure towards the upstream servers, sampled on
 * the main loop every few seconds (see ports.c). Main thread only. */
#ifndef FERRY_PORTS_H
#define FERRY_PORTS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct config;

#define PORTS_MAX_SOURCES 32

struct ports_sample {
    uint32_t range;      /* ports in net.ipv4.ip_local_port_range */
    uint64_t available;  /* ports left, summed over local addresses (worst server each) */
    size_t nsources;
    struct {
        char name[48];   /* local address */
        uint32_t in_use; /* sockets (TIME_WAIT included) to its busiest server */
    } sources[PORTS_MAX_SOURCES];
};

void ports_start(uv_loop_t *loop);
/* The config whose servers are counted (the current generation's). */
void ports_adopt(const struct config *cfg);
void ports_stop(void);
const struct ports_sample *ports_sample(void);

#endif
