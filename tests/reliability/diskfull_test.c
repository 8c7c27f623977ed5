/*
 * diskfull_test.c - a disk that fills up for real: the database on a small
 * ext4 file system (an image file through a loop device), written through
 * the public API until DKV_ERR_NOSPACE; then every acknowledged write must
 * be there, the failed write all or nothing; space is freed (a filler file
 * made beside the database is deleted), writing goes on, and after a close
 * and a reopen nothing is lost.
 *
 * The file system: a 384 MiB image (the redo log alone takes 256 MiB: the
 * public API creates it at that size), made with mkfs.ext4 and mounted
 * through losetup, in TMPDIR.  That needs root, losetup, mkfs.ext4 and
 * loop devices.  Where any is missing, the same steps run on the
 * fault-injecting device of fault_hook.h (the data file may not grow past
 * a limit: its allocations fail with ENOSPC until the limit is raised),
 * and the output says so.  Exit 77 (skipped) only if neither works.
 *
 * Writes are batches of 16 puts of 1..3 KiB values (DKV_COMMIT_SYNC); a
 * call that fails must fail with DKV_ERR_NOSPACE.  When one does: every
 * key acknowledged so far is read back and compared, the failed batch's
 * keys must be all present or all absent; then, after the space is freed,
 * the writes go on on the same handle.  A handle the full disk left
 * failed (it returns the error for every write) is closed and reopened -
 * the test says which happened - and then the writes go on.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dkv.h"
#include "pager/pager.h"
#include "test_util.h"
#include "rel_util.h"
#include "fault_hook.h"

#define PS           4096u
#define POOL_BYTES   (4u << 20)
#define BATCH        16u
#define MAX_KEYS     200000u
#define IMAGE_MB     384u
#define SPARE_MB     6u                   /* free space left for the database */
#define AFTER_BATCHES 40u                 /* batches written after the freeing */

struct state {
    const char *where;                    /* "ext4 on a loop device", ...      */
    char        dbdir[512], filler[512];
    uint32_t   *gen;                      /* per key: 0 absent, else the batch */
    unsigned    nkeys, batches, failures, lost;
    uint64_t    seed;
    struct fault_plan plan;
    int         simulated;
};

static void key_of(unsigned k, char *out, size_t *len)
{
    *len = (size_t)snprintf(out, 32, "dfk%08u", k);
}

static uint32_t vlen_of(unsigned k, uint32_t gen)
{
    return 1024 + (k * 131 + gen * 17) % 2048;
}

static void value_of(const struct state *st, unsigned k, uint32_t gen, unsigned char *v)
{
    test_fill(v, vlen_of(k, gen), st->seed ^ ((uint64_t)k << 24) ^ gen);
}

/* Writes batch number gen: the next BATCH new keys.  Returns the rc. */
static int write_batch(dkv_db *db, struct state *st, uint32_t gen, unsigned first)
{
    unsigned char v[4096];
    char key[32];
    size_t klen;
    dkv_batch *b = dkv_batch_new();
    unsigned i;
    int rc = b ? DKV_OK : DKV_ERR_NOMEM;

    for (i = 0; i < BATCH && rc == DKV_OK; i++) {
        key_of(first + i, key, &klen);
        value_of(st, first + i, gen, v);
        rc = dkv_batch_put(b, key, klen, v, vlen_of(first + i, gen));
    }
    if (rc == DKV_OK)
        rc = dkv_write(db, b);
    dkv_batch_free(b);
    return rc;
}

/* Deletes keys first..first+BATCH-1 in one batch; the model follows. */
static int delete_batch(dkv_db *db, struct state *st, unsigned first)
{
    dkv_batch *b = dkv_batch_new();
    char key[32];
    size_t klen;
    unsigned i;
    int rc = b ? DKV_OK : DKV_ERR_NOMEM;

    for (i = 0; i < BATCH && rc == DKV_OK; i++) {
        key_of(first + i, key, &klen);
        rc = dkv_batch_delete(b, key, klen);
    }
    if (rc == DKV_OK)
        rc = dkv_write(db, b);
    dkv_batch_free(b);
    for (i = 0; rc == DKV_OK && i < BATCH; i++)
        st->gen[first + i] = 0;
    return rc;
}

