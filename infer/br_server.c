/*
 * br_server.c - the HTTP inference server (see br_server.h, docs/HTTP.md).
 *
 * One libmicrohttpd daemon per worker, each with one thread running its own
 * epoll loop, fed by an acceptor thread of ours (see "accepting
 * connections" below for why). A request's life: the URI log callback (the
 * first thing libmicrohttpd calls for a request) allocates its br_srv_req,
 * notes the start time and counts it in flight; the access handler routes
 * it, answers GET routes on its first call and gathers a POST body over
 * later calls before answering; the completion callback records status and
 * latency in the metrics, writes the access log line and frees the request.
 *
 * Every query takes a reference to the current model (br_server_model.h) for
 * its duration, so a reload swaps models under running requests without
 * failing any. Scores come from br_rec with a per-thread scratch kept under
 * a pthread key (freed by the key's destructor when a worker exits).
 *
 * The hot answers (top-k lists, /healthz) are written straight into one
 * buffer from text rendered at model load and numbers formatted without
 * printf (br_fmt.h); errors, /v1/books and /metrics, rarer, still
 * go through jansson or stdio.
 *
 * Metrics are plain C11 atomics: request counts by route, method and
 * status, and one latency histogram per route; /metrics renders them in the
 * Prometheus text format.
 */
#include "br_server.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "br_opt.h"
#include "br_recommend.h"
#include "br_fmt.h"
#include "br_server_model.h"

/* ---- metrics ------------------------------------------------------------------ */

enum { RT_RECOMMEND, RT_SIMILAR, RT_BOOKS, RT_HEALTHZ, RT_METRICS, RT_OTHER, RT__COUNT };
static const char *const br_srv_route_name[RT__COUNT] = {
    "/v1/recommend", "/v1/similar", "/v1/books", "/healthz", "/metrics", "other"};

enum { MT_GET, MT_HEAD, MT_POST, MT_OTHER, MT__COUNT };
static const char *const br_srv_method_name[MT__COUNT] = {"GET", "HEAD", "POST", "other"};

/* Status codes counted one by one; anything else is "other" (and a
 * connection closed before any answer, "none"). */
static const unsigned br_srv_codes[] = {200, 400, 404, 405, 413, 431, 500, 503};
#define BR_SRV_N_CODES (sizeof br_srv_codes / sizeof br_srv_codes[0])
#define ST_OTHER BR_SRV_N_CODES
#define ST_NONE (BR_SRV_N_CODES + 1)
#define ST__COUNT (BR_SRV_N_CODES + 2)

/* Latency bucket upper bounds, seconds. */
static const double br_srv_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                        0.01,   0.025,   0.05,   0.1,   0.25,   1.0};
#define BR_SRV_N_BUCKETS (sizeof br_srv_buckets / sizeof br_srv_buckets[0])

typedef struct br_srv_metrics {
    atomic_ulong requests[RT__COUNT][MT__COUNT][ST__COUNT];
    atomic_ulong hist[RT__COUNT][BR_SRV_N_BUCKETS + 1];   /* last: +Inf only */
    atomic_ulong hist_sum_ns[RT__COUNT];
    atomic_ulong reloads_ok, reloads_failed;
} br_srv_metrics;

/* ---- server and request state ------------------------------------------------ */

struct br_srv {
    br_srv_config cfg;
    char *host;
    char *model_path;
    br_srv_model_cell *cell;
    uint64_t generation;            /* of the last successful load */
    struct br_srv_worker *workers;  /* cfg.threads of them once started, else NULL */
    int listen_fd;                  /* the server's own (see br_srv_accept_main), or -1 */
    int wake_fd;                    /* eventfd: wakes the acceptor (stop, or room again) */
    pthread_t acceptor;
    int acceptor_ok;
    atomic_int acceptor_stop;
    atomic_int at_limit;            /* the acceptor waits for a connection to close */
    unsigned conn_limit;            /* open connections at once */
    struct sockaddr_storage addr;
    unsigned port;
    atomic_uint in_flight;
    atomic_int stopping;            /* answers carry Connection: close */
    int stopped;
    pthread_key_t tls_key;
    int tls_key_ok;
    double started_mono;
    br_srv_metrics metrics;
};

#define BR_SRV_URI_MAX 1024   /* bytes of the URI kept for the access log */

typedef struct br_srv_req {
    br_srv *srv;
    uint64_t t0_ns;           /* CLOCK_MONOTONIC at the request line */
    int route, method;        /* RT_*, MT_* */
    char method_text[16];     /* the method as sent, for the access log */
    int seen;                 /* the access handler has run */
    unsigned status;          /* 0 until an answer is queued */
    size_t resp_bytes;
    char *body;               /* POST body gathered so far */
    size_t body_len, body_cap;
    int body_too_big;
    uint64_t generation;      /* of the model that answered, 0 if none */
    char client[INET6_ADDRSTRLEN];
    char uri[BR_SRV_URI_MAX];
} br_srv_req;

/* Per worker thread: a scratch for br_rec and a result array. */
typedef struct br_srv_tls {
    br_rec_scratch *scratch;
    uint32_t n_books, dim;    /* what the scratch was made for */
    br_rec_item *items;
    size_t cap;
} br_srv_tls;

static uint64_t br_srv_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void br_srv_tls_free(void *p)
{
    br_srv_tls *t = p;
    if (!t)
        return;
    br_rec_scratch_free(t->scratch);
    free(t->items);
    free(t);
}

/* This thread's scratch, fit for rec (made or remade as needed). NULL when
 * out of memory. */
static br_srv_tls *br_srv_tls_get(br_srv *s, const br_rec *rec)
{
    br_srv_tls *t = pthread_getspecific(s->tls_key);
    if (!t) {
        t = calloc(1, sizeof *t);
        if (!t || pthread_setspecific(s->tls_key, t) != 0) {
            free(t);
            return NULL;
        }
    }
    const br_model_meta *mt = br_model_get_meta(br_rec_model(rec));
    if (!t->scratch || t->n_books != mt->n_books || t->dim != mt->dim) {
        br_rec_scratch_free(t->scratch);
        t->scratch = NULL;
        free(t->items);
        t->items = NULL;
        size_t cap = s->cfg.max_k < mt->n_books ? s->cfg.max_k : mt->n_books;
        if (br_rec_scratch_create(rec, &t->scratch, NULL) != BR_OK)
            return NULL;
        t->items = malloc((cap ? cap : 1) * sizeof *t->items);
        if (!t->items) {
            br_rec_scratch_free(t->scratch);
            t->scratch = NULL;
            return NULL;
        }
        t->cap = cap;
        t->n_books = mt->n_books;
        t->dim = mt->dim;
    }
    return t;
}

/* ---- answers ------------------------------------------------------------------- */

/* What a route handler answers into: the server, the request and the
 * reply being made. */
typedef struct br_srv_ctx {
    br_srv *srv;
    const br_srv_query *q;
    br_srv_reply *out;
} br_srv_ctx;

/* Sets the reply: body (malloc'd, taken over) with the given status and
 * type. 0 when body is NULL (out of memory). */
static int br_srv_send(br_srv_ctx *cx, unsigned status, char *body, size_t len,
                       const char *type, const char *allow)
{
    if (!body)
        return 0;
    cx->out->status = status;
    cx->out->body = body;
    cx->out->len = len;
    cx->out->type = type;
    cx->out->allow = allow;
    return 1;
}

/* Replaces every byte of s that is not part of a well-formed UTF-8
 * sequence (overlong forms, surrogates and code points past U+10FFFF
 * included) with '?', in place, so s is valid UTF-8 for jansson. */
