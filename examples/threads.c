/*
 * threads.c - one dkv_db shared by several threads: each thread puts its
 * own keys and reads back its own and the other threads' keys.  A dkv_db
 * is thread-safe; concurrent durable puts share log syncs (group commit).
 *
 *   cc threads.c $(pkg-config --cflags --libs dkv) -pthread -o threads
 *   ./threads /tmp/demo-db
 */
#include <dkv.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define THREADS 4
#define KEYS    500

struct worker {
    dkv_db *db;
    int     id;
    int     failures;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    char key[32], want[32], got[32];
    size_t len;
    int i;

    for (i = 0; i < KEYS; i++) {
        int kl = snprintf(key, sizeof(key), "t%d:%05d", w->id, i);
        int vl = snprintf(want, sizeof(want), "value %d of thread %d", i, w->id);
        if (dkv_put(w->db, key, (size_t)kl, want, (size_t)vl) != DKV_OK)
            w->failures++;
        /* Read back our own key, and one another thread may have written. */
        if (dkv_get(w->db, key, (size_t)kl, got, sizeof(got), &len) != DKV_OK ||
            len != (size_t)vl || memcmp(got, want, len) != 0)
            w->failures++;
        kl = snprintf(key, sizeof(key), "t%d:%05d", (w->id + 1) % THREADS, i);
        if (dkv_get(w->db, key, (size_t)kl, got, sizeof(got), &len) < 0)
            w->failures++;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "threads-db";
    struct worker workers[THREADS];
    pthread_t tids[THREADS];
    dkv_options opts;
    dkv_stats st;
    dkv_db *db;
    int i, failures = 0, rc;

    dkv_options_init(&opts);
    opts.pool_size = 16u << 20;
    rc = dkv_open(path, &opts, &db);
    if (rc != DKV_OK) {
        fprintf(stderr, "threads: open: %s\n", dkv_strerror(rc));
        return 1;
    }
    for (i = 0; i < THREADS; i++) {
        workers[i] = (struct worker){ .db = db, .id = i };
        pthread_create(&tids[i], NULL, work, &workers[i]);
    }
    for (i = 0; i < THREADS; i++) {
        pthread_join(tids[i], NULL);
        failures += workers[i].failures;
    }
    dkv_stats_get(db, &st);
    printf("%d threads x %d durable puts: %llu log syncs (%.1f commits per sync)\n",
           THREADS, KEYS, (unsigned long long)st.wal_syncs,
           st.wal_syncs ? (double)(THREADS * KEYS) / (double)st.wal_syncs : 0.0);
    rc = dkv_close(db);
    if (failures > 0 || rc != DKV_OK) {
        fprintf(stderr, "threads: %d failed operations, close: %s\n", failures,
                dkv_strerror(rc));
        return 1;
    }
    return 0;
}
