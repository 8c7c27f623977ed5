/*
 * powerloss_test.c - simulated power cuts: unsynced writes to the data
 * file, the doublewrite file and the log are dropped, kept or torn at
 * 512-byte sector boundaries, and recovery must bring back every commit
 * acknowledged with DKV_COMMIT_SYNC and no part of any other.
 *
 * The disk modelled: 512-byte logical sectors, no atomic writes of more
 * than one sector, a volatile write cache.  A write is durable once an
 * fdatasync of its file that started after the write completed has
 * returned; until then it may reach the disk whole, not at all, or in
 * part (any subset of its sectors), in any order with other unsynced
 * writes.  A file's growth (fallocate) is durable at the next sync too.
 *
 * How: one process runs a workload through the public API (4 KiB pages, a
 * 48-page pool, so the page cleaner writes through the doublewrite file
 * all the time; puts, deletes, batches of 2..6, checkpoints; all
 * DKV_COMMIT_SYNC) while the I/O hook of pager/io.h records every write's
 * bytes, its completion, every allocation and every sync, and the test
 * notes, for each operation, the event count when it started and when it
 * returned (its acknowledgement).  Then, for each cut point k (a random
 * event number), it builds a directory holding the durable writes before
 * k and a random choice of the unsynced ones (kept, dropped or torn; the
 * volatile writes kept are applied in submission order, so an older write
 * can win over a newer one that was dropped), counts the data pages whose
 * checksum fails (torn), opens it with dkv_open (recovery: torn pages
 * restored from the doublewrite file, then redo), checks every key
 * against the model (operations acknowledged before k: present; the one
 * in flight at k: all or nothing; later ones: absent), closes it, and
 * checks that every page of the data file in use now passes its checksum
 * (each torn page was repaired).  One cut in 24 falls inside the dkv_open
 * that created the database: the next open must create it again (or
 * find it created), never refuse it.
 *
 * `powerloss_test [CUTS]`: CUTS cut points (default 1000, spread over
 * several workloads); DKV_TEST_SCALE multiplies them; DKV_TEST_SEED
 * replays.  Prints the counts: cuts, lost commits, partial batches, torn
 * pages found and repaired.  Exits 0 only when nothing was lost.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dkv.h"
#include "pager/pager.h"
#include "pager/io.h"
#include "pager/page_format.h"
#include "test_util.h"
#include "rel_util.h"

#define PS          4096u
#define POOL_PAGES  48u
#define NKEYS       64u
#define NOPS        160u
#define WORKLOADS   5u
#define SECTOR      512u
#define SHOW_MAX    10u

enum { EV_WRITE, EV_SIZE, EV_SYNC };
enum { PF_DATA, PF_DBLWR, PF_LOG, PF_FILES };
static const char *const pf_name[PF_FILES] = { "data.dkv", "doublewrite.dkv", "redo.log" };

struct event {
    int            type, file;
    uint64_t       off, len;
    unsigned char *data;                 /* EV_WRITE: NULL = zeros           */
    uint64_t       done_seq;             /* completion number; 0: not yet    */
    uint32_t       durable_at;           /* a sync event's index + 1; 0: not */
};

struct recorder {
    pthread_mutex_t      lock;
    struct event        *ev;
    uint32_t             n, cap;
    uint64_t             completions;
    const struct io_req *inflight_req[4096];
    uint32_t             inflight_ev[4096];
    unsigned             ninflight;
};

static struct recorder rec;
static __thread uint32_t tl_event;       /* the event of a synchronous op   */
static __thread uint64_t tl_sync_from;   /* completions when a sync started */

static int file_of(const char *name)
{
    int f;

    for (f = 0; f < PF_FILES; f++)
        if (strcmp(name, pf_name[f]) == 0)
            return f;
    return -1;
}

/* Lock held: appends an event; returns its index. */
static uint32_t push(int type, int file, uint64_t off, uint64_t len, const void *data)
{
    struct event *e;

    if (rec.n == rec.cap) {
        rec.cap = rec.cap ? rec.cap * 2 : 4096;
        rec.ev = realloc(rec.ev, rec.cap * sizeof(*rec.ev));
        if (rec.ev == NULL)
            abort();
    }
    e = &rec.ev[rec.n];
    memset(e, 0, sizeof(*e));
    e->type = type;
    e->file = file;
    e->off = off;
    e->len = len;
    if (data != NULL) {
        e->data = malloc(len);
        if (e->data == NULL)
            abort();
        memcpy(e->data, data, len);
    }
    return rec.n++;
}

