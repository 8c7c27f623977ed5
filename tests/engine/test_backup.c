/*
 * test_backup.c - dkv_backup (engine/backup.c, wal/backup.c) and dkv_check
 * (engine/check.c) through the public API.
 *
 * The main test takes a backup while writer threads keep putting, batching
 * and deleting through the same dkv_db, with a pool much smaller than the
 * data so that the page cleaner writes pages while they are being copied.
 * Each writer publishes how far its acknowledged writes got; the test
 * notes those marks just before the backup starts.  The copy must open,
 * pass dkv_check, hold every write acknowledged before the marks with its
 * value, hold no value that was never written, and hold each batch whole
 * or not at all.  Then the misuse a caller can reach: a destination that
 * holds a database, a read-only handle, a destination that is a file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_util.h"

#include "pager/page_format.h"
#include "pager/pager.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

static void remove_tree(struct test_dir *dir)
{
    char cmd[300];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir->path);
    assert_int_equal(system(cmd), 0);
}

#define WRITERS     2
#define PRELOAD     20000u
#define VALUE_LEN   200u
#define BATCH_KEYS  4u

struct writer {
    dkv_db  *db;
    unsigned id;
    uint64_t seed;
    uint64_t acked;              /* atomic: writes 0..acked-1 acknowledged */
    int      stop;               /* atomic */
    int      failures;
};

static void key_of(char *key, size_t cap, unsigned id, uint64_t seq, unsigned part)
{
    snprintf(key, cap, "w%u:%08llu:%u", id, (unsigned long long)seq, part);
}

static uint64_t value_seed(const struct writer *w, uint64_t seq, unsigned part)
{
    return w->seed ^ ((uint64_t)w->id << 56) ^ (seq << 8) ^ part;
}

/* Write seq: every 4th a batch of BATCH_KEYS keys, every 7th also deletes
   a preloaded key, else one put. */
static void *writer_main(void *arg)
{
    struct writer *w = arg;
    dkv_batch *b = dkv_batch_new();
    unsigned char val[VALUE_LEN];
    char key[48];
    uint64_t seq;

    for (seq = 0; !__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE); seq++) {
        int rc = DKV_OK;
        unsigned part;
        if (seq % 4 == 3) {
            dkv_batch_clear(b);
            for (part = 0; part < BATCH_KEYS; part++) {
                key_of(key, sizeof(key), w->id, seq, part);
                test_fill(val, sizeof(val), value_seed(w, seq, part));
                dkv_batch_put(b, key, strlen(key), val, sizeof(val));
            }
            rc = dkv_write(w->db, b);
        } else {
            key_of(key, sizeof(key), w->id, seq, 0);
            test_fill(val, sizeof(val), value_seed(w, seq, 0));
            rc = dkv_put(w->db, key, strlen(key), val, sizeof(val));
        }
        if (rc == DKV_OK && seq % 7 == 0) {
            snprintf(key, sizeof(key), "pre%06llu",
                     (unsigned long long)((seq / 7 * WRITERS + w->id) % PRELOAD));
            rc = dkv_delete(w->db, key, strlen(key));
            rc = rc == DKV_NOTFOUND ? DKV_OK : rc;
        }
        if (rc != DKV_OK) {
            w->failures++;
            break;
        }
        __atomic_store_n(&w->acked, seq + 1, __ATOMIC_RELEASE);
    }
    dkv_batch_free(b);
    return NULL;
}

static dkv_db *open_mode(const char *path, int commit_mode)
{
    dkv_options o;
    dkv_db *db;

    dkv_options_init(&o);
    o.commit_mode = commit_mode;
    o.pool_size = 2u << 20;                 /* 512 pages of 4 KiB: the data is larger */
    o.page_size = 4096;
    assert_rc(dkv_open(path, &o, &db), DKV_OK);
    return db;
}

static dkv_db *open_small(const char *path)
{
    return open_mode(path, DKV_COMMIT_SYNC);
}

/* 1 when key holds exactly the value written for (w, seq, part); 0 when
   absent; fails on a wrong value. */
