/* Unit tests for the memory modules: slab.c (objects zeroed, packed,
 * reused; empty slabs kept until a decay finds them unneeded), buffer.c's decay
 * (only buffers nobody needed since the last decay go), and memtrim.c's
 * policy (trim once a burst is over, never under steady freeing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ferry/buffer.h"
#include "ferry/memtrim.h"
#include "ferry/slab.h"

#define OBJ 472

static void test_slab_objects_zeroed_and_distinct(void **state) {
    (void)state;
    struct slab_pool p;
    slab_pool_init(&p, OBJ);
    assert_int_equal(p.obj_size % 16, 0);
    assert_true(p.obj_size >= OBJ);
    unsigned n = p.per_slab * 2 + 3;
    unsigned char **objs = calloc(n, sizeof(*objs));
    for (unsigned i = 0; i < n; i++) {
        objs[i] = slab_alloc(&p);
        assert_non_null(objs[i]);
        for (size_t b = 0; b < OBJ; b++) assert_int_equal(objs[i][b], 0);
        memset(objs[i], 0xA5, OBJ); /* dirty it: a reuse must come back zeroed */
        for (unsigned j = 0; j < i; j++) /* no overlap with any earlier object */
            assert_true(objs[j] + p.obj_size <= objs[i] || objs[i] + p.obj_size <= objs[j]);
    }
    if (!slab_uses_malloc()) assert_int_equal(p.nslabs, 3);
    assert_int_equal(p.in_use, n);
    for (unsigned i = 0; i < n; i += 2) slab_free(&p, objs[i]);
    for (unsigned i = 0; i < n; i += 2) {
        objs[i] = slab_alloc(&p);
        for (size_t b = 0; b < OBJ; b++) assert_int_equal(objs[i][b], 0);
    }
    if (!slab_uses_malloc()) /* freed places were reused, nothing new mapped */
        assert_int_equal(p.nslabs, 3);
    for (unsigned i = 0; i < n; i++) slab_free(&p, objs[i]);
    assert_int_equal(p.in_use, 0);
    slab_pool_destroy(&p);
    free(objs);
}

static void test_slab_gives_back_unused_empty_slabs(void **state) {
    (void)state;
    if (slab_uses_malloc()) skip(); /* plain callocs (ASan, valgrind builds): no slabs */
    struct slab_pool p;
    slab_pool_init(&p, OBJ);
    unsigned n = p.per_slab * 4;
    void **objs = calloc(n, sizeof(*objs));
    for (unsigned i = 0; i < n; i++) objs[i] = slab_alloc(&p);
    assert_int_equal(p.nslabs, 4);
    /* Objects coming and going across a slab boundary, as under steady
     * load: nothing is mapped or unmapped. */
    for (int k = 0; k < 100; k++) {
        void *o = slab_alloc(&p);
        assert_int_equal(p.nslabs, 5);
        slab_free(&p, o);
        assert_int_equal(p.nslabs, 5);
    }
    /* Three slabs empty out: kept until a decay finds them unneeded. */
    for (unsigned i = p.per_slab; i < n; i++) slab_free(&p, objs[i]);
    assert_int_equal(p.nempty, 4);
    assert_int_equal(p.nslabs, 5);
    slab_pool_decay(&p, 1); /* they were in use during this period */
    assert_int_equal(p.nslabs, 5);
    /* One slab's worth is needed again: served from the empty ones. */
    for (unsigned i = p.per_slab; i < 2 * p.per_slab; i++) objs[i] = slab_alloc(&p);
    assert_int_equal(p.nslabs, 5);
    assert_int_equal(p.nempty, 3);
    /* A period in which two of the three stayed unused: they go, one is
     * kept (KEEP), and so is the one in use. */
    slab_pool_decay(&p, 1);
    assert_int_equal(p.nempty, 1);
    assert_int_equal(p.nslabs, 3);
    slab_pool_decay(&p, 1);
    assert_int_equal(p.nslabs, 3);
    for (unsigned i = 0; i < 2 * p.per_slab; i++) slab_free(&p, objs[i]);
    assert_int_equal(p.nempty, 3);
    slab_pool_decay(&p, 1); /* used in this period: kept */
    slab_pool_decay(&p, 1);
    assert_int_equal(p.nslabs, 1);
    slab_pool_destroy(&p);
    assert_int_equal(p.nslabs, 0);
    free(objs);
}

