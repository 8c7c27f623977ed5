/*
 * fuzz_api.c - random sequences of dkv_* calls with good and bad
 * arguments: NULL handles, keys and out-parameters, empty and over-long
 * keys, values over DKV_VALUE_MAX or too long for the pool, bad options
 * for dkv_open (page sizes, a pool too small, unknown engines and commit
 * modes, a second open of the open directory), iterators used before a
 * seek, after the end and across writes, dkv_close with an iterator open,
 * batches cleared, freed and reused.
 *
 * The input is a program: each operation is one byte (the call) and the
 * bytes it reads for its arguments (a key choice, a value choice, ...),
 * up to 64 operations.  One database (4 KiB pages, a 1 MiB log, a 2 MiB
 * pool, asynchronous commits) lives for the whole process; each input
 * starts by deleting the 18 keys it may write, so it begins from a known
 * state.  A model of those keys predicts every answer: the return code of
 * each call (DKV_ERR_INVALID exactly when an argument is bad, DKV_ERR_BUSY
 * for a close with an iterator open, ...) and every value, also after a
 * close and reopen and after a refused dkv_open with bad options (the
 * data stays intact).  An iterator's position is checked while no write
 * has happened since its seek (a scan is not a snapshot).  Any difference
 * aborts (DKV_FUZZ_TRACE=1 prints each operation).  A double free is not tried: the API cannot catch it (the ASan
 * death test in tests/engine/test_misuse.c covers use after free).
 */
#include "fuzz_driver.h"

#include "dkv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NKEYS     18u                   /* 16 short keys, one of DKV_KEY_MAX, "a0" */
#define OPS_MAX   64u
#define BIG_VALUE (40u << 10)           /* overflow pages, fits the pool        */
#define HUGE_VALUE (3u << 19)           /* 1.5 MiB: more than half the pool     */
#define POOL      (2u << 20)

static char g_dir[256];
static dkv_db *g_db;
static unsigned char *g_big;            /* HUGE_VALUE bytes of value material */
static char g_long_key[DKV_KEY_MAX + 8];

struct input {
    const unsigned char *p;
    size_t n;
};

