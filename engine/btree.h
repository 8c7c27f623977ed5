/*
 * btree.h - the B+tree over the page store (engine/README.md, section 5).
 *
 * One tree per store, its root page fixed for the tree's life (its number
 * in the file header's meta slot BTREE_META_ROOT).  Concurrency by latch
 * coupling over the pool's page latches, always top-down: a lookup holds
 * at most a node and its child, shared; a write descends shared and takes
 * only its leaf exclusive, and only when the leaf must split or merge does it start
 * again holding the whole path exclusive.  Every change is a logged node
 * operation inside one MTR per put or delete.
 */
#ifndef DKV_ENGINE_BTREE_H
#define DKV_ENGINE_BTREE_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"

#define BTREE_META_ROOT  0u         /* file header meta slot: the root page */
#define BTREE_META_PURGE 1u         /* the first overflow chain to be freed */

/* An overflow page's body (PAGE_TYPE_OVERFLOW), for the file checker
   (check.c); btree.c defines the same values and owns the format. */
#define OVF_OFF_NEXT  PAGE_HEADER_SIZE          /* u32 next page of the value, 0: last */
#define OVF_OFF_LEN   (PAGE_HEADER_SIZE + 4)    /* u32 value bytes in this page       */
#define OVF_OFF_CHAIN (PAGE_HEADER_SIZE + 8)    /* u32 (first page only) the next
                                                   chain on the purge list            */
#define OVF_OFF_DATA  (PAGE_HEADER_SIZE + 12)

/* Redo record types of the tree (engine-defined: > REDO_PAGER_MAX). */
enum btree_redo {
    BT_REDO_INIT = 64,      /* u16 page type, u8 level, u32 leftmost, u32 right */
    BT_REDO_INSERT,         /* u16 slot, then a leaf or inner cell as node.h   */
    BT_REDO_REMOVE,         /* u16 slot                                       */
    BT_REDO_TRUNCATE,       /* u16 from: remove the slots [from, count)       */
    BT_REDO_SET_RIGHT       /* u32 right sibling                              */
};

struct btree;

/* The store's apply function for the tree's records (store_config.apply,
   with apply_arg NULL). */
int  btree_redo(void *arg, struct pool *pool, uint64_t end_lsn, int type,
                uint32_t page_no, const void *payload, uint32_t len);

/* The pool's check of every page read from the disk (store_config.
   page_check, arg NULL): a node must pass node_check and hold keys of at
   most DKV_KEY_MAX bytes, so no damaged node whose checksum holds reaches
   a lookup.  0 or DKV_ERR_CORRUPT. */
int  btree_page_check(void *arg, const void *page, uint32_t page_size,
                      uint32_t page_no);

/* Opens the tree of store s, creating an empty one (a root leaf) in a
   fresh store.  DKV_ERR_CORRUPT when the recorded root is not a node. */
int  btree_open(struct store *s, struct btree **btp);
void btree_close(struct btree *bt);

/* The longest value a leaf holds inline for a key of klen bytes. */
size_t btree_max_value(const struct btree *bt, size_t klen);

/* Copies min(cap, length) bytes of key's value into buf; *vlen = its
   length.  DKV_NOTFOUND when absent. */
/* Test hook: when set, optimistic lookups call it between reading a page
   and checking its version (tests/engine/test_db.c widens races with it). */
extern void (*btree_opt_pause)(void);

int  btree_get(struct btree *bt, const void *key, size_t klen, void *buf,
               size_t cap, size_t *vlen);
/* The overflow pages a value of vlen bytes takes (0: it stays in its leaf). */
uint64_t btree_value_pages(const struct btree *bt, size_t klen, size_t vlen);

/* A commit unit of several writes (a batch): its MTRs reach the log
   together, the last one marked as the unit's end (btree_unit_end).  The
   caller lets no other write into the log meanwhile (E3).  Zero it to
   start. */
struct btree_unit {
    unsigned mtrs;              /* MTRs started in this unit              */
    unsigned committed;         /* of them, appended to the log           */
};

/* Inserts or replaces key's value.  u NULL: the write is a unit of its
   own, durable on return in DKV_COMMIT_SYNC mode; a value of more than
   8 overflow pages takes several MTRs then, so the caller must keep other
   writes out of the log as for a unit.  DKV_ERR_INVALID for an empty or
   over-long key or a value over DKV_VALUE_MAX.  A failure after a unit's
   first MTRs reached the log fails the store for good (E4). */
int  btree_put(struct btree *bt, struct btree_unit *u, const void *key,
               size_t klen, const void *val, size_t vlen);
/* Removes key; DKV_NOTFOUND when absent. */
int  btree_delete(struct btree *bt, struct btree_unit *u, const void *key,
                  size_t klen);
/* Ends unit u (durable on return in DKV_COMMIT_SYNC mode). */
int  btree_unit_end(struct btree *bt, struct btree_unit *u);

/* Frees the overflow chains of values deleted or replaced (the purge
   list), one MTR of at most 8 pages at a time, each its own unit.  Run
   after writes when btree_purge_pending, outside any unit. */
int  btree_purge(struct btree *bt);
int  btree_purge_pending(const struct btree *bt);

/* The leaf page that holds key, found through the inner nodes without
   fixing the leaf (a hint for prefetching: it may change at once). */
int  btree_leaf_for(struct btree *bt, const void *key, size_t klen,
                    uint32_t *leaf_no);

/* Calls fn with each leaf that holds keys >= key (> key when after; key
   NULL: from the first), in order, until fn returns non-zero (negative:
   an error, returned) or the leaves end.  fn gets the leaf S-latched,
   from = its first slot to take, and hi = the leaf's upper bound (hilen 0:
   the last leaf); the keys [from, count) were checked to rise and to lie
   within the bounds.  Each leaf is left before the next is found from the
   root by the leaf's bound, so a scan holds one leaf at a time and never
   waits on a writer for long.  ra (or NULL): the scan's read-ahead, kept
   by the caller from one call to the next: the `window` leaves after the
   current one are kept asked for, in stretches of at least a quarter of it
   (window 0: none; at most 1024). */
struct btree_ra {
    unsigned window;
    unsigned ahead;                /* leaves asked for past the current one */
    unsigned wait;                 /* leaves to go before asking again      */
};
typedef int (*btree_leaf_fn)(void *arg, const void *page, unsigned from,
                             const unsigned char *hi, size_t hilen);
int  btree_scan_leaves(struct btree *bt, const void *key, size_t klen, int after,
                       struct btree_ra *ra, btree_leaf_fn fn, void *arg);
/* The value of slot i of a leaf that fn holds, overflow pages included:
   up to cap bytes into buf, *vlen its length (cap 0: the length only). */
int  btree_leaf_value(struct btree *bt, const void *page, unsigned i, void *buf,
                      size_t cap, size_t *vlen);

/* Walks the whole tree: every node passes node_check, levels descend by
   one, separators bound their subtrees, leaves are chained left to right
   in key order.  *keys: the number of keys.  DKV_ERR_CORRUPT naming the
   page (pager_last_corruption). */
int  btree_check(struct btree *bt, uint64_t *keys, unsigned *height);

#endif /* DKV_ENGINE_BTREE_H */
