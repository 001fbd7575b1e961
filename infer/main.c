/*
 * bookrec-infer - recommendations from a bookrec model file.
 *
 *   bookrec-infer --user 1 --top 5            top 5 unread books for reader 1
 *   bookrec-infer --similar 2 --top 5         books most like book 2 (cosine)
 *   bookrec-infer --read 12,45,78             a new reader, folded in
 *   bookrec-infer --read-file FILE            same, lines book_id[,rating]
 *   bookrec-infer --users all|FILE|A-B -j 2   many readers, streamed as CSV
 *   bookrec-infer --predict FILE              user_id,book_id -> prediction
 *   bookrec-infer --serve [HOST:]PORT -j 2    the HTTP server (infer/br_server.h,
 *                                             docs/HTTP.md); SIGHUP reloads the
 *                                             model, SIGTERM/SIGINT stop it (exit 0)
 *
 * Output: a table (default), --json, or --csv. Exit status: 0 success; 2 for
 * a usage error, an unknown user or book, or malformed input; 1 for other
 * failures (missing or damaged model, I/O).
 *
 * This file only parses options, calls the library (infer/br_recommend.h)
 * and formats; the logic lives in the library.
 */
#include "br_books.h"
#include "br_fmt.h"
#include "br_io.h"
#include "br_model.h"
#include "br_opt.h"
#include "br_progress.h"
#include "br_recommend.h"
#ifdef BOOKREC_WITH_SERVER
#include "br_server.h"
#endif

#include <errno.h>
#include <malloc.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define PROG "bookrec-infer"

typedef enum out_fmt { OUT_TABLE, OUT_JSON, OUT_CSV } out_fmt;

typedef struct cli {
    const char *model, *user, *similar, *read, *read_file, *users, *predict;
    int top, threads, include_read, json, csv, quiet, help, version, verify;
    const char *serve, *access_log;   /* --serve and its options */
    unsigned max_k, max_conn, timeout_s, drain_s;
    uint64_t max_body, max_header;
    int no_pin;
} cli;

/* Exit status of a library error: 2 for what the user typed or gave us
 * (unknown ids, malformed lists, bad values), 1 for the rest. */
static int die(br_err e, const br_diag *d)
{
    br_error(0, "%s", br_diag_text(d, e));
    switch (e) {
    case BR_ERR_ARG:
    case BR_ERR_NOT_FOUND:
    case BR_ERR_PARSE:
    case BR_ERR_RANGE:
    case BR_ERR_EMPTY:
        return 2;
    default:
        return 1;
    }
}

/* ---- input parsing ----------------------------------------------------------- */

static const char *trim(const char *s, size_t *len)
{
    while (*len && (*s == ' ' || *s == '\t')) {
        s++;
        (*len)--;
    }
    while (*len && (s[*len - 1] == ' ' || s[*len - 1] == '\t' || s[*len - 1] == '\r'))
        (*len)--;
    return s;
}

typedef struct reader_list {
    uint32_t *ids;
    float *ratings;   /* NULL if no line carried a rating */
    size_t n, cap;
} reader_list;

static int list_push(reader_list *l, uint32_t id, float rating)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        uint32_t *ids = realloc(l->ids, cap * sizeof *ids);
        if (!ids)
            return 0;
        l->ids = ids;
        float *r = realloc(l->ratings, cap * sizeof *r);
        if (!r)
            return 0;
        l->ratings = r;
        l->cap = cap;
    }
    l->ids[l->n] = id;
    l->ratings[l->n] = rating;
    l->n++;
    return 1;
}

/* "12,45,78": book ids separated by commas. */
static br_err parse_read_list(const char *s, reader_list *l, br_diag *d)
{
    const char *p = s;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        const char *t = trim(p, &len);
        uint32_t id;
        if (!br_parse_id(t, len, &id))
            return br_fail(d, BR_ERR_PARSE,
                           "--read: '%.*s' is not a book id (expected ids like 12,45,78)",
                           (int)len, t);
        if (!list_push(l, id, BR_REC_DEFAULT_RATING))
            return br_fail(d, BR_ERR_NOMEM, "out of memory");
        if (!c)
            break;
        p = c + 1;
    }
    return BR_OK;
}

/* Calls fn(line, len, lineno) for each line of buf, stopping at an error. */
typedef br_err (*line_fn)(void *ctx, const char *line, size_t len, size_t lineno, br_diag *d);
static br_err each_line(const char *buf, size_t n, line_fn fn, void *ctx, br_diag *d)
{
    size_t lineno = 0;
    const char *p = buf, *end = buf + n;
    if (n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        lineno++;
        const char *t = trim(p, &len);
        if (len && t[0] != '#') {
            br_err e = fn(ctx, t, len, lineno, d);
            if (e)
                return e;
        }
        p = nl ? nl + 1 : end;
    }
    return BR_OK;
}

typedef struct file_ctx {
    const char *name;
    reader_list *l;
    int header_ok;   /* the first data line may be a header */
} file_ctx;

/* A --read-file line: book_id[,rating]; a first line starting with a
 * letter is a header. */
