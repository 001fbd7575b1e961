/*
 * br_ratings.c - ratings loading (CSV text -> external id arrays), id
 * mapping, duplicate merging, splits and CSR views.
 *
 * The parser walks the buffer line by line and never reads past `len`;
 * every failure names the file and line. Rows of the usual shape (only the
 * needed columns, plain integers, a rating 1..5) take a fast path that reads
 * the digits in one pass; any other row goes through the general path, which
 * accepts or rejects it with the same result the fast path would give.
 *
 * Merging: ids are mapped in place, rows are grouped by user with one stable
 * counting sort (skipped when the input is already in (user, book) order, as
 * the generator's output is), each user's books are sorted stably (usually
 * already in order: the original goodbooks release is sorted by book), and
 * of each run of equal (user, book) the last row - the latest in file order -
 * is kept, compacting the row arrays in place so they become the result.
 * O(n + users + books) time for input sorted by user or by book; other
 * orders add an O(k log k) merge sort of each user's k rows.
 *
 * Large arrays are 2 MB aligned and marked for transparent huge pages: on
 * virtual machines a 4 KB page fault can cost 10-20 us, and first-touch
 * faults were then the largest part of a load.
 */
#include "br_ratings.h"
#include "br_io.h"
#include "br_model.h"   /* br_hash64 */
#include "br_rng.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---- allocation ---------------------------------------------------------- */

#define BR_HUGE_PAGE ((size_t)2 << 20)

/* malloc for row arrays. From 2 MB up: whole 2 MB pages, 2 MB aligned, with
 * a transparent huge page hint, so touching it takes a fault per 2 MB instead
 * of per 4 KB. Released with free(); never returns NULL for bytes == 0. */
static void *br_alloc_rows(size_t bytes)
{
    if (bytes < BR_HUGE_PAGE)
        return malloc(bytes ? bytes : 1);
    if (bytes > SIZE_MAX - BR_HUGE_PAGE)
        return NULL;
    bytes = (bytes + BR_HUGE_PAGE - 1) & ~(BR_HUGE_PAGE - 1);
    void *p = NULL;
    if (posix_memalign(&p, BR_HUGE_PAGE, bytes))
        return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, bytes, MADV_HUGEPAGE);   /* only a hint: errors are ignored */
#endif
    return p;
}

/* ---- small text helpers ------------------------------------------------ */

/* Copies up to 40 bytes of a field into out, printable, for messages. */
static const char *br_field_text(const char *s, size_t n, char out[64])
{
    size_t m = n > 40 ? 40 : n, k = 0;
    for (size_t i = 0; i < m; i++) {
        unsigned char c = (unsigned char)s[i];
        out[k++] = (c >= 32 && c < 127) ? (char)c : '?';
    }
    if (n > m) {
        out[k++] = '.';
        out[k++] = '.';
        out[k++] = '.';
    }
    out[k] = '\0';
    return out;
}

/* Strict positive integer in 1..BR_MAX_ID. Returns 0 ok, 1 not a number, 2 out of range. */
static int br_parse_id(const char *s, size_t n, uint32_t *out)
{
    while (n && s[0] == ' ') { s++; n--; }
    while (n && s[n - 1] == ' ') n--;
    if (n == 0)
        return 1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9)
            return 1;
        if (v <= BR_MAX_ID)   /* stop growing once out of range; keep checking digits */
            v = v * 10 + d;
    }
    if (v == 0 || v > BR_MAX_ID)
        return 2;
    *out = (uint32_t)v;
    return 0;
}

/* A plain decimal number: digits with an optional fraction. 0 ok, 1 bad. */
static int br_parse_rating(const char *s, size_t n, double *out)
{
    while (n && s[0] == ' ') { s++; n--; }
    while (n && s[n - 1] == ' ') n--;
    if (n == 0 || n > 32)
        return 1;
    double v = 0, scale = 1;
    int seen_dot = 0, digits = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.' && !seen_dot) {
            seen_dot = 1;
        } else if (c >= '0' && c <= '9') {
            digits++;
            if (seen_dot) {
                scale *= 0.1;
                v += (c - '0') * scale;
            } else {
                v = v * 10 + (c - '0');
            }
        } else {
            return 1;
        }
    }
    if (!digits)
        return 1;
    *out = v;
    return 0;
}