static unsigned take(struct input *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static void fail(const char *what, int got, int want)
{
    fprintf(stderr, "fuzz_api: %s: got %d (%s), expected %d (%s)\n", what, got,
            dkv_strerror(got), want, dkv_strerror(want));
    if (g_dir[0] != '\0')
        fimg_remove_dir(g_dir);         /* abort runs no atexit handler */
    abort();
}

static void expect(const char *what, int got, int want)
{
    if (got != want)
        fail(what, got, want);
}

/* ---- arguments ---------------------------------------------------------------- */

struct key {
    const void *p;
    size_t      len;
    int         model;                  /* index in the model, or -1: invalid */
};

static struct key pick_key(struct input *in)
{
    static char shorts[16][16];
    unsigned c = take(in);
    struct key k = { NULL, 0, -1 };

    if (shorts[0][0] == '\0')
        for (unsigned i = 0; i < 16; i++)
            snprintf(shorts[i], sizeof(shorts[i]), "a%02u", i % 16);
    switch (c % 24) {
    case 16: k.p = g_long_key; k.len = DKV_KEY_MAX; k.model = 16; break;
    case 17: k.p = g_long_key; k.len = DKV_KEY_MAX + 1; break;
    case 18: k.p = NULL; k.len = 0; break;
    case 19: k.p = NULL; k.len = 3; break;
    case 20: k.p = "a00"; k.len = 0; break;
    case 21: k.p = g_long_key; k.len = (size_t)-1; break;
    case 22: k.p = g_long_key; k.len = (size_t)DKV_KEY_MAX * 4; break;
    case 23: k.p = "a0"; k.len = 2; k.model = 17; break;     /* a prefix of "a00" */
    default: k.p = shorts[c % 16]; k.len = 3; k.model = (int)(c % 16); break;
    }
    return k;
}

static int key_valid(const struct key *k)
{
    return k->model != -1;
}

struct value {
    const void *p;
    size_t      len;
    int         valid;
    unsigned    tag;                    /* the model's description */
};

/* Value material: g_big from offset tag, len bytes. */
static struct value pick_value(struct input *in)
{
    unsigned c = take(in), t = take(in);
    struct value v = { g_big + t, 0, 1, t };

    switch (c % 10) {
    case 0: v.p = NULL; v.len = 0; break;                        /* empty, valid */
    case 1: v.p = NULL; v.len = 5; v.valid = 0; break;
    case 2: v.len = (size_t)DKV_VALUE_MAX + 1; v.valid = 0; break;
    case 3: v.len = (size_t)-1; v.valid = 0; break;
    case 4: v.len = BIG_VALUE + t; break;
    case 5: v.len = HUGE_VALUE - 256; v.valid = 0; break;       /* too long for the pool */
    default: v.len = 1 + (c * 7u + t) % 300; break;
    }
    return v;
}

/* ---- the model ---------------------------------------------------------------- */

struct model {
    int      present[NKEYS];
    size_t   len[NKEYS];
    unsigned tag[NKEYS];
};

/* A batch entry for the model: applied to it when dkv_write succeeds. */
struct bop {
    int      model, present;
    size_t   len;
    unsigned tag;
};

struct state {
    struct model m;
    dkv_batch   *b;
    struct bop   bops[OPS_MAX];         /* the batch's entries on model keys */
    unsigned     nbops;
    unsigned     batch_ops;
    dkv_iter    *it;
    int          it_exact;              /* no write since the iterator's seek */
    int          it_pos;                /* model index it should show, -1: end */
    unsigned char *buf;
};

static const void *model_key(unsigned i, size_t *len)
{
    static char shorts[16][16];

    if (i == 16) {
        *len = DKV_KEY_MAX;
        return g_long_key;
    }
    if (i == 17) {
        *len = 2;
        return "a0";
    }
    snprintf(shorts[i], sizeof(shorts[i]), "a%02u", i % 16);
    *len = 3;
    return shorts[i];
}

static int kcmp(const void *a, size_t al, const void *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);

    return c != 0 ? c : (al > bl) - (al < bl);
}

/* The first present model key >= (or > when after) key; -1: none. */
static int model_seek(const struct model *m, const void *key, size_t klen, int after)
{
    int best = -1;
    unsigned i;
    size_t bl = 0, l;

    for (i = 0; i < NKEYS; i++) {
        const void *k = model_key(i, &l);
        int c;
        if (!m->present[i])
            continue;
        c = key == NULL ? 1 : kcmp(k, l, key, klen);
        if (c < 0 || (c == 0 && after))
            continue;
        if (best < 0 || kcmp(k, l, model_key((unsigned)best, &bl), bl) < 0)
            best = (int)i;
    }
    return best;
}

static void check_get(struct state *s, const struct key *k, const char *what)
{
    size_t vl = 7;
    int rc = dkv_get(g_db, k->p, k->len, s->buf, HUGE_VALUE, &vl);

    if (!key_valid(k)) {
        expect(what, rc, DKV_ERR_INVALID);
        return;
    }
    if (k->model < 0 || !s->m.present[k->model]) {
        expect(what, rc, DKV_NOTFOUND);
        return;
    }
    expect(what, rc, DKV_OK);
    if (vl != s->m.len[k->model] ||
        (vl > 0 && memcmp(s->buf, g_big + s->m.tag[k->model], vl) != 0))
        fail("a value reads back wrong", (int)vl, (int)s->m.len[k->model]);
}

static void check_all(struct state *s, const char *what)
{
    for (unsigned i = 0; i < NKEYS; i++) {
        struct key k = { NULL, 0, (int)i };
        k.p = model_key(i, &k.len);
        check_get(s, &k, what);
    }
}

/* ---- operations --------------------------------------------------------------- */

static void writes_happened(struct state *s)
{
    s->it_exact = 0;
}

