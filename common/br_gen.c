/*
 * br_gen.c - synthetic ratings with planted low-rank structure.
 *
 * The generator never builds a users x books matrix. Its memory is
 * O(n_users) for the per-user counts plus O(n_books * rank) for the book
 * factors, the popularity sampler and a bitmap of the books already chosen
 * for the current user. It works user by user:
 *
 *   1. Setup (one seeded stream): each book b gets q_b ~ N(0, sigma^2 I) and
 *      a bias bb ~ N(0, 0.3^2); popularity weights (b)^-skew feed an alias
 *      table (book 1 is the most popular, as in goodbooks); each user's count
 *      is fixed (see br_gen.h for the distribution).
 *   2. User u has its own stream, seeded from (seed, u), so a user's rows do
 *      not depend on how many users precede it: it draws p_u, its bias bu,
 *      then its distinct books by rejection sampling against the bitmap (a
 *      user that would need too many draws - one who rates a large share of
 *      the catalogue - switches to the equivalent exponential-key method:
 *      successive weighted sampling without replacement), then the ratings.
 *
 * Rows are written grouped by user (ascending) with each user's books
 * ascending, so the output is the same whichever column layout is chosen.
 */
#include "br_gen.h"
#include "br_fmt.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "br_io.h"
#include "br_rng.h"

#define GEN_MEAN 3.9        /* global mean before clamping */
#define GEN_USER_BIAS 0.45  /* std of bu */
#define GEN_BOOK_BIAS 0.35  /* std of bb */
#define GEN_DOT_STD 0.6     /* std of p_u . q_b */
#define GEN_COUNT_SPREAD 0.8 /* sigma of the log-normal per-user count weights */
#define GEN_MIN_PER_USER 2

void br_gen_defaults(br_gen_params *p)
{
    memset(p, 0, sizeof *p);
    p->rank = 8;
    p->noise = 0.5f;
    p->pop_skew = 0.8f;
    p->seed = 42;
    p->user_first = 0;
}

/* ---- state ---------------------------------------------------------------- */

typedef struct gen_key {
    double key;
    uint32_t book;
} gen_key;

typedef struct gen {
    br_gen_params p;
    double sigma;          /* std of each factor entry */
    uint32_t *counts;      /* ratings per user */
    float *q;              /* n_books x rank */
    float *bb;             /* n_books */
    uint32_t *alias_thr;   /* alias table: keep i if low 32 bits < thr[i] */
    uint32_t *alias_idx;   /*   else take alias_idx[i] */
    uint64_t *bitmap;      /* books chosen for the current user */
    uint32_t *chosen;      /* the current user's books (sorted before use) */
    float *pu;             /* current user's factors */
    double *powk;          /* (b+1)^skew, for the exponential-key method; lazy */
    gen_key *keys;         /* n_books, lazy */
    double normal_spare;   /* Box-Muller's second value */
    int has_spare;
} gen;

static void gen_free(gen *g)
{
    free(g->counts);
    free(g->q);
    free(g->bb);
    free(g->alias_thr);
    free(g->alias_idx);
    free(g->bitmap);
    free(g->chosen);
    free(g->pu);
    free(g->powk);
    free(g->keys);
}

/* Standard normal, using both values of each Box-Muller pair. */
static double gen_normal(gen *g, br_rng *r)
{
    if (g->has_spare) {
        g->has_spare = 0;
        return g->normal_spare;
    }
    double u1 = br_rng_uniform(r), u2 = br_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    double m = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
    g->normal_spare = m * sin(a);
    g->has_spare = 1;
    return m * cos(a);
}

static uint64_t stream_seed(uint64_t seed, uint64_t salt)
{
    uint64_t x = seed ^ (salt * 0xd1b54a32d192ed03ULL);
    return br_splitmix64(&x);
}

