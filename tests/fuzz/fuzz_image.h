/*
 * fuzz_image.h - a small database directory (data.dkv + redo.log) as one
 * byte string, for the damaged-file fuzzer (fuzz_files.c), its seed
 * corpus and its replay program.
 *
 * The image, little-endian:
 *
 *   0      u8   fix-ups after damage: FIMG_FIX_PAGES recomputes the
 *               checksum of every data page, FIMG_FIX_BLOCKS of the log's
 *               header, checkpoint slots and blocks, FIMG_FIX_MTRS of every
 *               MTR the log's blocks announce (so damage reaches the
 *               decoders behind the checksums instead of stopping at them)
 *   1      u8   reserved
 *   2..3   u16  data pages in the image (at most FIMG_PAGES_MAX)
 *   4..5   u16  log data blocks in the image (at most FIMG_BLOCKS_MAX)
 *   6..15  the operations to run (FIMG_OPS bytes; fuzz_files.c)
 *   16..   the data pages (4 KiB each: the seeds use 4 KiB pages), then
 *          the log's header block and two checkpoint slots (3 x 4 KiB),
 *          then the log's data blocks 0, 1, ... (4 KiB each)
 *
 * Missing bytes read as zero.  The log is written with a capacity of
 * FIMG_LOG_CAPACITY (the seeds' log header says so; a header that says
 * otherwise is damage the engine must report).
 */
#ifndef DKV_TESTS_FUZZ_IMAGE_H
#define DKV_TESTS_FUZZ_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#define FIMG_HDR          16u
#define FIMG_OPS          10u
#define FIMG_PAGE         4096u
#define FIMG_PAGES_MAX    64u
#define FIMG_BLOCKS_MAX   128u
#define FIMG_LOG_CAPACITY (1u << 20)
#define FIMG_DATA_FILE    (1u << 20)      /* one extent, as a new file     */

enum {
    FIMG_FIX_PAGES  = 0x01,
    FIMG_FIX_BLOCKS = 0x02,
    FIMG_FIX_MTRS   = 0x04
};

/* The keys the seeds hold and the fuzzers use: "key%05u" of i < FIMG_KEYS. */
#define FIMG_KEYS 96u
size_t fimg_key(char *out, unsigned i);
/* The value written for key i at version v: len bytes from (i, v). */
size_t fimg_value(unsigned char *out, size_t cap, unsigned i, unsigned v);

/* Writes the image in data[0, size) into dir as data.dkv and redo.log
   (removing doublewrite.dkv), after the fix-ups its flags ask for; ops
   gets its FIMG_OPS operation bytes.  0 or -1 (errno: a local failure,
   not the engine's). */
int fimg_write(const char *dir, const unsigned char *data, size_t size,
               unsigned char ops[FIMG_OPS]);

/* Reads the database in dir into a new image (malloc'd, *size bytes) with
   the given flags and operation bytes; 0, or -1 when the database does
   not fit an image (too many pages, log past FIMG_LOG_CAPACITY). */
int fimg_capture(const char *dir, unsigned flags, const unsigned char ops[FIMG_OPS],
                 unsigned char **out, size_t *size);

/* Creates an empty database of 4 KiB pages with a 1 MiB log in dir (as
   dkv_open would, but for the log's size, which every later open takes
   from the file).  DKV_OK or an error. */
int fimg_create_small(const char *dir);

/* Makes the seed corpus: small databases written through the public API
   in several ways (clean close, a kill after acknowledged writes, long
   values, deletes), each captured with several flag and operation
   choices.  Calls fn for every seed; returns the seed count, or -1. */
typedef void (*fimg_seed_fn)(void *arg, const unsigned char *img, size_t size);
int fimg_make_seeds(const char *scratch_parent, fimg_seed_fn fn, void *arg);

/* A scratch directory for one process (under /dev/shm when it exists:
   the fuzzers rewrite their files on every run). */
int fimg_scratch_dir(char *out, size_t cap, const char *tag);
void fimg_remove_dir(const char *dir);

#endif /* DKV_TESTS_FUZZ_IMAGE_H */
