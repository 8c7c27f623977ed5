/*
 * lru.c - page replacement: InnoDB's LRU with midpoint insertion, the free
 * list, and the search for a victim at the tail.
 *
 * The LRU runs from the young head to the tail.  Its last old_pct percent
 * (37 by default) is the "old" sublist, starting at pool->lru_old.  A page
 * read from disk enters at the head of the old sublist (P6a); a later touch
 * moves it to the young head only if at least old_blocks_time has passed
 * since its first touch (P6b; with old_blocks_time 0, as in InnoDB, the
 * first touch already does), so a scan that touches each page a few times
 * in quick succession passes through the old sublist and leaves the young
 * part, the hot set, alone.  A touch on a young page that is still in the
 * first quarter of the young part does nothing and takes no lock (P6c):
 * "near the head" is measured by the evictions since the page was made
 * young (InnoDB's freed_page_clock).
 *
 * Entry points: lru_insert_old, lru_make_young, lru_remove, lru_touch,
 * lru_get_victim, lru_scan_tail, free_push, free_pop.
 */
#include "pool_int.h"

#include "dkv.h"

#define LRU_NOT_TOUCHED UINT64_MAX

/* ---- the lists (pool->lru_lock held) ------------------------------------------- */

void free_push(struct pool *pool, struct frame *f)
{
    dkv_assert(!atomic_load(&f->in_lru));
    f->lru_prev = NULL;
    f->lru_next = pool->free_head;
    pool->free_head = f;
    atomic_fetch_add(&pool->free_count, 1);
    if (atomic_load(&pool->free_waiters) > 0)
        pthread_cond_broadcast(&pool->free_cv);
}

struct frame *free_pop(struct pool *pool)
{
    struct frame *f = pool->free_head;

    if (f != NULL) {
        pool->free_head = f->lru_next;
        f->lru_next = NULL;
        atomic_fetch_sub(&pool->free_count, 1);
    }
    return f;
}

/* Keeps the old sublist at least old_pct of the LRU by moving the boundary
   toward the head: the young part's tail ages into the old part.  It never
   shrinks the old part by promoting its head: a page becomes young only by
   earning it (P6b), so while the pool fills every page read stays old. */
static void old_adjust(struct pool *pool)
{
    unsigned len = atomic_load(&pool->lru_len);
    unsigned target = (unsigned)((uint64_t)len * pool->old_pct / 100);

    while (atomic_load(&pool->old_len) < target) {
        struct frame *f = pool->lru_old ? pool->lru_old->lru_prev : pool->lru_tail;
        if (f == NULL)
            break;
        atomic_store(&f->old, 1);
        pool->lru_old = f;
        atomic_fetch_add(&pool->old_len, 1);
    }
}

static void link_before(struct pool *pool, struct frame *f, struct frame *next)
{
    f->lru_next = next;
    f->lru_prev = next ? next->lru_prev : pool->lru_tail;
    if (f->lru_prev)
        f->lru_prev->lru_next = f;
    else
        pool->lru_head = f;
    if (next)
        next->lru_prev = f;
    else
        pool->lru_tail = f;
    atomic_store(&f->in_lru, 1);
    atomic_fetch_add(&pool->lru_len, 1);
}

void lru_insert_old(struct pool *pool, struct frame *f)
{
    dkv_assert(!atomic_load(&f->in_lru));
    atomic_store(&f->first_access_ms, LRU_NOT_TOUCHED);
    link_before(pool, f, pool->lru_old);
    atomic_store(&f->old, 1);
    pool->lru_old = f;
    atomic_fetch_add(&pool->old_len, 1);
    old_adjust(pool);
}

void lru_remove(struct pool *pool, struct frame *f)
{
    if (!atomic_load(&f->in_lru))
        return;
    if (pool->lru_old == f)
        pool->lru_old = f->lru_next;
    if (atomic_load(&f->old))
        atomic_fetch_sub(&pool->old_len, 1);
    if (f->lru_prev)
        f->lru_prev->lru_next = f->lru_next;
    else
        pool->lru_head = f->lru_next;
    if (f->lru_next)
        f->lru_next->lru_prev = f->lru_prev;
    else
        pool->lru_tail = f->lru_prev;
    f->lru_prev = f->lru_next = NULL;
    atomic_store(&f->in_lru, 0);
    atomic_store(&f->old, 0);
    atomic_fetch_sub(&pool->lru_len, 1);
    old_adjust(pool);
}

void lru_make_young(struct pool *pool, struct frame *f)
{
    lru_remove(pool, f);
    link_before(pool, f, pool->lru_head);
    atomic_store(&f->old, 0);
    atomic_store(&f->young_clock, atomic_load(&pool->evict_clock));
    /* Adding at the head grew the young part: let the boundary follow. */
    old_adjust(pool);
}

