/*
 * br_books.c - book metadata (books.csv) and each book's top tags and genre
 * (book_tags.csv + tags.csv).
 *
 * All three files go through one small RFC 4180 reader (csv_next) that works
 * on a byte range [p, end) and never reads past it, so the buffers need not
 * be NUL-terminated and arbitrary bytes cannot crash it: quoted fields may hold
 * commas, newlines and doubled quotes; records end in LF or CRLF; the last
 * record may lack its newline; a UTF-8 byte order mark at the start is
 * skipped; blank lines are skipped. Quoted fields are kept as raw spans and
 * unescaped only when a string is copied out, so numeric columns cost no copy.
 *
 * Strings are copied into an arena owned by the br_books handle; br_book
 * pointers stay valid until br_books_free.
 *
 * Genres: a book's genre is the most used of its tags whose name is in a
 * curated list of reader-facing genres (with synonyms, e.g. "sci-fi" and
 * "scifi" count as "science-fiction"); ties go to the genre listed first.
 * On goodbooks-10k 9,999 of the 10,000 books get a genre.
 */
#include "br_books.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "br_io.h"

/* ---- arena: stable storage for all strings of a br_books ------------------ */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    char data[];
} arena_block;

typedef struct arena {
    arena_block *head;
} arena;

static char *arena_alloc(arena *a, size_t n)
{
    arena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    char *p = b->data + b->used;
    b->used += n;
    return p;
}

static void arena_free(arena *a)
{
    arena_block *b = a->head;
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

struct br_books {
    br_book *v;      /* sorted by book_id, no duplicates */
    size_t n;
    arena strings;   /* titles, authors, tag names */
};

/* ---- CSV reader ----------------------------------------------------------- */

typedef struct csv_field {
    const char *p;   /* field text; for a quoted field, inside the quotes with "" pairs kept */
    size_t len;
    int quoted;
} csv_field;

typedef struct csv_reader {
    const char *p, *end;
    const char *name;  /* file name for messages */
    size_t line;       /* 1-based physical line of p */
} csv_reader;

static void csv_init(csv_reader *r, const char *buf, size_t len, const char *name)
{
    r->p = buf ? buf : "";
    r->end = r->p + (buf ? len : 0);
    r->name = name;
    r->line = 1;
    if (r->end - r->p >= 3 && (unsigned char)r->p[0] == 0xEF && (unsigned char)r->p[1] == 0xBB &&
        (unsigned char)r->p[2] == 0xBF)
        r->p += 3;
}

/* Reads one record. Stores its first `max` fields in f[] and the total field
 * count in *nf, the record's first line in *line. Returns 1 for a record, 0 at
 * the end of input, -1 on malformed input (message in diag, code in *err). */
static int csv_next(csv_reader *r, csv_field *f, size_t max, size_t *nf, size_t *line,
                    br_diag *diag, br_err *err)
{
    const char *p = r->p, *end = r->end;
    /* Skip blank lines (and a lone CR at the very end). */
    for (;;) {
        if (p < end && *p == '\n') {
            p++;
            r->line++;
        } else if (p < end && *p == '\r' && (p + 1 == end || p[1] == '\n')) {
            p++;
        } else {
            break;
        }
    }
    if (p == end) {
        r->p = p;
        return 0;
    }
    *line = r->line;
    size_t n = 0;
    for (;;) {
        csv_field fld;
        if (p < end && *p == '"') {
            size_t start_line = r->line;
            const char *s = ++p;
            for (;;) {
                while (p < end && *p != '"') {
                    if (*p == '\n')
                        r->line++;
                    p++;
                }
                if (p == end) {
                    r->p = p;
                    *err = br_fail(diag, BR_ERR_PARSE, "%s:%zu: unterminated quoted field",
                                   r->name, start_line);
                    return -1;
                }
                if (p + 1 < end && p[1] == '"') {
                    p += 2;  /* doubled quote inside the field */
                    continue;
                }
                break;
            }
            fld.p = s;
            fld.len = (size_t)(p - s);
            fld.quoted = 1;
            p++;  /* closing quote */
            if (p < end && *p != ',' && *p != '\n' &&
                !(*p == '\r' && (p + 1 == end || p[1] == '\n'))) {
                r->p = p;
                unsigned char c = (unsigned char)*p;
                *err = br_fail(diag, BR_ERR_PARSE,
                               isprint(c) ? "%s:%zu: unexpected '%c' after a closing quote"
                                          : "%s:%zu: unexpected byte 0x%02x after a closing quote",
                               r->name, r->line, c);
                return -1;
            }
        } else {
            const char *s = p;
            while (p < end) {
                char c = *p;
                if (c == ',' || c == '\n' || (c == '\r' && (p + 1 == end || p[1] == '\n')))
                    break;
                p++;
            }
            fld.p = s;
            fld.len = (size_t)(p - s);
            fld.quoted = 0;
        }
        if (n < max)
            f[n] = fld;
        n++;
        if (p == end)
            break;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '\r')
            p++;
        if (p < end) {  /* '\n' */
            p++;
            r->line++;
        }
        break;
    }
    r->p = p;
    *nf = n;
    return 1;
}

