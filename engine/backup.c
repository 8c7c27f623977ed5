/*
 * backup.c - dkv_backup: a consistent copy of an open database while
 * other threads keep writing through it (engine/README.md, "Hot backup").
 *
 * In the manner of InnoDB's hot backup, the copy is a fuzzy copy of the
 * data file made consistent by the log:
 *
 *   1. a checkpoint, then note its LSN c (wal_backup_start): every change
 *      before c is in the data file, and stays there - a page on disk only
 *      ever gets newer;
 *   2. copy the data file with copy_file_range (the pages do not pass
 *      through this process), then read the copy back and verify every
 *      page; a page the cleaner was writing while it was copied can come
 *      out torn (its checksum fails) and is copied again until it is whole.
 *      Each page of the copy is then some version of the page at or after
 *      c, and (write-ahead rule W4) no newer than what the log holds;
 *   3. sync the log and copy its blocks from c's block to the durable end
 *      D into a new redo.log of the same capacity, at the same offsets,
 *      verifying each block's CRC and LSN (a block overwritten by a later
 *      lap of the circular log fails, and the backup with it: DKV_ERR_AGAIN);
 *   4. write the log's header and a checkpoint slot saying c, sync the
 *      files and the directory.
 * Opening the copy replays [c, D) as any recovery does: redo skips what a
 * page already has (its LSN), and drops a batch that had not ended by D,
 * whose pages never reached the disk (W4).  Every write acknowledged
 * before dkv_backup was called is below D.
 *
 * The log is not pinned: checkpoints go on and writers never wait for the
 * backup.  The price is that a backup during which more log is written
 * than the log holds (256 MiB) fails with DKV_ERR_AGAIN instead.
 *
 * Entry point: dkv_backup.
 */
#include "dkv.h"

#include "db_int.h"
#include "pager/io.h"
#include "pager/page_format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BACKUP_CHUNK        (8u << 20)   /* bytes per copy and verify step  */
#define BACKUP_PAGE_TRIES   200u         /* re-copies of a torn page        */
#define BACKUP_LOG_TRIES    16u          /* re-copies of a block read stale */
#define LOG_BLOCK_BYTES     4096u

struct backup {
    dkv_db        *db;
    struct wal    *wal;
    int            dir_fd;
    int            data_src, data_dst;   /* plain (not O_DIRECT) descriptors */
    int            log_src, log_dst;
    uint32_t       ps;
    uint64_t       data_bytes;
    unsigned char *buf;                  /* BACKUP_CHUNK, aligned           */
    struct wal_backup_info bi;
};

static void pause_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

/* A descriptor for the file behind fd without O_DIRECT (a new open file
   description through /proc), so that copy_file_range may use the page
   cache; else a duplicate of fd (the copy then goes through buf). */
static int reopen_plain(int fd)
{
    char path[64];
    int nfd;

    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    nfd = open(path, O_RDONLY | O_CLOEXEC);
    return nfd >= 0 ? nfd : fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

/* Copies [off, off+len) of in to the same offsets of out: copy_file_range
   first, pread/pwrite through the aligned buf where the kernel cannot. */
static int copy_range(struct backup *b, int in, int out, uint64_t off, uint64_t len)
{
    int kernel = 1;

    while (len > 0) {
        size_t n = len < BACKUP_CHUNK ? (size_t)len : BACKUP_CHUNK;
        loff_t ioff = (loff_t)off, ooff = (loff_t)off;
        ssize_t got = -1;
        if (kernel) {
            got = copy_file_range(in, &ioff, out, &ooff, n, 0);
            if (got < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                            errno == EOPNOTSUPP || errno == EBADF)) {
                kernel = 0;
                continue;
            }
        } else {
            got = pread(in, b->buf, n, (off_t)off);
            if (got > 0 && pwrite(out, b->buf, (size_t)got, (off_t)off) != got)
                got = -1;
        }
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return io_errno_rc(errno);
        if (got == 0)
            return DKV_ERR_IO;               /* the source is shorter: cannot be */
        off += (uint64_t)got;
        len -= (uint64_t)got;
    }
    return DKV_OK;
}

static int read_back(int fd, void *buf, size_t len, uint64_t off)
{
    ssize_t got = pread(fd, buf, len, (off_t)off);

    if (got < 0)
        return io_errno_rc(errno);
    return (size_t)got == len ? DKV_OK : DKV_ERR_IO;
}

/* Step 2 for one page of the copy that failed its checks: copy it again
   until it is whole (the cleaner finishes its write). */