static br_err check_params(const br_gen_params *p, br_diag *diag)
{
    if (!p)
        return br_fail(diag, BR_ERR_ARG, "no generator parameters");
    if (p->n_users == 0 || p->n_books == 0 || p->n_ratings == 0)
        return br_fail(diag, BR_ERR_ARG, "users, books and ratings must all be positive");
    if (p->n_ratings > (uint64_t)p->n_users * p->n_books)
        return br_fail(diag, BR_ERR_RANGE,
                       "%llu ratings do not fit in %u users x %u books (at most %llu)",
                       (unsigned long long)p->n_ratings, p->n_users, p->n_books,
                       (unsigned long long)((uint64_t)p->n_users * p->n_books));
    if (p->rank > 1024)
        return br_fail(diag, BR_ERR_RANGE, "rank %u is outside 0..1024", p->rank);
    if (!isfinite(p->noise) || p->noise < 0 || p->noise > 100)
        return br_fail(diag, BR_ERR_RANGE, "noise %g is outside 0..100", (double)p->noise);
    if (!isfinite(p->pop_skew) || p->pop_skew < 0 || p->pop_skew > 4)
        return br_fail(diag, BR_ERR_RANGE, "popularity skew %g is outside 0..4",
                       (double)p->pop_skew);
    return BR_OK;
}

/* Vose's alias method over weights w[0..n). */
static int build_alias(gen *g, const double *w, uint32_t n)
{
    double total = 0;
    for (uint32_t i = 0; i < n; i++)
        total += w[i];
    double *scaled = malloc((size_t)n * sizeof *scaled);
    uint32_t *small = malloc((size_t)n * sizeof *small), *large = malloc((size_t)n * sizeof *large);
    if (!scaled || !small || !large) {
        free(scaled);
        free(small);
        free(large);
        return 0;
    }
    size_t ns = 0, nl = 0;
    for (uint32_t i = 0; i < n; i++) {
        scaled[i] = w[i] * n / total;
        if (scaled[i] < 1.0)
            small[ns++] = i;
        else
            large[nl++] = i;
    }
    while (ns && nl) {
        uint32_t s = small[--ns], l = large[nl - 1];
        g->alias_thr[s] = (uint32_t)(scaled[s] * 4294967296.0);
        g->alias_idx[s] = l;
        scaled[l] -= 1.0 - scaled[s];
        if (scaled[l] < 1.0) {
            nl--;
            small[ns++] = l;
        }
    }
    /* What is left has probability 1 (up to rounding): always keep it. */
    while (nl) {
        uint32_t l = large[--nl];
        g->alias_thr[l] = UINT32_MAX;
        g->alias_idx[l] = l;
    }
    while (ns) {
        uint32_t s = small[--ns];
        g->alias_thr[s] = UINT32_MAX;
        g->alias_idx[s] = s;
    }
    free(scaled);
    free(small);
    free(large);
    return 1;
}

static inline uint32_t sample_book(const gen *g, br_rng *r)
{
    uint64_t x = br_rng_next(r);
    uint32_t i = (uint32_t)(((x >> 32) * (uint64_t)g->p.n_books) >> 32);
    return (uint32_t)x < g->alias_thr[i] ? i : g->alias_idx[i];
}

/* Per-user counts: each user gets `base` (2 where possible), and the rest is
 * shared in proportion to log-normal weights, capped at n_books, by water
 * filling; the rounding remainder goes one by one to users with room. */