static int br_name_eq(const char *s, size_t n, const char *lit)
{
    while (n && (s[0] == ' ' || s[0] == '"')) { s++; n--; }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '"')) n--;
    size_t m = strlen(lit);
    if (n != m)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)s[i]) != lit[i])
            return 0;
    return 1;
}

/* ---- id maps ------------------------------------------------------------ */

static int br_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Maps ext[0..n) to dense internal indices in ascending id order, writing
 * them to idx[] (which may be ext itself). Fills *ids (distinct ids
 * ascending), *n_ids and, when ids are dense enough, a direct lookup table
 * lut[id] = internal + 1. */
static br_err br_map_ids(const uint32_t *ext, size_t n, uint32_t *idx, uint32_t **ids,
                         uint32_t *n_ids, uint32_t **lut, uint32_t *lut_n)
{
    uint32_t max = 0;
    for (size_t i = 0; i < n; i++)
        if (ext[i] > max)
            max = ext[i];
    *ids = NULL;
    *lut = NULL;
    *lut_n = 0;
    if ((uint64_t)max <= 4 * (uint64_t)n + (1u << 20)) {
        uint32_t *t = calloc((size_t)max + 1, sizeof *t);
        if (!t)
            return BR_ERR_NOMEM;
        for (size_t i = 0; i < n; i++)
            t[ext[i]] = 1;
        uint32_t k = 0;
        for (uint32_t id = 0; id <= max; id++)
            if (t[id])
                t[id] = ++k;
        uint32_t *v = malloc((k ? k : 1) * sizeof *v);
        if (!v) {
            free(t);
            return BR_ERR_NOMEM;
        }
        for (uint32_t id = 0; id <= max; id++)
            if (t[id])
                v[t[id] - 1] = id;
        for (size_t i = 0; i < n; i++)
            idx[i] = t[ext[i]] - 1;
        *ids = v;
        *n_ids = k;
        *lut = t;
        *lut_n = max + 1;
        return BR_OK;
    }
    /* Sparse ids: sort a copy, unique, binary search. */
    uint32_t *v = malloc((n ? n : 1) * sizeof *v);
    if (!v)
        return BR_ERR_NOMEM;
    memcpy(v, ext, n * sizeof *v);
    qsort(v, n, sizeof *v, br_cmp_u32);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || v[k - 1] != v[i])
            v[k++] = v[i];
    for (size_t i = 0; i < n; i++) {
        size_t lo = 0, hi = k;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (v[mid] < ext[i])
                lo = mid + 1;
            else
                hi = mid;
        }
        idx[i] = (uint32_t)lo;
    }
    uint32_t *shrunk = realloc(v, (k ? k : 1) * sizeof *v);
    *ids = shrunk ? shrunk : v;
    *n_ids = (uint32_t)k;
    return BR_OK;
}

static int64_t br_find_id(const uint32_t *ids, uint32_t n, const uint32_t *lut,
                          uint32_t lut_n, uint32_t id)
{
    if (lut) {
        if (id >= lut_n || !lut[id])
            return -1;
        return (int64_t)lut[id] - 1;
    }
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (lo < n && ids[lo] == id) ? (int64_t)lo : -1;
}

int64_t br_ratings_find_user(const br_ratings *r, uint32_t id)
{
    return br_find_id(r->user_ids, r->n_users, r->user_lut, r->user_lut_n, id);
}

int64_t br_ratings_find_book(const br_ratings *r, uint32_t id)
{
    return br_find_id(r->book_ids, r->n_books, r->book_lut, r->book_lut_n, id);
}

void br_ratings_free(br_ratings *r)
{
    if (!r)
        return;
    free(r->user);
    free(r->book);
    free(r->rating);
    free(r->user_ptr);
    free(r->user_ids);
    free(r->book_ids);
    free(r->user_lut);
    free(r->book_lut);
    free(r);
}

/* ---- build: map ids, merge duplicates, sort by (user, book) ------------- */

