/*
 * recovery.c - replaying the log at open (W7).
 *
 * Pass 1 reads the MTR stream from the checkpoint and finds its end: the
 * first block that is torn (bad checksum), from another lap (its LSN is not
 * the expected one), or an MTR that is cut short or fails its checksum.  It
 * remembers the end of the last MTR with the commit mark: MTRs after it
 * belong to a unit that never finished and are not applied.
 * Pass 2 reads the stream again up to that point, in batches: it collects
 * the page numbers of a batch, asks for them all at once (prefetch), then
 * applies the records in log order through the caller's function, which
 * skips a change its page already has (the page LSN), so replaying twice -
 * a crash during recovery - is harmless.
 * Finally the blocks after the one holding the last unit's end are
 * overwritten with zeros, so that no stale block can later pass for a
 * continuation of the stream, and appending resumes at the next block,
 * marked LB_FLAG_RESTART: MTRs of the unfinished unit may still lie in the
 * end block (nothing acknowledged is ever rewritten), and a later recovery
 * drops them again when it meets the mark - an MTR that runs into a
 * restart block was cut there, and the MTRs between the last commit mark
 * and the mark are skipped (struct skips) in pass 2.
 */
#include "wal_int.h"

#include "dkv.h"

#include <stdlib.h>
#include <string.h>

#define RECOVERY_CHUNK   (4u << 20)     /* log bytes read at a time          */
#define RECOVERY_BATCH   (8u << 20)     /* MTR bytes parsed per apply batch  */
#define RECOVERY_PAGES   4096u          /* page numbers prefetched per batch */

struct reader {
    struct wal    *wal;
    unsigned char *chunk;               /* RECOVERY_CHUNK bytes, aligned     */
    uint64_t       chunk_lsn;           /* block LSN of chunk[0]             */
    uint64_t       chunk_len;           /* bytes loaded, 0 = nothing         */
    uint64_t       start_block;         /* the checkpoint's block            */
    uint64_t       pos;                 /* current LSN                       */
    uint64_t       bytes_read;
    int            io_error;
};

/* Loads the chunk that holds block b.  Returns 0 or an I/O error. */
static int load_chunk(struct reader *r, uint64_t b)
{
    struct wal *wal = r->wal;
    uint64_t n = RECOVERY_CHUNK;
    uint64_t to_wrap = wal->capacity - b % wal->capacity;
    int rc;

    n = n < to_wrap ? n : to_wrap;
    pthread_mutex_lock(&wal->io_lock);
    rc = wal_io(wal, IO_READ, r->chunk, n, wal_file_off(wal, b));
    pthread_mutex_unlock(&wal->io_lock);
    r->chunk_lsn = b;
    r->chunk_len = rc == DKV_OK ? n : 0;
    r->bytes_read += rc == DKV_OK ? n : 0;
    return rc;
}

/* The valid block at LSN b, or NULL where the stream ends. */
static const unsigned char *get_block(struct reader *r, uint64_t b)
{
    const unsigned char *p;
    unsigned data_end, first;

    if (b - r->start_block >= r->wal->capacity)
        return NULL;                    /* a whole lap: cannot be valid */
    if (r->chunk_len == 0 || b < r->chunk_lsn || b >= r->chunk_lsn + r->chunk_len) {
        if (load_chunk(r, b) != DKV_OK) {
            r->io_error = 1;
            return NULL;
        }
    }
    p = r->chunk + (b - r->chunk_lsn);
    data_end = load_le16(p + LB_OFF_DATA_END);
    first = load_le16(p + LB_OFF_FIRST_MTR);
    if (load_le32(p + LB_OFF_CRC) != crc32c(0, p + 4, LOG_BLOCK - 4) ||
        load_le64(p + LB_OFF_LSN) != b || data_end < LB_HDR ||
        data_end > LOG_BLOCK || (first != 0 && (first < LB_HDR || first >= data_end)))
        return NULL;
    return p;
}

