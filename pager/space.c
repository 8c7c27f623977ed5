/*
 * space.c - the data file: its header page (page 0), the mapping from page
 * number to offset, and growth in preallocated extents.
 *
 * Entry points:
 *   space_open/close         create or validate the file header
 *   space_ensure             grow by whole extents with fallocate (P8)
 *   space_write_header       encode and write page 0
 *   space_read/write_page    synchronous single-page I/O for cold paths
 *
 * The file grows by extents of a quarter of its size, between 1 MiB and
 * 64 MiB: writing past the end of an O_DIRECT file one page at a time
 * makes ext4 update its metadata on every write.
 */
#include "pager.h"

#include "dkv.h"
#include "io.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

#define SPACE_EXTENT_MIN (1ull << 20)
#define SPACE_EXTENT_MAX (64ull << 20)

struct space {
    struct io_file     *file;
    uint32_t            page_size;
    uint64_t            capacity;       /* pages the file has room for     */
    int                 read_only;
    int                 header_torn;    /* page 0 awaits recovery          */
    int                 created;        /* laid out by this open           */
    struct space_header hdr;
    unsigned char      *hdr_buf;        /* one aligned page for page 0      */
};

static int valid_page_size(uint32_t size)
{
    return size >= PAGE_SIZE_MIN && size <= PAGE_SIZE_MAX &&
           (size & (size - 1)) == 0;
}

uint32_t        space_page_size(const struct space *sp) { return sp->page_size; }
struct io_file *space_file(const struct space *sp)      { return sp->file; }
uint64_t        space_capacity(const struct space *sp)
{
    /* Read without page 0's latch too (pool_reserve's quick check). */
    return __atomic_load_n(&sp->capacity, __ATOMIC_ACQUIRE);
}
struct space_header *space_header(struct space *sp)     { return &sp->hdr; }

uint64_t space_page_offset(const struct space *sp, uint64_t page_no_)
{
    return page_no_ * sp->page_size;
}

/* One synchronous transfer of one aligned buffer. */
static int transfer(struct io_ctx *ctx, struct io_file *file, int op,
                    void *buf, size_t len, uint64_t off)
{
    struct io_req req = { .op = op, .file = file, .buf = buf, .len = len,
                          .off = off };
    struct io_req *reqs[1] = { &req };

    return io_run(ctx, reqs, 1);
}

static void encode_header(struct space *sp)
{
    space_header_encode(sp, sp->hdr_buf);
}

void space_header_encode(struct space *sp, void *page)
{
    page_init(page, sp->page_size, 0, PAGE_TYPE_FILE_HEADER);
    space_header_store_fields(sp, page);
}

void space_header_store_fields(struct space *sp, void *page)
{
    unsigned char *p = page;
    unsigned i;

    memcpy(p + FHDR_OFF_MAGIC, FILE_MAGIC, sizeof(FILE_MAGIC));
    store_le32(p + FHDR_OFF_VERSION, PAGE_FORMAT_VERSION);
    store_le32(p + FHDR_OFF_PAGE_SIZE, sp->page_size);
    store_le64(p + FHDR_OFF_PAGE_COUNT, sp->hdr.page_count);
    store_le32(p + FHDR_OFF_FREE_HEAD, sp->hdr.free_head);
    store_le32(p + FHDR_OFF_FREE_COUNT, sp->hdr.free_count);
    for (i = 0; i < FHDR_META_SLOTS; i++)
        store_le64(p + FHDR_OFF_META + 8 * i, sp->hdr.meta[i]);
}

/* Decodes a verified header page; DKV_ERR_CORRUPT when a field is bad. */
static int decode_header(struct space *sp)
{
    const unsigned char *p = sp->hdr_buf;
    unsigned i;

    if (page_type(p) != PAGE_TYPE_FILE_HEADER)
        return PAGER_CORRUPT(0, "file header has the wrong page type");
    if (load_le64(p + FHDR_OFF_RESERVED) != 0)
        return PAGER_CORRUPT(0, "file header reserved bytes not zero");
    for (i = FHDR_END; i < sp->page_size; i += 8)
        if (load_le64(p + i) != 0)
            return PAGER_CORRUPT(0, "file header tail not zero");
    return space_header_load_fields(sp, p);
}

