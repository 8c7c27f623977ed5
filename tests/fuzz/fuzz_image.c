/*
 * fuzz_image.c - database images for the damaged-file fuzzer (layout in
 * fuzz_image.h): writing one into a directory with its checksums fixed up,
 * capturing a directory into one, and making the seed corpus.
 *
 * The checksum fix-ups re-derive only what a checksum covers; they never
 * repair structure.  The MTR fix-up walks the stream the way recovery
 * does (wal/recovery.c): from each block's first MTR, MTR after MTR, an
 * MTR's bytes running on into the next blocks past their headers.
 *
 * The seeds are made with the public API on databases created with a
 * 1 MiB log (the recorded capacity wins at every later open), so that a
 * whole database fits in a few dozen pages and log blocks.
 */
#include "fuzz_image.h"

#include "dkv.h"
#include "engine/btree.h"
#include "engine/engine.h"
#include "pager/page_format.h"
#include "pager/pager.h"
#include "wal/wal_format.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

size_t fimg_key(char *out, unsigned i)
{
    return (size_t)sprintf(out, "key%05u", i);
}

size_t fimg_value(unsigned char *out, size_t cap, unsigned i, unsigned v)
{
    uint64_t x = ((uint64_t)i << 32) ^ v ^ 0x9E3779B97F4A7C15ull;
    size_t len = 1 + (size_t)((i * 37u + v * 11u) % 180u), k;

    len = len < cap ? len : cap;
    for (k = 0; k < len; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[k] = (unsigned char)x;
    }
    return len;
}

/* ---- writing an image ----------------------------------------------------------- */

struct spos {
    unsigned blk, off;              /* log data block, byte within it */
};

static unsigned char *blk_at(unsigned char *log_blocks, unsigned j)
{
    return log_blocks + (size_t)j * LOG_BLOCK;
}

/* The next stream byte after p (block headers are not part of it);
   0 when the image's blocks end. */
static int spos_next(struct spos *p, unsigned nblocks)
{
    if (++p->off == LOG_BLOCK) {
        p->blk++;
        p->off = LB_HDR;
    }
    return p->blk < nblocks;
}

/* Recomputes the checksum of every MTR that a block announces and of the
   MTRs that follow it in the same write. */
static void fix_mtrs(unsigned char *blocks, unsigned nblocks)
{
    unsigned j, guard;

    for (j = 0; j < nblocks; j++) {
        unsigned first = load_le16(blk_at(blocks, j) + LB_OFF_FIRST_MTR);
        struct spos p = { j, first };

        if (first < LB_HDR || first >= LOG_BLOCK)
            continue;
        for (guard = 0; guard < 4096; guard++) {
            unsigned char hdr[MTR_HDR];
            struct spos h = p, q;
            uint32_t len, crc = 0, k;
            int ok = 1;

            for (k = 0; k < MTR_HDR && ok; k++) {
                hdr[k] = blk_at(blocks, p.blk)[p.off];
                ok = spos_next(&p, nblocks);
            }
            len = load_le32(hdr + MTR_OFF_LEN);
            if (!ok || len == 0 || len > FIMG_BLOCKS_MAX * LOG_BLOCK)
                break;
            for (k = 0; k < len && ok; k++) {
                crc = crc32c(crc, blk_at(blocks, p.blk) + p.off, 1);
                ok = spos_next(&p, nblocks);
            }
            if (k < len)
                break;
            store_le32(hdr + MTR_OFF_CRC, crc);
            for (q = h, k = 0; k < MTR_HDR; k++) {
                blk_at(blocks, q.blk)[q.off] = hdr[k];
                spos_next(&q, nblocks);
            }
            if (!ok || p.off >= load_le16(blk_at(blocks, p.blk) + LB_OFF_DATA_END))
                break;                          /* the write ended here */
        }
    }
}

static void fix_crc(unsigned char *p, size_t len)
{
    store_le32(p, crc32c(0, p + 4, len - 4));
}

static int write_file(const char *dir, const char *name, const void *buf,
                      size_t len, off_t off, off_t size)
{
    char path[512];
    int fd, rc = 0;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (ftruncate(fd, size) != 0 ||
        (len > 0 && pwrite(fd, buf, len, off) != (ssize_t)len))
        rc = -1;
    close(fd);
    return rc;
}

