/*
 * crc32c_generic.c - built on CPUs without a CRC32C instruction we use:
 * the "hardware" path is the table implementation.
 */
#include "pager.h"

int crc32c_hw_available(void)
{
    return 0;
}

uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
    return crc32c_sw(crc, buf, len);
}
