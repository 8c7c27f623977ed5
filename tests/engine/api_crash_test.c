/*
 * api_crash_test.c - kill -9 at random points while two threads write
 * through the public API (include/dkv.h) with DKV_COMMIT_SYNC, then reopen
 * and check that every acknowledged write is there and no batch is half
 * applied.
 *
 * A standalone program (not cmocka), modelled on crash_test.c:
 * `api_crash_test [K]` runs K kill points (default 200, the CTest run).
 * The parent creates a database in a temporary directory (4 KiB pages).
 * Then, K times, it forks a child that opens the database (recovering what
 * the last kill left; every other child with a pool of only 40 pages, so
 * that pages are evicted, written back early, all the time) and starts two
 * writer threads on the one dkv_db.  Each thread owns 400 keys (1..~1000
 * bytes, some with zero bytes) and runs operations until killed: dkv_put
 * of one key, dkv_delete of one key, or a dkv_write batch of 2..8 puts and
 * deletes of distinct keys.  Every value carries the 8-byte tag of the
 * operation that wrote it (iteration, thread, sequence number), its key's
 * number and its length, then filler bytes that depend on tag and key;
 * values are 16..200 bytes mostly, sometimes up to 3000 and now and then
 * up to 24 KiB (overflow pages).  After a call returns DKV_OK (a delete of
 * an absent key: DKV_NOTFOUND) the thread writes the operation's thread
 * and sequence number to a pipe: the acknowledgement.  A batch larger
 * than half the pool is refused whole with DKV_ERR_INVALID (include/dkv.h;
 * in the small pool, batches with long values): its acknowledgement says
 * so, and the parent expects nothing of it.  Thread 0 of every tenth
 * child also calls dkv_checkpoint after a few operations, and of every
 * child every 200 operations; a checkpoint that fails is reported through
 * the pipe (a failure of its own kind) and the writes go on.
 *
 * The parent reads acknowledgements, sends SIGKILL after a random delay
 * (0..60 ms after the child opened; sometimes at once; one time in sixteen
 * during dkv_open itself, so that recovery is interrupted too), drains the
 * pipe, opens the database and reads every key.  The child's operations
 * come from the seed, the iteration and the thread, so the parent replays
 * them: each thread's keys must show the state after its acknowledged
 * operations, except the keys of its next operation (the one in flight at
 * the kill, which may have completed unacknowledged), which must all show
 * either the state before it or the state after it, never a mix.  Every
 * value's bytes are checked, and a scan with dkv_iter must visit exactly
 * the keys that dkv_get finds, in order.  The state found carries over to
 * the next iteration.
 *
 * Prints the seed (DKV_TEST_SEED=N replays the same decisions, not the same
 * timing), a summary (kill points, operations acknowledged, failures by
 * kind) and the first failures of each kind in detail; exits 0 only with
 * no failure, and keeps the directory for inspection when there was one.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
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
#include "pager/pager.h"
#include "test_util.h"

#define PS          4096u
#define NT          2u                   /* writer threads                   */
#define NKEYS       400u                 /* keys per thread                  */
#define BATCH_MAX   8u
#define HDR         16u                  /* tag, key, length                 */
#define VAL_MAX     (24u << 10)
#define SMALL_POOL  40u                  /* pages, every other child         */
#define BIG_POOL    1024u                /* pages, the other children        */
#define SHOW_MAX    5u                   /* failures of a kind printed in detail */
#define ACK_REFUSED (1ull << 47)         /* in an ack: the batch was refused */
#define ACK_CKPT    (1ull << 46)         /* not an ack: dkv_checkpoint failed,
                                            -rc in the low bits            */
#define SEQ_MASK    (ACK_CKPT - 1)

enum op_kind { OP_PUT, OP_DEL, OP_BATCH };

enum fail_kind { F_LOST, F_FOREIGN, F_HALF, F_BYTES, F_SCAN, F_READ, F_OPEN, F_CHILD,
                 F_CKPT, F_CLOSE, F_KINDS };
