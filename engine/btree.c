/*
 * btree.c - the B+tree: lookups, inserts with splits, deletes, and the
 * redo of its node operations (design: btree.h, engine/README.md).
 *
 * Every change to a node is made by a node.c function and logged as that
 * operation (BT_REDO_*), so redo calls the same function on the same page
 * state.  A split is planned with the new cell counted in (the byte
 * halves of the node plus the cell), which with cells of at most a third
 * of a node guarantees that both halves, and the new cell, fit.
 */
#include "btree.h"

#include "dkv.h"
#include "node.h"
#include "pager/page_format.h"
#include "pager/pager.h"

#include <stdlib.h>
#include <string.h>

#define BTREE_KEY_MAX    1024u
#define BTREE_HEIGHT_MAX 12u       /* path entries an MTR may hold          */

struct btree {
    struct store *s;
    struct pool  *pool;
    uint32_t      root;
    uint32_t      ps;
    unsigned      unit_mtrs;     /* MTRs so far of the open unit (0: none) */
    int           purge_pending; /* a chain waits on the purge list        */
};

/* A cell to insert: a leaf's (key, value) or an inner node's (key, child). */
struct cell {
    const unsigned char *key;
    size_t               klen;
    const unsigned char *val;
    size_t               vlen;
    uint32_t             child;
    unsigned             flags;     /* leaf: NODE_VAL_OVERFLOW             */
};

/* ---- node operations, applied and logged ------------------------------------------ */

static int node_page_type(unsigned level)
{
    return level > 0 ? PAGE_TYPE_BTREE_INNER : PAGE_TYPE_BTREE_LEAF;
}

static void apply_init(void *page, uint32_t ps, unsigned level, uint32_t leftmost,
                       uint32_t right)
{
    store_le16((unsigned char *)page + PAGE_OFF_TYPE, (uint16_t)node_page_type(level));
    node_init(page, ps, level);
    node_set_leftmost(page, leftmost);
    node_set_right(page, right);
}

static int op_init(struct pool_mtr *m, struct frame *f, uint32_t ps, unsigned level,
                   uint32_t leftmost, uint32_t right)
{
    unsigned char r[11];

    apply_init(frame_data(f), ps, level, leftmost, right);
    store_le16(r, (uint16_t)node_page_type(level));
    r[2] = (unsigned char)level;
    store_le32(r + 3, leftmost);
    store_le32(r + 7, right);
    return pool_mtr_log(m, f, BT_REDO_INIT, r, sizeof(r));
}

/* Inserts c at slot of the node f (leaf or inner by its level), logged. */
static int op_insert(struct pool_mtr *m, struct frame *f, uint32_t ps, unsigned slot,
                     const struct cell *c)
{
    void *page = frame_data(f);
    int leaf = node_level(page) == 0;
    size_t hdr = leaf ? NODE_LEAF_CELL_HDR : NODE_INNER_CELL_HDR;
    size_t len = 2 + hdr + c->klen + (leaf ? c->vlen : 0);
    unsigned char *r;
    int rc;

    rc = leaf ? node_insert_leaf(page, ps, slot, c->key, c->klen, c->val, c->vlen,
                                 c->flags)
              : node_insert_inner(page, ps, slot, c->key, c->klen, c->child);
    if (rc != DKV_OK)
        return rc;
    r = malloc(len);
    if (r == NULL)
        return DKV_ERR_NOMEM;
    store_le16(r, (uint16_t)slot);
    store_le16(r + 2, (uint16_t)c->klen);
    if (leaf) {
        store_le32(r + 4, (uint32_t)c->vlen);
        r[8] = (unsigned char)c->flags;
        memcpy(r + 2 + hdr, c->key, c->klen);
        if (c->vlen > 0)
            memcpy(r + 2 + hdr + c->klen, c->val, c->vlen);
    } else {
        store_le32(r + 4, c->child);
        memcpy(r + 2 + hdr, c->key, c->klen);
    }
    rc = pool_mtr_log(m, f, BT_REDO_INSERT, r, (uint32_t)len);
    free(r);
    return rc;
}

static int op_remove(struct pool_mtr *m, struct frame *f, unsigned slot)
{
    unsigned char r[2];

    node_remove(frame_data(f), slot);
    store_le16(r, (uint16_t)slot);
    return pool_mtr_log(m, f, BT_REDO_REMOVE, r, sizeof(r));
}

static int op_truncate(struct pool_mtr *m, struct frame *f, unsigned from)
{
    void *page = frame_data(f);
    unsigned char r[2];

    while (node_count(page) > from)
        node_remove(page, node_count(page) - 1);
    store_le16(r, (uint16_t)from);
    return pool_mtr_log(m, f, BT_REDO_TRUNCATE, r, sizeof(r));
}

static int op_set_right(struct pool_mtr *m, struct frame *f, uint32_t right)
{
    unsigned char r[4];

    node_set_right(frame_data(f), right);
    store_le32(r, right);
    return pool_mtr_log(m, f, BT_REDO_SET_RIGHT, r, sizeof(r));
}

/* The cell of slot i of a node (pointing into the page). */
static void cell_of(const void *page, unsigned i, struct cell *c)
{
    unsigned flags;

    c->key = node_key(page, i, &c->klen);
    if (node_level(page) > 0) {
        c->val = NULL;
        c->vlen = 0;
        c->child = node_child(page, i);
        c->flags = 0;
    } else {
        c->val = node_value(page, i, &c->vlen, &flags);
        c->child = 0;
        c->flags = flags;
    }
}

/* ---- redo ------------------------------------------------------------------------------- */

/* A record that does not fit the page it names: the page is reported. */
#define BAD(page) PAGER_CORRUPT(page_no(page), "a B+tree log record does not fit its page")

/* Whether a redone insert of key at slot keeps the node's keys in order
   (a damaged record must not build a node that node_check would refuse:
   lookups trust the nodes in the pool). */
static int insert_in_order(const void *page, unsigned slot, const void *key, size_t klen)
{
    unsigned n = node_count(page);
    const unsigned char *k;
    size_t l;

    if (klen == 0 || klen > BTREE_KEY_MAX || slot > n)
        return 0;
    if (slot > 0 && (k = node_key(page, slot - 1, &l), node_key_cmp(k, l, key, klen) >= 0))
        return 0;
    return slot == n || (k = node_key(page, slot, &l), node_key_cmp(key, klen, k, l) < 0);
}

static int redo_fn(void *arg, void *page, uint32_t ps, int type, const void *payload,
                   uint32_t len)
{
    const unsigned char *r = payload;
    unsigned slot;
    int rc;

    (void)arg;
    switch (type) {
    case BT_REDO_INIT: {
        unsigned ptype = len == 11 ? load_le16(r) : 0;
        if (len != 11 || r[2] > 32 || (int)ptype != node_page_type(r[2]))
            return BAD(page);
        apply_init(page, ps, r[2], load_le32(r + 3), load_le32(r + 7));
        return DKV_OK;
    }
    case BT_REDO_INSERT: {
        size_t klen, vlen;
        if (len < 2 + NODE_INNER_CELL_HDR || page_type(page) < PAGE_TYPE_BTREE_LEAF ||
            page_type(page) > PAGE_TYPE_BTREE_INNER)
            return BAD(page);
        slot = load_le16(r);
        klen = load_le16(r + 2);
        if (node_level(page) > 0) {
            if (len != 2 + NODE_INNER_CELL_HDR + klen ||
                !insert_in_order(page, slot, r + 2 + NODE_INNER_CELL_HDR, klen))
                return BAD(page);
            rc = node_insert_inner(page, ps, slot, r + 2 + NODE_INNER_CELL_HDR, klen,
                                   load_le32(r + 4));
            return rc == DKV_OK ? DKV_OK : BAD(page);
        }
        if (len < 2 + NODE_LEAF_CELL_HDR + klen)
            return BAD(page);
        vlen = load_le32(r + 4);
        if (len != 2 + NODE_LEAF_CELL_HDR + klen + vlen || (r[8] & ~NODE_VAL_OVERFLOW) ||
            ((r[8] & NODE_VAL_OVERFLOW) && vlen != NODE_OVERFLOW_REF) ||
            !insert_in_order(page, slot, r + 2 + NODE_LEAF_CELL_HDR, klen))
            return BAD(page);
        rc = node_insert_leaf(page, ps, slot, r + 2 + NODE_LEAF_CELL_HDR, klen,
                              r + 2 + NODE_LEAF_CELL_HDR + klen, vlen, r[8]);
        return rc == DKV_OK ? DKV_OK : BAD(page);
    }
    case BT_REDO_REMOVE:
        if (len != 2 || load_le16(r) >= node_count(page))
            return BAD(page);
        node_remove(page, load_le16(r));
        return DKV_OK;
    case BT_REDO_TRUNCATE:
        if (len != 2 || load_le16(r) > node_count(page))
            return BAD(page);
        while (node_count(page) > load_le16(r))
            node_remove(page, node_count(page) - 1);
        return DKV_OK;
    case BT_REDO_SET_RIGHT:
        if (len != 4)
            return BAD(page);
        node_set_right(page, load_le32(r));
        return DKV_OK;
    default:
        return BAD(page);
    }
}