/* Bottom-up merge sort of k distinct keys; tmp holds k more. */
static void br_sort_keys(uint64_t *a, uint64_t *tmp, size_t k)
{
    uint64_t *src = a, *dst = tmp;
    for (size_t w = 1; w < k; w *= 2) {
        for (size_t lo = 0; lo < k; lo += 2 * w) {
            size_t mid = lo + w < k ? lo + w : k, hi = lo + 2 * w < k ? lo + 2 * w : k;
            size_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi)
                dst[o++] = src[j] < src[i] ? src[j++] : src[i++];
            while (i < mid)
                dst[o++] = src[i++];
            while (j < hi)
                dst[o++] = src[j++];
        }
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, k * sizeof *a);
}

/* Sorts one user's rows by book, stably (rows of one book keep their file
 * order), carrying the ratings along. Short runs: insertion sort. Long runs:
 * keys (book << 32 | position) sorted in keys[0..2k), ratings via vtmp[k]. */
static void br_sort_segment(uint32_t *book, float *val, size_t k, uint64_t *keys, float *vtmp)
{
    if (k <= 32) {
        for (size_t i = 1; i < k; i++) {
            uint32_t b = book[i];
            float v = val[i];
            size_t j = i;
            for (; j > 0 && book[j - 1] > b; j--) {
                book[j] = book[j - 1];
                val[j] = val[j - 1];
            }
            book[j] = b;
            val[j] = v;
        }
        return;
    }
    for (size_t i = 0; i < k; i++)
        keys[i] = (uint64_t)book[i] << 32 | i;
    br_sort_keys(keys, keys + k, k);
    for (size_t i = 0; i < k; i++) {
        book[i] = (uint32_t)(keys[i] >> 32);
        vtmp[i] = val[(uint32_t)keys[i]];
    }
    memcpy(val, vtmp, k * sizeof *val);
}

/* Fills r from n rows and takes ownership of the three row arrays (made by
 * br_alloc_rows): ui[] and bi[] hold external ids, val[] the ratings. They
 * are mapped and compacted in place and become r's arrays, or are freed. */
