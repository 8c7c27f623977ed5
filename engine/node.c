/*
 * node.c - B+tree nodes as slotted pages (layout: node.h).
 *
 * Cells are packed against the end of the page and the slot array grows
 * from the header; removing a cell leaves garbage that the next insert
 * that needs the room compacts away (InnoDB's page reorganize), so an
 * insert never fails while the node has the bytes.  Every function is a
 * pure function of the page, which makes a logged node operation
 * replayable by calling it again.
 */
#include "node.h"

#include "dkv.h"
#include "pager/page_format.h"
#include "pager/pager.h"

#include <stdlib.h>
#include <string.h>

#define NODE_LEVEL_MAX 32u

static unsigned char *bytes(void *page) { return page; }
static const unsigned char *cbytes(const void *page) { return page; }

/* ---- header ---------------------------------------------------------------------- */

uint32_t node_right(const void *page) { return load_le32(cbytes(page) + NODE_OFF_RIGHT); }
uint32_t node_leftmost(const void *page) { return load_le32(cbytes(page) + NODE_OFF_LEFTMOST); }

void node_set_right(void *page, uint32_t page_no)
{
    store_le32(bytes(page) + NODE_OFF_RIGHT, page_no);
}

void node_set_leftmost(void *page, uint32_t page_no)
{
    store_le32(bytes(page) + NODE_OFF_LEFTMOST, page_no);
}

static uint32_t cells_start(const void *page) { return load_le32(cbytes(page) + NODE_OFF_CELLS); }
static uint32_t garbage(const void *page) { return load_le32(cbytes(page) + NODE_OFF_GARBAGE); }

static void set_count(void *page, unsigned n) { store_le16(bytes(page) + NODE_OFF_COUNT, (uint16_t)n); }
static void set_cells_start(void *page, uint32_t v) { store_le32(bytes(page) + NODE_OFF_CELLS, v); }
static void set_garbage(void *page, uint32_t v) { store_le32(bytes(page) + NODE_OFF_GARBAGE, v); }


static void set_slot(void *page, unsigned i, uint32_t off)
{
    store_le16(bytes(page) + NODE_HEADER_SIZE + NODE_SLOT_SIZE * i, (uint16_t)off);
}

void node_init(void *page, uint32_t page_size, unsigned level)
{
    memset(bytes(page) + PAGE_HEADER_SIZE, 0, NODE_HEADER_SIZE - PAGE_HEADER_SIZE);
    bytes(page)[NODE_OFF_LEVEL] = (unsigned char)level;
    set_cells_start(page, page_size);
}

/* ---- cells ------------------------------------------------------------------------- */

/* Bytes of the cell at off (its slot not included). */
static uint32_t cell_bytes(const void *page, uint32_t off)
{
    const unsigned char *c = cbytes(page) + off;
    uint32_t klen = load_le16(c);

    if (node_level(page) > 0)
        return NODE_INNER_CELL_HDR + klen;
    return NODE_LEAF_CELL_HDR + klen + load_le32(c + 2);
}


size_t node_leaf_cell_size(size_t klen, size_t vlen)
{
    return NODE_SLOT_SIZE + NODE_LEAF_CELL_HDR + klen + vlen;
}

size_t node_inner_cell_size(size_t klen)
{
    return NODE_SLOT_SIZE + NODE_INNER_CELL_HDR + klen;
}

static size_t contiguous_free(const void *page)
{
    size_t used = NODE_HEADER_SIZE + (size_t)NODE_SLOT_SIZE * node_count(page);
    size_t cells = cells_start(page);

    return cells > used ? cells - used : 0;
}

size_t node_free(const void *page, uint32_t page_size)
{
    (void)page_size;
    return contiguous_free(page) + garbage(page);
}

/* ---- search ------------------------------------------------------------------------- */

unsigned node_search(const void *page, const void *key, size_t klen, int *found)
{
    unsigned lo = 0, hi = node_count(page);

    *found = 0;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        size_t mlen;
        const unsigned char *mk = node_key(page, mid, &mlen);
        int c = node_key_cmp(mk, mlen, key, klen);
        if (c < 0) {
            lo = mid + 1;
        } else {
            if (c == 0)
                *found = 1;
            hi = mid;
        }
    }
    return lo;
}