static const char *const kind_name[F_KINDS] = {
    "acknowledged write lost", "value of no allowed operation", "batch half applied",
    "value bytes wrong", "scan differs from gets", "read failed", "reopen failed",
    "child failed by itself", "dkv_checkpoint failed during writes", "close failed" };

struct entry {
    uint32_t key;                        /* 0..NKEYS-1, the thread's own      */
    uint32_t vlen;                       /* 0 for a delete                    */
    uint64_t tag;                        /* 0: delete                         */
};

struct op {
    uint64_t     seq;
    unsigned     kind, n;
    struct entry e[BATCH_MAX];
};

/* What a key holds: the tag and length of its value, tag 0 = absent. */
struct slot {
    uint64_t tag;
    uint32_t vlen;
};

struct crash {
    struct test_dir dir;
    uint64_t        seed, rng;           /* rng: the parent's decisions       */
    struct slot     base[NT][NKEYS];     /* the state found at the last check */
    unsigned        fails[F_KINDS];
    uint64_t        acked, inflight_applied, inflight_absent, in_open_kills, refused;
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

static void fail(struct crash *c, enum fail_kind k, unsigned iter, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(struct crash *c, enum fail_kind k, unsigned iter, const char *fmt, ...)
{
    va_list ap;

    /* Per kind, so that a frequent kind hides no other. */
    if (c->fails[k]++ >= SHOW_MAX)
        return;
    printf("FAIL iteration %u: %s: ", iter, kind_name[k]);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

/* ---- keys and values: made alike by the child and the parent ---------------- */

/* Key i of thread t: "T<t>/<i>" then padding that depends on i (zero
   bytes among it); every 50th key is long (300..1000 bytes). */
static size_t make_key(unsigned t, unsigned i, unsigned char *k)
{
    size_t len = (size_t)sprintf((char *)k, "T%u/%04u", t, i), want, j;

    want = i % 50 == 7 ? 300 + (i * 37) % 701 : len + (i * 13) % 40;
    for (j = len; j < want; j++)
        k[j] = (unsigned char)((i + j) % 5 == 0 ? 0 : 'a' + (i * j) % 26);
    return want;
}

static uint64_t fill_key(uint64_t tag, unsigned t, uint32_t key)
{
    return mix(tag ^ ((uint64_t)(t * NKEYS + key) << 40));
}

static void make_value(unsigned t, const struct entry *e, unsigned char *v)
{
    memcpy(v, &e->tag, 8);
    uint32_t id = e->key | t << 16;
    memcpy(v + 8, &id, 4);
    memcpy(v + 12, &e->vlen, 4);
    test_fill(v + HDR, e->vlen - HDR, fill_key(e->tag, t, e->key));
}

static uint64_t op_rng(const struct crash *c, unsigned iter, unsigned t)
{
    return mix(c->seed ^ ((uint64_t)iter * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)t << 56));
}

static uint32_t gen_vlen(uint64_t *rng)
{
    uint64_t r = test_splitmix64(rng);
    unsigned p = (unsigned)(r % 100);

    r >>= 8;
    if (p < 80)
        return HDR + (uint32_t)(r % 185);
    if (p < 96)
        return 200 + (uint32_t)(r % 2801);
    return 5000 + (uint32_t)(r % (VAL_MAX - 5000 + 1));
}

static void gen_op(uint64_t *rng, unsigned iter, unsigned t, uint64_t seq, struct op *op)
{
    uint64_t r = test_splitmix64(rng), tag = (uint64_t)iter << 36 | (uint64_t)t << 32 | seq;
    unsigned p = (unsigned)(r % 100), i, j, big = 0;

    memset(op, 0, sizeof(*op));
    op->seq = seq;
    op->kind = p < 45 ? OP_PUT : p < 60 ? OP_DEL : OP_BATCH;
    op->n = op->kind == OP_BATCH ? 2 + (unsigned)((r >> 8) % (BATCH_MAX - 1)) : 1;
    for (i = 0; i < op->n; i++) {
        struct entry *e = &op->e[i];
        do {                                     /* distinct keys in a batch */
            e->key = (uint32_t)(test_splitmix64(rng) % NKEYS);
            for (j = 0; j < i && op->e[j].key != e->key; j++)
                ;
        } while (j < i);
        int del = op->kind == OP_DEL ||
                  (op->kind == OP_BATCH && test_splitmix64(rng) % 10 < 3);
        if (!del) {
            e->tag = tag;
            e->vlen = gen_vlen(rng);
            /* At most one overflow value per batch: a batch must fit a
               40-page pool beside the other thread's work. */
            if (e->vlen > 3000 && big++ > 0)
                e->vlen = 3000;
        }
    }
}

/* ---- the child ------------------------------------------------------------------------ */

struct child {
    const struct crash *c;
    unsigned            iter, t, ckpt_at;
    int                 fd;
    dkv_db             *db;
};

static int send_ack(int fd, uint64_t v)
{
    return write(fd, &v, sizeof(v)) == (ssize_t)sizeof(v) ? 0 : -1;
}

static void child_die(const struct child *ch, const char *what, int rc, int code)
{
    struct pager_corruption pc = pager_last_corruption();

    fprintf(stderr, "api_crash_test child %u thread %u: %s: %s\n", ch->iter, ch->t, what,
            dkv_strerror(rc));
    if (rc == DKV_ERR_CORRUPT && pc.what != NULL)    /* where it was found */
        fprintf(stderr, "  page %llu: %s (%s:%d)\n", (unsigned long long)pc.page_no,
                pc.what, pc.file, pc.line);
    _exit(code);
}

static void *writer(void *arg)
{
    struct child *ch = arg;
    uint64_t rng = op_rng(ch->c, ch->iter, ch->t), seq;
    unsigned char key[DKV_KEY_MAX], *val = malloc(VAL_MAX);
    dkv_batch *b = dkv_batch_new();
    struct op op;
    unsigned i;
    int rc;

    if (val == NULL || b == NULL)
        _exit(8);
    for (seq = 1;; seq++) {
        gen_op(&rng, ch->iter, ch->t, seq, &op);
        if (op.kind == OP_BATCH) {
            dkv_batch_clear(b);
            for (i = 0; i < op.n; i++) {
                size_t klen = make_key(ch->t, op.e[i].key, key);
                if (op.e[i].tag) {
                    make_value(ch->t, &op.e[i], val);
                    rc = dkv_batch_put(b, key, klen, val, op.e[i].vlen);
                } else {
                    rc = dkv_batch_delete(b, key, klen);
                }
                if (rc != DKV_OK)
                    child_die(ch, "dkv_batch_put/delete", rc, 9);
            }
            rc = dkv_write(ch->db, b);
            if (rc == DKV_ERR_INVALID) {
                /* Too large for half the pool (include/dkv.h): refused
                   whole.  The parent learns it and expects nothing of it. */
                if (send_ack(ch->fd, (uint64_t)(ch->t + 1) << 48 | ACK_REFUSED | seq) != 0)
                    _exit(6);
                continue;
            }
            if (rc != DKV_OK)
                child_die(ch, "dkv_write", rc, 10);
        } else {
            size_t klen = make_key(ch->t, op.e[0].key, key);
            if (op.kind == OP_PUT) {
                make_value(ch->t, &op.e[0], val);
                rc = dkv_put(ch->db, key, klen, val, op.e[0].vlen);
                if (rc != DKV_OK)
                    child_die(ch, "dkv_put", rc, 11);
            } else {
                rc = dkv_delete(ch->db, key, klen);
                if (rc != DKV_OK && rc != DKV_NOTFOUND)
                    child_die(ch, "dkv_delete", rc, 12);
            }
        }
        if (send_ack(ch->fd, (uint64_t)(ch->t + 1) << 48 | seq) != 0)
            _exit(6);
        /* A failed checkpoint is reported, and the writes go on: what
           they leave after the kill is still worth checking. */
        if (ch->t == 0 && (seq == ch->ckpt_at || seq % 200 == 0) &&
            (rc = dkv_checkpoint(ch->db)) != DKV_OK &&
            send_ack(ch->fd, (uint64_t)(ch->t + 1) << 48 | ACK_CKPT | (uint64_t)-rc) != 0)
            _exit(6);
    }
    return NULL;
}

/* Opens the database and writes from NT threads until killed; returns an
   exit code only on failure. */
static int child_main(const struct crash *c, unsigned iter, int fd)
{
    struct child ch[NT];
    pthread_t th[NT];
    dkv_options opts;
    dkv_db *db = NULL;
    unsigned t;
    int rc;

    dkv_options_init(&opts);
    opts.page_size = PS;
    opts.pool_size = (size_t)(iter % 2 == 0 ? SMALL_POOL : BIG_POOL) * PS;
    opts.commit_mode = DKV_COMMIT_SYNC;
    opts.create_if_missing = 0;
    if ((rc = dkv_open(c->dir.path, &opts, &db)) != DKV_OK) {
        fprintf(stderr, "api_crash_test child %u: dkv_open: %s\n", iter, dkv_strerror(rc));
        return 3;
    }
    if (send_ack(fd, 0) != 0)
        return 4;
    for (t = 0; t < NT; t++) {
        ch[t].c = c;
        ch[t].iter = iter;
        ch[t].t = t;
        ch[t].fd = fd;
        ch[t].db = db;
        ch[t].ckpt_at = iter % 10 == 0 ? 1 + (unsigned)(mix(c->seed + iter) % 8) : 0;
        if (pthread_create(&th[t], NULL, writer, &ch[t]) != 0)
            return 5;
    }
    for (t = 0; t < NT; t++)
        pthread_join(th[t], NULL);
    return 13;                           /* the writers never end */
}

/* ---- the parent: running and killing a child --------------------------------------------- */

struct run {
    pid_t    pid;
    int      fd, opened, eof, status;
    unsigned iter, bad_acks;
    int      ckpt_rc;                    /* a failed dkv_checkpoint's code   */
    uint64_t acked[NT];
    uint64_t *refused[NT];               /* seqs of refused batches, in order */
    size_t   nrefused[NT], cap_refused[NT];
    unsigned char part[8];
    unsigned part_len;
};

static void note_refused(struct run *r, unsigned t, uint64_t seq)
{
    if (r->nrefused[t] == r->cap_refused[t]) {
        size_t cap = r->cap_refused[t] ? 2 * r->cap_refused[t] : 64;
        uint64_t *p = realloc(r->refused[t], cap * sizeof(*p));
        if (p == NULL) {
            perror("realloc");
            exit(2);
        }
        r->refused[t] = p;
        r->cap_refused[t] = cap;
    }
    r->refused[t][r->nrefused[t]++] = seq;
}

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
        uint64_t v, t;
        memcpy(&v, r->part, 8);
        r->part_len = 0;
        t = (v >> 48) - 1;
        if (v == 0)
            r->opened = 1;
        else if (v & ACK_CKPT)
            r->ckpt_rc = -(int)(v & SEQ_MASK);
        else if (t < NT && (v & SEQ_MASK) == r->acked[t] + 1) {
            r->acked[t]++;
            if (v & ACK_REFUSED)
                note_refused(r, (unsigned)t, v & SEQ_MASK);
        } else {
            r->bad_acks++;
        }
    }
}