int btree_redo(void *arg, struct pool *pool, uint64_t end_lsn, int type,
               uint32_t page_no_, const void *payload, uint32_t len)
{
    return pool_redo_apply_fn(pool, end_lsn, type, page_no_, payload, len,
                              redo_fn, arg);
}

/* ---- opening ------------------------------------------------------------------------------ */

/* A node fixed by the tree: its type must say so (a damaged pointer or
   page is reported, never followed). */
static int check_node(const void *page, uint32_t page_no_)
{
    int t = page_type(page);

    if ((t != PAGE_TYPE_BTREE_LEAF && t != PAGE_TYPE_BTREE_INNER) ||
        (node_level(page) == 0) != (t == PAGE_TYPE_BTREE_LEAF))
        return PAGER_CORRUPT(page_no_, "B+tree pointer to a page that is not a node");
    return DKV_OK;
}

int btree_page_check(void *arg, const void *page, uint32_t page_size,
                     uint32_t page_no_)
{
    int t = page_type(page), rc;
    unsigned i, n;

    (void)arg;
    if (t != PAGE_TYPE_BTREE_LEAF && t != PAGE_TYPE_BTREE_INNER)
        return DKV_OK;                  /* checked where they are used */
    rc = node_check(page, page_size, page_no_);
    for (i = 0, n = node_count(page); rc == DKV_OK && i < n; i++) {
        size_t kl;
        node_key(page, i, &kl);
        if (kl > BTREE_KEY_MAX)
            rc = PAGER_CORRUPT(page_no_, "B+tree key longer than a key may be");
    }
    return rc;
}

int btree_open(struct store *s, struct btree **btp)
{
    struct btree *bt = calloc(1, sizeof(*bt));
    struct pool *pool = store_pool(s);
    struct frame *f;
    int rc = bt ? DKV_OK : DKV_ERR_NOMEM;

    *btp = NULL;
    if (rc != DKV_OK)
        return rc;
    bt->s = s;
    bt->pool = pool;
    bt->ps = store_page_size(s);
    bt->root = (uint32_t)pool_meta_get(pool, BTREE_META_ROOT);
    bt->purge_pending = pool_meta_get(pool, BTREE_META_PURGE) != 0;   /* left by a crash */
    if (rc == DKV_OK && bt->root == 0) {               /* a fresh store */
        struct pool_mtr m;
        rc = store_mtr_start(s, &m);
        if (rc == DKV_OK)
            rc = pool_mtr_alloc(&m, PAGE_TYPE_BTREE_LEAF, &f);
        if (rc == DKV_OK)
            rc = op_init(&m, f, bt->ps, 0, 0, 0);
        if (rc == DKV_OK)
            bt->root = frame_page_no(f);
        if (rc == DKV_OK)
            rc = pool_mtr_meta_set(&m, BTREE_META_ROOT, bt->root);
        if (rc == DKV_OK)
            rc = store_commit(s, &m, WAL_UNIT_END | WAL_SYNC);
        else
            store_mtr_cancel(s, &m, rc);
        pool_mtr_free_buffers(&m);
    }
    if (rc == DKV_OK) {
        rc = pool_fix(pool, bt->root, POOL_S, 0, &f);
        if (rc == DKV_OK) {
            rc = check_node(frame_data(f), bt->root);
            pool_unfix(pool, f);
        }
    }
    if (rc != DKV_OK) {
        free(bt);
        return rc;
    }
    *btp = bt;
    return DKV_OK;
}

void btree_close(struct btree *bt)
{
    free(bt);
}

size_t btree_max_value(const struct btree *bt, size_t klen)
{
    size_t cell_max = (bt->ps - NODE_HEADER_SIZE) / 3;
    size_t fixed = NODE_SLOT_SIZE + NODE_LEAF_CELL_HDR + klen;

    return cell_max > fixed ? cell_max - fixed : 0;
}

static int key_ok(const void *key, size_t klen)
{
    return key != NULL && klen > 0 && klen <= BTREE_KEY_MAX;
}

/* ---- overflow values ---------------------------------------------------------------------- */

/* A value longer than btree_max_value lives in a chain of overflow pages;
   its leaf cell (NODE_VAL_OVERFLOW) holds the first page and the length.
   An overflow page's body: */
#define OVF_OFF_NEXT  PAGE_HEADER_SIZE          /* u32 next page of the value, 0: last */
#define OVF_OFF_LEN   (PAGE_HEADER_SIZE + 4)    /* u32 value bytes in this page       */
#define OVF_OFF_CHAIN (PAGE_HEADER_SIZE + 8)    /* u32 (first page only) the next
                                                   chain on the purge list            */
#define OVF_OFF_DATA  (PAGE_HEADER_SIZE + 12)
#define OVF_MTR_PAGES 8u                        /* overflow pages one MTR writes/frees */

static size_t ovf_room(const struct btree *bt)
{
    return bt->ps - OVF_OFF_DATA;
}

uint64_t btree_value_pages(const struct btree *bt, size_t klen, size_t vlen)
{
    if (vlen <= btree_max_value(bt, klen))
        return 0;
    return (vlen + ovf_room(bt) - 1) / ovf_room(bt);
}

static int ovf_fix(struct btree *bt, struct pool_mtr *m, uint32_t no, int latch,
                   struct frame **fp)
{
    int rc = m ? pool_mtr_fix(m, no, latch, 0, fp) : pool_fix(bt->pool, no, latch, 0, fp);

    if (rc == DKV_OK && page_type(frame_data(*fp)) != PAGE_TYPE_OVERFLOW) {
        if (m == NULL)
            pool_unfix(bt->pool, *fp);
        return PAGER_CORRUPT(no, "a value's overflow pointer names a page that is not one");
    }
    return rc;
}

/* Writes the value bytes from *off into at most max new overflow pages of
   m, chained after *last (0: none yet; *first gets the first page). */
static int ovf_write(struct btree *bt, struct pool_mtr *m, const unsigned char *val,
                     size_t vlen, size_t *off, unsigned max, uint32_t *first,
                     uint32_t *last)
{
    unsigned k;
    int rc = DKV_OK;

    for (k = 0; k < max && *off < vlen && rc == DKV_OK; k++) {
        size_t n = vlen - *off < ovf_room(bt) ? vlen - *off : ovf_room(bt);
        unsigned char b[4];
        struct frame *f, *pf;

        rc = pool_mtr_alloc(m, PAGE_TYPE_OVERFLOW, &f);
        if (rc != DKV_OK)
            break;
        store_le32(b, (uint32_t)n);
        rc = pool_mtr_write(m, f, OVF_OFF_LEN, b, 4);
        if (rc == DKV_OK)
            rc = pool_mtr_write(m, f, OVF_OFF_DATA, val + *off, (uint32_t)n);
        if (rc == DKV_OK && *last != 0) {
            /* The page before may belong to an earlier MTR of this unit:
               its change cannot have left the pool (W4). */
            rc = pool_mtr_fix(m, *last, POOL_X, 0, &pf);
            store_le32(b, frame_page_no(f));
            if (rc == DKV_OK)
                rc = pool_mtr_write(m, pf, OVF_OFF_NEXT, b, 4);
        }
        if (*first == 0)
            *first = frame_page_no(f);
        *last = frame_page_no(f);
        *off += n;
    }
    return rc;
}

/* Copies min(cap, total) bytes of the value whose chain starts at first
   (the leaf that points to it is latched by the caller, so the chain
   cannot be freed meanwhile). */
#define OVF_RA 64u                   /* overflow pages read ahead at once */

