/*
 * fuzz_server.h - the server's request handler (br_srv_answer) under
 * arbitrary requests, with its invariants: shared by the libFuzzer targets
 * fuzz_server_query.c and fuzz_server_body.c and by test_server.c, which
 * replays their committed corpora in every build.
 *
 * srv_fuzz_open writes a small real model (biased, sparse ids, book
 * metadata with quotes, backslashes, non-ASCII and control bytes in the
 * titles) to a temporary file and creates a server on it (never started: no
 * socket is opened). srv_fuzz_request splits a raw request target the way
 * libmicrohttpd 0.9 does (path and query at the first '?', arguments at '&'
 * and the first '=', '+' as a space in arguments, %XX decoded by
 * libmicrohttpd's own MHD_http_unescape), answers it and checks:
 *   - br_srv_answer succeeds and the status is one of 200, 400, 404, 405,
 *     413 (500 means out of memory, which a fuzz run never is);
 *   - every answer but /metrics is one JSON document (jansson validates
 *     UTF-8 too) and a newline; an error is {"error": non-empty string},
 *     a 405 carries Allow and nothing else does;
 *   - a top-k answer has at most k results, k within 1..max_k, ranks 1..n,
 *     distinct books of the model, scores non-increasing, the queried book or the reader's books left out unless
 *     include_read;
 *   - asking again gives the same bytes;
 *   - a GET with an argument that decodes to a string with a NUL inside
 *     ("user=1%00x") is not answered 200.
 * SRV_CHECK aborts on a broken invariant (libFuzzer reports the input; in
 * the cmocka replay the test fails).
 */
#ifndef BR_FUZZ_SERVER_H
#define BR_FUZZ_SERVER_H

#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "br_books.h"
#include "br_model.h"
#include "br_server.h"

#define SRV_CHECK(cond)                                                                   \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);  \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

enum { SRV_FUZZ_USERS = 24, SRV_FUZZ_BOOKS = 60, SRV_FUZZ_DIM = 5, SRV_FUZZ_MAX_K = 50,
       SRV_FUZZ_MAX_BODY = 4096 };

/* Book ids 3, 6, 9, ... (every third), user ids 1, 1001, 2001, ...; user i
 * read books i, i+7, i+14, ... (internal indices); user 1 read nothing. */
static inline uint32_t srv_fuzz_book_id(uint32_t b) { return 3 * (b + 1); }
static inline uint32_t srv_fuzz_user_id(uint32_t u) { return 1 + 1000 * u; }

static const char srv_fuzz_books_csv[] =
    "book_id,goodreads_book_id,title,authors,original_publication_year,average_rating,"
    "ratings_count\n"
    "3,30,\"Say \"\"hi\"\" \\ back\",A. N. Other,-400,3.5,12\n"
    "6,60,Caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x93\x9a,Zo\xc3\xab,1999,4.0,7\n"
    "9,90,\"tab\there, bell\a\",\"</script>\",2001,,\n"
    "12,120,,,,,\n";

/* Writes the model to path. 0 on success. */
static inline int srv_fuzz_write_model(const char *path)
{
    enum { NU = SRV_FUZZ_USERS, NB = SRV_FUZZ_BOOKS, D = SRV_FUZZ_DIM };
    static float uv[NU * D], bv[NB * D], ub[NU], bb[NB];
    static uint32_t uid[NU], bid[NB], idx[NU * NB];
    static uint64_t ptr[NU + 1];
    for (uint32_t i = 0; i < NU * D; i++)
        uv[i] = (float)((int)(i * 7 % 11) - 5) / 8.0f;
    for (uint32_t i = 0; i < NB * D; i++)
        bv[i] = (float)((int)(i * 5 % 13) - 6) / 8.0f;   /* repeats: equal scores happen */
    for (uint32_t i = 0; i < NU; i++) {
        ub[i] = 0.125f * (float)(i % 5);
        uid[i] = srv_fuzz_user_id(i);
    }
    for (uint32_t i = 0; i < NB; i++) {
        bb[i] = -0.25f * (float)(i % 4);
        bid[i] = srv_fuzz_book_id(i);
    }
    size_t k = 0;
    for (uint32_t u = 0; u < NU; u++) {
        ptr[u] = k;
        if (u == 0)
            continue;
        for (uint32_t b = u % NB; b < NB; b += 7)
            idx[k++] = b;
    }
    ptr[NU] = k;
    br_books *books = NULL;
    br_diag dg;
    if (br_books_parse(srv_fuzz_books_csv, sizeof srv_fuzz_books_csv - 1, "books", &books,
                       &dg) != BR_OK)
        return 1;
    br_model_data d;
    memset(&d, 0, sizeof d);
    d.meta.kind = BR_MODEL_BIASED;
    d.meta.loss = BR_LOSS_MSE;
    d.meta.optim = BR_OPTIM_SGD;
    d.meta.dim = D;
    d.meta.n_users = NU;
    d.meta.n_books = NB;
    d.meta.global_mean = 3.5f;
    d.meta.created_unix = 1700000000;
    d.meta.test_rmse = d.meta.test_mae = NAN;
    d.user_vecs = uv;
    d.book_vecs = bv;
    d.src_stride = D;
    d.user_bias = ub;
    d.book_bias = bb;
    d.user_ids = uid;
    d.book_ids = bid;
    d.read_ptr = ptr;
    d.read_idx = idx;
    d.books = books;
    br_err e = br_model_save(&d, path, &dg);
    br_books_free(books);
    return e != BR_OK;
}

