/* balance: see balance.h.
 *
 * Every function here is pure: the caller owns the peers, says which are
 * eligible, and keeps the state (rr counters, the RNG, the ring). Only
 * balance_ring_build allocates; no pick does, so a pick cannot fail for
 * want of memory on the request path. */
#include "ferry/balance.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "ferry/util.h"

/* One point of the ring while it is being built; split into the ring's two
 * parallel arrays once sorted. */
struct ring_point {
    uint64_t hash;
    uint32_t peer;
};

static int load_cmp(unsigned a_active, int a_weight, unsigned b_active, int b_weight);
static uint64_t rng_next(uint64_t *state);
static int weighted_index(const struct balance_peer *peers, size_t n, uint64_t r, int skip);
static uint64_t fnv1a_update(uint64_t h, const void *data, size_t len);
static uint64_t hash_finish(uint64_t h);
static uint64_t ring_point_hash(const char *id, size_t point);
static int ring_point_cmp(const void *a, const void *b);
static size_t ring_lower_bound(const struct balance_ring *ring, uint64_t h);

#define FNV64_OFFSET 0xcbf29ce484222325ULL
#define FNV64_PRIME  0x100000001b3ULL

int balance_rr_pick(struct balance_peer *peers, size_t n) {
    int best = -1;
    int total = 0;
    for (size_t i = 0; i < n; i++) {
        struct balance_peer *p = &peers[i];
        if (!p->eligible) continue;
        p->current += p->weight;
        total += p->weight;
        if (best < 0 || p->current > peers[best].current) best = (int)i;
    }
    if (best >= 0) peers[best].current -= total;
    return best;
}

/* Compares a_active/a_weight with b_active/b_weight without dividing:
 * a/wa < b/wb  <=>  a*wb < b*wa for positive weights. The products of an
 * unsigned and an int weight fit in 64 bits, so nothing overflows and
 * nothing is rounded (integer division would call 1/2 and 0/2 equal). */
static int load_cmp(unsigned a_active, int a_weight, unsigned b_active, int b_weight) {
    uint64_t a = (uint64_t)a_active * (uint64_t)b_weight;
    uint64_t b = (uint64_t)b_active * (uint64_t)a_weight;
    return (a > b) - (a < b);
}

/* Two passes: the first finds the lightest load (relative to weight) among
 * eligible peers, the second runs smooth weighted round robin over just the
 * peers at that load. Without the second pass equal loads (the common case
 * when connections are short) would always go to the lowest index; with it
 * they rotate in proportion to weight, and peers outside the tie keep their
 * round robin state untouched. */
int balance_least_conn_pick(struct balance_peer *peers, size_t n, const unsigned *active) {
    int min = -1;
    for (size_t i = 0; i < n; i++) {
        if (!peers[i].eligible) continue;
        if (min < 0 || load_cmp(active[i], peers[i].weight, active[min], peers[min].weight) < 0)
            min = (int)i;
    }
    if (min < 0) return -1;

    int best = -1;
    int total = 0;
    for (size_t i = 0; i < n; i++) {
        struct balance_peer *p = &peers[i];
        if (!p->eligible || load_cmp(active[i], p->weight, active[min], peers[min].weight) != 0)
            continue;
        p->current += p->weight;
        total += p->weight;
        if (best < 0 || p->current > peers[best].current) best = (int)i;
    }
    peers[best].current -= total;
    return best;
}

/* splitmix64 (Steele, Lea, Flood): every 64-bit state is valid, 0 included,
 * so a zeroed worker struct is a usable RNG; the output passes BigCrush,
 * which is far more than choosing among servers needs. */
static uint64_t rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The eligible peer (other than SKIP) whose slice of the cumulative weight
 * contains R, R being below the total weight of those peers. This is how a
 * peer of weight 3 becomes three times as likely to be drawn as one of
 * weight 1 without building a table. */
static int weighted_index(const struct balance_peer *peers, size_t n, uint64_t r, int skip) {
    int last = -1;
    for (size_t i = 0; i < n; i++) {
        if (!peers[i].eligible || (int)i == skip) continue;
        last = (int)i;
        if (r < (uint64_t)peers[i].weight) break;
        r -= (uint64_t)peers[i].weight;
    }
    return last;
}

/* Power of two choices: draw two distinct eligible peers, each with
 * probability proportional to weight, and keep the less loaded (relative to
 * weight). Looking at two random peers instead of all of them avoids the
 * herd that pure least_conn causes when several workers see the same stale
 * counts, while still steering away from a slow server. On a tie the first
 * draw wins, so equal loads split exactly in proportion to weight. The
 * modulo's bias is below total/2^64: nothing to correct. */
int balance_random2_pick(struct balance_peer *peers, size_t n, const unsigned *active,
                         uint64_t *rng) {
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (peers[i].eligible) total += (uint64_t)peers[i].weight;
    if (total == 0) return -1;

    int a = weighted_index(peers, n, rng_next(rng) % total, -1);
    uint64_t rest = total - (uint64_t)peers[a].weight;
    if (rest == 0) return a; /* the only eligible peer */
    int b = weighted_index(peers, n, rng_next(rng) % rest, a);
    return load_cmp(active[b], peers[b].weight, active[a], peers[a].weight) < 0 ? b : a;
}

