/*
 * fault_hook.h - a fault-injecting device for the reliability tests, built
 * on the process-wide I/O hook of pager/io.h (io_hook_set): it numbers
 * every I/O of every file (reads, writes, syncs, allocations, zero fills
 * of data.dkv, redo.log and doublewrite.dkv) and makes one of them fail,
 * on a schedule (the nth) or at random, in one of the ways a disk fails:
 *
 *   FK_EIO          the nth I/O fails with EIO (any kind)
 *   FK_ENOSPC       the first write, allocation or sync from the nth on
 *                   fails with ENOSPC
 *   FK_SHORT        the first read or write from the nth on moves half its
 *                   length; the rest goes through (invisible above io.c)
 *   FK_SHORT_EIO    the first write from the nth on moves half, then EIO
 *   FK_SHORT_NOSPC  the same with ENOSPC (a disk filling up mid-write)
 *   FK_EIO_ALL      every I/O from the nth on fails with EIO (a dead disk)
 *   FK_NOSPC_ALL    every write and allocation from the nth on fails with
 *                   ENOSPC (a full disk), reads and syncs still work
 *   FK_RANDOM       each I/O fails with probability 1/random_div, in one of
 *                   the ways above chosen at random (never for good)
 *
 * A limit on the bytes a file may grow to (space_limit) models a small
 * disk: an allocation past it fails with ENOSPC.  Zero fills of new space
 * become holes (IO_HOOK_SPARSE), so that a 256 MiB log costs nothing.
 */
#ifndef DKV_TESTS_FAULT_HOOK_H
#define DKV_TESTS_FAULT_HOOK_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "pager/io.h"
#include "test_util.h"

enum fault_kind { FK_NONE, FK_EIO, FK_ENOSPC, FK_SHORT, FK_SHORT_EIO, FK_SHORT_NOSPC,
                  FK_EIO_ALL, FK_NOSPC_ALL, FK_RANDOM, FK_KINDS };

static const char *const fault_kind_name[FK_KINDS] = {
    "none", "EIO once", "ENOSPC once", "short transfer", "short write then EIO",
    "short write then ENOSPC", "EIO from then on", "ENOSPC from then on", "random" };

enum fault_file { FF_DATA, FF_LOG, FF_DBLWR, FF_OTHER, FF_FILES };
static const char *const fault_file_name[FF_FILES] = {
    "data.dkv", "redo.log", "doublewrite.dkv", "other" };
static const char *const fault_op_name[] = {
    "?", "read", "write", "sync", "allocate", "zero fill" };

struct fault_plan {
    /* In: */
    int            kind;
    unsigned long  nth;                   /* 1-based; 0 with FK_RANDOM       */
    unsigned       random_div;
    uint64_t       rng;
    uint64_t       space_limit;           /* bytes per file; 0: none         */
    /* Out (counts under lock): */
    pthread_mutex_t lock;
    unsigned long  seen;                  /* I/Os numbered so far            */
    unsigned long  by_file_op[FF_FILES][6];
    unsigned       fired;                 /* faults made                     */
    int            first_errno;           /* of the first fault, 0: short    */
    int            first_op, first_file;
    unsigned long  first_at;              /* its I/O number                  */
    int            log_failed;            /* a write or sync of the log failed */
    int            data_sync_failed;      /* a sync of the data file failed  */
    int            pending_short;         /* a short transfer is due         */
};

static inline int fault_file_of(const char *name)
{
    int f;

    for (f = 0; f < FF_OTHER; f++)
        if (strcmp(name, fault_file_name[f]) == 0)
            return f;
    return FF_OTHER;
}

static inline int fault_is_write(int op)
{
    return op == IO_HOOK_WRITE || op == IO_HOOK_ALLOCATE || op == IO_HOOK_ZERO;
}

/* The answer for this I/O (lock held): 0, an errno or IO_HOOK_SHORT. */
static inline int fault_decide(struct fault_plan *p, int op, int *rest_err)
{
    static const int random_kinds[] = { FK_EIO, FK_ENOSPC, FK_SHORT, FK_SHORT_EIO };
    int kind = p->kind;
    int due = p->nth != 0 && p->seen >= p->nth;

    if (kind == FK_RANDOM) {
        if (test_splitmix64(&p->rng) % p->random_div != 0)
            return 0;
        kind = random_kinds[test_splitmix64(&p->rng) % 4];
        due = 1;
    } else if (!due || (p->fired > 0 && kind != FK_EIO_ALL && kind != FK_NOSPC_ALL)) {
        return 0;
    }
    switch (kind) {
    case FK_EIO:
    case FK_EIO_ALL:
        return EIO;
    case FK_ENOSPC:
        return fault_is_write(op) || op == IO_HOOK_SYNC ? ENOSPC : 0;
    case FK_NOSPC_ALL:
        return fault_is_write(op) ? ENOSPC : 0;
    case FK_SHORT:
        return op == IO_HOOK_READ || op == IO_HOOK_WRITE ? IO_HOOK_SHORT : 0;
    case FK_SHORT_EIO:
    case FK_SHORT_NOSPC:
        if (op != IO_HOOK_WRITE)
            return 0;
        *rest_err = kind == FK_SHORT_EIO ? EIO : ENOSPC;
        return IO_HOOK_SHORT;
    default:
        return 0;
    }
}

static int fault_before(void *arg, const struct io_hook_event *ev, int *rest_err)
{
    struct fault_plan *p = arg;
    int file = fault_file_of(ev->name), rc;

    pthread_mutex_lock(&p->lock);
    p->seen++;
    p->by_file_op[file][ev->op < 6 ? ev->op : 0]++;
    rc = fault_decide(p, ev->op, rest_err);
    if (rc == 0 && ev->op == IO_HOOK_ALLOCATE && p->space_limit != 0 &&
        ev->off + ev->len > p->space_limit)
        rc = ENOSPC;
    if (rc != 0) {
        if (p->fired++ == 0) {
            p->first_errno = rc > 0 ? rc : *rest_err;
            p->first_op = ev->op;
            p->first_file = file;
            p->first_at = p->seen;
        }
        /* What the engine must treat as lost for good (W8, IO7). */
        if (file == FF_LOG && (ev->op == IO_HOOK_SYNC ||
                               (ev->op == IO_HOOK_WRITE && (rc > 0 || *rest_err))))
            p->log_failed = 1;
        if (file == FF_DATA && ev->op == IO_HOOK_SYNC)
            p->data_sync_failed = 1;
    }
    pthread_mutex_unlock(&p->lock);
    if (rc == 0 && ev->op == IO_HOOK_ZERO)
        return IO_HOOK_SPARSE;
    return rc;
}

/* Arms the plan (its counters start at zero) and sets the hook. */
static inline void fault_arm(struct fault_plan *p, int kind, unsigned long nth)
{
    uint64_t rng = p->rng;
    unsigned div = p->random_div;
    uint64_t limit = p->space_limit;
    struct io_hook h = { .before = fault_before, .done = NULL, .arg = p };

    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    p->kind = kind;
    p->nth = nth;
    p->rng = rng;
    p->random_div = div ? div : 50;
    p->space_limit = limit;
    io_hook_set(&h);
}

static inline void fault_disarm(struct fault_plan *p)
{
    io_hook_set(NULL);
    pthread_mutex_destroy(&p->lock);
}

/* The DKV_ERR_* a fault of this errno must surface as. */
static inline int fault_rc(int err)
{
    return err == ENOSPC ? DKV_ERR_NOSPACE : DKV_ERR_IO;
}

#endif /* DKV_TESTS_FAULT_HOOK_H */