/* Reads every key written or tried; 0 when all are as acknowledged and the
   failed batch (first_failed, or ~0u) is whole or absent. */
static unsigned check_all(dkv_db *db, struct state *st, unsigned upto, unsigned failed_first,
                          uint32_t failed_gen)
{
    unsigned char v[4096];
    char key[32];
    size_t klen, vlen;
    unsigned k, bad = 0, yes = 0, no = 0;
    int rc;

    for (k = 0; k < upto; k++) {
        int in_failed = failed_first != ~0u && k >= failed_first && k < failed_first + BATCH;
        key_of(k, key, &klen);
        rc = dkv_get(db, key, klen, v, sizeof(v), &vlen);
        if (in_failed) {
            if (rc == DKV_OK && vlen == vlen_of(k, failed_gen) &&
                test_mismatch(v, vlen, st->seed ^ ((uint64_t)k << 24) ^ failed_gen) ==
                    (size_t)-1)
                yes++;
            else if (rc == DKV_NOTFOUND)
                no++;
            else
                bad++;
            continue;
        }
        if (st->gen[k] == 0) {
            bad += rc != DKV_NOTFOUND;
            continue;
        }
        if (rc != DKV_OK || vlen != vlen_of(k, st->gen[k]) ||
            test_mismatch(v, vlen, st->seed ^ ((uint64_t)k << 24) ^ st->gen[k]) !=
                (size_t)-1) {
            if (bad++ < 3)
                printf("  key %u: %s, %zu bytes\n", k, dkv_strerror(rc), vlen);
        }
    }
    if (yes && no) {
        printf("  the failed batch is half applied: %u keys in, %u out\n", yes, no);
        bad++;
    }
    return bad;
}

/* ---- the file system --------------------------------------------------------- */

static int sh(const char *cmd)
{
    int rc = system(cmd);

    return rc == 0 ? 0 : -1;
}

static char image[512], mnt[512], loopdev[64];

static void teardown(void)
{
    char cmd[700];

    if (mnt[0]) {
        /* The kernel may hold the closed files for a moment (io_uring's
           rings go away in deferred work): try again for a while, then
           detach lazily (the file system goes once they let go). */
        int tries;
        snprintf(cmd, sizeof(cmd), "umount '%s' 2>/dev/null", mnt);
        for (tries = 0; tries < 30 && sh(cmd) != 0; tries++)
            usleep(100000);
        if (tries == 30) {
            snprintf(cmd, sizeof(cmd), "umount -l '%s' 2>/dev/null", mnt);
            if (sh(cmd) != 0)
                printf("diskfull_test: could not unmount %s\n", mnt);
        }
        rmdir(mnt);
    }
    if (loopdev[0]) {
        snprintf(cmd, sizeof(cmd), "losetup -d %s 2>/dev/null", loopdev);
        sh(cmd);
    }
    if (image[0])
        unlink(image);
    mnt[0] = loopdev[0] = image[0] = '\0';
}

static int setup_loop(struct state *st)
{
    char cmd[700];
    FILE *p;

    if (geteuid() != 0 || sh("command -v losetup >/dev/null 2>&1") != 0 ||
        sh("command -v mkfs.ext4 >/dev/null 2>&1") != 0)
        return -1;
    snprintf(image, sizeof(image), "%s/dkv-full-XXXXXX", rel_parent_dir());
    {
        int fd = mkstemp(image);
        if (fd < 0 || ftruncate(fd, (off_t)IMAGE_MB << 20) != 0) {
            if (fd >= 0)
                close(fd);
            image[0] = '\0';
            return -1;
        }
        close(fd);
    }
    snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F -m 0 '%s' >/dev/null 2>&1", image);
    if (sh(cmd) != 0)
        return -1;
    snprintf(cmd, sizeof(cmd), "losetup -f --show '%s' 2>/dev/null", image);
    p = popen(cmd, "r");
    if (p == NULL || fgets(loopdev, sizeof(loopdev), p) == NULL) {
        if (p)
            pclose(p);
        loopdev[0] = '\0';
        return -1;
    }
    pclose(p);
    loopdev[strcspn(loopdev, "\n")] = '\0';
    snprintf(mnt, sizeof(mnt), "%s/dkv-mnt-XXXXXX", rel_parent_dir());
    if (mkdtemp(mnt) == NULL) {
        mnt[0] = '\0';
        return -1;
    }
    snprintf(cmd, sizeof(cmd), "mount '%s' '%s' 2>/dev/null", loopdev, mnt);
    if (sh(cmd) != 0) {
        rmdir(mnt);
        mnt[0] = '\0';
        return -1;
    }
    atexit(teardown);                     /* also on an early exit */
    snprintf(st->dbdir, sizeof(st->dbdir), "%s/db", mnt);
    snprintf(st->filler, sizeof(st->filler), "%s/filler", mnt);
    st->where = "ext4 on a loop device";
    return 0;
}