static void op_put(struct state *s, struct input *in)
{
    struct key k = pick_key(in);
    struct value v = pick_value(in);
    int rc = dkv_put(g_db, k.p, k.len, v.p, v.len);

    if (!key_valid(&k) || !v.valid) {
        expect("put with a bad argument", rc, DKV_ERR_INVALID);
        return;
    }
    expect("put", rc, DKV_OK);
    writes_happened(s);
    if (k.model >= 0) {
        s->m.present[k.model] = 1;
        s->m.len[k.model] = v.len;
        s->m.tag[k.model] = v.tag;
    }
}

static void op_get(struct state *s, struct input *in)
{
    struct key k = pick_key(in);
    unsigned c = take(in);
    size_t vl = 0;
    int rc;

    switch (c % 5) {
    case 0:
        check_get(s, &k, "get");
        return;
    case 1:                                     /* NULL out-parameter */
        rc = dkv_get(g_db, k.p, k.len, s->buf, 10, NULL);
        expect("get with vlen NULL", rc, DKV_ERR_INVALID);
        return;
    case 2:                                     /* NULL buffer with a capacity */
        rc = dkv_get(g_db, k.p, k.len, NULL, 10, &vl);
        expect("get into NULL", rc, DKV_ERR_INVALID);
        return;
    case 3:                                     /* a NULL database */
        rc = dkv_get(NULL, k.p, k.len, s->buf, 10, &vl);
        expect("get from NULL", rc, DKV_ERR_INVALID);
        return;
    default: {                                  /* a short buffer: the length only */
        size_t cap = c % 3;
        memset(s->buf, 0xEE, 4);
        rc = dkv_get(g_db, k.p, k.len, cap ? s->buf : NULL, cap, &vl);
        if (!key_valid(&k))
            expect("get with a bad key", rc, DKV_ERR_INVALID);
        else if (k.model < 0 || !s->m.present[k.model])
            expect("get of an absent key", rc, DKV_NOTFOUND);
        else {
            size_t n = s->m.len[k.model] < cap ? s->m.len[k.model] : cap;
            expect("get into a short buffer", rc, DKV_OK);
            if (vl != s->m.len[k.model] || memcmp(s->buf, g_big + s->m.tag[k.model], n) != 0 ||
                (n < 4 && s->buf[n] != 0xEE))
                fail("get into a short buffer copied wrong", (int)vl, (int)n);
        }
    }
    }
}

static void op_delete(struct state *s, struct input *in)
{
    struct key k = pick_key(in);
    int null_db = take(in) % 8 == 7;
    int rc = dkv_delete(null_db ? NULL : g_db, k.p, k.len);

    if (null_db || !key_valid(&k)) {
        expect("delete with a bad argument", rc, DKV_ERR_INVALID);
        return;
    }
    if (k.model < 0 || !s->m.present[k.model]) {
        expect("delete of an absent key", rc, DKV_NOTFOUND);
        return;
    }
    expect("delete", rc, DKV_OK);
    writes_happened(s);
    s->m.present[k.model] = 0;
}

static void op_batch_add(struct state *s, struct input *in)
{
    struct key k = pick_key(in);
    unsigned c = take(in);
    int rc;

    if (c % 8 == 0) {                            /* a NULL batch */
        expect("batch_put(NULL)", dkv_batch_put(NULL, k.p, k.len, "v", 1), DKV_ERR_INVALID);
        expect("batch_delete(NULL)", dkv_batch_delete(NULL, k.p, k.len), DKV_ERR_INVALID);
        return;
    }
    if (s->b == NULL) {
        s->b = dkv_batch_new();
        if (s->b == NULL)
            fail("batch_new", DKV_ERR_NOMEM, DKV_OK);
        s->nbops = 0;
        s->batch_ops = 0;
    }
    if (c % 2) {
        struct value v = pick_value(in);
        if (v.len == BIG_VALUE + v.tag)
            v.len = 1000;                        /* a batch of long values may not fit */
        int huge = v.len == HUGE_VALUE - 256;
        rc = dkv_batch_put(s->b, k.p, k.len, v.p, v.len);
        if (!key_valid(&k) || (!v.valid && !huge)) {
            expect("batch_put with a bad argument", rc, DKV_ERR_INVALID);
            return;
        }
        if (huge) {
            /* Accepted by the batch (it is within DKV_VALUE_MAX); dkv_write
               refuses the whole batch as too large for the pool. */
            expect("batch_put of a long value", rc, DKV_OK);
            s->batch_ops = 1000000;
            return;
        }
        expect("batch_put", rc, DKV_OK);
        s->batch_ops++;
        if (k.model >= 0)
            s->bops[s->nbops++] = (struct bop){ k.model, 1, v.len, v.tag };
    } else {
        rc = dkv_batch_delete(s->b, k.p, k.len);
        if (!key_valid(&k)) {
            expect("batch_delete with a bad key", rc, DKV_ERR_INVALID);
            return;
        }
        expect("batch_delete", rc, DKV_OK);
        s->batch_ops++;
        if (k.model >= 0)
            s->bops[s->nbops++] = (struct bop){ k.model, 0, 0, 0 };
    }
}