/* csv_next for a table of exactly ncols columns: a record with another
 * field count is malformed input, reported with its line. */
static int csv_row(csv_reader *r, csv_field *f, size_t ncols, size_t *line, br_diag *diag,
                   br_err *err)
{
    size_t nf = 0;
    int rc = csv_next(r, f, ncols, &nf, line, diag, err);
    if (rc == 1 && nf != ncols) {
        *err = br_fail(diag, BR_ERR_PARSE, "%s:%zu: %s fields (%zu), expected %zu", r->name,
                       *line, nf < ncols ? "too few" : "too many", nf, ncols);
        return -1;
    }
    return rc;
}

/* Copies a field's text (unescaping "" in quoted fields) to dst, which has
 * room for f->len + 1 bytes; returns the unescaped length. NUL-terminates. */
static size_t csv_unescape(const csv_field *f, char *dst)
{
    size_t k = 0;
    if (!f->quoted) {
        memcpy(dst, f->p, f->len);
        k = f->len;
    } else {
        for (size_t i = 0; i < f->len; i++) {
            dst[k++] = f->p[i];
            if (f->p[i] == '"')
                i++;  /* the scanner guaranteed a pair */
        }
    }
    dst[k] = '\0';
    return k;
}

static int csv_field_is(const csv_field *f, const char *s)
{
    char tmp[64];
    if (f->len >= sizeof tmp)
        return 0;
    csv_unescape(f, tmp);
    return strcmp(tmp, s) == 0;
}

/* A short printable excerpt of a field for error messages. */
static const char *field_excerpt(const csv_field *f, char *buf, size_t size)
{
    size_t k = 0;
    for (size_t i = 0; i < f->len && k + 4 < size; i++) {
        unsigned char c = (unsigned char)f->p[i];
        buf[k++] = isprint(c) ? (char)c : '?';
    }
    if (k + 4 >= size && f->len > k) {
        buf[k++] = '.';
        buf[k++] = '.';
        buf[k++] = '.';
    }
    buf[k] = '\0';
    return buf;
}

/* Finds the header columns named in names[0..n) and stores their indexes in
 * idx[] (-1 when absent). Returns BR_OK or a parse error for a name that
 * appears twice. */
static br_err find_columns(const csv_reader *r, const csv_field *hdr, size_t nhdr,
                           const char *const *names, long *idx, size_t n, br_diag *diag)
{
    for (size_t j = 0; j < n; j++)
        idx[j] = -1;
    for (size_t i = 0; i < nhdr; i++)
        for (size_t j = 0; j < n; j++)
            if (csv_field_is(&hdr[i], names[j])) {
                if (idx[j] >= 0)
                    return br_fail(diag, BR_ERR_PARSE, "%s:1: column '%s' appears twice",
                                   r->name, names[j]);
                idx[j] = (long)i;
            }
    return BR_OK;
}

/* Reads the header record into a malloc'd field array (*hdr, *nhdr). */
static br_err read_header(csv_reader *r, csv_field **hdr, size_t *nhdr, br_diag *diag)
{
    *hdr = NULL;
    *nhdr = 0;
    csv_reader save = *r;
    csv_field small[64];
    size_t nf = 0, line = 0;
    br_err err = BR_OK;
    int rc = csv_next(r, small, 64, &nf, &line, diag, &err);
    if (rc < 0)
        return err;
    if (rc == 0)
        return br_fail(diag, BR_ERR_EMPTY, "%s: empty file", r->name);
    csv_field *f = malloc(nf * sizeof *f);
    if (!f)
        return br_fail(diag, BR_ERR_NOMEM, "%s: out of memory", r->name);
    if (nf <= 64) {
        memcpy(f, small, nf * sizeof *f);
    } else {
        *r = save;
        csv_next(r, f, nf, &nf, &line, diag, &err);
    }
    *hdr = f;
    *nhdr = nf;
    return BR_OK;
}