static br_err read_file_line(void *vctx, const char *s, size_t len, size_t lineno, br_diag *d)
{
    file_ctx *c = vctx;
    int first = c->header_ok;
    c->header_ok = 0;
    if (first && ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return BR_OK;
    const char *comma = memchr(s, ',', len);
    size_t l1 = comma ? (size_t)(comma - s) : len;
    const char *t = trim(s, &l1);
    uint32_t id;
    if (!br_parse_id(t, l1, &id))
        return br_fail(d, BR_ERR_PARSE, "%s:%zu: '%.*s' is not a book id", c->name, lineno,
                       (int)len, s);
    float rating = BR_REC_DEFAULT_RATING;
    if (comma) {
        size_t l2 = len - l1 - 1;
        const char *r = trim(comma + 1, &l2);
        char tmp[32];
        char *endp = NULL;
        if (l2 == 0 || l2 >= sizeof tmp)
            return br_fail(d, BR_ERR_PARSE, "%s:%zu: expected book_id[,rating], got '%.*s'",
                           c->name, lineno, (int)len, s);
        memcpy(tmp, r, l2);
        tmp[l2] = '\0';
        errno = 0;
        double v = strtod(tmp, &endp);
        if (*endp || errno || !isfinite(v))
            return br_fail(d, BR_ERR_PARSE, "%s:%zu: '%s' is not a rating", c->name, lineno,
                           tmp);
        if (v < 1 || v > 5)
            return br_fail(d, BR_ERR_RANGE, "%s:%zu: rating %s is outside 1..5", c->name,
                           lineno, tmp);
        rating = (float)v;
    }
    if (!list_push(c->l, id, rating))
        return br_fail(d, BR_ERR_NOMEM, "out of memory");
    return BR_OK;
}

static br_err load_read_file(const char *path, reader_list *l, br_diag *d)
{
    char *buf = NULL;
    size_t n = 0;
    br_err e = br_read_file(path, &buf, &n, d);
    if (e)
        return e;
    file_ctx c = {path, l, 1};
    e = each_line(buf, n, read_file_line, &c, d);
    free(buf);
    if (!e && l->n == 0)
        e = br_fail(d, BR_ERR_EMPTY, "%s: no book ids", path);
    return e;
}

/* ---- output helpers ---------------------------------------------------------- */

/* Bytes of the first `cols` code points of s (UTF-8), and their count. */
static size_t utf8_prefix(const char *s, size_t cols, size_t *got)
{
    size_t i = 0, c = 0;
    while (s[i] && c < cols) {
        i++;
        while ((s[i] & 0xC0) == 0x80)
            i++;
        c++;
    }
    *got = c;
    return i;
}

static size_t utf8_len(const char *s)
{
    size_t c = 0;
    for (; *s; s++)
        c += (*s & 0xC0) != 0x80;
    return c;
}

/* Prints s in a column of w code points, cut with "..." if longer. */
static void put_col(FILE *f, const char *s, size_t w)
{
    size_t n = utf8_len(s), got;
    if (n <= w) {
        fputs(s, f);
        for (size_t i = n; i < w; i++)
            fputc(' ', f);
        return;
    }
    size_t bytes = utf8_prefix(s, w - 3, &got);
    fwrite(s, 1, bytes, f);
    fputs("...", f);
}

static const char *kind_name(uint32_t k)
{
    return k == BR_MODEL_DOT ? "dot" : k == BR_MODEL_BIASED ? "biased" : k == BR_MODEL_MLP ? "mlp" : "?";
}

static json_t *jstr(const char *s)
{
    json_t *j = json_string(s);
    return j ? j : json_string("");
}

/* What a single query asked, for the output's header. */
typedef struct query {
    const char *what;          /* "user", "similar", "reader" */
    uint32_t id;               /* user or book id */
    const reader_list *read;   /* reader's books */
} query;

static void print_results(const br_rec *rec, const query *q, const br_rec_item *it, size_t n,
                          size_t k, out_fmt fmt)
{
    const br_model *m = br_rec_model(rec);
    const br_model_meta *mt = br_model_get_meta(m);
    int cosine = strcmp(q->what, "similar") == 0;
    br_book b;
    if (fmt == OUT_CSV) {
        printf("%s,rank,book_id,score,title\n", cosine ? "query_book_id" : "user_id");
        for (size_t i = 0; i < n; i++) {
            br_model_book_info(m, it[i].book, &b);
            if (strcmp(q->what, "reader") == 0)
                printf(",%zu,%u,%.6g,", i + 1, it[i].book_id, (double)it[i].score);
            else
                printf("%u,%zu,%u,%.6g,", q->id, i + 1, it[i].book_id, (double)it[i].score);
            br_csv_field(stdout, b.title);
            putchar('\n');
        }
        return;
    }
    if (fmt == OUT_JSON) {
        json_t *root = json_object(), *qo = json_object(), *mo = json_object(),
               *arr = json_array();
        if (strcmp(q->what, "reader") == 0) {
            json_t *ra = json_array();
            for (size_t i = 0; i < q->read->n; i++)
                json_array_append_new(ra, json_integer(q->read->ids[i]));
            json_object_set_new(qo, "read", ra);
        } else {
            json_object_set_new(qo, cosine ? "book_id" : "user_id", json_integer(q->id));
        }
        json_object_set_new(qo, "top", json_integer((json_int_t)k));
        json_object_set_new(root, "query", qo);
        json_object_set_new(mo, "kind", json_string(kind_name(mt->kind)));
        json_object_set_new(mo, "loss", json_string(mt->loss == BR_LOSS_BPR ? "bpr" : "mse"));
        json_object_set_new(mo, "dim", json_integer(mt->dim));
        json_object_set_new(mo, "books", json_integer(mt->n_books));
        json_object_set_new(mo, "users", json_integer(mt->n_users));
        json_object_set_new(root, "model", mo);
        json_object_set_new(root, "score",
                            json_string(cosine ? "cosine"
                                        : mt->loss == BR_LOSS_BPR ? "ranking score"
                                                                  : "predicted rating"));
        for (size_t i = 0; i < n; i++) {
            br_model_book_info(m, it[i].book, &b);
            json_t *o = json_object();
            json_object_set_new(o, "rank", json_integer((json_int_t)i + 1));
            json_object_set_new(o, "book_id", json_integer(it[i].book_id));
            json_object_set_new(o, "title", jstr(b.title));
            json_object_set_new(o, "authors", jstr(b.authors));
            json_object_set_new(o, "year", b.year ? json_integer(b.year) : json_null());
            json_object_set_new(o, "score", json_real(it[i].score));
            json_array_append_new(arr, o);
        }
        json_object_set_new(root, "results", arr);
        json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6) | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(root);
        return;
    }
    /* table */
    const char *sname = cosine ? "cosine" : mt->loss == BR_LOSS_BPR ? "score" : "rating";
    printf("%4s  %7s  %-44s  %-24s  %5s  %7s\n", "rank", "book_id", "title", "authors", "year",
           sname);
    for (size_t i = 0; i < n; i++) {
        br_model_book_info(m, it[i].book, &b);
        printf("%4zu  %7u  ", i + 1, it[i].book_id);
        put_col(stdout, b.title, 44);
        fputs("  ", stdout);
        put_col(stdout, b.authors, 24);
        if (b.year)
            printf("  %5d", b.year);
        else
            printf("  %5s", "");
        printf("  %7.4f\n", (double)it[i].score);
    }
}

