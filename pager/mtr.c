/*
 * mtr.c - the pager's side of mini-transactions: the pages an operation
 * holds, the redo records of its changes, full page images, and applying
 * records at recovery.  The log itself (framing, LSNs, sync) is wal/; the
 * layer above joins the two (engine/store.c).
 *
 * An MTR fixes pages, changes them only through pool_mtr_write (or alloc,
 * free, meta_set), and keeps every page fixed until it commits: the log
 * gets all records of the operation as one unit, and no other thread sees
 * a page half changed (P9).  A page changed for the first time since the
 * image threshold (its LSN <= wal's fpi_lsn) is logged whole instead of by
 * its records, so recovery never needs its possibly torn disk copy (W6).
 *
 * Entry points: pool_mtr_start/fix/write/alloc/free/meta_set/body/commit/
 * release, pool_redo_apply, and the unlogged wrappers pool_page_alloc,
 * pool_page_free and pool_meta_set.
 */
#include "pool_int.h"

#include "dkv.h"

#include <sched.h>
#include <stdlib.h>

#define POOL_FREE_PAGE_TRIES 100000u  /* yields while a free page is copied out */
#define REC_HDR_BYTES 9             /* type, page number, length (wal_format) */

void pool_mtr_start(struct pool_mtr *m, struct pool *pool)
{
    memset(m, 0, sizeof(*m));
    m->pool = pool;
}

void pool_mtr_free_buffers(struct pool_mtr *m)
{
    free(m->log);
    free(m->body);
    m->log = m->body = NULL;
    m->log_cap = m->body_cap = 0;
}

static struct pool_mtr_page *held(struct pool_mtr *m, const struct frame *f)
{
    unsigned i;

    for (i = 0; i < m->count; i++)
        if (m->pages[i].f == f)
            return &m->pages[i];
    return NULL;
}

static int grow(unsigned char **buf, size_t *cap, size_t need)
{
    size_t n = *cap ? *cap : 4096;
    unsigned char *p;

    while (n < need)
        n *= 2;
    if (n == *cap)
        return DKV_OK;
    p = realloc(*buf, n);
    if (p == NULL)
        return DKV_ERR_NOMEM;
    *buf = p;
    *cap = n;
    return DKV_OK;
}

/* Appends one record: header, then a and b (b may be empty). */
static int put_record(unsigned char **buf, size_t *len, size_t *cap, int type,
                      uint32_t page_no_, const void *a, uint32_t alen,
                      const void *b, uint32_t blen)
{
    unsigned char *p;
    int rc = grow(buf, cap, *len + REC_HDR_BYTES + alen + blen);

    if (rc != DKV_OK)
        return rc;
    p = *buf + *len;
    p[0] = (unsigned char)type;
    store_le32(p + 1, page_no_);
    store_le32(p + 5, alen + blen);
    memcpy(p + REC_HDR_BYTES, a, alen);
    if (blen)
        memcpy(p + REC_HDR_BYTES + alen, b, blen);
    *len += REC_HDR_BYTES + alen + blen;
    return DKV_OK;
}

static int log_record(struct pool_mtr *m, int type, uint32_t page_no_,
                      const void *a, uint32_t alen, const void *b, uint32_t blen)
{
    if (m->unlogged)
        return DKV_OK;
    return put_record(&m->log, &m->log_len, &m->log_cap, type, page_no_,
                      a, alen, b, blen);
}

int pool_mtr_fix(struct pool_mtr *m, uint32_t page_no_, int latch, int flags,
                 struct frame **fp)
{
    struct pool_mtr_page *p;
    struct frame *f;
    unsigned i;
    int rc;

    for (i = 0; i < m->count; i++) {
        if (m->pages[i].f->page_no != page_no_)
            continue;
        if (latch == POOL_X && m->pages[i].latch != POOL_X)
            return DKV_ERR_INVALID;       /* no upgrade from S to X */
        *fp = m->pages[i].f;
        return DKV_OK;
    }
    if (m->count == POOL_MTR_PAGES)
        return DKV_ERR_INVALID;
    rc = pool_fix(m->pool, page_no_, latch, flags, &f);
    if (rc != DKV_OK)
        return rc;
    p = &m->pages[m->count++];
    memset(p, 0, sizeof(*p));
    p->f = f;
    p->latch = latch;
    p->prev_lsn = page_lsn(frame_data(f));
    *fp = f;
    return DKV_OK;
}

