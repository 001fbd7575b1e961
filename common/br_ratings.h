/*
 * br_ratings.h - the ratings data set: CSV/.gz loading, duplicate merging,
 * dense id maps, CSR views and reproducible train/test splits.
 *
 * Loading accepts both goodbooks-10k layouts, told apart by the header:
 * `book_id,user_id,rating` (the original 981,756-row release) and
 * `user_id,book_id,rating` (the current 5,976,479-row release). Columns are
 * found by name, so extra columns are ignored. Plain or gzip input, LF or
 * CRLF. Ids must be integers in 1..2^31-1, ratings numbers in 1..5.
 *
 * After loading, external ids are mapped to dense internal indices in
 * ascending id order (internal 0 is the smallest id), so comparing internal
 * indices compares ids. Duplicate (user, book) pairs are merged, the last row
 * in file order wins, and counted. Ratings are stored sorted by (user, book):
 * user_ptr[u]..user_ptr[u+1] are user u's ratings, books ascending.
 *
 * br_ratings is a plain struct whose fields callers read but never modify;
 * create it with a load/parse/build function and release it with
 * br_ratings_free.
 */
#ifndef BR_RATINGS_H
#define BR_RATINGS_H

#include <stddef.h>
#include <stdint.h>
#include "br_error.h"

#define BR_MAX_ID 2147483647u    /* largest accepted external id (2^31-1) */

typedef struct br_load_opts {
    int skip_bad;          /* 1: skip malformed rows and count them instead of failing */
    int implicit;          /* 1: no rating column needed (to_read.csv); ratings are 1 */
    /* Optional row filter (NULL: keep every row): a valid row for which
     * keep(user_id, book_id, keep_ctx) returns 0 is checked but not stored
     * (distributed training: each rank keeps only its own users). */
    int (*keep)(uint32_t user_id, uint32_t book_id, void *keep_ctx);
    void *keep_ctx;
    size_t line_offset;    /* added to line numbers in messages (parsing a file in pieces) */
} br_load_opts;

typedef struct br_ratings {
    size_t n;              /* ratings after merging duplicates */
    uint32_t *user;        /* [n] internal user index; sorted by (user, book) */
    uint32_t *book;        /* [n] internal book index */
    float *rating;         /* [n] 1..5 */
    uint64_t *user_ptr;    /* [n_users+1] CSR offsets by user */
    uint32_t n_users, n_books;
    uint32_t *user_ids;    /* [n_users] internal -> external id, ascending */
    uint32_t *book_ids;    /* [n_books] internal -> external id, ascending */
    int user_first;        /* layout read: 1 user_id,book_id,...; 0 book_id,user_id,... */
    size_t rows;           /* data rows accepted from the input */
    size_t dup_rows;       /* rows merged into another row of the same (user, book) */
    size_t dup_pairs;      /* distinct (user, book) pairs that had duplicates */
    size_t skipped;        /* malformed rows skipped (skip_bad mode) */
    size_t first_bad_line; /* line of the first skipped row, 0 if none */
    char first_bad[BR_DIAG_MAX]; /* why that row was bad */
    double mean;           /* mean rating */
    uint64_t fingerprint;  /* hash of the merged ratings and their ids */
    /* id lookup (private) */
    uint32_t *user_lut, *book_lut;   /* direct tables ext -> internal+1 when ids are dense */
    uint32_t user_lut_n, book_lut_n;
} br_ratings;

/* Parses ratings CSV text (need not be NUL-terminated). `name` is used in
 * messages: "ratings.csv:17: rating 7 is outside 1..5". opts may be NULL. */
br_err br_ratings_parse(const char *buf, size_t len, const char *name,
                        const br_load_opts *opts, br_ratings **out, br_diag *diag);

/* Reads a ratings file (.csv or .csv.gz, detected by content) and parses it. */
br_err br_ratings_load(const char *path, const br_load_opts *opts,
                       br_ratings **out, br_diag *diag);

