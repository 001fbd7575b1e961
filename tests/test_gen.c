/*
 * test_gen.c - the synthetic ratings generator: same seed same output,
 * exact counts, ids in range, distinct (user, book) pairs, ratings 1..5,
 * per-user minimums, popularity skew, both CSV layouts, gzip output, dense
 * and heavily skewed corner cases, and argument errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "br_gen.h"
#include "br_io.h"

typedef struct gen_out {
    uint32_t *u, *b;
    float *r;
    size_t n;
} gen_out;

static void gen_mem(const br_gen_params *p, gen_out *o)
{
    br_diag d;
    br_diag_clear(&d);
    br_err e = br_gen_memory(p, &o->u, &o->b, &o->r, &d);
    if (e)
        print_error("br_gen_memory: %s\n", br_diag_text(&d, e));
    assert_int_equal(e, BR_OK);
    o->n = (size_t)p->n_ratings;
}

static void gen_out_free(gen_out *o)
{
    free(o->u);
    free(o->b);
    free(o->r);
}

static void params(br_gen_params *p, uint32_t users, uint32_t books, uint64_t ratings)
{
    br_gen_defaults(p);
    p->n_users = users;
    p->n_books = books;
    p->n_ratings = ratings;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Checks ranges, integrality, grouping by user with ascending books (hence
 * no duplicate pairs), and the per-user minimum. */
static void check_valid(const br_gen_params *p, const gen_out *o)
{
    uint32_t *per_user = calloc(p->n_users + 1, sizeof *per_user);
    uint64_t *pairs = malloc(o->n * sizeof *pairs);
    assert_non_null(per_user);
    assert_non_null(pairs);
    for (size_t i = 0; i < o->n; i++) {
        assert_in_range(o->u[i], 1, p->n_users);
        assert_in_range(o->b[i], 1, p->n_books);
        float r = o->r[i];
        assert_true(r == 1 || r == 2 || r == 3 || r == 4 || r == 5);
        if (i) {
            assert_true(o->u[i - 1] <= o->u[i]);
            if (o->u[i - 1] == o->u[i])
                assert_true(o->b[i - 1] < o->b[i]);
        }
        per_user[o->u[i]]++;
        pairs[i] = (uint64_t)o->u[i] << 32 | o->b[i];
    }
    /* Distinct pairs, checked independently of the ordering. */
    qsort(pairs, o->n, sizeof *pairs, cmp_u64);
    for (size_t i = 1; i < o->n; i++)
        assert_true(pairs[i - 1] != pairs[i]);
    uint64_t want_min = p->n_ratings / p->n_users;
    if (want_min > 2)
        want_min = 2;
    if (want_min > p->n_books)
        want_min = p->n_books;
    for (uint32_t u = 1; u <= p->n_users; u++) {
        assert_true(per_user[u] >= want_min);
        assert_true(per_user[u] <= p->n_books);
    }
    free(per_user);
    free(pairs);
}

static void test_determinism(void **state)
{
    (void)state;
    br_gen_params p;
    params(&p, 500, 300, 20000);
    gen_out a, b, c;
    gen_mem(&p, &a);
    gen_mem(&p, &b);
    assert_memory_equal(a.u, b.u, a.n * sizeof *a.u);
    assert_memory_equal(a.b, b.b, a.n * sizeof *a.b);
    assert_memory_equal(a.r, b.r, a.n * sizeof *a.r);
    p.seed = 43;
    gen_mem(&p, &c);
    size_t same = 0;
    for (size_t i = 0; i < a.n; i++)
        same += a.b[i] == c.b[i] && a.u[i] == c.u[i] && a.r[i] == c.r[i];
    assert_true(same < a.n / 2);
    gen_out_free(&a);
    gen_out_free(&b);
    gen_out_free(&c);
}