int pool_mtr_log(struct pool_mtr *m, struct frame *f, int type,
                 const void *payload, uint32_t len)
{
    struct pool_mtr_page *p = held(m, f);

    if (p == NULL || p->latch != POOL_X || type <= REDO_PAGER_MAX || type > 255 ||
        (len > 0 && payload == NULL))
        return DKV_ERR_INVALID;
    p->modified = 1;
    return log_record(m, type, f->page_no, payload, len, NULL, 0);
}

int pool_mtr_write(struct pool_mtr *m, struct frame *f, uint32_t off,
                   const void *data, uint32_t len)
{
    struct pool_mtr_page *p = held(m, f);
    unsigned char offb[4];

    if (p == NULL || p->latch != POOL_X || off < PAGE_HEADER_SIZE ||
        len == 0 || off + len > m->pool->page_size || off + len < off)
        return DKV_ERR_INVALID;
    memcpy((unsigned char *)frame_data(f) + off, data, len);
    p->modified = 1;
    store_le32(offb, off);
    return log_record(m, REDO_PAGE_WRITE, f->page_no, offb, 4, data, len);
}

static int init_page(struct pool_mtr *m, struct frame *f, int type)
{
    struct pool_mtr_page *p = held(m, f);
    unsigned char typeb[2];

    page_init(frame_data(f), m->pool->page_size, f->page_no, type);
    f->empty = 0;
    p->modified = 1;
    p->inited = 1;
    store_le16(typeb, (uint16_t)type);
    return log_record(m, REDO_PAGE_INIT, f->page_no, typeb, 2, NULL, 0);
}

/* Stores the in-memory header into page 0 (X-fixed by m) and logs it. */
static int header_changed(struct pool_mtr *m, struct frame *hdr)
{
    unsigned char *d = frame_data(hdr);

    space_header_store_fields(m->pool->sp, d);
    held(m, hdr)->modified = 1;
    return log_record(m, REDO_PAGE_WRITE, 0, (unsigned char[4]){ FHDR_OFF_MAGIC, 0, 0, 0 },
                      4, d + FHDR_OFF_MAGIC, FHDR_END - FHDR_OFF_MAGIC);
}

int pool_mtr_alloc(struct pool_mtr *m, int type, struct frame **fp)
{
    struct pool *pool = m->pool;
    struct space_header *hdr = space_header(pool->sp);
    struct frame *h, *f = NULL;      /* set on DKV_OK; gcc -O3 cannot tell */
    uint32_t page_no_;
    int rc = pool_mtr_fix(m, 0, POOL_X, 0, &h);   /* page 0's latch guards hdr */

    if (rc != DKV_OK)
        return rc;
    if (hdr->free_head != 0) {
        unsigned tries = 0;
        page_no_ = hdr->free_head;
        /* A free page is still dirty from its freeing, so the cleaner (or
           an eviction) may hold it shared for a moment to copy it out;
           nobody else can reach it.  Trylock, so that waiting adds no
           lock-order edge after page 0, and retry for a while before
           calling a latch that stays taken damage. */
        while ((rc = pool_mtr_fix(m, page_no_, POOL_X, POOL_FIX_TRY, &f)) == DKV_ERR_BUSY &&
               tries++ < POOL_FREE_PAGE_TRIES)
            sched_yield();
        if (rc == DKV_ERR_BUSY)
            rc = PAGER_CORRUPT(page_no_, "a page on the free list is in use");
        if (rc == DKV_OK && page_type(frame_data(f)) != PAGE_TYPE_FREE_LIST)
            rc = PAGER_CORRUPT(page_no_, "free list holds a page in use");
        if (rc != DKV_OK)
            return rc;
        hdr->free_head = load_le32((unsigned char *)frame_data(f) + FREE_OFF_NEXT);
        hdr->free_count--;
    } else {
        page_no_ = (uint32_t)hdr->page_count;
        rc = space_ensure(pool->sp, hdr->page_count + 1);
        if (rc == DKV_OK)
            rc = pool_mtr_fix(m, page_no_, POOL_X, POOL_FIX_NO_READ, &f);
        if (rc != DKV_OK)
            return rc;
        hdr->page_count++;
        atomic_store(&pool->page_limit, hdr->page_count);
    }
    rc = header_changed(m, h);
    if (rc == DKV_OK)
        rc = init_page(m, f, type);
    *fp = f;
    return rc;
}

