/*
 * br_books.h - book metadata from goodbooks-10k's books.csv, and each book's
 * most used tags and genre from book_tags.csv(.gz) + tags.csv.
 *
 * books.csv is RFC 4180 CSV: fields may be quoted, quoted fields may hold
 * commas, doubled quotes ("") and newlines. Columns are found by header name,
 * so column order does not matter; required: book_id, title, authors;
 * optional: goodreads_book_id, original_publication_year, average_rating,
 * ratings_count (missing ones are left 0 / NaN).
 *
 * book_tags.csv joins on goodreads_book_id (not book_id), with columns
 * goodreads_book_id,tag_id,count; tags.csv maps tag_id,tag_name.
 */
#ifndef BR_BOOKS_H
#define BR_BOOKS_H

#include <stddef.h>
#include <stdint.h>
#include "br_error.h"

#define BR_BOOK_TOP_TAGS 5

typedef struct br_book {
    uint32_t book_id;          /* the dataset's book_id (what ratings use) */
    uint64_t goodreads_id;     /* goodreads_book_id, 0 if unknown */
    const char *title;         /* never NULL ("" if empty) */
    const char *authors;       /* never NULL */
    int32_t year;              /* original_publication_year, 0 if unknown; may be negative (BC) */
    float avg_rating;          /* average_rating, NAN if unknown */
    uint32_t ratings_count;    /* ratings_count, 0 if unknown */
    const char *genre;         /* a coarse genre from the tags (see br_books_load_tags), "" if none */
    const char *tags[BR_BOOK_TOP_TAGS]; /* most used tag names, most used first; NULL-padded */
} br_book;

typedef struct br_books br_books;  /* opaque; owns all strings */

/* Parses books.csv held in buf (len bytes; need not be NUL-terminated).
 * `name` is used in messages ("books.csv:17: ..."; NULL means "books.csv").
 * Accepts LF or CRLF, a missing final newline, a UTF-8 BOM, blank lines.
 * Integer columns may be written "2008.0"; empty optional fields give 0/NaN.
 * Errors (BR_ERR_PARSE unless noted) name the file and the line where the
 * offending record (or unterminated quoted field) starts: a bad book_id, a
 * duplicate book_id, a malformed optional number, a record with too few or
 * too many fields, an unterminated quote, a stray byte after a closing quote,
 * a missing required column; BR_ERR_EMPTY for no header or no rows. */
br_err br_books_parse(const char *buf, size_t len, const char *name,
                      br_books **out, br_diag *diag);

/* Reads and parses a books.csv file (plain or gzip). */
br_err br_books_load(const char *path, br_books **out, br_diag *diag);

/* Reads book_tags and tags files and fills each book's tags[] and genre.
 * The genre is the most used tag that names a known genre (fantasy,
 * romance, mystery, ...), "" if none.
 *
 * Details: tags[] holds the BR_BOOK_TOP_TAGS tags with the largest count,
 * ties broken by the smaller tag_id; these are raw Goodreads shelf names, so
 * they include shelves such as "to-read" and "favorites". Rows with a count
 * <= 0 are ignored; a (book, tag) pair listed twice keeps its larger count;
 * rows whose goodreads_book_id is not in books.csv are skipped; a tag_id
 * missing from tags.csv is an error. The genre is one of the
 * br_books_genre_count() names of br_books_genre_name(); a tag counts for a
 * genre if it is the genre's name or a listed synonym ("sci-fi", "scifi" ->
 * "science-fiction"; "memoir" -> "biography"; ...), and ties go to the genre
 * listed first. On goodbooks-10k 9,999 of 10,000 books get a genre. On failure the
 * books keep their previous tags and genres. Paths may be plain or gzip. */
br_err br_books_load_tags(br_books *b, const char *book_tags_path,
                          const char *tags_path, br_diag *diag);

/* Same from buffers (for tests and fuzzing). */
br_err br_books_parse_tags(br_books *b, const char *book_tags, size_t book_tags_len,
                           const char *tags, size_t tags_len, br_diag *diag);

/* The curated genre list (16 names: "fantasy", "science-fiction", ...), in
 * tie-break order. br_books_genre_name returns NULL for i >= the count. */
size_t br_books_genre_count(void);
const char *br_books_genre_name(size_t i);

size_t br_books_count(const br_books *b);
const br_book *br_books_at(const br_books *b, size_t i);       /* sorted by book_id */
const br_book *br_books_find(const br_books *b, uint32_t book_id); /* NULL if absent */
void br_books_free(br_books *b);                               /* NULL ok */

#endif