/* Moves pos to where the next MTR starts; 0 at the end of the stream. */
static int seek_mtr(struct reader *r)
{
    for (unsigned guard = 0; guard < 4; guard++) {
        uint64_t b = wal_block_of(r->pos);
        unsigned off = (unsigned)(r->pos % LOG_BLOCK);
        const unsigned char *p;

        if (off == 0) {
            r->pos += LB_HDR;
            continue;
        }
        p = get_block(r, b);
        if (p == NULL)
            return 0;
        if (off < load_le16(p + LB_OFF_DATA_END)) {
            /* At a block's start, an MTR must begin here, not continue. */
            return off != LB_HDR || load_le16(p + LB_OFF_FIRST_MTR) == LB_HDR;
        }
        if (off != load_le16(p + LB_OFF_DATA_END))
            return 0;
        r->pos = b + LOG_BLOCK + LB_HDR;   /* the write ended this block */
    }
    return 0;
}

static int block_restarts(const unsigned char *p)
{
    return (load_le32(p + LB_OFF_FLAGS) & LB_FLAG_RESTART) != 0;
}

enum { STREAM_END = 0, STREAM_OK = 1, STREAM_RESTART = 2 };

/* Copies n bytes of the stream from pos, for an MTR that started in block
   start_block.  STREAM_END if the stream ends first; STREAM_RESTART if
   the MTR runs into a block where appending resumed after a recovery: it
   was cut there (pos is left at that block's first MTR). */
static int read_stream(struct reader *r, unsigned char *dst, size_t n,
                       uint64_t start_block)
{
    while (n > 0) {
        uint64_t b = wal_block_of(r->pos);
        unsigned off = (unsigned)(r->pos % LOG_BLOCK);
        const unsigned char *p;
        size_t k;

        if (off == 0) {
            r->pos += LB_HDR;
            continue;
        }
        p = get_block(r, b);
        if (p == NULL)
            return STREAM_END;
        if (b != start_block && block_restarts(p)) {
            r->pos = b + LB_HDR;
            return STREAM_RESTART;
        }
        if (off >= load_le16(p + LB_OFF_DATA_END))
            return STREAM_END;
        k = load_le16(p + LB_OFF_DATA_END) - off;
        k = k < n ? k : n;
        memcpy(dst, p + off, k);
        dst += k;
        n -= k;
        r->pos += k;
    }
    return STREAM_OK;
}

struct mtr_view {
    uint64_t       start_lsn, end_lsn;
    int            flags;
    int            restart;             /* starts a block marked RESTART   */
    unsigned char *body;
    uint32_t       len;
};

/* Reads the next whole MTR into *body (grown as needed).  STREAM_END at
   the end; STREAM_RESTART when an MTR was cut by a restart block (pos is
   then at that block's first MTR; call again). */
static int next_mtr(struct reader *r, unsigned char **body, size_t *cap,
                    struct mtr_view *m)
{
    unsigned char hdr[MTR_HDR];
    uint64_t sb;
    int st;

    if (!seek_mtr(r))
        return STREAM_END;
    m->start_lsn = r->pos;
    sb = wal_block_of(r->pos);
    m->restart = 0;
    if (r->pos % LOG_BLOCK == LB_HDR) {
        const unsigned char *p = get_block(r, sb);
        m->restart = p != NULL && block_restarts(p);
    }
    st = read_stream(r, hdr, MTR_HDR, sb);
    if (st != STREAM_OK)
        return st;
    m->len = load_le32(hdr + MTR_OFF_LEN);
    m->flags = hdr[MTR_OFF_FLAGS];
    if (m->len == 0 || m->len > MTR_BODY_MAX)
        return STREAM_END;
    if (m->len > *cap) {
        unsigned char *grown = realloc(*body, m->len);
        if (grown == NULL)
            return STREAM_END;
        *body = grown;
        *cap = m->len;
    }
    st = read_stream(r, *body, m->len, sb);
    if (st != STREAM_OK)
        return st;
    if (crc32c(0, *body, m->len) != load_le32(hdr + MTR_OFF_CRC))
        return STREAM_END;
    m->body = *body;
    m->end_lsn = r->pos;
    return STREAM_OK;
}

