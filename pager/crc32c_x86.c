/*
 * crc32c_x86.c - CRC32C with the SSE4.2 crc32 instruction, 8 bytes at a
 * time, in three independent streams.  Built on x86-64 only;
 * crc32c_hw_available() asks the CPU.
 *
 * The instruction takes 3 cycles but can start one every cycle, so a single
 * stream runs at a third of its speed.  Each chunk of 3 x CRC_BLK bytes is
 * therefore summed as three blocks at once - the first from the running
 * value, the other two from zero - and joined: the CRC register is linear,
 * so the value after blocks A and B is shift(a) ^ b, where shift(a) is a
 * run through CRC_BLK zero bytes.  shift is itself linear in a, so it is
 * four table lookups (one per byte of a), the tables built once by running
 * each byte value through the zeros.
 */
#include "pager.h"

#include <nmmintrin.h>
#include <pthread.h>

#define CRC_BLK 256u                    /* bytes per stream per chunk       */

static uint32_t shift_table[4][256];    /* a byte of a, through CRC_BLK zeros */
static pthread_once_t shift_once = PTHREAD_ONCE_INIT;

int crc32c_hw_available(void)
{
    return __builtin_cpu_supports("sse4.2") != 0;
}

__attribute__((target("sse4.2")))
static void shift_table_build(void)
{
    unsigned k, b, i;

    for (k = 0; k < 4; k++)
        for (b = 0; b < 256; b++) {
            uint64_t v = (uint64_t)b << (8 * k);
            for (i = 0; i < CRC_BLK / 8; i++)
                v = _mm_crc32_u64(v, 0);
            shift_table[k][b] = (uint32_t)v;
        }
}

static inline uint32_t shift_blk(uint32_t v)
{
    return shift_table[0][v & 0xff] ^ shift_table[1][(v >> 8) & 0xff] ^
           shift_table[2][(v >> 16) & 0xff] ^ shift_table[3][v >> 24];
}

__attribute__((target("sse4.2")))
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint64_t crc64;

    crc = ~crc;
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        crc = _mm_crc32_u8(crc, *p++);
        len--;
    }
    if (len >= 3 * CRC_BLK)
        pthread_once(&shift_once, shift_table_build);
    while (len >= 3 * CRC_BLK) {
        uint64_t a = crc, b = 0, c = 0;
        size_t i;
        for (i = 0; i < CRC_BLK; i += 8) {
            a = _mm_crc32_u64(a, load_le64(p + i));
            b = _mm_crc32_u64(b, load_le64(p + CRC_BLK + i));
            c = _mm_crc32_u64(c, load_le64(p + 2 * CRC_BLK + i));
        }
        crc = shift_blk(shift_blk((uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)c;
        p += 3 * CRC_BLK;
        len -= 3 * CRC_BLK;
    }
    crc64 = crc;
    while (len >= 8) {
        crc64 = _mm_crc32_u64(crc64, load_le64(p));
        p += 8;
        len -= 8;
    }
    crc = (uint32_t)crc64;
    while (len-- > 0)
        crc = _mm_crc32_u8(crc, *p++);
    return ~crc;
}
