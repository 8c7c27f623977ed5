/*
 * bench_util.c - what the pool and wal modes of dkv-bench share at run time:
 * named figures on result rows and the median of a configuration's runs;
 * a team of worker threads with a measured window the main thread opens
 * and closes; log-linear latency histograms; zipfian keys and shuffles.
 *
 * Entry points:
 *   bench_extra_set/get, bench_set_target, bench_rows_median   result rows
 *   bench_team_start/measure/sleep/ops/stop, bench_worker_ready  threads
 *   bench_hist_add/merge/pct_us                                 latencies
 *   bench_zipf_fill, bench_zipf_init/grow/next/scrambled,
 *   bench_shuffle                                               keys
 *   bench_sleep, bench_now_ns, bench_cpu_seconds               time
 *
 * Why a window rather than per-thread timers: every worker runs from one
 * start signal to one stop flag, and the main thread reads the operation
 * counters (and the library's statistics) at the two edges of the window,
 * so rates and statistics deltas cover exactly the same interval.
 */
#include "bench.h"

#include "dkv.h"

#include <errno.h>
#include <math.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- rows ------------------------------------------------------------------ */

void bench_extra_set(struct bench_result *r, const char *name, double value)
{
    unsigned i;

    for (i = 0; i < r->extra_count; i++) {
        if (strcmp(r->extra[i].name, name) == 0) {
            r->extra[i].value = value;
            return;
        }
    }
    if (r->extra_count == BENCH_EXTRA_MAX) {
        fprintf(stderr, "dkv-bench: too many figures on a row (%s)\n", name);
        return;
    }
    r->extra[r->extra_count].name = name;
    r->extra[r->extra_count++].value = value;
}

double bench_extra_get(const struct bench_result *r, const char *name)
{
    unsigned i;

    for (i = 0; i < r->extra_count; i++)
        if (strcmp(r->extra[i].name, name) == 0)
            return r->extra[i].value;
    return 0.0;
}

void bench_set_target(struct bench_result *r, const char *name, double measured,
                      double target, int le)
{
    r->target_name = name;
    r->measured = measured;
    r->target = target;
    r->target_le = le;
    r->pass = le ? measured <= target : measured >= target;
}

static double median_of(double *values, unsigned n)
{
    double lo, hi, mid;

    bench_summarize(values, n, &mid, &lo, &hi);
    return mid;
}

void bench_rows_median(const struct bench_result *runs, unsigned n,
                       struct bench_result *out)
{
    double *v = calloc(n, sizeof(*v));
    unsigned i, k;

    *out = runs[0];
    out->runs = n;
    if (v == NULL)
        return;                      /* the first run stands for all */
    for (i = 0; i < n; i++)
        v[i] = runs[i].ops_per_sec;
    bench_summarize(v, n, &out->ops_per_sec, &out->ops_min, &out->ops_max);
    for (k = 0; k < runs[0].extra_count; k++) {
        for (i = 0; i < n; i++)
            v[i] = bench_extra_get(&runs[i], runs[0].extra[k].name);
        out->extra[k].value = median_of(v, n);
    }
    for (i = 0; i < n; i++)
        v[i] = runs[i].ratio;
    out->ratio = median_of(v, n);
    free(v);
}

/* ---- time ---------------------------------------------------------------------- */

void bench_sleep(double seconds)
{
    struct timespec ts;

    if (!(seconds > 0))
        return;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0)
        ;
}