static int ovf_read(struct btree *bt, uint32_t first, uint64_t total, void *buf,
                    size_t cap)
{
    uint64_t want = total < cap ? total : cap, off = 0;
    uint64_t hops = total / ovf_room(bt) + 2;
    uint32_t no = first, ra_end = first;

    while (off < want) {
        struct frame *f;
        const unsigned char *p;
        uint32_t len, next;
        int rc;

        if (no == 0 || hops-- == 0)
            return PAGER_CORRUPT(first, "an overflow chain is shorter than its value");
        /* A chain is written in page order when the free list had nothing
           to give, so the pages after this one are read ahead while the
           chain keeps to them (a chain that jumps is followed page by
           page): a long value moves in large requests. */
        if (no == ra_end || (no > first && no + OVF_RA / 2 == ra_end)) {
            uint32_t ahead[OVF_RA];
            uint64_t here = (want - off + ovf_room(bt) - 1) / ovf_room(bt);
            uint64_t left = here > ra_end - no ? here - (ra_end - no) : 0;
            unsigned k, n = left < OVF_RA ? (unsigned)left : OVF_RA;
            for (k = 0; k < n; k++)
                ahead[k] = ra_end + k;
            if (n > 1)
                pool_prefetch(bt->pool, ahead, n);
            ra_end += n;
        }
        rc = ovf_fix(bt, NULL, no, POOL_S, &f);
        if (rc != DKV_OK)
            return rc;
        p = frame_data(f);
        len = load_le32(p + OVF_OFF_LEN);
        next = load_le32(p + OVF_OFF_NEXT);
        if (len == 0 || len > ovf_room(bt) || off + len > total) {
            pool_unfix(bt->pool, f);
            return PAGER_CORRUPT(no, "an overflow page holds a bad length");
        }
        memcpy((unsigned char *)buf + off, p + OVF_OFF_DATA,
               off + len <= want ? len : want - off);
        pool_unfix(bt->pool, f);
        off += len;
        if (next != no + 1)
            ra_end = 0;                 /* left the run: no more guesses */
        no = next;
    }
    return DKV_OK;
}

/* The value of slot i of a latched leaf: copies min(cap, length) bytes. */
int btree_leaf_value(struct btree *bt, const void *page, unsigned i, void *buf,
                     size_t cap, size_t *vlen)
{
    unsigned flags;
    size_t len;
    const unsigned char *v = node_value(page, i, &len, &flags);

    if (flags & NODE_VAL_OVERFLOW) {
        uint64_t total = load_le64(v + 4);
        if (total > DKV_VALUE_MAX)
            return PAGER_CORRUPT(page_no(page), "an overflow value longer than possible");
        *vlen = (size_t)total;
        return cap > 0 ? ovf_read(bt, load_le32(v), total, buf, cap) : DKV_OK;
    }
    *vlen = len;
    if (cap > 0 && len > 0)
        memcpy(buf, v, len < cap ? len : cap);
    return DKV_OK;
}

/* The value of slot i of an X-latched leaf in m is going away: its chain,
   if it has one, goes on the purge list (freed by btree_purge in later
   MTRs, so that no MTR must free an unbounded number of pages). */
static int ovf_retire(struct btree *bt, struct pool_mtr *m, const void *page, unsigned i)
{
    unsigned flags;
    size_t len;
    const unsigned char *v = node_value(page, i, &len, &flags);
    struct frame *f;
    unsigned char b[4];
    uint64_t head;
    uint32_t first;
    int rc;

    if (!(flags & NODE_VAL_OVERFLOW))
        return DKV_OK;
    first = load_le32(v);
    rc = ovf_fix(bt, m, first, POOL_X, &f);
    if (rc == DKV_OK)
        rc = pool_mtr_meta_get(m, BTREE_META_PURGE, &head);
    if (rc != DKV_OK)
        return rc;
    store_le32(b, (uint32_t)head);
    rc = pool_mtr_write(m, f, OVF_OFF_CHAIN, b, 4);
    if (rc == DKV_OK)
        rc = pool_mtr_meta_set(m, BTREE_META_PURGE, first);
    __atomic_store_n(&bt->purge_pending, 1, __ATOMIC_RELEASE);
    return rc;
}

int btree_purge_pending(const struct btree *bt)
{
    return __atomic_load_n(&bt->purge_pending, __ATOMIC_ACQUIRE);
}

int btree_purge(struct btree *bt)
{
    for (;;) {
        struct pool_mtr m;
        struct frame *f;
        uint64_t head = 0;
        uint32_t link, no;
        unsigned char b[4];
        unsigned k;
        int rc = store_mtr_start(bt->s, &m);

        if (rc == DKV_OK)
            rc = pool_mtr_meta_get(&m, BTREE_META_PURGE, &head);
        if (rc == DKV_OK && head > UINT32_MAX)
            rc = PAGER_CORRUPT(0, "the purge list's head is not a page number");
        if (rc != DKV_OK || head == 0) {
            if (rc == DKV_OK)          /* under page 0: no retire is half done */
                __atomic_store_n(&bt->purge_pending, 0, __ATOMIC_RELEASE);
            store_mtr_cancel(bt->s, &m, rc);
            pool_mtr_free_buffers(&m);
            return rc;
        }
        rc = ovf_fix(bt, &m, (uint32_t)head, POOL_X, &f);
        link = rc == DKV_OK ? load_le32((unsigned char *)frame_data(f) + OVF_OFF_CHAIN) : 0;
        for (no = (uint32_t)head, k = 0; rc == DKV_OK && no != 0 && k < OVF_MTR_PAGES; k++) {
            uint32_t next;
            if (no != head)
                rc = ovf_fix(bt, &m, no, POOL_X, &f);
            if (rc != DKV_OK)
                break;
            next = load_le32((unsigned char *)frame_data(f) + OVF_OFF_NEXT);
            rc = pool_mtr_free(&m, no);
            no = next;
        }
        if (rc == DKV_OK && no != 0) {          /* the rest of the chain stays first */
            rc = ovf_fix(bt, &m, no, POOL_X, &f);
            store_le32(b, link);
            if (rc == DKV_OK)
                rc = pool_mtr_write(&m, f, OVF_OFF_CHAIN, b, 4);
            if (rc == DKV_OK)
                rc = pool_mtr_meta_set(&m, BTREE_META_PURGE, no);
        } else if (rc == DKV_OK) {
            rc = pool_mtr_meta_set(&m, BTREE_META_PURGE, link);
        }
        if (rc == DKV_OK)
            rc = store_commit(bt->s, &m, WAL_UNIT_END);
        else
            store_mtr_cancel(bt->s, &m, rc);
        pool_mtr_free_buffers(&m);
        if (rc != DKV_OK)
            return rc;
    }
}

/* ---- lookups --------------------------------------------------------------------------------- */

/* Descends from the root to the leaf that holds key, shared, with latch
   coupling.  hi (BTREE_KEY_MAX bytes, or NULL): the smallest separator
   above key on the path, the leaf's upper bound (*hilen 0: none, the
   last leaf).  ra (or NULL): a scan's read-ahead, moved on by one leaf
   (see below).  leaf_no: stop above the leaf and return its number,
   fixing nothing. */
#define RA_MAX    1024u

/* A scan's read-ahead keeps the window of leaves after the current one
   asked for: when fewer than three quarters of it are (ra->ahead), it
   asks for the rest, positions ahead + 1 .. window, from the leaf's parent
   on.  So each request is one stretch of at least a quarter of the window
   that was not yet asked for, which the pool reads as a few large
   requests where the leaves are neighbours on disk (keys loaded in
   order), while the rest is in flight or in the pool: a steady few
   requests in flight, which is what a disk reads fastest (a virtual
   disk here reads 256 KiB requests fastest at 2 to 4 in flight, and
   slower at 16).  A window that reaches past
   its parent's last child goes on into the next parents (the
   grandparent's next children): their children are read without a latch
   (P11: the page is not latched left to right under the parent's latch,
   which could deadlock with a merge) and kept only if the page did not
   change meanwhile.  The next RA_PARENTS parents are read ahead whenever
   they are missing, so the window finds them in the pool; one that is not
   there yet (or still being read) stops the window for an eighth of its
   length.  The positions are counted on the tree as it stands: writes
   between leaves make them approximate, which costs a page read early or
   late, never a wrong answer. */
#define RA_PARENTS 8u

/* Adds child c (position ++*pos after the current leaf) when the window
   has not asked for it yet. */
static void ra_add(const struct btree_ra *ra, uint32_t child, unsigned *pos,
                   uint32_t *ahead, unsigned *nahead)
{
    if (++*pos > ra->ahead)
        ahead[(*nahead)++] = child;
}