int fimg_write(const char *dir, const unsigned char *data, size_t size,
               unsigned char ops[FIMG_OPS])
{
    unsigned char hdr[FIMG_HDR] = { 0 };
    unsigned npages, nblocks, flags, i;
    size_t dlen, llen, at;
    unsigned char *pages, *log;
    char path[512];
    int rc;

    memcpy(hdr, data, size < FIMG_HDR ? size : FIMG_HDR);
    flags = hdr[0];
    npages = load_le16(hdr + 2) % (FIMG_PAGES_MAX + 1);
    nblocks = load_le16(hdr + 4) % (FIMG_BLOCKS_MAX + 1);
    memcpy(ops, hdr + 6, FIMG_OPS);
    dlen = (size_t)npages * FIMG_PAGE;
    llen = (size_t)(3 + nblocks) * LOG_BLOCK;
    pages = calloc(1, dlen + llen);
    if (pages == NULL)
        return -1;
    log = pages + dlen;
    at = FIMG_HDR;
    if (size > at)
        memcpy(pages, data + at, size - at < dlen + llen ? size - at : dlen + llen);

    if (flags & FIMG_FIX_PAGES)
        for (i = 0; i < npages; i++)
            fix_crc(pages + (size_t)i * FIMG_PAGE, FIMG_PAGE);
    if (flags & FIMG_FIX_MTRS)
        fix_mtrs(log + 3 * LOG_BLOCK, nblocks);
    if (flags & FIMG_FIX_BLOCKS)
        for (i = 0; i < 3 + nblocks; i++)
            fix_crc(log + (size_t)i * LOG_BLOCK, LOG_BLOCK);

    snprintf(path, sizeof(path), "%s/doublewrite.dkv", dir);
    unlink(path);
    rc = write_file(dir, "data.dkv", pages, dlen, 0, FIMG_DATA_FILE);
    if (rc == 0)
        rc = write_file(dir, "redo.log", log, 3 * LOG_BLOCK, 0,
                        LOG_DATA_OFF + FIMG_LOG_CAPACITY);
    if (rc == 0 && nblocks > 0) {
        snprintf(path, sizeof(path), "%s/redo.log", dir);
        int fd = open(path, O_RDWR | O_CLOEXEC);
        rc = fd >= 0 && pwrite(fd, log + 3 * LOG_BLOCK, (size_t)nblocks * LOG_BLOCK,
                               LOG_DATA_OFF) == (ssize_t)nblocks * LOG_BLOCK ? 0 : -1;
        if (fd >= 0)
            close(fd);
    }
    free(pages);
    return rc;
}

/* ---- capturing a directory ---------------------------------------------------------- */