static void op_write(struct state *s, struct input *in)
{
    unsigned c = take(in);
    int rc;

    if (c % 4 == 0) {
        expect("write(NULL batch)", dkv_write(g_db, NULL), DKV_ERR_INVALID);
        return;
    }
    if (s->b == NULL)
        return;
    if (c % 4 == 1) {
        expect("write(NULL db)", dkv_write(NULL, s->b), DKV_ERR_INVALID);
        return;
    }
    rc = dkv_write(g_db, s->b);
    if (s->batch_ops >= 1000000) {
        expect("write of a batch too large for the pool", rc, DKV_ERR_INVALID);
        return;                                  /* nothing applied */
    }
    expect("write", rc, DKV_OK);
    if (s->batch_ops > 0)
        writes_happened(s);
    for (unsigned i = 0; i < s->nbops; i++) {
        const struct bop *o = &s->bops[i];
        s->m.present[o->model] = o->present;
        s->m.len[o->model] = o->len;
        s->m.tag[o->model] = o->tag;
    }
    if (c % 4 == 2) {                            /* written again: the same state */
        expect("write again", dkv_write(g_db, s->b), DKV_OK);
    } else {
        dkv_batch_clear(s->b);
        s->batch_ops = 0;
        s->nbops = 0;
    }
}

static void op_batch_end(struct state *s, struct input *in)
{
    unsigned c = take(in);

    if (c % 2 == 0) {
        dkv_batch_clear(s->b);                   /* NULL is allowed */
        s->nbops = 0;
        s->batch_ops = 0;
    } else {
        dkv_batch_free(s->b);
        s->b = NULL;
    }
}

static void check_iter_at(struct state *s)
{
    size_t kl = 99, vl = 99, ml;
    const void *k = dkv_iter_key(s->it, &kl), *v = dkv_iter_value(s->it, &vl);

    if (!s->it_exact)
        return;
    if (s->it_pos < 0) {
        if (dkv_iter_valid(s->it) || k != NULL || kl != 0 || v != NULL || vl != 0)
            fail("an iterator past the end shows a key", (int)kl, 0);
        return;
    }
    if (!dkv_iter_valid(s->it) || k == NULL)
        fail("an iterator lost its key", 0, 1);
    {
        const void *mk = model_key((unsigned)s->it_pos, &ml);
        if (kl != ml || memcmp(k, mk, ml) != 0)
            fail("an iterator shows the wrong key", (int)kl, (int)ml);
        if (vl != s->m.len[s->it_pos] ||
            (vl > 0 && memcmp(v, g_big + s->m.tag[s->it_pos], vl) != 0))
            fail("an iterator shows the wrong value", (int)vl, (int)s->m.len[s->it_pos]);
    }
    /* NULL out-parameters are allowed */
    if (dkv_iter_key(s->it, NULL) != k || dkv_iter_value(s->it, NULL) != v)
        fail("dkv_iter_key/value with NULL lengths", 0, 1);
}

