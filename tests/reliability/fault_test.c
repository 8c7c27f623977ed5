/*
 * fault_test.c - I/O faults at every I/O point of a small workload run
 * through the public API (include/dkv.h), with the fault-injecting device
 * of fault_hook.h.
 *
 * The workload: dkv_open creates a database (4 KiB pages, a 64-page pool,
 * so pages are evicted and written back during it), then about forty
 * operations - puts (some values on overflow pages), deletes, batches of
 * 2..6 puts and deletes, dkv_checkpoint, and reads of every key - all with
 * DKV_COMMIT_SYNC, then dkv_close.  It is run once counting its I/Os (N),
 * then again with a fault at I/O 1, 2, ..., N (a little past N: the page
 * cleaner's timing moves the count) for each kind of fault of
 * fault_hook.h, then R times with faults at random.  After each run the
 * database is reopened with no fault and checked:
 *
 *   - every operation that returned success is there (the model of
 *     rel_util.h), and a failed operation is all or nothing;
 *   - every call that failed returned the fault's code (DKV_ERR_IO for
 *     EIO, DKV_ERR_NOSPACE for ENOSPC), never another one, and a short
 *     transfer made no call fail;
 *   - after a failed write or sync of the log, no later write, checkpoint
 *     or close succeeds (a failed sync is never retried, W8); after a
 *     failed sync of the data file, no later checkpoint or close does;
 *   - the reopen succeeds, and nothing crashes or hangs (each run has 60 s,
 *     then SIGALRM ends the test).
 *
 * `fault_test [R]`: R random runs (default 100).  DKV_TEST_SEED replays the
 * workload and the random faults; DKV_TEST_SCALE=N sweeps N workloads
 * (other seeds) and multiplies R by N.  Exits 0 only with no failure;
 * prints the counts.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dkv.h"
#include "pager/pager.h"
#include "test_util.h"
#include "rel_util.h"
#include "fault_hook.h"

#define PS         4096u
#define POOL_PAGES 64u
#define NKEYS      24u
#define NOPS       40u
#define SHOW_MAX   40u

struct totals {
    unsigned long runs, fired, failed_calls, problems;
    unsigned long by_kind_runs[FK_KINDS], by_kind_fired[FK_KINDS];
    unsigned long fired_by_file_op[FF_FILES][6];
    unsigned      shown;
};

static volatile const char *current = "";

static void on_alarm(int sig)
{
    (void)sig;
    fprintf(stderr, "fault_test: a run hung for 60 s: %s\n", (const char *)current);
    _exit(2);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void options(dkv_options *o)
{
    dkv_options_init(o);
    o->page_size = PS;
    o->pool_size = (size_t)POOL_PAGES * PS;
    o->commit_mode = DKV_COMMIT_SYNC;
}

static void problem(struct totals *t, const char *what, int kind, unsigned long nth,
                    const struct fault_plan *p, const char *detail)
{
    t->problems++;
    if (t->shown++ >= SHOW_MAX)
        return;
    printf("FAIL: %s, fault \"%s\" at I/O %lu", what, fault_kind_name[kind], nth);
    if (p->fired)
        printf(" (fired at %lu: %s of %s, errno %d)", p->first_at,
               fault_op_name[p->first_op], fault_file_name[p->first_file],
               p->first_errno);
    printf(": %s\n", detail);
    fflush(stdout);
}

/* Whether rc is a failure a fault of this plan may cause. */
static int rc_expected(const struct fault_plan *p, int rc)
{
    if (p->kind == FK_RANDOM)
        return rc == DKV_ERR_IO || rc == DKV_ERR_NOSPACE;
    if (p->fired == 0 || p->kind == FK_SHORT)
        return 0;
    return rc == fault_rc(p->first_errno);
}

/* After batch idx failed: reads its keys on the same handle; 1 when some
   show its value and others do not (a lookup saw part of a batch). */
static int half_batch_seen(dkv_db *db, const struct rel_work *w, unsigned idx,
                           struct rel_bufs *bf)
{
    const struct rel_op *op = &w->ops[idx];
    unsigned j, yes = 0, no = 0;
    size_t klen, vlen;
    int rc;

    for (j = 0; j < op->n; j++) {
        if (op->e[j].vlen == 0)
            continue;
        klen = rel_key(op->e[j].key, bf->key);
        rc = dkv_get(db, bf->key, klen, bf->val, sizeof(bf->val), &vlen);
        if (rc == DKV_OK && rel_parse(w->seed, op->e[j].key, bf->val, vlen) == (int)idx)
            yes++;
        else if (rc == DKV_OK || rc == DKV_NOTFOUND)
            no++;
    }
    return yes > 0 && no > 0;
}

