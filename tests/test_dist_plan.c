/*
 * test_dist_plan.c - tests of the MPI-free logic of distributed training
 * (br_dist_plan.h) and of the hash split (br_split_hash): the user
 * partition, the book blocks and their rotation schedule (no two ranks on
 * one block, every block met once per epoch, a send lands where the next
 * step needs it), the initial rows, the id merge, and loading one rank's
 * share of a file in small pieces: the shares of all ranks together are
 * exactly the whole file, plain or gzip, with true line numbers in errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "br_dist_plan.h"
#include "br_ratings.h"

static void test_user_partition(void **state)
{
    (void)state;
    for (uint32_t R = 1; R <= 8; R++) {
        uint32_t count[8] = {0};
        for (uint32_t id = 1; id <= 40000; id++) {
            uint32_t k = br_dist_user_rank(id, R);
            assert_true(k < R);
            assert_int_equal(k, br_dist_user_rank(id, R));   /* a function of the id */
            count[k]++;
        }
        for (uint32_t k = 0; k < R; k++)   /* balanced within 5% */
            assert_true(fabs(count[k] - 40000.0 / R) < 0.05 * 40000.0 / R);
    }
    assert_int_equal(br_dist_user_rank(7, 0), 0);   /* no ranks: no division by zero */
}

static void test_blocks(void **state)
{
    (void)state;
    uint32_t sizes[] = {0, 1, 5, 10, 10001};
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++)
        for (uint32_t R = 1; R <= 7; R++) {
            uint32_t nb = sizes[t], sum = 0;
            for (uint32_t k = 0; k < R; k++) {
                uint32_t sz = br_dist_block_size(nb, R, k);
                sum += sz;
                assert_true(sz <= br_dist_block_size(nb, R, 0));   /* block 0 is the largest */
                for (uint32_t i = 0; i < sz; i++) {
                    uint32_t g = br_dist_book_global(k, i, R);
                    assert_true(g < nb);
                    assert_int_equal(br_dist_book_block(g, R), k);
                    assert_int_equal(br_dist_book_slot(g, R), i);
                }
            }
            assert_int_equal(sum, nb);
        }
}

static void test_schedule(void **state)
{
    (void)state;
    for (uint32_t R = 1; R <= 9; R++) {
        for (uint64_t step = 0; step < 3 * R; step++) {
            /* no two ranks hold the same block at any step */
            uint32_t seen = 0;
            for (uint32_t k = 0; k < R; k++) {
                uint32_t b = br_dist_block_at(k, step, R);
                assert_true(b < R);
                assert_false(seen & (1u << b));
                seen |= 1u << b;
                /* what rank k sends arrives where the next step needs it */
                uint32_t to = br_dist_send_to(k, R);
                assert_int_equal(br_dist_block_at(to, step + 1, R), b);
                assert_int_equal(br_dist_recv_from(to, R), k);
            }
        }
        /* any R consecutive steps meet every block once */
        for (uint32_t k = 0; k < R; k++) {
            uint32_t seen = 0;
            for (uint64_t s = 5; s < 5 + R; s++)
                seen |= 1u << br_dist_block_at(k, s, R);
            assert_int_equal(seen, (1u << R) - 1);
        }
    }
}

static void test_init_row(void **state)
{
    (void)state;
    float a[16], b[16], c[16], d[16];
    br_dist_init_row(a, 10, 16, 42, 0, 123, 0.1f);
    br_dist_init_row(b, 10, 16, 42, 0, 123, 0.1f);
    br_dist_init_row(c, 10, 16, 42, 1, 123, 0.1f);   /* the book of the same id */
    br_dist_init_row(d, 10, 16, 42, 0, 124, 0.1f);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, 10 * sizeof(float));
    assert_memory_not_equal(a, d, 10 * sizeof(float));
    double ss = 0;
    for (int j = 0; j < 10; j++) {
        assert_true(fabsf(a[j]) < 1.0f);
        ss += a[j] * a[j];
    }
    assert_true(ss > 0);
    for (int j = 10; j < 16; j++)
        assert_true(a[j] == 0.0f);
}

static void test_merge_ids(void **state)
{
    (void)state;
    uint32_t a[] = {1, 3, 5, 9}, b[] = {2, 3, 9, 10, 11}, out[9];
    size_t n = br_dist_merge_ids(a, 4, b, 5, out);
    uint32_t want[] = {1, 2, 3, 5, 9, 10, 11};
    assert_int_equal(n, 7);
    assert_memory_equal(out, want, sizeof want);
    assert_int_equal(br_dist_merge_ids(NULL, 0, b, 5, out), 5);
    assert_memory_equal(out, b, sizeof b);
    assert_int_equal(br_dist_merge_ids(NULL, 0, NULL, 0, out), 0);
}