static int present(dkv_db *db, const struct writer *w, uint64_t seq, unsigned part)
{
    unsigned char val[VALUE_LEN + 1];
    char key[48];
    size_t len;
    int rc;

    key_of(key, sizeof(key), w->id, seq, part);
    rc = dkv_get(db, key, strlen(key), val, sizeof(val), &len);
    if (rc == DKV_NOTFOUND)
        return 0;
    assert_rc(rc, DKV_OK);
    assert_int_equal(len, VALUE_LEN);
    if (test_mismatch(val, len, value_seed(w, seq, part)) != (size_t)-1)
        fail_msg("key %s holds a value that was never written", key);
    return 1;
}

static void verify_copy(const char *path, const struct writer *ws, const uint64_t *marks)
{
    dkv_db *db = open_small(path);
    dkv_check_info ci;
    unsigned i;

    assert_rc(dkv_check(db, &ci), DKV_OK);
    for (i = 0; i < WRITERS; i++) {
        uint64_t seq;
        /* Acknowledged before the backup began: there. */
        for (seq = 0; seq < marks[i]; seq++) {
            unsigned part, parts = seq % 4 == 3 ? BATCH_KEYS : 1;
            for (part = 0; part < parts; part++)
                if (!present(db, &ws[i], seq, part))
                    fail_msg("writer %u's write %llu (acknowledged before the backup) "
                             "is missing from the copy", i, (unsigned long long)seq);
        }
        /* Later writes: whole or absent. */
        for (seq = marks[i]; seq <= ws[i].acked; seq++) {
            unsigned part, parts = seq % 4 == 3 ? BATCH_KEYS : 1, n = 0;
            for (part = 0; part < parts; part++)
                n += (unsigned)present(db, &ws[i], seq, part);
            if (n != 0 && n != parts)
                fail_msg("batch %llu of writer %u is in the copy in part (%u of %u)",
                         (unsigned long long)seq, i, n, parts);
        }
    }
    printf("copy: %llu keys, %llu pages, height %u\n", (unsigned long long)ci.keys,
           (unsigned long long)ci.page_count, ci.height);
    assert_rc(dkv_close(db), DKV_OK);
}

/* Writers run durable (DKV_COMMIT_SYNC) or asynchronous commits; with
   the latter they write many times faster during the copy, and the
   cleaner writes pages all the while. */
static void backup_while_writing(int commit_mode)
{
    struct test_dir dir;
    char src[256], dst[256];
    struct writer ws[WRITERS];
    pthread_t tids[WRITERS];
    uint64_t marks[WRITERS], seed = test_seed("test_backup");
    unsigned char val[VALUE_LEN];
    dkv_db *db;
    unsigned i;

    assert_int_equal(test_dir_make(&dir, "/tmp"), 0);
    test_dir_file(&dir, "src", src, sizeof(src));
    test_dir_file(&dir, "copy", dst, sizeof(dst));
    db = open_mode(src, commit_mode);
    {                                       /* ~5 MB of pages: more than the pool */
        dkv_batch *b = dkv_batch_new();
        for (i = 0; i < PRELOAD; i++) {
            char key[32];
            snprintf(key, sizeof(key), "pre%06u", i);
            test_fill(val, sizeof(val), seed + i);
            assert_rc(dkv_batch_put(b, key, strlen(key), val, sizeof(val)), DKV_OK);
            if (i % 100 == 99) {
                assert_rc(dkv_write(db, b), DKV_OK);
                dkv_batch_clear(b);
            }
        }
        assert_rc(dkv_write(db, b), DKV_OK);
        dkv_batch_free(b);
    }
    for (i = 0; i < WRITERS; i++) {
        ws[i] = (struct writer){ .db = db, .id = i, .seed = seed };
        assert_int_equal(pthread_create(&tids[i], NULL, writer_main, &ws[i]), 0);
    }
    while (__atomic_load_n(&ws[0].acked, __ATOMIC_ACQUIRE) < 200 ||
           __atomic_load_n(&ws[1].acked, __ATOMIC_ACQUIRE) < 200)
        usleep(1000);
    for (i = 0; i < WRITERS; i++)
        marks[i] = __atomic_load_n(&ws[i].acked, __ATOMIC_ACQUIRE);
    assert_rc(dkv_backup(db, dst), DKV_OK);
    usleep(20000);                          /* the writers go on after it */
    for (i = 0; i < WRITERS; i++)
        __atomic_store_n(&ws[i].stop, 1, __ATOMIC_RELEASE);
    for (i = 0; i < WRITERS; i++) {
        pthread_join(tids[i], NULL);
        assert_int_equal(ws[i].failures, 0);
        printf("writer %u: %llu writes before the backup, %llu in all\n", i,
               (unsigned long long)marks[i], (unsigned long long)ws[i].acked);
    }
    assert_rc(dkv_close(db), DKV_OK);
    verify_copy(dst, ws, marks);
    /* The source is still sound after serving the backup. */
    db = open_small(src);
    {
        dkv_check_info ci;
        assert_rc(dkv_check(db, &ci), DKV_OK);
    }
    assert_rc(dkv_close(db), DKV_OK);
    remove_tree(&dir);
}