static int rec_before(void *arg, const struct io_hook_event *ev, int *rest_err)
{
    int f = file_of(ev->name);

    (void)arg;
    (void)rest_err;
    if (f < 0 || ev->op == IO_HOOK_READ)
        return ev->op == IO_HOOK_ZERO ? IO_HOOK_SPARSE : 0;
    pthread_mutex_lock(&rec.lock);
    switch (ev->op) {
    case IO_HOOK_WRITE:
        if (rec.ninflight == sizeof(rec.inflight_ev) / sizeof(rec.inflight_ev[0]))
            abort();
        rec.inflight_req[rec.ninflight] = ev->req;
        rec.inflight_ev[rec.ninflight++] = push(EV_WRITE, f, ev->off, ev->len, ev->buf);
        break;
    case IO_HOOK_ZERO:
        tl_event = push(EV_WRITE, f, ev->off, ev->len, NULL);
        break;
    case IO_HOOK_ALLOCATE:
        tl_event = push(EV_SIZE, f, ev->off, ev->len, NULL);
        break;
    case IO_HOOK_SYNC:
        tl_sync_from = rec.completions;
        break;
    }
    pthread_mutex_unlock(&rec.lock);
    return ev->op == IO_HOOK_ZERO ? IO_HOOK_SPARSE : 0;
}

static void rec_done(void *arg, const struct io_hook_event *ev, int rc)
{
    int f = file_of(ev->name);
    uint32_t i, s;

    (void)arg;
    if (f < 0 || ev->op == IO_HOOK_READ)
        return;
    pthread_mutex_lock(&rec.lock);
    switch (ev->op) {
    case IO_HOOK_WRITE:
        for (i = 0; i < rec.ninflight && rec.inflight_req[i] != ev->req; i++)
            ;
        if (i < rec.ninflight) {
            if (rc == DKV_OK)
                rec.ev[rec.inflight_ev[i]].done_seq = ++rec.completions;
            rec.inflight_req[i] = rec.inflight_req[--rec.ninflight];
            rec.inflight_ev[i] = rec.inflight_ev[rec.ninflight];
        }
        break;
    case IO_HOOK_ZERO:
    case IO_HOOK_ALLOCATE:
        if (rc == DKV_OK)
            rec.ev[tl_event].done_seq = ++rec.completions;
        break;
    case IO_HOOK_SYNC:
        if (rc != DKV_OK)
            break;
        s = push(EV_SYNC, f, 0, 0, NULL);
        for (i = 0; i < s; i++) {
            struct event *e = &rec.ev[i];
            if (e->file == f && e->type != EV_SYNC && e->durable_at == 0 &&
                e->done_seq != 0 && e->done_seq <= tl_sync_from)
                e->durable_at = s + 1;
        }
        break;
    }
    pthread_mutex_unlock(&rec.lock);
}

/* While a cut is checked: zero fills become holes, nothing is recorded. */
static int sparse_only(void *arg, const struct io_hook_event *ev, int *rest_err)
{
    (void)arg;
    (void)rest_err;
    return ev->op == IO_HOOK_ZERO ? IO_HOOK_SPARSE : 0;
}

static void rec_reset(void)
{
    uint32_t i;

    for (i = 0; i < rec.n; i++)
        free(rec.ev[i].data);
    rec.n = 0;
    rec.completions = 0;
    rec.ninflight = 0;
}

static uint32_t rec_count(void)
{
    uint32_t n;

    pthread_mutex_lock(&rec.lock);
    n = rec.n;
    pthread_mutex_unlock(&rec.lock);
    return n;
}

/* ---- building the directory at a cut ------------------------------------ */

struct counts {
    unsigned long cuts, lost, partial, bad_bytes, read_errors, scan_errors;
    unsigned long open_failed, close_failed, unrepaired;
    unsigned long torn_pages, torn_writes, dropped, kept, durable_writes;
    unsigned long acked, inflight;
    unsigned      shown;
};

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const unsigned char *p = buf;

    while (len > 0) {
        ssize_t w = pwrite(fd, p, len, (off_t)off);
        if (w <= 0)
            return -1;
        p += w;
        off += (uint64_t)w;
        len -= (size_t)w;
    }
    return 0;
}

static void grow(int fd, uint64_t size)
{
    struct stat st;

    if (fstat(fd, &st) == 0 && (uint64_t)st.st_size < size &&
        ftruncate(fd, (off_t)size) != 0)
        abort();
}

