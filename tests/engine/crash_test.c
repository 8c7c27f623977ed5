/*
 * crash_test.c - kill -9 at random points while a store commits, then
 * recover and check that every acknowledged commit unit is there and no
 * unit is half there (engine/store.c, wal/, pager/mtr.c together).
 *
 * A standalone program (not cmocka): `crash_test [K]` runs K kill points
 * (default 200, the CTest run; `crash_test 5000` for a long manual run).
 * The parent creates a store in a temporary directory (pool of 256 frames
 * of 4 KiB, 8 MiB log, 1 MiB log buffer, O_DIRECT) and allocates 64 test
 * pages (1..64) in committed MTRs.  Then, K times: it forks a child that
 * opens the store (recovering what the last crash left) and commits units
 * forever; every other child has a pool of only 40 frames, so that pages
 * are also evicted (written back early).  A unit is 1..3 MTRs (each begun
 * with store_mtr_start), all but the last without WAL_UNIT_END, the last
 * with WAL_UNIT_END|WAL_SYNC (one unit in four is lazy: WAL_UNIT_END
 * alone, as DKV_COMMIT_ASYNC commits); each MTR X-fixes 1..4 distinct
 * random pages and writes into each, at offset 32, one record: the unit's
 * 8-byte sequence number, a 4-byte unit id derived from it and a filler of
 * 1..4036 bytes (mostly short, sometimes over 3000, so MTRs cross log
 * blocks) that depends on the sequence number and the page; on about one
 * page in four it writes a second record at the end of the page (seq and
 * id again).  One unit in eight also sets meta slot 0 to its sequence
 * number.  Between the MTRs of a unit the child sometimes syncs the log
 * and wakes the page cleaner, as another committer's group write or a
 * checkpoint would, and pauses 0.5 ms, as a batch at work would.  Every
 * tenth child checkpoints after a few units (and every child every 500
 * units).  After each synced unit's store_commit returns, the child
 * writes its sequence number to a pipe, preceded by those of the lazy
 * units before it (the sync made them durable too): the acknowledgements.
 *
 * The parent reads acknowledgements, sends SIGKILL after a random delay
 * (0..40 ms after the child opened the store; sometimes at once; one time
 * in sixteen during the open itself, so recovery is interrupted too),
 * drains the pipe, reopens the store (recovery) and checks against a model.
 * The child's random numbers come from the seed and the iteration, so the
 * parent replays them to know which pages each unit touched.  The pages
 * and meta slot 0 must show the acknowledged units (on top of what the
 * previous check found) and then some prefix of the units that follow
 * them, the lazy ones and the one in flight, each whole: every page's
 * sequence number belongs to the last acknowledged unit that touched it or
 * to a later one, its unit id, filler and second record match that
 * number, and no unit is half applied or applied after a missing one.
 * pool_check passes.  The store is then closed (checkpoint) or, one time
 * in three, abandoned (so the next child recovers the same log again), and
 * the database carries over to the next iteration.
 *
 * Prints the seed (DKV_TEST_SEED=N replays the same decisions, not the
 * same timing), the kill points, failures by kind (the first ones in
 * detail) and the time; exits 0 only with no failure, and keeps the
 * directory for inspection when there was one.  DKV_CRASH_FRAMES=n sets
 * the larger pool size, DKV_CRASH_MULTI=0 drops the second record,
 * DKV_CRASH_MIDSYNC=0 the syncs inside units, DKV_CRASH_LAZY=0 the lazy
 * unit ends.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dkv.h"
#include "engine/engine.h"
#include "pager/pager.h"
#include "wal/wal.h"
#include "test_util.h"

#define PS          4096u
#define NPAGES      64u
#define OFF_SEQ     32u                  /* u64 sequence number            */
#define OFF_ID      40u                  /* u32 unit id                    */
#define OFF_FILL    44u                  /* filler, fill_len() bytes       */
#define OFF_TAIL    (PS - 16u)           /* the second record: seq, id     */
#define FILL_MAX    (OFF_TAIL - OFF_FILL)
#define SHOW_MAX    20u                  /* failures printed in detail     */
#define SMALL_POOL  40u                  /* frames of every other child    */
#define TAIL_MAX    32u                  /* units after the last ack checked */