/* ---- batch: --users ------------------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static int sb_reserve(sbuf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return 1;
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->len + more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return 0;
    b->p = p;
    b->cap = cap;
    return 1;
}

/* CSV-ready titles (quoted where needed), one per internal book index. */
static char **csv_titles(const br_model *m, uint32_t n_books)
{
    char **t = calloc(n_books, sizeof *t);
    if (!t)
        return NULL;
    for (uint32_t i = 0; i < n_books; i++) {
        br_book b;
        br_model_book_info(m, i, &b);
        size_t len = strlen(b.title);
        char *s = malloc(2 * len + 3), *p = s;
        if (!s) {
            for (uint32_t j = 0; j < i; j++)
                free(t[j]);
            free(t);
            return NULL;
        }
        int quote = strpbrk(b.title, ",\"\r\n") != NULL;
        if (quote)
            *p++ = '"';
        for (const char *c = b.title; *c; c++) {
            if (*c == '"')
                *p++ = '"';
            *p++ = *c;
        }
        if (quote)
            *p++ = '"';
        *p = '\0';
        t[i] = s;
    }
    return t;
}

typedef struct user_set {
    uint32_t *idx;   /* internal user indices, in output order */
    size_t n;
} user_set;

typedef struct users_ctx {
    const br_model *m;
    const char *name;
    user_set *set;
    size_t cap;
    int header_ok;
} users_ctx;

