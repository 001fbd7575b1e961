/*
 * test_books.c - books.csv parsing (RFC 4180 edge cases, every error with its
 * file:line message, never crashing on arbitrary bytes), the tag/genre join,
 * and, when the real goodbooks-10k folder is present, the real files.
 *
 * Every parse gets an exact-size heap copy of its input (no NUL after it), so
 * ASan reports any read past the length.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "br_books.h"
#include "br_io.h"
#include "br_rng.h"

/* An exact-size heap copy of n bytes (NULL for n == 0). */
static char *dup_exact(const char *s, size_t n)
{
    if (n == 0)
        return NULL;
    char *p = malloc(n);
    assert_non_null(p);
    memcpy(p, s, n);
    return p;
}

static br_err parse_n(const char *s, size_t n, br_books **out, br_diag *d)
{
    char *copy = dup_exact(s, n);
    br_diag_clear(d);
    br_err e = br_books_parse(copy, n, "books.csv", out, d);
    free(copy);
    return e;
}

static br_err parse(const char *s, br_books **out, br_diag *d)
{
    return parse_n(s, strlen(s), out, d);
}

/* Parses s, which must fail with code `want` and a message containing msg. */
static void expect_error(const char *s, br_err want, const char *msg)
{
    br_books *b = (br_books *)0x1;
    br_diag d;
    br_err e = parse(s, &b, &d);
    if (e != want || !strstr(d.msg, msg))
        print_error("input:\n%s\ngot %d '%s', want %d '%s'\n", s, e, d.msg, want, msg);
    assert_int_equal(e, want);
    assert_null(b);
    assert_non_null(strstr(d.msg, msg));
}

static void test_basic_quoting(void **state)
{
    (void)state;
    const char *csv =
        "book_id,title,authors,original_publication_year,average_rating,ratings_count\n"
        "1,\"The Hunger Games (The Hunger Games, #1)\",Suzanne Collins,2008.0,4.34,4780653\n"
        "2,\"He said \"\"hi\"\"\",\"Rowling, J.K.\",-1750.0,,\n"
        "3,\"Two\nlines\",A,,3.5,12.0\n"
        "4,,,0,,";
    br_books *b;
    br_diag d;
    assert_int_equal(parse(csv, &b, &d), BR_OK);
    assert_int_equal(br_books_count(b), 4);
    const br_book *k = br_books_find(b, 1);
    assert_non_null(k);
    assert_string_equal(k->title, "The Hunger Games (The Hunger Games, #1)");
    assert_string_equal(k->authors, "Suzanne Collins");
    assert_int_equal(k->year, 2008);
    assert_true(fabsf(k->avg_rating - 4.34f) < 1e-6f);
    assert_int_equal(k->ratings_count, 4780653);
    assert_int_equal(k->goodreads_id, 0);  /* column absent */
    assert_string_equal(k->genre, "");
    assert_null(k->tags[0]);
    k = br_books_find(b, 2);
    assert_string_equal(k->title, "He said \"hi\"");
    assert_string_equal(k->authors, "Rowling, J.K.");
    assert_int_equal(k->year, -1750);
    assert_true(isnan(k->avg_rating));
    assert_int_equal(k->ratings_count, 0);
    k = br_books_find(b, 3);
    assert_string_equal(k->title, "Two\nlines");
    assert_int_equal(k->year, 0);
    assert_int_equal(k->ratings_count, 12);
    k = br_books_find(b, 4);  /* last line without newline, empty fields */
    assert_string_equal(k->title, "");
    assert_string_equal(k->authors, "");
    assert_null(br_books_find(b, 5));
    assert_null(br_books_find(b, 0));
    assert_null(br_books_at(b, 4));
    br_books_free(b);
}