/* LSN ranges [from, to) holding MTRs of units that an earlier recovery
   dropped (found again at restart blocks): never applied. */
struct skips {
    uint64_t *from, *to;
    unsigned  n, cap;
    int       nomem;
};

static void skip_add(struct skips *sk, uint64_t from, uint64_t to)
{
    if (from >= to)
        return;
    if (sk->n == sk->cap) {
        unsigned cap = sk->cap ? 2 * sk->cap : 8;
        uint64_t *f = realloc(sk->from, cap * sizeof(*f));
        uint64_t *t = f ? realloc(sk->to, cap * sizeof(*t)) : NULL;
        if (f)
            sk->from = f;
        if (t == NULL) {
            sk->nomem = 1;
            return;
        }
        sk->to = t;
        sk->cap = cap;
    }
    sk->from[sk->n] = from;
    sk->to[sk->n] = to;
    sk->n++;
}

static int skipped(const struct skips *sk, uint64_t lsn)
{
    unsigned i;

    for (i = 0; i < sk->n; i++)
        if (lsn >= sk->from[i] && lsn < sk->to[i])
            return 1;
    return 0;
}

/* ---- the two passes ---------------------------------------------------------------- */

struct replay {
    wal_apply_fn    apply;
    wal_prefetch_fn prefetch;
    void           *arg;
    struct wal_recovery *out;
    unsigned char  *arena;              /* RECOVERY_BATCH bytes of MTRs      */
    size_t          arena_used;
    uint32_t        pages[RECOVERY_PAGES];
    unsigned        page_count;
};

/* Walks the records of one MTR body: with apply NULL it only collects
   page numbers.  DKV_ERR_CORRUPT for a malformed body. */
static int walk_records(struct replay *rp, const unsigned char *body,
                        uint32_t len, uint64_t end_lsn, int apply)
{
    uint32_t at = 0;
    int rc = DKV_OK;

    while (at < len && rc == DKV_OK) {
        uint32_t plen, page;
        if (len - at < REC_HDR)
            return PAGER_CORRUPT(0, "log record header cut short");
        page = load_le32(body + at + REC_OFF_PAGE);
        plen = load_le32(body + at + REC_OFF_LEN);
        if (plen > len - at - REC_HDR)
            return PAGER_CORRUPT(0, "log record longer than its MTR");
        if (apply) {
            rc = rp->apply(rp->arg, end_lsn, body[at + REC_OFF_TYPE], page,
                           body + at + REC_HDR, plen);
            rp->out->records++;
        }
        else if (rp->page_count < RECOVERY_PAGES)
            rp->pages[rp->page_count++] = page;
        at += REC_HDR + plen;
    }
    return rc;
}

/* Prefetches, then applies, the MTRs stored in the arena (8-byte end LSN,
   4-byte length, body; one after the other). */
static int flush_batch(struct replay *rp)
{
    size_t at;
    int rc = DKV_OK;

    if (rp->prefetch && rp->page_count > 0)
        rp->prefetch(rp->arg, rp->pages, rp->page_count);
    for (at = 0; at < rp->arena_used && rc == DKV_OK;) {
        uint64_t end = load_le64(rp->arena + at);
        uint32_t len = load_le32(rp->arena + at + 8);
        rc = walk_records(rp, rp->arena + at + 12, len, end, 1);
        at += 12 + len;
        rp->out->mtrs++;
    }
    rp->arena_used = 0;
    rp->page_count = 0;
    return rc;
}

