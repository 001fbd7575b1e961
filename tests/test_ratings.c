/*
 * test_ratings.c - tests of the ratings loader (br_ratings.h) and the data
 * folder lookup (br_data.h).
 *
 * Most tests parse small CSV buffers with br_ratings_parse under the name
 * "r.csv", so every failure message can be checked for "r.csv:<line>:".
 * They cover both goodbooks layouts, extra columns, CRLF, BOM, blank lines,
 * a missing final newline, duplicate merging, the dense and sparse id maps,
 * CSR views with fold filters, every rejection the parser makes (code and
 * file:line), skip_bad and implicit modes, random and truncated input under
 * the sanitizers, and the random / per-user splits. The known-bad files in
 * tests/bad/ are loaded from disk; the real goodbooks-10k ratings, when
 * BR_TEST_DATADIR holds them, are checked against the figures in SOURCES.md
 * (skipped otherwise).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <ftw.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "br_data.h"
#include "br_error.h"
#include "br_gen.h"
#include "br_io.h"
#include "br_ratings.h"
#include "br_rng.h"

/* ---- helpers ------------------------------------------------------------- */

static br_err parse_str(const char *csv, const br_load_opts *opts, br_ratings **out,
                        br_diag *d)
{
    br_diag_clear(d);
    return br_ratings_parse(csv, strlen(csv), "r.csv", opts, out, d);
}

/* Parses csv, which must be rejected with `code` and a message containing
 * `where` (e.g. "r.csv:3:") and, if not NULL, `what`. */
static void expect_reject_opts(const char *csv, const br_load_opts *opts, br_err code,
                               const char *where, const char *what)
{
    br_ratings *r = (br_ratings *)(uintptr_t)1;
    br_diag d;
    br_err e = parse_str(csv, opts, &r, &d);
    if (e != code || !strstr(d.msg, where) || (what && !strstr(d.msg, what)))
        print_error("input:\n%s\n-> code %d (%s), msg '%s'; wanted code %d, '%s', '%s'\n", csv,
                    (int)e, br_strerror(e), d.msg, (int)code, where, what ? what : "");
    assert_int_equal(e, code);
    assert_null(r);
    assert_non_null(strstr(d.msg, where));
    if (what)
        assert_non_null(strstr(d.msg, what));
}

static void expect_reject(const char *csv, br_err code, const char *where, const char *what)
{
    expect_reject_opts(csv, NULL, code, where, what);
}

static br_ratings *parse_ok_opts(const char *csv, const br_load_opts *opts)
{
    br_ratings *r = NULL;
    br_diag d;
    br_err e = parse_str(csv, opts, &r, &d);
    if (e)
        print_error("unexpected failure %s: %s\ninput:\n%s\n", br_strerror(e), d.msg, csv);
    assert_int_equal(e, BR_OK);
    assert_non_null(r);
    return r;
}

static br_ratings *parse_ok(const char *csv) { return parse_ok_opts(csv, NULL); }

/* The rating of (external user, external book), or -1 if there is none;
 * searched through user_ptr, so it also checks the CSR layout. */
static float rating_of(const br_ratings *r, uint32_t user_id, uint32_t book_id)
{
    int64_t u = br_ratings_find_user(r, user_id), b = br_ratings_find_book(r, book_id);
    if (u < 0 || b < 0)
        return -1.0f;
    for (uint64_t i = r->user_ptr[u]; i < r->user_ptr[u + 1]; i++)
        if (r->book[i] == (uint32_t)b)
            return r->rating[i];
    return -1.0f;
}

/* Everything a successfully built br_ratings must satisfy. */
static void check_invariants(const br_ratings *r)
{
    assert_true(r->n > 0);
    assert_true(r->n_users > 0 && r->n_books > 0);
    assert_int_equal(r->n + r->dup_rows, r->rows);
    assert_true(r->dup_pairs <= r->dup_rows);
    for (uint32_t u = 0; u < r->n_users; u++) {
        assert_true(r->user_ids[u] >= 1 && r->user_ids[u] <= BR_MAX_ID);
        if (u)
            assert_true(r->user_ids[u - 1] < r->user_ids[u]);
        assert_int_equal(br_ratings_find_user(r, r->user_ids[u]), u);
        assert_true(r->user_ptr[u] < r->user_ptr[u + 1]);   /* every user has a rating */
    }
    for (uint32_t b = 0; b < r->n_books; b++) {
        assert_true(r->book_ids[b] >= 1 && r->book_ids[b] <= BR_MAX_ID);
        if (b)
            assert_true(r->book_ids[b - 1] < r->book_ids[b]);
        assert_int_equal(br_ratings_find_book(r, r->book_ids[b]), b);
    }
    assert_int_equal(r->user_ptr[0], 0);
    assert_int_equal(r->user_ptr[r->n_users], r->n);
    uint8_t *book_seen = calloc(r->n_books, 1);
    assert_non_null(book_seen);
    double sum = 0;
    for (uint32_t u = 0; u < r->n_users; u++) {
        for (uint64_t i = r->user_ptr[u]; i < r->user_ptr[u + 1]; i++) {
            assert_int_equal(r->user[i], u);
            assert_true(r->book[i] < r->n_books);
            if (i > r->user_ptr[u])
                assert_true(r->book[i - 1] < r->book[i]);   /* sorted, no duplicates */
            assert_true(r->rating[i] >= 1.0f && r->rating[i] <= 5.0f);
            book_seen[r->book[i]] = 1;
            sum += r->rating[i];
        }
    }
    for (uint32_t b = 0; b < r->n_books; b++)
        assert_true(book_seen[b]);
    free(book_seen);
    assert_true(fabs(r->mean - sum / (double)r->n) < 1e-9);
    assert_int_equal(br_ratings_find_user(r, 0), -1);
    assert_int_equal(br_ratings_find_book(r, 0), -1);
    assert_int_equal(br_ratings_find_user(r, UINT32_MAX), -1);
    assert_int_equal(br_ratings_find_book(r, UINT32_MAX), -1);
}

/* Same merged contents (ids, arrays, fingerprint); layout and row counts may differ. */
static void assert_same_ratings(const br_ratings *a, const br_ratings *b)
{
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->n_users, b->n_users);
    assert_int_equal(a->n_books, b->n_books);
    assert_memory_equal(a->user_ids, b->user_ids, a->n_users * sizeof(uint32_t));
    assert_memory_equal(a->book_ids, b->book_ids, a->n_books * sizeof(uint32_t));
    assert_memory_equal(a->user, b->user, a->n * sizeof(uint32_t));
    assert_memory_equal(a->book, b->book, a->n * sizeof(uint32_t));
    assert_memory_equal(a->rating, b->rating, a->n * sizeof(float));
    assert_memory_equal(a->user_ptr, b->user_ptr, (a->n_users + 1) * sizeof(uint64_t));
    assert_true(a->fingerprint == b->fingerprint);
    assert_true(a->mean == b->mean);
}

/* A small data set in both layouts: users 7, 3, 12; books 100, 5, 42. */
static const char CSV_BOOK_FIRST[] = "book_id,user_id,rating\n"
                                     "100,7,4\n"
                                     "5,7,3\n"
                                     "42,3,5\n"
                                     "5,12,1\n"
                                     "100,3,2\n";
static const char CSV_USER_FIRST[] = "user_id,book_id,rating\n"
                                     "7,100,4\n"
                                     "7,5,3\n"
                                     "3,42,5\n"
                                     "12,5,1\n"
                                     "3,100,2\n";

/* ---- layouts and text forms ---------------------------------------------- */

static void test_layouts_same(void **state)
{
    (void)state;
    br_ratings *a = parse_ok(CSV_BOOK_FIRST);
    br_ratings *b = parse_ok(CSV_USER_FIRST);
    check_invariants(a);
    check_invariants(b);
    assert_int_equal(a->user_first, 0);
    assert_int_equal(b->user_first, 1);
    assert_same_ratings(a, b);
    assert_int_equal(a->rows, 5);
    assert_int_equal(a->n, 5);
    assert_int_equal(a->n_users, 3);
    assert_int_equal(a->n_books, 3);
    assert_int_equal(a->dup_rows, 0);
    assert_int_equal(a->dup_pairs, 0);
    assert_int_equal(a->skipped, 0);
    assert_int_equal(a->first_bad_line, 0);
    /* user 3 < 7 < 12; book 5 < 42 < 100 */
    assert_int_equal(a->user_ids[0], 3);
    assert_int_equal(a->user_ids[1], 7);
    assert_int_equal(a->user_ids[2], 12);
    assert_int_equal(a->book_ids[0], 5);
    assert_int_equal(a->book_ids[1], 42);
    assert_int_equal(a->book_ids[2], 100);
    assert_true(rating_of(a, 7, 100) == 4.0f);
    assert_true(rating_of(a, 7, 5) == 3.0f);
    assert_true(rating_of(a, 3, 42) == 5.0f);
    assert_true(rating_of(a, 12, 5) == 1.0f);
    assert_true(rating_of(a, 3, 100) == 2.0f);
    assert_true(rating_of(a, 3, 5) == -1.0f);
    assert_true(rating_of(a, 100, 7) == -1.0f);   /* swapped ids are not a rating */
    assert_true(fabs(a->mean - 3.0) < 1e-12);
    /* Sorted by (user, book): (3,42) (3,100) (7,5) (7,100) (12,5). */
    static const uint32_t users[] = {0, 0, 1, 1, 2}, books[] = {1, 2, 0, 2, 0};
    static const float vals[] = {5, 2, 3, 4, 1};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(a->user[i], users[i]);
        assert_int_equal(a->book[i], books[i]);
        assert_true(a->rating[i] == vals[i]);
    }
    br_ratings_free(a);
    br_ratings_free(b);
    br_ratings_free(NULL);
}