/* A server on a fresh copy of the model (the file is removed once loaded:
 * the mapping stays). NULL on failure. */
static inline br_srv *srv_fuzz_open(void)
{
    char dir[] = "/tmp/br_fuzz_server.XXXXXX";
    if (!mkdtemp(dir))
        return NULL;
    char path[64];
    snprintf(path, sizeof path, "%s/m.model", dir);
    br_srv *s = NULL;
    if (srv_fuzz_write_model(path) == 0) {
        br_srv_config c;
        br_srv_config_default(&c);
        c.max_k = SRV_FUZZ_MAX_K;
        c.max_body = SRV_FUZZ_MAX_BODY;
        br_diag dg;
        if (br_srv_create(&c, path, &s, &dg) != BR_OK)
            s = NULL;
    }
    unlink(path);
    rmdir(dir);
    return s;
}

/* ---- the invariants -------------------------------------------------------------- */

static inline int srv_fuzz_find_book(uint32_t id)
{
    return id % 3 == 0 && id / 3 >= 1 && id / 3 <= SRV_FUZZ_BOOKS ? (int)(id / 3 - 1) : -1;
}

static inline int srv_fuzz_user_read(uint32_t u, uint32_t b)
{
    return u > 0 && b >= u % SRV_FUZZ_BOOKS && (b - u % SRV_FUZZ_BOOKS) % 7 == 0;
}

/* A top-k answer. skip_book: internal index left out (-1 none); reader:
 * internal user whose books are left out (-1 none); read/n_read: external
 * ids left out (POST). */
static inline void srv_fuzz_check_items(json_t *o, int skip_book, int reader,
                                        const json_int_t *read, size_t n_read)
{
    json_t *jk = json_object_get(o, "k"), *res = json_object_get(o, "results");
    SRV_CHECK(json_is_integer(jk) && json_is_array(res));
    json_int_t k = json_integer_value(jk);
    SRV_CHECK(k >= 1 && k <= SRV_FUZZ_MAX_K);
    size_t n = json_array_size(res);
    SRV_CHECK(n <= (size_t)k && n <= SRV_FUZZ_BOOKS);
    SRV_CHECK(json_is_string(json_object_get(o, "score")));
    json_t *mo = json_object_get(o, "model");
    SRV_CHECK(json_integer_value(json_object_get(mo, "generation")) == 1);
    int incl = json_is_true(json_object_get(o, "include_read"));
    unsigned char seen[SRV_FUZZ_BOOKS] = {0};
    double last = INFINITY;
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(res, i);
        SRV_CHECK(json_integer_value(json_object_get(it, "rank")) == (json_int_t)i + 1);
        json_int_t id = json_integer_value(json_object_get(it, "book_id"));
        SRV_CHECK(id > 0 && id <= UINT32_MAX);
        int b = srv_fuzz_find_book((uint32_t)id);
        SRV_CHECK(b >= 0 && !seen[b]);
        seen[b] = 1;
        SRV_CHECK(b != skip_book);
        if (!incl && reader >= 0)
            SRV_CHECK(!srv_fuzz_user_read((uint32_t)reader, (uint32_t)b));
        if (!incl)
            for (size_t r = 0; r < n_read; r++)
                SRV_CHECK(read[r] != id);
        SRV_CHECK(json_is_string(json_object_get(it, "title")));
        json_t *sc = json_object_get(it, "score");
        if (json_is_number(sc)) {   /* printed to 7 digits: ties cannot be checked */
            double v = json_number_value(sc);
            SRV_CHECK(v <= last);
            last = v;
        }
    }
}