static void test_crlf_bom_order(void **state)
{
    (void)state;
    /* BOM, CRLF, columns in another order, quoted header, unsorted ids,
     * blank lines, a CRLF inside a quoted field. */
    const char *csv = "\xEF\xBB\xBF"
                      "authors,\"title\",goodreads_book_id,book_id\r\n"
                      "B,\"Second\r\nbook\",20,7\r\n"
                      "\r\n"
                      "A,First,10,3\r\n"
                      "C,\"Third, \"\"quoted\"\"\",30,5\r\n";
    br_books *b;
    br_diag d;
    assert_int_equal(parse(csv, &b, &d), BR_OK);
    assert_int_equal(br_books_count(b), 3);
    assert_int_equal(br_books_at(b, 0)->book_id, 3);
    assert_int_equal(br_books_at(b, 1)->book_id, 5);
    assert_int_equal(br_books_at(b, 2)->book_id, 7);
    assert_string_equal(br_books_at(b, 0)->title, "First");
    assert_int_equal(br_books_at(b, 0)->goodreads_id, 10);
    assert_string_equal(br_books_at(b, 1)->title, "Third, \"quoted\"");
    assert_string_equal(br_books_at(b, 2)->title, "Second\r\nbook");
    assert_string_equal(br_books_at(b, 2)->authors, "B");
    assert_int_equal(br_books_find(b, 7)->goodreads_id, 20);
    br_books_free(b);

    /* Quoted last field at end of input, and a final lone CR. */
    assert_int_equal(parse("book_id,title,authors\n1,t,\"a\"", &b, &d), BR_OK);
    assert_string_equal(br_books_at(b, 0)->authors, "a");
    br_books_free(b);
    assert_int_equal(parse("book_id,title,authors\r\n1,t,a\r", &b, &d), BR_OK);
    assert_string_equal(br_books_at(b, 0)->authors, "a");
    br_books_free(b);
    br_books_free(NULL);
}

static void test_errors(void **state)
{
    (void)state;
    const char *h = "book_id,title,authors,original_publication_year,average_rating,"
                    "ratings_count,goodreads_book_id\n";
    char buf[512];
#define ROWS(rows) (snprintf(buf, sizeof buf, "%s%s", h, rows), buf)
    expect_error(ROWS("1,a,b,,,,\n2,a,b,,,,\nabc,t,a,,,,\n"), BR_ERR_PARSE,
                 "books.csv:4: book_id 'abc' is not a positive integer");
    expect_error(ROWS("0,a,b,,,,\n"), BR_ERR_PARSE, "books.csv:2: book_id '0' is not a positive");
    expect_error(ROWS("-3,a,b,,,,\n"), BR_ERR_PARSE, "books.csv:2: book_id '-3'");
    expect_error(ROWS("1.5,a,b,,,,\n"), BR_ERR_PARSE, "books.csv:2: book_id '1.5'");
    expect_error(ROWS("99999999999,a,b,,,,\n"), BR_ERR_PARSE, "books.csv:2: book_id");
    expect_error(ROWS(",a,b,,,,\n"), BR_ERR_PARSE, "books.csv:2: book_id '' is not");
    expect_error(ROWS("2,a,b,,,,\n1,\"x\ny\",b,,,,\n2,c,d,,,,\n"), BR_ERR_PARSE,
                 "books.csv:5: duplicate book_id 2 (first on line 2)");
    expect_error(ROWS("1,a,b,,,,\n2,\"never closed,b,,,,\n3,c,d,,,,\n"), BR_ERR_PARSE,
                 "books.csv:3: unterminated quoted field");
    expect_error(ROWS("1,a,b,,,,\n2,a,b\n"), BR_ERR_PARSE,
                 "books.csv:3: too few fields (3), expected 7");
    expect_error(ROWS("1,a,b,,,,,\n"), BR_ERR_PARSE, "books.csv:2: too many fields (8), expected 7");
    expect_error(ROWS("1,\"a\"x,b,,,,\n"), BR_ERR_PARSE,
                 "books.csv:2: unexpected 'x' after a closing quote");
    expect_error(ROWS("1,a,b,20x8,,,\n"), BR_ERR_PARSE,
                 "books.csv:2: original_publication_year '20x8' is not a year");
    expect_error(ROWS("1,a,b,2008.5,,,\n"), BR_ERR_PARSE, "books.csv:2: original_publication_year");
    expect_error(ROWS("1,a,b,,nan,,\n"), BR_ERR_PARSE, "books.csv:2: average_rating 'nan' is not");
    expect_error(ROWS("1,a,b,,0x1p2,,\n"), BR_ERR_PARSE, "books.csv:2: average_rating");
    expect_error(ROWS("1,a,b,,,-5,\n"), BR_ERR_PARSE, "books.csv:2: ratings_count '-5' is not");
    expect_error(ROWS("1,a,b,,,,x\n"), BR_ERR_PARSE, "books.csv:2: goodreads_book_id 'x'");
    /* Control bytes in a bad field are shown as '?'. */
    expect_error(ROWS("\"a\x01\nb\",a,b,,,,\n"), BR_ERR_PARSE, "books.csv:2: book_id 'a??b'");
#undef ROWS
    expect_error("book_id,title\n1,a\n", BR_ERR_PARSE,
                 "books.csv:1: missing required column 'authors'");
    expect_error("title,authors\n", BR_ERR_PARSE, "books.csv:1: missing required column 'book_id'");
    expect_error("book_id,title,authors,title\n1,a,b,c\n", BR_ERR_PARSE,
                 "books.csv:1: column 'title' appears twice");
    expect_error("", BR_ERR_EMPTY, "books.csv: empty file");
    expect_error("\xEF\xBB\xBF\n\r\n", BR_ERR_EMPTY, "books.csv: empty file");
    expect_error("book_id,title,authors\n", BR_ERR_EMPTY, "books.csv: no books");
    expect_error("\"book_id,title,authors\n", BR_ERR_PARSE, "books.csv:1: unterminated quoted");

    /* br_books_load names the path and reports a missing file. */
    br_books *b;
    br_diag d;
    assert_int_equal(br_books_load("/nonexistent/books.csv", &b, &d), BR_ERR_NOT_FOUND);
    assert_null(b);
    assert_non_null(strstr(d.msg, "/nonexistent/books.csv"));
}