static br_err users_line(void *vctx, const char *s, size_t len, size_t lineno, br_diag *d)
{
    users_ctx *c = vctx;
    int first = c->header_ok;
    c->header_ok = 0;
    if (first && ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return BR_OK;
    const char *comma = memchr(s, ',', len);   /* extra columns are ignored */
    size_t l1 = comma ? (size_t)(comma - s) : len;
    const char *t = trim(s, &l1);
    uint32_t id;
    if (!br_parse_id(t, l1, &id))
        return br_fail(d, BR_ERR_PARSE, "%s:%zu: '%.*s' is not a user id", c->name, lineno,
                       (int)len, s);
    int64_t u = br_model_find_user(c->m, id);
    if (u < 0)
        return br_fail(d, BR_ERR_NOT_FOUND,
                       "%s:%zu: user %u is not in the model (new readers: --read)", c->name,
                       lineno, id);
    if (c->set->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 1024;
        uint32_t *p = realloc(c->set->idx, cap * sizeof *p);
        if (!p)
            return br_fail(d, BR_ERR_NOMEM, "out of memory");
        c->set->idx = p;
        c->cap = cap;
    }
    c->set->idx[c->set->n++] = (uint32_t)u;
    return BR_OK;
}

/* --users all | A-B | FILE */
static br_err parse_users(const br_model *m, const char *spec, user_set *set, br_diag *d)
{
    const br_model_meta *mt = br_model_get_meta(m);
    const uint32_t *ids = br_model_user_ids(m);
    uint32_t lo = 0, hi = 0;
    const char *dash = strchr(spec, '-');
    int is_range = 0;
    if (strcmp(spec, "all") == 0) {
        lo = 1;
        hi = UINT32_MAX;
        is_range = 1;
    } else if (dash && dash != spec && strspn(spec, "0123456789-") == strlen(spec)) {
        if (!br_parse_id(spec, (size_t)(dash - spec), &lo) ||
            !br_parse_id(dash + 1, strlen(dash + 1), &hi) || lo > hi)
            return br_fail(d, BR_ERR_PARSE,
                           "--users: '%s' is not a range of user ids (expected A-B, A <= B)",
                           spec);
        is_range = 1;
    }
    if (is_range) {
        set->idx = malloc((mt->n_users ? mt->n_users : 1) * sizeof *set->idx);
        if (!set->idx)
            return br_fail(d, BR_ERR_NOMEM, "out of memory");
        set->n = 0;
        for (uint32_t u = 0; u < mt->n_users; u++)
            if (ids[u] >= lo && ids[u] <= hi)
                set->idx[set->n++] = u;
        if (set->n == 0)
            return br_fail(d, BR_ERR_NOT_FOUND, "--users %s: no user of the model is in that range",
                           spec);
        return BR_OK;
    }
    char *buf = NULL;
    size_t n = 0;
    br_err e = br_read_file(spec, &buf, &n, d);
    if (e)
        return e;
    users_ctx c = {m, spec, set, 0, 1};
    e = each_line(buf, n, users_line, &c, d);
    free(buf);
    if (!e && set->n == 0)
        e = br_fail(d, BR_ERR_EMPTY, "%s: no user ids", spec);
    return e;
}

/* Streams top-k CSV for every user of the set, in order, -j threads. */
static int run_users(const br_rec *rec, const user_set *set, size_t k, int threads,
                     unsigned flags)
{
    const br_model *m = br_rec_model(rec);
    uint32_t nb = br_rec_n_books(rec);
    const uint32_t *uids = br_model_user_ids(m);
    char **titles = csv_titles(m, nb);
    if (!titles)
        return br_error(1, "out of memory");
    size_t kk = k < nb ? k : nb;
    const size_t chunk = 64;
    size_t n_chunks = (set->n + chunk - 1) / chunk;
    int failed = 0;   /* first error code, set once */
    br_diag fail_d;
    br_err fail_e = BR_OK;
    br_diag_clear(&fail_d);
    static char obuf[1 << 20];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    fputs("user_id,rank,book_id,score,title\n", stdout);

#pragma omp parallel num_threads(threads)
    {
        br_rec_scratch *s = NULL;
        br_diag d;
        br_diag_clear(&d);
        br_err e = br_rec_scratch_create(rec, &s, &d);
        br_rec_item *items = malloc(kk * sizeof *items);
        sbuf b = {0};
        if (!e && !items)
            e = br_fail(&d, BR_ERR_NOMEM, "out of memory");
#pragma omp for ordered schedule(dynamic, 1)
        for (size_t c = 0; c < n_chunks; c++) {
            b.len = 0;
            int bad;
#pragma omp atomic read
            bad = failed;
            for (size_t i = c * chunk; !e && !bad && i < set->n && i < (c + 1) * chunk; i++) {
                uint32_t u = set->idx[i];
                size_t n = 0;
                e = br_rec_user_index(rec, s, u, k, flags, items, &n, &d);
                if (e)
                    break;
                for (size_t r = 0; r < n; r++) {
                    const char *t = titles[items[r].book];
                    size_t tl = strlen(t);
                    if (!sb_reserve(&b, tl + 64)) {
                        e = br_fail(&d, BR_ERR_NOMEM, "out of memory");
                        break;
                    }
                    char *p = b.p + b.len;
                    p += br_fmt_uint(p, uids[u]);
                    *p++ = ',';
                    p += br_fmt_uint(p, (uint32_t)r + 1);
                    *p++ = ',';
                    p += br_fmt_uint(p, items[r].book_id);
                    *p++ = ',';
                    p += snprintf(p, 24, "%.6g", (double)items[r].score);
                    *p++ = ',';
                    memcpy(p, t, tl);
                    p += tl;
                    *p++ = '\n';
                    b.len = (size_t)(p - b.p);
                }
            }
            if (e) {
#pragma omp critical(br_users_fail)
                if (!failed) {
                    failed = 1;
                    fail_e = e;
                    fail_d = d;
                }
                e = BR_OK;   /* reported once; the other chunks stop */
                b.len = 0;
            }
#pragma omp ordered
            {
                int stop;
#pragma omp atomic read
                stop = failed;
                if (!stop && b.len)
                    fwrite(b.p, 1, b.len, stdout);
            }
        }
        if (e) {
#pragma omp critical(br_users_fail)
            if (!failed) {
                failed = 1;
                fail_e = e;
                fail_d = d;
            }
        }
        free(b.p);
        free(items);
        br_rec_scratch_free(s);
    }
    for (uint32_t i = 0; i < nb; i++)
        free(titles[i]);
    free(titles);
    if (fflush(stdout) != 0 || ferror(stdout))
        return br_error(1, "cannot write the output: %s", strerror(errno));
    return failed ? die(fail_e, &fail_d) : 0;
}

/* ---- --predict ------------------------------------------------------------------ */

typedef struct pred_ctx {
    const br_rec *rec;
    const char *name;
    int header_ok;
    size_t rows, unknown;
} pred_ctx;

static br_err predict_line(void *vctx, const char *s, size_t len, size_t lineno, br_diag *d)
{
    pred_ctx *c = vctx;
    int first = c->header_ok;
    c->header_ok = 0;
    if (first && ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return BR_OK;
    const char *comma = memchr(s, ',', len);
    if (!comma)
        return br_fail(d, BR_ERR_PARSE, "%s:%zu: expected user_id,book_id, got '%.*s'",
                       c->name, lineno, (int)len, s);
    size_t l1 = (size_t)(comma - s), l2 = len - l1 - 1;
    const char *c2 = memchr(comma + 1, ',', l2);   /* a third column (a rating) is ignored */
    if (c2)
        l2 = (size_t)(c2 - comma - 1);
    const char *t1 = trim(s, &l1), *t2 = trim(comma + 1, &l2);
    uint32_t u, b;
    if (!br_parse_id(t1, l1, &u) || !br_parse_id(t2, l2, &b))
        return br_fail(d, BR_ERR_PARSE, "%s:%zu: expected user_id,book_id, got '%.*s'",
                       c->name, lineno, (int)len, s);
    float v;
    if (br_rec_predict(c->rec, u, b, &v, NULL) != BR_OK)
        c->unknown++;
    c->rows++;
    printf("%u,%u,%.6g\n", u, b, (double)v);
    return BR_OK;
}

/* --verify alone: every chunk and every structure of the file, then one
 * line on stdout. Exit 1 for a damaged or missing model. */
static int run_verify(const char *path)
{
    br_diag d;
    br_model *m = NULL;
    br_err e = br_model_open(path, &m, &d);
    if (e) {
        fprintf(stderr, PROG ": error: %s\n", br_diag_text(&d, e));
        return 1;
    }
    printf("%s: ok (%zu bytes, checksum %016llx)\n", path, br_model_file_size(m),
           (unsigned long long)br_model_checksum(m));
    br_model_free(m);
    return 0;
}

static int run_predict(const br_rec *rec, const char *path, int quiet)
{
    br_diag d;
    br_diag_clear(&d);
    char *buf = NULL;
    size_t n = 0;
    br_err e = br_read_file(path, &buf, &n, &d);
    if (e)
        return die(e, &d);
    static char obuf[1 << 20];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    printf("user_id,book_id,prediction\n");
    pred_ctx c = {rec, path, 1, 0, 0};
    e = each_line(buf, n, predict_line, &c, &d);
    free(buf);
    if (fflush(stdout) != 0 || ferror(stdout))
        return br_error(1, "cannot write the output: %s", strerror(errno));
    if (e)
        return die(e, &d);
    if (c.unknown && !quiet)
        fprintf(stderr,
                PROG ": warning: %zu of %zu pairs name a user or book the model lacks "
                "(given the fallback prediction)\n",
                c.unknown, c.rows);
    return 0;
}

/* ---- --serve ---------------------------------------------------------------------- */

#ifndef BOOKREC_WITH_SERVER
/* bookrec-infer itself does not link the HTTP stack (libmicrohttpd and the
 * TLS libraries behind it cost 5 ms of dynamic loading at every start, more
 * than a whole query); --serve runs bookrec-infer-server, the same program
 * built with the server, from the same folder, with the same arguments. */
static int exec_server(char **args)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 64);
    if (n <= 0)
        return br_error(1, "--serve: cannot find this program's folder: %s", strerror(errno));
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    snprintf(slash ? slash + 1 : exe, sizeof exe - (size_t)(slash ? slash + 1 - exe : 0),
             "bookrec-infer-server");
    args[0] = exe;
    execv(exe, args);
    return br_error(1, "--serve: cannot start %s: %s", exe, strerror(errno));
}
#else