static void op_iter(struct state *s, struct input *in)
{
    unsigned c = take(in);
    int rc;

    switch (c % 6) {
    case 0:                                      /* new (bad arguments first) */
        expect("iter_new(NULL db)", dkv_iter_new(NULL, &(dkv_iter *){ NULL }), DKV_ERR_INVALID);
        expect("iter_new(NULL out)", dkv_iter_new(g_db, NULL), DKV_ERR_INVALID);
        if (s->it != NULL)
            return;
        expect("iter_new", dkv_iter_new(g_db, &s->it), DKV_OK);
        s->it_exact = 1;                         /* before a seek: not valid */
        s->it_pos = -1;
        check_iter_at(s);
        expect("iter_next before a seek", dkv_iter_next(s->it), DKV_ERR_INVALID);
        return;
    case 1: case 2: {                            /* seek */
        struct key k = pick_key(in);
        if (s->it == NULL) {
            expect("iter_seek(NULL)", dkv_iter_seek(NULL, k.p, k.len), DKV_ERR_INVALID);
            return;
        }
        if (c % 6 == 2)
            k.p = NULL;
        rc = dkv_iter_seek(s->it, k.p, k.len);
        if (k.p != NULL && !key_valid(&k)) {
            expect("iter_seek with a bad key", rc, DKV_ERR_INVALID);
            return;
        }
        expect("iter_seek", rc, DKV_OK);
        s->it_exact = 1;
        s->it_pos = model_seek(&s->m, k.p, k.len, 0);
        check_iter_at(s);
        return;
    }
    case 3: case 4:                              /* next, a few times */
        for (unsigned n = 0; n < 1 + c % 5; n++) {
            int was_valid = dkv_iter_valid(s->it);
            rc = dkv_iter_next(s->it);
            if (s->it == NULL) {
                expect("iter_next(NULL)", rc, DKV_ERR_INVALID);
                return;
            }
            if (!was_valid) {
                expect("iter_next past the end", rc, DKV_ERR_INVALID);
                return;
            }
            expect("iter_next", rc, DKV_OK);
            if (s->it_exact) {
                size_t l;
                const void *mk = model_key((unsigned)s->it_pos, &l);
                s->it_pos = model_seek(&s->m, mk, l, 1);
                check_iter_at(s);
            }
        }
        return;
    default:
        dkv_iter_free(s->it);                    /* NULL is allowed */
        s->it = NULL;
        return;
    }
}

/* Closes and reopens the database; with an iterator open the close is
   refused and changes nothing.  While it is closed, opens with bad
   options are refused and leave the data as it was. */
static void op_close(struct state *s, struct input *in)
{
    unsigned c = take(in);
    dkv_options o;
    dkv_db *db2 = (dkv_db *)&o;
    int rc;

    if (s->it != NULL) {
        expect("close with an iterator open", dkv_close(g_db), DKV_ERR_BUSY);
        check_iter_at(s);
        return;
    }
    expect("close", dkv_close(g_db), DKV_OK);
    g_db = NULL;
    dkv_options_init(&o);
    o.pool_size = POOL;
    o.direct = 0;
    o.io_engine = DKV_IO_PSYNC;
    o.commit_mode = DKV_COMMIT_ASYNC;
    o.create_if_missing = 0;
    switch (c % 6) {
    case 0: o.page_size = 8192; break;           /* not the recorded size */
    case 1: o.pool_size = 31 * 4096; break;      /* fewer than 32 frames */
    case 2: o.page_size = 4096 + 512; break;     /* not a power of two */
    case 3: o.page_size = 1u << 17; break;       /* above 64 KiB */
    case 4: o.io_engine = 17; break;
    default: o.commit_mode = -1; break;
    }
    rc = dkv_open(g_dir, &o, &db2);
    expect("open with a bad option", rc, DKV_ERR_INVALID);
    if (db2 != NULL)
        fail("a refused open left a database", rc, 0);
    o.pool_size = POOL;
    o.page_size = c % 2 ? 0 : 4096;
    o.io_engine = DKV_IO_PSYNC;
    o.commit_mode = DKV_COMMIT_ASYNC;
    expect("reopen", dkv_open(g_dir, &o, &g_db), DKV_OK);
    expect("second open of an open database", dkv_open(g_dir, &o, &db2), DKV_ERR_BUSY);
    check_all(s, "get after reopen");
}

