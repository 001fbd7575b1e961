/*
 * test_io.c - the gunzip output limit of common/br_io (br_gunzip,
 * br_gunzip_max, br_gunzip_limit): gzip bombs made at test time (zeros
 * compress about 1000:1) are refused with BR_ERR_RANGE and a message naming
 * the input, at exactly one byte past the limit; output up to the limit
 * loads whole; the default limit holds through br_read_file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "br_io.h"

/* A gzip stream of n zero bytes (a bomb when n is large). */
static unsigned char *gzip_zeros(size_t n, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY), Z_OK);
    static unsigned char zeros[1 << 20];
    size_t cap = n / 500 + 4096, len = 0;
    unsigned char *out = malloc(cap);
    assert_non_null(out);
    size_t left = n;
    int flush;
    do {
        size_t chunk = left < sizeof zeros ? left : sizeof zeros;
        left -= chunk;
        flush = left ? Z_NO_FLUSH : Z_FINISH;
        zs.next_in = zeros;
        zs.avail_in = (uInt)chunk;
        do {
            if (cap - len < 4096) {
                out = realloc(out, cap *= 2);
                assert_non_null(out);
            }
            zs.next_out = out + len;
            zs.avail_out = (uInt)(cap - len);
            int rc = deflate(&zs, flush);
            assert_true(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR);
            len = cap - zs.avail_out;
        } while (zs.avail_out == 0);
    } while (flush != Z_FINISH);
    deflateEnd(&zs);
    *out_len = len;
    return out;
}

static void test_limit_formula(void **state)
{
    assert_int_equal(br_gunzip_limit(0), BR_GUNZIP_FLOOR);
    assert_int_equal(br_gunzip_limit(1000), BR_GUNZIP_FLOOR);
    assert_int_equal(br_gunzip_limit((size_t)1 << 20), (size_t)BR_GUNZIP_RATIO << 20);
    assert_true(br_gunzip_limit(SIZE_MAX) >= SIZE_MAX / BR_GUNZIP_RATIO);   /* no wrap */
}

/* 1 MiB of zeros against limits around it. */
static void test_explicit_limit(void **state)
{
    size_t zlen = 0, n = (size_t)1 << 20;
    unsigned char *gz = gzip_zeros(n, &zlen);
    print_message("1 MiB of zeros: %zu bytes of gzip (%.0f:1)\n", zlen, (double)n / (double)zlen);
    assert_true(zlen < n / 100);
    char *buf = NULL;
    size_t len = 0;
    br_diag d;
    assert_int_equal(br_gunzip_max(gz, zlen, "bomb.gz", n, &buf, &len, &d), BR_OK);
    assert_int_equal(len, n);
    assert_int_equal(buf[n], '\0');
    for (size_t i = 0; i < n; i += 4099)
        assert_int_equal(buf[i], 0);
    free(buf);
    size_t limits[] = {n - 1, n / 2, 100000, 4096, 1};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        buf = (char *)1;
        br_err e = br_gunzip_max(gz, zlen, "bomb.gz", limits[i], &buf, &len, &d);
        assert_int_equal(e, BR_ERR_RANGE);
        assert_non_null(strstr(d.msg, "bomb.gz"));
        assert_non_null(strstr(d.msg, "gzip bomb"));
        assert_true(buf == (char *)1);   /* untouched on failure */
    }
    free(gz);
}

/* The default limit through br_read_file: 64 MiB + 1 of zeros in a ~65 KB
 * file is refused; 1 MiB of zeros (ratio ~1000, under the floor) loads. */
static void test_default_limit_file(void **state)
{
    char path[] = "/tmp/br_test_io.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t zlen = 0;
    unsigned char *gz = gzip_zeros(BR_GUNZIP_FLOOR + 1, &zlen);
    assert_int_equal(write(fd, gz, zlen), (ssize_t)zlen);
    close(fd);
    free(gz);
    print_message("%zu bytes of zeros: a %zu-byte file\n", (size_t)BR_GUNZIP_FLOOR + 1, zlen);
    char *buf = NULL;
    size_t len = 0;
    br_diag d;
    assert_int_equal(br_read_file(path, &buf, &len, &d), BR_ERR_RANGE);
    assert_non_null(strstr(d.msg, path));
    assert_null(buf);
    print_message("%s\n", d.msg);

    gz = gzip_zeros((size_t)1 << 20, &zlen);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(gz, 1, zlen, f), zlen);
    fclose(f);
    free(gz);
    assert_int_equal(br_read_file(path, &buf, &len, &d), BR_OK);
    assert_int_equal(len, (size_t)1 << 20);
    free(buf);
    unlink(path);
}

/* br_csv_field: plain fields as they are; a comma, quote or line break
 * quoted, with inner quotes doubled (RFC 4180). */
static void test_csv_field(void **state)
{
    (void)state;
    static const char *const in[] = {"plain", "", "a,b", "say \"hi\"", "two\nlines", "cr\r",
                                     "x\"", "caf\xc3\xa9 ok"};
    static const char *const want[] = {"plain", "", "\"a,b\"", "\"say \"\"hi\"\"\"",
                                       "\"two\nlines\"", "\"cr\r\"", "\"x\"\"\"",
                                       "caf\xc3\xa9 ok"};
    for (size_t i = 0; i < sizeof in / sizeof *in; i++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        assert_non_null(f);
        br_csv_field(f, in[i]);
        fclose(f);
        assert_string_equal(buf, want[i]);
        free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_formula),
        cmocka_unit_test(test_explicit_limit),
        cmocka_unit_test(test_default_limit_file),
        cmocka_unit_test(test_csv_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