static void test_extra_columns(void **state)
{
    (void)state;
    br_ratings *base = parse_ok(CSV_USER_FIRST);
    static const char *const variants[] = {
        /* timestamp column at the end */
        "user_id,book_id,rating,timestamp\n"
        "7,100,4,1500000000\n7,5,3,1500000001\n3,42,5,x\n12,5,1,\n3,100,2,9\n",
        /* extra columns first and between, layout book-first */
        "timestamp,book_id,note,user_id,rating\n"
        "1,100,a,7,4\n2,5,b,7,3\n3,42,c,3,5\n4,5,,12,1\n5,100,d,3,2\n",
        /* header names quoted, in other case, with spaces; fields padded */
        "\"User_ID\", BOOK_ID ,\"rating\"\n"
        " 7 ,100, 4\n7, 5,3 \n3,42,5\n12,5,1.0\n3,100,2.\n",
    };
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        br_ratings *r = parse_ok(variants[i]);
        check_invariants(r);
        assert_same_ratings(base, r);
        br_ratings_free(r);
    }
    br_ratings_free(base);
}

static void test_crlf_bom_newlines(void **state)
{
    (void)state;
    br_ratings *base = parse_ok(CSV_USER_FIRST);
    static const char *const variants[] = {
        /* CRLF */
        "user_id,book_id,rating\r\n7,100,4\r\n7,5,3\r\n3,42,5\r\n12,5,1\r\n3,100,2\r\n",
        /* UTF-8 BOM */
        "\xEF\xBB\xBFuser_id,book_id,rating\n7,100,4\n7,5,3\n3,42,5\n12,5,1\n3,100,2\n",
        /* BOM + CRLF, no final newline */
        "\xEF\xBB\xBFuser_id,book_id,rating\r\n7,100,4\r\n7,5,3\r\n3,42,5\r\n12,5,1\r\n3,100,2",
        /* no final newline */
        "user_id,book_id,rating\n7,100,4\n7,5,3\n3,42,5\n12,5,1\n3,100,2",
        /* final CR only */
        "user_id,book_id,rating\n7,100,4\n7,5,3\n3,42,5\n12,5,1\n3,100,2\r",
        /* blank lines before the header, between rows, at the end; mixed line ends */
        "\n\r\nuser_id,book_id,rating\n\n7,100,4\r\n\r\n7,5,3\n\n\n3,42,5\n12,5,1\r\n3,100,2\n\n\r\n",
    };
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        br_ratings *r = parse_ok(variants[i]);
        check_invariants(r);
        assert_same_ratings(base, r);
        assert_int_equal(r->rows, 5);
        br_ratings_free(r);
    }
    /* Fractional ratings are kept as given. */
    br_ratings *f = parse_ok("user_id,book_id,rating\n1,1,3.5\n1,2,1.25\n2,1,5.0\n");
    assert_true(rating_of(f, 1, 1) == 3.5f);
    assert_true(rating_of(f, 1, 2) == 1.25f);
    assert_true(rating_of(f, 2, 1) == 5.0f);
    br_ratings_free(f);
    br_ratings_free(base);
}

/* ---- duplicates ------------------------------------------------------------- */

static void test_duplicates(void **state)
{
    (void)state;
    br_ratings *r = parse_ok("user_id,book_id,rating\n"
                             "1,10,3\n"    /* (1,10) x3: last is 2 */
                             "2,10,4\n"    /* (2,10) x2: last is 1 */
                             "1,10,5\n"
                             "1,20,4\n"    /* single */
                             "1,10,2\n"
                             "2,20,1\n"    /* single */
                             "2,10,1\n"
                             "3,30,5\n"    /* (3,30) x2, same value */
                             "3,30,5\n");
    check_invariants(r);
    assert_int_equal(r->rows, 9);
    assert_int_equal(r->n, 5);
    assert_int_equal(r->dup_rows, 4);
    assert_int_equal(r->dup_pairs, 3);
    assert_true(rating_of(r, 1, 10) == 2.0f);
    assert_true(rating_of(r, 2, 10) == 1.0f);
    assert_true(rating_of(r, 1, 20) == 4.0f);
    assert_true(rating_of(r, 2, 20) == 1.0f);
    assert_true(rating_of(r, 3, 30) == 5.0f);
    assert_true(fabs(r->mean - (2 + 4 + 1 + 1 + 5) / 5.0) < 1e-12);
    br_ratings_free(r);

    /* Same through br_ratings_build, and with the layout flipped. */
    static const uint32_t u[] = {1, 2, 1, 1, 1, 2, 2, 3, 3};
    static const uint32_t b[] = {10, 10, 10, 20, 10, 20, 10, 30, 30};
    static const float v[] = {3, 4, 5, 4, 2, 1, 1, 5, 5};
    br_ratings *bl = NULL;
    br_diag d;
    assert_int_equal(br_ratings_build(u, b, v, 9, &bl, &d), BR_OK);
    br_ratings *p = parse_ok("book_id,user_id,rating\n10,1,3\n10,2,4\n10,1,5\n20,1,4\n10,1,2\n"
                             "20,2,1\n10,2,1\n30,3,5\n30,3,5\n");
    assert_same_ratings(bl, p);
    assert_int_equal(bl->dup_rows, 4);
    assert_int_equal(bl->dup_pairs, 3);
    br_ratings_free(bl);
    br_ratings_free(p);
}

/* Duplicates at scale: the last row of each pair must win. */
static void test_duplicates_random(void **state)
{
    (void)state;
    enum { N = 20000, NU = 60, NB = 50 };
    uint32_t *u = malloc(N * sizeof *u), *b = malloc(N * sizeof *b);
    float *v = malloc(N * sizeof *v);
    float last[NU][NB];
    int count[NU][NB];
    memset(count, 0, sizeof count);
    assert_true(u && b && v);
    br_rng g;
    br_rng_seed(&g, 42);
    for (int i = 0; i < N; i++) {
        u[i] = 1 + br_rng_below(&g, NU);
        b[i] = 1 + br_rng_below(&g, NB);
        v[i] = (float)(1 + br_rng_below(&g, 5));
        last[u[i] - 1][b[i] - 1] = v[i];
        count[u[i] - 1][b[i] - 1]++;
    }
    br_ratings *r = NULL;
    assert_int_equal(br_ratings_build(u, b, v, N, &r, NULL), BR_OK);
    check_invariants(r);
    size_t pairs = 0, dup_pairs = 0, dup_rows = 0;
    for (int i = 0; i < NU; i++)
        for (int j = 0; j < NB; j++) {
            if (!count[i][j]) {
                assert_true(rating_of(r, (uint32_t)i + 1, (uint32_t)j + 1) == -1.0f);
                continue;
            }
            pairs++;
            if (count[i][j] > 1) {
                dup_pairs++;
                dup_rows += (size_t)count[i][j] - 1;
            }
            assert_true(rating_of(r, (uint32_t)i + 1, (uint32_t)j + 1) == last[i][j]);
        }
    assert_int_equal(r->n, pairs);
    assert_int_equal(r->dup_pairs, dup_pairs);
    assert_int_equal(r->dup_rows, dup_rows);
    assert_int_equal(r->rows, N);
    br_ratings_free(r);
    free(u);
    free(b);
    free(v);
}

/* The same rows in three orders - random, by (user, book) and by (book,
 * user), repeated pairs keeping their relative order - give the same merged
 * ratings: the loader's already-sorted path, its per-user sort (short and
 * long runs) and the book-sorted case of the original goodbooks file. */
typedef struct order_row {
    uint32_t u, b, seq;
    float v;
} order_row;

static int cmp_user_book(const void *x, const void *y)
{
    const order_row *a = x, *b = y;
    if (a->u != b->u)
        return a->u < b->u ? -1 : 1;
    if (a->b != b->b)
        return a->b < b->b ? -1 : 1;
    return (a->seq > b->seq) - (a->seq < b->seq);
}

static int cmp_book_user(const void *x, const void *y)
{
    const order_row *a = x, *b = y;
    if (a->b != b->b)
        return a->b < b->b ? -1 : 1;
    if (a->u != b->u)
        return a->u < b->u ? -1 : 1;
    return (a->seq > b->seq) - (a->seq < b->seq);
}

static br_ratings *build_rows(const order_row *rows, size_t n)
{
    uint32_t *u = malloc(n * sizeof *u), *b = malloc(n * sizeof *b);
    float *v = malloc(n * sizeof *v);
    assert_true(u && b && v);
    for (size_t i = 0; i < n; i++) {
        u[i] = rows[i].u;
        b[i] = rows[i].b;
        v[i] = rows[i].v;
    }
    br_ratings *r = NULL;
    assert_int_equal(br_ratings_build(u, b, v, n, &r, NULL), BR_OK);
    free(u);
    free(b);
    free(v);
    check_invariants(r);
    return r;
}

static void test_merge_orders(void **state)
{
    (void)state;
    enum { N = 30000 };
    order_row *rows = malloc(N * sizeof *rows);
    assert_non_null(rows);
    br_rng g;
    br_rng_seed(&g, 31);
    for (uint32_t i = 0; i < N; i++) {
        /* users 1..3 rate a lot (long runs), the rest a few books each */
        uint32_t u = i % 10 < 4 ? 1 + i % 3 : 4 + br_rng_below(&g, 2000);
        rows[i] = (order_row){u, 1 + br_rng_below(&g, u <= 3 ? 900 : 60), i,
                              (float)(1 + br_rng_below(&g, 5))};
    }
    br_ratings *a = build_rows(rows, N);
    qsort(rows, N, sizeof *rows, cmp_user_book);
    br_ratings *b = build_rows(rows, N);
    /* reference: the last row (highest seq) of each pair */
    size_t pairs = 0;
    for (size_t i = 0; i < N; i++) {
        if (i + 1 < N && rows[i + 1].u == rows[i].u && rows[i + 1].b == rows[i].b)
            continue;
        pairs++;
        assert_true(rating_of(a, rows[i].u, rows[i].b) == rows[i].v);
    }
    assert_int_equal(a->n, pairs);
    assert_true(a->dup_rows > 0);
    qsort(rows, N, sizeof *rows, cmp_book_user);
    br_ratings *c = build_rows(rows, N);
    assert_same_ratings(a, b);
    assert_same_ratings(a, c);
    assert_int_equal(a->dup_rows, b->dup_rows);
    assert_int_equal(a->dup_rows, c->dup_rows);
    assert_int_equal(a->dup_pairs, c->dup_pairs);
    br_ratings_free(a);
    br_ratings_free(b);
    br_ratings_free(c);
    free(rows);
}

