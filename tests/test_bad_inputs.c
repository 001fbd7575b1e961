/*
 * test_bad_inputs.c - the known-bad input corpus (tests/bad/, documented in
 * tests/bad/README.md) and the fuzz seeds (tests/fuzz/corpus/), loaded
 * through the public loaders.
 *
 * 1. Every file in tests/bad/ is listed in a table with the loader that
 *    reads it, the error code it must produce and a phrase of the message;
 *    the message must also name the file, and for a CSV defect on a known
 *    line "<file>:<line>:". A file in tests/bad/ missing from the table is
 *    itself a failure, so the folder and its README stay in step.
 * 2. Inputs too large to commit are made at run time: a 10 MB line in the
 *    ratings CSV (as a data row and as the header), in books.csv, and 10 MB
 *    of noise as a model.
 * 3. Every committed fuzz seed (including the regression inputs of crashes
 *    the fuzzers found) is replayed through the loader its target fuzzes, so
 *    the sanitizer build re-checks them on every test run without clang.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "br_books.h"
#include "br_error.h"
#include "br_io.h"
#include "br_model.h"
#include "br_ratings.h"

enum loader { L_RATINGS, L_BOOKS, L_BOOK_TAGS, L_TAGS, L_MODEL };

static const struct bad_case {
    const char *file;
    enum loader how;
    br_err code;
    int line;            /* CSV line the message must name ("file:line:"), 0 if none */
    const char *what;    /* phrase of the message */
} bad_cases[] = {
    /* ratings (br_ratings_load, default options) */
    {"ratings_empty.csv", L_RATINGS, BR_ERR_EMPTY, 0, "file is empty"},
    {"ratings_header_only.csv", L_RATINGS, BR_ERR_EMPTY, 0, "no ratings after the header"},
    {"ratings_bad_header.csv", L_RATINGS, BR_ERR_PARSE, 1, "header must name the columns"},
    {"ratings_wrong_columns.csv", L_RATINGS, BR_ERR_PARSE, 1,
     "header must name the columns user_id, book_id and rating (found 'user_id,book_id')"},
    {"ratings_binary_noise.bin", L_RATINGS, BR_ERR_PARSE, 1, "header must name the columns"},
    {"ratings_bad_rating.csv", L_RATINGS, BR_ERR_RANGE, 5, "rating 7 is outside 1..5"},
    {"ratings_nonnumeric_rating.csv", L_RATINGS, BR_ERR_PARSE, 3, "rating 'four' is not a number"},
    {"ratings_short_row.csv", L_RATINGS, BR_ERR_PARSE, 4, "expected 3 columns, found 2"},
    {"ratings_long_row.csv", L_RATINGS, BR_ERR_PARSE, 3, "expected 3 columns, found 4"},
    {"ratings_huge_id.csv", L_RATINGS, BR_ERR_RANGE, 3, "user_id 2147483648 is out of range"},
    {"ratings_id_2p32.csv", L_RATINGS, BR_ERR_RANGE, 3, "user_id 4294967296 is out of range"},
    {"ratings_id_2p64.csv", L_RATINGS, BR_ERR_RANGE, 4,
     "book_id 18446744073709551617 is out of range"},
    {"ratings_zero_id.csv", L_RATINGS, BR_ERR_RANGE, 4, "book_id 0 is out of range"},
    {"ratings_negative_id.csv", L_RATINGS, BR_ERR_PARSE, 2, "user_id '-12' is not a positive integer"},
    {"ratings_truncated.csv.gz", L_RATINGS, BR_ERR_PARSE, 0, "compressed data is truncated"},
    /* books.csv (br_books_load) */
    {"books_empty.csv", L_BOOKS, BR_ERR_EMPTY, 0, "empty file"},
    {"books_header_only.csv", L_BOOKS, BR_ERR_EMPTY, 0, "no books (header only)"},
    {"books_wrong_columns.csv", L_BOOKS, BR_ERR_PARSE, 1, "missing required column 'authors'"},
    {"books_binary_noise.bin", L_BOOKS, BR_ERR_PARSE, 1, "missing required column"},
    {"books_huge_id.csv", L_BOOKS, BR_ERR_PARSE, 4, "book_id '4294967296' is not a positive integer"},
    {"books_unterminated_quote.csv", L_BOOKS, BR_ERR_PARSE, 3, "unterminated quoted field"},
    /* book_tags.csv / tags.csv (br_books_load_tags, with good companions made here) */
    {"book_tags_unknown_tag.csv", L_BOOK_TAGS, BR_ERR_PARSE, 3, "tag_id 99 is not in"},
    {"tags_duplicate_id.csv", L_TAGS, BR_ERR_PARSE, 4, "duplicate tag_id 1 (first on line 2)"},
    /* model files (br_model_open); made by test_model.c's make_bad() except the noise */
    {"model_empty.bin", L_MODEL, BR_ERR_MODEL_TRUNCATED, 0, "file is empty"},
    {"model_not_a_model.bin", L_MODEL, BR_ERR_MODEL_MAGIC, 0, "bad magic"},
    {"model_binary_noise.bin", L_MODEL, BR_ERR_MODEL_MAGIC, 0, "bad magic"},
    {"model_short_header.bin", L_MODEL, BR_ERR_MODEL_TRUNCATED, 0,
     "shorter than the 256-byte model header"},
    {"model_truncated.bin", L_MODEL, BR_ERR_MODEL_TRUNCATED, 0, "but its header says"},
    {"model_trailing.bin", L_MODEL, BR_ERR_MODEL_CORRUPT, 0, "trailing data"},
    {"model_flipped.bin", L_MODEL, BR_ERR_MODEL_CHECKSUM, 0, "checksum mismatch"},
    {"model_newer_version.bin", L_MODEL, BR_ERR_MODEL_VERSION, 0,
     "model format version 7 is newer than this program supports (2)"},
    {"model_wrong_endian.bin", L_MODEL, BR_ERR_MODEL_ENDIAN, 0, "byte order"},
    {"model_misaligned_section.bin", L_MODEL, BR_ERR_MODEL_CORRUPT, 0, "not a multiple of 64"},
    {"model_section_past_end.bin", L_MODEL, BR_ERR_MODEL_CORRUPT, 0, "past the end of the file"},
    {"model_bad_read_idx.bin", L_MODEL, BR_ERR_MODEL_CORRUPT, 0, "read book index 7 >= 7 books"},
    {"model_bad_string_offset.bin", L_MODEL, BR_ERR_MODEL_CORRUPT, 0, "string offset"},
};

