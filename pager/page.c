/*
 * page.c - the page header: initialising, stamping and verifying pages
 * (page_format.h has the layout), and the pager's two failure helpers,
 * pager_fail (a broken invariant) and pager_corrupt (bad bytes on disk).
 *
 * Rule P0 (pager/README.md): a page is stamped just before it is written
 * and verified just after it is read; nothing else reads raw page bytes
 * before page_verify accepted them.
 */
#include "pager.h"

#include "dkv.h"

#include <stdio.h>
#include <stdlib.h>

static _Thread_local struct pager_corruption last_corruption;

void pager_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "dkv: %s:%d: invariant failed: %s\n", file, line, expr);
    abort();
}

int pager_corrupt(const char *file, int line, uint64_t page_no,
                  const char *what)
{
    last_corruption.file = file;
    last_corruption.line = line;
    last_corruption.page_no = page_no;
    last_corruption.what = what;
    return DKV_ERR_CORRUPT;
}

struct pager_corruption pager_last_corruption(void)
{
    return last_corruption;
}

void page_init(void *page, uint32_t page_size, uint32_t page_no_, int type)
{
    unsigned char *p = page;

    memset(p, 0, page_size);
    store_le16(p + PAGE_OFF_TYPE, (uint16_t)type);
    store_le32(p + PAGE_OFF_PAGE_NO, page_no_);
}

int page_type(const void *page)
{
    return load_le16((const unsigned char *)page + PAGE_OFF_TYPE);
}

uint32_t page_no(const void *page)
{
    return load_le32((const unsigned char *)page + PAGE_OFF_PAGE_NO);
}

uint64_t page_lsn(const void *page)
{
    return load_le64((const unsigned char *)page + PAGE_OFF_LSN);
}

void page_set_lsn(void *page, uint64_t lsn)
{
    store_le64((unsigned char *)page + PAGE_OFF_LSN, lsn);
}

static uint32_t page_checksum(const void *page, uint32_t page_size)
{
    return crc32c(0, (const unsigned char *)page + PAGE_OFF_TYPE,
                  page_size - PAGE_OFF_TYPE);
}

void page_stamp(void *page, uint32_t page_size)
{
    dkv_assert(page_size >= PAGE_SIZE_MIN && page_size <= PAGE_SIZE_MAX);
    dkv_assert(load_le32((unsigned char *)page + PAGE_OFF_RESERVED) == 0);
    store_le32(page, page_checksum(page, page_size));
}

static int all_zero(const unsigned char *p, uint32_t size)
{
    uint32_t i;

    for (i = 0; i < size; i += 8)
        if (load_le64(p + i) != 0)
            return 0;
    return 1;
}

int page_verify(const void *page, uint32_t page_size, uint32_t page_no_)
{
    const unsigned char *p = page;

    if (load_le32(p + PAGE_OFF_CRC) != page_checksum(p, page_size)) {
        if (all_zero(p, page_size))
            return DKV_NOTFOUND;
        return PAGER_CORRUPT(page_no_, "page checksum mismatch");
    }
    if (load_le32(p + PAGE_OFF_PAGE_NO) != page_no_)
        return PAGER_CORRUPT(page_no_, "page holds another page number");
    if (load_le16(p + PAGE_OFF_FLAGS) != 0 ||
        load_le32(p + PAGE_OFF_RESERVED) != 0)
        return PAGER_CORRUPT(page_no_, "page header reserved bytes not zero");
    return DKV_OK;
}