static void test_split_hash(void **state)
{
    (void)state;
    /* about frac picked, and the pick is a function of (user, book, seed) */
    size_t picked = 0, n = 0;
    for (uint32_t u = 1; u <= 300; u++)
        for (uint32_t b = 1; b <= 100; b++, n++)
            picked += br_split_hash_pick(u, b, 42, 0.2);
    assert_true(fabs((double)picked / n - 0.2) < 0.01);
    assert_int_equal(br_split_hash_pick(5, 6, 42, 0.0), 0);
    assert_int_equal(br_split_hash_pick(5, 6, 42, 1.0), 1);
    size_t same = 0;
    for (uint32_t u = 1; u <= 1000; u++)
        same += br_split_hash_pick(u, 1, 1, 0.5) == br_split_hash_pick(u, 1, 2, 0.5);
    assert_true(same > 400 && same < 600);   /* the seed matters */

    /* On a data set and on a subset, the same ratings are held out. */
    uint32_t U[] = {1, 1, 2, 2, 3, 3, 4, 5, 5, 6}, B[] = {1, 2, 1, 3, 2, 3, 1, 1, 2, 3};
    float V[] = {1, 2, 3, 4, 5, 1, 2, 3, 4, 5};
    br_ratings *all = NULL, *sub = NULL;
    assert_int_equal(br_ratings_build(U, B, V, 10, &all, NULL), BR_OK);
    assert_int_equal(br_ratings_build(U + 4, B + 4, V + 4, 6, &sub, NULL), BR_OK);
    uint8_t fa[10] = {0}, fs[6] = {0};
    assert_int_equal(br_split_hash(all, 0.5, 7, fa, BR_FOLD_TEST), BR_OK);
    assert_int_equal(br_split_hash(sub, 0.5, 7, fs, BR_FOLD_TEST), BR_OK);
    for (size_t i = 0; i < sub->n; i++) {
        uint32_t uid = sub->user_ids[sub->user[i]], bid = sub->book_ids[sub->book[i]];
        for (size_t j = 0; j < all->n; j++)
            if (all->user_ids[all->user[j]] == uid && all->book_ids[all->book[j]] == bid)
                assert_int_equal(fs[i], fa[j]);
    }
    assert_int_equal(br_split_hash(all, 1.5, 7, fa, BR_FOLD_TEST), BR_ERR_ARG);
    br_ratings_free(all);
    br_ratings_free(sub);
}

/* Writes text to a file (gzip if gz); returns the path in buf. */
static void write_file(char *path, size_t cap, const char *name, const char *text, int gz)
{
    snprintf(path, cap, "%s/test_dist_%ld_%s", BR_TEST_BINDIR, (long)getpid(), name);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, text, (unsigned)strlen(text)), (int)strlen(text));
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
    }
}

/* Every rank's share, loaded in pieces of `chunk` bytes, adds up to the
 * file loaded whole: same (user, book, rating) triples, each in one share. */
static void check_shares(const char *path, uint32_t R, size_t chunk)
{
    br_ratings *whole = NULL;
    br_diag d;
    assert_int_equal(br_ratings_load(path, NULL, &whole, &d), BR_OK);
    size_t total = 0, rows = 0, dups = 0;
    for (uint32_t k = 0; k < R; k++) {
        br_ratings *s = NULL;
        br_err e = br_dist_load_share(path, NULL, k, R, chunk, &s, &d);
        if (e == BR_ERR_EMPTY)
            continue;   /* a rank may own no user of a tiny file */
        assert_int_equal(e, BR_OK);
        for (size_t i = 0; i < s->n; i++) {
            uint32_t uid = s->user_ids[s->user[i]], bid = s->book_ids[s->book[i]];
            assert_int_equal(br_dist_user_rank(uid, R), k);
            int64_t u = br_ratings_find_user(whole, uid), b = br_ratings_find_book(whole, bid);
            assert_true(u >= 0 && b >= 0);
            int found = 0;
            for (uint64_t j = whole->user_ptr[u]; j < whole->user_ptr[u + 1]; j++)
                if (whole->book[j] == (uint32_t)b) {
                    assert_true(whole->rating[j] == s->rating[i]);
                    found = 1;
                }
            assert_true(found);
        }
        total += s->n;
        rows += s->rows;
        dups += s->dup_rows;
        assert_int_equal(s->user_first, whole->user_first);
        br_ratings_free(s);
    }
    assert_int_equal(total, whole->n);
    assert_int_equal(rows, whole->rows);   /* each data row kept by exactly one rank */
    (void)dups;
    br_ratings_free(whole);
}

