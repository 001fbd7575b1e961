/*
 * test_topk.c - br_topk against the obvious reference: drop the excluded
 * indices, qsort the rest by (score descending, index ascending, NaN last),
 * cut to k. Index and score order must match exactly.
 *
 * Inputs: sizes 1, 2, 7, 1000, 10007; continuous scores, scores drawn from a
 * handful of values (many ties, +0 and -0 among them), scores with NaNs and
 * infinities, all NaN; k = 0, 1, 10, n - 1, n, n + 5; exclusion lists empty,
 * all, random, with out-of-range entries, with duplicates. The output buffer
 * holds the expected result plus one canary entry that must stay untouched
 * (and ASan catches anything further in the sanitizer build).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "br_rng.h"
#include "br_topk.h"

/* ---- reference ---------------------------------------------------------------- */

/* (score desc, idx asc), NaN after every number; written independently of
 * br_scored_before. */
static int ref_cmp(const void *pa, const void *pb)
{
    const br_scored *a = pa, *b = pb;
    int an = isnan(a->score), bn = isnan(b->score);
    if (an != bn)
        return an ? 1 : -1;
    if (!an) {
        if (a->score > b->score)
            return -1;
        if (a->score < b->score)
            return 1;
    }
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* The expected result; returns its length. */
static size_t reference(const float *s, size_t n, const uint32_t *ex, size_t n_ex, size_t k,
                        br_scored **out)
{
    uint8_t *drop = calloc(n ? n : 1, 1);
    br_scored *all = malloc((n ? n : 1) * sizeof *all);
    assert_non_null(drop);
    assert_non_null(all);
    for (size_t e = 0; e < n_ex; e++)
        if (ex[e] < n)
            drop[ex[e]] = 1;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!drop[i])
            all[m++] = (br_scored){s[i], (uint32_t)i};
    qsort(all, m, sizeof *all, ref_cmp);
    free(drop);
    *out = all;
    return m < k ? m : k;
}

/* ---- inputs ------------------------------------------------------------------- */

enum dist { D_CONT, D_TIES, D_NAN, D_ALL_NAN, D_COUNT };
static const char *dist_name[] = {"continuous", "ties", "nan+inf", "all-nan"};

static void make_scores(br_rng *g, enum dist d, float *s, size_t n)
{
    /* Few distinct values, including both zeros (equal, so ties by index). */
    static const float few[] = {-1.0f, -0.0f, 0.0f, 0.5f, 2.0f};
    for (size_t i = 0; i < n; i++) {
        switch (d) {
        case D_CONT:
            s[i] = (float)(br_rng_uniform(g) * 200.0 - 100.0);
            break;
        case D_TIES:
            s[i] = few[br_rng_below(g, 5)];
            break;
        case D_NAN: {
            uint32_t c = br_rng_below(g, 10);
            s[i] = c < 2 ? NAN : c == 2 ? -NAN : c == 3 ? INFINITY : c == 4 ? -INFINITY
                 : few[br_rng_below(g, 5)];
            break;
        }
        default:
            s[i] = NAN;
        }
    }
}

enum exl { X_EMPTY, X_ALL, X_RANDOM, X_OUT_OF_RANGE, X_DUPLICATES, X_COUNT };
static const char *ex_name[] = {"empty", "all", "random", "out-of-range", "duplicates"};

/* Builds an ascending exclusion list (as br_topk requires); returns its length. */
static size_t make_exclude(br_rng *g, enum exl x, size_t n, uint32_t *ex)
{
    size_t m = 0;
    switch (x) {
    case X_EMPTY:
        return 0;
    case X_ALL:
        for (size_t i = 0; i < n; i++)
            ex[m++] = (uint32_t)i;
        return m;
    case X_RANDOM:
        for (size_t i = 0; i < n; i++)
            if (br_rng_below(g, 3) == 0)
                ex[m++] = (uint32_t)i;
        return m;
    case X_OUT_OF_RANGE:
        for (size_t i = 0; i < n; i++)
            if (br_rng_below(g, 4) == 0)
                ex[m++] = (uint32_t)i;
        ex[m++] = (uint32_t)n;          /* just past the end */
        ex[m++] = (uint32_t)n + 17;
        ex[m++] = UINT32_MAX;
        return m;
    case X_DUPLICATES:
        /* index 0 twice first and n-1 twice last, random repeats between:
         * still ascending */
        ex[m++] = 0;
        ex[m++] = 0;
        for (size_t i = 0; i < n; i++)
            if (br_rng_below(g, 3) == 0) {
                uint32_t rep = 1 + br_rng_below(g, 3);
                for (uint32_t r = 0; r < rep; r++)
                    ex[m++] = (uint32_t)i;
            }
        ex[m++] = (uint32_t)(n - 1);
        ex[m++] = (uint32_t)(n - 1);
        return m;
    default:
        return 0;
    }
}

