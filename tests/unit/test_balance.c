/* Unit tests for balance.c: the smooth weighted round robin sequence,
 * least_conn, random2 (power of two choices) and the consistent-hash ring
 * behind ip_hash. Distribution tests use fixed seeds, so they are
 * deterministic: a failure is a change in behaviour, never bad luck. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/balance.h"
#include "ferry/util.h"

static void pick_sequence(struct balance_peer *peers, size_t n, int count, char *out) {
    for (int i = 0; i < count; i++) {
        int idx = balance_rr_pick(peers, n);
        out[i] = idx < 0 ? '-' : (char)('a' + idx);
    }
    out[count] = '\0';
}

static void test_rr_weights_are_smooth(void **state) {
    (void)state;
    /* nginx's documented example: weights 5,1,1 -> a a b a c a a */
    struct balance_peer p[3] = {{.weight = 5, .eligible = true},
                                {.weight = 1, .eligible = true},
                                {.weight = 1, .eligible = true}};
    char seq[16];
    pick_sequence(p, 3, 14, seq);
    assert_string_equal(seq, "aabacaaaabacaa");
}

static void test_rr_equal_weights_alternate(void **state) {
    (void)state;
    struct balance_peer p[3] = {{.weight = 1, .eligible = true},
                                {.weight = 1, .eligible = true},
                                {.weight = 1, .eligible = true}};
    char seq[16];
    pick_sequence(p, 3, 9, seq);
    assert_string_equal(seq, "abcabcabc");
}

static void test_rr_skips_ineligible(void **state) {
    (void)state;
    struct balance_peer p[3] = {{.weight = 1, .eligible = true},
                                {.weight = 3, .eligible = false},
                                {.weight = 1, .eligible = true}};
    char seq[16];
    pick_sequence(p, 3, 6, seq);
    assert_string_equal(seq, "acacac");
    p[0].eligible = p[2].eligible = false;
    assert_int_equal(balance_rr_pick(p, 3), -1);
}

static void test_rr_distribution_matches_weights(void **state) {
    (void)state;
    struct balance_peer p[2] = {{.weight = 2, .eligible = true}, {.weight = 1, .eligible = true}};
    int counts[2] = {0, 0};
    for (int i = 0; i < 300; i++) counts[balance_rr_pick(p, 2)]++;
    assert_int_equal(counts[0], 200);
    assert_int_equal(counts[1], 100);
}

/* ---- helpers ---------------------------------------------------------- */

/* N eligible peers with the given weights and fresh round robin state. */
static void peers_init(struct balance_peer *p, size_t n, const int *weights) {
    for (size_t i = 0; i < n; i++)
        p[i] = (struct balance_peer){.weight = weights[i], .eligible = true};
}

/* The test's own generator (xorshift64*), independent of balance.c's. */
static uint64_t test_rand(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dULL;
}

#define RING_KEYS 100000

/* Maps RING_KEYS random 4-byte keys (IPv4 addresses, fixed seed) to peers;
 * OUT[k] is key k's peer. */
static void ring_map_keys(const struct balance_ring *ring, const struct balance_peer *peers,
                          int *out) {
    uint64_t s = 0x5eed0f1a2b3c4d5eULL;
    for (size_t k = 0; k < RING_KEYS; k++) {
        uint32_t addr = (uint32_t)(test_rand(&s) >> 32);
        out[k] = balance_ring_pick(ring, peers, &addr, sizeof(addr));
    }
}

static void count_keys(const int *map, size_t nkeys, int *counts, size_t npeers) {
    memset(counts, 0, npeers * sizeof(*counts));
    for (size_t k = 0; k < nkeys; k++) {
        assert_true(map[k] >= 0 && (size_t)map[k] < npeers);
        counts[map[k]]++;
    }
}

static const char *const ring_ids[] = {"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080",
                                       "10.0.0.4:8080"};

/* ---- least_conn ------------------------------------------------------- */

