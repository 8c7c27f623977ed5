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
};

/* A cell to insert: a leaf's (key, value) or an inner node's (key, child). */
struct cell {
    const unsigned char *key;
    size_t               klen;
    const unsigned char *val;
    size_t               vlen;
    uint32_t             child;
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

    rc = leaf ? node_insert_leaf(page, ps, slot, c->key, c->klen, c->val, c->vlen, 0)
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
        r[8] = 0;
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
    } else {
        c->val = node_value(page, i, &c->vlen, &flags);
        c->child = 0;
    }
}

/* ---- redo ------------------------------------------------------------------------------- */

/* A record that does not fit the page it names: the page is reported. */
#define BAD(page) PAGER_CORRUPT(page_no(page), "a B+tree log record does not fit its page")

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
            if (len != 2 + NODE_INNER_CELL_HDR + klen)
                return BAD(page);
            rc = node_insert_inner(page, ps, slot, r + 2 + NODE_INNER_CELL_HDR, klen,
                                   load_le32(r + 4));
            return rc == DKV_OK ? DKV_OK : BAD(page);
        }
        if (len < 2 + NODE_LEAF_CELL_HDR + klen)
            return BAD(page);
        vlen = load_le32(r + 4);
        if (len != 2 + NODE_LEAF_CELL_HDR + klen + vlen || r[8] != 0)
            return BAD(page);
        rc = node_insert_leaf(page, ps, slot, r + 2 + NODE_LEAF_CELL_HDR, klen,
                              r + 2 + NODE_LEAF_CELL_HDR + klen, vlen, 0);
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

/* ---- lookups --------------------------------------------------------------------------------- */

/* The leaf that holds key, fixed shared (latch coupling from the root). */
static int leaf_shared(struct btree *bt, const void *key, size_t klen, struct frame **fp)
{
    struct frame *f, *c;
    uint32_t no = bt->root;
    unsigned depth = 0;
    int rc = pool_fix(bt->pool, no, POOL_S, 0, &f);

    while (rc == DKV_OK && (rc = check_node(frame_data(f), no)) == DKV_OK &&
           node_level(frame_data(f)) > 0) {
        if (++depth > BTREE_HEIGHT_MAX) {
            rc = PAGER_CORRUPT(no, "B+tree deeper than possible");
            break;
        }
        no = node_child_for(frame_data(f), key, klen, NULL);
        rc = pool_fix(bt->pool, no, POOL_S, 0, &c);
        pool_unfix(bt->pool, f);
        f = rc == DKV_OK ? c : NULL;
    }
    if (rc != DKV_OK) {
        if (f != NULL)
            pool_unfix(bt->pool, f);
        return rc;
    }
    *fp = f;
    return DKV_OK;
}

int btree_get(struct btree *bt, const void *key, size_t klen, void *buf,
              size_t cap, size_t *vlen)
{
    struct frame *f;
    unsigned i, flags;
    int found, rc;

    if (!key_ok(key, klen) || vlen == NULL || (cap > 0 && buf == NULL))
        return DKV_ERR_INVALID;
    rc = leaf_shared(bt, key, klen, &f);
    if (rc != DKV_OK)
        return rc;
    i = node_search(frame_data(f), key, klen, &found);
    if (found) {
        size_t len;
        const unsigned char *v = node_value(frame_data(f), i, &len, &flags);
        *vlen = len;
        if (cap > 0)
            memcpy(buf, v, len < cap ? len : cap);
    }
    pool_unfix(bt->pool, f);
    return found ? DKV_OK : DKV_NOTFOUND;
}

/* ---- writes: the leaf alone ---------------------------------------------------------------- */

enum { WRITE_PUT, WRITE_DELETE };

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
    int rc = pool_fix(bt->pool, no, POOL_S, 0, &f);

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
        if (level == 1) {
            rc = pool_mtr_fix(m, no, POOL_X, 0, fp);
            if (rc == DKV_OK)
                rc = check_node(frame_data(*fp), no);
            if (rc == DKV_OK && node_level(frame_data(*fp)) != 0)
                rc = PAGER_CORRUPT(no, "B+tree levels do not descend by one");
            pool_unfix(bt->pool, f);
            return rc;
        }
        rc = pool_fix(bt->pool, no, POOL_S, 0, &c);
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