/* ---- numbers -------------------------------------------------------------- */

/* Parses an integer written as an optional '-', digits, and an optional
 * fraction of zeros only ("2008", "2008.0", "-1750.0"). Returns 1 on success. */
static int parse_int(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        neg = s[i++] == '-';
    size_t d0 = i;
    uint64_t v = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        if (v > (UINT64_C(1) << 62) / 10)
            return 0;  /* too large for what we store anyway */
        v = v * 10 + (uint64_t)(s[i++] - '0');
    }
    if (i == d0)
        return 0;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] == '0')
            i++;
    }
    if (i != n)
        return 0;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 1;
}

/* Parses a finite decimal number. Returns 1 on success. */
static int parse_double(const char *s, size_t n, double *out)
{
    char tmp[64];
    if (n == 0 || n >= sizeof tmp)
        return 0;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    /* strtod also takes hex, "inf" and "nan"; allow plain decimals only. */
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789+-.eE", tmp[i]))
            return 0;
    char *e;
    double v = strtod(tmp, &e);
    if (e != tmp + n || !isfinite(v))
        return 0;
    *out = v;
    return 1;
}

/* ---- books.csv ------------------------------------------------------------ */

enum { COL_BOOK_ID, COL_TITLE, COL_AUTHORS, COL_GOODREADS, COL_YEAR, COL_AVG, COL_COUNT, COL__N };
static const char *const book_columns[COL__N] = {
    "book_id", "title", "authors", "goodreads_book_id",
    "original_publication_year", "average_rating", "ratings_count",
};

typedef struct book_row {
    br_book b;
    size_t line;  /* where the row started, for duplicate messages */
} book_row;

static int book_row_cmp(const void *a, const void *b)
{
    const book_row *x = a, *y = b;
    if (x->b.book_id != y->b.book_id)
        return x->b.book_id < y->b.book_id ? -1 : 1;
    return (x->line > y->line) - (x->line < y->line);
}

static const char *copy_string(arena *a, const csv_field *f)
{
    char *s = arena_alloc(a, f->len + 1);
    if (s)
        csv_unescape(f, s);
    return s;
}

