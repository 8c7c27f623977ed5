/*
 * test_node.c - B+tree nodes (engine/node.c) as pure functions of a page.
 *
 * A leaf is driven by thousands of random inserts and removes, at 4 KiB
 * and 64 KiB pages, against a reference model (a sorted array); after
 * every step node_check must pass and the node must hold exactly the
 * model's keys and values, in order.  When an insert does not fit, the
 * node must really be full (its free bytes, garbage included, are fewer
 * than the cell needs); then it is split (node_split_point,
 * node_move_tail) and both halves checked.  Also: key order (memcmp, the
 * shorter first), inner nodes and node_child_for, compaction keeping
 * every cell, refused arguments leaving the page unchanged, and
 * node_check finding damage (a slot outside the cells, overlapping cells,
 * keys out of order, a wrong count of garbage, a level that disagrees with
 * the page type).  The seed is printed; DKV_TEST_SEED=N replays a run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dkv.h"
#include "engine/node.h"
#include "pager/page_format.h"
#include "pager/pager.h"
#include "test_util.h"

static uint64_t g_seed;

/* ---- the reference model ----------------------------------------------------------- */

#define MODEL_MAX 20000

struct entry {
    unsigned char key[64];
    size_t        klen;
    uint64_t      vkey;             /* value bytes: test_fill(vkey)     */
    size_t        vlen;
};

struct model {
    struct entry e[MODEL_MAX];
    unsigned     n;
};

static unsigned model_find(const struct model *m, const void *key, size_t klen,
                           int *found)
{
    unsigned lo = 0, hi = m->n;

    *found = 0;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        int c = node_key_cmp(m->e[mid].key, m->e[mid].klen, key, klen);
        if (c < 0) {
            lo = mid + 1;
        } else {
            *found |= c == 0;
            hi = mid;
        }
    }
    return lo;
}

/* The node holds exactly m's entries [from, from + count). */
static void expect_node(const void *page, uint32_t ps, const struct model *m,
                        unsigned from, unsigned count)
{
    unsigned char buf[4096];
    unsigned i;

    assert_rc(node_check(page, ps, 7), DKV_OK);
    assert_int_equal(node_count(page), count);
    for (i = 0; i < count; i++) {
        const struct entry *e = &m->e[from + i];
        size_t klen, vlen;
        unsigned flags;
        const unsigned char *k = node_key(page, i, &klen);
        const unsigned char *v = node_value(page, i, &vlen, &flags);
        assert_int_equal(klen, e->klen);
        assert_memory_equal(k, e->key, klen);
        assert_int_equal(vlen, e->vlen);
        assert_int_equal(flags, 0);
        assert_true(vlen <= sizeof(buf));
        test_fill(buf, vlen, e->vkey);
        if (vlen > 0)
            assert_memory_equal(v, buf, vlen);
    }
}

static void *new_page(uint32_t ps, int type, unsigned level)
{
    void *p = aligned_alloc(4096, ps);

    assert_non_null(p);
    page_init(p, ps, 7, type);
    node_init(p, ps, level);
    return p;
}