int space_header_load_fields(struct space *sp, const void *page)
{
    const unsigned char *p = page;
    struct space_header h;
    unsigned i;

    memset(&h, 0, sizeof(h));
    h.page_size = sp->page_size;
    h.page_count = load_le64(p + FHDR_OFF_PAGE_COUNT);
    h.free_head = load_le32(p + FHDR_OFF_FREE_HEAD);
    h.free_count = load_le32(p + FHDR_OFF_FREE_COUNT);
    for (i = 0; i < FHDR_META_SLOTS; i++)
        h.meta[i] = load_le64(p + FHDR_OFF_META + 8 * i);
    if (h.page_count == 0 || h.page_count > UINT32_MAX)
        return PAGER_CORRUPT(0, "file header has an impossible page count");
    if (h.free_head >= h.page_count || h.free_count >= h.page_count)
        return PAGER_CORRUPT(0, "free list outside the file");
    if (h.page_count > sp->capacity && space_ensure(sp, h.page_count) != DKV_OK)
        return PAGER_CORRUPT(0, "file shorter than its page count");
    sp->hdr = h;
    sp->header_torn = 0;
    return DKV_OK;
}

int space_header_torn(const struct space *sp)
{
    return sp->header_torn;
}

int space_created(const struct space *sp)
{
    return sp->created;
}

/* Reads page 0 of an existing file: the page size first (it is in the
   first 4 KiB whatever the page size), then the whole page. */
static int load_header(struct space *sp, struct io_ctx *ctx, uint32_t want,
                       int allow_torn)
{
    uint32_t recorded, version;
    int rc;

    rc = transfer(ctx, sp->file, IO_READ, sp->hdr_buf, PAGE_SIZE_MIN, 0);
    if (rc != DKV_OK)
        return rc == DKV_ERR_IO ? PAGER_CORRUPT(0, "file header truncated") : rc;
    if (memcmp(sp->hdr_buf + FHDR_OFF_MAGIC, FILE_MAGIC, sizeof(FILE_MAGIC)))
        return PAGER_CORRUPT(0, "not a DirectKV data file (bad magic)");
    version = load_le32(sp->hdr_buf + FHDR_OFF_VERSION);
    if (version != PAGE_FORMAT_VERSION)
        return version > PAGE_FORMAT_VERSION ? DKV_ERR_UNSUPPORTED
                                             : PAGER_CORRUPT(0, "bad format version");
    recorded = load_le32(sp->hdr_buf + FHDR_OFF_PAGE_SIZE);
    if (!valid_page_size(recorded))
        return PAGER_CORRUPT(0, "file header has an invalid page size");
    if (want != 0 && want != recorded)
        return DKV_ERR_INVALID;
    sp->page_size = recorded;
    sp->capacity = (uint64_t)io_file_size(sp->file) / recorded;
    rc = transfer(ctx, sp->file, IO_READ, sp->hdr_buf, recorded, 0);
    if (rc != DKV_OK)
        return rc == DKV_ERR_IO ? PAGER_CORRUPT(0, "file header truncated") : rc;
    rc = page_verify(sp->hdr_buf, recorded, 0);
    if (rc == DKV_NOTFOUND)
        rc = PAGER_CORRUPT(0, "file header is empty");
    if (rc == DKV_ERR_CORRUPT && allow_torn) {
        /* Its first sector is sound (magic, page size): a torn write.
           Recovery restores it from its image in the log, or fails. */
        memset(&sp->hdr, 0, sizeof(sp->hdr));
        sp->hdr.page_size = recorded;
        sp->hdr.page_count = sp->capacity;
        sp->header_torn = 1;
        return DKV_OK;
    }
    return rc != DKV_OK ? rc : decode_header(sp);
}

/* Lays out a new file: one extent, a header with one page in use. */
static int create_header(struct space *sp, struct io_ctx *ctx, uint32_t want)
{
    int rc;

    sp->page_size = want ? want : PAGE_SIZE_DEFAULT;
    memset(&sp->hdr, 0, sizeof(sp->hdr));
    sp->hdr.page_size = sp->page_size;
    sp->hdr.page_count = 1;
    rc = space_ensure(sp, 1);
    if (rc == DKV_OK)
        rc = space_write_header(sp, ctx);
    if (rc == DKV_OK)
        rc = io_file_sync(sp->file);
    return rc;
}

static int open_file(const char *path, const struct space_config *cfg,
                     struct space *sp, int *fresh)
{
    struct stat st;
    int flags = 0;
    int rc;

    if (stat(path, &st) != 0) {
        if (errno != ENOENT)
            return io_errno_rc(errno);
        if (!cfg->create || cfg->read_only)
            return DKV_ERR_INVALID;
        flags |= IO_OPEN_CREATE;
        st.st_size = 0;
    }
    flags |= cfg->direct ? IO_OPEN_DIRECT : 0;
    flags |= cfg->read_only ? IO_OPEN_RDONLY : 0;
    rc = io_file_open(path, flags, &sp->file);
    /* An empty file is one whose creation never finished: lay it out. */
    *fresh = st.st_size == 0;
    if (rc == DKV_OK && *fresh && cfg->read_only)
        rc = PAGER_CORRUPT(0, "data file is empty");
    return rc;
}