/* Random bytes and random damage of a valid file: any outcome but a crash,
 * and a failure always comes with a message. */
static void check_no_crash(const char *s, size_t n)
{
    br_books *b = NULL;
    br_diag d;
    br_err e = parse_n(s, n, &b, &d);
    if (e == BR_OK) {
        assert_non_null(b);
        size_t cnt = br_books_count(b);
        for (size_t i = 0; i < cnt; i++) {
            const br_book *k = br_books_at(b, i);
            assert_non_null(k->title);
            assert_non_null(k->authors);
            assert_ptr_equal(br_books_find(b, k->book_id), k);
            if (i)
                assert_true(br_books_at(b, i - 1)->book_id < k->book_id);
        }
        /* Tags against junk too. */
        char *t = dup_exact(s, n);
        br_books_parse_tags(b, t, n, t, n, &d);
        free(t);
    } else {
        assert_null(b);
        assert_true(d.msg[0] != '\0');
    }
    br_books_free(b);
}

static void test_fuzz(void **state)
{
    (void)state;
    const char *valid =
        "\xEF\xBB\xBF"
        "book_id,goodreads_book_id,authors,original_publication_year,title,average_rating,"
        "ratings_count\r\n"
        "1,2767052,Suzanne Collins,2008.0,\"The Hunger Games (The Hunger Games, #1)\",4.34,4780653\r\n"
        "2,3,\"J.K. Rowling, Mary GrandPr\xC3\xA9\",1997.0,\"Harry \"\"Potter\"\"\",4.44,4602479\n"
        "3,41865,Stephenie Meyer,2005.0,\"Twi\nlight\",3.57,3866839\n"
        "4,2657,Harper Lee,-1750.0,To Kill a Mockingbird,,\n";
    size_t vn = strlen(valid);
    /* Every truncation. */
    for (size_t n = 0; n <= vn; n++)
        check_no_crash(valid, n);
    br_rng r;
    br_rng_seed(&r, 12345);
    char buf[600];
    /* Random byte flips and insertions of CSV-special bytes. */
    static const char special[] = ",\"\r\n0123456789-.\xEF\xBB\xBF a";
    for (int iter = 0; iter < 4000; iter++) {
        size_t n = vn;
        memcpy(buf, valid, n);
        int edits = 1 + (int)br_rng_below(&r, 4);
        for (int k = 0; k < edits; k++) {
            size_t pos = br_rng_below(&r, (uint32_t)n);
            char c = br_rng_below(&r, 2) ? special[br_rng_below(&r, sizeof special - 1)]
                                         : (char)br_rng_below(&r, 256);
            if (br_rng_below(&r, 2) && n + 1 < sizeof buf) {
                memmove(buf + pos + 1, buf + pos, n - pos);
                n++;
            }
            buf[pos] = c;
        }
        n = br_rng_below(&r, 8) ? n : br_rng_below(&r, (uint32_t)n + 1);
        check_no_crash(buf, n);
    }
    /* Pure random bytes, biased towards CSV syntax. */
    for (int iter = 0; iter < 4000; iter++) {
        size_t n = br_rng_below(&r, sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = br_rng_below(&r, 3) ? special[br_rng_below(&r, sizeof special - 1)]
                                         : (char)br_rng_below(&r, 256);
        if (iter % 2 && n > 22)
            memcpy(buf, "book_id,title,authors\n", 22);
        check_no_crash(buf, n);
    }
}

/* ---- tags ---------------------------------------------------------------- */

static const char *tag_books =
    "book_id,goodreads_book_id,title,authors\n"
    "1,100,Dune,Frank Herbert\n"
    "2,200,Emma,Jane Austen\n"
    "3,300,Untagged,Nobody\n"
    "4,0,No goodreads id,Nobody\n";

static const char *tag_names =
    "tag_id,tag_name\r\n"
    "0,-\r\n"
    "1,to-read\r\n"
    "2,sci-fi\r\n"
    "3,science-fiction\r\n"
    "4,classics\r\n"
    "5,romance\r\n"
    "6,\"odd, \"\"quoted\"\" tag\"\r\n"
    "7,favorites\r\n"
    "8,owned\r\n";

static br_err tags_parse(br_books *b, const char *bt, const char *tg, br_diag *d)
{
    size_t bn = strlen(bt), tn = strlen(tg);
    char *bc = dup_exact(bt, bn), *tc = dup_exact(tg, tn);
    br_diag_clear(d);
    br_err e = br_books_parse_tags(b, bc, bn, tc, tn, d);
    free(bc);
    free(tc);
    return e;
}

static void test_tags(void **state)
{
    (void)state;
    br_books *b;
    br_diag d;
    assert_int_equal(parse(tag_books, &b, &d), BR_OK);
    const char *bt = "goodreads_book_id,tag_id,count\r\n"
                     "100,1,500\r\n"
                     "100,2,40\r\n"   /* sci-fi */
                     "100,3,30\r\n"   /* science-fiction */
                     "100,4,45\r\n"   /* classics: more than either, so the genre */
                     "100,6,40\r\n"   /* ties with sci-fi (40): tag 2 first */
                     "100,7,-1\r\n"   /* ignored */
                     "100,8,1\r\n"
                     "100,0,2\r\n"
                     "999,5,1000\r\n" /* a book not in books.csv: skipped */
                     "200,5,10\r\n"
                     "200,5,12\r\n"   /* repeated pair: keeps the larger count */
                     "200,2,11\r\n"
                     "0,5,5\r\n";
    assert_int_equal(tags_parse(b, bt, tag_names, &d), BR_OK);
    const br_book *k = br_books_find(b, 1);
    assert_string_equal(k->tags[0], "to-read");
    assert_string_equal(k->tags[1], "classics");
    assert_string_equal(k->tags[2], "sci-fi");
    assert_string_equal(k->tags[3], "odd, \"quoted\" tag");
    assert_string_equal(k->tags[4], "science-fiction");
    assert_string_equal(k->genre, "classics");
    k = br_books_find(b, 2);
    assert_string_equal(k->tags[0], "romance");
    assert_string_equal(k->tags[1], "sci-fi");
    assert_null(k->tags[2]);
    assert_string_equal(k->genre, "romance");
    k = br_books_find(b, 3);
    assert_null(k->tags[0]);
    assert_string_equal(k->genre, "");
    assert_string_equal(br_books_find(b, 4)->genre, "");

    /* A synonym alone gives the canonical genre name. */
    assert_int_equal(tags_parse(b, "goodreads_book_id,tag_id,count\n300,2,3\n300,1,9\n",
                                tag_names, &d), BR_OK);
    assert_string_equal(br_books_find(b, 3)->genre, "science-fiction");
    /* Reloading replaced the earlier tags. */
    assert_null(br_books_find(b, 1)->tags[0]);
    assert_string_equal(br_books_find(b, 1)->genre, "");

    /* Errors name file and line; on failure the books keep their tags. */
    assert_int_equal(tags_parse(b, "goodreads_book_id,tag_id,count\n300,2,3\n300,77,1\n",
                                tag_names, &d), BR_ERR_PARSE);
    assert_non_null(strstr(d.msg, "book_tags.csv:3: tag_id 77 is not in tags.csv"));
    assert_string_equal(br_books_find(b, 3)->genre, "science-fiction");
    assert_int_equal(tags_parse(b, "goodreads_book_id,tag_id,count\n300,2\n", tag_names, &d),
                     BR_ERR_PARSE);
    assert_non_null(strstr(d.msg, "book_tags.csv:2: too few fields"));
    assert_int_equal(tags_parse(b, "goodreads_book_id,tag_id,count\n300,2,many\n", tag_names,
                                &d), BR_ERR_PARSE);
    assert_non_null(strstr(d.msg, "book_tags.csv:2: count 'many' is not an integer"));
    assert_int_equal(tags_parse(b, "goodreads_book_id,tag,count\n", tag_names, &d),
                     BR_ERR_PARSE);
    assert_non_null(strstr(d.msg, "book_tags.csv:1: missing required column 'tag_id'"));
    assert_int_equal(tags_parse(b, "goodreads_book_id,tag_id,count\n",
                                "tag_id,tag_name\n1,a\n2,b\n1,c\n", &d), BR_ERR_PARSE);
    assert_non_null(strstr(d.msg, "tags.csv:4: duplicate tag_id 1 (first on line 2)"));
    assert_int_equal(tags_parse(b, "goodreads_book_id,tag_id,count\n", "tag_id,tag_name\nx,a\n",
                                &d), BR_ERR_PARSE);
    assert_non_null(strstr(d.msg, "tags.csv:2: tag_id 'x' is not"));
    assert_int_equal(tags_parse(b, "", tag_names, &d), BR_ERR_EMPTY);
    assert_int_equal(br_books_parse_tags(NULL, "", 0, "", 0, &d), BR_ERR_ARG);

    /* Sparse tag ids take the binary-search path. */
    assert_int_equal(tags_parse(b, "goodreads_book_id,tag_id,count\n200,4000000000,3\n",
                                "tag_id,tag_name\n4000000000,horror\n5,x\n", &d), BR_OK);
    assert_string_equal(br_books_find(b, 2)->genre, "horror");
    assert_string_equal(br_books_find(b, 2)->tags[0], "horror");

    /* The genre list. */
    assert_true(br_books_genre_count() >= 12 && br_books_genre_count() <= 16);
    assert_string_equal(br_books_genre_name(0), "fantasy");
    assert_null(br_books_genre_name(br_books_genre_count()));
    br_books_free(b);
}

/* ---- the real data ------------------------------------------------------- */

static void test_real_data(void **state)
{
    (void)state;
    char books_path[1024], bt_path[1024], tags_path[1024];
    snprintf(books_path, sizeof books_path, "%s/books.csv", BR_TEST_DATADIR);
    snprintf(bt_path, sizeof bt_path, "%s/book_tags.csv.gz", BR_TEST_DATADIR);
    snprintf(tags_path, sizeof tags_path, "%s/tags.csv", BR_TEST_DATADIR);
    if (!br_file_exists(books_path) || !br_file_exists(bt_path) || !br_file_exists(tags_path)) {
        skip();
        return;
    }
    br_books *b;
    br_diag d;
    br_err e = br_books_load(books_path, &b, &d);
    if (e)
        print_error("%s\n", br_diag_text(&d, e));
    assert_int_equal(e, BR_OK);
    assert_int_equal(br_books_count(b), 10000);
    const br_book *k = br_books_find(b, 1);
    assert_non_null(k);
    assert_string_equal(k->title, "The Hunger Games (The Hunger Games, #1)");
    assert_string_equal(k->authors, "Suzanne Collins");
    assert_int_equal(k->year, 2008);
    assert_int_equal(k->goodreads_id, 2767052);
    assert_int_equal(k->ratings_count, 4780653);
    assert_true(fabsf(k->avg_rating - 4.34f) < 1e-6f);
    for (uint32_t id = 1; id <= 10000; id++)
        assert_non_null(br_books_find(b, id));

    e = br_books_load_tags(b, bt_path, tags_path, &d);
    if (e)
        print_error("%s\n", br_diag_text(&d, e));
    assert_int_equal(e, BR_OK);
    const br_book *hp = br_books_find(b, 2);
    assert_non_null(strstr(hp->title, "Harry Potter"));
    assert_string_equal(hp->genre, "fantasy");
    assert_non_null(hp->tags[0]);
    size_t with_genre = 0;
    for (size_t i = 0; i < br_books_count(b); i++)
        with_genre += br_books_at(b, i)->genre[0] != '\0';
    assert_true(with_genre >= 9900);  /* 9,999 with the current genre list */
    br_books_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_quoting),
        cmocka_unit_test(test_crlf_bom_order),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_real_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