static char tmp_dir[256];

static void make_tmp_dir(void)
{
    if (tmp_dir[0])
        return;
    const char *t = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/bookrec-bad.XXXXXX", t && *t ? t : "/tmp");
    assert_non_null(mkdtemp(tmp_dir));
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static const char good_books[] =
    "book_id,goodreads_book_id,title,authors\n1,100,Dune,Frank Herbert\n2,200,Emma,Jane Austen\n";
static const char good_book_tags[] = "goodreads_book_id,tag_id,count\n100,1,5\n200,2,3\n";
static const char good_tags[] = "tag_id,tag_name\n1,fantasy\n2,romance\n";

/* Loads `path` with the loader `how`; returns the code, message in *d. */
static br_err load(enum loader how, const char *path, br_diag *d)
{
    br_diag_clear(d);
    br_err e;
    if (how == L_RATINGS) {
        br_ratings *r = (br_ratings *)(uintptr_t)1;
        e = br_ratings_load(path, NULL, &r, d);
        if (e)
            assert_null(r);
        br_ratings_free(r);
    } else if (how == L_BOOKS) {
        br_books *b = (br_books *)(uintptr_t)1;
        e = br_books_load(path, &b, d);
        if (e)
            assert_null(b);
        br_books_free(b);
    } else if (how == L_BOOK_TAGS || how == L_TAGS) {
        make_tmp_dir();
        char other[512];
        snprintf(other, sizeof other, "%s/%s", tmp_dir,
                 how == L_BOOK_TAGS ? "tags.csv" : "book_tags.csv");
        if (how == L_BOOK_TAGS)
            write_file(other, good_tags, sizeof good_tags - 1);
        else
            write_file(other, good_book_tags, sizeof good_book_tags - 1);
        br_books *b = NULL;
        br_diag bd;
        assert_int_equal(br_books_parse(good_books, sizeof good_books - 1, "good_books.csv", &b,
                                        &bd), BR_OK);
        e = how == L_BOOK_TAGS ? br_books_load_tags(b, path, other, d)
                               : br_books_load_tags(b, other, path, d);
        if (e) {   /* the books keep their (empty) tags */
            assert_null(br_books_at(b, 0)->tags[0]);
            assert_string_equal(br_books_at(b, 0)->genre, "");
        }
        br_books_free(b);
        unlink(other);
    } else {
        br_model *m = (br_model *)(uintptr_t)1;
        e = br_model_open(path, &m, d);
        if (e)
            assert_null(m);
        br_model_free(m);
    }
    return e;
}

/* Checks one failure: code, the phrase, the file named, and file:line. */
static void expect(const char *label, const char *path, br_err e, const br_diag *d, br_err code,
                   int line, const char *what)
{
    char where[1100];
    if (line)
        snprintf(where, sizeof where, "%s:%d:", path, line);
    else
        snprintf(where, sizeof where, "%s", path);
    if (e != code || !strstr(d->msg, where) || !strstr(d->msg, what))
        print_error("%s: code %d (%s), msg '%s'; wanted %d (%s), '%s', '%s'\n", label, (int)e,
                    br_strerror(e), d->msg, (int)code, br_strerror(code), where, what);
    assert_int_equal(e, code);
    assert_non_null(strstr(d->msg, where));
    assert_non_null(strstr(d->msg, what));
    assert_true(strlen(d->msg) < 400);   /* bounded, whatever the input */
}

static void test_bad_files(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof *bad_cases; i++) {
        const struct bad_case *c = &bad_cases[i];
        char path[1024];
        snprintf(path, sizeof path, "%s/bad/%s", BR_TEST_SRCDIR, c->file);
        assert_true(br_file_exists(path));
        br_diag d;
        br_err e = load(c->how, path, &d);
        expect(c->file, path, e, &d, c->code, c->line, c->what);
    }
}