static void br_srv_utf8_fix(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
                                                     : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        int ok = n > 0;
        for (size_t i = 1; ok && i < n; i++)
            ok = (p[i] & 0xc0) == 0x80;   /* stops at the NUL too */
        if (ok && n == 3)
            ok = !(c == 0xe0 && p[1] < 0xa0) && !(c == 0xed && p[1] >= 0xa0);
        if (ok && n == 4)
            ok = !(c == 0xf0 && p[1] < 0x90) && !(c == 0xf4 && p[1] >= 0x90);
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

/* The value of query argument name (the first if repeated); NULL when
 * absent, and for "?name" without '=' as libmicrohttpd gives it. */
static const char *br_srv_arg_get(const br_srv_ctx *cx, const char *name)
{
    for (size_t i = 0; i < cx->q->n_args; i++)
        if (cx->q->args[i].key && !strcmp(cx->q->args[i].key, name))
            return cx->q->args[i].value;
    return NULL;
}

static int br_srv_send_json(br_srv_ctx *cx,
                                        unsigned status, json_t *doc, const char *allow)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                            JSON_REAL_PRECISION(7))
                     : NULL;
    json_decref(doc);
    if (!text) {
        static const char oom[] = "{\"error\":\"out of memory\"}\n";
        char *b = malloc(sizeof oom);
        if (!b)
            return 0;
        memcpy(b, oom, sizeof oom);
        return br_srv_send(cx, 500, b, sizeof oom - 1, "application/json", NULL);
    }
    size_t n = strlen(text);
    char *b = realloc(text, n + 2);   /* a final newline, for curl users */
    if (!b) {
        free(text);
        return 0;
    }
    b[n++] = '\n';
    b[n] = '\0';
    return br_srv_send(cx, status, b, n, "application/json", allow);
}

static int br_srv_error(br_srv_ctx *cx,
                                    unsigned status, const char *allow, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int br_srv_error(br_srv_ctx *cx, unsigned status, const char *allow,
                        const char *fmt, ...)
{
    char msg[BR_DIAG_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    br_srv_utf8_fix(msg);   /* request bytes quoted in the message may be anything */
    json_t *doc = json_object();
    if (doc)
        json_object_set_new(doc, "error", br_srv_json_str(msg));
    return br_srv_send_json(cx, status, doc, allow);
}

/* HTTP status for a library error on a query. */
static unsigned br_srv_status_of(br_err e)
{
    switch (e) {
    case BR_ERR_NOT_FOUND:
        return 404;
    case BR_ERR_ARG:
    case BR_ERR_PARSE:
    case BR_ERR_RANGE:
    case BR_ERR_EMPTY:
        return 400;
    default:
        return 500;
    }
}

/* A reference to the current model for this request. */
static br_srv_model *br_srv_acquire(br_srv_ctx *cx)
{
    br_srv_model *sm = br_srv_model_cell_acquire(cx->srv->cell);
    cx->out->generation = br_srv_model_generation(sm);
    return sm;
}


/* Appends n bytes of s at p; returns the new end. */
static char *br_srv_cat(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}
#define BR_SRV_CAT_LIT(p, lit) br_srv_cat((p), (lit), sizeof(lit) - 1)

/* The query members of a top-k answer: "<name>":<id>,"k":<k>, then
 * ,"include_read":true|false when incl >= 0. out has room for 96 bytes. */
static void br_srv_query_members(char *out, const char *name, uint64_t id, size_t k, int incl)
{
    char *p = out;
    *p++ = '"';
    p = br_srv_cat(p, name, strlen(name));
    p = BR_SRV_CAT_LIT(p, "\":");
    p += br_fmt_uint(p, id);
    p = BR_SRV_CAT_LIT(p, ",\"k\":");
    p += br_fmt_uint(p, k);
    if (incl > 0)
        p = BR_SRV_CAT_LIT(p, ",\"include_read\":true");
    else if (incl == 0)
        p = BR_SRV_CAT_LIT(p, ",\"include_read\":false");
    *p = '\0';
}

/* The answer of a top-k query: {<query members>,"model":{...},"score":"...",
 * "results":[{"rank":1,"book_id":..,"title":..,"authors":..,"year":..,"score":..}]}.
 * Written directly from the book members the model rendered at load (the
 * hot path: no JSON tree, no printf, one allocation of the exact bound per
 * answer); query is the query's members, made by the caller from numbers
 * only. */
static int br_srv_send_items(br_srv_ctx *cx,
                                         const br_srv_model *sm, const char *query,
                                         const char *score_kind, const br_rec_item *it,
                                         size_t n)
{
    const char *fp = br_srv_model_fingerprint(sm);
    size_t ql = strlen(query), kl = strlen(score_kind), fl = strlen(fp);
    /* the fixed text is 69 bytes with the NUL, the generation at most 20;
     * a result adds its book's members, 20 bytes, the rank and the score */
    size_t cap = ql + kl + fl + 96;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *bj = br_srv_model_book_json(sm, it[i].book, &len);
        /* the results' books are scattered over the rendered text, seldom
         * in cache: start every line on its way before the copies below */
        for (size_t o = 0; o < len; o += 64)
            __builtin_prefetch(bj + o);
        cap += len + 24 + 2 * BR_FMT_MAX;
    }
    char *b = malloc(cap);
    if (!b)
        return br_srv_error(cx, 500, NULL, "out of memory");
    char *p = b;
    *p++ = '{';
    p = br_srv_cat(p, query, ql);
    p = BR_SRV_CAT_LIT(p, ",\"model\":{\"generation\":");
    p += br_fmt_uint(p, br_srv_model_generation(sm));
    p = BR_SRV_CAT_LIT(p, ",\"fingerprint\":\"");
    p = br_srv_cat(p, fp, fl);
    p = BR_SRV_CAT_LIT(p, "\"},\"score\":\"");
    p = br_srv_cat(p, score_kind, kl);
    p = BR_SRV_CAT_LIT(p, "\",\"results\":[");
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *bj = br_srv_model_book_json(sm, it[i].book, &len);
        if (i)
            *p++ = ',';
        p = BR_SRV_CAT_LIT(p, "{\"rank\":");
        p += br_fmt_uint(p, i + 1);
        *p++ = ',';
        p = br_srv_cat(p, bj, len);
        if (isfinite(it[i].score)) {
            p = BR_SRV_CAT_LIT(p, ",\"score\":");
            p += br_fmt_g7(p, it[i].score);
            *p++ = '}';
        } else {
            p = BR_SRV_CAT_LIT(p, ",\"score\":null}");
        }
    }
    p = BR_SRV_CAT_LIT(p, "]}\n");
    *p = '\0';
    return br_srv_send(cx, 200, b, (size_t)(p - b), "application/json", NULL);
}

static const char *br_srv_score_kind(const br_srv_model *sm)
{
    return br_model_get_meta(br_srv_model_model(sm))->loss == BR_LOSS_BPR ? "ranking score"
                                                                           : "predicted rating";
}

/* ---- parameters ------------------------------------------------------------------ */

/* Reads ?name=ID (required). 0 and an answer queued on failure. */
static int br_srv_arg_id(br_srv_ctx *cx, const char *name,
                         const char *what, uint32_t *out, int *res)
{
    const char *v = br_srv_arg_get(cx, name);
    if (!v || !*v) {
        *res = br_srv_error(cx, 400, NULL, "missing parameter '%s' (a %s id)", name, what);
        return 0;
    }
    if (!br_parse_id(v, strlen(v), out)) {
        *res = br_srv_error(cx, 400, NULL,
                            "parameter '%s': '%.64s' is not a %s id (a whole number >= 1)", name,
                            v, what);
        return 0;
    }
    return 1;
}

static int br_srv_check_k(br_srv_ctx *cx, long long k,
                          int *res)
{
    if (k < 1 || k > (long long)cx->srv->cfg.max_k) {
        *res = br_srv_error(cx, 400, NULL, "k must be between 1 and %u, not %lld",
                            cx->srv->cfg.max_k, k);
        return 0;
    }
    return 1;
}

/* Reads ?k= (default 10). */
static int br_srv_arg_k(br_srv_ctx *cx, size_t *k,
                        int *res)
{
    const char *v = br_srv_arg_get(cx, "k");
    *k = 10;
    if (!v)
        return br_srv_check_k(cx, (long long)*k, res);
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || v[0] == ' ' || v[0] == '+') {
        *res = br_srv_error(cx, 400, NULL, "parameter 'k': '%.64s' is not a whole number",
                            v);
        return 0;
    }
    if (!br_srv_check_k(cx, x, res))
        return 0;
    *k = (size_t)x;
    return 1;
}