static void pump_until(struct run *r, uint64_t deadline)
{
    uint64_t t;

    while (!r->eof && (t = now_us()) < deadline)
        pump(r, (int)((deadline - t + 999) / 1000));
}

static void run_and_kill(struct crash *c, struct run *r)
{
    uint64_t x = test_splitmix64(&c->rng), t0;
    unsigned mode = (unsigned)(x % 16);
    uint64_t delay = mode == 1 ? 0 : (x >> 8) % 60001;          /* us */
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

/* ---- the parent: checking -------------------------------------------------------------------- */

/* Reads key (t, i): its tag and length, checking the value's bytes. */
static int read_key(struct crash *c, unsigned iter, dkv_db *db, unsigned t, unsigned i,
                    unsigned char *buf, struct slot *out)
{
    unsigned char key[DKV_KEY_MAX];
    size_t klen = make_key(t, i, key), vlen = 0, bad;
    uint32_t id, len;
    int rc = dkv_get(db, key, klen, buf, VAL_MAX + 1, &vlen);

    memset(out, 0, sizeof(*out));
    if (rc == DKV_NOTFOUND)
        return 0;
    if (rc != DKV_OK) {
        fail(c, F_READ, iter, "thread %u key %u: %s", t, i, dkv_strerror(rc));
        return -1;
    }
    memcpy(&out->tag, buf, vlen >= 8 ? 8 : 0);
    out->vlen = (uint32_t)vlen;
    if (vlen < HDR || vlen > VAL_MAX) {
        fail(c, F_BYTES, iter, "thread %u key %u: a value of %zu bytes", t, i, vlen);
        out->tag = 1;                            /* matches no operation */
        return -1;
    }
    memcpy(&id, buf + 8, 4);
    memcpy(&len, buf + 12, 4);
    if (id != (i | t << 16) || len != vlen) {
        fail(c, F_BYTES, iter, "thread %u key %u: value of key %#x, length %u (holds %zu)",
             t, i, id, len, vlen);
        return -1;
    }
    bad = test_mismatch(buf + HDR, vlen - HDR, fill_key(out->tag, t, i));
    if (bad != (size_t)-1) {
        fail(c, F_BYTES, iter, "thread %u key %u: tag %#" PRIx64 ": byte %zu of %zu differs",
             t, i, out->tag, HDR + bad, vlen);
        return -1;
    }
    return 0;
}

static int same(const struct slot *a, const struct slot *b)
{
    return a->tag == b->tag && (a->tag == 0 || a->vlen == b->vlen);
}

/* Checks thread t's keys against its acknowledged operations and the one
   in flight. */
static void check_thread(struct crash *c, unsigned iter, unsigned t, uint64_t acked,
                         const uint64_t *refused, size_t nrefused, const struct slot *seen)
{
    struct slot exp[NKEYS], eff[NKEYS];
    unsigned char touched[NKEYS] = { 0 };
    uint64_t rng = op_rng(c, iter, t), k;
    unsigned i, votes_new = 0, votes_old = 0;
    size_t nr = 0;
    struct op op;

    memcpy(exp, c->base[t], sizeof(exp));
    for (k = 1; k <= acked; k++) {
        gen_op(&rng, iter, t, k, &op);
        if (nr < nrefused && refused[nr] == k) {      /* changed nothing */
            nr++;
            c->refused++;
            continue;
        }
        for (i = 0; i < op.n; i++) {
            exp[op.e[i].key].tag = op.e[i].tag;
            exp[op.e[i].key].vlen = op.e[i].vlen;
        }
    }
    gen_op(&rng, iter, t, acked + 1, &op);       /* the one in flight */
    memcpy(eff, exp, sizeof(eff));
    for (i = 0; i < op.n; i++) {
        touched[op.e[i].key] = 1;
        eff[op.e[i].key].tag = op.e[i].tag;
        eff[op.e[i].key].vlen = op.e[i].vlen;
    }
    for (i = 0; i < NKEYS; i++) {
        if (same(&seen[i], &exp[i])) {
            votes_old += touched[i] && !same(&exp[i], &eff[i]);
            continue;
        }
        if (touched[i] && same(&seen[i], &eff[i])) {
            votes_new++;
            continue;
        }
        fail(c, seen[i].tag == 0 || (seen[i].tag < exp[i].tag && exp[i].tag != 0)
                    ? F_LOST : F_FOREIGN, iter,
             "thread %u key %u holds %#" PRIx64 " (%u bytes), acknowledged %#" PRIx64
             " (%u bytes)%s; %" PRIu64 " operations acknowledged", t, i, seen[i].tag,
             seen[i].vlen, exp[i].tag, exp[i].vlen, touched[i] ? ", in flight" : "", acked);
    }
    if (votes_new && votes_old)
        fail(c, F_HALF, iter, "thread %u: operation %" PRIu64 " (%s of %u keys) found on "
             "%u keys and missing on %u", t, acked + 1,
             op.kind == OP_BATCH ? "batch" : op.kind == OP_PUT ? "put" : "delete", op.n,
             votes_new, votes_old);
    else if (votes_new)
        c->inflight_applied++;
    else
        c->inflight_absent++;
}

/* Parses a key found by the scan back to (t, i); -1 for a foreign key. */
static int key_owner(const unsigned char *k, size_t klen, unsigned *t, unsigned *i)
{
    unsigned char want[DKV_KEY_MAX];
    unsigned tt, ii;

    if (klen < 7 || k[0] != 'T' || sscanf((const char *)k, "T%1u/%4u", &tt, &ii) != 2 ||
        tt >= NT || ii >= NKEYS)
        return -1;
    if (make_key(tt, ii, want) != klen || memcmp(want, k, klen) != 0)
        return -1;
    *t = tt;
    *i = ii;
    return 0;
}

/* The scan visits exactly the keys the gets found, in order, with the
   same values. */
static void check_scan(struct crash *c, unsigned iter, dkv_db *db,
                       struct slot seen[NT][NKEYS])
{
    unsigned char prev[DKV_KEY_MAX], kcopy[DKV_KEY_MAX + 1];
    size_t prev_len = 0;
    uint64_t found = 0, present = 0;
    dkv_iter *it = NULL;
    unsigned t, i;
    int rc = dkv_iter_new(db, &it);

    if (rc != DKV_OK) {
        fail(c, F_SCAN, iter, "dkv_iter_new: %s", dkv_strerror(rc));
        return;
    }
    for (t = 0; t < NT; t++)
        for (i = 0; i < NKEYS; i++)
            present += seen[t][i].tag != 0;
    dkv_iter_seek(it, NULL, 0);
    for (; dkv_iter_valid(it); dkv_iter_next(it)) {
        size_t klen = 0, vlen = 0;
        const unsigned char *k = dkv_iter_key(it, &klen);
        const unsigned char *v = dkv_iter_value(it, &vlen);
        uint64_t tag = 0;
        if (klen == 0 || klen > DKV_KEY_MAX) {
            fail(c, F_SCAN, iter, "a key of %zu bytes", klen);
            break;
        }
        memcpy(kcopy, k, klen);
        kcopy[klen] = 0;
        if (found > 0) {
            int cmp = memcmp(prev, k, prev_len < klen ? prev_len : klen);
            if (cmp > 0 || (cmp == 0 && prev_len >= klen))
                fail(c, F_SCAN, iter, "keys out of order at key %" PRIu64, found);
        }
        memcpy(prev, k, klen);
        prev_len = klen;
        found++;
        if (key_owner(kcopy, klen, &t, &i) != 0) {
            fail(c, F_SCAN, iter, "a key no thread writes (%zu bytes)", klen);
            continue;
        }
        if (vlen >= 8)
            memcpy(&tag, v, 8);
        if (seen[t][i].tag == 0 || tag != seen[t][i].tag || vlen != seen[t][i].vlen)
            fail(c, F_SCAN, iter, "thread %u key %u: the scan shows %#" PRIx64 " (%zu bytes), "
                 "dkv_get %#" PRIx64 " (%u bytes)", t, i, tag, vlen, seen[t][i].tag,
                 seen[t][i].vlen);
    }
    if (found != present)
        fail(c, F_SCAN, iter, "the scan found %" PRIu64 " keys, dkv_get %" PRIu64, found,
             present);
    dkv_iter_free(it);
}

static dkv_options parent_options(void)
{
    dkv_options opts;

    dkv_options_init(&opts);
    opts.page_size = PS;
    opts.pool_size = 16u << 20;
    return opts;
}

/* Reopens (recovery), checks every key, adopts what it found. */
static int verify(struct crash *c, unsigned iter, const struct run *r)
{
    static struct slot seen[NT][NKEYS];
    dkv_options opts = parent_options();
    unsigned char *buf = malloc(VAL_MAX + 1);
    dkv_db *db = NULL;
    unsigned t, i;
    int rc;

    opts.create_if_missing = 0;
    rc = dkv_open(c->dir.path, &opts, &db);
    if (rc != DKV_OK) {
        fail(c, F_OPEN, iter, "dkv_open: %s", dkv_strerror(rc));
        free(buf);
        return -1;
    }
    for (t = 0; t < NT; t++) {
        for (i = 0; i < NKEYS; i++)
            if (read_key(c, iter, db, t, i, buf, &seen[t][i]) != 0 && seen[t][i].tag == 0)
                seen[t][i] = c->base[t][i];
        check_thread(c, iter, t, r->acked[t], r->refused[t], r->nrefused[t], seen[t]);
    }
    check_scan(c, iter, db, seen);
    memcpy(c->base, seen, sizeof(c->base));
    free(buf);
    if ((rc = dkv_close(db)) != DKV_OK) {
        fail(c, F_CLOSE, iter, "dkv_close: %s", dkv_strerror(rc));
        return -1;
    }
    return 0;
}

static int iteration(struct crash *c, unsigned iter)
{
    struct run r = { .iter = iter };
    unsigned t;
    int rc;

    run_and_kill(c, &r);
    if (!WIFSIGNALED(r.status) || WTERMSIG(r.status) != SIGKILL)
        fail(c, F_CHILD, iter, "child ended with status %#x before the kill", r.status);
    if (r.bad_acks)
        fail(c, F_CHILD, iter, "%u acknowledgements out of order", r.bad_acks);
    if (r.ckpt_rc != 0)
        fail(c, F_CKPT, iter, "dkv_checkpoint while the other thread writes: %s",
             dkv_strerror(r.ckpt_rc));
    for (t = 0; t < NT; t++)
        c->acked += r.acked[t];
    c->in_open_kills += !r.opened;
    rc = verify(c, iter, &r);
    for (t = 0; t < NT; t++)
        free(r.refused[t]);
    return rc;
}

static void setup(struct crash *c)
{
    dkv_options opts = parent_options();
    dkv_db *db = NULL;
    int rc;

    if (test_dir_make(&c->dir, "/tmp") != 0 ||
        (rc = dkv_open(c->dir.path, &opts, &db)) != DKV_OK ||
        (rc = dkv_close(db)) != DKV_OK) {
        fprintf(stderr, "api_crash_test: cannot create the database\n");
        exit(2);
    }
}

int main(int argc, char **argv)
{
    static struct crash c;
    unsigned k = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 0) : 200, iter, total = 0;
    uint64_t t0 = now_us();

    c.seed = test_seed("api_crash_test");
    c.rng = mix(c.seed ^ 0x5A5A);
    setup(&c);
    printf("api_crash_test: %u kill points in %s (%u writer threads, %u keys each, "
           "pools %u/%u pages of %u bytes)\n", k, c.dir.path, NT, NKEYS, BIG_POOL,
           SMALL_POOL, PS);
    for (iter = 1; iter <= k; iter++)
        if (iteration(&c, iter) != 0)
            break;
    for (unsigned i = 0; i < F_KINDS; i++)
        total += c.fails[i];
    printf("api_crash_test: seed %" PRIu64 ": %u kill points, %" PRIu64 " operations "
           "acknowledged, %u failures, %.1f s\n", c.seed, iter > k ? k : iter, c.acked,
           total, (double)(now_us() - t0) / 1e6);
    printf("api_crash_test: operations in flight at the kill: %" PRIu64 " found applied, %"
           PRIu64 " not; %" PRIu64 " kills before the child had opened; %" PRIu64
           " batches refused as too large for the pool\n", c.inflight_applied,
           c.inflight_absent, c.in_open_kills, c.refused);
    for (unsigned i = 0; i < F_KINDS; i++)
        if (c.fails[i])
            printf("  %5u  %s\n", c.fails[i], kind_name[i]);
    if (total == 0)
        test_dir_remove(&c.dir);
    else
        printf("api_crash_test: the database is kept in %s\n", c.dir.path);
    return total == 0 ? 0 : 1;
}