/* Applies sectors [from, to) of write e. */
static void apply_sectors(int fd, const struct event *e, uint64_t from, uint64_t to,
                          unsigned char *zeros)
{
    uint64_t a = from * SECTOR, b = to * SECTOR;

    if (b > e->len)
        b = e->len;
    if (a >= b)
        return;
    if (e->data == NULL) {
        struct stat st;
        if (fstat(fd, &st) == 0 && (uint64_t)st.st_size <= e->off + a) {
            grow(fd, e->off + b);
            return;
        }
        for (; a < b; a += 1u << 20) {
            uint64_t n = b - a < (1u << 20) ? b - a : (1u << 20);
            if (pwrite_all(fd, zeros, n, e->off + a) != 0)
                abort();
        }
        return;
    }
    if (pwrite_all(fd, e->data + a, b - a, e->off + a) != 0)
        abort();
}

/* Writes the files of the cut at event k into dir. */
static void build_cut(const char *dir, uint32_t k, uint64_t *rng, struct counts *c,
                      unsigned char *zeros)
{
    int fd[PF_FILES], f;
    uint32_t i;
    char path[512];
    unsigned keep_pct = (unsigned)(test_splitmix64(rng) % 4) * 33 + 1;

    for (f = 0; f < PF_FILES; f++) {
        snprintf(path, sizeof(path), "%s/%s", dir, pf_name[f]);
        fd[f] = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (fd[f] < 0)
            abort();
    }
    for (i = 0; i < k; i++) {
        const struct event *e = &rec.ev[i];
        int durable = e->durable_at != 0 && e->durable_at <= k;
        unsigned r;
        uint64_t sectors, s;

        if (e->type == EV_SYNC)
            continue;
        if (e->type == EV_SIZE) {
            if (durable || test_splitmix64(rng) % 2)
                grow(fd[e->file], e->off + e->len);
            continue;
        }
        sectors = (e->len + SECTOR - 1) / SECTOR;
        if (durable) {
            c->durable_writes++;
            apply_sectors(fd[e->file], e, 0, sectors, zeros);
            continue;
        }
        r = (unsigned)(test_splitmix64(rng) % 100);
        if (r >= keep_pct + 30) {                  /* lost in the cache */
            c->dropped++;
            continue;
        }
        if (r < keep_pct || sectors < 2) {         /* reached the disk whole */
            c->kept++;
            apply_sectors(fd[e->file], e, 0, sectors, zeros);
            continue;
        }
        c->torn_writes++;                          /* in part */
        switch (test_splitmix64(rng) % 3) {
        case 0:                                    /* a prefix */
            apply_sectors(fd[e->file], e, 0, 1 + test_splitmix64(rng) % (sectors - 1),
                          zeros);
            break;
        case 1:                                    /* a suffix */
            apply_sectors(fd[e->file], e, 1 + test_splitmix64(rng) % (sectors - 1),
                          sectors, zeros);
            break;
        default:                                   /* any sectors */
            for (s = 0; s < sectors; s++)
                if (test_splitmix64(rng) % 2)
                    apply_sectors(fd[e->file], e, s, s + 1, zeros);
        }
    }
    for (f = 0; f < PF_FILES; f++)
        close(fd[f]);
}

/* Data pages that fail their checksum (never-written pages excepted);
   with in_use, only pages below the header's page count. */
static unsigned bad_pages(const char *dir, int in_use)
{
    char path[512];
    unsigned char *page = malloc(PS);
    uint64_t count = ~0ull, no;
    unsigned bad = 0;
    int fd;

    snprintf(path, sizeof(path), "%s/data.dkv", dir);
    fd = open(path, O_RDONLY);
    if (fd < 0 || page == NULL)
        abort();
    for (no = 0; no < count && pread(fd, page, PS, (off_t)(no * PS)) == (ssize_t)PS;
         no++) {
        int rc = page_verify(page, PS, (uint32_t)no);
        if (no == 0 && in_use && rc == DKV_OK)
            memcpy(&count, page + FHDR_OFF_PAGE_COUNT, 8);
        bad += rc == DKV_ERR_CORRUPT;
    }
    close(fd);
    free(page);
    return bad;
}

/* ---- the workload and the checks ------------------------------------------ */

static void options(dkv_options *o)
{
    dkv_options_init(o);
    o->page_size = PS;
    o->pool_size = (size_t)POOL_PAGES * PS;
    o->commit_mode = DKV_COMMIT_SYNC;
}