static int assign_counts(gen *g)
{
    const uint64_t U = g->p.n_users, B = g->p.n_books, N = g->p.n_ratings;
    uint64_t base = N / U;
    if (base > GEN_MIN_PER_USER)
        base = GEN_MIN_PER_USER;
    if (base > B)
        base = B;
    for (uint64_t u = 0; u < U; u++)
        g->counts[u] = (uint32_t)base;
    uint64_t remaining = N - base * U;
    if (!remaining)
        return 1;
    const uint64_t cap = B - base;  /* room per user above base */
    float *w = malloc(U * sizeof *w);
    if (!w)
        return 0;
    br_rng r;
    br_rng_seed(&r, stream_seed(g->p.seed, 2));
    g->has_spare = 0;
    for (uint64_t u = 0; u < U; u++)
        w[u] = (float)exp(GEN_COUNT_SPREAD * gen_normal(g, &r));
    g->has_spare = 0;

    for (int pass = 0; pass < 64 && remaining; pass++) {
        double wsum = 0;
        for (uint64_t u = 0; u < U; u++)
            if (g->counts[u] - base < cap)
                wsum += w[u];
        if (wsum <= 0)
            break;
        const double share = (double)remaining / wsum;
        int saturated = 0;
        for (uint64_t u = 0; u < U && remaining; u++) {
            uint64_t have = g->counts[u] - base;
            if (have >= cap)
                continue;
            double want = floor(share * w[u]);
            uint64_t add = want >= (double)cap ? cap : (uint64_t)want;
            if (add > cap - have) {
                add = cap - have;
                saturated = 1;
            }
            if (add > remaining)
                add = remaining;
            g->counts[u] += (uint32_t)add;
            remaining -= add;
        }
        if (!saturated)
            break;
    }
    free(w);
    /* Rounding remainder: fewer than the users with room after the last
     * proportional pass, so this loop ends within a pass or two. */
    while (remaining) {
        for (uint64_t u = 0; u < U && remaining; u++)
            if (g->counts[u] - base < cap) {
                g->counts[u]++;
                remaining--;
            }
    }
    return 1;
}

static br_err gen_init(gen *g, const br_gen_params *p, br_diag *diag)
{
    memset(g, 0, sizeof *g);
    br_err err = check_params(p, diag);
    if (err)
        return err;
    g->p = *p;
    const size_t B = p->n_books, K = p->rank;
    g->sigma = K ? sqrt(GEN_DOT_STD / sqrt((double)K)) : 0;
    g->counts = malloc((size_t)p->n_users * sizeof *g->counts);
    g->q = malloc((B * K > 0 ? B * K : 1) * sizeof *g->q);
    g->bb = malloc(B * sizeof *g->bb);
    g->alias_thr = malloc(B * sizeof *g->alias_thr);
    g->alias_idx = malloc(B * sizeof *g->alias_idx);
    g->bitmap = calloc((B + 63) / 64, sizeof *g->bitmap);
    g->chosen = malloc(B * sizeof *g->chosen);
    g->pu = malloc((K ? K : 1) * sizeof *g->pu);
    double *w = malloc(B * sizeof *w);
    if (!g->counts || !g->q || !g->bb || !g->alias_thr || !g->alias_idx || !g->bitmap ||
        !g->chosen || !g->pu || !w) {
        free(w);
        gen_free(g);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory for %u users x %u books, rank %u",
                       p->n_users, p->n_books, p->rank);
    }
    br_rng r;
    br_rng_seed(&r, stream_seed(p->seed, 1));
    g->has_spare = 0;
    for (size_t b = 0; b < B; b++) {
        for (size_t k = 0; k < K; k++)
            g->q[b * K + k] = (float)(g->sigma * gen_normal(g, &r));
        g->bb[b] = (float)(GEN_BOOK_BIAS * gen_normal(g, &r));
        w[b] = pow((double)(b + 1), -(double)p->pop_skew);
    }
    int ok = build_alias(g, w, p->n_books) && assign_counts(g);
    free(w);
    if (!ok) {
        gen_free(g);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory for %u users x %u books",
                       p->n_users, p->n_books);
    }
    return BR_OK;
}

/* ---- choosing a user's books ---------------------------------------------- */