uint32_t node_child_for(const void *page, const void *key, size_t klen,
                        unsigned *slot)
{
    int found;
    unsigned i = node_search(page, key, klen, &found);

    i += found != 0;                    /* the first separator > key */
    if (slot)
        *slot = i;
    return i == 0 ? node_leftmost(page) : node_child(page, i - 1);
}

/* node_search for a page whose bytes may be changing under the reader
   (an optimistic lookup) or damaged: every offset and length is checked
   against the page size before it is followed.  -1 when one is out of
   range (the caller rereads the page the latched way); else 0 with the
   slot in *slot and *found set as node_search does. */
int node_search_checked(const void *page, uint32_t page_size, const void *key,
                        size_t klen, unsigned *slot, int *found)
{
    unsigned lo = 0, hi = node_count(page);
    unsigned hdr = node_level(page) > 0 ? NODE_INNER_CELL_HDR : NODE_LEAF_CELL_HDR;

    *found = 0;
    if (NODE_HEADER_SIZE + (size_t)hi * NODE_SLOT_SIZE > page_size)
        return -1;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        uint32_t off = node_slot_off(page, mid);
        size_t mlen;
        int c;

        if ((size_t)off + hdr > page_size)
            return -1;
        mlen = load_le16(cbytes(page) + off);
        if ((size_t)off + hdr + mlen > page_size)
            return -1;
        c = node_key_cmp(cbytes(page) + off + hdr, mlen, key, klen);
        if (c < 0) {
            lo = mid + 1;
        } else {
            if (c == 0)
                *found = 1;
            hi = mid;
        }
    }
    *slot = lo;
    return 0;
}

const unsigned char *node_value_checked(const void *page, uint32_t page_size,
                                        unsigned i, size_t *vlen, unsigned *flags)
{
    uint32_t off;
    size_t klen;

    if (i >= node_count(page) || NODE_HEADER_SIZE + ((size_t)i + 1) * NODE_SLOT_SIZE > page_size)
        return NULL;
    off = node_slot_off(page, i);
    if ((size_t)off + NODE_LEAF_CELL_HDR > page_size)
        return NULL;
    klen = load_le16(cbytes(page) + off);
    *vlen = load_le32(cbytes(page) + off + 2);
    *flags = cbytes(page)[off + 6];
    if ((size_t)off + NODE_LEAF_CELL_HDR + klen + *vlen > page_size)
        return NULL;
    return cbytes(page) + off + NODE_LEAF_CELL_HDR + klen;
}

int node_child_checked(const void *page, uint32_t page_size, unsigned i,
                       uint32_t *child)
{
    uint32_t off;

    if (i >= node_count(page) || NODE_HEADER_SIZE + ((size_t)i + 1) * NODE_SLOT_SIZE > page_size)
        return -1;
    off = node_slot_off(page, i);
    if ((size_t)off + NODE_INNER_CELL_HDR > page_size)
        return -1;
    *child = load_le32(cbytes(page) + off + 2);
    return 0;
}

/* ---- changing ------------------------------------------------------------------------ */

static int by_offset_desc(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a >> 16, y = *(const uint32_t *)b >> 16;

    return (x < y) - (x > y);
}

/* The slots in order of their cells' offsets, highest first, as
   (offset << 16 | slot) in out[count]. */
static void slots_by_offset(const void *page, uint32_t *out)
{
    unsigned i, n = node_count(page);

    for (i = 0; i < n; i++)
        out[i] = node_slot_off(page, i) << 16 | i;
    qsort(out, n, sizeof(*out), by_offset_desc);
}

void node_compact(void *page, uint32_t page_size)
{
    unsigned n = node_count(page), k;
    uint32_t *order, end = page_size;

    if (garbage(page) == 0)
        return;
    order = malloc((n ? n : 1) * sizeof(*order));
    dkv_verify(order != NULL);
    slots_by_offset(page, order);
    /* Highest cell first: each moves up (or stays), onto bytes already
       moved from or free, never onto a cell still to move. */
    for (k = 0; k < n; k++) {
        uint32_t off = order[k] >> 16, slot = order[k] & 0xffff;
        uint32_t size = cell_bytes(page, off);
        end -= size;
        memmove(bytes(page) + end, bytes(page) + off, size);
        set_slot(page, slot, end);
    }
    free(order);
    memset(bytes(page) + NODE_HEADER_SIZE + (size_t)NODE_SLOT_SIZE * n, 0,
           end - NODE_HEADER_SIZE - (size_t)NODE_SLOT_SIZE * n);
    set_cells_start(page, end);
    set_garbage(page, 0);
}