static void test_counts_and_ranges(void **state)
{
    (void)state;
    br_gen_params p;
    params(&p, 2000, 1000, 60000);
    gen_out o;
    gen_mem(&p, &o);
    check_valid(&p, &o);

    /* Per-user counts spread around the mean; ratings use the whole scale
     * with a goodbooks-like mean; popular books (low ids) dominate. */
    uint32_t *per_user = calloc(p.n_users + 1, sizeof *per_user);
    uint32_t *per_book = calloc(p.n_books + 1, sizeof *per_book);
    size_t hist[6] = {0};
    double sum = 0;
    for (size_t i = 0; i < o.n; i++) {
        per_user[o.u[i]]++;
        per_book[o.b[i]]++;
        hist[(int)o.r[i]]++;
        sum += o.r[i];
    }
    uint32_t mn = UINT32_MAX, mx = 0;
    for (uint32_t u = 1; u <= p.n_users; u++) {
        mn = per_user[u] < mn ? per_user[u] : mn;
        mx = per_user[u] > mx ? per_user[u] : mx;
    }
    assert_true(mn < 30 && mx > 60);  /* mean is 30 */
    for (int r = 1; r <= 5; r++)
        assert_true(hist[r] > 0);
    double mean = sum / (double)o.n;
    assert_true(mean > 3.4 && mean < 4.2);
    uint64_t top = 0, bottom = 0;
    for (uint32_t b = 1; b <= 100; b++)
        top += per_book[b];
    for (uint32_t b = p.n_books - 99; b <= p.n_books; b++)
        bottom += per_book[b];
    assert_true(top > 4 * bottom);
    free(per_user);
    free(per_book);
    gen_out_free(&o);

    /* No skew: roughly uniform popularity. */
    p.pop_skew = 0;
    gen_mem(&p, &o);
    check_valid(&p, &o);
    gen_out_free(&o);
}

static void test_corner_cases(void **state)
{
    (void)state;
    br_gen_params p;
    gen_out o;
    /* Every user rates every book. */
    params(&p, 40, 25, 1000);
    gen_mem(&p, &o);
    check_valid(&p, &o);
    gen_out_free(&o);
    /* Nearly dense, so some users take the exponential-key path. */
    params(&p, 50, 200, 9000);
    gen_mem(&p, &o);
    check_valid(&p, &o);
    gen_out_free(&o);
    /* Heavy skew: rejection gives up and the key method takes over. */
    params(&p, 100, 3000, 20000);
    p.pop_skew = 4;
    gen_mem(&p, &o);
    check_valid(&p, &o);
    gen_out_free(&o);
    /* Fewer ratings than users: nobody can get 2. */
    params(&p, 10, 5, 7);
    gen_mem(&p, &o);
    check_valid(&p, &o);
    gen_out_free(&o);
    /* One book, one user, rank 0, no noise. */
    params(&p, 1, 1, 1);
    p.rank = 0;
    p.noise = 0;
    gen_mem(&p, &o);
    check_valid(&p, &o);
    gen_out_free(&o);
    /* Exactly two per user. */
    params(&p, 300, 10, 600);
    gen_mem(&p, &o);
    check_valid(&p, &o);
    for (size_t i = 0; i < o.n; i++)
        assert_int_equal(o.u[i], i / 2 + 1);
    gen_out_free(&o);
}

static void test_bad_params(void **state)
{
    (void)state;
    br_gen_params p;
    br_diag d;
    uint32_t *u, *b;
    float *r;
    params(&p, 10, 10, 101);
    assert_int_equal(br_gen_memory(&p, &u, &b, &r, &d), BR_ERR_RANGE);
    assert_non_null(strstr(d.msg, "101 ratings do not fit"));
    assert_null(u);
    params(&p, 0, 10, 10);
    assert_int_equal(br_gen_memory(&p, &u, &b, &r, &d), BR_ERR_ARG);
    params(&p, 10, 10, 10);
    p.pop_skew = -1;
    assert_int_equal(br_gen_memory(&p, &u, &b, &r, &d), BR_ERR_RANGE);
    p.pop_skew = 0.8f;
    p.noise = -0.5f;
    assert_int_equal(br_gen_memory(&p, &u, &b, &r, &d), BR_ERR_RANGE);
    p.noise = 0.5f;
    p.rank = 5000;
    assert_int_equal(br_gen_memory(&p, &u, &b, &r, &d), BR_ERR_RANGE);

    /* A failed write leaves no file behind. */
    char path[1024];
    snprintf(path, sizeof path, "%s/test_gen_bad_%ld.csv", BR_TEST_BINDIR, (long)getpid());
    params(&p, 10, 10, 101);
    assert_int_equal(br_gen_write(&p, path, &d), BR_ERR_RANGE);
    assert_false(br_file_exists(path));
    params(&p, 10, 10, 10);
    assert_int_equal(br_gen_write(&p, "/nonexistent/dir/x.csv", &d), BR_ERR_NOT_FOUND);
}