/* ---- id maps ------------------------------------------------------------------ */

static void test_ids_dense(void **state)
{
    (void)state;
    br_ratings *r = parse_ok("user_id,book_id,rating\n10,9,1\n3,2,2\n7,5,3\n10,2,4\n");
    check_invariants(r);
    assert_non_null(r->user_lut);   /* small ids: direct table */
    assert_non_null(r->book_lut);
    assert_int_equal(r->n_users, 3);
    static const uint32_t uid[] = {3, 7, 10}, bid[] = {2, 5, 9};
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(r->user_ids[i], uid[i]);
        assert_int_equal(r->book_ids[i], bid[i]);
        assert_int_equal(br_ratings_find_user(r, uid[i]), i);
        assert_int_equal(br_ratings_find_book(r, bid[i]), i);
    }
    static const uint32_t absent[] = {0, 1, 4, 6, 8, 11, 12, 1000, 1u << 20, BR_MAX_ID,
                                      BR_MAX_ID + 1u, UINT32_MAX};
    for (size_t i = 0; i < sizeof absent / sizeof *absent; i++)
        assert_int_equal(br_ratings_find_user(r, absent[i]), -1);
    assert_int_equal(br_ratings_find_book(r, 3), -1);
    assert_int_equal(br_ratings_find_book(r, 10), -1);
    br_ratings_free(r);
}

static void test_ids_sparse(void **state)
{
    (void)state;
    br_ratings *r = parse_ok("book_id,user_id,rating\n"
                             "2147483647,2147483647,5\n"
                             "1,2147483646,4\n"
                             "1000000000,1,3\n"
                             "2147483647,1,2\n"
                             "1,1000000000,1\n");
    check_invariants(r);
    assert_null(r->user_lut);   /* huge ids: sorted ids + binary search */
    assert_null(r->book_lut);
    static const uint32_t uid[] = {1, 1000000000u, 2147483646u, 2147483647u};
    static const uint32_t bid[] = {1, 1000000000u, 2147483647u};
    assert_int_equal(r->n_users, 4);
    assert_int_equal(r->n_books, 3);
    for (uint32_t i = 0; i < 4; i++) {
        assert_int_equal(r->user_ids[i], uid[i]);
        assert_int_equal(br_ratings_find_user(r, uid[i]), i);
    }
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(r->book_ids[i], bid[i]);
        assert_int_equal(br_ratings_find_book(r, bid[i]), i);
    }
    static const uint32_t absent[] = {0, 2, 999999999u, 1000000001u, 2147483645u,
                                      BR_MAX_ID + 1u, UINT32_MAX};
    for (size_t i = 0; i < sizeof absent / sizeof *absent; i++) {
        assert_int_equal(br_ratings_find_user(r, absent[i]), -1);
        assert_int_equal(br_ratings_find_book(r, absent[i]), -1);
    }
    assert_true(rating_of(r, 2147483647u, 2147483647u) == 5.0f);
    assert_true(rating_of(r, 2147483646u, 1) == 4.0f);
    assert_true(rating_of(r, 1, 1000000000u) == 3.0f);
    assert_true(rating_of(r, 1, 2147483647u) == 2.0f);
    assert_true(rating_of(r, 1000000000u, 1) == 1.0f);
    br_ratings_free(r);
}

/* Random ids through both paths, every lookup checked against a scan. */
static void test_ids_random(void **state)
{
    (void)state;
    br_rng g;
    br_rng_seed(&g, 7);
    for (int round = 0; round < 6; round++) {
        size_t n = 200 + br_rng_below(&g, 800);
        uint32_t span = round % 2 ? BR_MAX_ID : 3000;   /* sparse / dense */
        uint32_t *u = malloc(n * sizeof *u), *b = malloc(n * sizeof *b);
        float *v = malloc(n * sizeof *v);
        assert_true(u && b && v);
        for (size_t i = 0; i < n; i++) {
            u[i] = 1 + br_rng_below(&g, span);
            b[i] = 1 + br_rng_below(&g, span / 3 + 1);
            v[i] = 1.0f + (float)br_rng_below(&g, 9) * 0.5f;
            if (br_rng_below(&g, 10) == 0 && i > 0) {   /* some repeats */
                u[i] = u[i - 1];
                b[i] = b[br_rng_below(&g, (uint32_t)i)];
            }
        }
        br_ratings *r = NULL;
        assert_int_equal(br_ratings_build(u, b, v, n, &r, NULL), BR_OK);
        check_invariants(r);
        assert_true(span == BR_MAX_ID ? r->user_lut == NULL : r->user_lut != NULL);
        for (size_t i = 0; i < n; i++) {
            int64_t iu = br_ratings_find_user(r, u[i]), ib = br_ratings_find_book(r, b[i]);
            assert_true(iu >= 0 && ib >= 0);
            assert_int_equal(r->user_ids[iu], u[i]);
            assert_int_equal(r->book_ids[ib], b[i]);
        }
        for (int k = 0; k < 500; k++) {   /* random probes: found iff present */
            uint32_t id = br_rng_below(&g, span) + 1;
            int present = 0;
            for (size_t i = 0; i < n && !present; i++)
                present = u[i] == id;
            int64_t iu = br_ratings_find_user(r, id);
            assert_int_equal(iu >= 0, present);
        }
        br_ratings_free(r);
        free(u);
        free(b);
        free(v);
    }
}

/* ---- CSR views ------------------------------------------------------------------ */

static br_ratings *random_ratings(uint64_t seed, size_t n, uint32_t nu, uint32_t nb)
{
    uint32_t *u = malloc(n * sizeof *u), *b = malloc(n * sizeof *b);
    float *v = malloc(n * sizeof *v);
    assert_true(u && b && v);
    br_rng g;
    br_rng_seed(&g, seed);
    for (size_t i = 0; i < n; i++) {
        u[i] = 1 + br_rng_below(&g, nu) * 3;   /* gaps in the ids */
        b[i] = 1 + br_rng_below(&g, nb) * 2;
        v[i] = (float)(1 + br_rng_below(&g, 5));
    }
    br_ratings *r = NULL;
    assert_int_equal(br_ratings_build(u, b, v, n, &r, NULL), BR_OK);
    free(u);
    free(b);
    free(v);
    return r;
}

/* Checks a CSR view against the ratings: by_user selects user-rows. */
static void check_csr(const br_ratings *r, const br_csr *c, int by_user, const uint8_t *fold,
                      uint8_t want)
{
    assert_int_equal(c->n_rows, by_user ? r->n_users : r->n_books);
    size_t expect = 0;
    for (size_t i = 0; i < r->n; i++)
        expect += !fold || fold[i] == want;
    assert_int_equal(c->nnz, expect);
    assert_int_equal(c->ptr[0], 0);
    assert_int_equal(c->ptr[c->n_rows], c->nnz);
    uint8_t *hit = calloc(r->n ? r->n : 1, 1);
    assert_non_null(hit);
    for (uint32_t row = 0; row < c->n_rows; row++) {
        assert_true(c->ptr[row] <= c->ptr[row + 1]);
        for (uint64_t k = c->ptr[row]; k < c->ptr[row + 1]; k++) {
            if (k > c->ptr[row])
                assert_true(c->col[k - 1] < c->col[k]);   /* ascending */
            uint32_t s = c->src[k];
            assert_true(s < r->n);
            assert_false(hit[s]);
            hit[s] = 1;
            if (fold)
                assert_int_equal(fold[s], want);
            assert_int_equal(by_user ? r->user[s] : r->book[s], row);
            assert_int_equal(by_user ? r->book[s] : r->user[s], c->col[k]);
            assert_true(c->val[k] == r->rating[s]);
        }
    }
    for (size_t i = 0; i < r->n; i++)
        assert_int_equal(hit[i], !fold || fold[i] == want);
    free(hit);
}

static void test_csr(void **state)
{
    (void)state;
    br_ratings *r = random_ratings(99, 5000, 120, 80);
    check_invariants(r);
    br_csr c;
    br_diag d;
    assert_int_equal(br_csr_by_user(r, NULL, 0, &c, &d), BR_OK);
    check_csr(r, &c, 1, NULL, 0);
    /* by user with no filter is the ratings array itself */
    assert_memory_equal(c.ptr, r->user_ptr, (r->n_users + 1) * sizeof(uint64_t));
    for (size_t i = 0; i < r->n; i++)
        assert_int_equal(c.src[i], i);
    br_csr_free(&c);
    assert_null(c.ptr);
    br_csr_free(&c);   /* twice is fine */
    br_csr_free(NULL);
    assert_int_equal(br_csr_by_book(r, NULL, 0, &c, &d), BR_OK);
    check_csr(r, &c, 0, NULL, 0);
    br_csr_free(&c);

    uint8_t *fold = malloc(r->n);
    assert_non_null(fold);
    br_rng g;
    br_rng_seed(&g, 5);
    for (size_t i = 0; i < r->n; i++)
        fold[i] = (uint8_t)br_rng_below(&g, 3);
    for (uint8_t want = 0; want < 4; want++) {   /* 3: a fold nobody is in */
        assert_int_equal(br_csr_by_user(r, fold, want, &c, &d), BR_OK);
        check_csr(r, &c, 1, fold, want);
        if (want == 3)
            assert_int_equal(c.nnz, 0);
        br_csr_free(&c);
        assert_int_equal(br_csr_by_book(r, fold, want, &c, &d), BR_OK);
        check_csr(r, &c, 0, fold, want);
        br_csr_free(&c);
    }
    free(fold);
    br_ratings_free(r);
}

/* ---- rejections ----------------------------------------------------------------- */