/* Checks one answer of q. */
static inline void srv_fuzz_check(const br_srv_query *q, const br_srv_reply *r)
{
    unsigned st = r->status;
    SRV_CHECK(st == 200 || st == 400 || st == 404 || st == 405 || st == 413);
    SRV_CHECK(r->body && r->len > 0 && r->body[r->len - 1] == '\n');
    SRV_CHECK(r->type && ((st == 405) == (r->allow != NULL)));
    int metrics = !strcmp(q->path, "/metrics") && st == 200;
    if (metrics) {
        SRV_CHECK(!strncmp(r->type, "text/plain", 10));
        SRV_CHECK(memchr(r->body, '\0', r->len) == NULL);
        return;
    }
    SRV_CHECK(!strcmp(r->type, "application/json"));
    json_error_t je;
    json_t *o = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        fprintf(stderr, "not JSON (%s): %.*s\n", je.text, (int)r->len, r->body);
    SRV_CHECK(o && json_is_object(o));
    if (st != 200) {
        json_t *e = json_object_get(o, "error");
        SRV_CHECK(json_object_size(o) == 1 && json_is_string(e) && json_string_length(e) > 0);
        SRV_CHECK(r->generation <= 1);
        json_decref(o);
        return;
    }
    SRV_CHECK(r->generation == 1);
    const char *p = q->path;
    if (!strcmp(p, "/v1/recommend") && !strcmp(q->method, "POST")) {
        /* the read list, for the books to leave out */
        json_t *in = json_loadb(q->body, q->body_len, 0, NULL);
        json_t *rd = json_object_get(in, "read");
        SRV_CHECK(json_is_array(rd));
        size_t n = json_array_size(rd);
        json_int_t *ids = malloc((n ? n : 1) * sizeof *ids);
        SRV_CHECK(ids);
        for (size_t i = 0; i < n; i++)
            ids[i] = json_integer_value(json_array_get(rd, i));
        SRV_CHECK(json_integer_value(json_object_get(o, "read_count")) == (json_int_t)n);
        srv_fuzz_check_items(o, -1, -1, ids, n);
        free(ids);
        json_decref(in);
    } else if (!strcmp(p, "/v1/recommend")) {
        json_int_t uid = json_integer_value(json_object_get(o, "user_id"));
        SRV_CHECK(uid >= 1 && (uid - 1) % 1000 == 0 && (uid - 1) / 1000 < SRV_FUZZ_USERS);
        srv_fuzz_check_items(o, -1, (int)((uid - 1) / 1000), NULL, 0);
    } else if (!strcmp(p, "/v1/similar")) {
        json_int_t id = json_integer_value(json_object_get(o, "book_id"));
        int b = srv_fuzz_find_book((uint32_t)id);
        SRV_CHECK(id > 0 && b >= 0);
        srv_fuzz_check_items(o, b, -1, NULL, 0);
    } else if (!strncmp(p, "/v1/books/", 10)) {
        json_int_t id = json_integer_value(json_object_get(o, "book_id"));
        SRV_CHECK(srv_fuzz_find_book((uint32_t)id) >= 0);
        SRV_CHECK(json_is_string(json_object_get(o, "title")));
    } else {
        SRV_CHECK(!strcmp(p, "/healthz"));
        SRV_CHECK(!strcmp(json_string_value(json_object_get(o, "status")), "ok"));
    }
    json_decref(o);
}

/* Answers q, checks the answer, and checks a second answer is the same
 * (except /healthz and /metrics, which report live figures). Returns the
 * status. */