/* Makes room for a cell of size bytes (slot included) and returns its
   offset, with the slots from i on moved up one; 0 when it cannot fit. */
static uint32_t make_room(void *page, uint32_t page_size, unsigned i, size_t size)
{
    unsigned n = node_count(page);
    uint32_t off;

    if (contiguous_free(page) < size) {
        if (contiguous_free(page) + garbage(page) < size)
            return 0;
        node_compact(page, page_size);
    }
    off = cells_start(page) - (uint32_t)(size - NODE_SLOT_SIZE);
    memmove(bytes(page) + NODE_HEADER_SIZE + NODE_SLOT_SIZE * (i + 1),
            bytes(page) + NODE_HEADER_SIZE + NODE_SLOT_SIZE * i,
            (size_t)NODE_SLOT_SIZE * (n - i));
    set_slot(page, i, off);
    set_cells_start(page, off);
    set_count(page, n + 1);
    return off;
}

int node_insert_leaf(void *page, uint32_t page_size, unsigned i,
                     const void *key, size_t klen, const void *val,
                     size_t vlen, unsigned flags)
{
    size_t size = node_leaf_cell_size(klen, vlen);
    unsigned char *c;
    uint32_t off;

    if (node_level(page) != 0 || i > node_count(page) || klen == 0 ||
        klen > NODE_KEY_MAX || size > page_size - NODE_HEADER_SIZE ||
        ((flags & NODE_VAL_OVERFLOW) && vlen != NODE_OVERFLOW_REF))
        return DKV_ERR_INVALID;
    off = make_room(page, page_size, i, size);
    if (off == 0)
        return DKV_ERR_NOSPACE;
    c = bytes(page) + off;
    store_le16(c, (uint16_t)klen);
    store_le32(c + 2, (uint32_t)vlen);
    c[6] = (unsigned char)flags;
    memcpy(c + NODE_LEAF_CELL_HDR, key, klen);
    if (vlen > 0)
        memcpy(c + NODE_LEAF_CELL_HDR + klen, val, vlen);
    return DKV_OK;
}

int node_insert_inner(void *page, uint32_t page_size, unsigned i,
                      const void *key, size_t klen, uint32_t child)
{
    size_t size = node_inner_cell_size(klen);
    unsigned char *c;
    uint32_t off;

    if (node_level(page) == 0 || i > node_count(page) || klen == 0 ||
        klen > NODE_KEY_MAX)
        return DKV_ERR_INVALID;
    off = make_room(page, page_size, i, size);
    if (off == 0)
        return DKV_ERR_NOSPACE;
    c = bytes(page) + off;
    store_le16(c, (uint16_t)klen);
    store_le32(c + 2, child);
    memcpy(c + NODE_INNER_CELL_HDR, key, klen);
    return DKV_OK;
}

void node_remove(void *page, unsigned i)
{
    unsigned n = node_count(page);
    uint32_t off = node_slot_off(page, i), size;

    dkv_verify(i < n);
    size = cell_bytes(page, off);
    memmove(bytes(page) + NODE_HEADER_SIZE + NODE_SLOT_SIZE * i,
            bytes(page) + NODE_HEADER_SIZE + NODE_SLOT_SIZE * (i + 1),
            (size_t)NODE_SLOT_SIZE * (n - i - 1));
    store_le16(bytes(page) + NODE_HEADER_SIZE + NODE_SLOT_SIZE * (n - 1), 0);
    set_count(page, n - 1);
    if (off == cells_start(page)) {
        memset(bytes(page) + off, 0, size);      /* the lowest cell: free */
        set_cells_start(page, off + size);
    } else {
        set_garbage(page, garbage(page) + size);
    }
}

void node_move_tail(void *page, uint32_t page_size, unsigned from, void *right)
{
    unsigned n = node_count(page), i;
    int rc = DKV_OK;

    dkv_verify(from <= n && node_count(right) == 0 &&
               node_level(right) == node_level(page));
    for (i = from; i < n && rc == DKV_OK; i++) {
        size_t klen;
        const unsigned char *key = node_key(page, i, &klen);
        if (node_level(page) > 0) {
            rc = node_insert_inner(right, page_size, i - from, key, klen,
                                   node_child(page, i));
        } else {
            size_t vlen;
            unsigned flags;
            const unsigned char *val = node_value(page, i, &vlen, &flags);
            rc = node_insert_leaf(right, page_size, i - from, key, klen, val,
                                  vlen, flags);
        }
    }
    dkv_verify(rc == DKV_OK);
    while (node_count(page) > from)
        node_remove(page, node_count(page) - 1);
}

