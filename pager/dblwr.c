/*
 * dblwr.c - the doublewrite file: torn-page protection for the data file,
 * as InnoDB's doublewrite buffer (P10).
 *
 * The disk writes 4 KiB atomically at best, a page is up to 64 KiB: a
 * power cut during a page write can leave it half old, half new, and redo
 * (physiological: it changes a page that must be sound) cannot repair it.
 * So every batch the cleaner writes goes out twice: first, as it is staged
 * (one sequential write), into a free segment of this file, which is then
 * synced; only then to its places in the data file, which is synced before
 * the segment is used again.  A page torn in place therefore always has a
 * whole copy here; at open, before redo, dblwr_restore finds every page
 * whose checksum fails and that has a sound copy, and writes the copy back.
 * Copies stay in a segment after their batch is safe in place, so a copy
 * can be stale: it is used only when the damaged page's first sector (its
 * number and LSN; a torn write leaves it whole, old or new) says the page
 * is no newer than the copy.
 *
 * The file:
 *   0      4 KiB header: 0..3 crc32c of [4,4096) | 4..11 magic "DKVDBLWR" |
 *          12..15 format version | 16..19 page size | 20..23 segments |
 *          24..27 pages per segment | rest 0
 *   4096   segment 0: DBLWR_SEGMENT_PAGES pages, then segment 1, ...
 * Each copy is a whole stamped page (its checksum and page number are in
 * its own header), so a torn or stale copy is recognised by itself.
 *
 * Segments are taken by concurrent writers (cleaner threads, a flush of
 * everything, a foreground write) one each; a writer that finds none free
 * waits.
 */
#include "pool_int.h"

#include "dkv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DBLWR_HDR          4096u
#define DBLWR_VERSION      1u
#define DBLWR_MAGIC        "DKVDBLWR"

#define DH_OFF_CRC         0
#define DH_OFF_MAGIC       4
#define DH_OFF_VERSION     12
#define DH_OFF_PAGE_SIZE   16
#define DH_OFF_SEGMENTS    20
#define DH_OFF_SEG_PAGES   24

struct dblwr {
    struct io_file *file;
    uint32_t        page_size;
    pthread_mutex_t lock;
    pthread_cond_t  cv;
    unsigned        busy;              /* bit i: segment i is taken        */
    atomic_uint_least64_t pages, batches;
};

static uint64_t segment_off(const struct dblwr *dw, unsigned seg)
{
    return DBLWR_HDR + (uint64_t)seg * DBLWR_SEGMENT_PAGES * dw->page_size;
}

static uint64_t file_bytes(uint32_t page_size)
{
    return DBLWR_HDR + (uint64_t)DBLWR_SEGMENTS * DBLWR_SEGMENT_PAGES * page_size;
}

/* One synchronous transfer. */
static int transfer(struct io_ctx *ctx, struct io_file *file, int op, void *buf,
                    size_t len, uint64_t off)
{
    struct io_req req = { .op = op, .file = file, .buf = buf, .len = len, .off = off };
    struct io_req *reqs[1] = { &req };

    return io_run(ctx, reqs, 1);
}

static int write_header(struct dblwr *dw, struct io_ctx *ctx)
{
    unsigned char *h = io_buf_alloc(DBLWR_HDR, DBLWR_HDR);
    int rc;

    if (h == NULL)
        return DKV_ERR_NOMEM;
    memset(h, 0, DBLWR_HDR);
    memcpy(h + DH_OFF_MAGIC, DBLWR_MAGIC, 8);
    store_le32(h + DH_OFF_VERSION, DBLWR_VERSION);
    store_le32(h + DH_OFF_PAGE_SIZE, dw->page_size);
    store_le32(h + DH_OFF_SEGMENTS, DBLWR_SEGMENTS);
    store_le32(h + DH_OFF_SEG_PAGES, DBLWR_SEGMENT_PAGES);
    store_le32(h + DH_OFF_CRC, crc32c(0, h + 4, DBLWR_HDR - 4));
    rc = io_file_fill_zero(dw->file, 0, file_bytes(dw->page_size));
    if (rc == DKV_OK)
        rc = transfer(ctx, dw->file, IO_WRITE, h, DBLWR_HDR, 0);
    if (rc == DKV_OK)
        rc = io_file_sync(dw->file);
    io_buf_free(h, DBLWR_HDR);
    return rc;
}

/* check_header: the file's creation never finished (a crash between the
   zero fill and the header's sync): no copy can be in it. */
#define DBLWR_UNFINISHED 1