/* Every file in tests/bad/ (but README.md) has a row in bad_cases. */
static void test_bad_folder_listed(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/bad", BR_TEST_SRCDIR);
    DIR *dp = opendir(dir);
    assert_non_null(dp);
    struct dirent *de;
    int unlisted = 0;
    while ((de = readdir(dp))) {
        if (de->d_name[0] == '.' || strcmp(de->d_name, "README.md") == 0)
            continue;
        int found = 0;
        for (size_t i = 0; i < sizeof bad_cases / sizeof *bad_cases && !found; i++)
            found = strcmp(bad_cases[i].file, de->d_name) == 0;
        if (!found) {
            print_error("tests/bad/%s has no row in test_bad_inputs.c\n", de->d_name);
            unlisted++;
        }
    }
    closedir(dp);
    assert_int_equal(unlisted, 0);
}

/* ---- 10 MB lines, made at run time ---------------------------------------- */

#define BIG (10u << 20)

static void test_ten_megabyte_lines(void **state)
{
    (void)state;
    make_tmp_dir();
    char path[512];
    br_diag d;
    char *big = malloc(BIG + 256);
    assert_non_null(big);

    /* ratings: a good row, then one 10 MB row of digits (a rating field
     * far longer than any number), then a good row */
    snprintf(path, sizeof path, "%s/ratings_10mb_row.csv", tmp_dir);
    size_t n = (size_t)sprintf(big, "user_id,book_id,rating\n1,2,3\n1,3,");
    memset(big + n, '4', BIG);
    n += BIG;
    n += (size_t)sprintf(big + n, "\n2,2,5\n");
    write_file(path, big, n);
    expect("ratings 10 MB row", path, load(L_RATINGS, path, &d), &d, BR_ERR_PARSE, 3,
           "is not a number");
    /* ...which skip_bad mode skips, keeping the other two rows */
    br_load_opts skip = {.skip_bad = 1};
    br_ratings *r = NULL;
    assert_int_equal(br_ratings_load(path, &skip, &r, &d), BR_OK);
    assert_int_equal(r->n, 2);
    assert_int_equal(r->skipped, 1);
    assert_int_equal(r->first_bad_line, 3);
    br_ratings_free(r);
    unlink(path);

    /* ratings: the header itself is 10 MB (no newline at all) */
    snprintf(path, sizeof path, "%s/ratings_10mb_header.csv", tmp_dir);
    memset(big, 'x', BIG);
    write_file(path, big, BIG);
    expect("ratings 10 MB header", path, load(L_RATINGS, path, &d), &d, BR_ERR_PARSE, 1,
           "header must name the columns");
    unlink(path);

    /* ratings: a 10 MB user id of digits (range, not a crash or a wrap) */
    snprintf(path, sizeof path, "%s/ratings_10mb_id.csv", tmp_dir);
    n = (size_t)sprintf(big, "user_id,book_id,rating\n");
    memset(big + n, '9', BIG);
    n += BIG;
    n += (size_t)sprintf(big + n, ",1,5\n");
    write_file(path, big, n);
    expect("ratings 10 MB id", path, load(L_RATINGS, path, &d), &d, BR_ERR_RANGE, 2,
           "is out of range");
    unlink(path);

    /* books.csv: a 10 MB line without a comma: one field where three are due */
    snprintf(path, sizeof path, "%s/books_10mb_line.csv", tmp_dir);
    n = (size_t)sprintf(big, "book_id,title,authors\n1,Dune,Frank Herbert\n");
    memset(big + n, 'y', BIG);
    n += BIG;
    big[n++] = '\n';
    write_file(path, big, n);
    expect("books 10 MB line", path, load(L_BOOKS, path, &d), &d, BR_ERR_PARSE, 3,
           "too few fields (1), expected 3");
    unlink(path);

    /* books.csv: a 10 MB quoted title is legal and kept whole */
    snprintf(path, sizeof path, "%s/books_10mb_title.csv", tmp_dir);
    n = (size_t)sprintf(big, "book_id,title,authors\n1,\"");
    memset(big + n, 't', BIG);
    n += BIG;
    n += (size_t)sprintf(big + n, "\",Me\n");
    write_file(path, big, n);
    br_books *b = NULL;
    assert_int_equal(br_books_load(path, &b, &d), BR_OK);
    assert_int_equal(strlen(br_books_at(b, 0)->title), BIG);
    br_books_free(b);
    unlink(path);

    /* model: 10 MB of bytes that are not a model */
    snprintf(path, sizeof path, "%s/model_10mb.bin", tmp_dir);
    memset(big, 0xA5, BIG);
    write_file(path, big, BIG);
    expect("model 10 MB noise", path, load(L_MODEL, path, &d), &d, BR_ERR_MODEL_MAGIC, 0,
           "bad magic");
    unlink(path);
    free(big);
}