/* Whether page 0's first sector was never written (zeros, or the file
   is shorter than it): a crash while the file was being created. */
static int header_never_written(struct space *sp, struct io_ctx *ctx)
{
    unsigned i;
    int rc = transfer(ctx, sp->file, IO_READ, sp->hdr_buf, PAGE_SIZE_MIN, 0);

    if (rc == DKV_ERR_IO && io_file_size(sp->file) < PAGE_SIZE_MIN)
        return 1;
    if (rc != DKV_OK)
        return 0;
    for (i = 0; i < PAGE_SIZE_MIN; i++)
        if (sp->hdr_buf[i] != 0)
            return 0;
    return 1;
}

int space_open(const char *path, const struct space_config *cfg,
               struct io_ctx *ctx, struct space **spp)
{
    struct space *sp;
    int fresh = 0;
    int rc;

    if (path == NULL || cfg == NULL || ctx == NULL || spp == NULL ||
        (cfg->page_size != 0 && !valid_page_size(cfg->page_size)))
        return DKV_ERR_INVALID;
    sp = calloc(1, sizeof(*sp));
    if (sp == NULL)
        return DKV_ERR_NOMEM;
    sp->read_only = cfg->read_only;
    sp->hdr_buf = io_buf_alloc(PAGE_SIZE_MAX, PAGE_SIZE_MIN);
    rc = sp->hdr_buf ? open_file(path, cfg, sp, &fresh) : DKV_ERR_NOMEM;
    if (rc == DKV_OK && !fresh && cfg->redo_unfinished && !cfg->read_only)
        fresh = header_never_written(sp, ctx);
    sp->created = fresh;
    if (rc == DKV_OK)
        rc = fresh ? create_header(sp, ctx, cfg->page_size)
                   : load_header(sp, ctx, cfg->page_size,
                                 cfg->allow_torn_header);
    if (rc != DKV_OK) {
        space_close(sp);
        return rc;
    }
    *spp = sp;
    return DKV_OK;
}

int space_close(struct space *sp)
{
    int rc;

    if (sp == NULL)
        return DKV_OK;
    rc = io_file_close(sp->file);
    io_buf_free(sp->hdr_buf, PAGE_SIZE_MAX);
    free(sp);
    return rc;
}

int space_ensure(struct space *sp, uint64_t page_count)
{
    uint64_t extent, target, cur_bytes, new_bytes;
    int rc;

    if (page_count <= sp->capacity)
        return DKV_OK;
    if (sp->read_only)
        return DKV_ERR_READONLY;
    cur_bytes = sp->capacity * sp->page_size;
    extent = cur_bytes / 4;
    extent = extent < SPACE_EXTENT_MIN ? SPACE_EXTENT_MIN : extent;
    extent = extent > SPACE_EXTENT_MAX ? SPACE_EXTENT_MAX : extent;
    target = page_count * sp->page_size;
    new_bytes = cur_bytes + extent;
    new_bytes = new_bytes > target ? new_bytes : target;
    new_bytes = (new_bytes + sp->page_size - 1) / sp->page_size * sp->page_size;
    rc = io_file_allocate(sp->file, cur_bytes, new_bytes - cur_bytes);
    if (rc == DKV_OK)
        __atomic_store_n(&sp->capacity, new_bytes / sp->page_size, __ATOMIC_RELEASE);
    return rc;
}

int space_write_header(struct space *sp, struct io_ctx *ctx)
{
    if (sp->read_only)
        return DKV_ERR_READONLY;
    encode_header(sp);
    page_stamp(sp->hdr_buf, sp->page_size);
    return transfer(ctx, sp->file, IO_WRITE, sp->hdr_buf, sp->page_size, 0);
}

int space_read_page(struct space *sp, struct io_ctx *ctx, uint64_t page_no_,
                    void *page)
{
    int rc;

    if (page_no_ >= sp->capacity)
        return DKV_ERR_INVALID;
    rc = transfer(ctx, sp->file, IO_READ, page, sp->page_size,
                  space_page_offset(sp, page_no_));
    if (rc != DKV_OK)
        return rc;
    return page_verify(page, sp->page_size, (uint32_t)page_no_);
}

int space_write_page(struct space *sp, struct io_ctx *ctx, uint64_t page_no_,
                     void *page)
{
    if (sp->read_only)
        return DKV_ERR_READONLY;
    if (page_no_ >= sp->capacity || page_no(page) != page_no_)
        return DKV_ERR_INVALID;
    page_stamp(page, sp->page_size);
    return transfer(ctx, sp->file, IO_WRITE, page, sp->page_size,
                    space_page_offset(sp, page_no_));
}