enum fail_kind { F_LOST, F_FOREIGN, F_HALF, F_ID, F_FILL, F_TAIL, F_META,
                 F_READ, F_OPEN, F_CHILD, F_CLOSE, F_KINDS };
static const char *const kind_name[F_KINDS] = {
    "acknowledged unit lost", "value of no allowed unit", "unit half applied",
    "unit id does not match", "filler wrong", "second record wrong",
    "meta slot wrong", "page unreadable", "recovery failed",
    "child failed by itself", "close failed" };

struct unit {
    uint64_t seq;
    unsigned nmtr, npg[3];
    uint32_t pg[3][4];
    int      meta_mtr;                   /* the MTR that sets meta 0, or -1 */
    int      midsync[3];                 /* sync the log after MTR j       */
    int      lazy;                       /* ends without WAL_SYNC          */
};

struct crash {
    struct test_dir     dir;
    struct store_config cfg;
    uint64_t            seed, rng;       /* rng: the parent's decisions    */
    int                 multi, midsync, lazy;
    uint64_t            base[NPAGES + 1];/* page values after the last check */
    uint64_t            base_meta;
    unsigned            fails[F_KINDS], shown;
    uint64_t            acked, tail_seen, in_open_kills, reopened;
};

/* What the model allows after a crash in iteration iter: the state after
   the acknowledged units, then any prefix of the units that follow them
   (lazy ones, not yet durable, and the one in flight), each whole. */
struct expect {
    uint64_t    last[NPAGES + 1];        /* after the acknowledged units    */
    uint64_t    last_meta;
    unsigned    ntail;
    struct unit tail[TAIL_MAX];
};

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t mix(uint64_t x)
{
    return test_splitmix64(&x);
}

static uint32_t unit_id(uint64_t seq)
{
    return seq == 0 ? 0 : (uint32_t)mix(seq ^ 0xC0DE5EEDull) | 1u;
}

static uint32_t fill_len(uint64_t seq, uint32_t pg)
{
    uint64_t h = mix(seq * 131 + pg);
    unsigned r = (unsigned)(h % 100);

    h >>= 8;
    if (r < 70)
        return 1 + (uint32_t)(h % 200);
    if (r < 95)
        return 200 + (uint32_t)(h % 1300);
    return 3000 + (uint32_t)(h % (FILL_MAX - 3000 + 1));
}

static int has_tail(const struct crash *c, uint64_t seq, uint32_t pg)
{
    return c->multi && (mix(seq * 131 + pg) >> 40) % 4 == 0;
}

