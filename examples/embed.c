/*
 * embed.c - the smallest complete use of DirectKV: open a database, put and
 * get a value, apply a batch atomically, scan the keys in order, close.
 *
 *   cc embed.c $(pkg-config --cflags --libs dkv) -o embed && ./embed /tmp/demo-db
 */
#include <dkv.h>

#include <stdio.h>
#include <string.h>

static int check(int rc, const char *what)
{
    if (rc < 0)
        fprintf(stderr, "embed: %s: %s\n", what, dkv_strerror(rc));
    return rc < 0;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "embed-db";
    dkv_options opts;
    dkv_batch *batch;
    dkv_iter *it;
    dkv_db *db;
    char value[64];
    size_t len;
    int rc, n = 0;

    dkv_options_init(&opts);            /* 128 MiB pool, O_DIRECT, durable commits */
    opts.pool_size = 16u << 20;
    if (check(dkv_open(path, &opts, &db), "open"))
        return 1;

    /* A put is durable when it returns (DKV_COMMIT_SYNC, the default). */
    if (check(dkv_put(db, "greeting", 8, "hello", 5), "put"))
        return 1;
    rc = dkv_get(db, "greeting", 8, value, sizeof(value), &len);
    if (check(rc, "get") || rc == DKV_NOTFOUND || len != 5 || memcmp(value, "hello", 5)) {
        fprintf(stderr, "embed: the value read back is wrong\n");
        return 1;
    }
    printf("greeting = %.*s\n", (int)len, value);

    /* A batch is applied all or nothing, also across a crash. */
    batch = dkv_batch_new();
    if (batch == NULL)
        return 1;
    dkv_batch_put(batch, "fruit:apple", 11, "red", 3);
    dkv_batch_put(batch, "fruit:banana", 12, "yellow", 6);
    dkv_batch_put(batch, "fruit:cherry", 12, "dark red", 8);
    dkv_batch_delete(batch, "greeting", 8);
    rc = dkv_write(db, batch);
    dkv_batch_free(batch);
    if (check(rc, "write"))
        return 1;
    if (dkv_get(db, "greeting", 8, value, sizeof(value), &len) != DKV_NOTFOUND) {
        fprintf(stderr, "embed: the batch's delete did not apply\n");
        return 1;
    }

    /* Keys come back in memcmp order; seek to a prefix and stop after it. */
    if (check(dkv_iter_new(db, &it), "iterator"))
        return 1;
    for (rc = dkv_iter_seek(it, "fruit:", 6); rc == DKV_OK && dkv_iter_valid(it);
         rc = dkv_iter_next(it)) {
        size_t kl, vl;
        const char *k = dkv_iter_key(it, &kl);
        const char *v = dkv_iter_value(it, &vl);
        if (kl < 6 || memcmp(k, "fruit:", 6) != 0)
            break;
        printf("%.*s = %.*s\n", (int)kl, k, (int)vl, v);
        n++;
    }
    dkv_iter_free(it);
    if (check(rc, "scan") || n != 3) {
        fprintf(stderr, "embed: the scan found %d fruits, not 3\n", n);
        return 1;
    }
    return check(dkv_close(db), "close");
}