static int all_zero(const unsigned char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

static int check_header(struct dblwr *dw, struct io_ctx *ctx)
{
    unsigned char *h = io_buf_alloc(DBLWR_HDR, DBLWR_HDR);
    int rc;

    if (h == NULL)
        return DKV_ERR_NOMEM;
    rc = transfer(ctx, dw->file, IO_READ, h, DBLWR_HDR, 0);
    if (rc == DKV_ERR_IO && (uint64_t)io_file_size(dw->file) < DBLWR_HDR)
        rc = DBLWR_UNFINISHED;          /* cut short while being created */
    if (rc == DKV_OK && all_zero(h, DBLWR_HDR))
        rc = DBLWR_UNFINISHED;          /* zero-filled, header never written */
    if (rc == DKV_OK && memcmp(h + DH_OFF_MAGIC, DBLWR_MAGIC, 8) != 0)
        rc = PAGER_CORRUPT(0, "not a doublewrite file (bad magic)");
    if (rc == DKV_OK && load_le32(h + DH_OFF_CRC) != crc32c(0, h + 4, DBLWR_HDR - 4))
        rc = PAGER_CORRUPT(0, "doublewrite file header checksum mismatch");
    if (rc == DKV_OK && load_le32(h + DH_OFF_VERSION) != DBLWR_VERSION)
        rc = DKV_ERR_UNSUPPORTED;
    if (rc == DKV_OK && (load_le32(h + DH_OFF_PAGE_SIZE) != dw->page_size ||
                         load_le32(h + DH_OFF_SEGMENTS) != DBLWR_SEGMENTS ||
                         load_le32(h + DH_OFF_SEG_PAGES) != DBLWR_SEGMENT_PAGES))
        rc = PAGER_CORRUPT(0, "doublewrite file laid out for another page size");
    if (rc == DKV_OK && (uint64_t)io_file_size(dw->file) < file_bytes(dw->page_size))
        rc = DBLWR_UNFINISHED;          /* the zero fill was cut short */
    io_buf_free(h, DBLWR_HDR);
    return rc;
}

/* Makes a new file's directory entry durable: without it a power cut
   could lose the file, and every copy with it. */
static int sync_parent_dir(const char *path)
{
    char dir[4096];
    char *slash;
    int fd, rc = DKV_OK;

    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash != NULL)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return io_errno_rc(errno);
    if (fsync(fd) != 0)
        rc = io_errno_rc(errno);
    close(fd);
    return rc;
}

int dblwr_open(const char *path, uint32_t page_size, int direct, int reset,
               struct io_ctx *ctx, struct dblwr **dwp)
{
    struct dblwr *dw;
    int fresh, rc;

    *dwp = NULL;
    dw = calloc(1, sizeof(*dw));
    if (dw == NULL)
        return DKV_ERR_NOMEM;
    dw->page_size = page_size;
    pthread_mutex_init(&dw->lock, NULL);
    pthread_cond_init(&dw->cv, NULL);
    rc = io_file_open(path, direct ? IO_OPEN_DIRECT : 0, &dw->file);
    fresh = rc == DKV_ERR_INVALID;      /* missing: create it */
    if (fresh)
        rc = io_file_open(path, IO_OPEN_CREATE | (direct ? IO_OPEN_DIRECT : 0),
                          &dw->file);
    if (rc == DKV_OK && !fresh && !reset)
        rc = check_header(dw, ctx);
    if (rc == DBLWR_UNFINISHED || (rc == DKV_OK && (fresh || reset)))
        rc = write_header(dw, ctx);
    if (rc == DKV_OK && fresh)
        rc = sync_parent_dir(path);
    if (rc != DKV_OK) {
        dblwr_close(dw);
        return rc;
    }
    *dwp = dw;
    return DKV_OK;
}

void dblwr_close(struct dblwr *dw)
{
    if (dw == NULL)
        return;
    if (dw->file)
        io_file_close(dw->file);
    pthread_cond_destroy(&dw->cv);
    pthread_mutex_destroy(&dw->lock);
    free(dw);
}

void dblwr_stats(struct dblwr *dw, uint64_t *pages, uint64_t *batches)
{
    *pages = dw ? atomic_load(&dw->pages) : 0;
    *batches = dw ? atomic_load(&dw->batches) : 0;
}

/* ---- restoring torn pages at open ------------------------------------------------ */

/* The newest sound copy of each page in the segments: copies[i] is slot i,
   or -1 when the slot holds nothing usable or an older copy. */