static void fail(struct crash *c, enum fail_kind k, unsigned iter, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(struct crash *c, enum fail_kind k, unsigned iter, const char *fmt, ...)
{
    va_list ap;

    c->fails[k]++;
    if (c->shown++ >= SHOW_MAX)
        return;
    printf("FAIL iteration %u: %s: ", iter, kind_name[k]);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

/* ---- the units: generated alike by the child and, replaying, the parent ----- */

static uint64_t unit_rng(const struct crash *c, unsigned iter)
{
    return mix(c->seed ^ ((uint64_t)iter * 0x9E3779B97F4A7C15ull));
}

static void gen_unit(const struct crash *c, uint64_t *rng, uint64_t seq, struct unit *u)
{
    uint64_t r = test_splitmix64(rng);
    unsigned j, i, k;

    memset(u, 0, sizeof(*u));
    u->seq = seq;
    u->nmtr = 1 + (unsigned)(r % 3);
    u->meta_mtr = (r >> 8) % 8 == 0 ? (int)((r >> 16) % u->nmtr) : -1;
    u->lazy = c->lazy && (r >> 24) % 4 == 0;
    for (j = 0; j < u->nmtr; j++) {
        r = test_splitmix64(rng);
        u->npg[j] = 1 + (unsigned)(r % 4);
        u->midsync[j] = c->midsync && j + 1 < u->nmtr && (r >> 8) % 4 == 0;
        for (i = 0; i < u->npg[j]; i++) {
            uint32_t pg;
            do {
                pg = 1 + (uint32_t)(test_splitmix64(rng) % NPAGES);
                for (k = 0; k < i && u->pg[j][k] != pg; k++)
                    ;
            } while (k < i);
            u->pg[j][i] = pg;
        }
    }
}

/* ---- the child ------------------------------------------------------------------ */

/* Adds to m the unit's records for page pg. */
static int write_page(const struct crash *c, struct pool_mtr *m, uint64_t seq, uint32_t pg)
{
    unsigned char rec[12 + FILL_MAX];
    uint32_t len = fill_len(seq, pg);
    struct frame *f;
    int rc;

    store_le64(rec, seq);
    store_le32(rec + 8, unit_id(seq));
    test_fill(rec + 12, len, mix(seq ^ ((uint64_t)pg << 48)));
    rc = pool_mtr_fix(m, pg, POOL_X, 0, &f);
    if (rc == DKV_OK)
        rc = pool_mtr_write(m, f, OFF_SEQ, rec, 12 + len);
    if (rc == DKV_OK && has_tail(c, seq, pg))
        rc = pool_mtr_write(m, f, OFF_TAIL, rec, 12);
    return rc;
}

static int run_unit(const struct crash *c, struct store *s, const struct unit *u)
{
    struct pool_mtr m;
    unsigned j, i;
    int rc = DKV_OK;

    for (j = 0; j < u->nmtr && rc == DKV_OK; j++) {
        int last = j + 1 == u->nmtr;
        rc = store_mtr_start(s, &m);          /* waits for log space first */
        for (i = 0; i < u->npg[j] && rc == DKV_OK; i++)
            rc = write_page(c, &m, u->seq, u->pg[j][i]);
        if (rc == DKV_OK && u->meta_mtr == (int)j)
            rc = pool_mtr_meta_set(&m, 0, u->seq);
        if (rc == DKV_OK)
            rc = store_commit(s, &m, !last ? 0 : u->lazy ? WAL_UNIT_END
                                                      : WAL_UNIT_END | WAL_SYNC);
        else
            pool_mtr_abandon(&m);
        pool_mtr_free_buffers(&m);
        if (rc == DKV_OK && u->midsync[j]) {
            struct timespec pause = { 0, 500000L };   /* the batch works on */
            rc = wal_sync(store_wal(s));       /* another committer's write */
            pool_wake_cleaner(store_pool(s));
            nanosleep(&pause, NULL);
        }
    }
    return rc;
}

static int send_ack(int fd, uint64_t v)
{
    return write(fd, &v, sizeof(v)) == (ssize_t)sizeof(v) ? 0 : -1;
}

/* Opens the store and commits units until killed; returns an exit code
   only on failure.  A lazy unit is acknowledged with the next synced one,
   whose sync made it durable too. */
static int child_main(const struct crash *c, unsigned iter, int fd)
{
    uint64_t rng = unit_rng(c, iter), k, acked = 0;
    unsigned ckpt_at = iter % 10 == 0 ? 1 + (unsigned)(mix(c->seed + iter) % 8) : 0;
    struct store_config cfg = c->cfg;
    struct store *s = NULL;
    struct unit u;

    if (iter % 2 == 0)
        cfg.pool_size = (size_t)SMALL_POOL * PS;   /* smaller than the data */
    if (store_open(c->dir.path, &cfg, &s, NULL) != DKV_OK)
        return 3;
    if (send_ack(fd, 0) != 0)
        return 4;
    for (k = 1;; k++) {
        uint64_t seq = (uint64_t)iter << 32 | k;
        gen_unit(c, &rng, seq, &u);
        if (run_unit(c, s, &u) != DKV_OK)
            return 5;
        while (!u.lazy && acked < k)
            if (send_ack(fd, (uint64_t)iter << 32 | ++acked) != 0)
                return 6;
        if ((k == ckpt_at || k % 500 == 0) && store_checkpoint(s) != DKV_OK)
            return 7;
    }
}

/* ---- the parent: running and killing a child ------------------------------------- */

struct run {
    pid_t    pid;
    int      fd, opened, eof, status;
    unsigned iter, bad_acks;
    uint64_t acked;                      /* units acknowledged              */
    unsigned char part[8];
    unsigned part_len;
};

/* Reads what the pipe holds (blocking when wait); sets eof at its end. */
static void pump(struct run *r, int timeout_ms)
{
    unsigned char buf[4096];
    struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
    ssize_t n;

    if (r->eof || poll(&pfd, 1, timeout_ms) <= 0)
        return;
    n = read(r->fd, buf, sizeof(buf));
    if (n <= 0) {
        r->eof = n == 0 || errno != EINTR;
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        r->part[r->part_len++] = buf[i];
        if (r->part_len < 8)
            continue;
        uint64_t v;
        memcpy(&v, r->part, 8);
        r->part_len = 0;
        if (v == 0)
            r->opened = 1;
        else if (v == ((uint64_t)r->iter << 32 | (r->acked + 1)))
            r->acked++;
        else
            r->bad_acks++;
    }
}

/* Runs until deadline (in us, monotonic) or the child's end. */
static void pump_until(struct run *r, uint64_t deadline)
{
    uint64_t t;

    while (!r->eof && (t = now_us()) < deadline)
        pump(r, (int)((deadline - t + 999) / 1000));
}

static void start_child(struct crash *c, struct run *r)
{
    int fds[2];

    if (pipe(fds) != 0) {
        perror("pipe");
        exit(2);
    }
    fflush(stdout);
    r->pid = fork();
    if (r->pid < 0) {
        perror("fork");
        exit(2);
    }
    if (r->pid == 0) {
        close(fds[0]);
        _exit(child_main(c, r->iter, fds[1]));
    }
    close(fds[1]);
    r->fd = fds[0];
}

/* Forks the child, kills it at a random point, collects its acks. */
static void run_and_kill(struct crash *c, struct run *r)
{
    uint64_t x = test_splitmix64(&c->rng), t0;
    unsigned mode = (unsigned)(x % 16);
    uint64_t delay = mode == 1 ? 0 : (x >> 8) % 40001;          /* us */

    start_child(c, r);
    t0 = now_us();
    if (mode == 0) {
        pump_until(r, t0 + (x >> 8) % 8001);      /* during open/recovery */
    } else {
        while (!r->opened && !r->eof && now_us() < t0 + 20000000)
            pump(r, 100);
        pump_until(r, now_us() + delay);
    }
    kill(r->pid, SIGKILL);
    waitpid(r->pid, &r->status, 0);
    while (!r->eof)
        pump(r, -1);
    close(r->fd);
}

/* ---- the parent: checking --------------------------------------------------------- */

static void build_expect(const struct crash *c, unsigned iter, uint64_t acked,
                         struct expect *e)
{
    uint64_t rng = unit_rng(c, iter), k;
    struct unit u;
    unsigned j, i;

    memset(e, 0, sizeof(*e));
    memcpy(e->last, c->base, sizeof(e->last));
    e->last_meta = c->base_meta;
    for (k = 1; k <= acked; k++) {
        gen_unit(c, &rng, (uint64_t)iter << 32 | k, &u);
        for (j = 0; j < u.nmtr; j++)
            for (i = 0; i < u.npg[j]; i++)
                e->last[u.pg[j][i]] = u.seq;
        if (u.meta_mtr >= 0)
            e->last_meta = u.seq;
    }
    /* The units after the last ack: lazy ones, up to one that syncs. */
    do {
        gen_unit(c, &rng, (uint64_t)iter << 32 | k++, &e->tail[e->ntail]);
    } while (e->tail[e->ntail++].lazy && e->ntail < TAIL_MAX);
}

static int touches(const struct unit *u, uint32_t pg)
{
    unsigned j, i;

    for (j = 0; j < u->nmtr; j++)
        for (i = 0; i < u->npg[j]; i++)
            if (u->pg[j][i] == pg)
                return 1;
    return 0;
}

/* Whether v may be page pg's value: acknowledged, or a later unit's. */
static int allowed(const struct expect *e, uint32_t pg, uint64_t v)
{
    unsigned t;

    if (v == e->last[pg])
        return 1;
    for (t = 0; t < e->ntail; t++)
        if (e->tail[t].seq == v && touches(&e->tail[t], pg))
            return 1;
    return 0;
}

/* Checks one page's bytes; returns its sequence number. */
static uint64_t check_page(struct crash *c, unsigned iter, uint32_t pg,
                           const unsigned char *d, const struct expect *e)
{
    uint64_t v = load_le64(d + OFF_SEQ), want = e->last[pg];
    size_t bad;

    if (!allowed(e, pg, v))
        fail(c, v < want ? F_LOST : F_FOREIGN, iter,
             "page %u holds %#" PRIx64 ", acknowledged %#" PRIx64 " (%u units after)",
             pg, v, want, e->ntail);
    if (load_le32(d + OFF_ID) != unit_id(v))
        fail(c, F_ID, iter, "page %u: seq %#" PRIx64 " with unit id %#x", pg, v,
             load_le32(d + OFF_ID));
    if (v == 0)
        return v;
    bad = test_mismatch(d + OFF_FILL, fill_len(v, pg), mix(v ^ ((uint64_t)pg << 48)));
    if (bad != (size_t)-1)
        fail(c, F_FILL, iter, "page %u: seq %#" PRIx64 ": filler byte %zu of %u differs",
             pg, v, bad, fill_len(v, pg));
    if (has_tail(c, v, pg) &&
        (load_le64(d + OFF_TAIL) != v || load_le32(d + OFF_TAIL + 8) != unit_id(v)))
        fail(c, F_TAIL, iter, "page %u: seq %#" PRIx64 ": second record holds %#" PRIx64,
             pg, v, load_le64(d + OFF_TAIL));
    return v;
}

/* For a unit half applied: the units after the last acknowledged one,
   MTR by MTR, and what each of their pages (and meta 0) holds, so the
   failure can be read off the log of a run that cannot be replayed. */
static void show_tail(const struct crash *c, const struct expect *e, const uint64_t *seen,
                      uint64_t meta)
{
    unsigned t, j, i;

    if (c->shown > SHOW_MAX)
        return;
    fprintf(stderr, "  acknowledged meta 0 %#" PRIx64 ", found %#" PRIx64 "\n",
            e->last_meta, meta);
    for (t = 0; t < e->ntail; t++) {
        const struct unit *u = &e->tail[t];
        fprintf(stderr, "  unit %#" PRIx64 "%s:", u->seq, u->lazy ? " (lazy)" : "");
        for (j = 0; j < u->nmtr; j++) {
            fprintf(stderr, " mtr %u%s%s [", j, u->meta_mtr == (int)j ? " +meta" : "",
                    u->midsync[j] ? " +sync" : "");
            for (i = 0; i < u->npg[j]; i++)
                fprintf(stderr, "%s%u=%#" PRIx64, i ? " " : "", u->pg[j][i],
                        seen[u->pg[j][i]]);
            fprintf(stderr, "]");
        }
        fprintf(stderr, "\n");
    }
}

/* The pages and meta slot 0 show the acknowledged units and then some
   prefix of the units after them, each whole: no unit half applied, none
   applied after one that is missing. */
static void check_units(struct crash *c, unsigned iter, const struct expect *e,
                        const uint64_t *seen, uint64_t meta)
{
    uint64_t state[NPAGES + 1], smeta = e->last_meta;
    unsigned t, j, i, pages_ok, pages_matched = 0;
    uint32_t pg;

    memcpy(state, e->last, sizeof(state));
    for (t = 0; t <= e->ntail; t++) {
        pages_ok = memcmp(state + 1, seen + 1, NPAGES * sizeof(*seen)) == 0;
        pages_matched |= pages_ok;
        if (pages_ok && smeta == meta) {
            c->tail_seen += t;
            return;
        }
        if (t == e->ntail)
            break;
        for (j = 0; j < e->tail[t].nmtr; j++)
            for (i = 0; i < e->tail[t].npg[j]; i++)
                state[e->tail[t].pg[j][i]] = e->tail[t].seq;
        smeta = e->tail[t].meta_mtr >= 0 ? e->tail[t].seq : smeta;
    }
    for (pg = 1; pg <= NPAGES && allowed(e, pg, seen[pg]); pg++)
        ;
    if (pg <= NPAGES)
        return;                          /* already reported, page by page */
    if (pages_matched)
        fail(c, F_META, iter, "meta 0 holds %#" PRIx64 ", not the pages' unit", meta);
    else {
        fail(c, F_HALF, iter, "pages and meta 0 (%#" PRIx64 ") match no whole prefix of "
             "the %u units after the last acknowledged one", meta, e->ntail);
        show_tail(c, e, seen, meta);
    }
}

/* Recovers, checks every page against the model, adopts what it found. */
static int verify(struct crash *c, unsigned iter, uint64_t acked, struct store **sp)
{
    struct expect e;
    uint64_t seen[NPAGES + 1] = { 0 };
    struct frame *f;
    uint32_t pg;
    int rc = store_open(c->dir.path, &c->cfg, sp, NULL);

    if (rc != DKV_OK) {
        fail(c, F_OPEN, iter, "store_open: %s", dkv_strerror(rc));
        return rc;
    }
    pool_check(store_pool(*sp));
    build_expect(c, iter, acked, &e);
    for (pg = 1; pg <= NPAGES; pg++) {
        rc = pool_fix(store_pool(*sp), pg, POOL_S, 0, &f);
        if (rc != DKV_OK) {
            fail(c, F_READ, iter, "page %u: %s", pg, dkv_strerror(rc));
            seen[pg] = c->base[pg];
            continue;
        }
        seen[pg] = check_page(c, iter, pg, frame_data(f), &e);
        pool_unfix(store_pool(*sp), f);
    }
    check_units(c, iter, &e, seen, pool_meta_get(store_pool(*sp), 0));
    memcpy(c->base, seen, sizeof(c->base));
    c->base_meta = pool_meta_get(store_pool(*sp), 0);
    pool_check(store_pool(*sp));
    return DKV_OK;
}

/* One kill point.  Returns 0, or -1 when the store cannot go on. */
static int iteration(struct crash *c, unsigned iter)
{
    struct run r = { .iter = iter };
    struct store *s = NULL;
    int rc;

    run_and_kill(c, &r);
    if (!WIFSIGNALED(r.status) || WTERMSIG(r.status) != SIGKILL)
        fail(c, F_CHILD, iter, "child ended with status %#x before the kill", r.status);
    if (r.bad_acks)
        fail(c, F_CHILD, iter, "%u acknowledgements out of order", r.bad_acks);
    c->acked += r.acked;
    c->in_open_kills += !r.opened;
    if (verify(c, iter, r.acked, &s) != DKV_OK)
        return -1;
    if (test_splitmix64(&c->rng) % 3 == 0) {
        store_abandon(s);                     /* the next child recovers too */
        c->reopened++;
    } else if ((rc = store_close(s)) != DKV_OK) {
        fail(c, F_CLOSE, iter, "store_close: %s", dkv_strerror(rc));
        return -1;
    }
    return 0;
}

/* ---- setup and the run ---------------------------------------------------------------- */

static unsigned env_uint(const char *name, unsigned dflt)
{
    const char *v = getenv(name);

    return v && *v ? (unsigned)strtoul(v, NULL, 0) : dflt;
}

static void setup(struct crash *c)
{
    struct store *s = NULL;
    struct pool_mtr m;
    struct frame *f;
    uint32_t i;

    c->cfg.pool_size = (size_t)env_uint("DKV_CRASH_FRAMES", 256) * PS;
    c->cfg.page_size = PS;
    c->cfg.direct = 1;
    c->cfg.commit_mode = DKV_COMMIT_SYNC;
    c->cfg.log_capacity = 8u << 20;
    c->cfg.log_buffer = 1u << 20;
    c->cfg.create = 1;
    c->multi = (int)env_uint("DKV_CRASH_MULTI", 1);
    c->midsync = (int)env_uint("DKV_CRASH_MIDSYNC", 1);
    c->lazy = (int)env_uint("DKV_CRASH_LAZY", 1);
    if (test_dir_make(&c->dir, "/tmp") != 0 ||
        store_open(c->dir.path, &c->cfg, &s, NULL) != DKV_OK) {
        fprintf(stderr, "crash_test: cannot create the store\n");
        exit(2);
    }
    for (i = 1; i <= NPAGES; i++) {
        if (store_mtr_start(s, &m) != DKV_OK ||
            pool_mtr_alloc(&m, PAGE_TYPE_TEST, &f) != DKV_OK || frame_page_no(f) != i ||
            store_commit(s, &m, WAL_UNIT_END | WAL_SYNC) != DKV_OK) {
            fprintf(stderr, "crash_test: cannot allocate page %u\n", i);
            exit(2);
        }
        pool_mtr_free_buffers(&m);
    }
    if (store_close(s) != DKV_OK)
        exit(2);
    c->cfg.create = 0;
}

/* How far the log went: LSNs carry over reopens, so its laps show. */
static void report_log(struct crash *c)
{
    struct store *s = NULL;
    struct wal_stats st;

    if (store_open(c->dir.path, &c->cfg, &s, NULL) != DKV_OK)
        return;
    wal_stats_get(store_wal(s), &st);
    printf("crash_test: log at LSN %" PRIu64 " (%.1f laps of %" PRIu64 " MiB)\n", st.lsn,
           (double)st.lsn / (double)st.capacity, st.capacity >> 20);
    store_abandon(s);
}

int main(int argc, char **argv)
{
    static struct crash c;
    unsigned k = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 0) : 200, iter, total = 0;
    uint64_t t0 = now_us();

    c.seed = test_seed("crash_test");
    c.rng = mix(c.seed ^ 0x5A5A);
    setup(&c);
    printf("crash_test: %u kill points in %s (pools %zu/%u frames, log 8 MiB, second "
           "records %s, syncs inside units %s, lazy unit ends %s)\n", k, c.dir.path,
           c.cfg.pool_size / PS, SMALL_POOL, c.multi ? "on" : "off",
           c.midsync ? "on" : "off", c.lazy ? "on" : "off");
    for (iter = 1; iter <= k; iter++)
        if (iteration(&c, iter) != 0)
            break;
    for (unsigned i = 0; i < F_KINDS; i++)
        total += c.fails[i];
    printf("crash_test: seed %" PRIu64 ": %u kill points, %u failures, %.1f s\n",
           c.seed, iter > k ? k : iter, total, (double)(now_us() - t0) / 1e6);
    printf("crash_test: %" PRIu64 " units acknowledged, %" PRIu64 " unacknowledged units "
           "found whole, %" PRIu64 " kills before the child had opened, %" PRIu64
           " stores left unclosed for the next child\n", c.acked, c.tail_seen,
           c.in_open_kills, c.reopened);
    for (unsigned i = 0; i < F_KINDS; i++)
        if (c.fails[i])
            printf("  %5u  %s\n", c.fails[i], kind_name[i]);
    report_log(&c);
    if (total == 0)
        test_dir_remove(&c.dir);
    else
        printf("crash_test: the database is kept in %s\n", c.dir.path);
    return total == 0 ? 0 : 1;
}