static void serve_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void serve_log(const char *fmt, ...)
{
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": %s ", ts);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void serve_mhd_log(void *ctx, const char *msg)
{
    serve_log("http: %s", msg);
}

/* "[HOST:]PORT", HOST a name, an IPv4 address or a bracketed IPv6 one. */
static int parse_listen(const char *spec, char *host, size_t hcap, unsigned *port)
{
    const char *p = spec;
    snprintf(host, hcap, "127.0.0.1");
    if (spec[0] == '[') {
        const char *rb = strchr(spec, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - spec) + 2 > hcap)
            return 0;
        snprintf(host, hcap, "%.*s", (int)(rb - spec - 1), spec + 1);
        p = rb + 2;
    } else {
        const char *colon = strrchr(spec, ':');
        if (colon) {
            if (colon != strchr(spec, ':') || colon == spec || (size_t)(colon - spec) >= hcap)
                return 0;   /* a bare IPv6 address needs brackets */
            snprintf(host, hcap, "%.*s", (int)(colon - spec), spec);
            p = colon + 1;
        }
    }
    if (!*p || strlen(p) > 5 || strspn(p, "0123456789") != strlen(p))
        return 0;
    unsigned long v = strtoul(p, NULL, 10);
    if (v > 65535)
        return 0;
    *port = (unsigned)v;
    return 1;
}