static void test_load_share(void **state)
{
    (void)state;
    /* 400 rows with duplicates (last wins), CRLF, a blank line, a BOM. */
    size_t cap = 64 * 1024, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    len += (size_t)snprintf(text + len, cap - len, "\xEF\xBB\xBF\nbook_id,user_id,rating\r\n");
    for (int i = 0; i < 400; i++) {
        if (i == 200)
            len += (size_t)snprintf(text + len, cap - len, "\n");
        len += (size_t)snprintf(text + len, cap - len, "%d,%d,%d%s", 1 + i % 37,
                                1 + (i * 7) % 53, 1 + i % 5, i % 3 ? "\n" : "\r\n");
    }
    char path[512], gzp[512];
    write_file(path, sizeof path, "share.csv", text, 0);
    write_file(gzp, sizeof gzp, "share.csv.gz", text, 1);
    /* rows of the parse count valid data rows, duplicates included, whichever rank */
    size_t chunks[] = {16, 40, 1000, 0};
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++)
        for (uint32_t R = 1; R <= 4; R++) {
            br_ratings *whole = NULL;
            assert_int_equal(br_ratings_load(path, NULL, &whole, NULL), BR_OK);
            size_t total = 0;
            for (uint32_t k = 0; k < R; k++) {
                br_ratings *s = NULL;
                br_err e = br_dist_load_share(c % 2 ? gzp : path, NULL, k, R, chunks[c], &s, NULL);
                assert_true(e == BR_OK || e == BR_ERR_EMPTY);
                if (e == BR_OK) {
                    total += s->n;
                    br_ratings_free(s);
                }
            }
            assert_int_equal(total, whole->n);
            br_ratings_free(whole);
        }
    check_shares(path, 3, 32);
    check_shares(gzp, 2, 100);
    check_shares(path, 1, 0);

    /* A bad row far into the file: the message has its true line number. */
    len += (size_t)snprintf(text + len, cap - len, "5,x,3\n");
    size_t bad_line = 1 + 1 + 400 + 1 + 1;   /* blank, header, rows, the blank line, then it */
    write_file(path, sizeof path, "bad.csv", text, 0);
    for (uint32_t R = 1; R <= 3; R += 2) {
        br_ratings *s = NULL;
        br_diag d;
        br_diag_clear(&d);
        assert_int_equal(br_dist_load_share(path, NULL, 0, R, 50, &s, &d), BR_ERR_PARSE);
        char want[64];
        snprintf(want, sizeof want, ":%zu: user_id 'x'", bad_line);
        assert_non_null(strstr(d.msg, want));
        assert_null(s);
    }
    /* skip_bad: loaded, the row counted with its line. */
    {
        br_load_opts lo = {.skip_bad = 1};
        br_ratings *s = NULL;
        assert_int_equal(br_dist_load_share(path, &lo, 0, 1, 50, &s, NULL), BR_OK);
        assert_int_equal(s->skipped, 1);
        assert_int_equal(s->first_bad_line, bad_line);
        br_ratings_free(s);
    }
    /* Missing, empty and header-only files. */
    br_ratings *s = NULL;
    br_diag d;
    assert_int_equal(br_dist_load_share("/nonexistent/r.csv", NULL, 0, 1, 0, &s, &d),
                     BR_ERR_NOT_FOUND);
    write_file(path, sizeof path, "empty.csv", "", 0);
    assert_int_equal(br_dist_load_share(path, NULL, 0, 2, 0, &s, &d), BR_ERR_EMPTY);
    write_file(path, sizeof path, "hdr.csv", "user_id,book_id,rating\n", 0);
    assert_int_equal(br_dist_load_share(path, NULL, 0, 2, 0, &s, &d), BR_ERR_EMPTY);
    write_file(path, sizeof path, "badhdr.csv", "a,b,c\n1,2,3\n", 0);
    assert_int_equal(br_dist_load_share(path, NULL, 0, 2, 4, &s, &d), BR_ERR_PARSE);
    assert_int_equal(br_dist_load_share(path, NULL, 2, 2, 0, &s, &d), BR_ERR_ARG);
    assert_null(s);
    const char *names[] = {"share.csv", "share.csv.gz", "bad.csv", "empty.csv", "hdr.csv",
                           "badhdr.csv"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/test_dist_%ld_%s", BR_TEST_BINDIR, (long)getpid(),
                 names[i]);
        unlink(path);
    }
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_partition), cmocka_unit_test(test_blocks),
        cmocka_unit_test(test_schedule),       cmocka_unit_test(test_init_row),
        cmocka_unit_test(test_merge_ids),      cmocka_unit_test(test_split_hash),
        cmocka_unit_test(test_load_share),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