/* The children of next parent no, onto the window.  0: stop here. */
static int ra_next_parent(struct btree *bt, const struct btree_ra *ra, uint32_t no,
                          unsigned window, uint32_t *ahead, unsigned *nahead,
                          unsigned *pos)
{
    uint64_t v;
    struct frame *f = pool_opt_peek(bt->pool, no, &v);
    unsigned start = *nahead, start_pos = *pos, i, n;
    const unsigned char *page;
    uint32_t child;

    if (f == NULL) {                /* read ahead earlier, and arrived?   */
        pool_poll_reads(bt->pool);
        f = pool_opt_peek(bt->pool, no, &v);
    }
    if (f == NULL) {
        ahead[(*nahead)++] = no;
        return 0;
    }
    page = frame_data(f);
    if (page_type(page) != PAGE_TYPE_BTREE_INNER || node_level(page) != 1)
        return 0;
    n = node_count(page);
    ra_add(ra, node_leftmost(page), pos, ahead, nahead);
    for (i = 0; i < n && *pos < window; i++) {
        if (node_child_checked(page, bt->ps, i, &child) != 0)
            break;
        ra_add(ra, child, pos, ahead, nahead);
    }
    if (!pool_opt_valid(f, v)) {
        *nahead = start;
        *pos = start_pos;
        return 0;
    }
    return 1;
}

/* At the parent (page) of the leaf at slot: moves the window on by that
   leaf and asks for its rest when a quarter of it is used up. */
static void ra_advance(struct btree *bt, struct btree_ra *ra, const void *page,
                       unsigned slot, const uint32_t *next_parent, uint32_t *ahead,
                       unsigned *nahead)
{
    unsigned window = ra->window < RA_MAX ? ra->window : RA_MAX;
    unsigned n = node_count(page), pos = 0, c, j;
    int stop = 0;

    ra->ahead -= ra->ahead > 0;
    if (ra->wait > 0 && ra->ahead > 0) {
        ra->wait--;
        return;
    }
    if (4 * ra->ahead >= 3 * window)
        return;
    for (c = slot + 1; c <= n && pos < window; c++)
        ra_add(ra, node_child(page, c - 1), &pos, ahead, nahead);
    /* The next parents the window does not reach (or reaches after one
       not in the pool) are read now if they are missing, so that they are
       in the pool by the time it does. */
    for (j = 0; j < RA_PARENTS && next_parent[j] != 0; j++) {
        uint64_t v;
        if (stop || pos >= window) {
            if (pool_opt_peek(bt->pool, next_parent[j], &v) == NULL)
                ahead[(*nahead)++] = next_parent[j];
        } else {
            stop = !ra_next_parent(bt, ra, next_parent[j], window, ahead, nahead, &pos);
        }
    }
    ra->ahead = pos > ra->ahead ? pos : ra->ahead;
    /* Still short (a next parent not in the pool yet, or the last
       leaves): try again an eighth of a window on, not at each leaf. */
    ra->wait = 4 * ra->ahead < 3 * window ? window / 8 : 0;
}

/* The fix flag for a child of page: inner nodes (a parent above level 1)
   are hot for the pool's LRU (P6e), so that a scan streaming leaves
   through the old sublist does not evict the nodes every lookup needs. */
static int inner_hint(const void *page)
{
    return node_level(page) >= 2 ? POOL_FIX_HOT : 0;
}

static int descend(struct btree *bt, const void *key, size_t klen, struct frame **fp,
                   unsigned char *hi, size_t *hilen, struct btree_ra *ra,
                   uint32_t *leaf_no)
{
    struct frame *f, *c;
    uint32_t no = bt->root, ahead[RA_MAX + RA_PARENTS], next_parent[RA_PARENTS] = { 0 };
    unsigned depth = 0, nahead = 0;
    int rc;

    if (ra != NULL && ra->window == 0)
        ra = NULL;
    rc = pool_fix(bt->pool, no, POOL_S, POOL_FIX_HOT, &f);

    if (hilen)
        *hilen = 0;
    while (rc == DKV_OK && (rc = check_node(frame_data(f), no)) == DKV_OK &&
           node_level(frame_data(f)) > 0) {
        const void *page = frame_data(f);
        unsigned slot, n = node_count(page);
        if (++depth > BTREE_HEIGHT_MAX) {
            rc = PAGER_CORRUPT(no, "B+tree deeper than possible");
            break;
        }
        no = node_child_for(page, key, klen, &slot);
        if (hi != NULL && slot < n) {
            size_t l;
            const unsigned char *k = node_key(page, slot, &l);
            if (l > BTREE_KEY_MAX) {
                rc = PAGER_CORRUPT(no, "B+tree separator longer than a key");
                break;
            }
            memcpy(hi, k, l);
            *hilen = l;
        }
        if (node_level(page) == 2 && ra != NULL) {
            unsigned j;
            for (j = 0; j < RA_PARENTS; j++)
                next_parent[j] = slot + j < n ? node_child(page, slot + j) : 0;
        }
        if (node_level(page) == 1 && ra != NULL)
            ra_advance(bt, ra, page, slot, next_parent, ahead, &nahead);
        if (node_level(page) == 1) {
            if (leaf_no != NULL) {
                *leaf_no = no;
                pool_unfix(bt->pool, f);
                return DKV_OK;
            }
        }
        rc = pool_fix(bt->pool, no, POOL_S, inner_hint(page), &c);
        pool_unfix(bt->pool, f);
        f = rc == DKV_OK ? c : NULL;
    }
    if (rc != DKV_OK) {
        if (f != NULL)
            pool_unfix(bt->pool, f);
        return rc;
    }
    if (leaf_no != NULL) {               /* the root is the leaf */
        *leaf_no = no;
        pool_unfix(bt->pool, f);
        return DKV_OK;
    }
    if (nahead > 0)
        pool_prefetch(bt->pool, ahead, nahead);
    *fp = f;
    return DKV_OK;
}

/* What an optimistic lookup says besides DKV_OK and DKV_NOTFOUND. */
enum { OPT_RETRY = 100,     /* a page changed under it: try again           */
       OPT_LATCHED = 101 }; /* take the latched way (not in the pool, an
                               overflow value, bytes that make no sense)    */
#define OPT_TRIES 4u

/* Tests widen the race windows of the optimistic lookup with this: called
   between reading a page and checking its version. */
void (*btree_opt_pause)(void);

static inline void opt_pause(void)
{
    if (__builtin_expect(btree_opt_pause != NULL, 0))
        btree_opt_pause();
}

/* A lookup with no latch and no pin (section 6, pager P11): each node is
   searched with bounds checks, its child found in the pool, and only then
   is the node's version checked, so the child number is one the node held
   while unchanged.  The leaf's value is copied into buf and kept only if
   the leaf did not change meanwhile (a retry, or the latched way, writes
   buf again).  Damage is left for the latched way to report. */
static int get_optimistic(struct btree *bt, const void *key, size_t klen,
                          void *buf, size_t cap, size_t *vlen)
{
    struct frame *f, *c;
    uint64_t v, cv;
    unsigned depth = 0;

    f = pool_opt_fix(bt->pool, bt->root, &v);
    if (f == NULL)
        return OPT_LATCHED;
    for (;;) {
        const unsigned char *page = frame_data(f);
        int t = page_type(page), found;
        unsigned slot, level = node_level(page);
        uint32_t child;

        if ((t != PAGE_TYPE_BTREE_LEAF && t != PAGE_TYPE_BTREE_INNER) ||
            (level == 0) != (t == PAGE_TYPE_BTREE_LEAF) ||
            node_search_checked(page, bt->ps, key, klen, &slot, &found) != 0)
            return pool_opt_valid(f, v) ? OPT_LATCHED : OPT_RETRY;
        if (level == 0) {
            const unsigned char *val;
            size_t len;
            unsigned flags;

            if (!found)
                return pool_opt_valid(f, v) ? DKV_NOTFOUND : OPT_RETRY;
            opt_pause();
            val = node_value_checked(page, bt->ps, slot, &len, &flags);
            if (val == NULL || (flags & NODE_VAL_OVERFLOW))
                return pool_opt_valid(f, v) ? OPT_LATCHED : OPT_RETRY;
            if (cap > 0 && len > 0)
                memcpy(buf, val, len < cap ? len : cap);
            opt_pause();
            if (!pool_opt_valid(f, v))
                return OPT_RETRY;
            *vlen = len;
            return DKV_OK;
        }
        if (++depth > BTREE_HEIGHT_MAX)
            return OPT_LATCHED;
        slot += found != 0;             /* node_child_for's choice */
        if (slot == 0)
            child = node_leftmost(page);
        else if (node_child_checked(page, bt->ps, slot - 1, &child) != 0)
            return pool_opt_valid(f, v) ? OPT_LATCHED : OPT_RETRY;
        opt_pause();
        c = pool_opt_fix(bt->pool, child, &cv);
        if (!pool_opt_valid(f, v))
            return OPT_RETRY;
        if (c == NULL)
            return OPT_LATCHED;
        f = c;
        v = cv;
    }
}