/* Reads a generated CSV back and compares it with the in-memory output. */
static void check_file(const char *path, const br_gen_params *p, const gen_out *o)
{
    char *buf;
    size_t len;
    br_diag d;
    br_err e = br_read_file(path, &buf, &len, &d);
    if (e)
        print_error("%s\n", br_diag_text(&d, e));
    assert_int_equal(e, BR_OK);
    const char *hdr = p->user_first ? "user_id,book_id,rating\n" : "book_id,user_id,rating\n";
    assert_true(len >= strlen(hdr));
    assert_memory_equal(buf, hdr, strlen(hdr));
    const char *s = buf + strlen(hdr);
    size_t i = 0;
    while (*s) {
        unsigned long a, b2, r;
        int used = 0;
        assert_int_equal(sscanf(s, "%lu,%lu,%lu\n%n", &a, &b2, &r, &used), 3);
        assert_true(used > 0);
        assert_true(i < o->n);
        unsigned long user = p->user_first ? a : b2, book = p->user_first ? b2 : a;
        assert_int_equal(user, o->u[i]);
        assert_int_equal(book, o->b[i]);
        assert_int_equal(r, (unsigned long)o->r[i]);
        s += used;
        i++;
    }
    assert_int_equal(i, o->n);
    free(buf);
}

static void test_files(void **state)
{
    (void)state;
    br_gen_params p;
    params(&p, 300, 200, 5000);
    p.seed = 7;
    gen_out o;
    gen_mem(&p, &o);
    check_valid(&p, &o);
    char path[1024], gz[1024];
    snprintf(path, sizeof path, "%s/test_gen_%ld.csv", BR_TEST_BINDIR, (long)getpid());
    snprintf(gz, sizeof gz, "%s/test_gen_%ld.csv.gz", BR_TEST_BINDIR, (long)getpid());
    br_diag d;
    for (int uf = 0; uf <= 1; uf++) {
        p.user_first = uf;
        assert_int_equal(br_gen_write(&p, path, &d), BR_OK);
        check_file(path, &p, &o);
        assert_int_equal(br_gen_write(&p, gz, &d), BR_OK);
        check_file(gz, &p, &o);
        /* The .gz file really is gzip, and holds the same bytes. */
        FILE *f = fopen(gz, "rb");
        assert_non_null(f);
        unsigned char magic[2] = {0};
        assert_int_equal(fread(magic, 1, 2, f), 2);
        fclose(f);
        assert_int_equal(magic[0], 0x1f);
        assert_int_equal(magic[1], 0x8b);
        char *x, *y;
        size_t xn, yn;
        assert_int_equal(br_read_file(path, &x, &xn, &d), BR_OK);
        assert_int_equal(br_read_file(gz, &y, &yn, &d), BR_OK);
        assert_int_equal(xn, yn);
        assert_memory_equal(x, y, xn);
        free(x);
        free(y);
    }
    /* No temporary files left in the folder. */
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    assert_false(br_file_exists(tmp));
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", gz, (long)getpid());
    assert_false(br_file_exists(tmp));
    unlink(path);
    unlink(gz);
    gen_out_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_counts_and_ranges),
        cmocka_unit_test(test_corner_cases),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