static inline unsigned srv_fuzz_answer(br_srv *s, const br_srv_query *q)
{
    br_srv_reply r, r2;
    SRV_CHECK(br_srv_answer(s, q, &r) == BR_OK);
    srv_fuzz_check(q, &r);
    if (strcmp(q->path, "/healthz") && strcmp(q->path, "/metrics")) {
        SRV_CHECK(br_srv_answer(s, q, &r2) == BR_OK);
        SRV_CHECK(r2.status == r.status && r2.len == r.len && !memcmp(r2.body, r.body, r.len));
        br_srv_reply_free(&r2);
    }
    unsigned st = r.status;
    br_srv_reply_free(&r);
    return st;
}

/* ---- requests as libmicrohttpd sees them ----------------------------------------- */

static inline void srv_fuzz_unescape_plus(char *s)
{
    for (; *s; s++)
        if (*s == '+')
            *s = ' ';
}

/* One request: method, raw request target (path?query, percent-encoded,
 * tlen bytes; stops at a NUL as a C string would), body. The arguments are
 * split as libmicrohttpd 0.9's MHD_parse_arguments_ does. */
static inline unsigned srv_fuzz_request(br_srv *s, const char *method, const char *target,
                                    size_t tlen, const char *body, size_t blen)
{
    char *t = malloc(tlen + 1);
    SRV_CHECK(t);
    memcpy(t, target, tlen);
    t[tlen] = '\0';
    br_srv_arg args[64];
    size_t n = 0;
    int nul = 0;   /* an argument decoded to a string with a NUL inside */
    char *qs = strchr(t, '?');
    if (qs)
        *qs++ = '\0';
    if (MHD_http_unescape(t) != strlen(t)) {
        free(t);
        return 400;   /* a NUL in the path: the HTTP layer answers 400 itself */
    }
    while (qs && *qs && n < sizeof args / sizeof args[0]) {
        char *eq = strchr(qs, '='), *amp = strchr(qs, '&');
        if (amp)
            *amp++ = '\0';
        size_t vlen = 0;
        if (eq && (!amp || eq < amp)) {
            *eq++ = '\0';
            srv_fuzz_unescape_plus(eq);
            vlen = MHD_http_unescape(eq);
        } else {
            eq = NULL;
        }
        srv_fuzz_unescape_plus(qs);
        size_t klen = MHD_http_unescape(qs);
        if (strlen(qs) != klen || (eq && strlen(eq) != vlen))
            nul = 1;
        args[n++] = (br_srv_arg){qs, eq, klen, vlen};
        qs = amp;
    }
    br_srv_query q = {method, t, args, n, body, blen};
    unsigned st = srv_fuzz_answer(s, &q);
    if (nul && (!strcmp(method, "GET") || !strcmp(method, "HEAD")))
        SRV_CHECK(st != 200);   /* "user=1%00x" is not user 1 */
    free(t);
    return st;
}

/* One fuzz_server_query input: "[METHOD ]TARGET[\nBODY]". METHOD is the
 * text before a first space that comes before any '/' (GET when there is
 * none); TARGET is the raw, percent-encoded path and query; what follows
 * the first newline is the body. */
static inline unsigned srv_fuzz_query_input(br_srv *srv, const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    size_t line = nl ? (size_t)(nl - in) : size;
    char method[17] = "GET";
    const char *sp = memchr(in, ' ', line < 17 ? line : 17);
    const char *sl = memchr(in, '/', line);
    size_t off = 0;
    if (sp && (!sl || sp < sl)) {
        memcpy(method, in, (size_t)(sp - in));
        method[sp - in] = '\0';
        off = (size_t)(sp - in) + 1;
    }
    /* the body in its own exact-size buffer, so a read past it is caught */
    size_t blen = nl ? size - line - 1 : 0;
    char *body = malloc(blen ? blen : 1);
    SRV_CHECK(body);
    if (blen)
        memcpy(body, nl + 1, blen);
    unsigned st = srv_fuzz_request(srv, method, in + off, line - off, body, blen);
    free(body);
    return st;
}

/* One fuzz_server_body input: the body of POST /v1/recommend, in an
 * exact-size heap buffer without a NUL. */
static inline unsigned srv_fuzz_body_input(br_srv *srv, const uint8_t *data, size_t size)
{
    char *body = malloc(size ? size : 1);
    SRV_CHECK(body);
    if (size)
        memcpy(body, data, size);
    static const char target[] = "/v1/recommend";
    unsigned st = srv_fuzz_request(srv, "POST", target, sizeof target - 1, body, size);
    free(body);
    return st;
}

#endif