static void test_lc_picks_least_loaded(void **state) {
    (void)state;
    struct balance_peer p[3];
    peers_init(p, 3, (int[]){1, 1, 1});
    unsigned active[3] = {5, 2, 7};
    for (int i = 0; i < 10; i++) assert_int_equal(balance_least_conn_pick(p, 3, active), 1);
    active[1] = 9;
    assert_int_equal(balance_least_conn_pick(p, 3, active), 0);
}

static void test_lc_load_is_relative_to_weight(void **state) {
    (void)state;
    /* 4 on weight 2 is as loaded as 2 on weight 1: both tie below c's 3,
     * and the tie rotates 2:1 by weight. */
    struct balance_peer p[3];
    peers_init(p, 3, (int[]){2, 1, 1});
    unsigned active[3] = {4, 2, 3};
    int counts[3] = {0, 0, 0};
    for (int i = 0; i < 300; i++) counts[balance_least_conn_pick(p, 3, active)]++;
    assert_int_equal(counts[0], 200);
    assert_int_equal(counts[1], 100);
    assert_int_equal(counts[2], 0);
    /* 3 on weight 2 (1.5) beats 2 on weight 1 (2), though 3 > 2. */
    unsigned active2[3] = {3, 2, 2};
    peers_init(p, 3, (int[]){2, 1, 1});
    assert_int_equal(balance_least_conn_pick(p, 3, active2), 0);
}

static void test_lc_ties_rotate(void **state) {
    (void)state;
    struct balance_peer p[3];
    peers_init(p, 3, (int[]){1, 1, 1});
    unsigned active[3] = {2, 2, 2};
    int counts[3] = {0, 0, 0};
    char seq[7];
    for (int i = 0; i < 300; i++) {
        int idx = balance_least_conn_pick(p, 3, active);
        if (i < 6) seq[i] = (char)('a' + idx);
        counts[idx]++;
    }
    seq[6] = '\0';
    assert_string_equal(seq, "abcabc");
    assert_int_equal(counts[0], 100);
    assert_int_equal(counts[1], 100);
    assert_int_equal(counts[2], 100);
}

static void test_lc_skips_ineligible(void **state) {
    (void)state;
    struct balance_peer p[3];
    peers_init(p, 3, (int[]){1, 1, 1});
    unsigned active[3] = {5, 0, 3};
    p[1].eligible = false; /* the least loaded, but down */
    for (int i = 0; i < 10; i++) assert_int_equal(balance_least_conn_pick(p, 3, active), 2);
    p[2].eligible = false;
    assert_int_equal(balance_least_conn_pick(p, 3, active), 0);
}

static void test_lc_none_eligible(void **state) {
    (void)state;
    struct balance_peer p[2];
    peers_init(p, 2, (int[]){1, 1});
    unsigned active[2] = {0, 0};
    p[0].eligible = p[1].eligible = false;
    assert_int_equal(balance_least_conn_pick(p, 2, active), -1);
    assert_int_equal(balance_least_conn_pick(p, 0, active), -1);
}

/* ---- random2 ---------------------------------------------------------- */

static void test_r2_distribution_matches_weights(void **state) {
    (void)state;
    struct balance_peer p[3];
    peers_init(p, 3, (int[]){3, 2, 1});
    unsigned active[3] = {0, 0, 0};
    uint64_t rng = 42;
    int counts[3] = {0, 0, 0};
    for (int i = 0; i < 30000; i++) counts[balance_random2_pick(p, 3, active, &rng)]++;
    print_message("random2 3:2:1 over 30000: %d %d %d (expect 15000 10000 5000)\n", counts[0],
                  counts[1], counts[2]);
    const int expect[3] = {15000, 10000, 5000};
    for (int i = 0; i < 3; i++) {
        assert_true(counts[i] >= expect[i] * 95 / 100);
        assert_true(counts[i] <= expect[i] * 105 / 100);
    }
}