static void show(struct counts *c, const char *what, unsigned wl, uint32_t k,
                 const char *detail, const char *dir)
{
    if (c->shown++ >= SHOW_MAX)
        return;
    printf("FAIL workload %u cut at event %u: %s: %s (kept %s)\n", wl, k, what, detail,
           dir);
    fflush(stdout);
}

static int check_cut(const struct rel_work *w, const uint32_t *start_at,
                     const uint32_t *ack_at, unsigned nops, uint32_t k, unsigned wl,
                     uint64_t *rng, struct counts *c, struct rel_bufs *bf,
                     unsigned char *zeros)
{
    struct rel_model m;
    struct rel_verdict v;
    struct test_dir dir;
    dkv_options o;
    dkv_db *db = NULL;
    char detail[300];
    unsigned i, torn, before = c->shown;
    int rc;

    if (test_dir_make(&dir, rel_fast_dir()) != 0)
        exit(1);
    build_cut(dir.path, k, rng, c, zeros);
    torn = bad_pages(dir.path, 0);
    c->torn_pages += torn;
    rel_model_init(&m, w);
    for (i = 0; i < nops; i++) {
        if (ack_at[i] != 0 && ack_at[i] <= k) {
            rel_model_apply(&m, w, i, 1);
            c->acked++;
        } else if (start_at[i] < k) {
            rel_model_apply(&m, w, i, 0);
            c->inflight++;
        }
    }
    c->cuts++;
    options(&o);
    io_hook_set(&(struct io_hook){ .before = sparse_only });
    rc = dkv_open(dir.path, &o, &db);
    if (rc != DKV_OK) {
        struct pager_corruption pc = pager_last_corruption();
        c->open_failed++;
        snprintf(detail, sizeof(detail), "%s %s (%u torn pages)", dkv_strerror(rc),
                 rc == DKV_ERR_CORRUPT && pc.what ? pc.what : "", torn);
        show(c, "recovery failed", wl, k, detail, dir.path);
    } else {
        rel_check(db, w, &m, bf, &v);
        c->lost += v.lost;
        c->partial += v.partial;
        c->bad_bytes += v.bad_bytes;
        c->read_errors += v.read_errors;
        c->scan_errors += v.scan_errors;
        if (rel_problems(&v))
            show(c, "wrong contents", wl, k, v.first, dir.path);
        rc = dkv_close(db);
        if (rc != DKV_OK) {
            c->close_failed++;
            show(c, "close failed", wl, k, dkv_strerror(rc), dir.path);
        } else if ((i = bad_pages(dir.path, 1)) != 0) {
            c->unrepaired += i;
            snprintf(detail, sizeof(detail), "%u pages in use fail their checksum "
                     "after recovery and close (%u torn before)", i, torn);
            show(c, "torn page not repaired", wl, k, detail, dir.path);
        }
    }
    io_hook_set(NULL);
    rel_model_free(&m);
    if (c->shown == before || c->shown > SHOW_MAX)
        test_dir_remove(&dir);
    return c->shown == before;
}

/* Runs workload wl recording its I/O, then checks `cuts` cut points. */
static void one_workload(uint64_t seed, unsigned wl, unsigned cuts, struct counts *c,
                         struct rel_bufs *bf, unsigned char *zeros)
{
    struct io_hook h = { .before = rec_before, .done = rec_done, .arg = NULL };
    uint32_t *start_at = calloc(NOPS, sizeof(uint32_t));
    uint32_t *ack_at = calloc(NOPS, sizeof(uint32_t));
    uint32_t opened, total, k, *syncs, nsyncs = 0, *logsyncs, nlogsyncs = 0;
    uint64_t rng = seed ^ 0xC0FFEEull;
    struct rel_work w;
    struct test_dir dir;
    dkv_options o;
    dkv_db *db = NULL;
    unsigned i;
    int rc;

