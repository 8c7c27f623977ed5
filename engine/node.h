/*
 * node.h - one B+tree node in one page: a slotted page of sorted cells.
 *
 * Pure functions of the page bytes, deterministic, with no I/O and no
 * latches: the tree calls them on a latched frame, and recovery calls the
 * same functions to redo a logged node operation (insert at slot i, remove
 * slot i, ...), so a redo record names the operation, not the bytes moved.
 *
 * Layout (after the common page header, pager/page_format.h):
 *
 *   24  u16 slot count         26  u8 level (0: leaf)   27  u8 zero
 *   28  u32 cells start: the lowest cell offset (page size when empty)
 *   32  u32 garbage: bytes of removed cells not yet compacted away
 *   36  u32 right sibling page number (0: none)
 *   40  u32 leftmost child (inner nodes: keys below the first separator)
 *   44  u32 zero
 *   48  slot array: u16 cell offsets, in key order; grows up
 *   ...  free space ...
 *   cells, packed against the end of the page; grow down:
 *     leaf:  u16 key length | u32 value length | u8 flags | key | value
 *            (NODE_VAL_OVERFLOW: the value lies in overflow pages and the
 *            cell holds u32 first page | u64 total length instead)
 *     inner: u16 key length | u32 child | key   (child: keys >= key)
 *
 * Keys compare with memcmp, the shorter first on a tie (dkv-api.md).
 */
#ifndef DKV_ENGINE_NODE_H
#define DKV_ENGINE_NODE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pager/page_format.h"

#define NODE_OFF_COUNT      24
#define NODE_OFF_LEVEL      26
#define NODE_OFF_CELLS      28
#define NODE_OFF_GARBAGE    32
#define NODE_OFF_RIGHT      36
#define NODE_OFF_LEFTMOST   40
#define NODE_HEADER_SIZE    48
#define NODE_SLOT_SIZE      2u

#define NODE_LEAF_CELL_HDR  7u        /* klen 2, vlen 4, flags 1           */
#define NODE_INNER_CELL_HDR 6u        /* klen 2, child 4                   */
#define NODE_VAL_OVERFLOW   0x01u
#define NODE_OVERFLOW_REF   12u       /* u32 first page, u64 length        */

#define NODE_KEY_MAX        2048u     /* longest key a node accepts        */

/* Orders two keys: memcmp, then the shorter first.  Inline, eight bytes
   at a time: lookups and scans compare keys more than they do anything
   else, and most keys are short. */
static inline int node_key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    const unsigned char *x = a, *y = b;
    size_t n = alen < blen ? alen : blen, i = 0;

    for (; i + 8 <= n; i += 8) {
        uint64_t u, v;
        memcpy(&u, x + i, 8);
        memcpy(&v, y + i, 8);
        if (u != v) {
            u = __builtin_bswap64(u);       /* big-endian: memcmp's order */
            v = __builtin_bswap64(v);
            return u < v ? -1 : 1;
        }
    }
    for (; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return (alen > blen) - (alen < blen);
}

/* Lays out an empty node of level (0: leaf) in page (its common header is
   the caller's: page_init). */
void     node_init(void *page, uint32_t page_size, unsigned level);

static inline unsigned node_count(const void *page)
{
    return load_le16((const unsigned char *)page + NODE_OFF_COUNT);
}

static inline unsigned node_level(const void *page)
{
    return ((const unsigned char *)page)[NODE_OFF_LEVEL];
}

/* The cell offset in slot i (i < count). */
static inline uint32_t node_slot_off(const void *page, unsigned i)
{
    return load_le16((const unsigned char *)page + NODE_HEADER_SIZE + NODE_SLOT_SIZE * i);
}
uint32_t node_right(const void *page);
void     node_set_right(void *page, uint32_t page_no);
uint32_t node_leftmost(const void *page);
void     node_set_leftmost(void *page, uint32_t page_no);

/* The key of slot i (i < count); *klen its length. */
static inline const unsigned char *node_key(const void *page, unsigned i, size_t *klen)
{
    const unsigned char *c = (const unsigned char *)page + node_slot_off(page, i);

    *klen = load_le16(c);
    return c + (node_level(page) > 0 ? NODE_INNER_CELL_HDR : NODE_LEAF_CELL_HDR);
}
/* A leaf's value of slot i: bytes, length and flags (NODE_VAL_*). */
static inline const unsigned char *node_value(const void *page, unsigned i, size_t *vlen,
                                              unsigned *flags)
{
    const unsigned char *c = (const unsigned char *)page + node_slot_off(page, i);

    *vlen = load_le32(c + 2);
    *flags = c[6];
    return c + NODE_LEAF_CELL_HDR + load_le16(c);
}

/* An inner node's child of slot i (keys >= key i). */
static inline uint32_t node_child(const void *page, unsigned i)
{
    return load_le32((const unsigned char *)page + node_slot_off(page, i) + 2);
}
/* The child of an inner node that holds key: the leftmost child, or the
   child of the last separator <= key.  *slot: that separator's index + 1
   (0 for the leftmost). */
uint32_t node_child_for(const void *page, const void *key, size_t klen,
                        unsigned *slot);

/* The first slot whose key is >= key (count when none); *found: equal. */
unsigned node_search(const void *page, const void *key, size_t klen, int *found);
/* node_search over bytes that may be changing or damaged: every offset
   is checked against page_size first.  0, or -1 when one is out of range. */
int      node_search_checked(const void *page, uint32_t page_size, const void *key,
                             size_t klen, unsigned *slot, int *found);
/* node_value and node_child with the same checks: NULL or -1 when the
   slot or its cell lies outside the page. */
const unsigned char *node_value_checked(const void *page, uint32_t page_size,
                                        unsigned i, size_t *vlen, unsigned *flags);
int      node_child_checked(const void *page, uint32_t page_size, unsigned i,
                            uint32_t *child);

/* Bytes a cell takes in a node, its slot included. */
size_t   node_leaf_cell_size(size_t klen, size_t vlen);
size_t   node_inner_cell_size(size_t klen);
/* Bytes free for new cells, counting garbage (a compaction reclaims it). */
size_t   node_free(const void *page, uint32_t page_size);

/* Inserts a cell at slot i (0 <= i <= count), compacting first when the
   room is only in garbage.  DKV_ERR_NOSPACE (nothing changed) when it does
   not fit; DKV_ERR_INVALID for a bad slot or key length. */
int      node_insert_leaf(void *page, uint32_t page_size, unsigned i,
                          const void *key, size_t klen, const void *val,
                          size_t vlen, unsigned flags);
int      node_insert_inner(void *page, uint32_t page_size, unsigned i,
                           const void *key, size_t klen, uint32_t child);
/* Removes slot i; its bytes become garbage. */
void     node_remove(void *page, unsigned i);
/* Rewrites the cells packed against the end of the page, in slot order;
   garbage becomes free space.  Keys and order do not change. */
void     node_compact(void *page, uint32_t page_size);

/* Moves the slots [from, count) of page into right, an empty node of the
   same level, in order. */
void     node_move_tail(void *page, uint32_t page_size, unsigned from,
                        void *right);
/* Where to split a full node so both halves hold about the same bytes:
   the first slot that goes right (1 <= result < count, count >= 2). */
unsigned node_split_point(const void *page, uint32_t page_size);

/* Checks a node's structure: header fields in range, every cell inside
   the page and no two overlapping, keys strictly ascending.  0 or
   DKV_ERR_CORRUPT (the reason through pager_corrupt). */
int      node_check(const void *page, uint32_t page_size, uint32_t page_no);

#endif /* DKV_ENGINE_NODE_H */