static void test_backup_while_writing_sync(void **state)
{
    (void)state;
    backup_while_writing(DKV_COMMIT_SYNC);
}

static void test_backup_while_writing_async(void **state)
{
    (void)state;
    backup_while_writing(DKV_COMMIT_ASYNC);
}

static void test_backup_misuse(void **state)
{
    struct test_dir dir;
    char src[256], dst[256], file[256];
    dkv_options o;
    dkv_db *db;
    FILE *f;

    (void)state;
    assert_int_equal(test_dir_make(&dir, "/tmp"), 0);
    test_dir_file(&dir, "src", src, sizeof(src));
    test_dir_file(&dir, "copy", dst, sizeof(dst));
    test_dir_file(&dir, "a-file", file, sizeof(file));
    db = open_small(src);
    assert_rc(dkv_put(db, "k", 1, "v", 1), DKV_OK);
    assert_rc(dkv_backup(db, NULL), DKV_ERR_INVALID);
    assert_rc(dkv_backup(db, ""), DKV_ERR_INVALID);
    /* Never over a database, not even its own. */
    assert_rc(dkv_backup(db, src), DKV_ERR_INVALID);
    f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    assert_true(dkv_backup(db, file) < 0);
    assert_rc(dkv_backup(db, dst), DKV_OK);
    assert_rc(dkv_backup(db, dst), DKV_ERR_INVALID);
    assert_rc(dkv_close(db), DKV_OK);
    dkv_options_init(&o);
    o.read_only = 1;
    o.pool_size = 2u << 20;
    assert_rc(dkv_open(src, &o, &db), DKV_OK);
    assert_rc(dkv_backup(db, dst), DKV_ERR_READONLY);
    {
        dkv_check_info ci;
        assert_rc(dkv_check(db, &ci), DKV_ERR_READONLY);
    }
    assert_rc(dkv_close(db), DKV_OK);
    remove_tree(&dir);
}

/* A page that fails its checksum in the source is copied again for a
   while (it could be a write in flight), then reported: the backup fails
   with DKV_ERR_CORRUPT naming the page, and leaves no files behind. */