/* Runs the server until SIGTERM or SIGINT. The signals are blocked before
 * any worker thread exists (so they inherit the mask) and read from a
 * signalfd here in the main thread: SIGHUP reloads the model, the others
 * stop accepting, let the requests in flight finish and return 0. */
static int run_serve(const cli *c)
{
    /* Every reload allocates a new model's tables (hundreds of KB) and frees
     * the old: a fixed mmap threshold keeps such blocks on mmap, returned to
     * the system when freed, instead of glibc's adaptive threshold moving
     * them onto the heap where they stay resident. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    br_srv_config cfg;
    br_srv_config_default(&cfg);
    char host[256];
    if (!parse_listen(c->serve, host, sizeof host, &cfg.port))
        return br_error(2, "--serve: '%s' is not [HOST:]PORT (e.g. 8080, 127.0.0.1:8080, "
                          "[::1]:8080)", c->serve);
    cfg.host = host;
    cfg.threads = (unsigned)c->threads;
    cfg.max_k = c->max_k;
    cfg.max_body = (size_t)c->max_body;
    cfg.max_header = (size_t)c->max_header;
    cfg.max_connections = c->max_conn;
    cfg.timeout_s = c->timeout_s;
    cfg.pin = !c->no_pin;
    cfg.log = serve_mhd_log;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return br_error(1, "cannot block signals");
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0)
        return br_error(1, "signalfd: %s", strerror(errno));

    FILE *alog = NULL;
    if (c->access_log) {
        alog = strcmp(c->access_log, "-") == 0 ? stdout : fopen(c->access_log, "a");
        if (!alog) {
            close(sfd);
            return br_error(1, "cannot open the access log %s: %s", c->access_log,
                           strerror(errno));
        }
        cfg.access_log = alog;
    }

    br_diag d;
    br_diag_clear(&d);
    br_srv *srv = NULL;
    int rc = 1;
    br_err e = br_srv_create(&cfg, c->model, &srv, &d);
    if (e) {
        fprintf(stderr, PROG ": error: %s\n", br_diag_text(&d, e));
        if (e == BR_ERR_NOT_FOUND)
            fprintf(stderr, PROG ": train one with bookrec-train, or name one with -m FILE\n");
        rc = e == BR_ERR_ARG ? 2 : 1;
        goto done;
    }
    if ((e = br_srv_start(srv, &d)) != BR_OK) {
        rc = die(e, &d);
        goto done;
    }
    int v6 = strchr(host, ':') != NULL;
    char where[64] = "";   /* " on CPUs 0,1" when the workers are pinned */
    size_t wn = 0;
    for (int i = 0; i < c->threads && br_srv_worker_cpu(srv, i) >= 0; i++) {
        if (wn + 16 > sizeof where) {
            snprintf(where + wn, sizeof where - wn, ",...");
            break;
        }
        wn += (size_t)snprintf(where + wn, sizeof where - wn, "%s%d", i ? "," : " on CPUs ",
                               br_srv_worker_cpu(srv, i));
    }
    serve_log("serving %s on http://%s%s%s:%u/ with %d threads%s (pid %ld)", c->model,
              v6 ? "[" : "", host, v6 ? "]" : "", br_srv_port(srv), c->threads, where,
              (long)getpid());
    for (;;) {
        struct signalfd_siginfo si;
        ssize_t n = read(sfd, &si, sizeof si);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t)sizeof si) {
            serve_log("error: reading signals: %s; stopping", strerror(errno));
            break;
        }
        if (si.ssi_signo == SIGHUP) {
            br_diag_clear(&d);
            e = br_srv_reload(srv, &d);
            if (e)
                serve_log("reload refused, still serving generation %llu: %s",
                          (unsigned long long)br_srv_generation(srv), br_diag_text(&d, e));
            else
                serve_log("reloaded %s: generation %llu", c->model,
                          (unsigned long long)br_srv_generation(srv));
            continue;
        }
        serve_log("%s: stopping (%u requests in flight)", strsignal((int)si.ssi_signo),
                  br_srv_in_flight(srv));
        break;
    }
    unsigned left = br_srv_stop(srv, c->drain_s * 1000u);
    if (left)
        serve_log("stopped with %u requests unfinished after %u s", left, c->drain_s);
    else
        serve_log("stopped");
    rc = 0;
done:
    br_srv_free(srv);
    if (alog && alog != stdout)
        fclose(alog);
    close(sfd);
    return rc;
}
#endif