static int recopy_page(struct backup *b, uint32_t no, unsigned char *page)
{
    unsigned tries;
    int rc = DKV_ERR_CORRUPT;

    for (tries = 0; tries < BACKUP_PAGE_TRIES && rc == DKV_ERR_CORRUPT; tries++) {
        if (tries > 0)
            pause_ms(1);
        /* Never a stale cached copy: read the page from the disk again. */
        posix_fadvise(b->data_src, (off_t)no * b->ps, b->ps, POSIX_FADV_DONTNEED);
        rc = copy_range(b, b->data_src, b->data_dst, (uint64_t)no * b->ps, b->ps);
        if (rc == DKV_OK)
            rc = read_back(b->data_dst, page, b->ps, (uint64_t)no * b->ps);
        if (rc == DKV_OK)
            rc = page_verify(page, b->ps, no);
    }
    return rc == DKV_NOTFOUND ? DKV_OK : rc;
}

/* Step 2: the data file, copied and verified a chunk at a time. */
static int copy_data(struct backup *b)
{
    uint64_t off;
    int rc = DKV_OK;

    for (off = 0; rc == DKV_OK && off < b->data_bytes; off += BACKUP_CHUNK) {
        uint64_t n = b->data_bytes - off < BACKUP_CHUNK ? b->data_bytes - off
                                                        : BACKUP_CHUNK;
        uint64_t i;
        rc = copy_range(b, b->data_src, b->data_dst, off, n);
        if (rc == DKV_OK)
            rc = read_back(b->data_dst, b->buf, n, off);
        for (i = 0; rc == DKV_OK && i < n; i += b->ps) {
            uint32_t no = (uint32_t)((off + i) / b->ps);
            int vrc = page_verify(b->buf + i, b->ps, no);
            if (vrc == DKV_ERR_CORRUPT)
                rc = recopy_page(b, no, b->buf + i);
        }
    }
    return rc;
}

/* Whether the block at block_lsn may have been overwritten by the log's
   next lap (the append position reached its slot again). */
static int lapped(struct backup *b, uint64_t block_lsn)
{
    struct wal_stats ws;

    wal_stats_get(b->wal, &ws);
    return ws.lsn + LOG_BLOCK_BYTES >= block_lsn + b->bi.capacity;
}

/* Step 3 for one run of blocks [from, to) contiguous in the file. */
static int copy_log_run(struct backup *b, uint64_t from, uint64_t to)
{
    uint64_t off = wal_backup_offset(b->wal, from), blk;
    int rc = copy_range(b, b->log_src, b->log_dst, off, to - from);

    for (blk = from; rc == DKV_OK && blk < to; blk += LOG_BLOCK_BYTES) {
        uint64_t boff = off + (blk - from);
        unsigned tries = 0;
        rc = read_back(b->log_dst, b->buf, LOG_BLOCK_BYTES, boff);
        while (rc == DKV_OK && !wal_block_intact(b->buf, blk)) {
            if (lapped(b, blk))
                return DKV_ERR_AGAIN;
            if (tries++ >= BACKUP_LOG_TRIES)
                return PAGER_CORRUPT(0, "a durable log block fails its checksum");
            pause_ms(1);
            posix_fadvise(b->log_src, (off_t)boff, LOG_BLOCK_BYTES, POSIX_FADV_DONTNEED);
            rc = copy_range(b, b->log_src, b->log_dst, boff, LOG_BLOCK_BYTES);
            if (rc == DKV_OK)
                rc = read_back(b->log_dst, b->buf, LOG_BLOCK_BYTES, boff);
        }
    }
    return rc;
}

/* Step 3: the blocks from the checkpoint's up to the durable end D, each
   written before D was published and never rewritten until the next lap. */
static int copy_log(struct backup *b)
{
    uint64_t from = b->bi.checkpoint_lsn - b->bi.checkpoint_lsn % LOG_BLOCK_BYTES;
    struct wal_stats ws;
    int rc = wal_sync(b->wal);

    if (rc != DKV_OK)
        return rc;
    wal_stats_get(b->wal, &ws);
    if (ws.durable_lsn > from && ws.durable_lsn - from > b->bi.capacity - LOG_BLOCK_BYTES)
        return DKV_ERR_AGAIN;               /* more than a lap since c */
    while (rc == DKV_OK && from < ws.durable_lsn) {
        uint64_t off = wal_backup_offset(b->wal, from);
        uint64_t to_wrap = b->bi.file_size - off;
        uint64_t to = ws.durable_lsn - ws.durable_lsn % LOG_BLOCK_BYTES;
        to += ws.durable_lsn % LOG_BLOCK_BYTES ? LOG_BLOCK_BYTES : 0;
        if (to - from > to_wrap)
            to = from + to_wrap;
        rc = copy_log_run(b, from, to);
        from = to;
    }
    return rc;
}