static int queue_mtr(struct replay *rp, const struct mtr_view *m)
{
    int rc = DKV_OK;

    if (rp->arena_used + 12 + m->len > RECOVERY_BATCH || rp->page_count >= RECOVERY_PAGES)
        rc = flush_batch(rp);
    if (rc != DKV_OK)
        return rc;
    if (12 + m->len > RECOVERY_BATCH) {       /* a huge MTR: alone */
        rc = walk_records(rp, m->body, m->len, m->end_lsn, 0);
        if (rc == DKV_OK && rp->prefetch)
            rp->prefetch(rp->arg, rp->pages, rp->page_count);
        rp->page_count = 0;
        rp->out->mtrs++;
        return rc == DKV_OK ? walk_records(rp, m->body, m->len, m->end_lsn, 1) : rc;
    }
    rc = walk_records(rp, m->body, m->len, m->end_lsn, 0);
    store_le64(rp->arena + rp->arena_used, m->end_lsn);
    store_le32(rp->arena + rp->arena_used + 8, m->len);
    memcpy(rp->arena + rp->arena_used + 12, m->body, m->len);
    rp->arena_used += 12 + m->len;
    return rc;
}

/* Pass 1: the end of the last commit unit, where the stream ends, and the
   ranges of units dropped by earlier recoveries (skips). */
static void find_end(struct reader *r, struct wal_recovery *out,
                     uint64_t *stream_end, unsigned char **body, size_t *cap,
                     struct skips *sk)
{
    uint64_t committed = r->pos;        /* end of the last unit so far */
    unsigned pending = 0;
    struct mtr_view m;
    int st;

    out->end_lsn = 0;
    while ((st = next_mtr(r, body, cap, &m)) != STREAM_END) {
        if (st == STREAM_RESTART || m.restart) {
            /* Appending resumed here after a recovery: what followed the
               last unit before it was dropped then, and stays dropped. */
            uint64_t b = st == STREAM_RESTART ? wal_block_of(r->pos)
                                              : wal_block_of(m.start_lsn);
            if (pending > 0 || st == STREAM_RESTART)
                skip_add(sk, committed, b);
            pending = 0;
            out->discarded_mtrs = 0;
            if (st == STREAM_RESTART)
                continue;
        }
        if (m.flags & MTR_FLAG_COMMIT) {
            out->end_lsn = committed = m.end_lsn;
            pending = 0;
            out->discarded_mtrs = 0;
        } else {
            pending++;
            out->discarded_mtrs++;
        }
    }
    *stream_end = r->pos;
}

/* Pass 2: replays [checkpoint, end_lsn), but for the skips. */
static int replay(struct reader *r, struct replay *rp, uint64_t end_lsn,
                  unsigned char **body, size_t *cap, const struct skips *sk)
{
    struct mtr_view m;
    int rc = DKV_OK, st;

    while (rc == DKV_OK && r->pos < end_lsn &&
           (st = next_mtr(r, body, cap, &m)) != STREAM_END) {
        if (st == STREAM_RESTART)
            continue;
        if (!skipped(sk, m.start_lsn))
            rc = queue_mtr(rp, &m);
        if (m.end_lsn >= end_lsn)
            break;
    }
    return rc == DKV_OK ? flush_batch(rp) : rc;
}

/* ---- after the replay ------------------------------------------------------------- */

/* Overwrites [from, to) of the stream with zeros and syncs. */
static int erase_range(struct wal *wal, unsigned char *zeros, uint64_t from,
                       uint64_t to)
{
    int rc = DKV_OK;

    memset(zeros, 0, RECOVERY_CHUNK);
    pthread_mutex_lock(&wal->io_lock);
    while (from < to && rc == DKV_OK) {
        uint64_t n = to - from;
        uint64_t to_wrap = wal->capacity - from % wal->capacity;
        n = n < RECOVERY_CHUNK ? n : RECOVERY_CHUNK;
        n = n < to_wrap ? n : to_wrap;
        rc = wal_io(wal, IO_WRITE, zeros, n, wal_file_off(wal, from));
        from += n;
    }
    if (rc == DKV_OK)
        rc = io_file_sync(wal->file);
    pthread_mutex_unlock(&wal->io_lock);
    return rc;
}

