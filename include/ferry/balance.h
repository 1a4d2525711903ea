/* balance: choosing a server. Pure functions over small arrays; the caller
 * (upstream.c) says which peers are eligible for this pick. */
#ifndef FERRY_BALANCE_H
#define FERRY_BALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* least_conn: the eligible peer with the fewest active connections
 * relative to its weight (active/weight, compared without division); ties
 * are broken by smooth weighted round robin among the tied peers, so equal
 * loads still rotate. ACTIVE[i] is peer i's open connections. */
int balance_least_conn_pick(struct balance_peer *peers, size_t n, const unsigned *active);

/* random2 (power of two choices): two distinct eligible peers drawn at
 * random with probability proportional to weight; the one with fewer
 * active connections relative to weight wins (the first drawn on a tie).
 * *RNG is the caller's splitmix64 state, advanced on each pick: any value
 * is valid, 0 included; seed it differently per worker. Returns the chosen
 * index, or -1 when no peer is eligible. */
int balance_random2_pick(struct balance_peer *peers, size_t n, const unsigned *active,
                         uint64_t *rng);

/* ip_hash: consistent hashing. A ring of points (BALANCE_RING_POINTS per
 * unit of weight) built once from the peers' weights; a key (the client
 * address) maps to the first point clockwise whose peer is eligible. Adding
 * or removing a server moves only the keys of the arcs it gains or loses,
 * so most clients keep their server. */
#define BALANCE_RING_POINTS 160

struct balance_ring {
    uint64_t *hashes;   /* sorted point positions */
    uint32_t *peer_of;  /* peer index of each point */
    size_t npoints;
};

/* IDS[i] is a stable name for peer i (its address as configured): a
 * server's points depend only on its own name and weight. The only
 * allocating call here (xmalloc: failure is fatal). Returns 0, or UV_EINVAL
 * with RING empty when a weight is below 1. RING's old content is not freed.
 * balance_ring_free is idempotent; a zeroed ring is an empty one.
 * balance_ring_pick takes the PEERS the ring was built from (for their
 * eligible flags) and returns a peer index, or -1 when none is eligible. */
int balance_ring_build(struct balance_ring *ring, const struct balance_peer *peers,
                       const char *const *ids, size_t n);
void balance_ring_free(struct balance_ring *ring);
int balance_ring_pick(const struct balance_ring *ring, const struct balance_peer *peers,
                      const void *key, size_t key_len);

/* 64-bit hash used by the ring (FNV-1a followed by MurmurHash3's fmix64).
 * Its values are part of ferry's behaviour: changing it would move every
 * ip_hash client to another server on upgrade (a unit test pins them). */
uint64_t balance_hash(const void *data, size_t len);

#endif