/* Step 4: the header and the checkpoint slot; then everything durable. */
static int finish(struct backup *b)
{
    unsigned char *hdr = io_buf_alloc(2 * LOG_BLOCK_BYTES, LOG_BLOCK_BYTES);
    uint64_t slot_off = 0;
    int rc = hdr ? wal_backup_blocks(b->wal, &b->bi, hdr, hdr + LOG_BLOCK_BYTES,
                                     &slot_off)
                 : DKV_ERR_NOMEM;

    if (rc == DKV_OK &&
        (pwrite(b->log_dst, hdr, LOG_BLOCK_BYTES, 0) != LOG_BLOCK_BYTES ||
         pwrite(b->log_dst, hdr + LOG_BLOCK_BYTES, LOG_BLOCK_BYTES,
                (off_t)slot_off) != LOG_BLOCK_BYTES))
        rc = io_errno_rc(errno);
    if (rc == DKV_OK && (fdatasync(b->data_dst) != 0 || fdatasync(b->log_dst) != 0 ||
                         fsync(b->dir_fd) != 0))
        rc = io_errno_rc(errno);
    io_buf_free(hdr, 2 * LOG_BLOCK_BYTES);
    return rc;
}

/* The destination: a directory (made if missing) that holds no database. */
static int open_dest(struct backup *b, const char *dest_dir)
{
    if (mkdir(dest_dir, 0755) != 0 && errno != EEXIST)
        return io_errno_rc(errno);
    b->dir_fd = open(dest_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (b->dir_fd < 0)
        return errno == ENOTDIR ? DKV_ERR_INVALID : io_errno_rc(errno);
    if (faccessat(b->dir_fd, "data.dkv", F_OK, 0) == 0 ||
        faccessat(b->dir_fd, "redo.log", F_OK, 0) == 0)
        return DKV_ERR_INVALID;             /* never overwrite a database */
    b->data_dst = openat(b->dir_fd, "data.dkv",
                         O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (b->data_dst < 0)
        return io_errno_rc(errno);
    b->log_dst = openat(b->dir_fd, "redo.log",
                        O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (b->log_dst < 0)
        return io_errno_rc(errno);
    return DKV_OK;
}

/* Steps 1 and the sources: the checkpoint, c, the files and their sizes. */
static int open_sources(struct backup *b)
{
    struct store *s = db_store(b->db);
    struct space *sp = store_space(s);
    int64_t size;
    int rc = dkv_checkpoint(b->db);

    if (rc != DKV_OK)
        return rc;
    wal_backup_start(b->wal, &b->bi);
    /* The size after c: every page written before c lies below it. */
    size = io_file_size(space_file(sp));
    if (size < 0)
        return (int)size;
    b->ps = space_page_size(sp);
    b->data_bytes = (uint64_t)size - (uint64_t)size % b->ps;
    b->data_src = reopen_plain(io_file_fd(space_file(sp)));
    b->log_src = reopen_plain(b->bi.fd);
    if (b->data_src < 0 || b->log_src < 0)
        return io_errno_rc(errno);
    /* A zero-filled log: every block the copy does not get is no block. */
    if (ftruncate(b->log_dst, (off_t)b->bi.file_size) != 0)
        return io_errno_rc(errno);
    if (fallocate(b->log_dst, 0, 0, (off_t)b->bi.file_size) != 0 &&
        errno != EOPNOTSUPP)
        return io_errno_rc(errno);
    return DKV_OK;
}

/* Closes fd, first dropping what the copy left of its file in the page
   cache: the engine caches for itself, and a later backup must read the
   disk, not an old copy. */
static void close_fd(int fd)
{
    if (fd >= 0) {
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

DKV_EXPORT int dkv_backup(dkv_db *db, const char *dest_dir)
{
    struct backup b = { .db = db, .dir_fd = -1, .data_src = -1, .data_dst = -1,
                        .log_src = -1, .log_dst = -1 };
    int created = 0, rc;

    if (db == NULL || dest_dir == NULL || *dest_dir == '\0')
        return DKV_ERR_INVALID;
    if (db_read_only(db))
        return DKV_ERR_READONLY;
    b.wal = store_wal(db_store(db));
    b.buf = io_buf_alloc(BACKUP_CHUNK, LOG_BLOCK_BYTES);
    rc = b.buf ? open_dest(&b, dest_dir) : DKV_ERR_NOMEM;
    created = b.data_dst >= 0;
    if (rc == DKV_OK)
        rc = open_sources(&b);
    if (rc == DKV_OK)
        rc = copy_data(&b);
    if (rc == DKV_OK)
        rc = copy_log(&b);
    if (rc == DKV_OK)
        rc = finish(&b);
    close_fd(b.data_src);
    close_fd(b.log_src);
    close_fd(b.data_dst);
    close_fd(b.log_dst);
    if (rc != DKV_OK && created) {          /* never leave half a database */
        unlinkat(b.dir_fd, "data.dkv", 0);
        unlinkat(b.dir_fd, "redo.log", 0);
    }
    if (b.dir_fd >= 0)
        close(b.dir_fd);
    io_buf_free(b.buf, BACKUP_CHUNK);
    return rc;
}
