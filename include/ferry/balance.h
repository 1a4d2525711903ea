/* balance: choosing a server. Pure functions over small arrays; the caller
 * (upstream.c) says which peers are eligible for this pick. */
#ifndef FERRY_BALANCE_H
#define FERRY_BALANCE_H

#include <stdbool.h>
#include <stddef.h>

struct balance_peer {
    int weight;     /* configured weight, >= 1 */
    int current;    /* smooth weighted round robin state; starts at 0 */
    bool eligible;  /* set by the caller before each pick */
};

/* Smooth weighted round robin, as nginx does it: every eligible peer gains
 * its weight, the one with the most wins and pays back the total. Weights
 * 5,1,1 give a a b a c a a rather than a a a a a b c, so a heavy server
 * never receives a long burst. Returns the chosen index or -1 when no peer
 * is eligible. */
int balance_rr_pick(struct balance_peer *peers, size_t n);

#endif