static void op_multi_get(struct state *s, struct input *in)
{
    const void *keys[4];
    size_t klens[4], caps[4], vlens[4];
    void *bufs[4];
    int rcs[4], want = DKV_OK, rc;
    struct key k[4];
    unsigned n = take(in) % 5, c = take(in), i;

    for (i = 0; i < n; i++) {
        k[i] = pick_key(in);
        keys[i] = k[i].p;
        klens[i] = k[i].len;
        bufs[i] = s->buf + (size_t)i * (HUGE_VALUE / 4);
        caps[i] = HUGE_VALUE / 4;
        if (!key_valid(&k[i]) && want == DKV_OK)
            want = DKV_ERR_INVALID;
    }
    if (c % 4 == 0 && n > 0) {                   /* a NULL array */
        rc = dkv_multi_get(g_db, n, keys, klens, bufs, caps, NULL, rcs);
        expect("multi_get with vlens NULL", rc, DKV_ERR_INVALID);
        return;
    }
    if (c % 4 == 1 && n > 0) {                   /* a NULL buffer with a capacity */
        bufs[0] = NULL;
        if (want == DKV_OK)
            want = DKV_ERR_INVALID;
    }
    rc = dkv_multi_get(g_db, n, keys, klens, bufs, caps, vlens, rcs);
    expect("multi_get", rc, want);
    for (i = 0; i < n; i++) {
        int w = !key_valid(&k[i]) || bufs[i] == NULL ? DKV_ERR_INVALID
              : k[i].model < 0 || !s->m.present[k[i].model] ? DKV_NOTFOUND : DKV_OK;
        expect("multi_get entry", rcs[i], w);
        if (w == DKV_OK && (vlens[i] != s->m.len[k[i].model] ||
                            memcmp(bufs[i], g_big + s->m.tag[k[i].model], vlens[i]) != 0))
            fail("multi_get value", (int)vlens[i], (int)s->m.len[k[i].model]);
    }
}

static void op_misc(struct state *s, struct input *in)
{
    unsigned c = take(in);
    dkv_stats st;

    (void)s;
    switch (c % 7) {
    case 0: expect("checkpoint", dkv_checkpoint(g_db), DKV_OK); break;
    case 1: expect("checkpoint(NULL)", dkv_checkpoint(NULL), DKV_ERR_INVALID); break;
    case 2: expect("sync", dkv_sync(g_db), DKV_OK); break;
    case 3: expect("sync(NULL)", dkv_sync(NULL), DKV_ERR_INVALID); break;
    case 4: expect("stats(NULL)", dkv_stats_get(g_db, NULL), DKV_ERR_INVALID);
            expect("stats", dkv_stats_get(g_db, &st), DKV_OK); break;
    case 5: if (dkv_strerror((int)(int8_t)take(in)) == NULL)
                fail("strerror gave NULL", 0, 1);
            (void)dkv_io_engine_name((int)(int8_t)take(in));
            expect("close(NULL)", dkv_close(NULL), DKV_OK);
            break;
    default: {
        dkv_db *db2 = NULL;
        expect("open(NULL path)", dkv_open(NULL, NULL, &db2), DKV_ERR_INVALID);
        expect("open(\"\")", dkv_open("", NULL, &db2), DKV_ERR_INVALID);
        expect("open(NULL out)", dkv_open(g_dir, NULL, NULL), DKV_ERR_INVALID);
        dkv_options_init(NULL);
    }
    }
}

/* ---- the run -------------------------------------------------------------------- */

static void cleanup(void)
{
    if (g_db != NULL)
        dkv_close(g_db);
    g_db = NULL;
    if (g_dir[0] != '\0')
        fimg_remove_dir(g_dir);
    free(g_big);
}