/* One run's state. */
struct run {
    struct totals          *t;
    const struct rel_work  *w;
    struct rel_bufs        *bf;
    struct fault_plan       plan;
    struct rel_model        m;
    int                     kind;
    unsigned long           nth;
    char                    detail[400];
};

static void run_problem(struct run *r, const char *what)
{
    problem(r->t, what, r->kind, r->nth, &r->plan, r->detail);
}

/* Checks what operation i returned (rc) against the plan. */
static void check_op(struct run *r, dkv_db *db, unsigned i, int rc, int log_failed,
                     int data_sync_failed)
{
    const struct rel_op *op = &r->w->ops[i];

    r->detail[0] = '\0';
    if (rc == DKV_OK) {
        snprintf(r->detail, sizeof(r->detail), "op %u (kind %u) succeeded", i, op->kind);
        if (log_failed && op->kind != REL_GETS)
            run_problem(r, "success after a failed log write or sync");
        if (data_sync_failed && op->kind == REL_CKPT)
            run_problem(r, "checkpoint succeeded after a failed data sync");
        return;
    }
    r->t->failed_calls++;
    if (op->kind == REL_BATCH && half_batch_seen(db, r->w, i, r->bf)) {
        snprintf(r->detail, sizeof(r->detail), "op %u", i);
        run_problem(r, "a failed batch shows in part to lookups on the same handle");
    }
    if (!rc_expected(&r->plan, rc)) {
        snprintf(r->detail, sizeof(r->detail), "op %u (kind %u): %s", i, op->kind,
                 rc == -100 ? "a read returned a value never written" : dkv_strerror(rc));
        run_problem(r, "wrong error");
    }
}

/* The workload under the plan: open (creating), the operations, close. */
static void run_workload(struct run *r, const char *path, const dkv_options *o)
{
    dkv_db *db = NULL;
    unsigned i;
    int rc, log_failed, data_sync_failed;

    rc = dkv_open(path, o, &db);
    if (rc != DKV_OK && !rc_expected(&r->plan, rc)) {
        snprintf(r->detail, sizeof(r->detail), "dkv_open: %s", dkv_strerror(rc));
        run_problem(r, "wrong error");
    }
    for (i = 0; db != NULL && i < r->w->nops; i++) {
        log_failed = r->plan.log_failed;
        data_sync_failed = r->plan.data_sync_failed;
        rc = rel_do(db, r->w, i, r->bf);
        rel_model_apply(&r->m, r->w, i, rc == DKV_OK);
        check_op(r, db, i, rc, log_failed, data_sync_failed);
    }
    if (db == NULL)
        return;
    log_failed = r->plan.log_failed;
    data_sync_failed = r->plan.data_sync_failed;
    rc = dkv_close(db);
    snprintf(r->detail, sizeof(r->detail), "dkv_close: %s", dkv_strerror(rc));
    if (rc == DKV_OK && (log_failed || data_sync_failed))
        run_problem(r, "dkv_close succeeded after a failed sync");
    if (rc != DKV_OK && !rc_expected(&r->plan, rc))
        run_problem(r, "wrong error");
}

/* The fault has cleared: reopen (zero fills stay holes) and check. */
static void check_reopen(struct run *r, const char *path, const dkv_options *o)
{
    struct fault_plan none = { 0 };
    struct rel_verdict v;
    dkv_db *db = NULL;
    int rc;

    fault_arm(&none, FK_NONE, 0);
    rc = dkv_open(path, o, &db);
    if (rc != DKV_OK) {
        struct pager_corruption pc = pager_last_corruption();
        snprintf(r->detail, sizeof(r->detail), "%s%s%s", dkv_strerror(rc),
                 rc == DKV_ERR_CORRUPT && pc.what ? ": " : "",
                 rc == DKV_ERR_CORRUPT && pc.what ? pc.what : "");
        run_problem(r, "reopen failed");
    } else {
        rel_check(db, r->w, &r->m, r->bf, &v);
        snprintf(r->detail, sizeof(r->detail), "%s", v.first);
        if (rel_problems(&v))
            run_problem(r, "wrong contents after reopen");
        rc = dkv_close(db);
        snprintf(r->detail, sizeof(r->detail), "%s", dkv_strerror(rc));
        if (rc != DKV_OK)
            run_problem(r, "close after reopen failed");
    }
    fault_disarm(&none);
}

/* One run: the workload under plan (kind, nth), then the reopen and the
   check.  Returns the I/Os the workload made. */
