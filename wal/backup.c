/*
 * backup.c - what a hot backup needs from the log (engine/backup.c does the
 * copying; engine/README.md, "Hot backup"): where the copy's recovery
 * starts, where each block lies in the file, whether a block read back from
 * the copy is the intact block of the stream at its LSN (a block rewritten
 * by a later lap of the circular log is not), and the header and
 * checkpoint blocks of the copy, encoded here so that no other layer
 * touches the log's bytes.
 *
 * Entry points: wal_backup_start, wal_backup_offset, wal_block_intact,
 * wal_backup_blocks.
 */
#include "wal_int.h"

#include "dkv.h"

#include <string.h>

void wal_backup_start(struct wal *wal, struct wal_backup_info *bi)
{
    memset(bi, 0, sizeof(*bi));
    pthread_mutex_lock(&wal->mutex);
    bi->checkpoint_lsn = wal->checkpoint_lsn;
    bi->checkpoint_no = wal->checkpoint_no;
    pthread_mutex_unlock(&wal->mutex);
    bi->capacity = wal->capacity;
    bi->file_size = LOG_DATA_OFF + wal->capacity;
    bi->fd = io_file_fd(wal->file);
}

uint64_t wal_backup_offset(const struct wal *wal, uint64_t lsn)
{
    return wal_file_off(wal, lsn);
}

int wal_block_intact(const void *block, uint64_t block_lsn)
{
    const unsigned char *p = block;
    unsigned data_end = load_le16(p + LB_OFF_DATA_END);

    return load_le32(p + LB_OFF_CRC) == crc32c(0, p + 4, LOG_BLOCK - 4) &&
           load_le64(p + LB_OFF_LSN) == block_lsn &&
           data_end >= LB_HDR && data_end <= LOG_BLOCK;
}

int wal_backup_blocks(struct wal *wal, const struct wal_backup_info *bi,
                      void *hdr, void *slot, uint64_t *slot_off)
{
    unsigned char *h = hdr;
    int rc;

    /* The header never changes after the log is created: read it back and
       make sure it is whole before the copy gets it. */
    pthread_mutex_lock(&wal->io_lock);
    rc = wal_io(wal, IO_READ, h, LOG_BLOCK, LOG_HDR_OFF);
    pthread_mutex_unlock(&wal->io_lock);
    if (rc != DKV_OK)
        return rc;
    if (load_le32(h + LH_OFF_CRC) != crc32c(0, h + 4, LOG_BLOCK - 4) ||
        load_le64(h + LH_OFF_CAPACITY) != wal->capacity ||
        load_le64(h + LH_OFF_DB_ID) != wal->db_id)
        return PAGER_CORRUPT(0, "log header changed or damaged during a backup");
    ckpt_encode(wal, slot, bi->checkpoint_no, bi->checkpoint_lsn, bi->checkpoint_lsn);
    *slot_off = LOG_CKPT_OFF(bi->checkpoint_no % 2);
    return DKV_OK;
}
