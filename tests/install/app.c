/* app.c - a program built against an installed DirectKV (install_test.sh):
   it opens a database, writes, reads back and closes. */
#include <dkv.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    dkv_db *db;
    char buf[16];
    size_t len = 0;
    int rc;

    if (argc < 2)
        return 2;
    rc = dkv_open(argv[1], NULL, &db);
    if (rc == DKV_OK)
        rc = dkv_put(db, "installed", 9, "yes", 3);
    if (rc == DKV_OK)
        rc = dkv_get(db, "installed", 9, buf, sizeof(buf), &len);
    if (rc == DKV_OK && (len != 3 || memcmp(buf, "yes", 3) != 0))
        rc = DKV_ERR_CORRUPT;
    if (rc == DKV_OK)
        rc = dkv_close(db);
    printf("DirectKV %d.%d.%d: %s\n", DKV_VERSION_MAJOR, DKV_VERSION_MINOR,
           DKV_VERSION_PATCH, dkv_strerror(rc));
    return rc == DKV_OK ? 0 : 1;
}