/* FNV-1a over LEN bytes, continuing from H, so a string made of pieces
 * hashes the same as the pieces in turn. */
static uint64_t fnv1a_update(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV64_PRIME;
    }
    return h;
}

/* MurmurHash3's fmix64. FNV-1a alone mixes the last bytes poorly into the
 * high bits, and "10.0.0.1:80#7" and "10.0.0.1:80#8" differ only there;
 * the finalizer spreads every input bit over the whole word so ring points
 * and keys land evenly around the circle. */
static uint64_t hash_finish(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

uint64_t balance_hash(const void *data, size_t len) {
    return hash_finish(fnv1a_update(FNV64_OFFSET, data, len));
}

/* balance_hash of the string "ID#POINT" (POINT in decimal), computed in
 * pieces so an id of any length needs no buffer. */
static uint64_t ring_point_hash(const char *id, size_t point) {
    char digits[24];
    size_t nd = 0;
    do {
        digits[sizeof(digits) - 1 - nd++] = (char)('0' + point % 10);
        point /= 10;
    } while (point > 0);
    uint64_t h = fnv1a_update(FNV64_OFFSET, id, strlen(id));
    h = fnv1a_update(h, "#", 1);
    h = fnv1a_update(h, digits + sizeof(digits) - nd, nd);
    return hash_finish(h);
}

/* Orders points by position; the peer index breaks the (astronomically
 * rare) tie so the ring does not depend on qsort's whims. */
static int ring_point_cmp(const void *a, const void *b) {
    const struct ring_point *x = a, *y = b;
    if (x->hash != y->hash) return x->hash < y->hash ? -1 : 1;
    return (x->peer > y->peer) - (x->peer < y->peer);
}

/* Lays out weight * BALANCE_RING_POINTS points per peer, point k of a peer
 * named ID sitting at balance_hash("ID#k"). A point's position depends on
 * nothing but its own server's name, so adding a server adds points between
 * the old ones without moving any, and raising a weight only adds points:
 * the keys that move are exactly those whose arcs the change took over.
 * Any previous content of RING is overwritten (free it first). Returns 0,
 * or UV_EINVAL (RING left empty) when a weight is below 1 or the peers do
 * not fit the ring's 32-bit peer index. */
int balance_ring_build(struct balance_ring *ring, const struct balance_peer *peers,
                       const char *const *ids, size_t n) {
    ring->hashes = NULL;
    ring->peer_of = NULL;
    ring->npoints = 0;
    if (n > UINT32_MAX) return UV_EINVAL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (peers[i].weight < 1) return UV_EINVAL;
        total += (size_t)peers[i].weight * BALANCE_RING_POINTS;
    }
    if (total == 0) return 0;

    struct ring_point *pts = xmalloc(total * sizeof(*pts));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t count = (size_t)peers[i].weight * BALANCE_RING_POINTS;
        for (size_t p = 0; p < count; p++)
            pts[k++] = (struct ring_point){ring_point_hash(ids[i], p), (uint32_t)i};
    }
    qsort(pts, total, sizeof(*pts), ring_point_cmp);

    ring->hashes = xmalloc(total * sizeof(*ring->hashes));
    ring->peer_of = xmalloc(total * sizeof(*ring->peer_of));
    for (k = 0; k < total; k++) {
        ring->hashes[k] = pts[k].hash;
        ring->peer_of[k] = pts[k].peer;
    }
    ring->npoints = total;
    free(pts);
    return 0;
}

/* Idempotent: a freed (or zeroed) ring is an empty one. */
void balance_ring_free(struct balance_ring *ring) {
    free(ring->hashes);
    free(ring->peer_of);
    ring->hashes = NULL;
    ring->peer_of = NULL;
    ring->npoints = 0;
}

/* Index of the first point at or after H, npoints when H is past the last
 * one (the caller wraps to 0: the ring is a circle). */
static size_t ring_lower_bound(const struct balance_ring *ring, uint64_t h) {
    size_t lo = 0, hi = ring->npoints;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ring->hashes[mid] < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The key's position, then clockwise to the first point whose peer is
 * eligible. Skipping (rather than rebuilding without) a server that is down
 * sends its keys to the servers that follow each of its points, spread over
 * all the others, and every other key stays put; when it comes back its keys
 * return to it. The walk visits each point at most once, so it ends with -1
 * when no peer is eligible. PEERS must be the array the ring was built from. */
int balance_ring_pick(const struct balance_ring *ring, const struct balance_peer *peers,
                      const void *key, size_t key_len) {
    if (ring->npoints == 0) return -1;
    size_t start = ring_lower_bound(ring, balance_hash(key, key_len));
    for (size_t i = 0; i < ring->npoints; i++) {
        size_t at = (start + i) % ring->npoints;
        uint32_t peer = ring->peer_of[at];
        if (peers[peer].eligible) return (int)peer;
    }
    return -1;
}