static void test_buffer_decay_frees_only_unneeded(void **state) {
    (void)state;
    struct buffer_pool p;
    buffer_pool_init(&p, 64);
    char *b[40];
    for (int i = 0; i < 40; i++) b[i] = buffer_get(&p);
    for (int i = 0; i < 40; i++) buffer_put(&p, b[i]);
    assert_int_equal(p.nfree, 40);
    buffer_pool_decay(&p, 4); /* the burst happened in this window: all were needed */
    assert_int_equal(p.nfree, 40);
    assert_int_equal(memtrim_read(&p.freed), 0);
    /* Steady use of 10 at a time: 30 sat free all along and go. */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 10; i++) b[i] = buffer_get(&p);
        for (int i = 0; i < 10; i++) buffer_put(&p, b[i]);
    }
    buffer_pool_decay(&p, 4);
    assert_int_equal(p.nfree, 10);
    assert_int_equal(memtrim_read(&p.freed), 30 * (uint64_t)BUFFER_SIZE);
    /* Quiet: down to KEEP, never below. */
    buffer_pool_decay(&p, 4);
    assert_int_equal(p.nfree, 4);
    buffer_pool_decay(&p, 4);
    assert_int_equal(p.nfree, 4);
    /* Over max_free, a returned buffer is freed at once and counted. */
    for (int i = 0; i < 40; i++) b[i] = buffer_get(&p);
    for (int i = 0; i < 40; i++) buffer_put(&p, b[i]);
    char *more[70];
    for (int i = 0; i < 70; i++) more[i] = buffer_get(&p);
    for (int i = 0; i < 70; i++) buffer_put(&p, more[i]);
    assert_int_equal(p.nfree, 64);
    assert_int_equal(memtrim_read(&p.freed), (30 + 6 + 6) * (uint64_t)BUFFER_SIZE);
    buffer_pool_destroy(&p);
}

static void test_memtrim_after_burst_only(void **state) {
    (void)state;
    struct memtrim_state s = {0};
    const uint64_t period = 1u << 20; /* freed per period under steady load */
    uint64_t total = 0;
    /* Steady freeing, however much in all: never a trim. */
    for (int i = 0; i < 100; i++) {
        total += period;
        assert_false(memtrim_due(&s, total));
    }
    /* The load stops: one trim, in the first quiet period. */
    assert_true(memtrim_due(&s, total));
    for (int i = 0; i < 10; i++) assert_false(memtrim_due(&s, total));
    /* A trickle after it: not worth a trim. */
    total += MEMTRIM_QUIET_FREED / 2;
    assert_false(memtrim_due(&s, total));
    assert_false(memtrim_due(&s, total));
    /* A small burst (under MEMTRIM_MIN_FREED in all) either. */
    total += MEMTRIM_MIN_FREED / 2;
    assert_false(memtrim_due(&s, total));
    assert_false(memtrim_due(&s, total));
    /* A big one, then quiet: a second trim. */
    total += 2 * (uint64_t)MEMTRIM_MIN_FREED;
    assert_false(memtrim_due(&s, total));
    assert_true(memtrim_due(&s, total));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slab_objects_zeroed_and_distinct),
        cmocka_unit_test(test_slab_gives_back_unused_empty_slabs),
        cmocka_unit_test(test_buffer_decay_frees_only_unneeded),
        cmocka_unit_test(test_memtrim_after_burst_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