static size_t random_key(uint64_t *rng, unsigned char *key)
{
    size_t klen = 1 + test_splitmix64(rng) % 40, i;

    /* A small alphabet, so that prefixes and equal keys are common. */
    for (i = 0; i < klen; i++)
        key[i] = (unsigned char)('a' + test_splitmix64(rng) % 4);
    return klen;
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_key_order(void **state)
{
    (void)state;
    assert_true(node_key_cmp("a", 1, "b", 1) < 0);
    assert_true(node_key_cmp("ab", 2, "a", 1) > 0);      /* shorter first */
    assert_true(node_key_cmp("a", 1, "ab", 2) < 0);
    assert_int_equal(node_key_cmp("abc", 3, "abc", 3), 0);
    assert_true(node_key_cmp("\xff", 1, "\x01\x02", 2) > 0);   /* unsigned */
}

/* Random inserts, replacements and removes against the model; splits when
   full.  One page size per call. */
static void random_leaf_run(uint32_t ps, unsigned steps)
{
    struct model *m = calloc(1, sizeof(*m));
    unsigned char *page = new_page(ps, PAGE_TYPE_BTREE_LEAF, 0);
    unsigned char val[4096];
    uint64_t rng = g_seed ^ ps;
    unsigned step, splits = 0;

    assert_non_null(m);
    for (step = 0; step < steps; step++) {
        unsigned char key[64];
        size_t klen = random_key(&rng, key);
        int found;
        unsigned at = model_find(m, key, klen, &found);
        unsigned op = (unsigned)(test_splitmix64(&rng) % 10);
        int nfound;
        unsigned nat = node_search(page, key, klen, &nfound);

        assert_int_equal(nat, at);
        assert_int_equal(nfound, found);
        if (found && op < 4) {                              /* remove */
            node_remove(page, at);
            memmove(&m->e[at], &m->e[at + 1], (m->n - at - 1) * sizeof(m->e[0]));
            m->n--;
        } else if (!found) {                                /* insert */
            size_t vlen = test_splitmix64(&rng) % 8 == 0
                              ? test_splitmix64(&rng) % (ps < 8192 ? 1500 : 4000)
                              : test_splitmix64(&rng) % 120;
            uint64_t vkey = test_splitmix64(&rng);
            size_t need = node_leaf_cell_size(klen, vlen);
            size_t free_before = node_free(page, ps);
            int rc;
            test_fill(val, vlen, vkey);
            rc = node_insert_leaf(page, ps, at, key, klen, val, vlen, 0);
            if (rc == DKV_ERR_NOSPACE) {
                /* Really full; then split, keep the left half. */
                unsigned char *right = new_page(ps, PAGE_TYPE_BTREE_LEAF, 0);
                unsigned cut;
                assert_true(free_before < need);
                expect_node(page, ps, m, 0, m->n);
                cut = node_split_point(page, ps);
                assert_true(cut >= 1 && cut < m->n);
                node_move_tail(page, ps, cut, right);
                expect_node(page, ps, m, 0, cut);
                expect_node(right, ps, m, cut, m->n - cut);
                m->n = cut;
                splits++;
                free(right);
                continue;
            }
            assert_rc(rc, DKV_OK);
            memmove(&m->e[at + 1], &m->e[at], (m->n - at) * sizeof(m->e[0]));
            memcpy(m->e[at].key, key, klen);
            m->e[at].klen = klen;
            m->e[at].vkey = vkey;
            m->e[at].vlen = vlen;
            m->n++;
        }
        if (step % 16 == 0 || step == steps - 1)
            expect_node(page, ps, m, 0, m->n);
    }
    print_message("page %u: %u steps, %u splits, %u entries at the end\n",
                  ps, steps, splits, m->n);
    assert_true(splits > 0);
    free(page);
    free(m);
}

static void test_random_leaf_4k(void **state)
{
    (void)state;
    random_leaf_run(4096, 20000);
}

static void test_random_leaf_64k(void **state)
{
    (void)state;
    random_leaf_run(65536, 20000);
}

/* Removing cells in the middle leaves garbage; an insert that needs it
   compacts, and every other cell survives. */
static void test_garbage_reclaimed(void **state)
{
    const uint32_t ps = 4096;
    unsigned char *page = new_page(ps, PAGE_TYPE_BTREE_LEAF, 0);
    unsigned char val[200], key[8];
    unsigned i, n;
    size_t vlen;
    unsigned flags;

    (void)state;
    memset(val, 'v', sizeof(val));
    for (i = 0; ; i++) {                         /* fill it */
        snprintf((char *)key, sizeof(key), "k%04u", i);
        if (node_insert_leaf(page, ps, i, key, 5, val, 100, 0) != DKV_OK)
            break;
    }
    n = node_count(page);
    assert_true(n > 10);
    for (i = 1; i < n; i += 2)                   /* every other, from the end */
        node_remove(page, n - 1 - i);
    assert_rc(node_check(page, ps, 7), DKV_OK);
    assert_true(node_free(page, ps) >= node_leaf_cell_size(5, 150));
    snprintf((char *)key, sizeof(key), "zzzz");
    assert_rc(node_insert_leaf(page, ps, node_count(page), key, 4, val, 150, 0),
              DKV_OK);
    assert_rc(node_check(page, ps, 7), DKV_OK);
    for (i = 0; i + 1 < node_count(page); i++) {
        const unsigned char *v = node_value(page, i, &vlen, &flags);
        assert_int_equal(vlen, 100);
        assert_memory_equal(v, val, 100);
    }
    free(page);
}

static void test_inner_node(void **state)
{
    const uint32_t ps = 4096;
    unsigned char *page = new_page(ps, PAGE_TYPE_BTREE_INNER, 1);
    unsigned slot;

    (void)state;
    node_set_leftmost(page, 100);
    assert_rc(node_insert_inner(page, ps, 0, "g", 1, 101), DKV_OK);
    assert_rc(node_insert_inner(page, ps, 1, "p", 1, 102), DKV_OK);
    assert_rc(node_check(page, ps, 7), DKV_OK);
    assert_int_equal(node_child_for(page, "a", 1, &slot), 100);
    assert_int_equal(slot, 0);
    assert_int_equal(node_child_for(page, "g", 1, &slot), 101);   /* >= key */
    assert_int_equal(slot, 1);
    assert_int_equal(node_child_for(page, "gz", 2, NULL), 101);
    assert_int_equal(node_child_for(page, "p", 1, NULL), 102);
    assert_int_equal(node_child_for(page, "zzz", 3, NULL), 102);
    /* A leaf insert into an inner node, and the reverse, are refused. */
    assert_rc(node_insert_leaf(page, ps, 0, "a", 1, "x", 1, 0), DKV_ERR_INVALID);
    free(page);
}

static void test_bad_arguments_change_nothing(void **state)
{
    const uint32_t ps = 4096;
    unsigned char *page = new_page(ps, PAGE_TYPE_BTREE_LEAF, 0);
    unsigned char *copy = malloc(ps), big[NODE_KEY_MAX + 1];

    (void)state;
    memset(big, 'k', sizeof(big));
    assert_rc(node_insert_leaf(page, ps, 0, "a", 1, "1", 1, 0), DKV_OK);
    memcpy(copy, page, ps);
    assert_rc(node_insert_leaf(page, ps, 2, "b", 1, "1", 1, 0), DKV_ERR_INVALID);
    assert_rc(node_insert_leaf(page, ps, 0, "", 0, "1", 1, 0), DKV_ERR_INVALID);
    assert_rc(node_insert_leaf(page, ps, 0, big, sizeof(big), "1", 1, 0),
              DKV_ERR_INVALID);
    assert_rc(node_insert_leaf(page, ps, 0, "b", 1, big, ps, 0), DKV_ERR_INVALID);
    assert_rc(node_insert_leaf(page, ps, 1, "b", 1, "12", 2, NODE_VAL_OVERFLOW),
              DKV_ERR_INVALID);
    assert_rc(node_insert_inner(page, ps, 0, "b", 1, 5), DKV_ERR_INVALID);
    assert_memory_equal(page, copy, ps);
    free(copy);
    free(page);
}

/* Damage of each kind is found. */
static void test_check_finds_damage(void **state)
{
    const uint32_t ps = 4096;
    unsigned char *page = new_page(ps, PAGE_TYPE_BTREE_LEAF, 0);
    unsigned char *good = malloc(ps);
    unsigned i;

    (void)state;
    for (i = 0; i < 20; i++) {
        char key[8];
        snprintf(key, sizeof(key), "k%02u", i);
        assert_rc(node_insert_leaf(page, ps, i, key, 3, "value", 5, 0), DKV_OK);
    }
    node_remove(page, 5);                             /* some garbage */
    assert_rc(node_check(page, ps, 7), DKV_OK);
    memcpy(good, page, ps);

    store_le16(page + NODE_HEADER_SIZE + 2 * 3, 10);  /* slot into the slots */
    assert_rc(node_check(page, ps, 7), DKV_ERR_CORRUPT);
    memcpy(page, good, ps);
    store_le16(page + NODE_HEADER_SIZE + 2 * 3,       /* two slots, one cell */
               load_le16(page + NODE_HEADER_SIZE + 2 * 4));
    assert_rc(node_check(page, ps, 7), DKV_ERR_CORRUPT);
    memcpy(page, good, ps);
    {                                                 /* keys swapped */
        uint16_t a = load_le16(page + NODE_HEADER_SIZE + 2 * 3);
        uint16_t b = load_le16(page + NODE_HEADER_SIZE + 2 * 4);
        store_le16(page + NODE_HEADER_SIZE + 2 * 3, b);
        store_le16(page + NODE_HEADER_SIZE + 2 * 4, a);
    }
    assert_rc(node_check(page, ps, 7), DKV_ERR_CORRUPT);
    memcpy(page, good, ps);
    store_le32(page + NODE_OFF_GARBAGE, 0);           /* garbage miscounted */
    assert_rc(node_check(page, ps, 7), DKV_ERR_CORRUPT);
    memcpy(page, good, ps);
    page[NODE_OFF_LEVEL] = 1;                         /* a leaf says inner */
    assert_rc(node_check(page, ps, 7), DKV_ERR_CORRUPT);
    memcpy(page, good, ps);
    store_le16(page + NODE_OFF_COUNT, 2000);          /* slots over the cells */
    assert_rc(node_check(page, ps, 7), DKV_ERR_CORRUPT);
    memcpy(page, good, ps);
    assert_rc(node_check(page, ps, 7), DKV_OK);
    free(good);
    free(page);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_order),
        cmocka_unit_test(test_random_leaf_4k),
        cmocka_unit_test(test_random_leaf_64k),
        cmocka_unit_test(test_garbage_reclaimed),
        cmocka_unit_test(test_inner_node),
        cmocka_unit_test(test_bad_arguments_change_nothing),
        cmocka_unit_test(test_check_finds_damage),
    };

    g_seed = test_seed("test_node");
    return cmocka_run_group_tests_name("node", tests, NULL, NULL);
}