int pool_reserve(struct pool *pool, uint64_t pages)
{
    struct space_header *hdr = space_header(pool->sp);
    struct frame *h;
    int rc;

    if (atomic_load(&pool->page_limit) + pages <= space_capacity(pool->sp))
        return DKV_OK;
    rc = pool_fix(pool, 0, POOL_X, 0, &h);      /* page 0's latch guards hdr */
    if (rc != DKV_OK)
        return rc;
    /* Free pages are allocated first: they count as room. */
    if (hdr->free_count < pages)
        rc = space_ensure(pool->sp, hdr->page_count + pages - hdr->free_count);
    pool_unfix(pool, h);
    return rc;
}

int pool_mtr_free(struct pool_mtr *m, uint32_t page_no_)
{
    struct space_header *hdr = space_header(m->pool->sp);
    unsigned char next[4];
    struct frame *f, *h;
    int rc;

    if (page_no_ == 0)
        return DKV_ERR_INVALID;
    rc = pool_mtr_fix(m, page_no_, POOL_X, POOL_FIX_MAY_BE_EMPTY, &f);
    if (rc == DKV_OK)
        rc = pool_mtr_fix(m, 0, POOL_X, 0, &h);
    if (rc == DKV_OK)
        rc = init_page(m, f, PAGE_TYPE_FREE_LIST);
    if (rc != DKV_OK)
        return rc;
    store_le32(next, hdr->free_head);
    rc = pool_mtr_write(m, f, FREE_OFF_NEXT, next, 4);
    hdr->free_head = page_no_;
    hdr->free_count++;
    return rc == DKV_OK ? header_changed(m, h) : rc;
}

int pool_mtr_meta_get(struct pool_mtr *m, unsigned slot, uint64_t *value)
{
    struct frame *h;
    int rc;

    if (slot >= FHDR_META_SLOTS)
        return DKV_ERR_INVALID;
    rc = pool_mtr_fix(m, 0, POOL_X, 0, &h);    /* pool_meta_get would relatch */
    if (rc == DKV_OK)
        *value = space_header(m->pool->sp)->meta[slot];
    return rc;
}

int pool_mtr_meta_set(struct pool_mtr *m, unsigned slot, uint64_t value)
{
    struct frame *h;
    int rc;

    if (slot >= FHDR_META_SLOTS)
        return DKV_ERR_INVALID;
    rc = pool_mtr_fix(m, 0, POOL_X, 0, &h);
    if (rc != DKV_OK)
        return rc;
    space_header(m->pool->sp)->meta[slot] = value;
    return header_changed(m, h);
}

static int needs_image(const struct pool_mtr_page *p, uint64_t fpi_lsn)
{
    return fpi_lsn != 0 && p->modified && !p->inited && p->prev_lsn <= fpi_lsn;
}

static const struct pool_mtr_page *page_of(const struct pool_mtr *m,
                                           uint32_t page_no_)
{
    unsigned i;

    for (i = 0; i < m->count; i++)
        if (m->pages[i].f->page_no == page_no_)
            return &m->pages[i];
    return NULL;
}

int pool_mtr_body(struct pool_mtr *m, uint64_t fpi_lsn, const void **body,
                  size_t *len)
{
    size_t at;
    unsigned i;
    int rc = DKV_OK;

    m->body_len = 0;
    for (i = 0; i < m->count && rc == DKV_OK; i++) {
        if (!needs_image(&m->pages[i], fpi_lsn))
            continue;
        rc = put_record(&m->body, &m->body_len, &m->body_cap,
                        REDO_PAGE_IMAGE, m->pages[i].f->page_no,
                        frame_data(m->pages[i].f), m->pool->page_size,
                        NULL, 0);
        atomic_fetch_add(&m->pool->images_logged, 1);
    }
    for (at = 0; at < m->log_len && rc == DKV_OK;) {
        uint32_t page = load_le32(m->log + at + 1);
        uint32_t n = REC_HDR_BYTES + load_le32(m->log + at + 5);
        const struct pool_mtr_page *p = page_of(m, page);
        if (p == NULL || !needs_image(p, fpi_lsn)) {
            rc = grow(&m->body, &m->body_cap, m->body_len + n);
            if (rc == DKV_OK) {
                memcpy(m->body + m->body_len, m->log + at, n);
                m->body_len += n;
            }
        }
        at += n;
    }
    *body = m->body;
    *len = m->body_len;
    return rc;
}

void pool_mtr_commit(struct pool_mtr *m, uint64_t start_lsn, uint64_t end_lsn)
{
    unsigned i;

    for (i = 0; i < m->count; i++)
        if (m->pages[i].modified)
            pool_mark_dirty_range(m->pool, m->pages[i].f, start_lsn, end_lsn);
    for (i = m->count; i-- > 0;)
        pool_unfix(m->pool, m->pages[i].f);
    m->count = 0;
    m->log_len = 0;
}