br_err br_books_parse(const char *buf, size_t len, const char *name, br_books **out,
                      br_diag *diag)
{
    *out = NULL;
    if (!name)
        name = "books.csv";
    csv_reader r;
    csv_init(&r, buf, len, name);

    csv_field *hdr = NULL, *f = NULL;
    size_t ncols = 0;
    book_row *rows = NULL;
    size_t nrows = 0, cap = 0;
    br_books *b = calloc(1, sizeof *b);
    br_err err = b ? read_header(&r, &hdr, &ncols, diag)
                   : br_fail(diag, BR_ERR_NOMEM, "%s: out of memory", name);
    if (err)
        goto fail;
    long col[COL__N];
    if ((err = find_columns(&r, hdr, ncols, book_columns, col, COL__N, diag)))
        goto fail;
    for (int j = COL_BOOK_ID; j <= COL_AUTHORS; j++)
        if (col[j] < 0) {
            err = br_fail(diag, BR_ERR_PARSE, "%s:1: missing required column '%s'", name,
                          book_columns[j]);
            goto fail;
        }
    f = malloc(ncols * sizeof *f);
    if (!f) {
        err = br_fail(diag, BR_ERR_NOMEM, "%s: out of memory", name);
        goto fail;
    }

    for (;;) {
        size_t line = 0;
        int rc = csv_row(&r, f, ncols, &line, diag, &err);
        if (rc < 0)
            goto fail;
        if (rc == 0)
            break;
        if (nrows == cap) {
            size_t ncap = cap ? cap * 2 : 1024;
            book_row *nr = realloc(rows, ncap * sizeof *nr);
            if (!nr) {
                err = br_fail(diag, BR_ERR_NOMEM, "%s: out of memory", name);
                goto fail;
            }
            rows = nr;
            cap = ncap;
        }
        book_row *row = &rows[nrows];
        memset(row, 0, sizeof *row);
        row->line = line;
        row->b.avg_rating = NAN;
        row->b.genre = "";
        char ex[48];
        int64_t v;

        const csv_field *fid = &f[col[COL_BOOK_ID]];
        if (!parse_int(fid->p, fid->len, &v) || v < 1 || v > (int64_t)UINT32_MAX) {
            err = br_fail(diag, BR_ERR_PARSE, "%s:%zu: book_id '%s' is not a positive integer",
                          name, line, field_excerpt(fid, ex, sizeof ex));
            goto fail;
        }
        row->b.book_id = (uint32_t)v;
        if (col[COL_GOODREADS] >= 0 && f[col[COL_GOODREADS]].len > 0) {
            const csv_field *g = &f[col[COL_GOODREADS]];
            if (!parse_int(g->p, g->len, &v) || v < 0) {
                err = br_fail(diag, BR_ERR_PARSE,
                              "%s:%zu: goodreads_book_id '%s' is not a non-negative integer",
                              name, line, field_excerpt(g, ex, sizeof ex));
                goto fail;
            }
            row->b.goodreads_id = (uint64_t)v;
        }
        if (col[COL_YEAR] >= 0 && f[col[COL_YEAR]].len > 0) {
            const csv_field *y = &f[col[COL_YEAR]];
            if (!parse_int(y->p, y->len, &v) || v < INT32_MIN || v > INT32_MAX) {
                err = br_fail(diag, BR_ERR_PARSE,
                              "%s:%zu: original_publication_year '%s' is not a year", name,
                              line, field_excerpt(y, ex, sizeof ex));
                goto fail;
            }
            row->b.year = (int32_t)v;
        }
        if (col[COL_AVG] >= 0 && f[col[COL_AVG]].len > 0) {
            const csv_field *a = &f[col[COL_AVG]];
            double d;
            if (!parse_double(a->p, a->len, &d) || d < -1e30 || d > 1e30) {
                err = br_fail(diag, BR_ERR_PARSE, "%s:%zu: average_rating '%s' is not a number",
                              name, line, field_excerpt(a, ex, sizeof ex));
                goto fail;
            }
            row->b.avg_rating = (float)d;
        }
        if (col[COL_COUNT] >= 0 && f[col[COL_COUNT]].len > 0) {
            const csv_field *c = &f[col[COL_COUNT]];
            if (!parse_int(c->p, c->len, &v) || v < 0 || v > (int64_t)UINT32_MAX) {
                err = br_fail(diag, BR_ERR_PARSE,
                              "%s:%zu: ratings_count '%s' is not a non-negative integer", name,
                              line, field_excerpt(c, ex, sizeof ex));
                goto fail;
            }
            row->b.ratings_count = (uint32_t)v;
        }
        row->b.title = copy_string(&b->strings, &f[col[COL_TITLE]]);
        row->b.authors = copy_string(&b->strings, &f[col[COL_AUTHORS]]);
        if (!row->b.title || !row->b.authors) {
            err = br_fail(diag, BR_ERR_NOMEM, "%s: out of memory", name);
            goto fail;
        }
        nrows++;
    }
    if (nrows == 0) {
        err = br_fail(diag, BR_ERR_EMPTY, "%s: no books (header only)", name);
        goto fail;
    }

    /* Sort by book_id (stable by line) unless already sorted; refuse duplicates. */
    int sorted = 1;
    for (size_t i = 1; i < nrows && sorted; i++)
        sorted = rows[i - 1].b.book_id < rows[i].b.book_id;
    if (!sorted) {
        qsort(rows, nrows, sizeof *rows, book_row_cmp);
        for (size_t i = 1; i < nrows; i++)
            if (rows[i - 1].b.book_id == rows[i].b.book_id) {
                err = br_fail(diag, BR_ERR_PARSE, "%s:%zu: duplicate book_id %u (first on line %zu)",
                              name, rows[i].line, rows[i].b.book_id, rows[i - 1].line);
                goto fail;
            }
    }
    b->v = malloc(nrows * sizeof *b->v);
    if (!b->v) {
        err = br_fail(diag, BR_ERR_NOMEM, "%s: out of memory", name);
        goto fail;
    }
    for (size_t i = 0; i < nrows; i++)
        b->v[i] = rows[i].b;
    b->n = nrows;
    free(rows);
    free(f);
    free(hdr);
    *out = b;
    return BR_OK;

fail:
    free(rows);
    free(f);
    free(hdr);
    br_books_free(b);
    return err;
}

br_err br_books_load(const char *path, br_books **out, br_diag *diag)
{
    *out = NULL;
    char *buf;
    size_t len;
    br_err err = br_read_file(path, &buf, &len, diag);
    if (err)
        return err;
    err = br_books_parse(buf, len, path, out, diag);
    free(buf);
    return err;
}

size_t br_books_count(const br_books *b) { return b ? b->n : 0; }

const br_book *br_books_at(const br_books *b, size_t i)
{
    return b && i < b->n ? &b->v[i] : NULL;
}