/* ---- fuzz seeds and regression inputs ------------------------------------- */

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long sz = ftell(f);
    assert_true(sz >= 0);
    rewind(f);
    unsigned char *p = malloc((size_t)sz + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return p;
}

/* The loader calls of tests/fuzz/<target>.c, minus libFuzzer; the inputs
 * must load or fail with a message, never crash (the sanitizer build
 * checks the "never crash" part). Returns 1 if the input loaded. */
static int replay(const char *target, const unsigned char *p, size_t n)
{
    br_diag d;
    int ok = 0;
    if (strncmp(target, "fuzz_ratings", 12) == 0) {
        br_load_opts opts[4] = {{.skip_bad = 0}, {.implicit = 1}, {.skip_bad = 1}, {.skip_bad = 1, .implicit = 1}};
        for (int k = 0; k < 4; k++) {
            br_ratings *r = NULL;
            br_err e = br_ratings_parse((const char *)p, n, "seed.csv", &opts[k], &r, &d);
            assert_true(e == BR_OK ? r != NULL : (r == NULL && strstr(d.msg, "seed.csv")));
            ok |= e == BR_OK;
            br_ratings_free(r);
        }
    } else if (strcmp(target, "fuzz_books") == 0) {
        br_books *b = NULL;
        br_err e = br_books_parse((const char *)p, n, "seed.csv", &b, &d);
        assert_true(e == BR_OK ? b != NULL : (b == NULL && strstr(d.msg, "seed.csv")));
        ok = e == BR_OK;
        br_books_free(b);
    } else if (strcmp(target, "fuzz_tags") == 0) {
        /* book_tags \0 tags \0 books, defaults for missing parts (as fuzz_tags.c) */
        const unsigned char *part[3] = {p, NULL, NULL};
        size_t len[3] = {n, 0, 0};
        for (int k = 0; k < 2 && part[k]; k++) {
            const unsigned char *z = memchr(part[k], 0, len[k]);
            if (!z)
                break;
            part[k + 1] = z + 1;
            len[k + 1] = len[k] - (size_t)(z + 1 - part[k]);
            len[k] = (size_t)(z - part[k]);
        }
        static const char tags[] = "tag_id,tag_name\n0,to-read\n1,fantasy\n2,sci-fi\n3,favorites\n"
                                   "4,romance\n5,ya\n6,horror\n7,classics\n";
        static const char books[] = "book_id,goodreads_book_id,title,authors\n"
                                    "1,100,\"A, B\",X\n2,200,C,Y\n3,300,D,Z\n4,100,E,W\n5,0,F,V\n";
        if (!part[1]) {
            part[1] = (const unsigned char *)tags;
            len[1] = sizeof tags - 1;
        }
        if (!part[2]) {
            part[2] = (const unsigned char *)books;
            len[2] = sizeof books - 1;
        }
        br_books *b = NULL;
        if (br_books_parse((const char *)part[2], len[2], "seed_books.csv", &b, &d) == BR_OK) {
            br_err e = br_books_parse_tags(b, (const char *)part[0], len[0],
                                           (const char *)part[1], len[1], &d);
            assert_true(e == BR_OK || strstr(d.msg, ".csv"));
            ok = e == BR_OK;
        }
        br_books_free(b);
    } else if (strcmp(target, "fuzz_model") == 0) {
        br_model *m = NULL;
        br_err e = br_model_open_buffer(p, n, &m, &d);
        assert_true(e == BR_OK ? m != NULL : (m == NULL && strstr(d.msg, "model buffer")));
        if (m) {   /* walk it: every book's metadata and read list */
            const br_model_meta *mt = br_model_get_meta(m);
            for (uint32_t b = 0; b < mt->n_books; b++) {
                br_book k;
                br_model_book_info(m, b, &k);
                assert_true(strlen(k.title) < br_model_file_size(m));
            }
            for (uint32_t u = 0; u < mt->n_users; u++) {
                size_t nr;
                const uint32_t *rd = br_model_user_read(m, u, &nr);
                for (size_t k = 0; k < nr; k++)
                    assert_true(rd[k] < mt->n_books);
            }
        }
        ok = e == BR_OK;
        br_model_free(m);
    } else {
        fail_msg("unknown fuzz target folder %s", target);
    }
    return ok;
}