static unsigned long run_one(const struct rel_work *w, struct totals *t,
                             struct rel_bufs *bf, int kind, unsigned long nth,
                             uint64_t rng)
{
    struct run *r = calloc(1, sizeof(*r));
    unsigned long seen, problems_before = t->problems;
    struct test_dir dir;
    dkv_options o;

    if (r == NULL || test_dir_make(&dir, rel_fast_dir()) != 0)
        exit(1);
    *r = (struct run){ .t = t, .w = w, .bf = bf, .kind = kind, .nth = nth,
                       .plan = { .rng = rng, .random_div = 40 } };
    rel_model_init(&r->m, w);
    options(&o);
    snprintf(r->detail, sizeof(r->detail), "kind %s nth %lu", fault_kind_name[kind], nth);
    current = r->detail;
    alarm(60);
    fault_arm(&r->plan, kind, nth);
    run_workload(r, dir.path, &o);
    io_hook_set(NULL);
    seen = r->plan.seen;
    t->runs++;
    t->by_kind_runs[kind]++;
    if (r->plan.fired) {
        t->fired += r->plan.fired;
        t->by_kind_fired[kind]++;
        t->fired_by_file_op[r->plan.first_file][r->plan.first_op]++;
    }
    check_reopen(r, dir.path, &o);
    pthread_mutex_destroy(&r->plan.lock);
    alarm(0);
    current = "";
    rel_model_free(&r->m);
    free(r);
    if (t->problems == problems_before || t->shown > SHOW_MAX)
        test_dir_remove(&dir);
    else
        printf("  kept %s\n", dir.path);
    return seen;
}

/* The sweep of one workload: every kind at every I/O point.  Returns the
   points swept per kind. */
static unsigned long sweep(const struct rel_work *w, struct totals *t,
                           struct rel_bufs *bf, uint64_t rng)
{
    unsigned long n, last, nth, fired;
    int kind;

    /* The count: the workload with no fault. */
    n = run_one(w, t, bf, FK_NONE, 0, rng);
    last = n + n / 10 + 4;             /* the cleaner's timing moves the count */
    printf("fault_test: the workload (seed %" PRIu64 ") makes %lu I/Os; "
           "faults at I/O 1..%lu\n", w->seed, n, last);
    for (kind = FK_EIO; kind < FK_RANDOM; kind++) {
        fired = t->by_kind_fired[kind];
        for (nth = 1; nth <= last; nth += rel_sanitizer_divisor())
            run_one(w, t, bf, kind, nth, rng);
        printf("  %-24s %lu runs, %lu with the fault fired\n", fault_kind_name[kind],
               last, t->by_kind_fired[kind] - fired);
        fflush(stdout);
    }
    return last;
}

int main(int argc, char **argv)
{
    uint64_t seed = test_seed("fault_test"), rng = seed;
    unsigned random_runs = rel_scaled(argc > 1 ? (unsigned)atoi(argv[1]) : 100) /
                           rel_sanitizer_divisor();
    unsigned workloads = rel_scaled(1), i;
    struct totals t;
    struct rel_work w;
    struct rel_bufs *bf = calloc(1, sizeof(*bf));
    unsigned long n, points = 0;
    double t0 = now_s();
    int f, op;

    memset(&t, 0, sizeof(t));
    signal(SIGALRM, on_alarm);
    if (bf == NULL || (bf->b = dkv_batch_new()) == NULL)
        return 1;
    if (rel_sanitizer_divisor() > 1)
        printf("fault_test: ThreadSanitizer build: every %uth I/O point only\n",
               rel_sanitizer_divisor());
    /* DKV_TEST_SCALE=N: N workloads swept, N times the random runs. */
    for (i = 0; i < workloads; i++) {
        if (rel_work_make(&w, i == 0 ? seed : test_splitmix64(&rng), NKEYS, NOPS, 9, 8))
            return 1;
        points += sweep(&w, &t, bf, rng);
        if (i + 1 < workloads)
            rel_work_free(&w);
    }
    for (n = 0; n < random_runs; n++)
        run_one(&w, &t, bf, FK_RANDOM, 0, test_splitmix64(&rng));
    printf("  %-24s %u runs, %lu with a fault fired\n", fault_kind_name[FK_RANDOM],
           random_runs, t.by_kind_fired[FK_RANDOM]);
    printf("fault_test: %lu runs, %lu I/O points x %d kinds, %lu faults injected, "
           "%lu calls failed cleanly, %lu problems, %.1f s\n",
           t.runs, points, FK_RANDOM - FK_EIO, t.fired, t.failed_calls, t.problems,
           now_s() - t0);
    printf("  first faults by file and I/O:");
    for (f = 0; f < FF_FILES; f++)
        for (op = 1; op < 6; op++)
            if (t.fired_by_file_op[f][op])
                printf(" %s %s %lu;", fault_file_name[f], fault_op_name[op],
                       t.fired_by_file_op[f][op]);
    printf("\n");
    dkv_batch_free(bf->b);
    free(bf);
    rel_work_free(&w);
    return t.problems == 0 ? 0 : 1;
}