/* Reads ?include_read= (1/0/true/false; default 0). */
static int br_srv_arg_flag(br_srv_ctx *cx, const char *name,
                           int *out, int *res)
{
    const char *v = br_srv_arg_get(cx, name);
    *out = 0;
    if (!v)
        return 1;
    if (!strcmp(v, "1") || !strcmp(v, "true")) {
        *out = 1;
        return 1;
    }
    if (!strcmp(v, "0") || !strcmp(v, "false"))
        return 1;
    *res = br_srv_error(cx, 400, NULL, "parameter '%s': '%.64s' is not 1, 0, true or false",
                        name, v);
    return 0;
}

/* ---- routes ---------------------------------------------------------------------- */

static int br_srv_get_recommend(br_srv_ctx *cx)
{
    int res = 0;
    uint32_t user;
    size_t k;
    int incl;
    if (!br_srv_arg_id(cx, "user", "user", &user, &res) ||
        !br_srv_arg_k(cx, &k, &res) || !br_srv_arg_flag(cx, "include_read", &incl, &res))
        return res;
    br_srv_model *sm = br_srv_acquire(cx);
    const br_rec *rec = br_srv_model_rec(sm);
    int64_t u = br_model_find_user(br_srv_model_model(sm), user);
    br_srv_tls *t;
    if (u < 0) {
        res = br_srv_error(cx, 404, NULL,
                           "user %u is not in the model; for a new reader POST /v1/recommend "
                           "with {\"read\": [book ids]}",
                           user);
    } else if (!(t = br_srv_tls_get(cx->srv, rec))) {
        res = br_srv_error(cx, 500, NULL, "out of memory");
    } else {
        size_t n = 0;
        br_diag d;
        br_err e = br_rec_user_index(rec, t->scratch, (uint32_t)u, k,
                                     incl ? BR_REC_INCLUDE_READ : 0, t->items, &n, &d);
        if (e) {
            res = br_srv_error(cx, br_srv_status_of(e), NULL, "%s", br_diag_text(&d, e));
        } else {
            char q[96];
            br_srv_query_members(q, "user_id", user, k, incl);
            res = br_srv_send_items(cx, sm, q, br_srv_score_kind(sm), t->items, n);
        }
    }
    br_srv_model_unref(sm);
    return res;
}