static void test_r2_prefers_less_loaded(void **state) {
    (void)state;
    /* Two peers: both are always drawn, so the lighter always wins. */
    struct balance_peer p[3];
    peers_init(p, 2, (int[]){1, 1});
    unsigned active[3] = {10, 3, 0};
    uint64_t rng = 7;
    for (int i = 0; i < 1000; i++) assert_int_equal(balance_random2_pick(p, 2, active, &rng), 1);
    /* Relative to weight: 3 on weight 2 (1.5) beats 2 on weight 1. */
    peers_init(p, 2, (int[]){2, 1});
    active[0] = 3;
    active[1] = 2;
    for (int i = 0; i < 1000; i++) assert_int_equal(balance_random2_pick(p, 2, active, &rng), 0);
    /* Three peers: the most loaded loses every pair it is in. */
    peers_init(p, 3, (int[]){1, 1, 1});
    unsigned active3[3] = {1, 9, 2};
    int counts[3] = {0, 0, 0};
    for (int i = 0; i < 3000; i++) counts[balance_random2_pick(p, 3, active3, &rng)]++;
    assert_int_equal(counts[1], 0);
    assert_true(counts[0] > counts[2]); /* a wins (a,b) and (a,c), c only (b,c) */
}

static void test_r2_skips_ineligible(void **state) {
    (void)state;
    struct balance_peer p[3];
    peers_init(p, 3, (int[]){1, 5, 1});
    p[1].eligible = false;
    unsigned active[3] = {0, 0, 0};
    uint64_t rng = 99;
    int counts[3] = {0, 0, 0};
    for (int i = 0; i < 3000; i++) counts[balance_random2_pick(p, 3, active, &rng)]++;
    assert_int_equal(counts[1], 0);
    assert_true(counts[0] > 1300 && counts[2] > 1300);
}

static void test_r2_single_eligible(void **state) {
    (void)state;
    /* The only eligible peer is chosen even when it is the busiest. */
    struct balance_peer p[3];
    peers_init(p, 3, (int[]){1, 1, 1});
    p[0].eligible = p[1].eligible = false;
    unsigned active[3] = {0, 0, 100};
    uint64_t rng = 1;
    for (int i = 0; i < 1000; i++) assert_int_equal(balance_random2_pick(p, 3, active, &rng), 2);
}

static void test_r2_none_eligible(void **state) {
    (void)state;
    struct balance_peer p[2];
    peers_init(p, 2, (int[]){1, 1});
    p[0].eligible = p[1].eligible = false;
    unsigned active[2] = {0, 0};
    uint64_t rng = 1;
    assert_int_equal(balance_random2_pick(p, 2, active, &rng), -1);
    assert_int_equal(balance_random2_pick(p, 0, active, &rng), -1);
}

static void test_r2_zero_seed_is_random(void **state) {
    (void)state;
    /* A zeroed worker struct must not give a stuck generator. */
    struct balance_peer p[4];
    peers_init(p, 4, (int[]){1, 1, 1, 1});
    unsigned active[4] = {0, 0, 0, 0};
    uint64_t rng = 0;
    int counts[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4000; i++) counts[balance_random2_pick(p, 4, active, &rng)]++;
    for (int i = 0; i < 4; i++) assert_true(counts[i] > 800 && counts[i] < 1200);
}

/* ---- hash and ring ---------------------------------------------------- */

static void test_hash_values_are_pinned(void **state) {
    (void)state;
    /* fmix64(FNV-1a 64), computed independently; FNV-1a("a") is the
     * published 0xaf63dc4c8601ec8c. A change here moves ip_hash clients. */
    assert_true(balance_hash("", 0) == 0xefd01f60ba992926ULL);
    assert_true(balance_hash("a", 1) == 0x82a2a958a9bece5bULL);
    assert_true(balance_hash("foobar", 6) == 0x2c22194922d1672bULL);
    assert_true(balance_hash("10.0.0.1:80#0", 13) == 0xd98828fa05766dd3ULL);
}

