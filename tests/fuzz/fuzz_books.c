/*
 * fuzz_books.c - libFuzzer target for the books.csv parser (br_books_parse).
 *
 * Input: the CSV bytes (an exact-size copy, not NUL-terminated). On success:
 * books sorted by strictly ascending book_id, every string non-NULL and
 * NUL-terminated (strlen walks it under ASan), br_books_find finds each
 * book. On failure: a code and a message naming the file.
 */
#include <stdint.h>

#include "br_books.h"
#include "fuzz_common.h"

static volatile size_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    br_books *b = (br_books *)(uintptr_t)1;
    br_diag d;
    br_diag_clear(&d);
    br_err e = br_books_parse(buf, size, "fuzz_books.csv", &b, &d);
    free(buf);   /* the handle must own every string it hands out */
    if (e != BR_OK) {
        FUZZ_CHECK(b == NULL);
        fuzz_check_diag(e, &d, "fuzz_books.csv");
        return 0;
    }
    size_t n = br_books_count(b);
    FUZZ_CHECK(n > 0);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const br_book *k = br_books_at(b, i);
        FUZZ_CHECK(k && k->book_id >= 1);
        if (i)
            FUZZ_CHECK(br_books_at(b, i - 1)->book_id < k->book_id);
        FUZZ_CHECK(k->title && k->authors && k->genre);
        total += strlen(k->title) + strlen(k->authors) + strlen(k->genre);
        FUZZ_CHECK(br_books_find(b, k->book_id) == k);
    }
    FUZZ_CHECK(br_books_at(b, n) == NULL);
    sink = total;
    br_books_free(b);
    return 0;
}