static br_err br_ratings_finish(br_ratings *r, uint32_t *ui, uint32_t *bi, float *val, size_t n,
                                br_diag *diag)
{
    br_err e = BR_ERR_NOMEM;
    uint64_t *ptr = NULL, *keys = NULL;
    uint32_t *sb = NULL;
    float *sv = NULL, *vtmp = NULL;
    if (br_map_ids(ui, n, ui, &r->user_ids, &r->n_users, &r->user_lut, &r->user_lut_n) ||
        br_map_ids(bi, n, bi, &r->book_ids, &r->n_books, &r->book_lut, &r->book_lut_n))
        goto out;
    const uint32_t n_users = r->n_users;

    /* Rows per user, and whether the rows are already in (user, book) order.
     * ptr[u] becomes the first row of user u (ptr[n_users] = n). */
    ptr = calloc((size_t)n_users + 1, sizeof *ptr);
    if (!ptr)
        goto out;
    int sorted = 1;
    for (size_t i = 0; i < n; i++)
        ptr[ui[i] + 1]++;
    for (size_t i = 1; i < n && sorted; i++)
        sorted = ui[i - 1] < ui[i] || (ui[i - 1] == ui[i] && bi[i - 1] <= bi[i]);
    uint64_t longest = 0;
    for (uint32_t u = 0; u < n_users; u++) {
        if (ptr[u + 1] > longest)
            longest = ptr[u + 1];
        ptr[u + 1] += ptr[u];
    }

    /* Otherwise group the rows by user (stable counting sort), then sort each
     * user's rows by book. */
    if (!sorted) {
        sb = br_alloc_rows(n * sizeof *sb);
        sv = br_alloc_rows(n * sizeof *sv);
        if (!sb || !sv)
            goto out;
        for (size_t i = 0; i < n; i++) {   /* ptr[u] walks to the end of user u */
            uint64_t at = ptr[ui[i]]++;
            sb[at] = bi[i];
            sv[at] = val[i];
        }
        memmove(ptr + 1, ptr, (size_t)n_users * sizeof *ptr);
        ptr[0] = 0;
        free(bi);
        free(val);
        bi = sb;
        val = sv;
        sb = NULL;
        sv = NULL;
        for (uint32_t u = 0; u < n_users; u++) {
            size_t s = ptr[u], k = ptr[u + 1] - s, j = 1;
            while (j < k && bi[s + j - 1] <= bi[s + j])
                j++;
            if (j >= k)
                continue;   /* already in book order */
            if (k > 32 && !keys) {
                keys = malloc(2 * longest * sizeof *keys);
                vtmp = malloc(longest * sizeof *vtmp);
                if (!keys || !vtmp)
                    goto out;
            }
            br_sort_segment(bi + s, val + s, k, keys, vtmp);
        }
    }

    /* Keep the last row of each (user, book) run, compacting in place: row m
     * is written only after rows up to j >= m have been read. ptr[] turns
     * from row offsets into rating offsets on the way. */
    size_t m = 0, run = 1, dup_pairs = 0, dup_rows = 0, s = 0;
    double sum = 0;
    for (uint32_t u = 0; u < n_users; u++) {
        size_t t = ptr[u + 1];
        for (size_t j = s; j < t; j++) {
            uint32_t b = bi[j];
            if (j + 1 < t && bi[j + 1] == b) {
                run++;
                continue;
            }
            if (run > 1) {
                dup_pairs++;
                dup_rows += run - 1;
                run = 1;
            }
            float v = val[j];
            ui[m] = u;
            bi[m] = b;
            val[m] = v;
            sum += v;
            m++;
        }
        ptr[u + 1] = m;
        s = t;
    }
    if (m < n) {   /* give back the room of the merged duplicates */
        uint32_t *pu = realloc(ui, m * sizeof *pu), *pb = realloc(bi, m * sizeof *pb);
        float *pr = realloc(val, m * sizeof *pr);
        if (pu)
            ui = pu;
        if (pb)
            bi = pb;
        if (pr)
            val = pr;
    }
    r->user = ui;
    r->book = bi;
    r->rating = val;
    r->user_ptr = ptr;
    ui = bi = NULL;
    val = NULL;
    ptr = NULL;
    r->n = m;
    r->dup_pairs = dup_pairs;
    r->dup_rows = dup_rows;
    r->mean = m ? sum / (double)m : 0.0;

    /* Fingerprint: ids and the merged ratings in canonical order. */
    uint64_t h = br_hash64(r->user_ids, (size_t)r->n_users * sizeof(uint32_t), 0x62726174ULL);
    h = br_hash64(r->book_ids, (size_t)r->n_books * sizeof(uint32_t), h);
    h = br_hash64(r->user, m * sizeof(uint32_t), h);
    h = br_hash64(r->book, m * sizeof(uint32_t), h);
    r->fingerprint = br_hash64(r->rating, m * sizeof(float), h);
    e = BR_OK;
out:
    free(ui);
    free(bi);
    free(val);
    free(ptr);
    free(keys);
    free(sb);
    free(sv);
    free(vtmp);
    if (e)
        br_fail(diag, e, "out of memory while indexing %zu ratings", n);
    return e;
}

br_err br_ratings_build(const uint32_t *user_ids, const uint32_t *book_ids,
                        const float *ratings, size_t n, br_ratings **out, br_diag *diag)
{
    *out = NULL;
    if (n == 0)
        return br_fail(diag, BR_ERR_EMPTY, "no ratings");
    if (n > UINT32_MAX)
        return br_fail(diag, BR_ERR_RANGE, "too many ratings (%zu; at most %u)", n, UINT32_MAX);
    for (size_t i = 0; i < n; i++) {
        if (user_ids[i] == 0 || user_ids[i] > BR_MAX_ID || book_ids[i] == 0 ||
            book_ids[i] > BR_MAX_ID)
            return br_fail(diag, BR_ERR_RANGE, "rating %zu: id out of range 1..%u", i, BR_MAX_ID);
        if (!(ratings[i] >= 1.0f && ratings[i] <= 5.0f))
            return br_fail(diag, BR_ERR_RANGE, "rating %zu: value %g is outside 1..5", i,
                           (double)ratings[i]);
    }
    br_ratings *r = calloc(1, sizeof *r);
    if (!r)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    r->user_first = 1;
    r->rows = n;
    uint32_t *ui = br_alloc_rows(n * sizeof *ui), *bi = br_alloc_rows(n * sizeof *bi);
    float *val = br_alloc_rows(n * sizeof *val);
    br_err e;
    if (ui && bi && val) {
        memcpy(ui, user_ids, n * sizeof *ui);
        memcpy(bi, book_ids, n * sizeof *bi);
        memcpy(val, ratings, n * sizeof *val);
        e = br_ratings_finish(r, ui, bi, val, n, diag);   /* owns the copies */
    } else {
        free(ui);
        free(bi);
        free(val);
        e = br_fail(diag, BR_ERR_NOMEM, "out of memory for %zu ratings", n);
    }
    if (e) {
        br_ratings_free(r);
        return e;
    }
    *out = r;
    return BR_OK;
}