static void test_fuzz_corpus_replay(void **state)
{
    (void)state;
    static const char *const targets[] = {"fuzz_ratings", "fuzz_ratings_skip", "fuzz_books",
                                          "fuzz_tags", "fuzz_model"};
    size_t total = 0;
    for (size_t t = 0; t < sizeof targets / sizeof *targets; t++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/fuzz/corpus/%s", BR_TEST_SRCDIR, targets[t]);
        DIR *dp = opendir(dir);
        assert_non_null(dp);
        struct dirent *de;
        size_t files = 0, loaded = 0;
        while ((de = readdir(dp))) {
            if (de->d_name[0] == '.')
                continue;
            char path[2048];
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            size_t n;
            unsigned char *p = read_all(path, &n);
            int ok = replay(targets[t], p, n);
            if (strncmp(de->d_name, "valid_", 6) == 0 && !ok)
                fail_msg("%s: a valid_* seed must load", path);
            loaded += (size_t)ok;
            files++;
            free(p);
        }
        closedir(dp);
        assert_true(files > 0);
        if (strcmp(targets[t], "fuzz_model") != 0)
            assert_true(loaded > 0);
        total += files;
    }
    print_message("replayed %zu fuzz corpus files\n", total);
}

static int teardown(void **state)
{
    (void)state;
    if (tmp_dir[0])
        rmdir(tmp_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_bad_folder_listed),
        cmocka_unit_test(test_ten_megabyte_lines),
        cmocka_unit_test(test_fuzz_corpus_replay),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