static bool ring_has(const struct balance_ring *r, uint64_t h, uint32_t peer) {
    for (size_t i = 0; i < r->npoints; i++)
        if (r->hashes[i] == h && r->peer_of[i] == peer) return true;
    return false;
}

static void test_ring_points_layout(void **state) {
    (void)state;
    struct balance_peer p[2];
    peers_init(p, 2, (int[]){1, 3});
    const char *ids[] = {"s1", "s2"};
    struct balance_ring r;
    assert_int_equal(balance_ring_build(&r, p, ids, 2), 0);
    assert_int_equal(r.npoints, 4 * BALANCE_RING_POINTS);
    for (size_t i = 1; i < r.npoints; i++) assert_true(r.hashes[i - 1] <= r.hashes[i]);
    size_t per[2] = {0, 0};
    for (size_t i = 0; i < r.npoints; i++) per[r.peer_of[i]]++;
    assert_int_equal(per[0], BALANCE_RING_POINTS);
    assert_int_equal(per[1], 3 * BALANCE_RING_POINTS);
    /* point k of "ID" sits at balance_hash("ID#k") */
    char name[32];
    int len = snprintf(name, sizeof(name), "s1#%d", 0);
    assert_true(ring_has(&r, balance_hash(name, (size_t)len), 0));
    len = snprintf(name, sizeof(name), "s1#%d", BALANCE_RING_POINTS - 1);
    assert_true(ring_has(&r, balance_hash(name, (size_t)len), 0));
    len = snprintf(name, sizeof(name), "s2#%d", 3 * BALANCE_RING_POINTS - 1);
    assert_true(ring_has(&r, balance_hash(name, (size_t)len), 1));
    balance_ring_free(&r);
    assert_null(r.hashes);
    assert_int_equal(r.npoints, 0);
    balance_ring_free(&r); /* idempotent */
}

static void test_ring_same_key_same_peer(void **state) {
    (void)state;
    struct balance_peer p[3];
    peers_init(p, 3, (int[]){1, 1, 1});
    struct balance_ring r1, r2;
    assert_int_equal(balance_ring_build(&r1, p, ring_ids, 3), 0);
    assert_int_equal(balance_ring_build(&r2, p, ring_ids, 3), 0);
    const char *keys[] = {"192.168.1.10", "10.1.2.3", "::1", "2001:db8::7", ""};
    for (size_t k = 0; k < FERRY_ARRAY_LEN(keys); k++) {
        int first = balance_ring_pick(&r1, p, keys[k], strlen(keys[k]));
        assert_true(first >= 0 && first < 3);
        for (int i = 0; i < 10; i++)
            assert_int_equal(balance_ring_pick(&r1, p, keys[k], strlen(keys[k])), first);
        assert_int_equal(balance_ring_pick(&r2, p, keys[k], strlen(keys[k])), first);
    }
    balance_ring_free(&r1);
    balance_ring_free(&r2);
}

static void test_ring_independent_of_peer_order(void **state) {
    (void)state;
    /* Reordering servers in the config must not move clients: a key
     * follows the server's name, not its index. */
    struct balance_peer p[3];
    peers_init(p, 3, (int[]){1, 1, 1});
    const char *rev[] = {ring_ids[2], ring_ids[0], ring_ids[1]};
    const int rev_to_orig[3] = {2, 0, 1};
    struct balance_ring a, b;
    assert_int_equal(balance_ring_build(&a, p, ring_ids, 3), 0);
    assert_int_equal(balance_ring_build(&b, p, rev, 3), 0);
    int *ma = malloc(RING_KEYS * sizeof(int)), *mb = malloc(RING_KEYS * sizeof(int));
    assert_non_null(ma);
    assert_non_null(mb);
    ring_map_keys(&a, p, ma);
    ring_map_keys(&b, p, mb);
    for (size_t k = 0; k < RING_KEYS; k++) assert_int_equal(ma[k], rev_to_orig[mb[k]]);
    free(ma);
    free(mb);
    balance_ring_free(&a);
    balance_ring_free(&b);
}

