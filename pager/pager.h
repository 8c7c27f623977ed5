/*
 * pager.h - the pager's interface to the layers above: checksums, page
 * format helpers, the data file (space) and, with the buffer pool, page
 * access.  The I/O layer has its own header, pager/io.h.  Design and rules
 * (P1.., IO1..): pager/README.md.
 */
#ifndef DKV_PAGER_PAGER_H
#define DKV_PAGER_PAGER_H

#include <stddef.h>
#include <stdint.h>

#include "page_format.h"

struct io_ctx;
struct io_file;
struct space;

/* ---- assertions -------------------------------------------------------- */

void pager_fail(const char *file, int line, const char *expr);

/* Debug builds only: a broken invariant of our own. */
#ifdef NDEBUG
#define dkv_assert(e) ((void)0)
#else
#define dkv_assert(e) ((e) ? (void)0 : pager_fail(__FILE__, __LINE__, #e))
#endif
/* Always on: cheap checks whose failure means memory is already wrong. */
#define dkv_verify(e) ((e) ? (void)0 : pager_fail(__FILE__, __LINE__, #e))

/* ---- corruption ---------------------------------------------------------- */

/* Records where corruption was found (this thread's last report) and
   returns DKV_ERR_CORRUPT: the one place to put a breakpoint. */
int pager_corrupt(const char *file, int line, uint64_t page_no,
                  const char *what);
#define PAGER_CORRUPT(page_no, what) \
    pager_corrupt(__FILE__, __LINE__, (page_no), (what))

struct pager_corruption {
    const char *file;          /* source file that found it                 */
    int         line;
    uint64_t    page_no;
    const char *what;          /* a static string                           */
};
/* The last corruption this thread reported (zeroed when there was none). */
struct pager_corruption pager_last_corruption(void);

/* ---- checksums ----------------------------------------------------------- */

/* CRC32C (Castagnoli) of buf, continuing from crc (0 to start).  Uses the
   SSE4.2 instruction when the CPU has it. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);
/* The table implementation and the hardware one, for tests. */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len);
int      crc32c_hw_available(void);

/* ---- pages --------------------------------------------------------------- */

/* Zeroes buf and writes a page header for page_no of the given type. */
void     page_init(void *page, uint32_t page_size, uint32_t page_no, int type);
int      page_type(const void *page);
uint32_t page_no(const void *page);
uint64_t page_lsn(const void *page);
void     page_set_lsn(void *page, uint64_t lsn);
/* Computes and stores the checksum; call just before the page is written. */
void     page_stamp(void *page, uint32_t page_size);
/* Checks a page just read as page_no: checksum, page number, reserved
   fields.  DKV_OK or DKV_ERR_CORRUPT.  An all-zero page (never written)
   is DKV_NOTFOUND, for the caller to judge. */
int      page_verify(const void *page, uint32_t page_size, uint32_t page_no);

/* ---- the data file ------------------------------------------------------- */

struct space_config {
    uint32_t page_size;        /* 0: the recorded size, or 16 KiB at create */
    int      create;           /* create the file when it does not exist    */
    int      direct;           /* ask for O_DIRECT                          */
    int      read_only;
};

/* The file header's fields, as the layers above see them. */
struct space_header {
    uint32_t page_size;
    uint64_t page_count;       /* pages [0, count) in use or free           */
    uint32_t free_head;        /* first page of the free list, 0 = empty    */
    uint32_t free_count;
    uint64_t meta[FHDR_META_SLOTS];
};

/* Opens or creates the data file at path, doing its header I/O through
   ctx.  DKV_ERR_INVALID for a page size that is not a power of two in
   4K..64K or differs from the recorded one; DKV_ERR_CORRUPT for a damaged
   header; DKV_ERR_INVALID when the file is missing and create is 0. */
int  space_open(const char *path, const struct space_config *cfg,
                struct io_ctx *ctx, struct space **spp);
int  space_close(struct space *sp);

uint32_t        space_page_size(const struct space *sp);
struct io_file *space_file(const struct space *sp);
uint64_t        space_page_offset(const struct space *sp, uint64_t page_no);
/* Pages the file has room for now (its preallocated size). */
uint64_t        space_capacity(const struct space *sp);
/* The in-memory copy of the header; the caller may change it and then
   write it with space_write_header. */
struct space_header *space_header(struct space *sp);

/* Makes the file hold at least page_count pages, growing it by whole
   extents (never one page at a time).  DKV_ERR_NOSPACE leaves it as it was. */
int  space_ensure(struct space *sp, uint64_t page_count);
/* Stamps and writes page 0 from the in-memory header (not synced). */
int  space_write_header(struct space *sp, struct io_ctx *ctx);
/* Reads and verifies one page, synchronously (cold paths and tests). */
int  space_read_page(struct space *sp, struct io_ctx *ctx, uint64_t page_no,
                     void *page);
/* Stamps and writes one page, synchronously (cold paths and tests). */
int  space_write_page(struct space *sp, struct io_ctx *ctx, uint64_t page_no,
                      void *page);

#endif /* DKV_PAGER_PAGER_H */
