/*
 * test_crc32c.c - CRC32C (pager/crc32c.c and crc32c_x86.c or
 * crc32c_generic.c).
 *
 * The three entry points, crc32c_sw (slicing-by-8 tables), crc32c_hw (the
 * SSE4.2 instruction; skipped when crc32c_hw_available() says the CPU lacks
 * it) and crc32c (the dispatcher), are checked against the published
 * vectors ("123456789" and the RFC 3720 iSCSI vectors), then against a
 * bit-at-a-time reference written here, on random buffers of every length
 * 0..300 at every start alignment 0..15 (the word loops have head and tail
 * cases), and for chaining: crc32c(crc32c(0, a), b) == crc32c(0, ab) at
 * every split.  The random bytes come from a seed printed at start;
 * DKV_TEST_SEED=N replays a run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pager/pager.h"
#include "test_util.h"

#define MAX_LEN   300u
#define MAX_SHIFT 16u

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

struct impl {
    const char *name;
    crc_fn      fn;
};

static uint64_t g_seed;

/* The implementations this machine can run. */
static unsigned impls(struct impl *out)
{
    unsigned n = 0;

    out[n++] = (struct impl){ "crc32c", crc32c };
    out[n++] = (struct impl){ "crc32c_sw", crc32c_sw };
    if (crc32c_hw_available())
        out[n++] = (struct impl){ "crc32c_hw", crc32c_hw };
    return n;
}

/* The definition, one bit at a time: reflected, polynomial 0x82F63B78. */
static uint32_t crc_reference(uint32_t crc, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    int k;

    crc = ~crc;
    while (len-- > 0) {
        crc ^= *p++;
        for (k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void check_vector(const void *buf, size_t len, uint32_t want,
                         const char *what)
{
    struct impl im[3];
    unsigned i, n = impls(im);

    if (crc_reference(0, buf, len) != want)
        fail_msg("the reference gets %s wrong", what);
    for (i = 0; i < n; i++) {
        uint32_t got = im[i].fn(0, buf, len);
        if (got != want)
            fail_msg("%s(%s) = 0x%08X, expected 0x%08X", im[i].name, what, got, want);
    }
}

static void test_known_vectors(void **state)
{
    unsigned char buf[32];
    unsigned i;

    (void)state;
    check_vector("123456789", 9, 0xE3069283u, "\"123456789\"");
    memset(buf, 0x00, sizeof(buf));
    check_vector(buf, 32, 0x8A9136AAu, "32 zeros");
    memset(buf, 0xFF, sizeof(buf));
    check_vector(buf, 32, 0x62A8AB43u, "32 x 0xFF");
    for (i = 0; i < 32; i++)
        buf[i] = (unsigned char)i;
    check_vector(buf, 32, 0x46DD794Eu, "0..31");
    for (i = 0; i < 32; i++)
        buf[i] = (unsigned char)(31 - i);
    check_vector(buf, 32, 0x113FDB5Cu, "31..0");
    check_vector("", 0, 0, "the empty string");
}

static void test_hw_reported(void **state)
{
    (void)state;
    if (!crc32c_hw_available()) {
        print_message("no CRC32C instruction on this CPU: crc32c_hw skipped\n");
        skip();
    }
    assert_int_equal(crc32c_hw(0, "123456789", 9), 0xE3069283u);
}

/* Every implementation agrees with the reference at every length and
   start alignment, starting from 0 and from a running value. */
static void test_all_lengths_and_alignments(void **state)
{
    unsigned char raw[MAX_LEN + MAX_SHIFT];
    struct impl im[3];
    unsigned n = impls(im), len, shift, i;

    (void)state;
    test_fill(raw, sizeof(raw), g_seed);
    for (len = 0; len <= MAX_LEN; len++) {
        for (shift = 0; shift < MAX_SHIFT; shift++) {
            const unsigned char *p = raw + shift;
            uint32_t start = shift & 1 ? (uint32_t)g_seed : 0;
            uint32_t want = crc_reference(start, p, len);
            for (i = 0; i < n; i++) {
                uint32_t got = im[i].fn(start, p, len);
                if (got != want)
                    fail_msg("%s: len %u shift %u start 0x%08X: 0x%08X, expected "
                             "0x%08X", im[i].name, len, shift, start, got, want);
            }
        }
    }
}

/* crc(crc(0, a), b) == crc(0, ab) at every split of a random buffer. */
static void test_chaining(void **state)
{
    unsigned char raw[MAX_LEN + MAX_SHIFT];
    struct impl im[3];
    unsigned n = impls(im), split, i, shift;

    (void)state;
    test_fill(raw, sizeof(raw), g_seed ^ 0xC4A1Bu);
    for (shift = 0; shift < 3; shift++) {
        const unsigned char *p = raw + shift * 5;
        for (i = 0; i < n; i++) {
            uint32_t whole = im[i].fn(0, p, MAX_LEN);
            for (split = 0; split <= MAX_LEN; split++) {
                uint32_t part = im[i].fn(im[i].fn(0, p, split), p + split,
                                         MAX_LEN - split);
                if (part != whole)
                    fail_msg("%s: split at %u: 0x%08X != 0x%08X", im[i].name,
                             split, part, whole);
            }
        }
    }
}

/* Lengths around the chunks the hardware version sums in three streams
   (3 x 256 bytes) and their multiples, from every alignment: each
   implementation agrees with the tables, themselves checked above. */
static void test_stream_chunks(void **state)
{
    static unsigned char raw[3200 + 8];
    struct impl im[3];
    unsigned n = impls(im), len, shift, i;

    (void)state;
    test_fill(raw, sizeof(raw), g_seed ^ 0x3C4u);
    for (len = 700; len <= 3200; len += (len % 768 < 16 || len % 768 > 752) ? 1 : 37) {
        for (shift = 0; shift < 8; shift++) {
            uint32_t start = shift & 1 ? (uint32_t)g_seed : 0;
            uint32_t want = crc32c_sw(start, raw + shift, len);
            for (i = 0; i < n; i++)
                if (im[i].fn(start, raw + shift, len) != want)
                    fail_msg("%s: len %u shift %u: 0x%08X, expected 0x%08X", im[i].name,
                             len, shift, im[i].fn(start, raw + shift, len), want);
        }
    }
}

/* A page-sized buffer, as pages are checksummed: all three agree. */
static void test_large_buffer(void **state)
{
    static unsigned char page[65536 + 8];
    struct impl im[3];
    unsigned n = impls(im), i;
    uint32_t want;

    (void)state;
    test_fill(page, sizeof(page), g_seed ^ 0xB16u);
    want = crc_reference(0, page + 4, 65536 - 4);
    for (i = 0; i < n; i++)
        assert_int_equal(im[i].fn(0, page + 4, 65536 - 4), want);
}

int main(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vectors),
        cmocka_unit_test(test_hw_reported),
        cmocka_unit_test(test_stream_chunks),
        cmocka_unit_test(test_all_lengths_and_alignments),
        cmocka_unit_test(test_chaining),
        cmocka_unit_test(test_large_buffer),
    };

    g_seed = test_seed("test_crc32c");
    print_message("crc32c_hw_available: %d\n", crc32c_hw_available());
    return cmocka_run_group_tests_name("crc32c", tests, NULL, NULL);
}