static void test_ring_equal_distribution(void **state) {
    (void)state;
    struct balance_peer p[3];
    peers_init(p, 3, (int[]){1, 1, 1});
    struct balance_ring r;
    assert_int_equal(balance_ring_build(&r, p, ring_ids, 3), 0);
    int *map = malloc(RING_KEYS * sizeof(int));
    assert_non_null(map);
    ring_map_keys(&r, p, map);
    int counts[3];
    count_keys(map, RING_KEYS, counts, 3);
    print_message("ring 1:1:1 over %d keys: %d %d %d\n", RING_KEYS, counts[0], counts[1],
                  counts[2]);
    for (int i = 0; i < 3; i++) { /* a third, +-10% */
        assert_true(counts[i] >= RING_KEYS / 3 * 90 / 100);
        assert_true(counts[i] <= RING_KEYS / 3 * 110 / 100);
    }
    free(map);
    balance_ring_free(&r);
}

static void test_ring_weighted_distribution(void **state) {
    (void)state;
    struct balance_peer p[2];
    peers_init(p, 2, (int[]){2, 1});
    struct balance_ring r;
    assert_int_equal(balance_ring_build(&r, p, ring_ids, 2), 0);
    int *map = malloc(RING_KEYS * sizeof(int));
    assert_non_null(map);
    ring_map_keys(&r, p, map);
    int counts[2];
    count_keys(map, RING_KEYS, counts, 2);
    double ratio = (double)counts[0] / counts[1];
    print_message("ring 2:1 over %d keys: %d %d (ratio %.3f)\n", RING_KEYS, counts[0], counts[1],
                  ratio);
    assert_true(ratio >= 1.8 && ratio <= 2.2);
    free(map);
    balance_ring_free(&r);
}

static void test_ring_add_server_moves_few(void **state) {
    (void)state;
    struct balance_peer p[4];
    peers_init(p, 4, (int[]){1, 1, 1, 1});
    struct balance_ring r3, r4;
    assert_int_equal(balance_ring_build(&r3, p, ring_ids, 3), 0);
    assert_int_equal(balance_ring_build(&r4, p, ring_ids, 4), 0);
    int *m3 = malloc(RING_KEYS * sizeof(int)), *m4 = malloc(RING_KEYS * sizeof(int));
    assert_non_null(m3);
    assert_non_null(m4);
    ring_map_keys(&r3, p, m3);
    ring_map_keys(&r4, p, m4);
    int moved = 0;
    for (size_t k = 0; k < RING_KEYS; k++) {
        if (m3[k] == m4[k]) continue;
        assert_int_equal(m4[k], 3); /* a moved key only ever goes to the newcomer */
        moved++;
    }
    print_message("ring 3->4 servers: %d of %d keys moved (%.1f%%, ideal 25%%)\n", moved,
                  RING_KEYS, 100.0 * moved / RING_KEYS);
    assert_true(moved >= RING_KEYS * 15 / 100);
    assert_true(moved <= RING_KEYS * 35 / 100);
    free(m3);
    free(m4);
    balance_ring_free(&r3);
    balance_ring_free(&r4);
}