int btree_get(struct btree *bt, const void *key, size_t klen, void *buf,
              size_t cap, size_t *vlen)
{
    struct frame *f;
    unsigned i, tries;
    int found, rc;

    if (!key_ok(key, klen) || vlen == NULL || (cap > 0 && buf == NULL))
        return DKV_ERR_INVALID;
    for (tries = 0; tries < OPT_TRIES; tries++) {
        rc = get_optimistic(bt, key, klen, buf, cap, vlen);
        if (rc == DKV_OK || rc == DKV_NOTFOUND)
            return rc;
        if (rc == OPT_LATCHED)
            break;
    }
    rc = descend(bt, key, klen, &f, NULL, NULL, NULL, NULL);
    if (rc != DKV_OK)
        return rc;
    i = node_search(frame_data(f), key, klen, &found);
    if (found)
        rc = btree_leaf_value(bt, frame_data(f), i, buf, cap, vlen);
    pool_unfix(bt->pool, f);
    return rc != DKV_OK ? rc : found ? DKV_OK : DKV_NOTFOUND;
}

int btree_leaf_for(struct btree *bt, const void *key, size_t klen, uint32_t *leaf_no)
{
    if (!key_ok(key, klen))
        return DKV_ERR_INVALID;
    return descend(bt, key, klen, NULL, NULL, NULL, NULL, leaf_no);
}

/* Keys leave a scan in strict order and inside the leaf's bounds: a
   damaged leaf whose checksum holds is reported, never returned out of
   order (nor scanned forever).  One comparison a key: neighbours ascend,
   the first is not below the target and the last is below the bound.  A
   leaf unchanged since node_check passed it at read time (read_checked)
   is known to ascend: only its bounds are compared. */
static int leaf_keys_ordered(const void *page, unsigned from, const unsigned char *lo,
                             size_t lolen, const unsigned char *hi, size_t hilen,
                             int read_checked)
{
    unsigned i, n = node_count(page);
    size_t kl, pl;
    const unsigned char *k, *pk;

    if (from >= n)
        return 1;
    k = node_key(page, from, &kl);
    if (lolen > 0 && node_key_cmp(k, kl, lo, lolen) < 0)
        return 0;
    if (read_checked) {
        if (n - 1 > from)
            k = node_key(page, n - 1, &kl);
        return hilen == 0 || node_key_cmp(k, kl, hi, hilen) < 0;
    }
    pk = from > 0 ? node_key(page, from - 1, &pl) : NULL;
    if (pk != NULL && node_key_cmp(pk, pl, k, kl) >= 0)
        return 0;
    for (i = from + 1; i < n; i++) {
        pk = k;
        pl = kl;
        k = node_key(page, i, &kl);
        if (node_key_cmp(pk, pl, k, kl) >= 0)
            return 0;
    }
    return hilen == 0 || node_key_cmp(k, kl, hi, hilen) < 0;
}

int btree_scan_leaves(struct btree *bt, const void *key, size_t klen, int after,
                      struct btree_ra *ra, btree_leaf_fn fn, void *arg)
{
    unsigned char *target = malloc(2 * BTREE_KEY_MAX), *hi = target + BTREE_KEY_MAX;
    size_t tlen = 0, hilen;
    int rc = target ? DKV_OK : DKV_ERR_NOMEM;

    if (rc == DKV_OK && key != NULL) {
        if (klen > BTREE_KEY_MAX)
            rc = DKV_ERR_INVALID;
        else
            memcpy(target, key, tlen = klen);
    }
    while (rc == DKV_OK) {
        struct frame *f;
        const void *page;
        unsigned from = 0;
        int found = 0;

        rc = descend(bt, target, tlen, &f, hi, &hilen, ra, NULL);
        if (rc != DKV_OK)
            break;
        page = frame_data(f);
        if (tlen > 0) {
            size_t kl = 0;
            const unsigned char *k0 = node_count(page) > 0 ? node_key(page, 0, &kl) : NULL;
            /* From the previous leaf's bound, the first key is above the
               target: no search. */
            if (k0 != NULL && node_key_cmp(k0, kl, target, tlen) > 0)
                from = 0;
            else
                from = node_search(page, target, tlen, &found) + (after && found);
        }
        if (!leaf_keys_ordered(page, from, target, tlen, hi, hilen,
                               pool_unchanged_since_read(bt->pool, f)))
            rc = PAGER_CORRUPT(frame_page_no(f), "B+tree keys out of order");
        else
            rc = fn(arg, page, from, hi, hilen);
        pool_unfix(bt->pool, f);
        if (rc != DKV_OK || hilen == 0)
            break;
        /* The leaf is done: the next keys lie at or above its bound (which
           lies above the target, or the tree is damaged: no endless loop). */
        if (tlen > 0 && node_key_cmp(hi, hilen, target, tlen) <= 0) {
            rc = PAGER_CORRUPT(bt->root, "B+tree separators out of order");
            break;
        }
        memmove(target, hi, hilen);
        tlen = hilen;
        after = 0;
    }
    free(target);
    return rc < 0 ? rc : DKV_OK;
}

/* ---- writes: the leaf alone ---------------------------------------------------------------- */

enum { WRITE_PUT, WRITE_DELETE };

/* One put or delete on its way in: the cell, and for a value that goes to
   overflow pages, where it stands. */
struct wop {
    int                  op;
    struct cell          c;
    const unsigned char *val;        /* the whole value                    */
    size_t               vlen;
    int                  ovf_due;    /* its pages are yet to be written    */
    unsigned char        ref[NODE_OVERFLOW_REF];
};

static void set_ref(struct wop *o, uint32_t first)
{
    store_le32(o->ref, first);
    store_le64(o->ref + 4, o->vlen);
    o->c.val = o->ref;
    o->c.vlen = sizeof(o->ref);
    o->c.flags = NODE_VAL_OVERFLOW;
}

/* Writes the value's pages in m now, if they are due (after the tree's
   pages are latched: page 0 always comes last). */
static int materialize(struct btree *bt, struct pool_mtr *m, struct wop *o)
{
    size_t off = 0;
    uint32_t first = 0, last = 0;
    int rc;

    if (!o->ovf_due)
        return DKV_OK;
    rc = ovf_write(bt, m, o->val, o->vlen, &off, ~0u, &first, &last);
    if (rc == DKV_OK) {
        o->ovf_due = 0;
        set_ref(o, first);
    }
    return rc;
}

static size_t node_used(const struct btree *bt, const void *page)
{
    return bt->ps - NODE_HEADER_SIZE - node_free(page, bt->ps);
}

/* A node below a quarter full is merged with a sibling (rebalance). */
static int underfull(const struct btree *bt, size_t used)
{
    return used < (bt->ps - NODE_HEADER_SIZE) / 4;
}

/* Fixes key's leaf exclusive in m, the inner nodes shared on the way and
   released (latch coupling).  DKV_ERR_BUSY when the root, found to be the
   leaf, grew before it was latched exclusive (the caller takes the long
   way). */
static int leaf_exclusive(struct btree *bt, struct pool_mtr *m, const void *key,
                          size_t klen, struct frame **fp)
{
    struct frame *f, *c;
    uint32_t no = bt->root;
    unsigned depth = 0;
    int rc = pool_fix(bt->pool, no, POOL_S, POOL_FIX_HOT, &f);

    if (rc == DKV_OK && (rc = check_node(frame_data(f), no)) == DKV_OK &&
        node_level(frame_data(f)) == 0) {
        /* The root is the leaf: take it exclusive (it may have grown
           meanwhile: then it is no leaf, and the caller goes the long way). */
        pool_unfix(bt->pool, f);
        rc = pool_mtr_fix(m, no, POOL_X, 0, fp);
        if (rc == DKV_OK && node_level(frame_data(*fp)) != 0)
            rc = DKV_ERR_BUSY;
        return rc;
    }
    while (rc == DKV_OK) {
        unsigned level = node_level(frame_data(f));
        if (++depth > BTREE_HEIGHT_MAX) {
            rc = PAGER_CORRUPT(no, "B+tree deeper than possible");
            break;
        }
        no = node_child_for(frame_data(f), key, klen, NULL);
        if (level == 1 && no == frame_page_no(f)) {
            /* its own child (damage): latching it would wait for ourselves */
            rc = PAGER_CORRUPT(no, "B+tree node is its own child");
            break;
        }
        if (level == 1) {
            rc = pool_mtr_fix(m, no, POOL_X, 0, fp);
            if (rc == DKV_OK)
                rc = check_node(frame_data(*fp), no);
            if (rc == DKV_OK && node_level(frame_data(*fp)) != 0)
                rc = PAGER_CORRUPT(no, "B+tree levels do not descend by one");
            pool_unfix(bt->pool, f);
            return rc;
        }
        rc = pool_fix(bt->pool, no, POOL_S, inner_hint(frame_data(f)), &c);
        pool_unfix(bt->pool, f);
        f = NULL;
        if (rc == DKV_OK) {
            f = c;
            rc = check_node(frame_data(f), no);
        }
    }
    if (f != NULL)
        pool_unfix(bt->pool, f);
    return rc;
}

