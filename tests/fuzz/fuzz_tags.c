/*
 * fuzz_tags.c - libFuzzer target for the tags parser (br_books_parse_tags:
 * book_tags.csv joined with tags.csv onto the books of books.csv).
 *
 * Input: up to three parts separated by NUL bytes,
 *     book_tags.csv \0 tags.csv \0 books.csv
 * A missing part is replaced by a small valid default, so a plain CSV input
 * fuzzes book_tags.csv alone. Each part is an exact-size copy. On success
 * every book's tags are NUL-terminated names (NULL-padded after the first
 * NULL) and its genre is "" or one of br_books_genre_name(); on failure:
 * a code and a message, and the books keep their previous tags.
 */
#include <stdint.h>

#include "br_books.h"
#include "fuzz_common.h"

static volatile size_t sink;

static const char default_tags[] =
    "tag_id,tag_name\n0,to-read\n1,fantasy\n2,sci-fi\n3,favorites\n4,romance\n"
    "5,ya\n6,horror\n7,classics\n";
static const char default_books[] =
    "book_id,goodreads_book_id,title,authors\n"
    "1,100,\"A, B\",X\n2,200,C,Y\n3,300,D,Z\n4,100,E,W\n5,0,F,V\n";

/* Splits off the next NUL-separated part; *rest advances past it. */
static int next_part(const uint8_t **rest, size_t *left, const uint8_t **p, size_t *n)
{
    if (*rest == NULL)
        return 0;
    const uint8_t *z = memchr(*rest, 0, *left);
    *p = *rest;
    *n = z ? (size_t)(z - *rest) : *left;
    if (z) {
        *left -= *n + 1;
        *rest = z + 1;
    } else {
        *rest = NULL;
        *left = 0;
    }
    return 1;
}

static char *copy(const void *p, size_t n)
{
    char *c = malloc(n ? n : 1);
    if (c)
        memcpy(c, p, n);
    return c;
}

static int is_genre(const char *g)
{
    if (g[0] == '\0')
        return 1;
    for (size_t i = 0; i < br_books_genre_count(); i++)
        if (strcmp(g, br_books_genre_name(i)) == 0)
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *rest = data, *part[3] = {0};
    size_t left = size, len[3] = {0};
    int have[3] = {0};
    for (int i = 0; i < 3; i++)
        have[i] = next_part(&rest, &left, &part[i], &len[i]);
    if (!have[1]) {
        part[1] = (const uint8_t *)default_tags;
        len[1] = sizeof default_tags - 1;
    }
    if (!have[2]) {
        part[2] = (const uint8_t *)default_books;
        len[2] = sizeof default_books - 1;
    }
    char *bt = copy(part[0], len[0]), *tg = copy(part[1], len[1]), *bk = copy(part[2], len[2]);
    br_books *b = NULL;
    br_diag d;
    br_diag_clear(&d);
    if (!bt || !tg || !bk || br_books_parse(bk, len[2], "fuzz_books.csv", &b, &d) != BR_OK)
        goto out;
    br_diag_clear(&d);
    br_err e = br_books_parse_tags(b, bt, len[0], tg, len[1], &d);
    free(bt);   /* tags must not point into the input buffers */
    free(tg);
    bt = tg = NULL;
    if (e != BR_OK)
        fuzz_check_diag(e, &d, ".csv");
    size_t total = 0;
    for (size_t i = 0; i < br_books_count(b); i++) {
        const br_book *k = br_books_at(b, i);
        FUZZ_CHECK(k->genre != NULL && is_genre(k->genre));
        int ended = 0;
        for (int t = 0; t < BR_BOOK_TOP_TAGS; t++) {
            if (!k->tags[t]) {
                ended = 1;
                continue;
            }
            FUZZ_CHECK(!ended);
            total += strlen(k->tags[t]);
        }
        if (e != BR_OK)   /* a failed call leaves the books untagged (fresh books) */
            FUZZ_CHECK(k->tags[0] == NULL && k->genre[0] == '\0');
    }
    sink = total;
out:
    br_books_free(b);
    free(bt);
    free(tg);
    free(bk);
    return 0;
}