static void test_reject_empty(void **state)
{
    (void)state;
    expect_reject("", BR_ERR_EMPTY, "r.csv", "empty");
    expect_reject("\n\n\r\n", BR_ERR_EMPTY, "r.csv", "empty");
    expect_reject("\xEF\xBB\xBF", BR_ERR_EMPTY, "r.csv", "empty");
    expect_reject("user_id,book_id,rating\n", BR_ERR_EMPTY, "r.csv", "no ratings");
    expect_reject("user_id,book_id,rating", BR_ERR_EMPTY, "r.csv", "no ratings");
    expect_reject("book_id,user_id,rating\r\n\r\n\n", BR_ERR_EMPTY, "r.csv", "no ratings");
    /* A NULL buffer of length 0 is an empty file too. */
    br_ratings *r = NULL;
    br_diag d;
    assert_int_equal(br_ratings_parse(NULL, 0, "r.csv", NULL, &r, &d), BR_ERR_EMPTY);
    assert_null(r);
    /* br_ratings_build refuses nothing to build. */
    assert_int_equal(br_ratings_build(NULL, NULL, NULL, 0, &r, &d), BR_ERR_EMPTY);
    assert_null(r);
}

static void test_reject_header(void **state)
{
    (void)state;
    expect_reject("user,book,rating\n1,2,3\n", BR_ERR_PARSE, "r.csv:1:", "user_id");
    expect_reject("user_id,rating\n1,2\n", BR_ERR_PARSE, "r.csv:1:", "user_id, book_id");
    expect_reject("book_id,rating\n1,2\n", BR_ERR_PARSE, "r.csv:1:", NULL);
    expect_reject("user_id,book_id\n1,2\n", BR_ERR_PARSE, "r.csv:1:", "rating");
    expect_reject("1,2,3\n4,5,6\n", BR_ERR_PARSE, "r.csv:1:", "1,2,3");
    expect_reject("user_id;book_id;rating\n1;2;3\n", BR_ERR_PARSE, "r.csv:1:", NULL);
    /* the header's line number counts blank lines before it; a BOM is not a line */
    expect_reject("\xEF\xBB\xBF\n\r\nuserid,book_id,rating\n1,2,3\n", BR_ERR_PARSE, "r.csv:3:",
                  NULL);
    /* the message shows the header, made printable and cut short */
    expect_reject("\x01\x02,book_id,rating,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
                  "1,2,3\n",
                  BR_ERR_PARSE, "r.csv:1:", "??,book_id");
}

static void test_reject_ids(void **state)
{
    (void)state;
    const char *h = "user_id,book_id,rating\n1,1,3\n";
    char buf[256];
    static const struct {
        const char *row;
        br_err code;
        const char *what;
    } cases[] = {
        {"abc,2,3", BR_ERR_PARSE, "user_id 'abc' is not a positive integer"},
        {"1,x7,3", BR_ERR_PARSE, "book_id 'x7' is not a positive integer"},
        {"12a,2,3", BR_ERR_PARSE, "user_id"},
        {"1.5,2,3", BR_ERR_PARSE, "user_id"},
        {"+5,2,3", BR_ERR_PARSE, "user_id"},
        {"1 2,2,3", BR_ERR_PARSE, "user_id"},
        {",2,3", BR_ERR_PARSE, "user_id '' is not"},
        {"  ,2,3", BR_ERR_PARSE, "user_id"},
        {"-5,2,3", BR_ERR_PARSE, "user_id '-5' is not a positive integer"},
        {"1,-1,3", BR_ERR_PARSE, "book_id '-1'"},
        {"0,2,3", BR_ERR_RANGE, "user_id 0 is out of range"},
        {"1,000,3", BR_ERR_RANGE, "book_id 000 is out of range"},
        {"2147483648,2,3", BR_ERR_RANGE, "user_id 2147483648 is out of range (1..2147483647)"},
        {"1,4294967296,3", BR_ERR_RANGE, "book_id 4294967296 is out of range"},
        {"99999999999999999999999999999,2,3", BR_ERR_RANGE, "user_id 999"},
        {"1,18446744073709551617,3", BR_ERR_RANGE, "book_id"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(buf, sizeof buf, "%s%s\n4,4,4\n", h, cases[i].row);
        expect_reject(buf, cases[i].code, "r.csv:3:", cases[i].what);
    }
    /* the largest id and leading zeros / spaces are fine */
    br_ratings *r = parse_ok("user_id,book_id,rating\n2147483647,0002147483647,5\n 007 , 8 ,1\n");
    assert_int_equal(r->user_ids[1], BR_MAX_ID);
    assert_int_equal(r->book_ids[1], BR_MAX_ID);
    assert_true(rating_of(r, 7, 8) == 1.0f);
    br_ratings_free(r);
    /* build checks the same ranges */
    static const uint32_t ok_id[] = {1}, zero[] = {0}, big[] = {BR_MAX_ID + 1u};
    static const float three[] = {3};
    br_diag d;
    assert_int_equal(br_ratings_build(zero, ok_id, three, 1, &r, &d), BR_ERR_RANGE);
    assert_null(r);
    assert_int_equal(br_ratings_build(ok_id, big, three, 1, &r, &d), BR_ERR_RANGE);
    assert_null(r);
}

static void test_reject_ratings(void **state)
{
    (void)state;
    char buf[256];
    static const struct {
        const char *val;
        br_err code;
        const char *what;
    } cases[] = {
        {"0", BR_ERR_RANGE, "rating 0 is outside 1..5"},
        {"6", BR_ERR_RANGE, "rating 6 is outside 1..5"},
        {"5.5", BR_ERR_RANGE, "rating 5.5 is outside 1..5"},
        {"5.0001", BR_ERR_RANGE, "outside 1..5"},
        {"0.99", BR_ERR_RANGE, "outside 1..5"},
        {"100", BR_ERR_RANGE, "outside 1..5"},
        {"abc", BR_ERR_PARSE, "rating 'abc' is not a number"},
        {"", BR_ERR_PARSE, "rating '' is not a number"},
        {"4.5.1", BR_ERR_PARSE, "not a number"},
        {"-3", BR_ERR_PARSE, "not a number"},
        {"nan", BR_ERR_PARSE, "not a number"},
        {"inf", BR_ERR_PARSE, "not a number"},
        {"1e0", BR_ERR_PARSE, "not a number"},
        {".", BR_ERR_PARSE, "not a number"},
        {"4 5", BR_ERR_PARSE, "not a number"},
        {"\"4\"", BR_ERR_PARSE, "not a number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        /* bad value on line 4 of a book-first file with a CRLF and a blank line */
        snprintf(buf, sizeof buf, "book_id,user_id,rating\r\n1,1,3\r\n\r\n2,9,%s\r\n3,3,3\r\n",
                 cases[i].val);
        expect_reject(buf, cases[i].code, "r.csv:4:", cases[i].what);
    }
    /* boundaries accepted */
    br_ratings *r = parse_ok("user_id,book_id,rating\n1,1,1\n1,2,5\n1,3,1.0\n1,4,5.00\n1,5,3.\n");
    assert_int_equal(r->n, 5);
    br_ratings_free(r);
    /* build checks ratings too, NaN included */
    static const uint32_t one[] = {1};
    const float bad[] = {0.5f, 5.5f, NAN};
    br_diag d;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(br_ratings_build(one, one, &bad[i], 1, &r, &d), BR_ERR_RANGE);
        assert_null(r);
    }
}

static void test_reject_columns(void **state)
{
    (void)state;
    expect_reject("user_id,book_id,rating\n1,2,3\n4,5\n", BR_ERR_PARSE, "r.csv:3:",
                  "expected 3 columns, found 2");
    expect_reject("user_id,book_id,rating\n1,2,3\n4\n", BR_ERR_PARSE, "r.csv:3:",
                  "expected 3 columns, found 1");
    expect_reject("user_id,book_id,rating\n1,2,3\n4,5,3,9\n", BR_ERR_PARSE, "r.csv:3:",
                  "expected 3 columns, found 4");
    expect_reject("user_id,book_id,rating\n1,2,3\n4,5,3,\n", BR_ERR_PARSE, "r.csv:3:",
                  "expected 3 columns, found 4");
    expect_reject("user_id,book_id,rating,ts\n1,2,3,0\n4,5,3\n", BR_ERR_PARSE, "r.csv:3:",
                  "expected 4 columns, found 3");
    /* missing column where the rating should be: reported as a short row */
    expect_reject("book_id,user_id,rating\n1,2,3\n\n\n7,8\n", BR_ERR_PARSE, "r.csv:5:",
                  "expected 3 columns");
    /* error on the last line without a final newline */
    expect_reject("user_id,book_id,rating\n1,2,3\n4,5,3,1", BR_ERR_PARSE, "r.csv:3:",
                  "found 4");
    /* a line number far down, after CRLF rows */
    char *big = malloc(64 * 1024);
    assert_non_null(big);
    size_t k = (size_t)sprintf(big, "user_id,book_id,rating\r\n");
    for (int i = 1; i <= 1000; i++)
        k += (size_t)sprintf(big + k, "%d,%d,%d\r\n", i, i % 7 + 1, i % 5 + 1);
    sprintf(big + k, "1001,1,9\r\n");
    expect_reject(big, BR_ERR_RANGE, "r.csv:1002:", "rating 9 is outside 1..5");
    free(big);
}

/* ---- skip_bad and implicit ---------------------------------------------------------- */

static void test_skip_bad(void **state)
{
    (void)state;
    const br_load_opts skip = {.skip_bad = 1};
    const char *csv = "user_id,book_id,rating\n"
                      "1,1,4\n"
                      "\n"
                      "2,x,4\n"       /* line 4: first bad */
                      "2,2,5\n"
                      "3,3,9\n"       /* line 6 */
                      "3,3\n"         /* line 7 */
                      "0,1,1\n"       /* line 8 */
                      "3,1,2\n";
    br_ratings *r = parse_ok_opts(csv, &skip);
    check_invariants(r);
    assert_int_equal(r->skipped, 4);
    assert_int_equal(r->first_bad_line, 4);
    assert_non_null(strstr(r->first_bad, "r.csv:4:"));
    assert_non_null(strstr(r->first_bad, "book_id 'x'"));
    assert_int_equal(r->rows, 3);
    assert_int_equal(r->n, 3);
    assert_true(rating_of(r, 1, 1) == 4.0f);
    assert_true(rating_of(r, 2, 2) == 5.0f);
    assert_true(rating_of(r, 3, 1) == 2.0f);
    br_ratings_free(r);

    /* without skip_bad the same input fails on line 4 */
    expect_reject(csv, BR_ERR_PARSE, "r.csv:4:", "book_id 'x'");

    /* every row bad: nothing to build */
    expect_reject_opts("user_id,book_id,rating\n1,1,0\nq,1,1\n", &skip, BR_ERR_EMPTY, "r.csv",
                       "every row was malformed");
    /* a bad header is not skippable */
    expect_reject_opts("u,b,r\n1,1,1\n", &skip, BR_ERR_PARSE, "r.csv:1:", NULL);

    /* good input: nothing skipped */
    r = parse_ok_opts(CSV_BOOK_FIRST, &skip);
    assert_int_equal(r->skipped, 0);
    assert_int_equal(r->first_bad_line, 0);
    br_ratings_free(r);
}

static void test_implicit(void **state)
{
    (void)state;
    const br_load_opts imp = {.implicit = 1};
    /* to_read.csv layout: user_id,book_id, no rating */
    br_ratings *r = parse_ok_opts("user_id,book_id\n1,10\n2,20\n1,30\n1,10\n", &imp);
    check_invariants(r);
    assert_int_equal(r->user_first, 1);
    assert_int_equal(r->rows, 4);
    assert_int_equal(r->n, 3);
    assert_int_equal(r->dup_rows, 1);
    assert_int_equal(r->dup_pairs, 1);
    for (size_t i = 0; i < r->n; i++)
        assert_true(r->rating[i] == 1.0f);
    assert_true(rating_of(r, 1, 30) == 1.0f);
    assert_true(r->mean == 1.0);
    br_ratings *f = parse_ok_opts("book_id,user_id\r\n10,1\r\n20,2\r\n30,1\r\n10,1", &imp);
    assert_int_equal(f->user_first, 0);
    assert_same_ratings(r, f);
    br_ratings_free(f);
    br_ratings_free(r);
    /* without implicit the rating column is required */
    expect_reject("user_id,book_id\n1,10\n", BR_ERR_PARSE, "r.csv:1:", "rating");
    /* implicit still checks ids and column counts */
    expect_reject_opts("user_id,book_id\n1,10\n1,0\n", &imp, BR_ERR_RANGE, "r.csv:3:",
                       "book_id 0");
    expect_reject_opts("user_id,book_id\n1,10\n1,2,3\n", &imp, BR_ERR_PARSE, "r.csv:3:",
                       "expected 2 columns, found 3");
    expect_reject_opts("user_id\n1\n", &imp, BR_ERR_PARSE, "r.csv:1:", "book_id");
    /* a rating column in implicit mode is still read */
    r = parse_ok_opts(CSV_USER_FIRST, &imp);
    assert_true(rating_of(r, 3, 42) == 5.0f);
    br_ratings_free(r);
}

/* ---- random and truncated input --------------------------------------------------------- */

/* Parses a private copy of exactly len bytes (no NUL after it), so the
 * sanitizer catches any read past the end; checks the outcome is sane. */
static void parse_exact(const char *src, size_t len, const br_load_opts *opts)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, src, len);
    br_ratings *r = NULL;
    br_diag d;
    br_diag_clear(&d);
    br_err e = br_ratings_parse(copy, len, "r.csv", opts, &r, &d);
    if (e == BR_OK) {
        assert_non_null(r);
        check_invariants(r);
        br_ratings_free(r);
    } else {
        assert_null(r);
        assert_true(e == BR_ERR_EMPTY || e == BR_ERR_PARSE || e == BR_ERR_RANGE);
        assert_true(strncmp(d.msg, "r.csv", 5) == 0);
        assert_non_null(memchr(d.msg, '\0', sizeof d.msg));
    }
    free(copy);
}