/* ---- writes: splits and merges, holding the path ------------------------------------------ */

struct path_node {
    struct frame *f;
    unsigned      slot;          /* position of the child below (0: leftmost) */
};

struct wr {
    struct btree     *bt;
    struct pool_mtr  *m;
    struct path_node  path[BTREE_HEIGHT_MAX + 2];
    unsigned          depth;     /* entries in path; the leaf is the last  */
};

static size_t cell_size(int leaf, const struct cell *c)
{
    return leaf ? node_leaf_cell_size(c->klen, c->vlen) : node_inner_cell_size(c->klen);
}

/* The root is full: its cells move to a new node C, one level down, and
   the root becomes C's parent with C as its only child (so the root page
   never moves).  C takes the root's place in the path below it. */
static int grow_root(struct wr *w)
{
    struct frame *root = w->path[0].f, *c;
    void *rp = frame_data(root);
    unsigned level = node_level(rp), i, n = node_count(rp);
    uint32_t ps = w->bt->ps;
    int rc;

    if (w->depth >= BTREE_HEIGHT_MAX)
        return DKV_ERR_NOSPACE;
    rc = pool_mtr_alloc(w->m, node_page_type(level), &c);
    if (rc == DKV_OK)
        rc = op_init(w->m, c, ps, level, node_leftmost(rp), 0);
    for (i = 0; i < n && rc == DKV_OK; i++) {
        struct cell cl;
        cell_of(rp, i, &cl);
        rc = op_insert(w->m, c, ps, i, &cl);
    }
    if (rc == DKV_OK)
        rc = op_truncate(w->m, root, 0);
    if (rc == DKV_OK)
        rc = op_init(w->m, root, ps, level + 1, frame_page_no(c), 0);
    if (rc != DKV_OK)
        return rc;
    memmove(&w->path[2], &w->path[1], (w->depth - 1) * sizeof(w->path[0]));
    w->path[1].f = c;
    w->path[1].slot = w->path[0].slot;
    w->path[0].slot = 0;                 /* C is the leftmost child */
    w->depth++;
    return DKV_OK;
}

static int insert_at(struct wr *w, unsigned i, unsigned slot, const struct cell *c);

/* Splits node path[i] (full) while inserting c at slot: plans the halves
   with c counted in, moves the right half to a new node, puts c where it
   belongs and the separator into the parent.  A leaf's separator is cut
   to the shortest prefix of the right half's first key that is still above
   the left half's last key (suffix truncation: shorter keys in the inner
   nodes, so more children per node and fewer levels). */
/* 1 when every node above path[i] leads to its last child: path[i] is
   the last node of its level. */
static int on_right_edge(const struct wr *w, unsigned i)
{
    unsigned k;

    for (k = 0; k < i; k++)
        if (w->path[k].slot != node_count(frame_data(w->path[k].f)))
            return 0;
    return 1;
}

static int split_insert(struct wr *w, unsigned i, unsigned slot, const struct cell *c)
{
    struct frame *f = w->path[i].f, *r;
    void *page = frame_data(f);
    uint32_t ps = w->bt->ps;
    unsigned level = node_level(page), n = node_count(page), j, k, cut;
    int leaf = level == 0, rc;
    size_t total = 0, acc = 0, *size = malloc((n + 1) * sizeof(*size));
    unsigned char *sep = malloc(BTREE_KEY_MAX);
    struct cell sc, mid;
    size_t seplen = 0;

    if (size == NULL || sep == NULL) {
        free(size);
        free(sep);
        return DKV_ERR_NOMEM;
    }
    /* The virtual node: the n cells with c at slot. */
    for (k = 0; k <= n; k++) {
        struct cell x;
        if (k == slot)
            x = *c;
        else
            cell_of(page, k < slot ? k : k - 1, &x);
        size[k] = cell_size(leaf, &x);
        total += size[k];
    }
    for (j = 0; j < n; j++) {
        acc += size[j];
        if (2 * acc >= total)
            break;
    }
    if (!leaf && j == 0)
        j = 1;                          /* the middle cell goes up: left keeps one */
    j = j < n ? j : n - 1;
    /* An append - the new cell goes last, in the last node of its level -
       keeps this node full and starts the new one with the cell alone
       (SQLite's quick balance): keys loaded in order then fill their
       nodes, not half of each. */
    if (slot == n && n >= 2 && on_right_edge(w, i))
        j = n - 1;
    free(size);

    rc = pool_mtr_alloc(w->m, node_page_type(level), &r);
    if (rc != DKV_OK)
        goto out;

    if (leaf) {
        rc = op_init(w->m, r, ps, 0, 0, node_right(page));
        /* Left: virtual [0, j]; right: (j, n]. */
        cut = slot <= j ? j : j + 1;            /* existing cells kept left */
        for (k = cut; k < n && rc == DKV_OK; k++) {
            struct cell x;
            cell_of(page, k, &x);
            rc = op_insert(w->m, r, ps, k - cut, &x);
        }
        if (rc == DKV_OK)
            rc = op_truncate(w->m, f, cut);
        if (rc == DKV_OK)
            rc = op_set_right(w->m, f, frame_page_no(r));
        if (rc == DKV_OK)
            rc = slot <= j ? op_insert(w->m, f, ps, slot, c)
                           : op_insert(w->m, r, ps, slot - cut, c);
        if (rc == DKV_OK) {
            size_t llen, rlen, common = 0;
            const unsigned char *lk = node_key(page, node_count(page) - 1, &llen);
            const unsigned char *rk = node_key(frame_data(r), 0, &rlen);
            while (common < llen && common < rlen && lk[common] == rk[common])
                common++;
            seplen = common < rlen ? common + 1 : rlen;
            memcpy(sep, rk, seplen);
        }
    } else {
        /* Virtual cell j goes up; left keeps [0, j), right (j, n]. */
        unsigned mid_ex;                        /* existing index of the middle */
        uint32_t leftmost;
        if (j == slot) {
            mid = *c;
            mid_ex = slot;                      /* right gets existing [slot, n) */
            cut = slot;
        } else {
            mid_ex = j < slot ? j : j - 1;
            cell_of(page, mid_ex, &mid);
            cut = mid_ex;
        }
        seplen = mid.klen;
        memcpy(sep, mid.key, seplen);
        leftmost = mid.child;
        {   /* the right node: leftmost = the middle's child */
            unsigned from = j == slot ? slot : mid_ex + 1;
            rc = op_init(w->m, r, ps, level, leftmost, 0);
            for (k = from; k < n && rc == DKV_OK; k++) {
                struct cell x;
                cell_of(page, k, &x);
                rc = op_insert(w->m, r, ps, k - from, &x);
            }
            if (rc == DKV_OK)
                rc = op_truncate(w->m, f, cut);
            if (rc == DKV_OK && j != slot)
                rc = j > slot ? op_insert(w->m, f, ps, slot, c)
                              : op_insert(w->m, r, ps, slot - from, c);
        }
    }
    if (rc == DKV_OK) {
        sc.key = sep;
        sc.klen = seplen;
        sc.val = NULL;
        sc.vlen = 0;
        sc.child = frame_page_no(r);
        sc.flags = 0;
        rc = insert_at(w, i - 1, w->path[i - 1].slot, &sc);
    }
out:
    free(sep);
    return rc;
}