/* ---- the CSV parser ---------------------------------------------------- */

br_err br_ratings_parse(const char *buf, size_t len, const char *name,
                        const br_load_opts *opts, br_ratings **out, br_diag *diag)
{
    static const br_load_opts defaults = {0};
    if (!opts)
        opts = &defaults;
    *out = NULL;
    const char *p = buf, *end = buf + len;
    if (len >= 3 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
        (unsigned char)p[2] == 0xBF)
        p += 3;   /* UTF-8 byte order mark */

    /* Skip blank lines before the header. */
    size_t line = 1 + opts->line_offset;
    while (p < end && (*p == '\n' || *p == '\r')) {
        if (*p == '\n')
            line++;
        p++;
    }
    if (p >= end)
        return br_fail(diag, BR_ERR_EMPTY, "%s: file is empty", name);

    /* Header: find the columns by name. */
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *he = nl ? nl : end;
    if (he > p && he[-1] == '\r')
        he--;
    int ucol = -1, bcol = -1, rcol = -1, ncols = 0;
    for (const char *f = p;;) {
        const char *c = memchr(f, ',', (size_t)(he - f));
        const char *fe = c ? c : he;
        if (br_name_eq(f, (size_t)(fe - f), "user_id"))
            ucol = ncols;
        else if (br_name_eq(f, (size_t)(fe - f), "book_id"))
            bcol = ncols;
        else if (br_name_eq(f, (size_t)(fe - f), "rating"))
            rcol = ncols;
        ncols++;
        if (!c || ncols > 1000)
            break;
        f = c + 1;
    }
    if (ucol < 0 || bcol < 0 || (rcol < 0 && !opts->implicit)) {
        char t[64];
        return br_fail(diag, BR_ERR_PARSE,
                       "%s:%zu: header must name the columns user_id, book_id%s (found '%s')",
                       name, line, opts->implicit ? "" : " and rating",
                       br_field_text(p, (size_t)(he - p), t));
    }

    br_ratings *r = calloc(1, sizeof *r);
    if (!r)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    r->user_first = ucol < bcol;

    /* Capacity: one row per newline, plus a final unterminated row (a plain
     * loop: the compiler vectorises it). */
    size_t cap = 1;
    for (const char *q = p; q < end; q++)
        cap += *q == '\n';
    uint32_t *uext = br_alloc_rows(cap * sizeof *uext);
    uint32_t *bext = br_alloc_rows(cap * sizeof *bext);
    float *val = br_alloc_rows(cap * sizeof *val);
    br_err err = BR_OK;
    if (!uext || !bext || !val) {
        err = br_fail(diag, BR_ERR_NOMEM, "%s: out of memory", name);
        goto fail;
    }

    size_t n = 0;
    p = nl ? nl + 1 : end;
    line++;
    char msg[BR_DIAG_MAX];
    /* The fast path takes rows of exactly the needed columns. */
    const int fast = ncols == (rcol >= 0 ? 3 : 2);
    for (; p < end; line++) {
        if (fast) {
            /* Plain integers: ids of 1..10 digits in 1..BR_MAX_ID, a rating
             * 1..5; then CR LF, LF or the end. Anything else falls through. */
            const char *q = p;
            uint32_t v[3];
            int c = 0;
            for (; c < ncols; c++) {
                if (c) {
                    if (q >= end || *q != ',')
                        break;
                    q++;
                }
                const char *f0 = q, *lim = end - q > 10 ? q + 10 : end;
                uint64_t x = 0;
                unsigned d;
                while (q < lim && (d = (unsigned)(unsigned char)*q - '0') <= 9) {
                    x = x * 10 + d;
                    q++;
                }
                if (q == f0 || x == 0 || x > BR_MAX_ID)
                    break;
                v[c] = (uint32_t)x;
            }
            if (c == ncols) {
                if (q < end && *q == '\r')
                    q++;
                uint32_t rating = rcol >= 0 ? v[rcol] : 1;
                if ((q == end || *q == '\n') && rating <= 5) {
                    uext[n] = v[ucol];
                    bext[n] = v[bcol];
                    val[n] = (float)rating;
                    n += !opts->keep || opts->keep(v[ucol], v[bcol], opts->keep_ctx);
                    p = q < end ? q + 1 : end;
                    continue;
                }
            }
        }
        const char *e = memchr(p, '\n', (size_t)(end - p));
        const char *next = e ? e + 1 : end;
        if (!e)
            e = end;
        if (e > p && e[-1] == '\r')
            e--;
        if (e == p) {   /* blank line */
            p = next;
            continue;
        }
        uint32_t u = 0, b = 0;
        double rv = 1.0;
        int col = 0, bad = 0;
        br_err bad_code = BR_ERR_PARSE;   /* BR_ERR_RANGE for a well-formed value out of range */
        char t[64];
        const char *f = p;
        for (;;) {
            const char *c = memchr(f, ',', (size_t)(e - f));
            const char *fe = c ? c : e;
            size_t fl = (size_t)(fe - f);
            if (col == ucol || col == bcol) {
                const char *what = col == ucol ? "user_id" : "book_id";
                uint32_t v = 0;
                int rc = br_parse_id(f, fl, &v);
                if (rc == 1) {
                    snprintf(msg, sizeof msg, "%s:%zu: %s '%s' is not a positive integer", name,
                             line, what, br_field_text(f, fl, t));
                    bad = 1;
                    break;
                }
                if (rc == 2) {
                    snprintf(msg, sizeof msg, "%s:%zu: %s %s is out of range (1..%u)", name,
                             line, what, br_field_text(f, fl, t), BR_MAX_ID);
                    bad = 1;
                    bad_code = BR_ERR_RANGE;
                    break;
                }
                if (col == ucol)
                    u = v;
                else
                    b = v;
            } else if (col == rcol) {
                if (br_parse_rating(f, fl, &rv)) {
                    snprintf(msg, sizeof msg, "%s:%zu: rating '%s' is not a number", name, line,
                             br_field_text(f, fl, t));
                    bad = 1;
                    break;
                }
                if (!(rv >= 1.0 && rv <= 5.0)) {
                    snprintf(msg, sizeof msg, "%s:%zu: rating %s is outside 1..5", name, line,
                             br_field_text(f, fl, t));
                    bad = 1;
                    bad_code = BR_ERR_RANGE;
                    break;
                }
            }
            col++;
            if (!c)
                break;
            f = c + 1;
        }
        if (!bad && col != ncols) {
            snprintf(msg, sizeof msg, "%s:%zu: expected %d columns, found %d", name, line, ncols,
                     col);
            bad = 1;
        }
        if (bad) {
            if (!opts->skip_bad) {
                err = br_fail(diag, bad_code, "%s", msg);
                goto fail;
            }
            if (r->skipped++ == 0) {
                r->first_bad_line = line;
                memcpy(r->first_bad, msg, sizeof r->first_bad);
            }
            p = next;
            continue;
        }
        uext[n] = u;
        bext[n] = b;
        val[n] = (float)rv;
        n += !opts->keep || opts->keep(u, b, opts->keep_ctx);
        p = next;
    }
    if (n == 0) {
        err = br_fail(diag, BR_ERR_EMPTY, "%s: no ratings after the header%s", name,
                      r->skipped ? " (every row was malformed)" : "");
        goto fail;
    }
    if (n > UINT32_MAX) {
        err = br_fail(diag, BR_ERR_RANGE, "%s: too many ratings", name);
        goto fail;
    }
    r->rows = n;
    err = br_ratings_finish(r, uext, bext, val, n, diag);   /* owns the row arrays */
    uext = bext = NULL;
    val = NULL;
    if (err)
        goto fail;
    *out = r;
    return BR_OK;
fail:
    free(uext);
    free(bext);
    free(val);
    br_ratings_free(r);
    return err;
}