static void test_fuzz_random(void **state)
{
    (void)state;
    static const char *const tokens[] = {
        "0", "1", "2", "3", "5", "7", "42", "2147483647", "2147483648", "99999999999", "3.5",
        ",", ",", ",", "\n", "\n", "\r\n", "\r", " ", "-", ".", "\"", "user_id", "book_id",
        "rating", "\xEF\xBB\xBF", "",
    };
    static const char *const headers[] = {
        "user_id,book_id,rating\n", "book_id,user_id,rating\r\n", "user_id,book_id\n",
        "rating,user_id,x,book_id\n", "",
    };
    const size_t nt = sizeof tokens / sizeof *tokens, nh = sizeof headers / sizeof *headers;
    char buf[512];
    br_rng g;
    br_rng_seed(&g, 2024);
    for (int it = 0; it < 4000; it++) {
        size_t len = 0;
        int mode = it % 3;
        if (mode == 0) {   /* raw random bytes */
            len = br_rng_below(&g, 200);
            for (size_t i = 0; i < len; i++)
                buf[i] = (char)br_rng_below(&g, 256);
        } else {           /* a header, then random tokens */
            const char *hd = headers[br_rng_below(&g, (uint32_t)nh)];
            len = strlen(hd);
            memcpy(buf, hd, len);
            int ntok = (int)br_rng_below(&g, 60);
            for (int t = 0; t < ntok; t++) {
                const char *tok = tokens[br_rng_below(&g, (uint32_t)nt)];
                size_t tl = strlen(tok);
                if (len + tl > sizeof buf)
                    break;
                memcpy(buf + len, tok, tl);
                len += tl;
            }
            if (mode == 2 && len > 0)   /* and a stray byte */
                buf[br_rng_below(&g, (uint32_t)len)] = (char)br_rng_below(&g, 256);
        }
        br_load_opts o = {.skip_bad = (int)(it / 3 % 2), .implicit = (int)(it / 6 % 2)};
        parse_exact(buf, len, &o);
    }
}

static void test_fuzz_truncations(void **state)
{
    (void)state;
    /* A valid file with most features: BOM, CRLF, blank lines, duplicates,
     * large ids, fractional ratings, an extra column, no final newline. */
    char buf[4096];
    size_t k = (size_t)snprintf(buf, sizeof buf, "\xEF\xBB\xBF" "book_id,user_id,rating,ts\r\n");
    br_rng g;
    br_rng_seed(&g, 3);
    for (int i = 0; i < 60; i++) {
        uint32_t b = i % 9 == 0 ? 2147483647u : 1 + br_rng_below(&g, 40);
        uint32_t u = 1 + br_rng_below(&g, 25);
        uint32_t v = 1 + br_rng_below(&g, 5);
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%u,%u,%u%s,%d%s", b, u, v,
                              i % 4 || v == 5 ? "" : ".5", i, i % 5 ? "\r\n" : "\n\n");
    }
    k += (size_t)snprintf(buf + k, sizeof buf - k, "5,5,5,0");
    assert_true(k < sizeof buf - 1);
    br_ratings *full = NULL;
    assert_int_equal(br_ratings_parse(buf, k, "r.csv", NULL, &full, NULL), BR_OK);
    assert_int_equal(full->rows, 61);
    br_ratings_free(full);
    static const br_load_opts modes[] = {{.skip_bad = 0}, {.skip_bad = 1}, {.implicit = 1}};
    for (size_t m = 0; m < 3; m++)
        for (size_t len = 0; len <= k; len++)
            parse_exact(buf, len, &modes[m]);
    /* and every single-byte corruption of a short valid file */
    static const char small[] = "user_id,book_id,rating\n1,2,3\n4,5,1\n";
    char tmp[sizeof small];
    static const char subst[] = {'\0', '\n', '\r', ',', '-', '9', 'x', '.', ' ', '\xff'};
    for (size_t pos = 0; pos + 1 < sizeof small; pos++)
        for (size_t s = 0; s < sizeof subst; s++) {
            memcpy(tmp, small, sizeof small);
            tmp[pos] = subst[s];
            parse_exact(tmp, sizeof small - 1, &modes[s % 2]);
        }
}

/* Rows of only the needed columns may take the parser's fast path; an extra
 * column sends every row through the general path. Both must accept the
 * same rows with the same values and reject the same rows with the same
 * code and message. */
static void test_fast_path_same(void **state)
{
    (void)state;
    static const char *const ids[] = {
        "1", "2", "17", "2147483647", "007", "0000000009", "00000000012", "0", "2147483648",
        "4294967297", "-1", "+3", " 4", "4 ", "x", "", "1.0", "12345678901",
    };
    static const char *const vals[] = {
        "1", "2", "3", "4", "5", "05", "0000000003", "0", "6", "10", "4.5", "5.0", "1.", ".5",
        " 3", "3 ", "x", "", "-2", "5.01",
    };
    const uint32_t n_ids = sizeof ids / sizeof *ids, n_vals = sizeof vals / sizeof *vals;
    char *a = malloc(1 << 16), *b = malloc(1 << 16);
    assert_true(a && b);
    br_rng g;
    br_rng_seed(&g, 8);
    for (int it = 0; it < 600; it++) {
        int user_first = it % 2, rows = 1 + (int)br_rng_below(&g, 12);
        int good_only = it % 3 == 0;   /* some files with only well-formed rows */
        size_t ka = (size_t)sprintf(a, "%s\n", user_first ? "user_id,book_id,rating"
                                                           : "book_id,user_id,rating");
        size_t kb = (size_t)sprintf(b, "%s\n", user_first ? "user_id,book_id,rating,extra"
                                                           : "book_id,user_id,rating,extra");
        for (int i = 0; i < rows; i++) {
            const char *x = ids[br_rng_below(&g, good_only ? 7 : n_ids)];
            const char *y = ids[br_rng_below(&g, good_only ? 7 : n_ids)];
            const char *v = vals[br_rng_below(&g, good_only ? 7 : n_vals)];
            const char *eol = br_rng_below(&g, 3) ? "\n" : "\r\n";
            if (i + 1 == rows && br_rng_below(&g, 3) == 0)
                eol = br_rng_below(&g, 2) ? "" : "\r";   /* no final newline */
            ka += (size_t)sprintf(a + ka, "%s,%s,%s%s", x, y, v, eol);
            kb += (size_t)sprintf(b + kb, "%s,%s,%s,0%s", x, y, v, eol);
        }
        for (int skip = 0; skip < 2; skip++) {
            br_load_opts o = {.skip_bad = skip};
            br_ratings *ra = NULL, *rb = NULL;
            br_diag da, db;
            br_diag_clear(&da);
            br_diag_clear(&db);
            br_err ea = br_ratings_parse(a, ka, "r.csv", &o, &ra, &da);
            br_err eb = br_ratings_parse(b, kb, "r.csv", &o, &rb, &db);
            if (ea != eb || strcmp(da.msg, db.msg) != 0)
                print_error("fast:\n%s\n-> %d '%s'\ngeneral:\n%s\n-> %d '%s'\n", a, (int)ea,
                            da.msg, b, (int)eb, db.msg);
            assert_int_equal(ea, eb);
            assert_string_equal(da.msg, db.msg);
            if (ea == BR_OK) {
                assert_same_ratings(ra, rb);
                assert_int_equal(ra->rows, rb->rows);
                assert_int_equal(ra->skipped, rb->skipped);
                assert_int_equal(ra->first_bad_line, rb->first_bad_line);
                assert_string_equal(ra->first_bad, rb->first_bad);
                assert_int_equal(ra->user_first, user_first);
            }
            br_ratings_free(ra);
            br_ratings_free(rb);
        }
    }
    free(a);
    free(b);
}