uint64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double bench_cpu_seconds(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0.0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/* ---- worker threads ---------------------------------------------------------- */

int bench_team_start(struct bench_team *t, unsigned n, void *(*fn)(void *),
                     void *args, size_t stride)
{
    unsigned i;

    if (n == 0 || n > BENCH_THREADS_MAX)
        return DKV_ERR_INVALID;
    memset(t, 0, sizeof(*t));
    for (i = 0; i < n; i++) {
        struct bench_worker *w = (struct bench_worker *)((char *)args + i * stride);
        w->ctl = &t->ctl;
        w->index = i;
        w->rc = 0;
        atomic_store(&w->ops, 0);
        t->workers[i] = w;
        if (pthread_create(&t->tids[i], NULL, fn, w) != 0)
            break;
        t->count = i + 1;
    }
    if (i < n) {
        bench_team_stop(t);          /* the started ones leave at once */
        return DKV_ERR_NOMEM;
    }
    /* Bounded: a thread that was created reaches its loop. */
    while (atomic_load(&t->ctl.ready) < n)
        bench_sleep(0.0001);
    atomic_store(&t->ctl.go, 1);
    return DKV_OK;
}

void bench_worker_ready(struct bench_worker *w)
{
    atomic_fetch_add(&w->ctl->ready, 1);
    while (!atomic_load(&w->ctl->go) && !atomic_load(&w->ctl->stop))
        bench_sleep(0.0001);
}

uint64_t bench_team_ops(const struct bench_team *t)
{
    uint64_t sum = 0;
    unsigned i;

    for (i = 0; i < t->count; i++)
        sum += atomic_load_explicit(&t->workers[i]->ops, memory_order_relaxed);
    return sum;
}

void bench_team_measure(struct bench_team *t, int on)
{
    atomic_store(&t->ctl.measuring, on);
}

/* The first error a worker reported, or 0. */
static int team_error(const struct bench_team *t)
{
    unsigned i;

    for (i = 0; i < t->count; i++)
        if (t->workers[i]->rc != 0)
            return t->workers[i]->rc;
    return 0;
}

int bench_team_sleep(struct bench_team *t, double s)
{
    double until = bench_now() + s;

    /* In slices, so that a failed worker ends the run early. */
    while (bench_now() < until && !atomic_load(&t->ctl.stop)) {
        double left = until - bench_now();
        bench_sleep(left < 0.05 ? left : 0.05);
    }
    return atomic_load(&t->ctl.stop) != 0;
}

int bench_team_stop(struct bench_team *t)
{
    unsigned i;

    atomic_store(&t->ctl.measuring, 0);
    atomic_store(&t->ctl.stop, 1);
    for (i = 0; i < t->count; i++)
        pthread_join(t->tids[i], NULL);
    return team_error(t);
}

/* ---- histograms ---------------------------------------------------------------- */

static unsigned hist_index(uint64_t ns)
{
    unsigned e, sub;

    if (ns < 128)
        return (unsigned)ns;
    e = 63u - (unsigned)__builtin_clzll(ns);         /* 7..63 */
    sub = (unsigned)(ns >> (e - 6)) & 63u;
    return 128u + (e - 7u) * 64u + sub;
}

/* The smallest value of bucket i. */
static uint64_t hist_floor(unsigned i)
{
    unsigned e, sub;

    if (i < 128)
        return i;
    e = (i - 128u) / 64u + 7u;
    sub = (i - 128u) % 64u;
    return (1ull << e) + ((uint64_t)sub << (e - 6));
}

void bench_hist_add(struct bench_hist *h, uint64_t ns)
{
    h->buckets[hist_index(ns)]++;
    h->count++;
    h->sum_ns += ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
    unsigned i;

    for (i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum_ns += src->sum_ns;
    if (src->max_ns > dst->max_ns)
        dst->max_ns = src->max_ns;
}

double bench_hist_pct_us(const struct bench_hist *h, double pct)
{
    uint64_t want, seen = 0;
    unsigned i;

    if (h->count == 0)
        return 0.0;
    want = (uint64_t)ceil((double)h->count * pct / 100.0);
    want = want == 0 ? 1 : want;
    for (i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= want) {
            /* The middle of the bucket, never above the true maximum. */
            uint64_t lo = hist_floor(i);
            uint64_t hi = i + 1 < BENCH_HIST_BUCKETS ? hist_floor(i + 1) : lo;
            uint64_t mid = lo + (hi - lo) / 2;
            return (double)(mid < h->max_ns ? mid : h->max_ns) / 1000.0;
        }
    }
    return (double)h->max_ns / 1000.0;
}

/* ---- keys ------------------------------------------------------------------------ */

void bench_zipf_fill(uint32_t *out, size_t len, uint32_t n, double theta,
                     uint64_t seed)
{
    double zetan = 0.0, zeta2, alpha, eta;
    uint64_t rng = seed;
    uint32_t i;
    size_t k;

    for (i = 1; i <= n; i++)
        zetan += 1.0 / pow((double)i, theta);
    zeta2 = 1.0 + 1.0 / pow(2.0, theta);
    alpha = 1.0 / (1.0 - theta);
    eta = (1.0 - pow(2.0 / n, 1.0 - theta)) / (1.0 - zeta2 / zetan);
    for (k = 0; k < len; k++) {
        double u = (double)(bench_rand(&rng) >> 11) * 0x1.0p-53;
        double uz = u * zetan;
        uint64_t r;
        if (uz < 1.0)
            r = 0;
        else if (uz < zeta2)
            r = 1;
        else
            r = (uint64_t)((double)n * pow(eta * u - eta + 1.0, alpha));
        out[k] = (uint32_t)(r < n ? r : n - 1);
    }
}

#define ZETA_EXACT_MAX 10000000ull     /* terms summed one by one          */
#define ZETA_HEAD      1000000ull      /* then this many, and a tail        */

/* sum of i^-theta for i in (from, to]. */
static double zeta_sum(uint64_t from, uint64_t to, double theta)
{
    double s = 0.0;

    for (uint64_t i = from + 1; i <= to; i++)
        s += pow((double)i, -theta);
    return s;
}

/* zeta(n, theta) = sum of i^-theta for i in [1, n]: exact up to
   ZETA_EXACT_MAX terms; beyond, the first ZETA_HEAD terms and the rest by
   the Euler-Maclaurin formula (its error is far below a double's step
   there). */
static double zeta(uint64_t n, double theta)
{
    double m = (double)ZETA_HEAD, x = (double)n, tail;

    if (n <= ZETA_EXACT_MAX)
        return zeta_sum(0, n, theta);
    tail = (pow(x, 1.0 - theta) - pow(m, 1.0 - theta)) / (1.0 - theta) +
           (pow(x, -theta) - pow(m, -theta)) / 2.0 -
           theta * (pow(x, -theta - 1.0) - pow(m, -theta - 1.0)) / 12.0;
    return zeta_sum(0, ZETA_HEAD, theta) + tail;
}

static void zipf_derive(struct bench_zipf *z)
{
    z->eta = (1.0 - pow(2.0 / (double)z->n, 1.0 - z->theta)) /
             (1.0 - z->zeta2 / z->zetan);
}

void bench_zipf_init(struct bench_zipf *z, uint64_t n, double theta)
{
    z->n = n;
    z->theta = theta;
    z->alpha = 1.0 / (1.0 - theta);
    z->zetan = zeta(n, theta);
    z->zeta2 = 1.0 + pow(0.5, theta);
    zipf_derive(z);
}

void bench_zipf_grow(struct bench_zipf *z, uint64_t n_new)
{
    if (n_new <= z->n)
        return;
    z->zetan += zeta_sum(z->n, n_new, z->theta);
    z->n = n_new;
    zipf_derive(z);
}

uint64_t bench_zipf_next(const struct bench_zipf *z, uint64_t *rng)
{
    double u = (double)(bench_rand(rng) >> 11) * 0x1.0p-53;
    double uz = u * z->zetan;
    uint64_t r;

    if (uz < 1.0)
        return 0;
    if (uz < z->zeta2)
        return 1;
    r = (uint64_t)((double)z->n * pow(z->eta * u - z->eta + 1.0, z->alpha));
    return r < z->n ? r : z->n - 1;
}

uint64_t bench_zipf_scrambled(const struct bench_zipf *z, uint64_t *rng, uint64_t n)
{
    uint64_t rank = bench_zipf_next(z, rng), h = 0xcbf29ce484222325ull;

    for (int i = 0; i < 8; i++) {       /* FNV-1a over the rank's 8 bytes */
        h ^= rank & 0xff;
        h *= 0x100000001b3ull;
        rank >>= 8;
    }
    return h % n;
}

void bench_shuffle(uint32_t *a, size_t n, uint64_t *rng)
{
    size_t i;

    for (i = n; i > 1; i--) {
        size_t j = (size_t)bench_rand_below(rng, i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* Parses "4096", "16K", "512M", "1G", "1GiB" (binary multiples) into
   *value.  Returns 0, or -1 for anything else or an overflow. */
int bench_parse_size(const char *text, uint64_t *value)
{
    unsigned long long n;
    uint64_t mult = 1;
    char *end;

    if (text[0] < '0' || text[0] > '9')
        return -1;
    errno = 0;
    n = strtoull(text, &end, 10);
    if (errno != 0 || end == text)
        return -1;
    switch (*end) {
    case 'k': case 'K': mult = 1ull << 10; end++; break;
    case 'm': case 'M': mult = 1ull << 20; end++; break;
    case 'g': case 'G': mult = 1ull << 30; end++; break;
    case 't': case 'T': mult = 1ull << 40; end++; break;
    default: break;
    }
    if (mult > 1 && *end == 'i')
        end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end != '\0' || (n != 0 && n > UINT64_MAX / mult))
        return -1;
    *value = (uint64_t)n * mult;
    return 0;
}