/* Inserts c at slot of path[i], splitting as needed up to the root. */
static int insert_at(struct wr *w, unsigned i, unsigned slot, const struct cell *c)
{
    void *page = frame_data(w->path[i].f);
    int leaf = node_level(page) == 0;

    if (node_free(page, w->bt->ps) >= cell_size(leaf, c))
        return op_insert(w->m, w->path[i].f, w->bt->ps, slot, c);
    if (i == 0) {
        int rc = grow_root(w);
        if (rc != DKV_OK)
            return rc;
        i = 1;
    }
    return split_insert(w, i, slot, c);
}

/* The child at position pos of an inner node (0: the leftmost). */
static uint32_t child_at(const void *page, unsigned pos)
{
    return pos == 0 ? node_leftmost(page) : node_child(page, pos - 1);
}

/* The root is an inner node without separators: its only child's cells
   move up into it and the child is freed (the root page never moves), as
   often as that shortens the tree. */
static int collapse_root(struct wr *w)
{
    struct frame *root = w->path[0].f, *c;
    uint32_t ps = w->bt->ps;
    int rc = DKV_OK;

    while (rc == DKV_OK && node_level(frame_data(root)) > 0 &&
           node_count(frame_data(root)) == 0) {
        uint32_t no = node_leftmost(frame_data(root));
        const void *cp;
        unsigned i, n;
        rc = pool_mtr_fix(w->m, no, POOL_X, 0, &c);
        if (rc == DKV_OK)
            rc = check_node(frame_data(c), no);
        if (rc != DKV_OK)
            break;
        cp = frame_data(c);
        n = node_count(cp);
        if (node_level(cp) + 1 != node_level(frame_data(root)))
            return PAGER_CORRUPT(no, "B+tree levels do not descend by one");
        rc = op_init(w->m, root, ps, node_level(cp), node_leftmost(cp), 0);
        for (i = 0; i < n && rc == DKV_OK; i++) {
            struct cell x;
            cell_of(cp, i, &x);
            rc = op_insert(w->m, root, ps, i, &x);
        }
        if (rc == DKV_OK)
            rc = pool_mtr_free(w->m, no);
    }
    return rc;
}

/* After a removal from path[i]: while a node is below a quarter full and
   it fits with a sibling of the same parent into one node (three quarters
   full at most, so the next insert does not split it again; or whole, when
   the node is empty), the right one of the two moves into the left one and
   is freed, and its separator leaves the parent, which is looked at next.
   Latching a left sibling after the node is safe: every path to it passes
   the parent, which this MTR holds exclusive, and no reader moves from
   leaf to leaf (a scan re-descends from the root for each leaf). */
static int rebalance(struct wr *w, unsigned i)
{
    uint32_t ps = w->bt->ps;
    size_t cap = ps - NODE_HEADER_SIZE;

    for (; i > 0; i--) {
        struct frame *nf = w->path[i].f, *pf = w->path[i - 1].f, *of, *lf, *rf;
        void *parent = frame_data(pf), *lp, *rp;
        unsigned pos = w->path[i - 1].slot, n = node_count(parent), sep, k, j, rn;
        size_t used = node_used(w->bt, frame_data(nf)), total, sklen;
        const unsigned char *skey;
        uint32_t other;
        int leaf, rc;

        if (!underfull(w->bt, used) || n == 0)
            return DKV_OK;
        other = pos < n ? node_child(parent, pos) : child_at(parent, pos - 1);
        if (other == frame_page_no(nf))   /* two slots name one child: damage */
            return PAGER_CORRUPT(other, "B+tree node is its own sibling");
        rc = pool_mtr_fix(w->m, other, POOL_X, 0, &of);
        if (rc == DKV_OK)
            rc = check_node(frame_data(of), other);
        if (rc == DKV_OK && node_level(frame_data(of)) != node_level(frame_data(nf)))
            rc = PAGER_CORRUPT(other, "B+tree siblings on different levels");
        if (rc != DKV_OK)
            return rc;
        lf = pos < n ? nf : of;
        rf = pos < n ? of : nf;
        sep = pos < n ? pos : pos - 1;
        lp = frame_data(lf);
        rp = frame_data(rf);
        leaf = node_level(lp) == 0;
        skey = node_key(parent, sep, &sklen);
        total = node_used(w->bt, lp) + node_used(w->bt, rp) +
                (leaf ? 0 : node_inner_cell_size(sklen));
        if (total > cap || (total > cap / 4 * 3 && used > 0))
            return DKV_OK;
        k = node_count(lp);
        if (!leaf) {                /* the separator comes down over R's leftmost */
            struct cell sc = { .key = skey, .klen = sklen, .child = node_leftmost(rp) };
            rc = op_insert(w->m, lf, ps, k++, &sc);
        }
        rn = node_count(rp);
        for (j = 0; j < rn && rc == DKV_OK; j++) {
            struct cell x;
            cell_of(rp, j, &x);
            rc = op_insert(w->m, lf, ps, k++, &x);
        }
        if (rc == DKV_OK && leaf)
            rc = op_set_right(w->m, lf, node_right(rp));
        if (rc == DKV_OK)
            rc = op_remove(w->m, pf, sep);
        if (rc == DKV_OK)
            rc = pool_mtr_free(w->m, frame_page_no(rf));
        if (rc != DKV_OK)
            return rc;
    }
    return collapse_root(w);
}

/* The long way: the whole path exclusive, splits or merges as needed. */
static int write_pessimistic(struct btree *bt, struct pool_mtr *m, struct wop *o)
{
    struct wr w = { .bt = bt, .m = m };
    const struct cell *c = &o->c;
    uint32_t no = bt->root;
    struct frame *leaf;
    int rc, found;
    unsigned at;

    for (;;) {
        struct frame *f;
        void *page;
        if (w.depth > BTREE_HEIGHT_MAX)
            return PAGER_CORRUPT(no, "B+tree deeper than possible");
        rc = pool_mtr_fix(m, no, POOL_X, 0, &f);
        if (rc == DKV_OK)
            rc = check_node(frame_data(f), no);
        if (rc != DKV_OK)
            return rc;
        page = frame_data(f);
        if (w.depth > 0 && node_level(page) + 1 !=
                           node_level(frame_data(w.path[w.depth - 1].f)))
            return PAGER_CORRUPT(no, "B+tree levels do not descend by one");
        w.path[w.depth].f = f;
        w.path[w.depth].slot = 0;
        w.depth++;
        if (node_level(page) == 0)
            break;
        no = node_child_for(page, c->key, c->klen, &w.path[w.depth - 1].slot);
    }
    leaf = w.path[w.depth - 1].f;
    at = node_search(frame_data(leaf), c->key, c->klen, &found);
    if (o->op == WRITE_DELETE) {
        if (!found)
            return DKV_NOTFOUND;
        rc = ovf_retire(bt, m, frame_data(leaf), at);
        if (rc == DKV_OK)
            rc = op_remove(m, leaf, at);
        return rc == DKV_OK ? rebalance(&w, w.depth - 1) : rc;
    }
    if (found) {
        rc = ovf_retire(bt, m, frame_data(leaf), at);
        if (rc == DKV_OK)
            rc = op_remove(m, leaf, at);
        if (rc != DKV_OK)
            return rc;
    }
    rc = materialize(bt, m, o);
    return rc == DKV_OK ? insert_at(&w, w.depth - 1, at, c) : rc;
}

/* The short way: only the leaf exclusive.  *long_way when it needs more
   (a split, a merge, or a root that grew under it); nothing is changed
   then. */
static int write_leaf(struct btree *bt, struct pool_mtr *m, struct wop *o, int *long_way)
{
    const struct cell *c = &o->c;
    struct frame *f;
    void *page;
    unsigned at;
    size_t old = 0;
    int found, rc = leaf_exclusive(bt, m, c->key, c->klen, &f);

    *long_way = 0;
    if (rc == DKV_ERR_BUSY) {
        *long_way = 1;
        return DKV_OK;
    }
    if (rc != DKV_OK)
        return rc;
    page = frame_data(f);
    at = node_search(page, c->key, c->klen, &found);
    if (found) {
        size_t vlen;
        unsigned flags;
        size_t klen;
        node_key(page, at, &klen);
        node_value(page, at, &vlen, &flags);
        old = node_leaf_cell_size(klen, vlen);
    }
    if (o->op == WRITE_DELETE) {
        if (!found)
            return DKV_NOTFOUND;
        if (frame_page_no(f) != bt->root && underfull(bt, node_used(bt, page) - old)) {
            *long_way = 1;
            return DKV_OK;
        }
        rc = ovf_retire(bt, m, page, at);
        return rc == DKV_OK ? op_remove(m, f, at) : rc;
    }
    if (node_free(page, bt->ps) + old < node_leaf_cell_size(c->klen, c->vlen)) {
        *long_way = 1;
        return DKV_OK;
    }
    if (found) {
        rc = ovf_retire(bt, m, page, at);
        if (rc == DKV_OK)
            rc = op_remove(m, f, at);
        if (rc != DKV_OK)
            return rc;
    }
    rc = materialize(bt, m, o);
    return rc == DKV_OK ? op_insert(m, f, bt->ps, at, c) : rc;
}

