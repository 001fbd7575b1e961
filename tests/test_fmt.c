/*
 * test_fmt.c - the server's printf-free number text
 * (common/br_fmt.h) against what it replaces: snprintf's "%llu" and
 * "%.7g", and jansson's real with JSON_REAL_PRECISION(7).
 *
 * "%.7g" is checked on every float within 64 ulps of each power of ten and
 * each half-way point the fast path can meet, on rounding ties, on the
 * edges of the fast path (1e-5, 1e15) and of fixed notation (1e-4, 1e7),
 * on the special values, and on 3 million random bit patterns.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "br_rng.h"
#include "br_fmt.h"

static unsigned long g7_checked, g7_bad;

static void check_g7(float v)
{
    char got[BR_FMT_MAX], want[64];
    size_t n = br_fmt_g7(got, v);
    int m = snprintf(want, sizeof want, "%.7g", (double)v);
    g7_checked++;
    if (n != (size_t)m || strcmp(got, want) != 0) {
        if (g7_bad++ < 10) {
            uint32_t bits;
            memcpy(&bits, &v, sizeof bits);
            print_message("%%.7g of float 0x%08x: got '%s', want '%s'\n", bits, got, want);
        }
    }
}

static void check_bits(uint32_t bits)
{
    float v;
    memcpy(&v, &bits, sizeof v);
    check_g7(v);
}

/* Every float within 64 ulps of x, both signs. */
static void check_around(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    for (int d = -64; d <= 64; d++) {
        check_bits(bits + (uint32_t)d);
        check_bits((bits + (uint32_t)d) ^ 0x80000000u);
    }
}

static void test_uint(void **state)
{
    (void)state;
    static const uint64_t edge[] = {0, 1, 9, 10, 99, 100, 4294967295u, 4294967296u,
                                    999999999999ull, 18446744073709551615ull};
    char got[BR_FMT_MAX], want[32];
    for (size_t i = 0; i < sizeof edge / sizeof *edge; i++) {
        size_t n = br_fmt_uint(got, edge[i]);
        snprintf(want, sizeof want, "%llu", (unsigned long long)edge[i]);
        assert_string_equal(got, want);
        assert_int_equal(n, strlen(want));
    }
    br_rng g;
    br_rng_seed(&g, 5);
    for (int i = 0; i < 100000; i++) {
        uint64_t v = br_rng_next(&g) >> (br_rng_next(&g) % 64);
        br_fmt_uint(got, v);
        snprintf(want, sizeof want, "%llu", (unsigned long long)v);
        assert_string_equal(got, want);
    }
}

static void test_g7_edges(void **state)
{
    (void)state;
    g7_checked = g7_bad = 0;
    /* powers of ten, and the points where seven digits round up into the
     * next power (9.9999995 * 10^x) */
    for (int x = -8; x <= 17; x++) {
        check_around((float)pow(10.0, x));
        check_around((float)(9.9999995 * pow(10.0, x)));
        check_around((float)(5.0 * pow(10.0, x)));
    }
    /* exact ties at the 8th digit, where ties-to-even decides */
    static const float ties[] = {1234567.5f, 1234568.5f, 9999999.5f, 8388608.5f, 16777215.0f,
                                 12345675.0f, 12345685.0f, 123456750.0f, 0.5f, 2.5f,
                                 1.00000005f, 33554430.0f};
    for (size_t i = 0; i < sizeof ties / sizeof *ties; i++)
        check_around(ties[i]);
    /* binade edges: 2^e for every exponent */
    for (int e = -149; e <= 127; e++)
        check_around(ldexpf(1.0f, e));
    static const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, FLT_MAX, -FLT_MAX,
                                    FLT_MIN, FLT_TRUE_MIN, 1.0f, -1.0f, 6.121004f, 0.1f};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++)
        check_g7(special[i]);
    print_message("%%.7g edges: %lu floats, %lu wrong\n", g7_checked, g7_bad);
    assert_int_equal(g7_bad, 0);
}

static void test_g7_random(void **state)
{
    (void)state;
    g7_checked = g7_bad = 0;
    br_rng g;
    br_rng_seed(&g, 11);
    for (int i = 0; i < 1000000; i++)
        check_bits((uint32_t)(br_rng_next(&g) >> 32));
    /* scores live here: magnitudes 1e-5 to 1e3, uniformly in the bits */
    uint32_t lo = 0x3727c5acu, hi = 0x447a0000u;   /* 1e-5f, 1000.0f */
    for (int i = 0; i < 2000000; i++) {
        uint32_t b = lo + (uint32_t)(br_rng_next(&g) % (hi - lo));
        check_bits(b | (uint32_t)(i & 1) << 31);
    }
    print_message("%%.7g random: %lu floats, %lu wrong\n", g7_checked, g7_bad);
    assert_int_equal(g7_bad, 0);
}

/* jansson's text for a real, the reference br_fmt_json_real7 follows. */
static void check_real(double v)
{
    json_t *j = json_real(v);
    assert_non_null(j);
    char *want = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(7));
    json_decref(j);
    assert_non_null(want);
    char got[BR_FMT_MAX];
    size_t n = br_fmt_json_real7(got, v);
    if (strcmp(got, want) != 0)
        fail_msg("real %.17g: got '%s', want '%s'", v, got, want);
    assert_int_equal(n, strlen(want));
    free(want);
}

static void test_json_real7(void **state)
{
    (void)state;
    static const double v[] = {0.0, -0.0, 1.0, 3.0, -3.0, 0.5, 60.0, 1234567.0, 9999999.0,
                               1e7, 12345678.0, 1e21, -1e21, 1e-4, 1e-5, 1.5e-7, 2.5e-300,
                               1e300, 0.04821755, 86400.25, 31536000.0, 123.456};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        check_real(v[i]);
    br_rng g;
    br_rng_seed(&g, 3);
    for (int i = 0; i < 20000; i++) {   /* uptimes: 0 to 10^9 s, some whole */
        double x = (double)(br_rng_next(&g) >> 11) * 0x1p-53 * pow(10.0, i % 10);
        check_real(i % 3 ? x : floor(x));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uint),
        cmocka_unit_test(test_g7_edges),
        cmocka_unit_test(test_g7_random),
        cmocka_unit_test(test_json_real7),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