const br_book *br_books_find(const br_books *b, uint32_t book_id)
{
    if (!b)
        return NULL;
    size_t lo = 0, hi = b->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t id = b->v[mid].book_id;
        if (id == book_id)
            return &b->v[mid];
        if (id < book_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void br_books_free(br_books *b)
{
    if (!b)
        return;
    arena_free(&b->strings);
    free(b->v);
    free(b);
}

/* ---- genres --------------------------------------------------------------- */

/* The curated genres, in tie-break priority order. Chosen from the most used
 * tags of goodbooks-10k's book_tags: reader-facing genres only, not shelves
 * ("to-read", "owned", "kindle") or vague labels ("fiction", "novels"). */
static const char *const genre_names[] = {
    "fantasy", "science-fiction", "romance", "mystery", "thriller", "horror",
    "historical-fiction", "young-adult", "classics", "non-fiction", "biography",
    "childrens", "graphic-novels", "poetry", "humor", "literary-fiction",
};
#define N_GENRES (sizeof genre_names / sizeof genre_names[0])

/* Tag names that count as a genre: each genre's own name and obvious
 * synonyms or sub-genres (all present in goodbooks-10k's tags.csv). */
static const struct {
    const char *tag;
    unsigned char genre;  /* index into genre_names */
} genre_tags[] = {
    {"fantasy", 0}, {"urban-fantasy", 0}, {"high-fantasy", 0}, {"epic-fantasy", 0},
    {"ya-fantasy", 0}, {"fantasy-fiction", 0}, {"dark-fantasy", 0},
    {"science-fiction", 1}, {"sci-fi", 1}, {"scifi", 1}, {"sf", 1}, {"dystopian", 1},
    {"dystopia", 1}, {"dystopias", 1}, {"space-opera", 1}, {"cyberpunk", 1},
    {"romance", 2}, {"contemporary-romance", 2}, {"historical-romance", 2},
    {"paranormal-romance", 2}, {"romance-novels", 2}, {"erotica", 2}, {"chick-lit", 2},
    {"new-adult", 2},
    {"mystery", 3}, {"mysteries", 3}, {"crime", 3}, {"detective", 3}, {"mystery-thriller", 3},
    {"crime-fiction", 3}, {"cozy-mystery", 3},
    {"thriller", 4}, {"thrillers", 4}, {"suspense", 4}, {"psychological-thriller", 4},
    {"espionage", 4}, {"spy", 4},
    {"horror", 5},
    {"historical-fiction", 6}, {"historical", 6},
    {"young-adult", 7}, {"ya", 7}, {"teen", 7}, {"ya-fiction", 7}, {"young-adult-fiction", 7},
    {"ya-books", 7}, {"teen-fiction", 7},
    {"classics", 8}, {"classic", 8}, {"classic-literature", 8}, {"classic-lit", 8},
    /* Subjects that novels also carry ("history", "religion", "philosophy",
     * "travel") are left out: they made novels such as Candide non-fiction. */
    {"non-fiction", 9}, {"nonfiction", 9}, {"science", 9}, {"psychology", 9},
    {"business", 9}, {"self-help", 9}, {"politics", 9}, {"economics", 9},
    {"true-crime", 9}, {"essays", 9},
    {"biography", 10}, {"memoir", 10}, {"memoirs", 10}, {"autobiography", 10},
    {"biographies", 10}, {"biography-memoir", 10},
    {"childrens", 11}, {"children", 11}, {"children-s", 11}, {"children-s-books", 11},
    {"childrens-books", 11}, {"kids", 11}, {"kids-books", 11}, {"picture-books", 11},
    {"middle-grade", 11}, {"juvenile", 11}, {"picture-book", 11}, {"chapter-books", 11},
    {"graphic-novels", 12}, {"graphic-novel", 12}, {"comics", 12}, {"manga", 12},
    {"comic", 12}, {"comic-books", 12}, {"graphic-novels-comics", 12},
    {"poetry", 13}, {"poems", 13},
    {"humor", 14}, {"humour", 14}, {"funny", 14}, {"comedy", 14},
    {"literary-fiction", 15}, {"literature", 15}, {"contemporary", 15},
    {"contemporary-fiction", 15}, {"adult-fiction", 15}, {"general-fiction", 15},
    {"realistic-fiction", 15}, {"womens-fiction", 15},
};

static int genre_of_tag(const char *name)
{
    for (size_t i = 0; i < sizeof genre_tags / sizeof genre_tags[0]; i++)
        if (genre_tags[i].tag[0] == name[0] && strcmp(genre_tags[i].tag, name) == 0)
            return genre_tags[i].genre;
    return -1;
}

size_t br_books_genre_count(void) { return N_GENRES; }

const char *br_books_genre_name(size_t i) { return i < N_GENRES ? genre_names[i] : NULL; }

/* ---- tags ----------------------------------------------------------------- */

typedef struct tag_entry {
    uint32_t id;
    int genre;         /* index into genre_names, -1 if none */
    const char *name;  /* in the books' arena */
    size_t line;       /* where it was defined, for duplicate messages */
} tag_entry;

static int tag_entry_cmp(const void *a, const void *b)
{
    const tag_entry *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return (x->line > y->line) - (x->line < y->line);
}

/* Parses tags.csv into a sorted array of tag entries, names in arena a. */
static br_err parse_tags_csv(const char *buf, size_t len, const char *name, arena *a,
                             tag_entry **out, size_t *nout, br_diag *diag)
{
    *out = NULL;
    *nout = 0;
    csv_reader r;
    csv_init(&r, buf, len, name);
    csv_field *hdr;
    size_t ncols;
    br_err err = read_header(&r, &hdr, &ncols, diag);
    if (err)
        return err;
    static const char *const names[2] = {"tag_id", "tag_name"};
    long col[2];
    tag_entry *v = NULL;
    size_t n = 0, cap = 0;
    csv_field *f = malloc(ncols * sizeof *f);
    if (!f) {
        err = br_fail(diag, BR_ERR_NOMEM, "%s: out of memory", name);
        goto done;
    }
    if ((err = find_columns(&r, hdr, ncols, names, col, 2, diag)))
        goto done;
    for (int j = 0; j < 2; j++)
        if (col[j] < 0) {
            err = br_fail(diag, BR_ERR_PARSE, "%s:1: missing required column '%s'", name,
                          names[j]);
            goto done;
        }
    for (;;) {
        size_t line = 0;
        int rc = csv_row(&r, f, ncols, &line, diag, &err);
        if (rc < 0)
            goto done;
        if (rc == 0)
            break;
        int64_t id;
        const csv_field *fid = &f[col[0]];
        if (!parse_int(fid->p, fid->len, &id) || id < 0 || id > (int64_t)UINT32_MAX) {
            char ex[48];
            err = br_fail(diag, BR_ERR_PARSE, "%s:%zu: tag_id '%s' is not a non-negative integer",
                          name, line, field_excerpt(fid, ex, sizeof ex));
            goto done;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            tag_entry *nv = realloc(v, ncap * sizeof *nv);
            if (!nv) {
                err = br_fail(diag, BR_ERR_NOMEM, "%s: out of memory", name);
                goto done;
            }
            v = nv;
            cap = ncap;
        }
        char *s = (char *)copy_string(a, &f[col[1]]);
        if (!s) {
            err = br_fail(diag, BR_ERR_NOMEM, "%s: out of memory", name);
            goto done;
        }
        v[n].id = (uint32_t)id;
        v[n].name = s;
        v[n].genre = genre_of_tag(s);
        v[n].line = line;
        n++;
    }
    int sorted = 1;
    for (size_t i = 1; i < n && sorted; i++)
        sorted = v[i - 1].id < v[i].id;
    if (!sorted) {
        qsort(v, n, sizeof *v, tag_entry_cmp);
        for (size_t i = 1; i < n; i++)
            if (v[i - 1].id == v[i].id) {
                err = br_fail(diag, BR_ERR_PARSE, "%s:%zu: duplicate tag_id %u (first on line %zu)",
                              name, v[i].line, v[i].id, v[i - 1].line);
                goto done;
            }
    }
done:
    free(f);
    free(hdr);
    if (err) {
        free(v);
        return err;
    }
    *out = v;
    *nout = n;
    return BR_OK;
}

/* Per-book accumulation while reading book_tags. */
typedef struct top_tag {
    int64_t count;
    uint32_t tag_id;
    uint32_t tag;    /* index into the tag entries */
} top_tag;

typedef struct book_acc {
    top_tag top[BR_BOOK_TOP_TAGS];  /* most used first; ties by tag_id */
    int ntop;
    int genre;                      /* -1 if none yet */
    int64_t genre_count;
} book_acc;

static int top_before(const top_tag *a, const top_tag *b)
{
    return a->count > b->count || (a->count == b->count && a->tag_id < b->tag_id);
}

static void acc_add(book_acc *acc, const tag_entry *tags, uint32_t t, int64_t count)
{
    top_tag nt = {count, tags[t].id, t};
    int pos = -1;
    for (int i = 0; i < acc->ntop; i++)
        if (acc->top[i].tag == t) {  /* a repeated (book, tag) row: keep the larger count */
            if (count <= acc->top[i].count)
                goto genre;
            pos = i;
            break;
        }
    if (pos < 0) {
        if (acc->ntop < BR_BOOK_TOP_TAGS)
            pos = acc->ntop++;
        else if (top_before(&nt, &acc->top[BR_BOOK_TOP_TAGS - 1]))
            pos = BR_BOOK_TOP_TAGS - 1;
        else
            goto genre;
    }
    /* Put nt at pos, then bubble it up to its place. */
    acc->top[pos] = nt;
    while (pos > 0 && top_before(&acc->top[pos], &acc->top[pos - 1])) {
        top_tag tmp = acc->top[pos - 1];
        acc->top[pos - 1] = acc->top[pos];
        acc->top[pos] = tmp;
        pos--;
    }
genre:;
    int g = tags[t].genre;
    if (g >= 0 && (count > acc->genre_count || (count == acc->genre_count && g < acc->genre) ||
                   acc->genre < 0)) {
        acc->genre = g;
        acc->genre_count = count;
    }
}

typedef struct gr_index {
    uint64_t goodreads_id;
    size_t book;  /* index into b->v */
} gr_index;

static int gr_index_cmp(const void *a, const void *b)
{
    const gr_index *x = a, *y = b;
    if (x->goodreads_id != y->goodreads_id)
        return x->goodreads_id < y->goodreads_id ? -1 : 1;
    return (x->book > y->book) - (x->book < y->book);
}

/* Index of the first entry with goodreads_id >= id. */
static size_t gr_lower_bound(const gr_index *v, size_t n, uint64_t id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].goodreads_id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static br_err parse_tags_named(br_books *b, const char *book_tags, size_t book_tags_len,
                               const char *bt_name, const char *tags, size_t tags_len,
                               const char *tags_name, br_diag *diag)
{
    tag_entry *tv = NULL;
    size_t ntags = 0;
    uint32_t *dense = NULL;  /* tag_id -> entry index + 1, when ids are compact */
    uint32_t dense_n = 0;
    gr_index *gi = NULL;
    book_acc *acc = NULL;
    csv_field *hdr = NULL;
    br_err err = parse_tags_csv(tags, tags_len, tags_name, &b->strings, &tv, &ntags, diag);
    if (err)
        return err;

    if (ntags > 0 && tv[ntags - 1].id < 4 * (uint64_t)ntags + 1024) {
        dense_n = tv[ntags - 1].id + 1;
        dense = calloc(dense_n, sizeof *dense);
        if (!dense) {
            err = br_fail(diag, BR_ERR_NOMEM, "%s: out of memory", tags_name);
            goto done;
        }
        for (size_t i = 0; i < ntags; i++)
            dense[tv[i].id] = (uint32_t)i + 1;
    }

    size_t ngi = 0;
    gi = malloc((b->n ? b->n : 1) * sizeof *gi);
    acc = malloc((b->n ? b->n : 1) * sizeof *acc);
    if (!gi || !acc) {
        err = br_fail(diag, BR_ERR_NOMEM, "%s: out of memory", bt_name);
        goto done;
    }
    for (size_t i = 0; i < b->n; i++) {
        acc[i].ntop = 0;
        acc[i].genre = -1;
        acc[i].genre_count = 0;
        if (b->v[i].goodreads_id) {
            gi[ngi].goodreads_id = b->v[i].goodreads_id;
            gi[ngi].book = i;
            ngi++;
        }
    }
    qsort(gi, ngi, sizeof *gi, gr_index_cmp);

    csv_reader r;
    csv_init(&r, book_tags, book_tags_len, bt_name);
    size_t ncols;
    if ((err = read_header(&r, &hdr, &ncols, diag)))
        goto done;
    static const char *const names[3] = {"goodreads_book_id", "tag_id", "count"};
    long col[3];
    if ((err = find_columns(&r, hdr, ncols, names, col, 3, diag)))
        goto done;
    for (int j = 0; j < 3; j++)
        if (col[j] < 0) {
            err = br_fail(diag, BR_ERR_PARSE, "%s:1: missing required column '%s'", bt_name,
                          names[j]);
            goto done;
        }
    csv_field fbuf[16];
    csv_field *f = fbuf;
    if (ncols > 16) {
        free(hdr);  /* reuse as the field array */
        hdr = malloc(ncols * sizeof *hdr);
        if (!hdr) {
            err = br_fail(diag, BR_ERR_NOMEM, "%s: out of memory", bt_name);
            goto done;
        }
        f = hdr;
    }
    uint64_t last_gr = 0;
    size_t last_lo = 0, last_hi = 0;  /* cached range of gi for last_gr */
    for (;;) {
        size_t line = 0;
        int rc = csv_row(&r, f, ncols, &line, diag, &err);
        if (rc < 0)
            goto done;
        if (rc == 0)
            break;
        int64_t gr, tid, count;
        char ex[48];
        const csv_field *fg = &f[col[0]], *ft = &f[col[1]], *fc = &f[col[2]];
        if (!parse_int(fg->p, fg->len, &gr) || gr < 0) {
            err = br_fail(diag, BR_ERR_PARSE,
                          "%s:%zu: goodreads_book_id '%s' is not a non-negative integer", bt_name,
                          line, field_excerpt(fg, ex, sizeof ex));
            goto done;
        }
        if (!parse_int(ft->p, ft->len, &tid) || tid < 0 || tid > (int64_t)UINT32_MAX) {
            err = br_fail(diag, BR_ERR_PARSE, "%s:%zu: tag_id '%s' is not a non-negative integer",
                          bt_name, line, field_excerpt(ft, ex, sizeof ex));
            goto done;
        }
        if (!parse_int(fc->p, fc->len, &count)) {
            err = br_fail(diag, BR_ERR_PARSE, "%s:%zu: count '%s' is not an integer", bt_name,
                          line, field_excerpt(fc, ex, sizeof ex));
            goto done;
        }
        if (count <= 0)
            continue;  /* goodbooks has a few -1 counts: no use of the tag */
        if ((uint64_t)gr != last_gr || last_gr == 0) {
            last_gr = (uint64_t)gr;
            last_lo = gr_lower_bound(gi, ngi, last_gr);
            last_hi = last_lo;
            while (last_hi < ngi && gi[last_hi].goodreads_id == last_gr)
                last_hi++;
        }
        if (last_lo == last_hi)
            continue;  /* a book not in books.csv */
        size_t t;
        if (dense) {
            if ((uint64_t)tid >= dense_n || !dense[tid])
                goto unknown_tag;
            t = dense[tid] - 1;
        } else {
            size_t lo = 0, hi = ntags;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (tv[mid].id < (uint64_t)tid)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo == ntags || tv[lo].id != (uint64_t)tid)
                goto unknown_tag;
            t = lo;
        }
        for (size_t k = last_lo; k < last_hi; k++)
            acc_add(&acc[gi[k].book], tv, (uint32_t)t, count);
        continue;
    unknown_tag:
        err = br_fail(diag, BR_ERR_PARSE, "%s:%zu: tag_id %lld is not in %s", bt_name, line,
                      (long long)tid, tags_name);
        goto done;
    }

    /* Success: replace every book's tags and genre. */
    for (size_t i = 0; i < b->n; i++) {
        br_book *bk = &b->v[i];
        for (int k = 0; k < BR_BOOK_TOP_TAGS; k++)
            bk->tags[k] = k < acc[i].ntop ? tv[acc[i].top[k].tag].name : NULL;
        bk->genre = acc[i].genre >= 0 ? genre_names[acc[i].genre] : "";
    }
done:
    free(hdr);
    free(acc);
    free(gi);
    free(dense);
    free(tv);
    return err;
}

br_err br_books_parse_tags(br_books *b, const char *book_tags, size_t book_tags_len,
                           const char *tags, size_t tags_len, br_diag *diag)
{
    if (!b)
        return br_fail(diag, BR_ERR_ARG, "no books to tag");
    return parse_tags_named(b, book_tags, book_tags_len, "book_tags.csv", tags, tags_len,
                            "tags.csv", diag);
}

br_err br_books_load_tags(br_books *b, const char *book_tags_path, const char *tags_path,
                          br_diag *diag)
{
    if (!b)
        return br_fail(diag, BR_ERR_ARG, "no books to tag");
    char *bt = NULL, *tg = NULL;
    size_t bt_len = 0, tg_len = 0;
    br_err err = br_read_file(tags_path, &tg, &tg_len, diag);
    if (!err)
        err = br_read_file(book_tags_path, &bt, &bt_len, diag);
    if (!err)
        err = parse_tags_named(b, bt, bt_len, book_tags_path, tg, tg_len, tags_path, diag);
    free(bt);
    free(tg);
    return err;
}