/* Starts an MTR of unit u.  Only a unit's first MTR waits for log room: a
   later one must not wait for a checkpoint that its own unfinished unit
   holds back (its pages cannot be written, W4). */
static int unit_mtr_start(struct btree *bt, struct btree_unit *u, struct pool_mtr *m)
{
    if (u->mtrs++ == 0)
        return store_mtr_start(bt->s, m);
    pool_mtr_start(m, bt->pool);
    return DKV_OK;
}

/* Commits m as part of u: flags WAL_UNIT_END (and WAL_SYNC) end the unit.
   A unit that fails after some of its MTRs reached the log could never
   end - a later unit's end would complete it half done - so the store
   fails for good, as for a failed commit (E4); reopening recovers. */
static int unit_commit(struct btree *bt, struct btree_unit *u, struct pool_mtr *m,
                       int rc, int flags)
{
    if (rc == DKV_OK)
        rc = store_commit(bt->s, m, flags);
    else
        store_mtr_cancel(bt->s, m, rc);       /* NOTFOUND changed nothing */
    pool_mtr_free_buffers(m);
    if (rc == DKV_OK && !(flags & WAL_UNIT_END))
        u->committed++;
    if (rc < 0 && u->committed > 0)
        wal_fail(store_wal(bt->s), rc);
    if ((flags & WAL_UNIT_END) || rc < 0)
        u->mtrs = u->committed = 0;
    return rc;
}

static int write_one(struct btree *bt, struct btree_unit *u, struct wop *o)
{
    struct btree_unit own = { 0 };
    int flags = u == NULL ? WAL_UNIT_END | WAL_SYNC : 0;
    struct pool_mtr m;
    int rc = DKV_OK, long_way = 0;

    if (u == NULL)
        u = &own;
    if (o->ovf_due && btree_value_pages(bt, o->c.klen, o->vlen) > OVF_MTR_PAGES) {
        /* Many pages: written in MTRs of their own before the tree's, all
           one unit (the caller holds the log for multi-MTR units, E3). */
        size_t off = 0;
        uint32_t first = 0, last = 0;
        while (rc == DKV_OK && off < o->vlen) {
            rc = unit_mtr_start(bt, u, &m);
            if (rc == DKV_OK)
                rc = ovf_write(bt, &m, o->val, o->vlen, &off, OVF_MTR_PAGES, &first, &last);
            rc = unit_commit(bt, u, &m, rc, 0);
        }
        if (rc != DKV_OK)
            return rc;
        o->ovf_due = 0;
        set_ref(o, first);
    }
    rc = unit_mtr_start(bt, u, &m);
    if (rc == DKV_OK)
        rc = write_leaf(bt, &m, o, &long_way);
    if (rc == DKV_OK && long_way) {
        pool_mtr_release(&m);                   /* nothing changed yet */
        pool_mtr_free_buffers(&m);
        pool_mtr_start(&m, bt->pool);           /* the log room is checked */
        rc = write_pessimistic(bt, &m, o);
    }
    return unit_commit(bt, u, &m, rc, flags);
}

int btree_put(struct btree *bt, struct btree_unit *u, const void *key, size_t klen,
              const void *val, size_t vlen)
{
    struct wop o = { .op = WRITE_PUT, .c = { .key = key, .klen = klen, .val = val,
                                             .vlen = vlen },
                     .val = val, .vlen = vlen };

    if (!key_ok(key, klen) || (vlen > 0 && val == NULL) || vlen > DKV_VALUE_MAX)
        return DKV_ERR_INVALID;
    if (vlen > btree_max_value(bt, klen)) {
        o.ovf_due = 1;
        set_ref(&o, 0);            /* the size the cell will have */
    }
    return write_one(bt, u, &o);
}

int btree_delete(struct btree *bt, struct btree_unit *u, const void *key, size_t klen)
{
    struct wop o = { .op = WRITE_DELETE, .c = { .key = key, .klen = klen } };

    if (!key_ok(key, klen))
        return DKV_ERR_INVALID;
    return write_one(bt, u, &o);
}

int btree_unit_end(struct btree *bt, struct btree_unit *u)
{
    struct pool_mtr m;
    int rc = unit_mtr_start(bt, u, &m);

    return unit_commit(bt, u, &m, rc, WAL_UNIT_END | WAL_SYNC);
}

/* ---- checking ------------------------------------------------------------------------------------ */

struct walk {
    struct btree *bt;
    uint64_t      keys;
    uint32_t      prev_leaf;         /* the leaf before, in key order         */
    int           leaf_level_seen;
};

/* Checks the subtree at no: its keys lie in [lo, hi) (NULL: unbounded). */
static int walk(struct walk *w, uint32_t no, int level, const unsigned char *lo,
                size_t lolen, const unsigned char *hi, size_t hilen, unsigned depth)
{
    struct frame *f;
    const void *page;
    unsigned n, i;
    int rc;

    if (depth > BTREE_HEIGHT_MAX)
        return PAGER_CORRUPT(no, "B+tree deeper than possible");
    rc = pool_fix(w->bt->pool, no, POOL_S, 0, &f);
    if (rc != DKV_OK)
        return rc;
    page = frame_data(f);
    rc = check_node(page, no);
    if (rc == DKV_OK)
        rc = node_check(page, w->bt->ps, no);
    if (rc == DKV_OK && level >= 0 && (int)node_level(page) != level)
        rc = PAGER_CORRUPT(no, "B+tree levels do not descend by one");
    n = node_count(page);
    if (rc == DKV_OK && n > 0) {
        size_t klen;
        const unsigned char *k = node_key(page, 0, &klen);
        if (lo != NULL && node_key_cmp(k, klen, lo, lolen) < 0)
            rc = PAGER_CORRUPT(no, "B+tree key below its separator");
        k = node_key(page, n - 1, &klen);
        if (rc == DKV_OK && hi != NULL && node_key_cmp(k, klen, hi, hilen) >= 0)
            rc = PAGER_CORRUPT(no, "B+tree key at or above the next separator");
    }
    if (rc == DKV_OK && node_level(page) == 0) {
        if (w->prev_leaf != 0) {
            struct frame *pf;
            rc = pool_fix(w->bt->pool, w->prev_leaf, POOL_S, 0, &pf);
            if (rc == DKV_OK) {
                if (node_right(frame_data(pf)) != no)
                    rc = PAGER_CORRUPT(w->prev_leaf, "B+tree leaf chain broken");
                pool_unfix(w->bt->pool, pf);
            }
        }
        w->prev_leaf = no;
        w->keys += n;
    }
    for (i = 0; rc == DKV_OK && node_level(page) > 0 && i <= n; i++) {
        size_t a = 0, b = 0;
        const unsigned char *ka = i == 0 ? lo : node_key(page, i - 1, &a);
        const unsigned char *kb = i == n ? hi : node_key(page, i, &b);
        uint32_t child = i == 0 ? node_leftmost(page) : node_child(page, i - 1);
        rc = walk(w, child, (int)node_level(page) - 1, ka, i == 0 ? lolen : a, kb,
                  i == n ? hilen : b, depth + 1);
    }
    pool_unfix(w->bt->pool, f);
    return rc;
}

int btree_check(struct btree *bt, uint64_t *keys, unsigned *height)
{
    struct walk w = { .bt = bt };
    struct frame *f;
    int rc = pool_fix(bt->pool, bt->root, POOL_S, 0, &f);

    if (rc != DKV_OK)
        return rc;
    if (height)
        *height = node_level(frame_data(f)) + 1;
    pool_unfix(bt->pool, f);
    rc = walk(&w, bt->root, -1, NULL, 0, NULL, 0, 0);
    if (rc == DKV_OK && w.prev_leaf != 0) {
        rc = pool_fix(bt->pool, w.prev_leaf, POOL_S, 0, &f);
        if (rc == DKV_OK) {
            if (node_right(frame_data(f)) != 0)
                rc = PAGER_CORRUPT(w.prev_leaf, "B+tree last leaf has a right sibling");
            pool_unfix(bt->pool, f);
        }
    }
    if (keys)
        *keys = w.keys;
    return rc;
}