br_err br_ratings_load(const char *path, const br_load_opts *opts, br_ratings **out,
                       br_diag *diag)
{
    char *buf;
    size_t len;
    *out = NULL;
    br_err e = br_read_file(path, &buf, &len, diag);
    if (e)
        return e;
    e = br_ratings_parse(buf, len, path, opts, out, diag);
    free(buf);
    return e;
}

/* ---- splits -------------------------------------------------------------- */

br_err br_split_random(const br_ratings *r, double frac, uint64_t seed, uint8_t *fold,
                       uint8_t fold_to)
{
    if (!(frac >= 0.0 && frac <= 1.0))
        return BR_ERR_ARG;
    size_t m = 0;
    for (size_t i = 0; i < r->n; i++)
        m += fold[i] == BR_FOLD_TRAIN;
    uint32_t *cand = malloc((m ? m : 1) * sizeof *cand);
    if (!cand)
        return BR_ERR_NOMEM;
    m = 0;
    for (size_t i = 0; i < r->n; i++)
        if (fold[i] == BR_FOLD_TRAIN)
            cand[m++] = (uint32_t)i;
    size_t k = (size_t)llround(frac * (double)m);
    br_rng g;
    br_rng_seed(&g, seed ^ 0x73706c6974ULL);
    /* Partial Fisher-Yates: the first k of a uniform permutation. */
    for (size_t i = 0; i < k; i++) {
        size_t j = i + (size_t)(br_rng_uniform(&g) * (double)(m - i));
        if (j >= m)
            j = m - 1;
        uint32_t t = cand[i];
        cand[i] = cand[j];
        cand[j] = t;
        fold[cand[i]] = fold_to;
    }
    free(cand);
    return BR_OK;
}