/* Where appending resumes: the block after the one holding x, unless x
   starts its block. */
static uint64_t resume_block(uint64_t x)
{
    return x % LOG_BLOCK <= LB_HDR ? wal_block_of(x) : wal_block_of(x) + LOG_BLOCK;
}

static void resume_state(struct wal *wal, uint64_t block)
{
    pthread_mutex_lock(&wal->mutex);
    memset(wal->buf + block % wal->buf_size, 0, LB_HDR);
    store_le64(wal->buf + block % wal->buf_size + LB_OFF_LSN, block);
    /* The MTRs of an unfinished unit may lie before this block: tell a
       later recovery that they are not part of the stream (W2). */
    store_le32(wal->buf + block % wal->buf_size + LB_OFF_FLAGS, LB_FLAG_RESTART);
    __atomic_store_n(&wal->lsn, block + LB_HDR, __ATOMIC_RELAXED);
    wal->end_lsn = wal->write_lsn = wal->durable_lsn = block;
    wal->unit_end_lsn = wal->durable_unit_end = block;
    wal->fpi_lsn = wal->cfg.no_page_images ? 0
                 : wal->checkpoint_lsn ? wal->checkpoint_lsn : 1;
    wal->cand_lsn = 0;
    pthread_mutex_unlock(&wal->mutex);
}

int wal_recover(struct wal *wal, wal_apply_fn apply, wal_prefetch_fn prefetch,
                void *arg, struct wal_recovery *out)
{
    struct wal_recovery scratch;
    struct reader r = { .wal = wal };
    struct skips sk = { 0 };
    struct replay *rp = calloc(1, sizeof(*rp));
    unsigned char *body = NULL;
    uint64_t t0 = wal_now_us(), stream_end, block, erase_to;
    size_t cap = 0;
    int rc = DKV_OK;

    out = out ? out : &scratch;
    memset(out, 0, sizeof(*out));
    r.chunk = io_buf_alloc(RECOVERY_CHUNK, LOG_BLOCK);
    if (rp == NULL || r.chunk == NULL || (rp->arena = malloc(RECOVERY_BATCH)) == NULL ||
        apply == NULL || wal->ready) {
        rc = apply == NULL || wal->ready ? DKV_ERR_INVALID : DKV_ERR_NOMEM;
        goto out;
    }
    rp->apply = apply;
    rp->prefetch = prefetch;
    rp->arg = arg;
    rp->out = out;
    out->checkpoint_lsn = wal->checkpoint_lsn;
    r.start_block = wal_block_of(wal->checkpoint_lsn);
    r.pos = wal->checkpoint_lsn;
    find_end(&r, out, &stream_end, &body, &cap, &sk);
    if (r.io_error || sk.nomem) {
        rc = r.io_error ? DKV_ERR_IO : DKV_ERR_NOMEM;
        goto out;
    }
    if (out->end_lsn == 0)
        out->end_lsn = wal->checkpoint_lsn;
    block = resume_block(out->end_lsn);
    resume_state(wal, block);
    r.pos = wal->checkpoint_lsn;
    r.chunk_len = 0;
    rc = replay(&r, rp, out->end_lsn, &body, &cap, &sk);
    erase_to = (stream_end > block ? resume_block(stream_end) : block) + wal->buf_size;
    if (erase_to > r.start_block + wal->capacity)
        erase_to = r.start_block + wal->capacity;
    if (rc == DKV_OK && !wal->cfg.read_only)
        rc = erase_range(wal, r.chunk, block, erase_to);
    out->scanned_bytes = r.bytes_read;
    if (rc == DKV_OK) {
        wal->ready = 1;
        rc = wal_bg_start(wal);
    }
out:
    out->elapsed_us = wal_now_us() - t0;
    free(body);
    free(sk.from);
    free(sk.to);
    if (rp)
        free(rp->arena);
    free(rp);
    io_buf_free(r.chunk, RECOVERY_CHUNK);
    return rc;
}