/* ---- splits ------------------------------------------------------------------------------- */

static size_t count_fold(const uint8_t *fold, size_t n, uint8_t f)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += fold[i] == f;
    return c;
}

static void test_split_random(void **state)
{
    (void)state;
    br_ratings *r = random_ratings(11, 12345, 300, 200);
    size_t n = r->n;
    uint8_t *f1 = calloc(n, 1), *f2 = calloc(n, 1);
    assert_true(f1 && f2);
    static const double fracs[] = {0.0, 0.001, 0.1, 0.2, 1.0 / 3.0, 0.5, 0.999, 1.0};
    for (size_t i = 0; i < sizeof fracs / sizeof *fracs; i++) {
        memset(f1, 0, n);
        assert_int_equal(br_split_random(r, fracs[i], 1, f1, BR_FOLD_TEST), BR_OK);
        assert_int_equal(count_fold(f1, n, BR_FOLD_TEST), (size_t)llround(fracs[i] * (double)n));
        assert_int_equal(count_fold(f1, n, BR_FOLD_TEST) + count_fold(f1, n, BR_FOLD_TRAIN), n);
    }
    /* same seed, same split; other seed, other split */
    memset(f1, 0, n);
    memset(f2, 0, n);
    assert_int_equal(br_split_random(r, 0.2, 77, f1, BR_FOLD_TEST), BR_OK);
    assert_int_equal(br_split_random(r, 0.2, 77, f2, BR_FOLD_TEST), BR_OK);
    assert_memory_equal(f1, f2, n);
    memset(f2, 0, n);
    assert_int_equal(br_split_random(r, 0.2, 78, f2, BR_FOLD_TEST), BR_OK);
    assert_int_equal(count_fold(f2, n, BR_FOLD_TEST), count_fold(f1, n, BR_FOLD_TEST));
    assert_memory_not_equal(f1, f2, n);
    /* roughly uniform: each half of the ratings gets about half the test set */
    size_t first_half = 0;
    for (size_t i = 0; i < n / 2; i++)
        first_half += f1[i] == BR_FOLD_TEST;
    double share = (double)first_half / (double)count_fold(f1, n, BR_FOLD_TEST);
    assert_true(share > 0.45 && share < 0.55);
    /* bad fractions */
    assert_int_equal(br_split_random(r, -0.1, 1, f1, BR_FOLD_TEST), BR_ERR_ARG);
    assert_int_equal(br_split_random(r, 1.1, 1, f1, BR_FOLD_TEST), BR_ERR_ARG);
    assert_int_equal(br_split_random(r, NAN, 1, f1, BR_FOLD_TEST), BR_ERR_ARG);
    free(f1);
    free(f2);
    br_ratings_free(r);
}

static void check_per_user(const br_ratings *r, const uint8_t *before, const uint8_t *after,
                           double frac, uint8_t fold_to)
{
    for (uint32_t u = 0; u < r->n_users; u++) {
        size_t c = 0, moved = 0, train_after = 0;
        for (uint64_t i = r->user_ptr[u]; i < r->user_ptr[u + 1]; i++) {
            if (before[i] != BR_FOLD_TRAIN) {
                assert_int_equal(after[i], before[i]);   /* other folds untouched */
                continue;
            }
            c++;
            if (after[i] == fold_to)
                moved++;
            else
                assert_int_equal(after[i], BR_FOLD_TRAIN);
            train_after += after[i] == BR_FOLD_TRAIN;
        }
        size_t want = 0;
        if (c >= 2) {
            want = (size_t)llround(frac * (double)c);
            if (want > c - 1)
                want = c - 1;
        }
        assert_int_equal(moved, want);
        if (c >= 1)
            assert_true(train_after >= 1);
    }
}

static void test_split_per_user(void **state)
{
    (void)state;
    br_ratings *r = random_ratings(12, 8000, 400, 300);   /* 1..~50 ratings per user */
    size_t n = r->n;
    uint8_t *zero = calloc(n, 1), *f1 = calloc(n, 1), *f2 = calloc(n, 1);
    assert_true(zero && f1 && f2);
    static const double fracs[] = {0.0, 0.1, 0.2, 0.5, 0.9, 1.0};
    for (size_t i = 0; i < sizeof fracs / sizeof *fracs; i++) {
        memset(f1, 0, n);
        assert_int_equal(br_split_per_user(r, fracs[i], 9, f1, BR_FOLD_TEST), BR_OK);
        check_per_user(r, zero, f1, fracs[i], BR_FOLD_TEST);
    }
    memset(f1, 0, n);
    assert_int_equal(br_split_per_user(r, 0.3, 5, f1, BR_FOLD_TEST), BR_OK);
    assert_int_equal(br_split_per_user(r, 0.3, 5, f2, BR_FOLD_TEST), BR_OK);
    assert_memory_equal(f1, f2, n);
    memset(f2, 0, n);
    assert_int_equal(br_split_per_user(r, 0.3, 6, f2, BR_FOLD_TEST), BR_OK);
    assert_memory_not_equal(f1, f2, n);
    assert_int_equal(br_split_per_user(r, -1, 5, f1, BR_FOLD_TEST), BR_ERR_ARG);
    assert_int_equal(br_split_per_user(r, 2, 5, f1, BR_FOLD_TEST), BR_ERR_ARG);

    /* users with one rating keep it; with two, frac 0.5 holds one out */
    br_ratings *s = parse_ok("user_id,book_id,rating\n1,1,1\n2,1,2\n2,2,3\n3,1,4\n3,2,5\n3,3,1\n");
    uint8_t fs[6] = {0};
    assert_int_equal(br_split_per_user(s, 0.5, 1, fs, BR_FOLD_TEST), BR_OK);
    assert_int_equal(fs[0], BR_FOLD_TRAIN);
    assert_int_equal(fs[1] + fs[2], 1);
    assert_int_equal(count_fold(fs + 3, 3, BR_FOLD_TEST), 2);   /* round(1.5) = 2 */
    br_ratings_free(s);
    free(zero);
    free(f1);
    free(f2);
    br_ratings_free(r);
}

/* Test, then validation out of what is left, then a per-user holdout. */
static void test_split_folds(void **state)
{
    (void)state;
    br_ratings *r = random_ratings(13, 10000, 250, 150);
    size_t n = r->n;
    uint8_t *fold = calloc(n, 1), *copy = malloc(n);
    assert_true(fold && copy);
    assert_int_equal(br_split_random(r, 0.2, 1, fold, BR_FOLD_TEST), BR_OK);
    size_t n_test = count_fold(fold, n, BR_FOLD_TEST);
    assert_int_equal(n_test, (size_t)llround(0.2 * (double)n));
    memcpy(copy, fold, n);
    assert_int_equal(br_split_random(r, 0.1, 2, fold, BR_FOLD_VALID), BR_OK);
    size_t n_valid = count_fold(fold, n, BR_FOLD_VALID);
    assert_int_equal(n_valid, (size_t)llround(0.1 * (double)(n - n_test)));
    assert_int_equal(count_fold(fold, n, BR_FOLD_TEST), n_test);
    for (size_t i = 0; i < n; i++) {
        if (copy[i] == BR_FOLD_TEST)
            assert_int_equal(fold[i], BR_FOLD_TEST);   /* test set untouched */
        else
            assert_true(fold[i] == BR_FOLD_TRAIN || fold[i] == BR_FOLD_VALID);
    }
    assert_int_equal(count_fold(fold, n, BR_FOLD_TRAIN), n - n_test - n_valid);
    /* a per-user holdout of the remaining training ratings */
    memcpy(copy, fold, n);
    assert_int_equal(br_split_per_user(r, 0.25, 3, fold, 3), BR_OK);
    check_per_user(r, copy, fold, 0.25, 3);
    /* the folds partition the ratings; CSRs of the folds add up */
    br_csr c[4];
    uint64_t total = 0;
    for (uint8_t f = 0; f < 4; f++) {
        assert_int_equal(br_csr_by_user(r, fold, f, &c[f], NULL), BR_OK);
        check_csr(r, &c[f], 1, fold, f);
        total += c[f].nnz;
        br_csr_free(&c[f]);
    }
    assert_int_equal(total, n);
    free(fold);
    free(copy);
    br_ratings_free(r);
}

/* ---- files: gzip, known-bad inputs ---------------------------------------------------------- */

static char tmp_root[64];      /* this test's temporary folder, "" if none */
static char saved_cwd[4096];   /* the folder to return to, "" if not changed */

static void make_tmp_root(void)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/br_test_ratings.XXXXXX");
    assert_non_null(mkdtemp(tmp_root));
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