int br_split_hash_pick(uint32_t user_id, uint32_t book_id, uint64_t seed, double frac)
{
    /* splitmix64 finaliser over (user, book, seed): uniform 53-bit fraction */
    uint64_t x = ((uint64_t)user_id << 32 | book_id) ^ (seed * 0x9e3779b97f4a7c15ULL) ^
                 0x6861736873706cULL;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (double)(x >> 11) * (1.0 / 9007199254740992.0) < frac;
}

br_err br_split_hash(const br_ratings *r, double frac, uint64_t seed, uint8_t *fold,
                     uint8_t fold_to)
{
    if (!(frac >= 0.0 && frac <= 1.0))
        return BR_ERR_ARG;
    for (size_t i = 0; i < r->n; i++)
        if (fold[i] == BR_FOLD_TRAIN &&
            br_split_hash_pick(r->user_ids[r->user[i]], r->book_ids[r->book[i]], seed, frac))
            fold[i] = fold_to;
    return BR_OK;
}

br_err br_split_per_user(const br_ratings *r, double frac, uint64_t seed, uint8_t *fold,
                         uint8_t fold_to)
{
    if (!(frac >= 0.0 && frac <= 1.0))
        return BR_ERR_ARG;
    br_rng g;
    br_rng_seed(&g, seed ^ 0x7065727573ULL);
    size_t maxc = 0;
    for (uint32_t u = 0; u < r->n_users; u++) {
        size_t c = r->user_ptr[u + 1] - r->user_ptr[u];
        if (c > maxc)
            maxc = c;
    }
    uint32_t *cand = malloc((maxc ? maxc : 1) * sizeof *cand);
    if (!cand)
        return BR_ERR_NOMEM;
    for (uint32_t u = 0; u < r->n_users; u++) {
        size_t c = 0;
        for (uint64_t i = r->user_ptr[u]; i < r->user_ptr[u + 1]; i++)
            if (fold[i] == BR_FOLD_TRAIN)
                cand[c++] = (uint32_t)i;
        if (c < 2)
            continue;
        size_t k = (size_t)llround(frac * (double)c);
        if (k >= c)
            k = c - 1;
        for (size_t i = 0; i < k; i++) {
            size_t j = i + br_rng_below(&g, (uint32_t)(c - i));
            uint32_t t = cand[i];
            cand[i] = cand[j];
            cand[j] = t;
            fold[cand[i]] = fold_to;
        }
    }
    free(cand);
    return BR_OK;
}