/* ---- writes: splits, holding the path ------------------------------------------------------- */

struct path_node {
    struct frame *f;
    unsigned      slot;          /* where the child below came from        */
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
   belongs and the separator into the parent. */
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
            const unsigned char *k0 = node_key(frame_data(r), 0, &seplen);
            memcpy(sep, k0, seplen);
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

/* The long way: the whole path exclusive, splits as needed. */
static int write_pessimistic(struct btree *bt, struct pool_mtr *m, int op,
                             const struct cell *c)
{
    struct wr w = { .bt = bt, .m = m };
    uint32_t no = bt->root;
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
    at = node_search(frame_data(w.path[w.depth - 1].f), c->key, c->klen, &found);
    if (op == WRITE_DELETE) {
        if (!found)
            return DKV_NOTFOUND;
        return op_remove(m, w.path[w.depth - 1].f, at);
    }
    if (found) {
        rc = op_remove(m, w.path[w.depth - 1].f, at);
        if (rc != DKV_OK)
            return rc;
    }
    return insert_at(&w, w.depth - 1, at, c);
}

/* The short way: only the leaf exclusive.  *long_way when it needs more
   (a split, or a root that grew under it); nothing is changed then. */
static int write_leaf(struct btree *bt, struct pool_mtr *m, int op,
                      const struct cell *c, int *long_way)
{
    struct frame *f;
    void *page;
    unsigned at;
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
    if (op == WRITE_DELETE)
        return found ? op_remove(m, f, at) : DKV_NOTFOUND;
    {
        size_t need = node_leaf_cell_size(c->klen, c->vlen), have = node_free(page, bt->ps);
        if (found) {
            size_t vlen;
            unsigned flags;
            node_value(page, at, &vlen, &flags);
            have += node_leaf_cell_size(c->klen, vlen);
        }
        if (have < need) {
            *long_way = 1;
            return DKV_OK;
        }
    }
    if (found && (rc = op_remove(m, f, at)) != DKV_OK)
        return rc;
    return op_insert(m, f, bt->ps, at, c);
}

static int write_one(struct btree *bt, int op, const struct cell *c)
{
    struct pool_mtr m;
    int rc, long_way = 0;

    rc = store_mtr_start(bt->s, &m);
    if (rc == DKV_OK)
        rc = write_leaf(bt, &m, op, c, &long_way);
    if (rc == DKV_OK && long_way) {
        pool_mtr_release(&m);                   /* nothing changed yet */
        pool_mtr_free_buffers(&m);
        rc = store_mtr_start(bt->s, &m);
        if (rc == DKV_OK)
            rc = write_pessimistic(bt, &m, op, c);
    }
    if (rc == DKV_OK)
        rc = store_commit(bt->s, &m, WAL_UNIT_END | WAL_SYNC);
    else
        store_mtr_cancel(bt->s, &m, rc);       /* NOTFOUND changed nothing */
    pool_mtr_free_buffers(&m);
    return rc;
}

int btree_put(struct btree *bt, const void *key, size_t klen, const void *val,
              size_t vlen)
{
    struct cell c = { .key = key, .klen = klen, .val = val, .vlen = vlen };

    if (!key_ok(key, klen) || (vlen > 0 && val == NULL))
        return DKV_ERR_INVALID;
    if (vlen > btree_max_value(bt, klen))
        return DKV_ERR_UNSUPPORTED;
    return write_one(bt, WRITE_PUT, &c);
}

int btree_delete(struct btree *bt, const void *key, size_t klen)
{
    struct cell c = { .key = key, .klen = klen };

    if (!key_ok(key, klen))
        return DKV_ERR_INVALID;
    return write_one(bt, WRITE_DELETE, &c);
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