/* ---- main ----------------------------------------------------------------------- */

static int run(int argc, char **argv, char **args)
{
    cli c = {0};
    c.model = "bookrec.model";
    c.top = 10;
    c.threads = omp_get_num_procs();
    c.max_k = 1000;
    c.max_body = 1u << 20;
    c.max_header = 32u << 10;
    c.max_conn = 1024;
    c.timeout_s = 30;
    c.drain_s = 10;

    const br_opt opts[] = {
        {0, NULL, BR_OPT_GROUP, NULL, NULL, "Query (one of):"},
        {0, "user", BR_OPT_STR, &c.user, "ID", "recommend for the model's reader ID"},
        {0, "similar", BR_OPT_STR, &c.similar, "BOOK_ID", "books most similar to BOOK_ID (cosine)"},
        {0, "read", BR_OPT_STR, &c.read, "ID,ID,...", "a new reader who read these books (fold-in)"},
        {0, "read-file", BR_OPT_STR, &c.read_file, "FILE", "same from lines book_id[,rating] (no rating: 5)"},
        {0, "users", BR_OPT_STR, &c.users, "all|A-B|FILE", "many readers, streamed as CSV"},
        {0, "predict", BR_OPT_STR, &c.predict, "FILE", "predictions for the user_id,book_id pairs of FILE"},
        {0, "serve", BR_OPT_STR, &c.serve, "[HOST:]PORT", "HTTP server (default host 127.0.0.1; docs/HTTP.md)"},
        {0, "verify", BR_OPT_FLAG, &c.verify, NULL, "check every byte of the model (alone: only that; "
                                                     "a single query otherwise checks what it reads)"},
        {0, NULL, BR_OPT_GROUP, NULL, NULL, "Options:"},
        {'m', "model", BR_OPT_STR, &c.model, "FILE", "model file (default ./bookrec.model)"},
        {'k', "top", BR_OPT_INT, &c.top, "K", "number of books (default 10)"},
        {0, "include-read", BR_OPT_FLAG, &c.include_read, NULL, "keep the books the reader has read"},
        {0, "json", BR_OPT_FLAG, &c.json, NULL, "print one JSON document"},
        {0, "csv", BR_OPT_FLAG, &c.csv, NULL, "print CSV: user_id,rank,book_id,score,title"},
        {'j', "threads", BR_OPT_INT, &c.threads, "N", "threads for --users and --serve (default: all cores)"},
        {'q', "quiet", BR_OPT_FLAG, &c.quiet, NULL, "no warnings"},
        {0, NULL, BR_OPT_GROUP, NULL, NULL, "Server (--serve):"},
        {0, "access-log", BR_OPT_STR, &c.access_log, "FILE", "one logfmt line per request (- for stdout)"},
        {0, "max-k", BR_OPT_UINT, &c.max_k, "K", "largest k a request may ask (default 1000)"},
        {0, "max-body", BR_OPT_U64, &c.max_body, "BYTES", "largest POST body (default 1048576)"},
        {0, "max-header", BR_OPT_U64, &c.max_header, "BYTES", "request line + headers per connection (default 32768)"},
        {0, "max-connections", BR_OPT_UINT, &c.max_conn, "N", "open connections at once (default 1024)"},
        {0, "timeout", BR_OPT_UINT, &c.timeout_s, "SECONDS", "idle connection timeout (default 30)"},
        {0, "drain", BR_OPT_UINT, &c.drain_s, "SECONDS", "on SIGTERM, wait this long for requests in flight (default 10)"},
        {0, "no-pin", BR_OPT_FLAG, &c.no_pin, NULL, "let workers run on any CPU (default: one CPU each when -j is the number of CPUs)"},
        {'h', "help", BR_OPT_FLAG, &c.help, NULL, "show this help"},
        {0, "version", BR_OPT_FLAG, &c.version, NULL, "show the version"},
        {0, NULL, 0, NULL, NULL, NULL},
    };
    br_diag d;
    br_diag_clear(&d);
    int npos = 0;
    br_err e = br_opt_parse(opts, argc, argv, &npos, &d);
    if (e)
        return die(e, &d);
    if (c.help) {
        br_opt_usage(stdout, PROG " [-m MODEL] (--user ID | --similar BOOK_ID | --read LIST | "
                             "--read-file FILE | --users SPEC | --predict FILE | --serve [HOST:]PORT) "
                             "[options]",
                     opts);
        return 0;
    }
    if (c.version) {
        printf(PROG " %s\n", BOOKREC_VERSION);
        return 0;
    }
    if (npos > 0)
        return br_error(2, "unexpected argument '%s' (see --help)", argv[1]);
    int modes = !!c.user + !!c.similar + !!(c.read || c.read_file) + !!c.users + !!c.predict +
                !!c.serve;
    if (modes == 0 && c.verify)
        return run_verify(c.model);
    if (c.read && c.read_file)
        return br_error(2, "give --read or --read-file, not both");
    if (modes == 0)
        return br_error(2, "nothing to do: give --user ID, --similar BOOK_ID, --read LIST, "
                          "--read-file FILE, --users SPEC, --predict FILE or --serve PORT "
                          "(see --help)");
    if (modes > 1)
        return br_error(2, "give only one of --user, --similar, --read/--read-file, --users, "
                          "--predict, --serve");
    if (c.top <= 0)
        return br_error(2, "--top must be at least 1, not %d", c.top);
    if (c.threads < 1)
        return br_error(2, "-j must be at least 1");
    if (c.json && c.csv)
        return br_error(2, "give --json or --csv, not both");
#ifdef BOOKREC_WITH_SERVER
    if (c.serve)
        return run_serve(&c);
#else
    if (c.serve)
        return exec_server(args);
#endif
    if ((c.users || c.predict) && c.json)
        return br_error(2, "--%s writes CSV; --json is not available for it",
                       c.users ? "users" : "predict");
    out_fmt fmt = c.json ? OUT_JSON : c.csv ? OUT_CSV : OUT_TABLE;

    /* Parse the ids before touching the model, so typos fail fast. */
    uint32_t qid = 0;
    if (c.user && !br_parse_id(c.user, strlen(c.user), &qid))
        return br_error(2, "--user: '%s' is not a user id (a whole number >= 1)", c.user);
    if (c.similar && !br_parse_id(c.similar, strlen(c.similar), &qid))
        return br_error(2, "--similar: '%s' is not a book id (a whole number >= 1)", c.similar);
    reader_list rl = {0};
    if (c.read && (e = parse_read_list(c.read, &rl, &d)) != BR_OK) {
        free(rl.ids);
        free(rl.ratings);
        return die(e, &d);
    }
    if (c.read_file && (e = load_read_file(c.read_file, &rl, &d)) != BR_OK) {
        free(rl.ids);
        free(rl.ratings);
        return die(e, &d);
    }

    br_model *m = NULL;
    br_rec *rec = NULL;
    br_rec_scratch *s = NULL;
    br_rec_item *items = NULL;
    user_set us = {0};
    int rc = 1;
    /* One query touches one reader: open lazily (each reader's row and read
     * list are checked when used); --users and --predict check it all. */
    e = br_model_open_flags(c.model, c.users || c.predict || c.verify ? 0 : BR_MODEL_OPEN_LAZY,
                            &m, &d);
    if (e) {
        fprintf(stderr, PROG ": error: %s\n", br_diag_text(&d, e));
        if (e == BR_ERR_NOT_FOUND)
            fprintf(stderr, PROG ": train one with bookrec-train, or name one with -m FILE\n");
        goto done;   /* exit 1: a missing or damaged model */
    }
    /* One query: the quantised copy of the books (br_qscan) would cost more
     * to build than it saves; --users builds it once for all readers. */
    e = br_rec_create_flags(m, c.users ? 0 : BR_REC_NO_PRESCAN, &rec, &d);
    if (e) {
        rc = die(e, &d);
        goto done;
    }
    if (c.predict) {
        rc = run_predict(rec, c.predict, c.quiet);
        goto done;
    }
    unsigned flags = c.include_read ? BR_REC_INCLUDE_READ : 0;
    if (c.users) {
        e = parse_users(m, c.users, &us, &d);
        if (e) {
            rc = die(e, &d);
            goto done;
        }
        rc = run_users(rec, &us, (size_t)c.top, c.threads, flags);
        goto done;
    }

    e = br_rec_scratch_create(rec, &s, &d);
    uint32_t nb = br_rec_n_books(rec);
    size_t k = (size_t)c.top, cap = k < nb ? k : nb, n = 0;
    if (!e && !(items = malloc((cap ? cap : 1) * sizeof *items)))
        e = br_fail(&d, BR_ERR_NOMEM, "out of memory");
    query q = {"user", qid, &rl};
    if (!e) {
        if (c.user) {
            e = br_rec_user(rec, s, qid, k, flags, items, &n, &d);
        } else if (c.similar) {
            q.what = "similar";
            e = br_rec_similar(rec, s, qid, k, items, &n, &d);
        } else {
            q.what = "reader";
            e = br_rec_reader(rec, s, rl.ids, rl.ratings, rl.n, k, flags, items, &n, &d);
        }
    }
    if (e) {
        rc = die(e, &d);
        goto done;
    }
    print_results(rec, &q, items, n, k, fmt);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        rc = br_error(1, "cannot write the output: %s", strerror(errno));
        goto done;
    }
    rc = 0;
done:
    free(items);
    free(us.idx);
    free(rl.ids);
    free(rl.ratings);
    br_rec_scratch_free(s);
    br_rec_free(rec);
    br_model_free(m);
    return rc;
}

int main(int argc, char **argv)
{
    br_cli_init(PROG);
    /* The arguments as given (option parsing reorders argv), for --serve. */
    char **args = calloc((size_t)argc + 1, sizeof *args);
    if (!args)
        return br_error(1, "out of memory");
    memcpy(args, argv, (size_t)argc * sizeof *args);
    int rc = run(argc, argv, args);
    free(args);
    return rc;
}