void pool_mtr_release(struct pool_mtr *m)
{
    unsigned i;

    for (i = m->count; i-- > 0;) {
        dkv_verify(!m->pages[i].modified);
        pool_unfix(m->pool, m->pages[i].f);
    }
    m->count = 0;
    m->log_len = 0;
}

void pool_mtr_abandon(struct pool_mtr *m)
{
    unsigned i;

    for (i = m->count; i-- > 0;)
        pool_unfix(m->pool, m->pages[i].f);
    m->count = 0;
    m->log_len = 0;
}

/* ---- the unlogged forms (tests, tools, a pool without a log) -------------------- */

int pool_page_alloc(struct pool *pool, int type, uint64_t lsn, struct frame **fp)
{
    struct pool_mtr m;
    struct frame *f = NULL;
    unsigned i;
    int rc;

    pool_mtr_start(&m, pool);
    m.unlogged = 1;
    rc = pool_mtr_alloc(&m, type, &f);
    if (rc != DKV_OK) {
        pool_mtr_commit(&m, lsn, lsn);
        return rc;
    }
    /* Commit, but hand the new page's X fix to the caller: released, it
       could be written and cleaned before the caller changes it. */
    for (i = 0; i < m.count; i++)
        if (m.pages[i].modified)
            pool_mark_dirty_range(pool, m.pages[i].f, lsn, lsn);
    for (i = m.count; i-- > 0;)
        if (m.pages[i].f != f)
            pool_unfix(pool, m.pages[i].f);
    m.count = 0;
    *fp = f;
    return DKV_OK;
}

int pool_page_free(struct pool *pool, uint32_t page_no_, uint64_t lsn)
{
    struct pool_mtr m;
    int rc;

    pool_mtr_start(&m, pool);
    m.unlogged = 1;
    rc = pool_mtr_free(&m, page_no_);
    pool_mtr_commit(&m, lsn, lsn);
    return rc;
}

void pool_meta_set(struct pool *pool, unsigned slot, uint64_t value,
                   uint64_t lsn)
{
    struct pool_mtr m;

    pool_mtr_start(&m, pool);
    m.unlogged = 1;
    dkv_verify(pool_mtr_meta_set(&m, slot, value) == DKV_OK);
    pool_mtr_commit(&m, lsn, lsn);
}

/* ---- recovery ------------------------------------------------------------------- */

/* Applies one record to an X-fixed page; returns 1 when applied. */
static int redo_one(struct pool *pool, struct frame *f, uint64_t end_lsn,
                    int type, const unsigned char *payload, uint32_t len)
{
    unsigned char *d = frame_data(f);
    uint32_t off;

    switch (type) {
    case REDO_PAGE_INIT:
        page_init(d, pool->page_size, f->page_no, load_le16(payload));
        return 1;
    case REDO_PAGE_IMAGE:
        memcpy(d, payload, pool->page_size);
        return 1;
    default:
        if (f->empty)
            return -1;                         /* never written: corrupt */
        /* Skip an MTR the page already has; but once one record of an MTR
           was applied, its other records for the page apply too (they all
           carry the same end LSN). */
        if (page_lsn(d) >= end_lsn && f->redo_end_lsn != end_lsn)
            return 0;
        off = load_le32(payload);
        memcpy(d + off, payload + 4, len - 4);
        return 1;
    }
}

static int redo_check(struct pool *pool, int type, uint32_t page_no_,
                      const unsigned char *payload, uint32_t len)
{
    if (type == REDO_PAGE_INIT)
        return len == 2 ? DKV_OK : PAGER_CORRUPT(page_no_, "bad page-init record");
    if (type == REDO_PAGE_IMAGE)
        return len == pool->page_size && page_no(payload) == page_no_
               ? DKV_OK : PAGER_CORRUPT(page_no_, "bad page-image record");
    if (type == REDO_PAGE_WRITE && len > 4 &&
        load_le32(payload) >= PAGE_HEADER_SIZE &&
        load_le32(payload) + (uint64_t)(len - 4) <= pool->page_size)
        return DKV_OK;
    return PAGER_CORRUPT(page_no_, "bad page-write record");
}

/* Releases the frames held for the MTR being redone. */
static void redo_release(struct pool *pool)
{
    while (pool->redo_held_count > 0) {
        struct frame *f = pool->redo_held[--pool->redo_held_count];
        atomic_store(&f->redo_holding, 0);
        frame_unpin(pool, f);
    }
}

