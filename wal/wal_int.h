/*
 * wal_int.h - the log's state, shared by log.c, checkpoint.c and
 * recovery.c only.  Locks and rules (W1..): wal/README.md.
 */
#ifndef DKV_WAL_WAL_INT_H
#define DKV_WAL_WAL_INT_H

#include <pthread.h>

#include "pager/io.h"
#include "pager/pager.h"
#include "wal.h"
#include "wal_format.h"

struct wal {
    struct wal_config cfg;
    struct io_file   *file;
    uint64_t          capacity;       /* data area bytes, multiple of 4 KiB  */
    uint64_t          db_id;

    /* The I/O context and the block buffer for headers and checkpoints:
       io_lock (the leader's writes, checkpoints, recovery's reads). */
    pthread_mutex_t   io_lock;
    struct io_ctx    *ctx;
    unsigned char    *block;          /* one aligned 4 KiB block             */

    /* Appending: mutex.  LSN L lives at buf[L % buf_size]. */
    pthread_mutex_t   mutex;
    pthread_cond_t    space_cv;       /* buffer or log space was freed       */
    pthread_cond_t    gather_cv;      /* a committer joined the wait         */
    unsigned char    *buf;
    size_t            buf_size;
    uint64_t          lsn;            /* next append position (in a block
                                         whose header is set up)            */
    uint64_t          end_lsn;        /* just past the last appended byte    */
    uint64_t          write_lsn;      /* block start: all before is written  */
    uint64_t          durable_lsn;    /* written and synced up to here       */
    uint64_t          unit_end_lsn;   /* end of the last finished unit (W2)  */
    uint64_t          durable_unit_end; /* the last unit end known durable   */
    uint64_t          checkpoint_lsn; /* recovery would start here           */
    uint64_t          checkpoint_no;
    uint64_t          cand_lsn;       /* checkpoint candidate, 0 = none      */
    uint64_t          fpi_lsn;        /* image threshold (W6)                */
    /* MTRs appended whose pages are not yet on the flush list (W5b):
       those that started before split_lsn, and the rest. */
    uint64_t          split_lsn;
    uint64_t          unmarked_old, unmarked_new;
    int               leader;         /* a thread is writing the log         */
    /* Group commit (W3): threads waiting for durability that no round has
       taken yet (a leader gathers by this count, so threads already served
       but not yet running do not count), the size of the last group, and
       the mean write+sync time.  Followers sleep on round_seq, not on the
       mutex, and leave without it once durable_lsn (atomic) covers them. */
    /* (rounds taken so far << 32) | waiters no round has taken yet: one
       word, so that a waiter leaving without the mutex and a leader
       taking the count agree on who subtracts whom.  Atomic. */
    uint64_t          wait_state;
    uint32_t          taken_waiters;  /* waiters the round in flight covers  */
    uint32_t          round_seq;      /* bumped when a round ends (a futex)  */
    unsigned          last_group;
    unsigned          gather_want;    /* a gathering leader waits for this
                                         many untaken waiters (0: none)    */
    uint64_t          sync_us_avg;
    int               error;          /* sticky DKV_ERR_* (W8)               */
    int               ready;          /* recovery ran                        */

    /* Checkpoints: ckpt_lock (one at a time). */
    pthread_mutex_t   ckpt_lock;

    /* The background thread: bg_lock. */
    pthread_mutex_t   bg_lock;
    pthread_cond_t    bg_cv;
    int               bg_stop, bg_started, bg_wake;
    pthread_t         bg_thread;

    /* Statistics: under mutex. */
    uint64_t          bytes, writes, syncs, commits, checkpoints;
    uint64_t          stalls, stall_max_us;
};

/* log.c */
uint64_t wal_block_of(uint64_t lsn);
uint64_t wal_file_off(const struct wal *wal, uint64_t lsn);
int      wal_io(struct wal *wal, int op, void *buf, size_t len, uint64_t off);
void     wal_set_error(struct wal *wal, int rc);
int      wal_bg_start(struct wal *wal);
uint64_t wal_now_us(void);

/* checkpoint.c */
/* Reads both slots and picks the newest valid one; DKV_ERR_CORRUPT if
   neither is valid. */
int      ckpt_load(struct wal *wal);
/* Encodes checkpoint number no for lsn into the 4 KiB block p. */
void     ckpt_encode(const struct wal *wal, unsigned char *p, uint64_t no,
                     uint64_t lsn, uint64_t end_lsn);
/* Writes checkpoint number no for lsn into its slot and syncs the log. */
int      ckpt_write(struct wal *wal, uint64_t no, uint64_t lsn, uint64_t end_lsn);
/* The background thread's checkpoint policy. */
void     ckpt_background(struct wal *wal);

#endif /* DKV_WAL_WAL_INT_H */