    if (start_at == NULL || ack_at == NULL || rel_work_make(&w, seed, NKEYS, NOPS, 23, 6))
        exit(1);
    if (test_dir_make(&dir, rel_fast_dir()) != 0)
        exit(1);
    options(&o);
    rec_reset();
    io_hook_set(&h);
    rc = dkv_open(dir.path, &o, &db);
    if (rc != DKV_OK) {
        printf("powerloss_test: dkv_open: %s\n", dkv_strerror(rc));
        exit(1);
    }
    opened = rec_count();
    for (i = 0; i < NOPS; i++) {
        start_at[i] = rec_count();
        rc = rel_do(db, &w, i, bf);
        if (rc != DKV_OK) {
            printf("powerloss_test: workload %u op %u: %s\n", wl, i, dkv_strerror(rc));
            exit(1);
        }
        ack_at[i] = rec_count();
    }
    /* The cleaner may still write (unsynced) after the last operation. */
    usleep(20000);
    io_hook_set(NULL);
    dkv_close(db);                     /* no thread is left to record */
    total = rec_count();
    syncs = calloc(total + 1, sizeof(uint32_t));
    logsyncs = calloc(total + 1, sizeof(uint32_t));
    if (syncs == NULL || logsyncs == NULL)
        exit(1);
    for (k = opened; k < total; k++) {
        if (rec.ev[k].type == EV_SYNC && rec.ev[k].file == PF_DATA)
            syncs[nsyncs++] = k;
        if (rec.ev[k].type == EV_SYNC && rec.ev[k].file == PF_LOG)
            logsyncs[nlogsyncs++] = k;
    }
    test_dir_remove(&dir);
    for (i = 0; i < cuts; i++) {
        /* A third just before a sync of the data file (its pages written
           in place, not yet synced: where pages tear), a quarter just
           before a sync of the log (a commit's blocks written, not yet
           durable), a sixth right at an acknowledgement, one in 24 while
           dkv_open created the database, the rest anywhere after it. */
        if (i % 24 == 23)
            k = (uint32_t)(test_splitmix64(&rng) % (opened + 1));
        else if (i % 12 < 4 && nsyncs > 0)
            k = syncs[test_splitmix64(&rng) % nsyncs];
        else if (i % 12 < 7 && nlogsyncs > 0)
            k = logsyncs[test_splitmix64(&rng) % nlogsyncs];
        else if (i % 12 < 9)
            k = ack_at[test_splitmix64(&rng) % NOPS];
        else
            k = opened + (uint32_t)(test_splitmix64(&rng) % (total - opened + 1));
        check_cut(&w, start_at, ack_at, NOPS, k, wl, &rng, c, bf, zeros);
    }
    rel_work_free(&w);
    free(syncs);
    free(logsyncs);
    free(start_at);
    free(ack_at);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    uint64_t seed = test_seed("powerloss_test"), rng = seed;
    unsigned cuts = rel_scaled(argc > 1 ? (unsigned)atoi(argv[1]) : 1000) /
                    rel_sanitizer_divisor();
    unsigned workloads = cuts / 200 > WORKLOADS ? cuts / 200 : WORKLOADS, wl;
    unsigned char *zeros = calloc(1, 1u << 20);
    struct rel_bufs *bf = calloc(1, sizeof(*bf));
    struct counts c;
    double t0 = now_s();
    unsigned long bad;

    memset(&c, 0, sizeof(c));
    pthread_mutex_init(&rec.lock, NULL);
    if (rel_sanitizer_divisor() > 1)
        printf("powerloss_test: ThreadSanitizer build: a quarter of the cuts\n");
    if (zeros == NULL || bf == NULL || (bf->b = dkv_batch_new()) == NULL)
        return 1;
    for (wl = 0; wl < workloads; wl++) {
        unsigned n = cuts / workloads + (wl < cuts % workloads);
        one_workload(test_splitmix64(&rng), wl, n, &c, bf, zeros);
    }
    rec_reset();
    bad = c.lost + c.partial + c.bad_bytes + c.read_errors + c.scan_errors +
          c.open_failed + c.close_failed + c.unrepaired;
    printf("powerloss_test: %lu cuts over %u workloads, %.1f s\n", c.cuts, workloads,
           now_s() - t0);
    printf("  unsynced writes: %lu dropped, %lu kept whole, %lu torn at 512-byte "
           "sectors (%lu synced writes replayed)\n",
           c.dropped, c.kept, c.torn_writes, c.durable_writes);
    printf("  torn data pages found %lu, left unrepaired %lu\n", c.torn_pages,
           c.unrepaired);
    printf("  commits checked %lu acknowledged + %lu in flight; lost commits %lu, "
           "partial batches %lu, wrong bytes %lu, read errors %lu, scan errors %lu, "
           "failed recoveries %lu, failed closes %lu\n",
           c.acked, c.inflight, c.lost, c.partial, c.bad_bytes, c.read_errors,
           c.scan_errors, c.open_failed, c.close_failed);
    dkv_batch_free(bf->b);
    free(bf);
    free(zeros);
    return bad == 0 ? 0 : 1;
}