/* ---- the policy on a hit (no lock unless the page moves) ----------------------- */

static void move_young(struct pool *pool, struct frame *f, int want_old)
{
    pthread_mutex_lock(&pool->lru_lock);
    if (atomic_load(&f->in_lru) && atomic_load(&f->old) == want_old)
        lru_make_young(pool, f);
    pthread_mutex_unlock(&pool->lru_lock);
}

void lru_touch(struct pool *pool, struct frame *f, int hot)
{
    uint64_t now, first;

    if (!atomic_load(&f->in_lru))
        return;
    /* Nothing evicted yet (warming up, or everything fits): the order of
       the list matters to no one, so a hit moves nothing and takes no
       lock (InnoDB: freed_page_clock == 0). */
    if (atomic_load(&pool->evict_clock) == 0)
        return;
    if (!atomic_load(&f->old)) {
        /* P6c: young and within the first quarter of the young part. */
        uint64_t young_len = atomic_load(&pool->lru_len) - atomic_load(&pool->old_len);
        uint64_t since = atomic_load(&pool->evict_clock) - atomic_load(&f->young_clock);
        if (since >= young_len / 4 + 1)
            move_young(pool, f, 0);
        return;
    }
    if (!hot) {                       /* P6e: no old_blocks_time for it */
        now = pool_now_ms(pool);
        first = atomic_load(&f->first_access_ms);
        if (first == LRU_NOT_TOUCHED) {
            /* The first touch since the read starts the clock (P6b). */
            atomic_store(&f->first_access_ms, now);
            if (pool->old_time_ms != 0) {
                atomic_fetch_add(&pool->not_young, 1);
                return;
            }
        } else if (now - first < pool->old_time_ms) {
            atomic_fetch_add(&pool->not_young, 1);
            return;
        }
    }
    move_young(pool, f, 1);
    atomic_fetch_add(&pool->made_young, 1);
}

/* ---- victims --------------------------------------------------------------------- */

static int looks_idle(struct frame *f)
{
    return atomic_load(&f->pin_count) == 0 && !atomic_load(&f->dirty) &&
           !atomic_load(&f->write_pending) &&
           atomic_load(&f->state) == FRAME_VALID;
}

/* Evicts f (lru_lock held): out of the page table and the LRU.  Returns 1
   when it was idle and is now free for the caller. */
static int evict(struct pool *pool, struct frame *f)
{
    if (!looks_idle(f) || !pool_hash_remove_if_idle(pool, f))
        return 0;
    lru_remove(pool, f);
    atomic_fetch_add(&pool->evictions, 1);
    atomic_fetch_add(&pool->evict_clock, 1);
    return 1;
}

struct frame *lru_get_victim(struct pool *pool, int *dirty_seen)
{
    struct frame *f, *prev;
    unsigned scanned = 0;

    pthread_mutex_lock(&pool->lru_lock);
    f = free_pop(pool);
    for (prev = pool->lru_tail; f == NULL && prev && scanned < POOL_LRU_SCAN;
         scanned++) {
        struct frame *cur = prev;
        prev = cur->lru_prev;
        if (evict(pool, cur))
            f = cur;
        else if (atomic_load(&cur->dirty))
            *dirty_seen = 1;
    }
    pthread_mutex_unlock(&pool->lru_lock);
    return f;
}

unsigned lru_scan_tail(struct pool *pool, unsigned want, struct frame **dirty,
                       unsigned dirty_max)
{
    struct frame *cur, *prev;
    unsigned scanned = 0, n = 0;
    unsigned depth = want + dirty_max > POOL_LRU_SCAN ? want + dirty_max
                                                      : POOL_LRU_SCAN;

    pthread_mutex_lock(&pool->lru_lock);
    for (cur = pool->lru_tail; cur && scanned < depth; cur = prev, scanned++) {
        prev = cur->lru_prev;
        if (atomic_load(&pool->free_count) >= want && n >= dirty_max)
            break;
        if (atomic_load(&pool->free_count) < want && evict(pool, cur)) {
            free_push(pool, cur);
            continue;
        }
        /* A dirty frame cannot be evicted, so pinning it here without the
           partition lock is safe (P1's one exception). */
        if (n < dirty_max && atomic_load(&cur->dirty) &&
            !atomic_load(&cur->write_pending) &&
            atomic_load(&cur->pin_count) == 0) {
            atomic_fetch_add(&cur->pin_count, 1);
            dirty[n++] = cur;
        }
    }
    pthread_mutex_unlock(&pool->lru_lock);
    return n;
}
