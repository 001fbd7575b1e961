/*
 * fuzz_ratings.c - libFuzzer target for the ratings CSV parser
 * (br_ratings_parse), in the default mode and in implicit mode (no rating
 * column needed). The lenient skip_bad modes are fuzz_ratings_skip.c.
 *
 * Input: the CSV bytes, as they would be read from ratings.csv (the buffer
 * is an exact-size copy, not NUL-terminated, so ASan sees any read past
 * len). On success the result's invariants are checked: CSR offsets
 * monotone and ending at n, books ascending within a user, ratings 1..5,
 * ids ascending and found again by br_ratings_find_*. On failure: a code
 * and a message naming the file.
 */
#include <stdint.h>

#include "br_ratings.h"
#include "fuzz_common.h"

static void check_result(const br_ratings *r)
{
    FUZZ_CHECK(r->n > 0 && r->n <= r->rows);
    FUZZ_CHECK(r->n_users > 0 && r->n_books > 0);
    FUZZ_CHECK(r->user_ptr[0] == 0 && r->user_ptr[r->n_users] == r->n);
    for (uint32_t u = 0; u < r->n_users; u++) {
        FUZZ_CHECK(r->user_ptr[u] < r->user_ptr[u + 1]);   /* every user has a rating */
        for (uint64_t i = r->user_ptr[u]; i < r->user_ptr[u + 1]; i++) {
            FUZZ_CHECK(r->user[i] == u);
            FUZZ_CHECK(r->book[i] < r->n_books);
            if (i > r->user_ptr[u])
                FUZZ_CHECK(r->book[i - 1] < r->book[i]);
            FUZZ_CHECK(r->rating[i] >= 1.0f && r->rating[i] <= 5.0f);
        }
    }
    for (uint32_t u = 0; u < r->n_users; u++) {
        FUZZ_CHECK(r->user_ids[u] >= 1 && r->user_ids[u] <= BR_MAX_ID);
        if (u)
            FUZZ_CHECK(r->user_ids[u - 1] < r->user_ids[u]);
        FUZZ_CHECK(br_ratings_find_user(r, r->user_ids[u]) == (int64_t)u);
    }
    for (uint32_t b = 0; b < r->n_books; b++) {
        FUZZ_CHECK(r->book_ids[b] >= 1 && r->book_ids[b] <= BR_MAX_ID);
        if (b)
            FUZZ_CHECK(r->book_ids[b - 1] < r->book_ids[b]);
        FUZZ_CHECK(br_ratings_find_book(r, r->book_ids[b]) == (int64_t)b);
    }
    FUZZ_CHECK(br_ratings_find_user(r, 0) == -1);
    FUZZ_CHECK(br_ratings_find_book(r, 0) == -1);
    FUZZ_CHECK(r->rows == r->n + r->dup_rows);
    FUZZ_CHECK(r->mean >= 1.0 && r->mean <= 5.0);
}

static void run(const uint8_t *data, size_t size, const br_load_opts *o)
{
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return;
    memcpy(buf, data, size);
    br_ratings *r = (br_ratings *)(uintptr_t)1;
    br_diag d;
    br_diag_clear(&d);
    br_err e = br_ratings_parse(buf, size, "fuzz.csv", o, &r, &d);
    if (e == BR_OK) {
        FUZZ_CHECK(r != NULL);
        check_result(r);
        if (!o || !o->skip_bad)
            FUZZ_CHECK(r->skipped == 0);
        br_ratings_free(r);
    } else {
        FUZZ_CHECK(r == NULL);
        fuzz_check_diag(e, &d, "fuzz.csv");
    }
    free(buf);
}

#ifndef FUZZ_RATINGS_SKIP
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const br_load_opts implicit = {.implicit = 1};
    run(data, size, NULL);   /* the defaults: strict, rating column required */
    run(data, size, &implicit);
    return 0;
}
#else
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const br_load_opts skip = {.skip_bad = 1}, skip_implicit = {.skip_bad = 1, .implicit = 1};
    run(data, size, &skip);
    run(data, size, &skip_implicit);
    return 0;
}
#endif