static void pick_copies(const unsigned char *area, uint32_t ps, unsigned slots,
                        int *use)
{
    unsigned i, j;

    for (i = 0; i < slots; i++) {
        const unsigned char *p = area + (size_t)i * ps;
        use[i] = page_verify(p, ps, page_no(p)) == DKV_OK;
    }
    for (i = 0; i < slots; i++) {
        const unsigned char *p = area + (size_t)i * ps;
        for (j = 0; use[i] && j < slots; j++) {
            const unsigned char *q = area + (size_t)j * ps;
            if (j != i && use[j] && page_no(q) == page_no(p) &&
                (page_lsn(q) > page_lsn(p) || (page_lsn(q) == page_lsn(p) && j < i)))
                use[i] = 0;
        }
    }
}

int dblwr_restore(struct dblwr *dw, struct space *sp, struct io_ctx *ctx,
                  unsigned *restored)
{
    const uint32_t ps = dw->page_size;
    const unsigned slots = DBLWR_SEGMENTS * DBLWR_SEGMENT_PAGES;
    const size_t area_len = (size_t)slots * ps;
    unsigned char *area = io_buf_alloc(area_len, ps);
    unsigned char *page = io_buf_alloc(ps, ps);
    int *use = calloc(slots, sizeof(*use));
    unsigned i, n = 0;
    int rc;

    *restored = 0;
    if (area == NULL || page == NULL || use == NULL) {
        rc = DKV_ERR_NOMEM;
        goto out;
    }
    rc = transfer(ctx, dw->file, IO_READ, area, area_len, DBLWR_HDR);
    if (rc != DKV_OK)
        goto out;
    pick_copies(area, ps, slots, use);
    for (i = 0; i < slots && rc == DKV_OK; i++) {
        const unsigned char *copy = area + (size_t)i * ps;
        uint32_t no = page_no(copy);
        int state;

        if (!use[i] || no >= space_capacity(sp))
            continue;
        rc = transfer(ctx, space_file(sp), IO_READ, page, ps, space_page_offset(sp, no));
        if (rc != DKV_OK)
            break;
        state = page_verify(page, ps, no);
        if (state != DKV_ERR_CORRUPT)
            continue;                   /* sound (or never written): redo's */
        /* A torn write keeps the page's first sector old or new whole: its
           number is this page's (or 0, never written) and its LSN is at
           most the copy's.  Anything else is damage of another kind, which
           a stale copy must not hide: the page stays corrupt. */
        if ((page_no(page) != no && !(page_no(page) == 0 && page_lsn(page) == 0)) ||
            page_lsn(page) > page_lsn(copy))
            continue;
        memcpy(page, copy, ps);
        rc = transfer(ctx, space_file(sp), IO_WRITE, page, ps, space_page_offset(sp, no));
        if (rc == DKV_OK && no == 0 && space_header_torn(sp))
            rc = space_header_load_fields(sp, page);
        n++;
    }
    if (rc == DKV_OK && n > 0)
        rc = io_file_sync(space_file(sp));
    *restored = n;
out:
    free(use);
    io_buf_free(page, ps);
    io_buf_free(area, area_len);
    return rc;
}

/* ---- the cleaner's side ------------------------------------------------------------ */

unsigned dblwr_acquire(struct dblwr *dw)
{
    unsigned seg;

    pthread_mutex_lock(&dw->lock);
    while (dw->busy == (1u << DBLWR_SEGMENTS) - 1)
        pthread_cond_wait(&dw->cv, &dw->lock);
    for (seg = 0; dw->busy & (1u << seg); seg++)
        ;
    dw->busy |= 1u << seg;
    pthread_mutex_unlock(&dw->lock);
    return seg;
}

void dblwr_release(struct dblwr *dw, unsigned seg)
{
    pthread_mutex_lock(&dw->lock);
    dw->busy &= ~(1u << seg);
    pthread_cond_signal(&dw->cv);
    pthread_mutex_unlock(&dw->lock);
}

void dblwr_prepare(struct dblwr *dw, unsigned seg, void *pages, unsigned n,
                   struct io_req *req)
{
    dkv_verify(seg < DBLWR_SEGMENTS && n > 0 && n <= DBLWR_SEGMENT_PAGES);
    req->op = IO_WRITE;
    req->file = dw->file;
    req->buf = pages;
    req->len = (size_t)n * dw->page_size;
    req->off = segment_off(dw, seg);
}

int dblwr_sync(struct dblwr *dw, unsigned n)
{
    int rc = io_file_sync(dw->file);

    if (rc == DKV_OK) {
        atomic_fetch_add(&dw->pages, n);
        atomic_fetch_add(&dw->batches, 1);
    }
    return rc;
}
