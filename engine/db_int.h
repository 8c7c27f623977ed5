/*
 * db_int.h - what db.c lends to the engine's other public entry points
 * (check.c, backup.c): the store and tree behind a dkv_db, and its writer
 * lock (engine/README.md, section 6).  Included only inside engine/.
 */
#ifndef DKV_ENGINE_DB_INT_H
#define DKV_ENGINE_DB_INT_H

#include "dkv.h"
#include "btree.h"
#include "engine.h"

struct store *db_store(dkv_db *db);
struct btree *db_btree(dkv_db *db);
int  db_read_only(const dkv_db *db);
/* Takes the writer lock exclusive: every write waits until
   db_writers_resume; lookups and scans go on. */
void db_writers_stop(dkv_db *db);
void db_writers_resume(dkv_db *db);

#endif /* DKV_ENGINE_DB_INT_H */