static void sort_u32(uint32_t *v, size_t n)
{
    while (n > 24) {
        uint32_t a = v[0], b = v[n / 2], c = v[n - 1];
        uint32_t pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        size_t i = 0, j = n - 1;
        for (;;) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i >= j)
                break;
            uint32_t t = v[i];
            v[i] = v[j];
            v[j] = t;
            i++;
            j--;
        }
        /* [0, j] <= pivot <= [j+1, n): recurse on the smaller side. */
        size_t left = j + 1;
        if (left < n - left) {
            sort_u32(v, left);
            v += left;
            n -= left;
        } else {
            sort_u32(v + left, n - left);
            n = left;
        }
    }
    for (size_t i = 1; i < n; i++) {
        uint32_t x = v[i];
        size_t j = i;
        while (j > 0 && v[j - 1] > x) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

static inline int key_less(const gen_key *a, const gen_key *b)
{
    return a->key < b->key || (a->key == b->key && a->book < b->book);
}

/* Rearranges k[0..n) so its m smallest come first (quickselect). */
static void select_smallest(gen_key *k, size_t n, size_t m)
{
    size_t lo = 0, hi = n;  /* the boundary m lies in [lo, hi) */
    while (hi - lo > 1) {
        gen_key pivot = k[lo + (hi - lo) / 2];
        size_t i = lo, j = hi - 1;
        for (;;) {
            while (key_less(&k[i], &pivot))
                i++;
            while (key_less(&pivot, &k[j]))
                j--;
            if (i >= j)
                break;
            gen_key t = k[i];
            k[i] = k[j];
            k[j] = t;
            i++;
            j--;
        }
        /* Now [lo, j] <= pivot <= [j+1, hi); if i == j, k[j] is the pivot and
         * already in its final place, so it can be left out of both sides
         * (this also guarantees progress on two-element ranges). */
        if (m <= j)
            hi = i == j ? j : j + 1;
        else
            lo = j + 1;
        if (m == lo || m == hi)
            break;
    }
}

/* Weighted sampling of c distinct books without replacement by exponential
 * keys (the same distribution as drawing with rejection of repeats). Marks
 * them in the (clear) bitmap. Returns 0 on allocation failure. */
static int choose_by_keys(gen *g, br_rng *r, uint32_t c)
{
    const uint32_t B = g->p.n_books;
    if (!g->keys) {
        g->keys = malloc((size_t)B * sizeof *g->keys);
        g->powk = malloc((size_t)B * sizeof *g->powk);
        if (!g->keys || !g->powk)
            return 0;
        for (uint32_t b = 0; b < B; b++)
            g->powk[b] = pow((double)(b + 1), (double)g->p.pop_skew);
    }
    for (uint32_t b = 0; b < B; b++) {
        double u = br_rng_uniform(r);
        g->keys[b].key = -log1p(-u) * g->powk[b];  /* Exp(1) / weight */
        g->keys[b].book = b;
    }
    if (c < B)
        select_smallest(g->keys, B, c);
    for (uint32_t i = 0; i < c; i++) {
        uint32_t b = g->keys[i].book;
        g->bitmap[b >> 6] |= UINT64_C(1) << (b & 63);
    }
    return 1;
}

/* Picks c distinct books for one user into g->chosen, ascending, and leaves
 * the bitmap clear. Returns 0 on allocation failure. */
static int choose_books(gen *g, br_rng *r, uint32_t c)
{
    const uint32_t B = g->p.n_books;
    uint64_t *bm = g->bitmap;
    int by_keys = c > B / 4;
    uint32_t n = 0;
    if (!by_keys) {
        uint64_t budget = 8 * (uint64_t)c + 256;
        while (n < c) {
            if (budget-- == 0) {  /* heavy skew: too many repeats */
                for (uint32_t i = 0; i < n; i++)
                    bm[g->chosen[i] >> 6] &= ~(UINT64_C(1) << (g->chosen[i] & 63));
                by_keys = 1;
                break;
            }
            uint32_t b = sample_book(g, r);
            uint64_t bit = UINT64_C(1) << (b & 63);
            if (bm[b >> 6] & bit)
                continue;
            bm[b >> 6] |= bit;
            g->chosen[n++] = b;
        }
    }
    if (by_keys) {
        if (!choose_by_keys(g, r, c))
            return 0;
        n = c;
    }
    if (by_keys || (uint64_t)c * 64 >= B) {
        /* Dense enough: read them back from the bitmap in order, clearing it. */
        uint32_t k = 0;
        for (uint32_t wi = 0; wi < (B + 63) / 64; wi++) {
            uint64_t word = bm[wi];
            bm[wi] = 0;
            while (word) {
                g->chosen[k++] = wi * 64 + (uint32_t)__builtin_ctzll(word);
                word &= word - 1;
            }
        }
    } else {
        sort_u32(g->chosen, n);
        for (uint32_t i = 0; i < n; i++)
            bm[g->chosen[i] >> 6] = 0;
    }
    return 1;
}

/* ---- output --------------------------------------------------------------- */

typedef struct sink {
    /* file mode */
    FILE *f;
    gzFile gz;
    char *buf;
    size_t len, cap;
    int failed;
    /* memory mode */
    uint32_t *uid, *bid;
    float *rating;
    uint64_t pos;
} sink;

static void sink_flush(sink *s)
{
    if (s->len == 0 || s->failed)
        return;
    if (s->gz) {
        if (gzwrite(s->gz, s->buf, (unsigned)s->len) != (int)s->len)
            s->failed = 1;
    } else if (fwrite(s->buf, 1, s->len, s->f) != s->len) {
        s->failed = 1;
    }
    s->len = 0;
}

static void emit_user(sink *s, int user_first, uint32_t user, const uint32_t *books,
                      const unsigned char *ratings, uint32_t c)
{
    if (!s->buf) {  /* memory */
        for (uint32_t i = 0; i < c; i++) {
            s->uid[s->pos] = user;
            s->bid[s->pos] = books[i] + 1;
            s->rating[s->pos] = ratings[i];
            s->pos++;
        }
        return;
    }
    char us[12];
    size_t ul = br_fmt_uint(us, user);
    for (uint32_t i = 0; i < c; i++) {
        if (s->cap - s->len < 32)
            sink_flush(s);
        char *p = s->buf + s->len;
        if (user_first) {
            memcpy(p, us, ul);
            p += ul;
            *p++ = ',';
            p += br_fmt_uint(p, books[i] + 1);
        } else {
            p += br_fmt_uint(p, books[i] + 1);
            *p++ = ',';
            memcpy(p, us, ul);
            p += ul;
        }
        *p++ = ',';
        *p++ = (char)('0' + ratings[i]);
        *p++ = '\n';
        s->len = (size_t)(p - s->buf);
    }
}

/* Generates every user's rows into the sink. */
static br_err gen_run(gen *g, sink *s, br_diag *diag)
{
    const uint32_t K = g->p.rank;
    unsigned char *ratings = malloc(g->p.n_books);
    if (!ratings)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    for (uint32_t u = 0; u < g->p.n_users && !s->failed; u++) {
        br_rng r;
        br_rng_seed(&r, stream_seed(g->p.seed, 0x100000000ULL + u));
        g->has_spare = 0;
        for (uint32_t k = 0; k < K; k++)
            g->pu[k] = (float)(g->sigma * gen_normal(g, &r));
        double bu = GEN_USER_BIAS * gen_normal(g, &r);
        uint32_t c = g->counts[u];
        if (!choose_books(g, &r, c)) {
            free(ratings);
            return br_fail(diag, BR_ERR_NOMEM, "out of memory");
        }
        for (uint32_t i = 0; i < c; i++) {
            uint32_t b = g->chosen[i];
            const float *q = g->q + (size_t)b * K;
            float dot = 0;
            for (uint32_t k = 0; k < K; k++)
                dot += g->pu[k] * q[k];
            double x = GEN_MEAN + bu + g->bb[b] + dot + g->p.noise * gen_normal(g, &r);
            ratings[i] = x < 1.5 ? 1 : x >= 4.5 ? 5 : (unsigned char)(x + 0.5);
        }
        emit_user(s, g->p.user_first, u + 1, g->chosen, ratings, c);
    }
    free(ratings);
    return BR_OK;
}

static int ends_with_gz(const char *path)
{
    size_t n = strlen(path);
    return n >= 3 && strcmp(path + n - 3, ".gz") == 0;
}

br_err br_gen_write(const br_gen_params *p, const char *path, br_diag *diag)
{
    if (!path || !*path)
        return br_fail(diag, BR_ERR_ARG, "no output path");
    gen g;
    br_err err = gen_init(&g, p, diag);
    if (err)
        return err;
    br_atomic *a = NULL;
    sink s;
    memset(&s, 0, sizeof s);
    s.cap = 1 << 20;
    s.buf = malloc(s.cap);
    if (!s.buf) {
        gen_free(&g);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    if ((err = br_atomic_open(path, &a, diag)))
        goto done;
    s.f = br_atomic_file(a);
    if (ends_with_gz(path)) {
        /* zlib writes through its own descriptor for the same open file;
         * commit then fsyncs and renames it as usual. */
        int fd = dup(fileno(s.f));
        if (fd < 0 || !(s.gz = gzdopen(fd, "wb1"))) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            err = br_fail(diag, BR_ERR_IO, "cannot write %s: %s", path,
                          fd < 0 ? strerror(e) : "cannot start compression");
            goto done;
        }
        gzbuffer(s.gz, 1 << 18);
    }
    const char *header = p->user_first ? "user_id,book_id,rating\n" : "book_id,user_id,rating\n";
    s.len = strlen(header);
    memcpy(s.buf, header, s.len);
    if ((err = gen_run(&g, &s, diag)))
        goto done;
    sink_flush(&s);
    if (s.gz) {
        int zrc = gzclose(s.gz);
        s.gz = NULL;
        if (zrc != Z_OK)
            s.failed = 1;
    }
    if (s.failed) {
        err = br_fail(diag, BR_ERR_IO, "cannot write %s: %s", path,
                      errno ? strerror(errno) : "write failed");
        goto done;
    }
    err = br_atomic_commit(a, diag);
    a = NULL;
done:
    if (s.gz)
        gzclose(s.gz);
    br_atomic_abort(a);
    free(s.buf);
    gen_free(&g);
    return err;
}

br_err br_gen_memory(const br_gen_params *p, uint32_t **user_ids, uint32_t **book_ids,
                     float **ratings, br_diag *diag)
{
    *user_ids = NULL;
    *book_ids = NULL;
    *ratings = NULL;
    br_err err = check_params(p, diag);
    if (err)
        return err;
    if (p->n_ratings > SIZE_MAX / sizeof(uint32_t))
        return br_fail(diag, BR_ERR_NOMEM, "%llu ratings do not fit in memory",
                       (unsigned long long)p->n_ratings);
    gen g;
    if ((err = gen_init(&g, p, diag)))
        return err;
    sink s;
    memset(&s, 0, sizeof s);
    size_t n = (size_t)p->n_ratings;
    s.uid = malloc(n * sizeof *s.uid);
    s.bid = malloc(n * sizeof *s.bid);
    s.rating = malloc(n * sizeof *s.rating);
    if (!s.uid || !s.bid || !s.rating)
        err = br_fail(diag, BR_ERR_NOMEM, "out of memory for %zu ratings", n);
    else
        err = gen_run(&g, &s, diag);
    gen_free(&g);
    if (err) {
        free(s.uid);
        free(s.bid);
        free(s.rating);
        return err;
    }
    *user_ids = s.uid;
    *book_ids = s.bid;
    *ratings = s.rating;
    return BR_OK;
}