static void test_backup_of_damaged_database(void **state)
{
    struct test_dir dir;
    char src[256], dst[256], path[300];
    unsigned char page[4096];
    uint64_t bad_page = 0, count;
    const char *what = NULL;
    uint32_t root, no, leaf = 0;
    dkv_db *db;
    unsigned i;
    int fd;

    (void)state;
    assert_int_equal(test_dir_make(&dir, "/tmp"), 0);
    test_dir_file(&dir, "src", src, sizeof(src));
    test_dir_file(&dir, "copy", dst, sizeof(dst));
    db = open_mode(src, DKV_COMMIT_ASYNC);
    for (i = 0; i < 3000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "key%06u", i);
        assert_rc(dkv_put(db, key, strlen(key), "value", 5), DKV_OK);
    }
    assert_rc(dkv_close(db), DKV_OK);
    /* Flip a byte of a leaf that is not the root, and drop the
       doublewrite file, whose copy would repair it at open. */
    snprintf(path, sizeof(path), "%s/data.dkv", src);
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, page, sizeof(page), 0), sizeof(page));
    count = load_le64(page + FHDR_OFF_PAGE_COUNT);
    root = (uint32_t)load_le64(page + FHDR_OFF_META);
    for (no = 1; no < count && leaf == 0; no++) {
        assert_int_equal(pread(fd, page, sizeof(page), (off_t)no * 4096), sizeof(page));
        if (no != root && page_type(page) == PAGE_TYPE_BTREE_LEAF)
            leaf = no;
    }
    assert_int_not_equal(leaf, 0);
    page[2000] ^= 1;
    assert_int_equal(pwrite(fd, page, sizeof(page), (off_t)leaf * 4096), sizeof(page));
    close(fd);
    snprintf(path, sizeof(path), "%s/doublewrite.dkv", src);
    assert_int_equal(unlink(path), 0);

    db = open_small(src);
    assert_rc(dkv_backup(db, dst), DKV_ERR_CORRUPT);
    assert_rc(dkv_last_corruption(&bad_page, &what), DKV_OK);
    assert_int_equal(bad_page, leaf);
    printf("backup refused: page %llu: %s\n", (unsigned long long)bad_page, what);
    snprintf(path, sizeof(path), "%s/data.dkv", dst);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(path, sizeof(path), "%s/redo.log", dst);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_rc(dkv_close(db), DKV_OK);
    remove_tree(&dir);
}

/* dkv_check on sound databases: empty, one leaf, several levels with
   overflow values and free pages. */
static void test_check_counts(void **state)
{
    struct test_dir dir;
    char path[256];
    unsigned char big[20000];
    dkv_check_info ci;
    dkv_db *db;
    unsigned i;

    (void)state;
    assert_int_equal(test_dir_make(&dir, "/tmp"), 0);
    test_dir_file(&dir, "db", path, sizeof(path));
    db = open_mode(path, DKV_COMMIT_ASYNC);
    assert_rc(dkv_check(db, &ci), DKV_OK);
    assert_int_equal(ci.keys, 0);
    assert_int_equal(ci.height, 1);
    assert_int_equal(ci.leaf_pages, 1);
    assert_int_equal(ci.page_size, 4096);
    for (i = 0; i < 3000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "key%06u", i);
        test_fill(big, 100, i);
        assert_rc(dkv_put(db, key, strlen(key), big, 100), DKV_OK);
    }
    test_fill(big, sizeof(big), 1);
    assert_rc(dkv_put(db, "big", 3, big, sizeof(big)), DKV_OK);
    assert_rc(dkv_put(db, "big2", 4, big, sizeof(big)), DKV_OK);
    assert_rc(dkv_delete(db, "big2", 4), DKV_OK);
    for (i = 0; i < 2000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "key%06u", i);
        assert_rc(dkv_delete(db, key, strlen(key)), DKV_OK);
    }
    assert_rc(dkv_check(db, &ci), DKV_OK);
    assert_int_equal(ci.keys, 1001);
    assert_true(ci.height >= 2);
    assert_int_equal(ci.overflow_pages, 5);       /* 20000 bytes in 4 KiB pages */
    assert_true(ci.free_pages > 0);
    assert_int_equal(ci.page_count, 1 + ci.leaf_pages + ci.inner_pages +
                                    ci.overflow_pages + ci.free_pages);
    assert_true(ci.leaf_fill > 0.2 && ci.leaf_fill <= 1.0);
    assert_rc(dkv_close(db), DKV_OK);
    remove_tree(&dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_counts),
        cmocka_unit_test(test_backup_misuse),
        cmocka_unit_test(test_backup_of_damaged_database),
        cmocka_unit_test(test_backup_while_writing_sync),
        cmocka_unit_test(test_backup_while_writing_async),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