/* Fills the file system but SPARE_MB with a filler file. */
static int make_filler(const struct state *st)
{
    struct statvfs vfs;
    uint64_t avail;
    int fd;

    if (statvfs(st->filler[0] ? mnt : "/", &vfs) != 0)
        return -1;
    avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    if (avail <= (uint64_t)SPARE_MB << 20)
        return 0;
    fd = open(st->filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    if (fallocate(fd, 0, 0, (off_t)(avail - ((uint64_t)SPARE_MB << 20))) != 0) {
        close(fd);
        return -1;
    }
    fsync(fd);
    close(fd);
    return 0;
}

/* ---- the test ------------------------------------------------------------------ */

static dkv_db *open_db(const struct state *st)
{
    dkv_options o;
    dkv_db *db = NULL;
    int rc;

    dkv_options_init(&o);
    o.page_size = PS;
    o.pool_size = POOL_BYTES;
    rc = dkv_open(st->dbdir, &o, &db);
    if (rc != DKV_OK)
        printf("diskfull_test: dkv_open: %s\n", dkv_strerror(rc));
    return db;
}

/* Writes batches until one fails; returns its rc (DKV_OK if max reached). */
static int fill(dkv_db *db, struct state *st, unsigned max_batches, unsigned *failed_first,
                uint32_t *failed_gen)
{
    unsigned n;
    int rc = DKV_OK;

    for (n = 0; n < max_batches && st->nkeys + BATCH <= MAX_KEYS; n++) {
        uint32_t gen = ++st->batches;
        rc = write_batch(db, st, gen, st->nkeys);
        if (rc != DKV_OK) {
            *failed_first = st->nkeys;
            *failed_gen = gen;
            return rc;
        }
        for (unsigned i = 0; i < BATCH; i++)
            st->gen[st->nkeys + i] = gen;
        st->nkeys += BATCH;
    }
    return rc;
}

static int run(struct state *st)
{
    unsigned failed_first = ~0u, bad, before;
    uint32_t failed_gen = 0;
    dkv_db *db;
    int rc, handle_failed = 0;

    db = open_db(st);
    if (db == NULL)
        return 1;
    if (!st->simulated && make_filler(st) != 0) {
        printf("diskfull_test: cannot make the filler file: %s\n", strerror(errno));
        dkv_close(db);
        return 1;
    }
    /* 1. Fill until the disk is full. */
    rc = fill(db, st, ~0u, &failed_first, &failed_gen);
    printf("diskfull_test: %s: %u batches (%u keys, about %u MiB) acknowledged, then %s\n",
           st->where, st->batches - 1, st->nkeys, st->nkeys * 2 / 1024, dkv_strerror(rc));
    if (rc != DKV_ERR_NOSPACE) {
        printf("FAIL: expected DKV_ERR_NOSPACE\n");
        dkv_close(db);
        return 1;
    }
    /* 2. Everything acknowledged is there; the failed batch whole or not. */
    bad = check_all(db, st, st->nkeys + BATCH, failed_first, failed_gen);
    if (bad) {
        printf("FAIL: %u keys wrong on the full disk\n", bad);
        dkv_close(db);
        return 1;
    }
    /* 3. Deletes still work on the full disk (a batch of them: no page is
       allocated); then free space and go on. */
    rc = delete_batch(db, st, 0);
    printf("diskfull_test: a batch of %u deletes on the full disk: %s\n", BATCH,
           dkv_strerror(rc));
    if (rc != DKV_OK) {
        dkv_close(db);
        return 1;
    }
    if (st->simulated) {
        pthread_mutex_lock(&st->plan.lock);
        st->plan.space_limit = 0;
        pthread_mutex_unlock(&st->plan.lock);
    }
    else if (unlink(st->filler) != 0)
        return 1;
    before = st->nkeys;
    rc = fill(db, st, 1, &failed_first, &failed_gen);
    if (rc != DKV_OK) {
        /* The handle stayed failed: reopen (recovery) and go on. */
        handle_failed = 1;
        printf("diskfull_test: after the space was freed the handle still fails (%s); "
               "closing and reopening\n", dkv_strerror(rc));
        if (rc != DKV_ERR_NOSPACE) {
            printf("FAIL: a write failed with %s, not DKV_ERR_NOSPACE\n", dkv_strerror(rc));
            dkv_close(db);
            return 1;
        }
        dkv_close(db);
        db = open_db(st);
        if (db == NULL)
            return 1;
        failed_first = st->nkeys;         /* the batch just refused */
        rc = fill(db, st, AFTER_BATCHES, &failed_first, &failed_gen);
    } else {
        rc = fill(db, st, AFTER_BATCHES - 1, &failed_first, &failed_gen);
    }
    if (rc != DKV_OK) {
        printf("FAIL: writing after the space was freed: %s\n", dkv_strerror(rc));
        dkv_close(db);
        return 1;
    }
    printf("diskfull_test: space freed, %u more batches written on the %s handle\n",
           (st->nkeys - before) / BATCH, handle_failed ? "reopened" : "same");
    /* 4. Close, reopen, nothing lost. */
    rc = dkv_close(db);
    if (rc != DKV_OK) {
        printf("FAIL: dkv_close: %s\n", dkv_strerror(rc));
        return 1;
    }
    db = open_db(st);
    if (db == NULL)
        return 1;
    bad = check_all(db, st, st->nkeys + BATCH, ~0u, 0);
    rc = dkv_close(db);
    printf("diskfull_test: after reopening: %u keys checked, %u wrong, close %s\n",
           st->nkeys, bad, dkv_strerror(rc));
    return bad == 0 && rc == DKV_OK ? 0 : 1;
}

int main(void)
{
    struct state st;
    struct test_dir dir = { "" };
    int rc;

    memset(&st, 0, sizeof(st));
    st.seed = test_seed("diskfull_test");
    st.gen = calloc(MAX_KEYS + BATCH, sizeof(uint32_t));
    if (st.gen == NULL)
        return 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* DKV_DISKFULL_SIMULATE=1 skips the loop device. */
    if (getenv("DKV_DISKFULL_SIMULATE") != NULL || setup_loop(&st) != 0) {
        teardown();
        /* The fallback: the injecting device, the data file held to 16 MiB. */
        if (test_dir_make(&dir, rel_parent_dir()) != 0)
            return 77;
        printf("diskfull_test: %s; using the fault-injecting device instead\n",
               getenv("DKV_DISKFULL_SIMULATE") ? "DKV_DISKFULL_SIMULATE is set"
                                               : "no loop device here (needs root, "
                                                 "losetup, mkfs.ext4, loop devices)");
        snprintf(st.dbdir, sizeof(st.dbdir), "%s/db", dir.path);
        st.where = "the fault-injecting device (data file limited to 16 MiB)";
        st.simulated = 1;
        st.plan.space_limit = 16u << 20;
        fault_arm(&st.plan, FK_NONE, 0);
    }
    rc = run(&st);
    if (st.simulated) {
        char path[600];
        fault_disarm(&st.plan);
        snprintf(path, sizeof(path), "rm -rf '%s'", dir.path);
        sh(path);
    } else {
        char path[600];
        snprintf(path, sizeof(path), "rm -rf '%s'", st.dbdir);
        sh(path);
        teardown();
    }
    free(st.gen);
    printf("diskfull_test: %s\n", rc == 0 ? "passed" : "FAILED");
    return rc;
}
