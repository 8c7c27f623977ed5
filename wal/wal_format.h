/*
 * wal_format.h - the on-disk layout of the redo log.  The only place that
 * knows these offsets; log.c, checkpoint.c and recovery.c encode and decode
 * through it.  Versioning: wal/README.md, section 6.
 *
 * The log file:
 *
 *   0      4K       8K       12K      16K                         16K+capacity
 *   +------+--------+--------+--------+-------- ... ---------------+
 *   | head | ckpt 0 | ckpt 1 | (zero) | data area: 4 KiB blocks,   |
 *   +------+--------+--------+--------+ circular -----------------+
 *
 * The LSN is a byte position in an endless stream of blocks; the block
 * holding LSN L lives at LOG_DATA_OFF + (L - L % 4096) % capacity.
 *
 * Header block (4 KiB):  0..3 crc32c of [4,4096) | 4..11 magic "DKVLOG\0\0" |
 *   12..15 format version | 16..19 block size | 20..23 zero |
 *   24..31 capacity (bytes of the data area) | 32..39 database id | rest 0
 *
 * Checkpoint slot (4 KiB): 0..3 crc32c of [4,4096) | 4..7 magic "CKPT" |
 *   8..15 checkpoint number (slots alternate by its parity) |
 *   16..23 checkpoint LSN: recovery starts here, at an MTR boundary |
 *   24..31 log end LSN when written (informative) | 32..39 database id | rest 0
 *
 * Data block (4 KiB):
 *   0..3   crc32c of [4,4096)
 *   4..7   zero
 *   8..15  block LSN: the LSN of this block's byte 0 (tells laps apart)
 *   16..17 data end: bytes of the block in use, 24..4096; the rest is zero
 *          padding (every log write ends a block, so acknowledged bytes are
 *          never rewritten: a torn write can only hit unacknowledged ones)
 *   18..19 first MTR: offset of the first MTR that starts here, or 0
 *   20..23 flags: LB_FLAG_RESTART - appending resumed here after a
 *          recovery; no MTR continues into this block, and the MTRs
 *          between the last commit mark before it and this block belong
 *          to a unit that never ended (recovery drops them)
 *   24..   the MTR stream
 *
 * An MTR in the stream (it may cross blocks; the 24-byte block headers are
 * skipped, they are not part of it):
 *   0..3   body length in bytes
 *   4..7   crc32c of the body
 *   8      flags: MTR_FLAG_COMMIT ends a commit unit (a put, a batch)
 *   9..15  zero
 *   16..   body: records
 *
 * A record in a body:
 *   0      type (REDO_* of the layer that applies it)
 *   1..4   page number
 *   5..8   payload length
 *   9..    payload
 */
#ifndef DKV_WAL_FORMAT_H
#define DKV_WAL_FORMAT_H

#include <assert.h>

#define LOG_BLOCK            4096u
#define LOG_HDR_OFF          0u
#define LOG_CKPT_OFF(slot)   (4096u * (1u + (slot)))
#define LOG_DATA_OFF         16384u
#define LOG_FORMAT_VERSION   1u
#define LOG_MAGIC            "DKVLOG\0"       /* 8 bytes with its NUL */
#define CKPT_MAGIC           0x54504b43u      /* "CKPT" little-endian */

#define LH_OFF_CRC           0
#define LH_OFF_MAGIC         4
#define LH_OFF_VERSION       12
#define LH_OFF_BLOCK         16
#define LH_OFF_CAPACITY      24
#define LH_OFF_DB_ID         32
#define LH_END               40

#define CK_OFF_CRC           0
#define CK_OFF_MAGIC         4
#define CK_OFF_NO            8
#define CK_OFF_LSN           16
#define CK_OFF_END_LSN       24
#define CK_OFF_DB_ID         32
#define CK_END               40

#define LB_OFF_CRC           0
#define LB_OFF_ZERO          4
#define LB_OFF_LSN           8
#define LB_OFF_DATA_END      16
#define LB_OFF_FIRST_MTR     18
#define LB_OFF_FLAGS         20
#define LB_FLAG_RESTART      0x1u
#define LB_HDR               24
#define LB_PAYLOAD           (LOG_BLOCK - LB_HDR)

#define MTR_HDR              16
#define MTR_OFF_LEN          0
#define MTR_OFF_CRC          4
#define MTR_OFF_FLAGS        8
#define MTR_FLAG_COMMIT      0x01u

#define REC_HDR              9
#define REC_OFF_TYPE         0
#define REC_OFF_PAGE         1
#define REC_OFF_LEN          5

#define MTR_BODY_MAX         (64u << 20)      /* one MTR at most            */

static_assert(LB_HDR + LB_PAYLOAD == LOG_BLOCK, "block layout");
static_assert(LOG_DATA_OFF % LOG_BLOCK == 0, "data area aligned");

#endif /* DKV_WAL_FORMAT_H */