static void test_ring_down_server_moves_only_its_keys(void **state) {
    (void)state;
    struct balance_peer p[3];
    peers_init(p, 3, (int[]){1, 1, 1});
    struct balance_ring r;
    assert_int_equal(balance_ring_build(&r, p, ring_ids, 3), 0);
    int *before = malloc(RING_KEYS * sizeof(int)), *after = malloc(RING_KEYS * sizeof(int));
    assert_non_null(before);
    assert_non_null(after);
    ring_map_keys(&r, p, before);
    p[1].eligible = false;
    ring_map_keys(&r, p, after);
    int moved = 0, to[3] = {0, 0, 0};
    for (size_t k = 0; k < RING_KEYS; k++) {
        assert_int_not_equal(after[k], 1);
        if (before[k] != 1) {
            assert_int_equal(after[k], before[k]);
        } else {
            moved++;
            to[after[k]]++;
        }
    }
    print_message("ring: server b down, its %d keys went %d to a, %d to c\n", moved, to[0],
                  to[2]);
    /* spread over the survivors, not all dumped on one neighbour */
    assert_true(to[0] > moved / 4 && to[2] > moved / 4);
    /* and they come back when it does */
    p[1].eligible = true;
    ring_map_keys(&r, p, after);
    assert_memory_equal(before, after, RING_KEYS * sizeof(int));
    free(before);
    free(after);
    balance_ring_free(&r);
}

static void test_ring_none_eligible(void **state) {
    (void)state;
    struct balance_peer p[3];
    peers_init(p, 3, (int[]){1, 2, 1});
    struct balance_ring r;
    assert_int_equal(balance_ring_build(&r, p, ring_ids, 3), 0);
    p[0].eligible = p[1].eligible = p[2].eligible = false;
    assert_int_equal(balance_ring_pick(&r, p, "k", 1), -1);
    p[2].eligible = true;
    for (int i = 0; i < 100; i++) {
        char key[16];
        int len = snprintf(key, sizeof(key), "key%d", i);
        assert_int_equal(balance_ring_pick(&r, p, key, (size_t)len), 2);
    }
    balance_ring_free(&r);
    /* an empty ring (no servers, or zeroed) picks nothing */
    assert_int_equal(balance_ring_build(&r, p, ring_ids, 0), 0);
    assert_int_equal(r.npoints, 0);
    assert_int_equal(balance_ring_pick(&r, p, "k", 1), -1);
    balance_ring_free(&r);
    struct balance_ring zero = {0};
    assert_int_equal(balance_ring_pick(&zero, p, "k", 1), -1);
}

static void test_ring_bad_weight(void **state) {
    (void)state;
    struct balance_peer p[2];
    peers_init(p, 2, (int[]){1, 0});
    struct balance_ring r;
    assert_true(balance_ring_build(&r, p, ring_ids, 2) < 0);
    assert_null(r.hashes);
    assert_int_equal(r.npoints, 0);
    balance_ring_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rr_weights_are_smooth),
        cmocka_unit_test(test_rr_equal_weights_alternate),
        cmocka_unit_test(test_rr_skips_ineligible),
        cmocka_unit_test(test_rr_distribution_matches_weights),
        cmocka_unit_test(test_lc_picks_least_loaded),
        cmocka_unit_test(test_lc_load_is_relative_to_weight),
        cmocka_unit_test(test_lc_ties_rotate),
        cmocka_unit_test(test_lc_skips_ineligible),
        cmocka_unit_test(test_lc_none_eligible),
        cmocka_unit_test(test_r2_distribution_matches_weights),
        cmocka_unit_test(test_r2_prefers_less_loaded),
        cmocka_unit_test(test_r2_skips_ineligible),
        cmocka_unit_test(test_r2_single_eligible),
        cmocka_unit_test(test_r2_none_eligible),
        cmocka_unit_test(test_r2_zero_seed_is_random),
        cmocka_unit_test(test_hash_values_are_pinned),
        cmocka_unit_test(test_ring_points_layout),
        cmocka_unit_test(test_ring_same_key_same_peer),
        cmocka_unit_test(test_ring_independent_of_peer_order),
        cmocka_unit_test(test_ring_equal_distribution),
        cmocka_unit_test(test_ring_weighted_distribution),
        cmocka_unit_test(test_ring_add_server_moves_few),
        cmocka_unit_test(test_ring_down_server_moves_only_its_keys),
        cmocka_unit_test(test_ring_none_eligible),
        cmocka_unit_test(test_ring_bad_weight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