static void setup_once(void)
{
    dkv_options o;
    size_t i;

    if (g_db != NULL)
        return;
    g_big = malloc(HUGE_VALUE + 256);
    if (g_big == NULL || fimg_scratch_dir(g_dir, sizeof(g_dir), "fuzz-api") != 0 ||
        fimg_create_small(g_dir) != DKV_OK)
        fail("setup", 0, 0);
    for (i = 0; i < HUGE_VALUE + 256; i++)
        g_big[i] = (unsigned char)(i * 131 + (i >> 9));
    memset(g_long_key, 'k', sizeof(g_long_key));
    dkv_options_init(&o);
    o.pool_size = POOL;
    o.direct = 0;
    o.io_engine = DKV_IO_PSYNC;
    o.commit_mode = DKV_COMMIT_ASYNC;
    expect("open", dkv_open(g_dir, &o, &g_db), DKV_OK);
    atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct input in = { data, size };
    struct state s;
    unsigned n, i;

    setup_once();
    memset(&s, 0, sizeof(s));
    s.buf = malloc(HUGE_VALUE + 16);
    if (s.buf == NULL)
        fail("out of memory", 0, 0);
    for (i = 0; i < NKEYS; i++) {                /* a known start */
        size_t l;
        const void *k = model_key(i, &l);
        int rc = dkv_delete(g_db, k, l);
        if (rc != DKV_OK && rc != DKV_NOTFOUND)
            fail("clearing a key", rc, DKV_OK);
    }
    for (n = 0; n < OPS_MAX && in.n > 0; n++) {
        unsigned op = take(&in) % 11;
        if (getenv("DKV_FUZZ_TRACE") != NULL)
            fprintf(stderr, "op %u: %u (%zu bytes left)\n", n, op, in.n);
        switch (op) {
        case 0: op_put(&s, &in); break;
        case 1: op_get(&s, &in); break;
        case 2: op_delete(&s, &in); break;
        case 3: op_batch_add(&s, &in); break;
        case 4: op_write(&s, &in); break;
        case 5: op_batch_end(&s, &in); break;
        case 6: case 7: op_iter(&s, &in); break;
        case 8: op_close(&s, &in); break;
        case 9: op_multi_get(&s, &in); break;
        default: op_misc(&s, &in); break;
        }
    }
    dkv_iter_free(s.it);
    dkv_batch_free(s.b);
    check_all(&s, "get at the end");
    free(s.buf);
    return 0;
}

/* ---- seeds ---------------------------------------------------------------------- */

int fuzz_make_seeds(fimg_seed_fn fn, void *arg)
{
    /* Each: operation bytes as LLVMFuzzerTestOneInput reads them. */
    static const unsigned char seeds[][40] = {
        { 0, 1, 6, 7, 1, 1, 0, 1, 0, 16, 4, 9, 1, 16, 0, 2, 1, 3 },
        { 3, 1, 1, 7, 9, 3, 2, 0, 3, 3, 5, 6, 4, 3, 4, 2, 1, 2, 4 },
        { 0, 3, 7, 5, 6, 0, 6, 1, 0, 6, 3, 6, 3, 6, 4, 6, 4, 8, 0, 6, 5, 8, 1 },
        { 0, 17, 6, 1, 0, 18, 6, 1, 0, 5, 2, 9, 0, 4, 5, 1, 19, 2, 2, 21, 1 },
        { 9, 3, 2, 1, 2, 18, 0, 4, 4, 9, 6, 9, 10, 0, 10, 2, 10, 4, 10, 5, 7 },
        { 0, 16, 4, 1, 6, 0, 6, 1, 16, 6, 3, 8, 1, 6, 5, 8, 3, 10, 6, 1 },
        { 3, 3, 16, 5, 2, 3, 5, 3, 3, 4, 4, 0, 4, 3, 5, 1, 1, 5, 1 },
    };
    unsigned i;

    for (i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        size_t n = sizeof(seeds[i]);
        while (n > 0 && seeds[i][n - 1] == 0)
            n--;
        fn(arg, seeds[i], n);
    }
    return (int)i;
}

const size_t fuzz_mutate_from = 0;