/* Keeps f (fixed by the caller) pinned while the MTR that ends at end_lsn
   is being redone: see pool_int.h. */
static void redo_hold(struct pool *pool, struct frame *f, uint64_t end_lsn)
{
    unsigned i;

    if (pool->redo_held_lsn != end_lsn) {
        redo_release(pool);
        pool->redo_held_lsn = end_lsn;
    }
    for (i = 0; i < pool->redo_held_count; i++)
        if (pool->redo_held[i] == f)
            return;
    if (pool->redo_held_count == POOL_MTR_PAGES)
        return;                        /* an MTR holds at most this many */
    atomic_fetch_add(&f->pin_count, 1);   /* fixed already: P1 holds */
    /* Set under the X latch, before it is released: the cleaner must not
       write the page between two records of this MTR - on disk with the
       MTR's LSN and only part of its records, a crash during recovery
       would leave the next recovery skipping the rest. */
    atomic_store(&f->redo_holding, 1);
    pool->redo_held[pool->redo_held_count++] = f;
}

int pool_redo_apply_fn(struct pool *pool, uint64_t end_lsn, int type,
                       uint32_t page_no_, const void *payload, uint32_t len,
                       pool_redo_fn fn, void *arg)
{
    struct frame *f;
    int rc;

    if (type <= REDO_PAGER_MAX || fn == NULL)
        return PAGER_CORRUPT(page_no_, "log record of an unknown type");
    rc = pool_fix(pool, page_no_, POOL_X, POOL_FIX_MAY_BE_EMPTY, &f);
    if (rc != DKV_OK)
        return rc;
    if (f->empty) {
        rc = PAGER_CORRUPT(page_no_, "log changes a page never written");
    } else if (page_lsn(frame_data(f)) < end_lsn || f->redo_end_lsn == end_lsn) {
        /* As redo_one: a change the page lacks, or another record of an
           MTR already being applied to it. */
        rc = fn(arg, frame_data(f), pool->page_size, type, payload, len);
        if (rc == DKV_OK) {
            f->redo_end_lsn = end_lsn;
            pool_mark_dirty_range(pool, f, end_lsn, end_lsn);
            redo_hold(pool, f, end_lsn);
        }
    }
    pool_unfix(pool, f);
    return rc;
}

int pool_redo_apply(struct pool *pool, uint64_t end_lsn, int type,
                    uint32_t page_no_, const void *payload, uint32_t len)
{
    int whole = type == REDO_PAGE_INIT || type == REDO_PAGE_IMAGE;
    struct frame *f;
    int rc, applied;

    if (type == REDO_NOOP)
        return DKV_OK;
    rc = redo_check(pool, type, page_no_, payload, len);
    /* An allocation logs page 0's new count before it logs the new page,
       so a whole page lies below the count (64 pages of slack): a damaged
       record must not make recovery grow the file to any number it names. */
    if (rc == DKV_OK && whole && !space_header_torn(pool->sp) &&
        page_no_ >= atomic_load(&pool->page_limit) + 64)
        rc = PAGER_CORRUPT(page_no_, "log initialises a page far beyond the file");
    if (rc == DKV_OK && whole)
        rc = space_ensure(pool->sp, (uint64_t)page_no_ + 1);
    if (rc == DKV_OK)
        rc = pool_fix(pool, page_no_, POOL_X,
                      whole ? POOL_FIX_NO_READ : POOL_FIX_MAY_BE_EMPTY, &f);
    if (rc != DKV_OK)
        return rc;
    applied = redo_one(pool, f, end_lsn, type, payload, len);
    if (applied > 0) {
        f->redo_end_lsn = end_lsn;
        f->empty = 0;
        pool_mark_dirty_range(pool, f, end_lsn, end_lsn);
        redo_hold(pool, f, end_lsn);
        if (page_no_ == 0)
            rc = space_header_load_fields(pool->sp, frame_data(f));
        if (page_no_ == 0 && rc == DKV_OK)
            atomic_store(&pool->page_limit, space_header(pool->sp)->page_count);
    } else if (applied < 0) {
        rc = PAGER_CORRUPT(page_no_, "log changes a page never written");
    }
    pool_unfix(pool, f);
    return rc;
}

int pool_recovery_done(struct pool *pool)
{
    redo_release(pool);
    if (space_header_torn(pool->sp))
        return PAGER_CORRUPT(0, "file header torn and not restored by the log");
    return DKV_OK;
}