/* ---- CSR views ------------------------------------------------------------ */

void br_csr_free(br_csr *c)
{
    if (!c)
        return;
    free(c->ptr);
    free(c->col);
    free(c->val);
    free(c->src);
    memset(c, 0, sizeof *c);
}

static br_err br_csr_alloc(br_csr *c, uint32_t rows, uint64_t nnz)
{
    memset(c, 0, sizeof *c);
    c->n_rows = rows;
    c->nnz = nnz;
    c->ptr = calloc((size_t)rows + 1, sizeof *c->ptr);
    c->col = malloc((nnz ? nnz : 1) * sizeof *c->col);
    c->val = malloc((nnz ? nnz : 1) * sizeof *c->val);
    c->src = malloc((nnz ? nnz : 1) * sizeof *c->src);
    if (!c->ptr || !c->col || !c->val || !c->src) {
        br_csr_free(c);
        return BR_ERR_NOMEM;
    }
    return BR_OK;
}

/* 1 if rating i is kept: no fold array, or its fold's bit is in the mask. */
static inline int br_keep(const uint8_t *fold, unsigned mask, size_t i)
{
    return !fold || (fold[i] < 32 && ((mask >> fold[i]) & 1u));
}

br_err br_csr_by_user(const br_ratings *r, const uint8_t *fold, uint8_t want, br_csr *out,
                      br_diag *diag)
{
    return br_csr_by_user_mask(r, fold, want < 32 ? BR_FOLD_MASK(want) : 0, out, diag);
}

br_err br_csr_by_book(const br_ratings *r, const uint8_t *fold, uint8_t want, br_csr *out,
                      br_diag *diag)
{
    return br_csr_by_book_mask(r, fold, want < 32 ? BR_FOLD_MASK(want) : 0, out, diag);
}

br_err br_csr_by_user_mask(const br_ratings *r, const uint8_t *fold, unsigned want,
                           br_csr *out, br_diag *diag)
{
    uint64_t nnz = 0;
    for (size_t i = 0; i < r->n; i++)
        nnz += br_keep(fold, want, i);
    if (br_csr_alloc(out, r->n_users, nnz))
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    uint64_t k = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (!br_keep(fold, want, i))
            continue;
        out->ptr[r->user[i] + 1]++;
        out->col[k] = r->book[i];
        out->val[k] = r->rating[i];
        out->src[k] = (uint32_t)i;
        k++;
    }
    for (uint32_t u = 0; u < r->n_users; u++)
        out->ptr[u + 1] += out->ptr[u];
    return BR_OK;
}

br_err br_csr_by_book_mask(const br_ratings *r, const uint8_t *fold, unsigned want,
                           br_csr *out, br_diag *diag)
{
    uint64_t nnz = 0;
    for (size_t i = 0; i < r->n; i++)
        nnz += br_keep(fold, want, i);
    if (br_csr_alloc(out, r->n_books, nnz))
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < r->n; i++)
        if (br_keep(fold, want, i))
            out->ptr[r->book[i] + 1]++;
    for (uint32_t b = 0; b < r->n_books; b++)
        out->ptr[b + 1] += out->ptr[b];
    uint64_t *pos = malloc(((size_t)r->n_books + 1) * sizeof *pos);
    if (!pos) {
        br_csr_free(out);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    memcpy(pos, out->ptr, ((size_t)r->n_books + 1) * sizeof *pos);
    /* Ratings are sorted by user, so users come out ascending within a book. */
    for (size_t i = 0; i < r->n; i++) {
        if (!br_keep(fold, want, i))
            continue;
        uint64_t k = pos[r->book[i]]++;
        out->col[k] = r->user[i];
        out->val[k] = r->rating[i];
        out->src[k] = (uint32_t)i;
    }
    free(pos);
    return BR_OK;
}