/* Builds from parallel arrays of external ids (in "file order"), merging
 * duplicates like the loader. */
br_err br_ratings_build(const uint32_t *user_ids, const uint32_t *book_ids,
                        const float *ratings, size_t n, br_ratings **out, br_diag *diag);

void br_ratings_free(br_ratings *r);   /* NULL ok */

/* External id -> internal index, or -1 if absent. */
int64_t br_ratings_find_user(const br_ratings *r, uint32_t user_id);
int64_t br_ratings_find_book(const br_ratings *r, uint32_t book_id);

/* ---- folds and splits --------------------------------------------------
 * A split assigns every rating a fold. Same data, same seed, same split. */
enum { BR_FOLD_TRAIN = 0, BR_FOLD_TEST = 1, BR_FOLD_VALID = 2 };

/* Random split over all ratings: exactly round(frac * n) ratings go to
 * `fold_to` (BR_FOLD_TEST or BR_FOLD_VALID), chosen among those currently in
 * BR_FOLD_TRAIN. fold[] (n entries) must be initialised by the caller (zeros
 * for a fresh split). As the seed tutorial's 80/20 train_test_split. */
br_err br_split_random(const br_ratings *r, double frac, uint64_t seed,
                       uint8_t *fold, uint8_t fold_to);

/* Per-user holdout: of each user's ratings currently in BR_FOLD_TRAIN,
 * round(frac * count) go to `fold_to`, always leaving the user at least one
 * training rating. For ranking evaluation. */
br_err br_split_per_user(const br_ratings *r, double frac, uint64_t seed,
                         uint8_t *fold, uint8_t fold_to);

/* Hash split: rating (user_id, book_id) goes to `fold_to` when
 * br_split_hash_pick says so; the choice depends only on the two external
 * ids, the seed and frac, never on which other ratings are loaded, so every
 * process of a distributed run (and the single-process trainer with
 * --split hash) holds out exactly the same ratings. About frac of all
 * ratings are picked (not exactly round(frac * n) as br_split_random).
 * Only ratings currently in BR_FOLD_TRAIN move. */
int br_split_hash_pick(uint32_t user_id, uint32_t book_id, uint64_t seed, double frac);
br_err br_split_hash(const br_ratings *r, double frac, uint64_t seed, uint8_t *fold,
                     uint8_t fold_to);

/* ---- CSR views ----------------------------------------------------------
 * Compressed rows: row i's entries are col[ptr[i]..ptr[i+1]), with values
 * val[] and the index of the rating they came from in src[]. */
typedef struct br_csr {
    uint32_t n_rows;
    uint64_t nnz;
    uint64_t *ptr;   /* [n_rows+1] */
    uint32_t *col;   /* [nnz] ascending within a row */
    float *val;      /* [nnz] */
    uint32_t *src;   /* [nnz] rating index in the br_ratings */
} br_csr;

/* By user (cols are books) or by book (cols are users), keeping only ratings
 * whose fold equals `want` (fold NULL: all ratings). */
br_err br_csr_by_user(const br_ratings *r, const uint8_t *fold, uint8_t want,
                      br_csr *out, br_diag *diag);
br_err br_csr_by_book(const br_ratings *r, const uint8_t *fold, uint8_t want,
                      br_csr *out, br_diag *diag);
/* Same, keeping ratings whose fold f has bit (1 << f) set in keep_mask
 * (e.g. BR_FOLD_MASK(BR_FOLD_TRAIN) | BR_FOLD_MASK(BR_FOLD_VALID)). */
#define BR_FOLD_MASK(f) (1u << (f))
br_err br_csr_by_user_mask(const br_ratings *r, const uint8_t *fold, unsigned keep_mask,
                           br_csr *out, br_diag *diag);
br_err br_csr_by_book_mask(const br_ratings *r, const uint8_t *fold, unsigned keep_mask,
                           br_csr *out, br_diag *diag);
void br_csr_free(br_csr *c);   /* frees the arrays, not c; NULL ok */

#endif