/* Teardown of the tests that use files: even after a failed assertion, go
 * back to the first folder and delete the temporary one. */
static int cleanup_files(void **state)
{
    (void)state;
    if (saved_cwd[0] && chdir(saved_cwd) != 0)
        return -1;
    saved_cwd[0] = '\0';
    if (tmp_root[0])
        nftw(tmp_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    tmp_root[0] = '\0';
    return 0;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static void write_gz(const char *path, const char *text)
{
    gzFile z = gzopen(path, "wb");
    assert_non_null(z);
    assert_int_equal(gzwrite(z, text, (unsigned)strlen(text)), (int)strlen(text));
    assert_int_equal(gzclose(z), Z_OK);
}

static void test_load_files(void **state)
{
    (void)state;
    make_tmp_root();
    char plain[256], gz[256], gzbad[256], missing[256];
    snprintf(plain, sizeof plain, "%s/r.csv", tmp_root);
    snprintf(gz, sizeof gz, "%s/r.csv.gz", tmp_root);
    snprintf(gzbad, sizeof gzbad, "%s/bad.csv.gz", tmp_root);
    snprintf(missing, sizeof missing, "%s/none.csv", tmp_root);
    write_text(plain, CSV_BOOK_FIRST);
    write_gz(gz, CSV_BOOK_FIRST);
    br_ratings *a = NULL, *b = NULL;
    br_diag d;
    assert_int_equal(br_ratings_load(plain, NULL, &a, &d), BR_OK);
    assert_int_equal(br_ratings_load(gz, NULL, &b, &d), BR_OK);
    assert_same_ratings(a, b);
    br_ratings_free(a);
    br_ratings_free(b);
    /* errors name the path given */
    write_gz(gzbad, "user_id,book_id,rating\n1,1,1\n1,2,7\n");
    assert_int_equal(br_ratings_load(gzbad, NULL, &a, &d), BR_ERR_RANGE);
    assert_null(a);
    assert_non_null(strstr(d.msg, "bad.csv.gz:3:"));
    assert_int_equal(br_ratings_load(missing, NULL, &a, &d), BR_ERR_NOT_FOUND);
    assert_null(a);
    assert_non_null(strstr(d.msg, "none.csv"));

    /* The generator's CSV (both layouts, plain and gzip) loads to what
     * br_ratings_build makes of the same rows in memory. */
    char gen_path[256];
    br_gen_params gp;
    br_gen_defaults(&gp);
    gp.n_users = 300;
    gp.n_books = 120;
    gp.n_ratings = 4000;
    gp.seed = 5;
    uint32_t *gu, *gb;
    float *gv;
    assert_int_equal(br_gen_memory(&gp, &gu, &gb, &gv, &d), BR_OK);
    br_ratings *mem = NULL;
    assert_int_equal(br_ratings_build(gu, gb, gv, (size_t)gp.n_ratings, &mem, &d), BR_OK);
    free(gu);
    free(gb);
    free(gv);
    for (int k = 0; k < 4; k++) {
        gp.user_first = k % 2;
        snprintf(gen_path, sizeof gen_path, "%s/gen%d.csv%s", tmp_root, k, k >= 2 ? ".gz" : "");
        assert_int_equal(br_gen_write(&gp, gen_path, &d), BR_OK);
        assert_int_equal(br_ratings_load(gen_path, NULL, &a, &d), BR_OK);
        assert_int_equal(a->user_first, gp.user_first);
        assert_int_equal(a->rows, 4000);
        assert_same_ratings(mem, a);
        br_ratings_free(a);
        assert_int_equal(unlink(gen_path), 0);
    }
    br_ratings_free(mem);

    unlink(plain);
    unlink(gz);
    unlink(gzbad);
    assert_int_equal(rmdir(tmp_root), 0);
    tmp_root[0] = '\0';
}

/* Each known-bad file in tests/bad/ with the error it must produce. */
static void test_bad_files(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        br_err code;
        const char *where;   /* "<file>:<line>:" or just the file name */
        const char *what;
    } cases[] = {
        {"ratings_empty.csv", BR_ERR_EMPTY, "ratings_empty.csv", "file is empty"},
        {"ratings_header_only.csv", BR_ERR_EMPTY, "ratings_header_only.csv", "no ratings"},
        {"ratings_bad_header.csv", BR_ERR_PARSE, "ratings_bad_header.csv:1:", "header"},
        {"ratings_bad_rating.csv", BR_ERR_RANGE, "ratings_bad_rating.csv:5:",
         "rating 7 is outside 1..5"},
        {"ratings_nonnumeric_rating.csv", BR_ERR_PARSE, "ratings_nonnumeric_rating.csv:3:",
         "rating 'four' is not a number"},
        {"ratings_short_row.csv", BR_ERR_PARSE, "ratings_short_row.csv:4:",
         "expected 3 columns, found 2"},
        {"ratings_long_row.csv", BR_ERR_PARSE, "ratings_long_row.csv:3:",
         "expected 3 columns, found 4"},
        {"ratings_huge_id.csv", BR_ERR_RANGE, "ratings_huge_id.csv:3:",
         "user_id 2147483648 is out of range"},
        {"ratings_zero_id.csv", BR_ERR_RANGE, "ratings_zero_id.csv:4:", "book_id 0"},
        {"ratings_negative_id.csv", BR_ERR_PARSE, "ratings_negative_id.csv:2:",
         "user_id '-12' is not a positive integer"},
        {"ratings_truncated.csv.gz", BR_ERR_PARSE, "ratings_truncated.csv.gz", "truncated"},
    };
    char path[1024];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(path, sizeof path, "%s/bad/%s", BR_TEST_SRCDIR, cases[i].file);
        br_ratings *r = (br_ratings *)(uintptr_t)1;
        br_diag d;
        br_diag_clear(&d);
        br_err e = br_ratings_load(path, NULL, &r, &d);
        if (e != cases[i].code || !strstr(d.msg, cases[i].where) || !strstr(d.msg, cases[i].what))
            print_error("%s: code %d (%s), msg '%s'\n", cases[i].file, (int)e, br_strerror(e),
                        d.msg);
        assert_int_equal(e, cases[i].code);
        assert_null(r);
        assert_non_null(strstr(d.msg, cases[i].where));
        assert_non_null(strstr(d.msg, cases[i].what));
    }
}

/* ---- data folder lookup --------------------------------------------------------------------- */

static void test_data_find(void **state)
{
    (void)state;
    make_tmp_root();
    char empty[256], plain[256], gz[256], both[256], cwd_dir[256], f[512], out[512];
    snprintf(empty, sizeof empty, "%s/empty", tmp_root);
    snprintf(plain, sizeof plain, "%s/plain", tmp_root);
    snprintf(gz, sizeof gz, "%s/gz", tmp_root);
    snprintf(both, sizeof both, "%s/both", tmp_root);
    snprintf(cwd_dir, sizeof cwd_dir, "%s/cwd", tmp_root);
    const char *dirs[] = {empty, plain, gz, both, cwd_dir};
    for (int i = 0; i < 5; i++)
        assert_int_equal(mkdir(dirs[i], 0700), 0);
    snprintf(f, sizeof f, "%s/ratings.csv", plain);
    write_text(f, CSV_USER_FIRST);
    snprintf(f, sizeof f, "%s/ratings.csv.gz", gz);
    write_gz(f, CSV_USER_FIRST);
    snprintf(f, sizeof f, "%s/ratings.csv", both);
    write_text(f, CSV_USER_FIRST);
    snprintf(f, sizeof f, "%s/ratings.csv.gz", both);
    write_gz(f, CSV_USER_FIRST);
    /* a decoy: to_read but no ratings */
    snprintf(f, sizeof f, "%s/to_read.csv", empty);
    write_text(f, "user_id,book_id\n1,1\n");

    assert_non_null(getcwd(saved_cwd, sizeof saved_cwd));
    const char *old_env = getenv("BOOKREC_DATA");
    char *saved_env = old_env ? strdup(old_env) : NULL;
    /* run from an empty folder so ./data and ../shared/... are not found */
    assert_int_equal(chdir(cwd_dir), 0);

    br_diag d;
    /* explicit folder: used if it has ratings, else NOT_FOUND with advice */
    assert_int_equal(br_data_find(plain, out, sizeof out, &d), BR_OK);
    assert_string_equal(out, plain);
    assert_int_equal(br_data_find(gz, out, sizeof out, &d), BR_OK);
    assert_string_equal(out, gz);
    setenv("BOOKREC_DATA", plain, 1);
    br_diag_clear(&d);
    assert_int_equal(br_data_find(empty, out, sizeof out, &d), BR_ERR_NOT_FOUND);
    assert_non_null(strstr(d.msg, empty));            /* names the folder */
    assert_non_null(strstr(d.msg, "ratings.csv"));    /* says what is missing */
    assert_non_null(strstr(d.msg, "fetch-data"));     /* says how to get it */
    assert_non_null(strstr(d.msg, "BOOKREC_DATA"));
    /* no explicit folder: $BOOKREC_DATA */
    assert_int_equal(br_data_find(NULL, out, sizeof out, &d), BR_OK);
    assert_string_equal(out, plain);
    setenv("BOOKREC_DATA", gz, 1);
    assert_int_equal(br_data_find(NULL, out, sizeof out, &d), BR_OK);
    assert_string_equal(out, gz);
    /* $BOOKREC_DATA without ratings: falls through to ./data, then not found */
    setenv("BOOKREC_DATA", empty, 1);
    br_diag_clear(&d);
    assert_int_equal(br_data_find(NULL, out, sizeof out, &d), BR_ERR_NOT_FOUND);
    assert_non_null(strstr(d.msg, empty));
    assert_non_null(strstr(d.msg, "./data"));
    assert_non_null(strstr(d.msg, "fetch-data"));
    char data_dir[300];
    snprintf(data_dir, sizeof data_dir, "%s/data", cwd_dir);
    assert_int_equal(mkdir(data_dir, 0700), 0);
    snprintf(f, sizeof f, "%s/ratings.csv", data_dir);
    write_text(f, CSV_USER_FIRST);
    assert_int_equal(br_data_find(NULL, out, sizeof out, &d), BR_OK);
    assert_string_equal(out, "data");
    /* $BOOKREC_DATA wins over ./data */
    setenv("BOOKREC_DATA", plain, 1);
    assert_int_equal(br_data_find(NULL, out, sizeof out, &d), BR_OK);
    assert_string_equal(out, plain);
    unlink(f);
    rmdir(data_dir);
    unsetenv("BOOKREC_DATA");
    br_diag_clear(&d);
    assert_int_equal(br_data_find(NULL, out, sizeof out, &d), BR_ERR_NOT_FOUND);
    assert_non_null(strstr(d.msg, "unset"));

    /* br_data_file prefers the plain file */
    assert_int_equal(br_data_file(both, "ratings", f, sizeof f), BR_OK);
    assert_true(strlen(f) > 4 && strcmp(f + strlen(f) - 4, ".csv") == 0);
    assert_int_equal(br_data_file(gz, "ratings", f, sizeof f), BR_OK);
    assert_true(strcmp(f + strlen(f) - 7, ".csv.gz") == 0);
    assert_int_equal(br_data_file(gz, "books", f, sizeof f), BR_ERR_NOT_FOUND);

    assert_int_equal(chdir(saved_cwd), 0);
    saved_cwd[0] = '\0';
    if (saved_env)
        setenv("BOOKREC_DATA", saved_env, 1);
    free(saved_env);
    static const char *const files[][2] = {
        {"plain", "ratings.csv"}, {"gz", "ratings.csv.gz"}, {"both", "ratings.csv"},
        {"both", "ratings.csv.gz"}, {"empty", "to_read.csv"},
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(f, sizeof f, "%s/%s/%s", tmp_root, files[i][0], files[i][1]);
        assert_int_equal(unlink(f), 0);
    }
    for (int i = 0; i < 5; i++)
        assert_int_equal(rmdir(dirs[i]), 0);
    assert_int_equal(rmdir(tmp_root), 0);
    tmp_root[0] = '\0';
}