unsigned node_split_point(const void *page, uint32_t page_size)
{
    unsigned n = node_count(page), i;
    size_t total = 0, left = 0;

    (void)page_size;
    dkv_verify(n >= 2);
    for (i = 0; i < n; i++)
        total += NODE_SLOT_SIZE + cell_bytes(page, node_slot_off(page, i));
    for (i = 0; i < n - 1; i++) {
        left += NODE_SLOT_SIZE + cell_bytes(page, node_slot_off(page, i));
        if (2 * left >= total)
            break;
    }
    return i + 1 < n ? i + 1 : n - 1;
}

/* ---- checking ------------------------------------------------------------------------ */

int node_check(const void *page, uint32_t page_size, uint32_t page_no)
{
    unsigned n = node_count(page), level = node_level(page), k;
    uint32_t start = cells_start(page), used = 0, end, w;
    /* A bit per byte of the page where a cell starts: walked upwards it
       gives the cells in offset order without a sort. */
    uint64_t starts[PAGE_SIZE_MAX / 64];
    int type = page_type(page), rc = DKV_OK;

    if ((level == 0) != (type == PAGE_TYPE_BTREE_LEAF) ||
        (level > 0) != (type == PAGE_TYPE_BTREE_INNER) || level > NODE_LEVEL_MAX)
        return PAGER_CORRUPT(page_no, "node level and page type disagree");
    if (page_size > PAGE_SIZE_MAX || start > page_size ||
        NODE_HEADER_SIZE + (size_t)NODE_SLOT_SIZE * n > start ||
        garbage(page) > page_size - start)
        return PAGER_CORRUPT(page_no, "node header out of range");
    memset(starts, 0, page_size / 8);
    for (k = 0; k < n && rc == DKV_OK; k++) {
        uint32_t off = node_slot_off(page, k);
        const unsigned char *c = cbytes(page) + off;
        uint32_t hdr = level > 0 ? NODE_INNER_CELL_HDR : NODE_LEAF_CELL_HDR;
        if (off < start || off + hdr > page_size)
            rc = PAGER_CORRUPT(page_no, "node slot points outside the cells");
        else if (load_le16(c) == 0 || load_le16(c) > NODE_KEY_MAX ||
                 (level == 0 && load_le32(c + 2) > page_size) ||   /* no wrap below */
                 (uint64_t)off + cell_bytes(page, off) > page_size)
            rc = PAGER_CORRUPT(page_no, "node cell runs past the page");
        else if (level == 0 && (c[6] & ~NODE_VAL_OVERFLOW) != 0)
            rc = PAGER_CORRUPT(page_no, "node cell has unknown flags");
        else if (level == 0 && (c[6] & NODE_VAL_OVERFLOW) &&
                 load_le32(c + 2) != NODE_OVERFLOW_REF)
            rc = PAGER_CORRUPT(page_no, "node cell has a bad overflow reference");
        else if (starts[off / 64] & (1ull << (off % 64)))
            rc = PAGER_CORRUPT(page_no, "node cells overlap");
        else
            starts[off / 64] |= 1ull << (off % 64);
    }
    for (w = start / 64, end = start; rc == DKV_OK && w < page_size / 64; w++) {
        uint64_t bits = starts[w];
        while (bits != 0 && rc == DKV_OK) {
            uint32_t off = w * 64 + (uint32_t)__builtin_ctzll(bits);
            uint32_t size = cell_bytes(page, off);
            bits &= bits - 1;
            if (off < end)
                rc = PAGER_CORRUPT(page_no, "node cells overlap");
            end = off + size;
            used += size;
        }
    }
    if (rc == DKV_OK && used + garbage(page) != page_size - start)
        rc = PAGER_CORRUPT(page_no, "node garbage count is wrong");
    for (k = 1; k < n && rc == DKV_OK; k++) {
        size_t alen, blen;
        const unsigned char *a = node_key(page, k - 1, &alen);
        const unsigned char *b = node_key(page, k, &blen);
        if (node_key_cmp(a, alen, b, blen) >= 0)
            rc = PAGER_CORRUPT(page_no, "node keys out of order");
    }
    return rc;
}
