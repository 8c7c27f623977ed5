/*
 * crc32c_x86.c - CRC32C with the SSE4.2 crc32 instruction, 8 bytes at a
 * time.  Built on x86-64 only; crc32c_hw_available() asks the CPU.
 */
#include "pager.h"

#include <nmmintrin.h>

int crc32c_hw_available(void)
{
    return __builtin_cpu_supports("sse4.2") != 0;
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