static int all_zero(const unsigned char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

/* Reads [off, off + len) of dir/name into buf (zeros past its end). */
static int read_file(const char *dir, const char *name, unsigned char *buf,
                     size_t len, off_t off)
{
    char path[512];
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    memset(buf, 0, len);
    n = pread(fd, buf, len, off);
    close(fd);
    return n < 0 ? -1 : 0;
}

int fimg_capture(const char *dir, unsigned flags, const unsigned char ops[FIMG_OPS],
                 unsigned char **out, size_t *size)
{
    size_t dmax = (size_t)(FIMG_PAGES_MAX + 1) * FIMG_PAGE;
    size_t lmax = 3 * LOG_BLOCK + (size_t)(FIMG_BLOCKS_MAX + 1) * LOG_BLOCK;
    unsigned char *d = malloc(dmax), *l = malloc(lmax), *img = NULL;
    unsigned npages = 0, nblocks = 0, i;
    int rc = -1;

    if (d == NULL || l == NULL || read_file(dir, "data.dkv", d, dmax, 0) != 0 ||
        read_file(dir, "redo.log", l, 3 * LOG_BLOCK, 0) != 0 ||
        read_file(dir, "redo.log", l + 3 * LOG_BLOCK, lmax - 3 * LOG_BLOCK,
                  LOG_DATA_OFF) != 0)
        goto out;
    if (load_le64(l + LH_OFF_CAPACITY) != FIMG_LOG_CAPACITY)
        goto out;
    for (i = 0; i <= FIMG_PAGES_MAX; i++)
        if (!all_zero(d + (size_t)i * FIMG_PAGE, FIMG_PAGE))
            npages = i + 1;
    for (i = 0; i <= FIMG_BLOCKS_MAX; i++)
        if (!all_zero(l + (size_t)(3 + i) * LOG_BLOCK, LOG_BLOCK))
            nblocks = i + 1;
    if (npages > FIMG_PAGES_MAX || nblocks > FIMG_BLOCKS_MAX) {
        fprintf(stderr, "fuzz image: %u pages, %u log blocks: too many\n", npages, nblocks);
        goto out;
    }
    *size = FIMG_HDR + (size_t)npages * FIMG_PAGE + (size_t)(3 + nblocks) * LOG_BLOCK;
    img = calloc(1, *size);
    if (img == NULL)
        goto out;
    img[0] = (unsigned char)flags;
    store_le16(img + 2, (uint16_t)npages);
    store_le16(img + 4, (uint16_t)nblocks);
    memcpy(img + 6, ops, FIMG_OPS);
    memcpy(img + FIMG_HDR, d, (size_t)npages * FIMG_PAGE);
    memcpy(img + FIMG_HDR + (size_t)npages * FIMG_PAGE, l,
           (size_t)(3 + nblocks) * LOG_BLOCK);
    *out = img;
    rc = 0;
out:
    free(d);
    free(l);
    return rc;
}

/* ---- directories ------------------------------------------------------------------- */

int fimg_scratch_dir(char *out, size_t cap, const char *tag)
{
    struct stat st;
    const char *parent = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
                         access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

    snprintf(out, cap, "%s/dkv-%s-XXXXXX", parent, tag);
    return mkdtemp(out) != NULL ? 0 : -1;
}

void fimg_remove_dir(const char *dir)
{
    char path[1024];
    struct dirent *de;
    DIR *d = opendir(dir);

    while (d != NULL && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }
    if (d != NULL)
        closedir(d);
    rmdir(dir);
}

/* ---- the seeds ------------------------------------------------------------------------ */

int fimg_create_small(const char *dir)
{
    struct store_config cfg = { .pool_size = 64 * FIMG_PAGE, .page_size = FIMG_PAGE,
                                .io_engine = DKV_IO_PSYNC, .direct = 0,
                                .commit_mode = DKV_COMMIT_SYNC, .create = 1,
                                .log_capacity = FIMG_LOG_CAPACITY,
                                .log_buffer = 1u << 20, .apply = btree_redo };
    struct store *s;
    struct btree *bt;
    int rc = store_open(dir, &cfg, &s, NULL);

    if (rc != DKV_OK)
        return rc;
    rc = btree_open(s, &bt);
    if (rc != DKV_OK) {
        store_abandon(s);
        return rc;
    }
    btree_close(bt);
    return store_close(s);
}

static void seed_options(dkv_options *o)
{
    dkv_options_init(o);
    o->pool_size = 256 * FIMG_PAGE;
    o->direct = 0;
    o->io_engine = DKV_IO_PSYNC;
    o->create_if_missing = 0;
    o->commit_mode = DKV_COMMIT_ASYNC;   /* commits share log blocks: small images */
}

/* The writes of one scenario: keys [0, n) at version v, long values on
   every long-th key (0: none), then deletes of every del-th key. */
static int load(dkv_db *db, unsigned n, unsigned v, unsigned lng, unsigned del)
{
    unsigned char val[12000];
    dkv_batch *b = dkv_batch_new();
    char k[32];
    unsigned i;
    int rc = b ? DKV_OK : DKV_ERR_NOMEM;

    for (i = 0; i < n && rc == DKV_OK; i++) {
        size_t vl = fimg_value(val, sizeof(val), i, v);
        if (lng != 0 && i % lng == 0) {
            memset(val + vl, (int)i, sizeof(val) - vl);
            vl = 4200 + (i * 131u) % 3000u;
        }
        if (i % 4 == 3) {
            rc = dkv_batch_put(b, k, fimg_key(k, i), val, vl);
            if (rc == DKV_OK && i % 8 == 7) {
                rc = dkv_write(db, b);
                dkv_batch_clear(b);
            }
        } else {
            rc = dkv_put(db, k, fimg_key(k, i), val, vl);
        }
    }
    if (rc == DKV_OK)
        rc = dkv_write(db, b);
    for (i = 0; del != 0 && i < n && rc >= 0; i += del)
        rc = dkv_delete(db, k, fimg_key(k, i));
    dkv_batch_free(b);
    return rc < 0 ? rc : DKV_OK;
}

struct scenario {
    unsigned keys, version, lng, del;
    int      crash;                 /* 1: a second session is killed */
    unsigned keys2, lng2, del2;
};

/* Runs one scenario in dir; 0 or -1. */
static int run_scenario(const char *dir, const struct scenario *sc)
{
    dkv_options o;
    dkv_db *db;
    pid_t pid;
    int st;

    seed_options(&o);
    if (fimg_create_small(dir) != DKV_OK || dkv_open(dir, &o, &db) != DKV_OK)
        return -1;
    if (load(db, sc->keys, sc->version, sc->lng, sc->del) != DKV_OK) {
        dkv_close(db);
        return -1;
    }
    if (dkv_close(db) != DKV_OK)
        return -1;
    if (!sc->crash)
        return 0;
    /* A session that ends without a close: its log holds what the data
       file does not (recovery's work). */
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (dkv_open(dir, &o, &db) != DKV_OK ||
            load(db, sc->keys2, sc->version + 1, sc->lng2, sc->del2) != DKV_OK ||
            dkv_sync(db) != DKV_OK)
            _exit(1);
        _exit(0);
    }
    return waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int fimg_make_seeds(const char *scratch_parent, fimg_seed_fn fn, void *arg)
{
    static const struct scenario scs[] = {
        { 0, 1, 0, 0, 0, 0, 0, 0 },             /* empty */
        { 40, 1, 0, 0, 0, 0, 0, 0 },            /* one leaf */
        { FIMG_KEYS, 1, 0, 5, 0, 0, 0, 0 },     /* two levels, deletes */
        { FIMG_KEYS, 1, 9, 4, 0, 0, 0, 0 },     /* overflow chains */
        { 30, 1, 0, 0, 1, 64, 0, 3 },           /* recovery: splits, deletes */
        { FIMG_KEYS, 1, 7, 0, 1, 48, 5, 6 },    /* recovery: long values, purge */
    };
    static const unsigned char ops[3][FIMG_OPS] = {
        { 0, 1, 2, 5, 6, 0, 1, 3, 4, 7 },
        { 1, 9, 17, 25, 33, 41, 49, 57, 65, 73 },  /* scans and gets */
        { 2, 3, 6, 12, 14, 5, 6, 1, 7, 0 },        /* writes, reopen */
    };
    char dir[512];
    unsigned i, j, count = 0;

    for (i = 0; i < sizeof(scs) / sizeof(scs[0]); i++) {
        snprintf(dir, sizeof(dir), "%s/seed-XXXXXX", scratch_parent);
        if (mkdtemp(dir) == NULL)
            return -1;
        if (run_scenario(dir, &scs[i]) != 0) {
            fprintf(stderr, "fuzz seeds: scenario %u failed\n", i);
            fimg_remove_dir(dir);
            return -1;
        }
        for (j = 0; j < 3; j++) {
            unsigned char *img;
            size_t size;
            unsigned flags = j == 2 ? FIMG_FIX_BLOCKS : FIMG_FIX_PAGES | FIMG_FIX_BLOCKS |
                                                        FIMG_FIX_MTRS;
            if (fimg_capture(dir, flags, ops[j], &img, &size) != 0) {
                fprintf(stderr, "fuzz seeds: scenario %u does not fit an image\n", i);
                fimg_remove_dir(dir);
                return -1;
            }
            fn(arg, img, size);
            free(img);
            count++;
        }
        fimg_remove_dir(dir);
    }
    return (int)count;
}