static void check_case(const float *s, size_t n, const uint32_t *ex, size_t n_ex, size_t k,
                       const char *what)
{
    br_scored *ref;
    size_t want = reference(s, n, ex, n_ex, k, &ref);
    /* the result plus one canary entry: writes past the result show in the
     * canary, and past that are ASan errors */
    br_scored *got = malloc((want + 1) * sizeof *got);
    assert_non_null(got);
    const br_scored canary = {-12345.5f, 0xdeadbeefu};
    got[want] = canary;
    size_t m = br_topk(s, n, n_ex ? ex : NULL, n_ex, k, got);
    if (got[want].idx != canary.idx || got[want].score != canary.score) {
        print_error("%s: n=%zu k=%zu n_ex=%zu: wrote past the %zu result entries\n", what, n,
                    k, n_ex, want);
        fail();
    }
    if (m != want) {
        print_error("%s: n=%zu k=%zu n_ex=%zu: returned %zu entries, expected %zu\n", what, n, k,
                    n_ex, m, want);
        fail();
    }
    for (size_t i = 0; i < want; i++) {
        if (got[i].idx != ref[i].idx ||
            memcmp(&got[i].score, &ref[i].score, sizeof(float)) != 0) {
            print_error("%s: n=%zu k=%zu n_ex=%zu: rank %zu is (%u, %g), expected (%u, %g)\n",
                        what, n, k, n_ex, i, got[i].idx, (double)got[i].score, ref[i].idx,
                        (double)ref[i].score);
            fail();
        }
        /* and the score is the input's score of that index */
        assert_memory_equal(&got[i].score, &s[got[i].idx], sizeof(float));
    }
    free(got);
    free(ref);
}

/* ---- tests ------------------------------------------------------------------- */

static void test_topk_matrix(void **state)
{
    (void)state;
    static const size_t sizes[] = {1, 2, 7, 1000, 10007};
    br_rng g;
    br_rng_seed(&g, 7);
    char what[128];
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        size_t n = sizes[si];
        float *s = malloc(n * sizeof *s);
        uint32_t *ex = malloc((3 * n + 8) * sizeof *ex);
        assert_non_null(s);
        assert_non_null(ex);
        for (int d = 0; d < D_COUNT; d++) {
            make_scores(&g, (enum dist)d, s, n);
            for (int x = 0; x < X_COUNT; x++) {
                size_t n_ex = make_exclude(&g, (enum exl)x, n, ex);
                for (size_t i = 1; i < n_ex; i++)
                    assert_true(ex[i - 1] <= ex[i]);   /* the list is valid input */
                const size_t ks[] = {0, 1, 10, n > 1 ? n - 1 : 1, n, n + 5};
                for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
                    snprintf(what, sizeof what, "%s scores, %s exclusions", dist_name[d],
                             ex_name[x]);
                    check_case(s, n, ex, n_ex, ks[ki], what);
                }
            }
        }
        free(s);
        free(ex);
    }
}

/* Orders that stress the heap: ascending, descending and constant runs, where
 * every new candidate ties with or beats the root. */
static void test_topk_monotone(void **state)
{
    (void)state;
    const size_t n = 1000;
    float *s = malloc(n * sizeof *s);
    uint32_t ex[3] = {5, 500, 999};
    assert_non_null(s);
    for (int kind = 0; kind < 3; kind++) {
        for (size_t i = 0; i < n; i++)
            s[i] = kind == 0 ? (float)i : kind == 1 ? (float)(n - i) : 1.0f;
        static const size_t ks[] = {1, 3, 64, 999, 1000};
        for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
            check_case(s, n, NULL, 0, ks[ki], "monotone");
            check_case(s, n, ex, 3, ks[ki], "monotone, excluded");
        }
    }
    free(s);
}

/* A small hand-made case, independent of the reference code. */
static void test_topk_by_hand(void **state)
{
    (void)state;
    const float s[8] = {1.0f, NAN, 3.0f, 3.0f, -INFINITY, 2.0f, 3.0f, NAN};
    const uint32_t ex[] = {3, 3, 40};
    br_scored out[8];
    size_t m = br_topk(s, 8, ex, 3, 8, out);
    const uint32_t want[] = {2, 6, 5, 0, 4, 1, 7};
    assert_int_equal(m, 7);
    for (size_t i = 0; i < m; i++)
        assert_int_equal(out[i].idx, want[i]);
    assert_true(out[0].score == 3.0f && out[2].score == 2.0f && isnan(out[6].score));
    assert_int_equal(br_topk(s, 8, ex, 3, 2, out), 2);
    assert_int_equal(out[0].idx, 2);
    assert_int_equal(out[1].idx, 6);
    assert_int_equal(br_topk(s, 8, NULL, 0, 0, out), 0);
    assert_int_equal(br_topk(s, 0, NULL, 0, 5, out), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topk_by_hand),
        cmocka_unit_test(test_topk_matrix),
        cmocka_unit_test(test_topk_monotone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
