/*
 * page_format.h - the on-disk layout of data-file pages.  The only place
 * that knows these byte offsets; page.c and space.c encode and decode
 * through the helpers here.  Versioning policy: pager/README.md, section 6.
 *
 * Every page, 4 KiB .. 64 KiB, little-endian:
 *
 *   0        4       6       8          12         16               24
 *   +--------+-------+-------+----------+----------+----------------+------
 *   | crc32c | type  | flags | page_no  | reserved | lsn            | body
 *   +--------+-------+-------+----------+----------+----------------+------
 *
 *   crc32c    CRC32C of bytes [4, page_size): catches torn and misdirected
 *             writes (the page number is inside it) and bit rot
 *   type      PAGE_TYPE_*; never renumbered
 *   flags     0; reserved
 *   page_no   the page's own number
 *   reserved  0
 *   lsn       log sequence number of the last change to the page
 *
 * Page 0 is the file header; its body:
 *
 *   24..31   magic "DKVDATA\0"
 *   32..35   format version (PAGE_FORMAT_VERSION)
 *   36..39   page size in bytes
 *   40..47   page count: pages [0, count) are in use or on the free list
 *   48..51   first page of the free-page list, 0 = empty
 *   52..55   pages on the free-page list
 *   56..63   reserved, 0
 *   64..127  eight u64 slots owned by the layers above (the B+tree root...)
 *   128..    zero
 */
#ifndef DKV_PAGER_PAGE_FORMAT_H
#define DKV_PAGER_PAGE_FORMAT_H

#include <assert.h>
#include <stdint.h>
#include <string.h>

#define PAGE_OFF_CRC        0
#define PAGE_OFF_TYPE       4
#define PAGE_OFF_FLAGS      6
#define PAGE_OFF_PAGE_NO    8
#define PAGE_OFF_RESERVED   12
#define PAGE_OFF_LSN        16
#define PAGE_HEADER_SIZE    24

#define PAGE_SIZE_MIN       4096u
#define PAGE_SIZE_MAX       65536u
#define PAGE_SIZE_DEFAULT   16384u

enum page_type {                      /* on disk: never renumber */
    PAGE_TYPE_FREE        = 0,        /* never written, or freed */
    PAGE_TYPE_FILE_HEADER = 1,
    PAGE_TYPE_FREE_LIST   = 2,
    PAGE_TYPE_BTREE_LEAF  = 3,
    PAGE_TYPE_BTREE_INNER = 4,
    PAGE_TYPE_OVERFLOW    = 5,
    PAGE_TYPE_TEST        = 255       /* tests and benchmarks only */
};

#define FILE_MAGIC          "DKVDATA"          /* 8 bytes with its NUL */
#define PAGE_FORMAT_VERSION 1u

#define FHDR_OFF_MAGIC      24
#define FHDR_OFF_VERSION    32
#define FHDR_OFF_PAGE_SIZE  36
#define FHDR_OFF_PAGE_COUNT 40
#define FHDR_OFF_FREE_HEAD  48
#define FHDR_OFF_FREE_COUNT 52
#define FHDR_OFF_RESERVED   56
#define FHDR_OFF_META       64
#define FHDR_META_SLOTS     8
#define FHDR_END            128

static_assert(FHDR_OFF_META + 8 * FHDR_META_SLOTS == FHDR_END, "header layout");
static_assert(FHDR_END <= PAGE_SIZE_MIN, "header fits the smallest page");

/* A page on the free list (PAGE_TYPE_FREE_LIST); its body: */
#define FREE_OFF_NEXT       24         /* u32: next free page, 0 = last      */

/* ---- fixed-width little-endian load/store ---------------------------- */

static inline uint16_t load_le16(const void *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap16(v);
#endif
    return v;
}

static inline uint32_t load_le32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline uint64_t load_le64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline void store_le16(void *p, uint16_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap16(v);
#endif
    memcpy(p, &v, sizeof(v));
}

static inline void store_le32(void *p, uint32_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    memcpy(p, &v, sizeof(v));
}

static inline void store_le64(void *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, sizeof(v));
}

#endif /* DKV_PAGER_PAGE_FORMAT_H */