static int br_srv_post_recommend(br_srv_ctx *cx)
{
    if (cx->q->body_len == 0)
        return br_srv_error(cx, 400, NULL,
                            "empty body: expected JSON {\"read\": [book ids], \"ratings\": "
                            "[1..5, optional], \"k\": 10}");
    json_error_t jerr;
    json_t *root = json_loadb(cx->q->body, cx->q->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return br_srv_error(cx, 400, NULL, "malformed JSON at line %d column %d: %s",
                            jerr.line, jerr.column, jerr.text);
    int res = 0;
    uint32_t *ids = NULL;
    float *ratings = NULL;
    json_t *read = json_object_get(root, "read"), *jr = json_object_get(root, "ratings"),
           *jk = json_object_get(root, "k"), *ji = json_object_get(root, "include_read");
    size_t n = json_is_array(read) ? json_array_size(read) : 0, k = 10;
    if (!json_is_object(root)) {
        res = br_srv_error(cx, 400, NULL, "the body must be a JSON object");
        goto done;
    }
    if (!json_is_array(read) || n == 0) {
        res = br_srv_error(cx, 400, NULL,
                           "'read' must be a non-empty array of book ids");
        goto done;
    }
    if (jr && !json_is_null(jr) && (!json_is_array(jr) || json_array_size(jr) != n)) {
        res = br_srv_error(cx, 400, NULL,
                           "'ratings' must be an array as long as 'read' (%zu numbers)", n);
        goto done;
    }
    if (jk) {
        if (!json_is_integer(jk)) {
            res = br_srv_error(cx, 400, NULL, "'k' must be a whole number");
            goto done;
        }
        if (!br_srv_check_k(cx, (long long)json_integer_value(jk), &res))
            goto done;
        k = (size_t)json_integer_value(jk);
    }
    if (ji && !json_is_boolean(ji)) {
        res = br_srv_error(cx, 400, NULL, "'include_read' must be true or false");
        goto done;
    }
    ids = malloc(n * sizeof *ids);
    if (jr && json_is_array(jr))
        ratings = malloc(n * sizeof *ratings);
    if (!ids || (jr && json_is_array(jr) && !ratings)) {
        res = br_srv_error(cx, 500, NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(read, i);
        json_int_t x = json_is_integer(v) ? json_integer_value(v) : 0;
        if (x < 1 || x > (json_int_t)UINT32_MAX) {
            res = br_srv_error(cx, 400, NULL,
                               "'read'[%zu] is not a book id (a whole number >= 1)", i);
            goto done;
        }
        ids[i] = (uint32_t)x;
        if (ratings) {
            json_t *rv = json_array_get(jr, i);
            if (!json_is_number(rv)) {
                res = br_srv_error(cx, 400, NULL, "'ratings'[%zu] is not a number", i);
                goto done;
            }
            ratings[i] = (float)json_number_value(rv);
        }
    }
    br_srv_model *sm = br_srv_acquire(cx);
    const br_rec *rec = br_srv_model_rec(sm);
    br_srv_tls *t = br_srv_tls_get(cx->srv, rec);
    if (!t) {
        res = br_srv_error(cx, 500, NULL, "out of memory");
    } else {
        size_t got = 0;
        br_diag d;
        br_err e = br_rec_reader(rec, t->scratch, ids, ratings, n, k,
                                 json_is_true(ji) ? BR_REC_INCLUDE_READ : 0, t->items, &got,
                                 &d);
        if (e) {
            res = br_srv_error(cx, br_srv_status_of(e), NULL, "%s", br_diag_text(&d, e));
        } else {
            char q[96];
            br_srv_query_members(q, "read_count", n, k, json_is_true(ji));
            res = br_srv_send_items(cx, sm, q, br_srv_score_kind(sm), t->items, got);
        }
    }
    br_srv_model_unref(sm);
done:
    free(ids);
    free(ratings);
    json_decref(root);
    return res;
}

static int br_srv_get_similar(br_srv_ctx *cx)
{
    int res = 0;
    uint32_t book;
    size_t k;
    if (!br_srv_arg_id(cx, "book", "book", &book, &res) || !br_srv_arg_k(cx, &k, &res))
        return res;
    br_srv_model *sm = br_srv_acquire(cx);
    const br_rec *rec = br_srv_model_rec(sm);
    br_srv_tls *t = br_srv_tls_get(cx->srv, rec);
    if (!t) {
        res = br_srv_error(cx, 500, NULL, "out of memory");
    } else {
        size_t n = 0;
        br_diag d;
        br_err e = br_rec_similar(rec, t->scratch, book, k, t->items, &n, &d);
        if (e) {
            res = br_srv_error(cx, br_srv_status_of(e), NULL, "%s", br_diag_text(&d, e));
        } else {
            char q[96];
            br_srv_query_members(q, "book_id", book, k, -1);
            res = br_srv_send_items(cx, sm, q, "cosine", t->items, n);
        }
    }
    br_srv_model_unref(sm);
    return res;
}

static int br_srv_get_book(br_srv_ctx *cx,
                                       const char *idtext)
{
    uint32_t id;
    if (!*idtext)
        return br_srv_error(cx, 400, NULL, "missing book id: GET /v1/books/ID");
    if (!br_parse_id(idtext, strlen(idtext), &id))
        return br_srv_error(cx, 400, NULL,
                            "'%.64s' is not a book id (a whole number >= 1)", idtext);
    br_srv_model *sm = br_srv_acquire(cx);
    const br_model *m = br_srv_model_model(sm);
    int64_t b = br_model_find_book(m, id);
    int res;
    if (b < 0) {
        res = br_srv_error(cx, 404, NULL, "book %u is not in the model", id);
    } else {
        br_book bk;
        br_model_book_info(m, (uint32_t)b, &bk);
        json_t *o = json_object();
        json_object_set_new(o, "book_id", json_integer(id));
        json_object_set_new(o, "title", br_srv_json_str(bk.title));
        json_object_set_new(o, "authors", br_srv_json_str(bk.authors));
        json_object_set_new(o, "year", bk.year ? json_integer(bk.year) : json_null());
        json_object_set_new(o, "average_rating",
                            isfinite(bk.avg_rating) ? json_real(bk.avg_rating) : json_null());
        json_object_set_new(o, "ratings_count", json_integer(bk.ratings_count));
        json_object_set_new(o, "genre", *bk.genre ? br_srv_json_str(bk.genre) : json_null());
        json_object_set_new(o, "goodreads_id", bk.goodreads_id
                                                   ? json_integer((json_int_t)bk.goodreads_id)
                                                   : json_null());
        res = br_srv_send_json(cx, 200, o, NULL);
    }
    br_srv_model_unref(sm);
    return res;
}

/* {"status":"ok",<the model's status members>,"in_flight":N,"uptime_seconds":R}:
 * all but the last two members were rendered when the model was loaded. */
static int br_srv_get_healthz(br_srv_ctx *cx)
{
    br_srv *s = cx->srv;
    br_srv_model *sm = br_srv_acquire(cx);
    size_t len;
    const char *members = br_srv_model_status_json(sm, &len);
    char *b = malloc(len + 64 + 2 * BR_FMT_MAX);
    if (b) {
        char *p = BR_SRV_CAT_LIT(b, "{\"status\":\"ok\",");
        p = br_srv_cat(p, members, len);
        p = BR_SRV_CAT_LIT(p, ",\"in_flight\":");
        p += br_fmt_uint(p, atomic_load(&s->in_flight));
        p = BR_SRV_CAT_LIT(p, ",\"uptime_seconds\":");
        p += br_fmt_json_real7(p, (double)br_srv_mono_ns() * 1e-9 - s->started_mono);
        p = BR_SRV_CAT_LIT(p, "}\n");
        *p = '\0';
        len = (size_t)(p - b);
    }
    br_srv_model_unref(sm);
    if (!b)
        return br_srv_error(cx, 500, NULL, "out of memory");
    return br_srv_send(cx, 200, b, len, "application/json", NULL);
}

/* Prometheus text exposition of the counters. */
static int br_srv_get_metrics(br_srv_ctx *cx)
{
    br_srv *s = cx->srv;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return br_srv_error(cx, 500, NULL, "out of memory");
    const br_srv_metrics *mx = &s->metrics;
    fputs("# HELP bookrec_http_requests_total HTTP requests answered, by route, method and "
          "status.\n# TYPE bookrec_http_requests_total counter\n",
          f);
    for (int r = 0; r < RT__COUNT; r++)
        for (int m = 0; m < MT__COUNT; m++)
            for (size_t c = 0; c < ST__COUNT; c++) {
                unsigned long v = atomic_load_explicit(&mx->requests[r][m][c],
                                                       memory_order_relaxed);
                if (!v)
                    continue;
                char code[8];
                if (c < BR_SRV_N_CODES)
                    snprintf(code, sizeof code, "%u", br_srv_codes[c]);
                else
                    snprintf(code, sizeof code, "%s", c == ST_OTHER ? "other" : "none");
                fprintf(f, "bookrec_http_requests_total{route=\"%s\",method=\"%s\",code=\"%s\"} %lu\n",
                        br_srv_route_name[r], br_srv_method_name[m], code, v);
            }
    fputs("# HELP bookrec_http_request_duration_seconds Time from the request line to the "
          "last byte of the answer.\n# TYPE bookrec_http_request_duration_seconds histogram\n",
          f);
    for (int r = 0; r < RT__COUNT; r++) {
        unsigned long cum = 0;
        for (size_t b = 0; b <= BR_SRV_N_BUCKETS; b++) {
            cum += atomic_load_explicit(&mx->hist[r][b], memory_order_relaxed);
            if (b < BR_SRV_N_BUCKETS)
                fprintf(f, "bookrec_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %lu\n",
                        br_srv_route_name[r], br_srv_buckets[b], cum);
            else
                fprintf(f, "bookrec_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %lu\n",
                        br_srv_route_name[r], cum);
        }
        fprintf(f, "bookrec_http_request_duration_seconds_sum{route=\"%s\"} %.9f\n",
                br_srv_route_name[r],
                (double)atomic_load_explicit(&mx->hist_sum_ns[r], memory_order_relaxed) * 1e-9);
        fprintf(f, "bookrec_http_request_duration_seconds_count{route=\"%s\"} %lu\n",
                br_srv_route_name[r], cum);
    }
    br_srv_model *sm = br_srv_acquire(cx);
    const br_model *m = br_srv_model_model(sm);
    const br_model_meta *mt = br_model_get_meta(m);
    fprintf(f,
            "# HELP bookrec_model_info The served model (value 1): fingerprint is its file "
            "checksum.\n# TYPE bookrec_model_info gauge\n"
            "bookrec_model_info{fingerprint=\"%016llx\",generation=\"%llu\",kind=\"%s\","
            "loss=\"%s\",dim=\"%u\",format_version=\"%d\"} 1\n",
            (unsigned long long)br_model_checksum(m),
            (unsigned long long)br_srv_model_generation(sm), br_srv_model_kind_name(mt->kind),
            mt->loss == BR_LOSS_BPR ? "bpr" : "mse", mt->dim, BR_MODEL_VERSION);
    fprintf(f,
            "# HELP bookrec_model_generation Loads of the model file (1 + successful reloads).\n"
            "# TYPE bookrec_model_generation gauge\nbookrec_model_generation %llu\n",
            (unsigned long long)br_srv_model_generation(sm));
    fprintf(f,
            "# HELP bookrec_model_loaded_timestamp_seconds When the served model was loaded "
            "(Unix time).\n# TYPE bookrec_model_loaded_timestamp_seconds gauge\n"
            "bookrec_model_loaded_timestamp_seconds %.3f\n",
            br_srv_model_loaded_unix(sm));
    fprintf(f,
            "# HELP bookrec_model_load_duration_seconds Time to map and validate the served "
            "model.\n# TYPE bookrec_model_load_duration_seconds gauge\n"
            "bookrec_model_load_duration_seconds %.6f\n",
            br_srv_model_load_seconds(sm));
    br_srv_model_unref(sm);
    fprintf(f,
            "# HELP bookrec_model_reloads_total Reload attempts (SIGHUP), by result.\n"
            "# TYPE bookrec_model_reloads_total counter\n"
            "bookrec_model_reloads_total{result=\"ok\"} %lu\n"
            "bookrec_model_reloads_total{result=\"failed\"} %lu\n",
            atomic_load(&mx->reloads_ok), atomic_load(&mx->reloads_failed));
    fprintf(f,
            "# HELP bookrec_http_requests_in_flight Requests started and not yet answered.\n"
            "# TYPE bookrec_http_requests_in_flight gauge\nbookrec_http_requests_in_flight %u\n",
            atomic_load(&s->in_flight));
    fprintf(f,
            "# HELP bookrec_models_live Model mappings alive (more than 1 while old requests "
            "finish after a reload).\n# TYPE bookrec_models_live gauge\nbookrec_models_live %ld\n",
            br_srv_model_live());
    if (fclose(f) != 0 || !buf) {
        free(buf);
        return br_srv_error(cx, 500, NULL, "out of memory");
    }
    return br_srv_send(cx, 200, buf, len, "text/plain; version=0.0.4; charset=utf-8", NULL);
}

/* ---- libmicrohttpd callbacks -------------------------------------------------- */

static int br_srv_route_of(const char *url)
{
    if (!strcmp(url, "/v1/recommend"))
        return RT_RECOMMEND;
    if (!strcmp(url, "/v1/similar"))
        return RT_SIMILAR;
    if (!strncmp(url, "/v1/books/", 10))
        return RT_BOOKS;
    if (!strcmp(url, "/healthz"))
        return RT_HEALTHZ;
    if (!strcmp(url, "/metrics"))
        return RT_METRICS;
    return RT_OTHER;
}

static int br_srv_method_of(const char *m)
{
    if (!strcmp(m, MHD_HTTP_METHOD_GET))
        return MT_GET;
    if (!strcmp(m, MHD_HTTP_METHOD_HEAD))
        return MT_HEAD;
    if (!strcmp(m, MHD_HTTP_METHOD_POST))
        return MT_POST;
    return MT_OTHER;
}

/* ---- the request handler, without HTTP ------------------------------------------- */

/* The first argument whose key or value holds a NUL ("user=1%00x" would
 * otherwise read as user 1), or NULL. */
static const br_srv_arg *br_srv_arg_with_nul(const br_srv_query *q)
{
    for (size_t i = 0; i < q->n_args; i++) {
        const br_srv_arg *a = &q->args[i];
        if ((a->key && strlen(a->key) != a->key_len) ||
            (a->value && strlen(a->value) != a->value_len))
            return a;
    }
    return NULL;
}

br_err br_srv_answer(br_srv *s, const br_srv_query *q, br_srv_reply *out)
{
    memset(out, 0, sizeof *out);
    if (!s || !q || !q->method || !q->path || (q->n_args && !q->args) ||
        (q->body_len && !q->body))
        return BR_ERR_ARG;
    br_srv_ctx cx = {s, q, out};
    int route = br_srv_route_of(q->path), method = br_srv_method_of(q->method);
    int get = method == MT_GET || method == MT_HEAD;
    int ok = 0;
    const br_srv_arg *bad;
    if (route == RT_RECOMMEND && method == MT_POST && q->body_len > s->cfg.max_body) {
        ok = br_srv_error(&cx, 413, NULL, "body of %zu bytes is over the limit of %zu bytes",
                          q->body_len, s->cfg.max_body);
    } else if (route == RT_OTHER) {
        ok = br_srv_error(&cx, 404, NULL, "no route %.200s %.200s", q->method, q->path);
    } else if (route == RT_RECOMMEND && method == MT_POST) {
        ok = br_srv_post_recommend(&cx);
    } else if (!get) {
        ok = br_srv_error(&cx, 405, route == RT_RECOMMEND ? "GET, HEAD, POST" : "GET, HEAD",
                          "method %.32s is not allowed on %s", q->method,
                          br_srv_route_name[route]);
    } else if ((bad = br_srv_arg_with_nul(q))) {
        ok = br_srv_error(&cx, 400, NULL, "query argument '%.64s' has a NUL byte (%%00)",
                          bad->key);
    } else {
        switch (route) {
        case RT_RECOMMEND:
            ok = br_srv_get_recommend(&cx);
            break;
        case RT_SIMILAR:
            ok = br_srv_get_similar(&cx);
            break;
        case RT_BOOKS:
            ok = br_srv_get_book(&cx, q->path + 10);
            break;
        case RT_HEALTHZ:
            ok = br_srv_get_healthz(&cx);
            break;
        default:
            ok = br_srv_get_metrics(&cx);
            break;
        }
    }
    if (!ok) {
        uint64_t g = out->generation;
        br_srv_reply_free(out);
        out->generation = g;
        return BR_ERR_NOMEM;
    }
    return BR_OK;
}

void br_srv_reply_free(br_srv_reply *r)
{
    if (!r)
        return;
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* The first thing libmicrohttpd calls for a request: the request's state
 * starts here (and is freed in br_srv_completed). */
static void *br_srv_uri_cb(void *cls, const char *uri, struct MHD_Connection *con)
{
    br_srv *s = cls;
    br_srv_req *rq = calloc(1, sizeof *rq);
    if (!rq)
        return NULL;
    rq->srv = s;
    rq->t0_ns = br_srv_mono_ns();
    atomic_fetch_add(&s->in_flight, 1);
    size_t n = strcspn(uri, "?");   /* the route, until the access handler says better */
    if (n >= sizeof rq->uri)
        n = sizeof rq->uri - 1;
    memcpy(rq->uri, uri, n);
    rq->uri[n] = '\0';
    rq->route = br_srv_route_of(rq->uri);
    rq->method = MT_OTHER;
    if (s->cfg.access_log) {
        n = strlen(uri);
        if (n >= sizeof rq->uri)
            n = sizeof rq->uri - 1;
        memcpy(rq->uri, uri, n);
        rq->uri[n] = '\0';
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const struct sockaddr *sa = ci ? ci->client_addr : NULL;
        if (sa && sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, rq->client,
                      sizeof rq->client);
        else if (sa && sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, rq->client,
                      sizeof rq->client);
        else
            strcpy(rq->client, "-");
    }
    return rq;
}

/* Appends s to the log line in logfmt quoting (", \ and control bytes escaped). */
static size_t br_srv_logfmt_quote(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    if (o < cap)
        out[o++] = '"';
    for (; *s && o + 5 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    if (o < cap)
        out[o++] = '"';
    return o;
}

static void br_srv_access_log(br_srv *s, const br_srv_req *rq, const char *method,
                              double seconds)
{
    char line[BR_SRV_URI_MAX * 4 + 512];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t o = strftime(line, 32, "time=%Y-%m-%dT%H:%M:%S", &tm);
    o += (size_t)snprintf(line + o, sizeof line - o, ".%03ldZ client=%s method=%s uri=",
                          ts.tv_nsec / 1000000, rq->client[0] ? rq->client : "-", method);
    o += br_srv_logfmt_quote(line + o, sizeof line - o - 200, rq->uri);
    char st[16];
    if (rq->status)
        snprintf(st, sizeof st, "%u", rq->status);
    else
        strcpy(st, "none");
    o += (size_t)snprintf(line + o, sizeof line - o,
                          " route=%s status=%s bytes=%zu duration_us=%.0f model=%llu\n",
                          br_srv_route_name[rq->route], st, rq->resp_bytes, seconds * 1e6,
                          (unsigned long long)rq->generation);
    if (o >= sizeof line)
        o = sizeof line - 1;
    fwrite(line, 1, o, s->cfg.access_log);   /* one call: lines never interleave */
    fflush(s->cfg.access_log);
}

static void br_srv_completed(void *cls, struct MHD_Connection *con, void **req_cls,
                             enum MHD_RequestTerminationCode toe)
{
    br_srv *s = cls;
    br_srv_req *rq = *req_cls;
    if (!rq)
        return;
    *req_cls = NULL;
    double sec = (double)(br_srv_mono_ns() - rq->t0_ns) * 1e-9;
    size_t st = ST_NONE;
    if (rq->status) {
        st = ST_OTHER;
        for (size_t i = 0; i < BR_SRV_N_CODES; i++)
            if (br_srv_codes[i] == rq->status)
                st = i;
    }
    br_srv_metrics *mx = &s->metrics;
    atomic_fetch_add_explicit(&mx->requests[rq->route][rq->method][st], 1, memory_order_relaxed);
    size_t b = 0;
    while (b < BR_SRV_N_BUCKETS && sec > br_srv_buckets[b])
        b++;
    atomic_fetch_add_explicit(&mx->hist[rq->route][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&mx->hist_sum_ns[rq->route], (unsigned long)(sec * 1e9),
                              memory_order_relaxed);
    if (s->cfg.access_log) {
        br_srv_access_log(s, rq, rq->method_text[0] ? rq->method_text : "-", sec);
    }
    free(rq->body);
    free(rq);
    atomic_fetch_sub(&s->in_flight, 1);
}

/* Queues a reply made by br_srv_answer (its body is taken over). */
static enum MHD_Result br_srv_queue(br_srv_req *rq, struct MHD_Connection *con, br_srv_reply *rp)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(rp->len, rp->body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        br_srv_reply_free(rp);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, rp->type);
    if (rp->allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, rp->allow);
    if (atomic_load_explicit(&rq->srv->stopping, memory_order_relaxed))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(con, rp->status, r);
    MHD_destroy_response(r);
    if (ok == MHD_YES) {
        rq->status = rp->status;
        rq->resp_bytes = rp->len;
    }
    return ok;
}

/* Queues an error made here, for what only the HTTP layer sees (431, 413
 * of a body not kept, out of memory). */
static enum MHD_Result br_srv_queue_error(br_srv_req *rq, struct MHD_Connection *con,
                                          unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static enum MHD_Result br_srv_queue_error(br_srv_req *rq, struct MHD_Connection *con,
                                          unsigned status, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    br_srv_reply r = {0};
    br_srv_query q = {0};
    br_srv_ctx cx = {rq->srv, &q, &r};
    if (!br_srv_error(&cx, status, NULL, "%s", msg))
        return MHD_NO;
    return br_srv_queue(rq, con, &r);
}

/* The query arguments libmicrohttpd decoded, in order. */
typedef struct br_srv_args {
    br_srv_arg *v;
    size_t n, cap;
    int oom;
} br_srv_args;

static enum MHD_Result br_srv_collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                          size_t key_len, const char *value, size_t value_len)
{
    br_srv_args *a = cls;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 8;
        br_srv_arg *v = realloc(a->v, cap * sizeof *v);
        if (!v) {
            a->oom = 1;
            return MHD_NO;
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = (br_srv_arg){key, value, key_len, value ? value_len : 0};
    return MHD_YES;
}

static enum MHD_Result br_srv_count_header(void *cls, enum MHD_ValueKind kind,
                                           const char *key, const char *value)
{
    *(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4;   /* ": " and CRLF */
    return MHD_YES;
}

static enum MHD_Result br_srv_handle(void *cls, struct MHD_Connection *con, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **req_cls)
{
    br_srv *s = cls;
    br_srv_req *rq = *req_cls;
    if (!rq)
        return MHD_NO;   /* out of memory in the URI callback: drop the connection */
    if (!rq->seen) {
        /* Only note the request on the first call: an answer queued before
         * the request is fully read makes libmicrohttpd close the
         * connection, so answers wait for the next call (the 413 for a
         * declared oversized body is the exception: closing is wanted). */
        rq->seen = 1;
        rq->route = br_srv_route_of(url);
        rq->method = br_srv_method_of(method);
        snprintf(rq->method_text, sizeof rq->method_text, "%s", method);
        for (char *c = rq->method_text; *c; c++)   /* keep the log line parseable */
            if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || *c == '-' || *c == '_'))
                *c = '_';
        size_t hbytes = strlen(url) + strlen(method) + 16;
        MHD_get_connection_values(con, MHD_HEADER_KIND, br_srv_count_header, &hbytes);
        if (hbytes > s->cfg.max_header)
            return br_srv_queue_error(rq, con, 431,
                                      "request line and headers of %zu bytes are over the limit "
                                      "of %zu bytes", hbytes, s->cfg.max_header);
        if (rq->route == RT_RECOMMEND && rq->method == MT_POST) {
            const char *cl =
                MHD_lookup_connection_value(con, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (cl && strtoull(cl, NULL, 10) > s->cfg.max_body) {
                rq->body_too_big = 1;
                return br_srv_queue_error(rq, con, 413,
                                          "body of %.20s bytes is over the limit of %zu bytes",
                                          cl, s->cfg.max_body);
            }
        }
        return MHD_YES;
    }
    if (rq->status)
        return MHD_YES;   /* answered already (early 413); the rest is discarded */
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rq->route != RT_RECOMMEND || rq->method != MT_POST)
            return MHD_YES;   /* a body nobody asked for: ignored */
        if (rq->body_too_big || rq->body_len + n > s->cfg.max_body) {
            /* A chunked body over the limit: libmicrohttpd cannot answer in
             * the middle of an upload, so the rest is read and dropped and
             * the 413 goes out at its end; a body 16 times over the limit
             * is not worth reading and the connection is closed. */
            rq->body_too_big = 1;
            rq->body_len += n;
            return rq->body_len / 16 > s->cfg.max_body ? MHD_NO : MHD_YES;
        }
        if (rq->body_len + n > rq->body_cap) {
            size_t cap = rq->body_cap ? rq->body_cap : 4096;
            while (cap < rq->body_len + n)
                cap *= 2;
            char *p = realloc(rq->body, cap);
            if (!p)
                return br_srv_queue_error(rq, con, 500, "out of memory");
            rq->body = p;
            rq->body_cap = cap;
        }
        memcpy(rq->body + rq->body_len, upload_data, n);
        rq->body_len += n;
        return MHD_YES;
    }
    if (rq->body_too_big)
        return br_srv_queue_error(rq, con, 413, "body of %zu bytes is over the limit of %zu bytes",
                                  rq->body_len, s->cfg.max_body);
    /* rq->uri starts with the path as sent: a "%00" there would cut the
     * decoded path short ("/v1/books/3%00x" read as book 3) */
    size_t plen = strcspn(rq->uri, "?");
    if (memmem(rq->uri, plen, "%00", 3))
        return br_srv_queue_error(rq, con, 400, "the path has a NUL byte (%%00)");
    br_srv_args args = {0};
    MHD_get_connection_values_n(con, MHD_GET_ARGUMENT_KIND, br_srv_collect_arg, &args);
    if (args.oom) {
        free(args.v);
        return br_srv_queue_error(rq, con, 500, "out of memory");
    }
    br_srv_query q = {method, url, args.v, args.n, rq->body, rq->body_len};
    br_srv_reply r;
    br_err e = br_srv_answer(s, &q, &r);
    free(args.v);
    rq->generation = r.generation;
    if (e)
        return MHD_NO;   /* not even an error answer could be made */
    return br_srv_queue(rq, con, &r);
}

static void br_srv_mhd_log(void *cls, const char *fmt, va_list ap)
{
    br_srv *s = cls;
    if (!s->cfg.log)
        return;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    s->cfg.log(s->cfg.log_ctx, msg);
}

/* A line of ours to the log callback, as libmicrohttpd's go. */
static void br_srv_note(br_srv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void br_srv_note(br_srv *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    br_srv_mhd_log(s, fmt, ap);
    va_end(ap);
}

/* ---- lifecycle ----------------------------------------------------------------- */

void br_srv_config_default(br_srv_config *c)
{
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 8080;
    c->threads = 2;
    c->max_k = 1000;
    c->max_body = 1u << 20;
    c->max_header = 32u << 10;
    c->max_connections = 1024;
    c->timeout_s = 30;
    c->pin = 1;
}

br_err br_srv_create(const br_srv_config *c, const char *model_path, br_srv **out,
                     br_diag *diag)
{
    if (!c || !model_path || !out)
        return br_fail(diag, BR_ERR_ARG, "NULL argument");
    *out = NULL;
    if (!c->host || !*c->host)
        return br_fail(diag, BR_ERR_ARG, "no host to listen on");
    if (c->port > 65535)
        return br_fail(diag, BR_ERR_ARG, "port %u is outside 0..65535", c->port);
    if (c->threads < 1 || c->threads > 1024)
        return br_fail(diag, BR_ERR_ARG, "threads must be between 1 and 1024, not %u",
                       c->threads);
    if (c->max_k < 1)
        return br_fail(diag, BR_ERR_ARG, "the k limit must be at least 1");
    if (c->max_body < 16)
        return br_fail(diag, BR_ERR_ARG, "the body limit must be at least 16 bytes");
    if (c->max_header < 1024)
        return br_fail(diag, BR_ERR_ARG, "the header limit must be at least 1024 bytes");
    if (c->max_connections < 1)
        return br_fail(diag, BR_ERR_ARG, "the connection limit must be at least 1");
    if (c->timeout_s < 1)
        return br_fail(diag, BR_ERR_ARG, "the connection timeout must be at least 1 s");
    br_srv *s = calloc(1, sizeof *s);
    if (!s)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    s->cfg = *c;
    s->listen_fd = -1;
    s->wake_fd = -1;
    s->host = strdup(c->host);
    s->model_path = strdup(model_path);
    if (!s->host || !s->model_path) {
        br_srv_free(s);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    s->cfg.host = s->host;
    if (pthread_key_create(&s->tls_key, br_srv_tls_free) != 0) {
        br_srv_free(s);
        return br_fail(diag, BR_ERR_NOMEM, "cannot create a thread key");
    }
    s->tls_key_ok = 1;
    br_srv_model *m = NULL;
    br_err e = br_srv_model_open(model_path, 1, &m, diag);
    if (!e && (e = br_srv_model_cell_create(m, &s->cell, diag)) != BR_OK)
        br_srv_model_unref(m);
    if (e) {
        br_srv_free(s);
        return e;
    }
    s->generation = 1;
    s->started_mono = (double)br_srv_mono_ns() * 1e-9;
    *out = s;
    return BR_OK;
}

/* Every connection is a file descriptor. When the soft RLIMIT_NOFILE is
 * too low for the connection limit (1,024, the usual default, is), accept()
 * fails with EMFILE near the limit and libmicrohttpd stops accepting for a
 * while: every new client, /healthz included, waits seconds. So the soft
 * limit is raised (up to the hard one) to the connection limit plus room
 * for the listening socket, each worker's epoll and wake-up descriptors and
 * the model and logs; if even the hard limit is too low, the connection
 * limit is lowered to what fits (and logged), so a full server refuses new
 * connections at once instead. Returns the connection limit to use. */
static unsigned br_srv_fit_connections(br_srv *s)
{
    rlim_t want = (rlim_t)s->cfg.max_connections + 32 + 4 * (rlim_t)s->cfg.threads;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur >= want)
        return s->cfg.max_connections;
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        rl.rlim_cur = old;
    if (rl.rlim_cur >= want)
        return s->cfg.max_connections;
    rlim_t room = rl.rlim_cur > want - s->cfg.max_connections
                      ? rl.rlim_cur - (want - s->cfg.max_connections) : 1;
    br_srv_note(s, "connection limit lowered from %u to %u: only %llu file descriptors "
                "allowed (ulimit -n)", s->cfg.max_connections, (unsigned)room,
                (unsigned long long)rl.rlim_cur);
    return (unsigned)room;
}

/* ---- accepting connections -------------------------------------------------------
 * libmicrohttpd's own accept, with a pool of workers, lets whichever worker
 * wakes first take up to ten connections in a row: 32 connections opened at
 * once by wrk ended up 32/0, 25/7 or 18/14 between two workers, at random,
 * and a request waits behind the others of its worker (the latency, and
 * its tail, are that worker's queue; with 32/0 one core served everything).
 * So the server listens and accepts itself, on one thread, and hands each
 * connection (MHD_add_connection) to the worker, one libmicrohttpd daemon
 * with one thread each, that has the fewest open connections.
 *
 * The connection limit stays what it was: at the limit the acceptor stops
 * taking connections, which wait in the listen backlog until one closes
 * (each daemon's own limit is out of reach, so libmicrohttpd never refuses
 * one). A worker's open connections are those handed to it less those it
 * reported closed; one it failed to start (out of memory, in its thread)
 * is never reported, so after a second at the limit without a hand-over
 * only those it reported started count. */

typedef struct br_srv_worker {
    br_srv *srv;
    struct MHD_Daemon *daemon;
    unsigned long handed;             /* the acceptor's own count */
    atomic_ulong started, closed;     /* libmicrohttpd's notifications */
    int cpu;                          /* pinned to, or -1 */
} br_srv_worker;

static void br_srv_conn_notify(void *cls, struct MHD_Connection *con, void **socket_ctx,
                               enum MHD_ConnectionNotificationCode toe)
{
    br_srv_worker *w = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add(&w->started, 1);
        return;
    }
    atomic_fetch_add(&w->closed, 1);
    if (atomic_load(&w->srv->at_limit)) {   /* the acceptor waits for this */
        uint64_t one = 1;
        (void)!write(w->srv->wake_fd, &one, sizeof one);
    }
}

static void br_srv_nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The worker with the fewest open connections, and the total open. */
static br_srv_worker *br_srv_least_busy(br_srv *s, unsigned long *total)
{
    br_srv_worker *best = NULL;
    unsigned long best_n = 0;
    *total = 0;
    for (unsigned i = 0; i < s->cfg.threads; i++) {
        br_srv_worker *w = &s->workers[i];
        unsigned long n = w->handed - atomic_load(&w->closed);
        *total += n;
        if (!best || n < best_n) {
            best = w;
            best_n = n;
        }
    }
    return best;
}

static void *br_srv_accept_main(void *p)
{
    br_srv *s = p;
    while (!atomic_load(&s->acceptor_stop)) {
        unsigned long total;
        br_srv_least_busy(s, &total);
        int room = total < s->conn_limit;
        if (!room) {
            /* announce the wait, then look again: a close in between
             * either is seen here or writes to wake_fd */
            atomic_store(&s->at_limit, 1);
            br_srv_least_busy(s, &total);
            room = total < s->conn_limit;
        }
        struct pollfd pf[2] = {{s->listen_fd, room ? POLLIN : 0, 0}, {s->wake_fd, POLLIN, 0}};
        int r = poll(pf, 2, room ? -1 : 1000);
        atomic_store(&s->at_limit, 0);
        if (r < 0) {
            if (errno != EINTR)
                br_srv_nap_ms(10);
            continue;
        }
        if (pf[1].revents & POLLIN) {
            uint64_t v;
            (void)!read(s->wake_fd, &v, sizeof v);
        }
        if (r == 0) {
            /* a second at the limit with nothing handed over: what was
             * handed and never started has failed, and will never close */
            for (unsigned i = 0; i < s->cfg.threads; i++) {
                unsigned long started = atomic_load(&s->workers[i].started);
                if (s->workers[i].handed > started)
                    s->workers[i].handed = started;
            }
            continue;
        }
        if (!(pf[0].revents & POLLIN))
            continue;
        /* what the backlog holds, while there is room */
        for (;;) {
            br_srv_worker *w = br_srv_least_busy(s, &total);
            if (total >= s->conn_limit)
                break;
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            int fd = accept4(s->listen_fd, (struct sockaddr *)&ss, &sl,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EINTR || errno == ECONNABORTED)
                    continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    br_srv_nap_ms(10);   /* out of descriptors or memory: the
                                          * connection waits in the backlog */
                break;
            }
            /* it closes fd when it cannot take it */
            if (MHD_add_connection(w->daemon, fd, (struct sockaddr *)&ss, sl) == MHD_YES)
                w->handed++;
        }
    }
    return NULL;
}

/* The listening socket on s->addr, as libmicrohttpd would make it
 * (SO_REUSEADDR; IPv6 only for an IPv6 address; a backlog of 1,024), its
 * port in s->port. -1 and errno on failure. */
static int br_srv_listen(br_srv *s, int v6)
{
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (v6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
    socklen_t al = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    struct sockaddr_storage bound;
    socklen_t bl = sizeof bound;
    if (bind(fd, (struct sockaddr *)&s->addr, al) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&bound, &bl) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    s->port = ntohs(v6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                       : ((struct sockaddr_in *)&bound)->sin_port);
    return fd;
}

/* Stops the workers' daemons (those started) and closes the listening
 * socket and the acceptor's eventfd (the acceptor has ended, or never ran). */
static void br_srv_close_workers(br_srv *s)
{
    for (unsigned i = 0; s->workers && i < s->cfg.threads; i++)
        if (s->workers[i].daemon)
            MHD_stop_daemon(s->workers[i].daemon);
    free(s->workers);
    s->workers = NULL;
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    s->listen_fd = s->wake_fd = -1;
}

/* ---- pinning workers -------------------------------------------------------------
 * With wrk's 32 connections on this 2-core machine, workers free to move
 * often ended up on one core with the load generator on the other, and a
 * request then waited for its worker's turn: /v1/recommend's p99 was
 * 1.29-3.66 ms with the workers free against 1.23-1.81 ms pinned, one per
 * core, in alternated rounds (bench/bench_server.sh). Pinning is done only
 * when the workers are as many as the CPUs the starting thread may use (the
 * default -j): a server given all of them. One of -j 2 on a larger machine
 * stays free, so that two such servers do not crowd onto the same two CPUs.
 * A new thread takes its creator's affinity, so the starting thread sets its
 * own to the worker's CPU while the worker's daemon starts, and puts its own
 * mask back after. */

/* Fills cpus with the CPUs the calling thread may run on (up to max, in
 * order); their count, or 0 if the mask cannot be read. */
static unsigned br_srv_allowed_cpus(cpu_set_t *mask, int *cpus, unsigned max)
{
    unsigned n = 0;
    if (pthread_getaffinity_np(pthread_self(), sizeof *mask, mask) != 0)
        return 0;   /* e.g. more CPUs than a cpu_set_t holds: no pinning */
    for (int c = 0; c < CPU_SETSIZE && n < max; c++)
        if (CPU_ISSET(c, mask))
            cpus[n++] = c;
    return n;
}

/* Restricts the calling thread to cpu; 0 on success. */
static int br_srv_run_on(int cpu)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return pthread_setaffinity_np(pthread_self(), sizeof one, &one);
}

/* Gives the calling thread back its mask own. */
static void br_srv_unpin(br_srv *s, const cpu_set_t *own)
{
    int rc = pthread_setaffinity_np(pthread_self(), sizeof *own, own);
    if (rc)
        br_srv_note(s, "cannot give the starting thread back its CPUs after pinning a "
                    "worker: %s", strerror(rc));
}

int br_srv_worker_cpu(const br_srv *s, unsigned i)
{
    return s && s->workers && i < s->cfg.threads ? s->workers[i].cpu : -1;
}

br_err br_srv_start(br_srv *s, br_diag *diag)
{
    if (!s || s->workers || s->stopped)
        return br_fail(diag, BR_ERR_ARG, "the server is already started or stopped");
    /* "[::1]" -> "::1" */
    char host[256];
    snprintf(host, sizeof host, "%s", s->host);
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gr = getaddrinfo(host, NULL, &hints, &ai);
    if (gr != 0 || !ai)
        return br_fail(diag, BR_ERR_ARG, "cannot resolve host '%s': %s", s->host,
                       gai_strerror(gr));
    memset(&s->addr, 0, sizeof s->addr);
    memcpy(&s->addr, ai->ai_addr, ai->ai_addrlen);
    int v6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    if (v6)
        ((struct sockaddr_in6 *)&s->addr)->sin6_port = htons((uint16_t)s->cfg.port);
    else
        ((struct sockaddr_in *)&s->addr)->sin_port = htons((uint16_t)s->cfg.port);

    s->conn_limit = br_srv_fit_connections(s);
    s->listen_fd = br_srv_listen(s, v6);
    if (s->listen_fd < 0)
        return br_fail(diag, BR_ERR_IO, "cannot listen on %s port %u (in use, or not an "
                       "address of this machine?): %s", s->host, s->cfg.port, strerror(errno));
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->wake_fd < 0) {
        br_err e = br_fail(diag, BR_ERR_IO, "eventfd: %s", strerror(errno));
        br_srv_close_workers(s);
        return e;
    }
    /* MHD_USE_ITC: a connection handed over wakes its worker at once */
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                     MHD_USE_NO_LISTEN_SOCKET;
    struct MHD_OptionItem opts[16];
    int n = 0;
    /* the acceptor keeps the limit: each worker may take all of it */
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, s->conn_limit, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, s->cfg.timeout_s, NULL};
    /* libmicrohttpd answers headers that do not fit its per-connection
     * memory with its own (HTML) 431; give it room for twice the limit so
     * that, up to there, the handler answers the JSON 431 itself. (It
     * zeroes that memory for every request of a kept-alive connection, 2 us
     * at 80 KB; a smaller pool, with an 8 KiB limit, saved that but cost a
     * TSan build 80+ MB for 1,000 idle connections, its allocator touching
     * blocks of up to 64 KiB, so the 32 KiB default stays.) */
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                        (intptr_t)(2 * s->cfg.max_header + 16384), NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    s->workers = calloc(s->cfg.threads, sizeof *s->workers);
    int ok = s->workers != NULL;
    cpu_set_t own;
    int cpus[1025];   /* threads <= 1024 (br_srv_create); one more tells "more CPUs" */
    unsigned n_cpus = s->cfg.pin ? br_srv_allowed_cpus(&own, cpus, 1025) : 0;
    int pin = n_cpus == s->cfg.threads, rc;
    for (unsigned i = 0; ok && i < s->cfg.threads; i++) {
        br_srv_worker *w = &s->workers[i];
        w->srv = s;
        w->cpu = -1;
        if (pin && (rc = br_srv_run_on(cpus[i])) == 0) {   /* the daemon's thread inherits it */
            w->cpu = cpus[i];
        } else if (pin) {
            br_srv_note(s, "cannot pin worker %u to CPU %d: %s; it and the next run on any "
                        "CPU", i, cpus[i], strerror(rc));
            br_srv_unpin(s, &own);
            pin = 0;
        }
        w->daemon = MHD_start_daemon(
            flags, 0, NULL, NULL, br_srv_handle, s, MHD_OPTION_EXTERNAL_LOGGER, br_srv_mhd_log,
            s, MHD_OPTION_URI_LOG_CALLBACK, br_srv_uri_cb, s, MHD_OPTION_NOTIFY_COMPLETED,
            br_srv_completed, s, MHD_OPTION_NOTIFY_CONNECTION, br_srv_conn_notify, w,
            MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
        ok = w->daemon != NULL;
    }
    if (pin)
        br_srv_unpin(s, &own);
    if (ok && pthread_create(&s->acceptor, NULL, br_srv_accept_main, s) == 0)
        s->acceptor_ok = 1;
    if (!s->acceptor_ok) {
        br_srv_close_workers(s);
        s->port = 0;
        return br_fail(diag, BR_ERR_IO, "cannot start %u HTTP workers on %s port %u",
                       s->cfg.threads, s->host, s->cfg.port);
    }
    return BR_OK;
}

unsigned br_srv_port(const br_srv *s) { return s ? s->port : 0; }
unsigned br_srv_in_flight(const br_srv *s) { return atomic_load(&s->in_flight); }
uint64_t br_srv_generation(br_srv *s) { return s->generation; }

/* ---- reloading -------------------------------------------------------------------
 * A load (checksum of the whole file, the int8 book matrix, the rendered
 * titles) takes ~40 ms of CPU for the default model. Run at the caller's
 * priority it took half a core from a busy worker for that long, every
 * reload, and the requests of that worker waited; so it runs on a thread of
 * its own at nice +10 (a thread's nice is its own on Linux), which lets the
 * workers go first and still ends within a fraction of a second when they
 * leave the core nothing. */

typedef struct br_srv_load {
    br_srv *srv;
    br_srv_model *model;
    br_err err;
    br_diag diag;
} br_srv_load;

static void br_srv_load_run(br_srv_load *l)
{
    l->err = br_srv_model_open(l->srv->model_path, l->srv->generation + 1, &l->model, &l->diag);
}

static void *br_srv_load_main(void *arg)
{
    (void)!nice(10);   /* if it fails, the load runs at the caller's priority */
    br_srv_load_run(arg);
    return NULL;
}

br_err br_srv_reload(br_srv *s, br_diag *diag)
{
    if (!s)
        return br_fail(diag, BR_ERR_ARG, "NULL argument");
    br_srv_load l = {.srv = s};
    br_diag_clear(&l.diag);
    pthread_t t;
    sigset_t all, old;   /* signals stay the caller's to take */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int made = pthread_create(&t, NULL, br_srv_load_main, &l) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (made)
        pthread_join(t, NULL);
    else   /* no thread to spare: load here */
        br_srv_load_run(&l);
    br_srv_model *m = l.model;
    br_err e = l.err;
    if (e && diag)
        *diag = l.diag;
    if (e) {
        atomic_fetch_add(&s->metrics.reloads_failed, 1);
        return e;
    }
    s->generation++;
    br_srv_model_cell_swap(s->cell, m);
    atomic_fetch_add(&s->metrics.reloads_ok, 1);
    return BR_OK;
}

unsigned br_srv_stop(br_srv *s, unsigned drain_ms)
{
    if (!s || s->stopped)
        return 0;
    s->stopped = 1;
    if (!s->workers)
        return 0;
    atomic_store(&s->stopping, 1);
    /* no new connections: the acceptor ends and the listening socket is
     * closed, so connecting is refused from here on */
    atomic_store(&s->acceptor_stop, 1);
    uint64_t one = 1;
    (void)!write(s->wake_fd, &one, sizeof one);
    pthread_join(s->acceptor, NULL);
    s->acceptor_ok = 0;
    close(s->listen_fd);
    s->listen_fd = -1;
    unsigned left = atomic_load(&s->in_flight);
    for (unsigned waited = 0; left && waited < drain_ms; waited += 5) {
        br_srv_nap_ms(5);
        left = atomic_load(&s->in_flight);
    }
    br_srv_close_workers(s);
    return left;
}

void br_srv_free(br_srv *s)
{
    if (!s)
        return;
    br_srv_stop(s, 0);
    br_srv_model_cell_free(s->cell);
    if (s->tls_key_ok) {
        /* The workers are gone (their destructors ran); this thread may hold
         * one too if it ever queried. */
        br_srv_tls_free(pthread_getspecific(s->tls_key));
        pthread_key_delete(s->tls_key);
    }
    free(s->host);
    free(s->model_path);
    free(s);
}