/* ---- the real data ---------------------------------------------------------------------------- */

typedef struct raw_row {
    uint32_t user, book, line;
    uint8_t rating;
} raw_row;

static int cmp_raw(const void *a, const void *b)
{
    const raw_row *x = a, *y = b;
    if (x->user != y->user)
        return x->user < y->user ? -1 : 1;
    if (x->book != y->book)
        return x->book < y->book ? -1 : 1;
    return (x->line > y->line) - (x->line < y->line);
}

static void test_real_data(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/ratings.csv.gz", BR_TEST_DATADIR);
    if (!br_file_exists(path)) {
        print_message("no %s: skipping the real-data checks\n", path);
        skip();
    }
    br_ratings *r = NULL;
    br_diag d;
    br_err e = br_ratings_load(path, NULL, &r, &d);
    if (e)
        print_error("%s\n", br_diag_text(&d, e));
    assert_int_equal(e, BR_OK);
    assert_int_equal(r->rows, 981756);
    assert_int_equal(r->n, 979478);
    assert_int_equal(r->n_users, 53424);
    assert_int_equal(r->n_books, 10000);
    assert_int_equal(r->dup_pairs, 2209);
    assert_int_equal(r->dup_rows, 2278);
    assert_int_equal(r->skipped, 0);
    assert_int_equal(r->user_first, 0);
    assert_int_equal(r->user_ids[0], 1);
    assert_int_equal(r->user_ids[r->n_users - 1], 53424);
    assert_int_equal(r->book_ids[0], 1);
    assert_int_equal(r->book_ids[r->n_books - 1], 10000);
    check_invariants(r);

    /* The first row, book 1 user 314 rating 5, through both CSRs. */
    int64_t u = br_ratings_find_user(r, 314), b = br_ratings_find_book(r, 1);
    assert_int_equal(u, 313);
    assert_int_equal(b, 0);
    br_csr cu, cb;
    assert_int_equal(br_csr_by_user(r, NULL, 0, &cu, &d), BR_OK);
    assert_int_equal(br_csr_by_book(r, NULL, 0, &cb, &d), BR_OK);
    int found = 0;
    for (uint64_t k = cu.ptr[u]; k < cu.ptr[u + 1]; k++)
        if (cu.col[k] == (uint32_t)b) {
            assert_true(cu.val[k] == 5.0f);
            found++;
        }
    assert_int_equal(found, 1);
    found = 0;
    for (uint64_t k = cb.ptr[b]; k < cb.ptr[b + 1]; k++)
        if (cb.col[k] == (uint32_t)u) {
            assert_true(cb.val[k] == 5.0f);
            assert_int_equal(r->user[cb.src[k]], u);
            assert_int_equal(r->book[cb.src[k]], b);
            found++;
        }
    assert_int_equal(found, 1);
    /* SOURCES.md: 8..100 ratings per book and 2..200 per user (raw rows, so
     * merged counts may be lower by the duplicates) */
    for (uint32_t i = 0; i < cb.n_rows; i++)
        assert_true(cb.ptr[i + 1] - cb.ptr[i] >= 1 && cb.ptr[i + 1] - cb.ptr[i] <= 100);
    for (uint32_t i = 0; i < cu.n_rows; i++)
        assert_true(cu.ptr[i + 1] - cu.ptr[i] >= 1 && cu.ptr[i + 1] - cu.ptr[i] <= 200);
    br_csr_free(&cu);
    br_csr_free(&cb);

    /* An independent reading of the raw rows: histogram and mean as in
     * SOURCES.md, and the merged ratings equal "last row wins". */
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(br_read_file(path, &text, &len, &d), BR_OK);
    assert_int_equal(len, 12437766);
    raw_row *rows = malloc(981756 * sizeof *rows);
    assert_non_null(rows);
    size_t nr = 0, hist[6] = {0};
    char *p = strchr(text, '\n') + 1;
    while (*p) {
        char *q;
        unsigned long bk = strtoul(p, &q, 10);
        unsigned long us = strtoul(q + 1, &q, 10);
        unsigned long rt = strtoul(q + 1, &q, 10);
        assert_true(*q == '\n' && nr < 981756 && rt >= 1 && rt <= 5);
        rows[nr] = (raw_row){(uint32_t)us, (uint32_t)bk, (uint32_t)nr, (uint8_t)rt};
        hist[rt]++;
        nr++;
        p = q + 1;
    }
    free(text);
    assert_int_equal(nr, 981756);
    assert_int_equal(hist[1], 19575);
    assert_int_equal(hist[2], 63231);
    assert_int_equal(hist[3], 248623);
    assert_int_equal(hist[4], 357366);
    assert_int_equal(hist[5], 292961);
    double raw_mean = (hist[1] + 2.0 * hist[2] + 3.0 * hist[3] + 4.0 * hist[4] + 5.0 * hist[5]) /
                      981756.0;
    assert_true(fabs(raw_mean - 3.8565) < 5e-5);
    assert_true(fabs(r->mean - raw_mean) < 2e-3);   /* merging moves it only slightly */
    qsort(rows, nr, sizeof *rows, cmp_raw);
    size_t k = 0;
    for (size_t i = 0; i < nr; i++) {
        if (i + 1 < nr && rows[i + 1].user == rows[i].user && rows[i + 1].book == rows[i].book)
            continue;   /* not the last row of its pair */
        assert_true(k < r->n);
        assert_int_equal(r->user_ids[r->user[k]], rows[i].user);
        assert_int_equal(r->book_ids[r->book[k]], rows[i].book);
        assert_true(r->rating[k] == (float)rows[i].rating);
        k++;
    }
    assert_int_equal(k, r->n);
    free(rows);

    /* loading again gives the same fingerprint */
    br_ratings *again = NULL;
    assert_int_equal(br_ratings_load(path, NULL, &again, &d), BR_OK);
    assert_true(again->fingerprint == r->fingerprint);
    br_ratings_free(again);
    br_ratings_free(r);

    /* to_read.csv in implicit mode (SOURCES.md: 912,705 rows, no duplicate
     * pairs, 48,871 users, 9,986 books) */
    snprintf(path, sizeof path, "%s/to_read.csv.gz", BR_TEST_DATADIR);
    if (br_file_exists(path)) {
        const br_load_opts imp = {.implicit = 1};
        e = br_ratings_load(path, &imp, &r, &d);
        if (e)
            print_error("%s\n", br_diag_text(&d, e));
        assert_int_equal(e, BR_OK);
        assert_int_equal(r->rows, 912705);
        assert_int_equal(r->n, 912705);
        assert_int_equal(r->dup_rows, 0);
        assert_int_equal(r->n_users, 48871);
        assert_int_equal(r->n_books, 9986);
        assert_int_equal(r->user_first, 1);
        assert_true(r->mean == 1.0);
        br_ratings_free(r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layouts_same),
        cmocka_unit_test(test_extra_columns),
        cmocka_unit_test(test_crlf_bom_newlines),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_duplicates_random),
        cmocka_unit_test(test_merge_orders),
        cmocka_unit_test(test_ids_dense),
        cmocka_unit_test(test_ids_sparse),
        cmocka_unit_test(test_ids_random),
        cmocka_unit_test(test_csr),
        cmocka_unit_test(test_reject_empty),
        cmocka_unit_test(test_reject_header),
        cmocka_unit_test(test_reject_ids),
        cmocka_unit_test(test_reject_ratings),
        cmocka_unit_test(test_reject_columns),
        cmocka_unit_test(test_skip_bad),
        cmocka_unit_test(test_implicit),
        cmocka_unit_test(test_fuzz_random),
        cmocka_unit_test(test_fuzz_truncations),
        cmocka_unit_test(test_fast_path_same),
        cmocka_unit_test(test_split_random),
        cmocka_unit_test(test_split_per_user),
        cmocka_unit_test(test_split_folds),
        cmocka_unit_test_teardown(test_load_files, cleanup_files),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test_teardown(test_data_find, cleanup_files),
        cmocka_unit_test(test_real_data),
    };
    return cmocka_run_group_tests_name("ratings", tests, NULL, NULL);
}
