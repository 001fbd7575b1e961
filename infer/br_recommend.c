/*
 * br_recommend.c - top-k recommendations, similar books, fold-in of new
 * readers and single predictions over a mapped model (see br_recommend.h).
 *
 * Every query scores all books with the kernel table's `score` (row-major
 * rows of the mapped file, eight books per step, no copy of the matrix) into
 * the scratch's score buffer, then br_topk's bounded heap picks the k best
 * (with a vectorised pre-test of sixteen scores at a time), skipping the
 * excluded books (the reader's sorted read list) run by run, so the filter
 * costs nothing per book.
 *
 * MLP models take a slower, documented path (br_rec_mlp_scores): the book
 * half of the first layer, hb_b = W1_book^T q_b (h1 floats per book), is
 * computed once per model in br_rec_create; a query computes the reader half
 * hu = b1 + W1_user^T p_u once, then for every book runs
 *   relu(hu + hb_b) -> W2 (h1 x h2) -> relu -> w3 . a2 + b3,
 * about h1 h2 / 2 multiply-adds per book (ReLU zeros are skipped), so some
 * 2,000 per book against 32 for a dot model: milliseconds, not microseconds,
 * for 10,000 books. The operations and their order are the trainer's
 * (trainer/br_mlp.c, br_mlp_forward), so scores equal its predictions.
 */
#include "br_recommend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "br_alloc.h"
#include "br_kernels.h"
#include "br_mlp_ops.h"
#include "br_qscan.h"
#include "br_rng.h"
#include "br_topk.h"

struct br_rec {
    const br_model *m;
    const br_kernels *k;
    uint32_t n_users, n_books, dim, stride;
    const float *P, *Q;        /* rows of stride floats */
    const float *bu, *bb;      /* NULL unless biased */
    float mean;                /* added for biased models only */
    float reg, reg_bias;       /* the trainer's regularisation (fold-in) */
    int mse;                   /* 1: scores are ratings */
    float *inv_norm;           /* 1 / |q_b|, 0 for a zero vector */
    br_qscan *qs;              /* quantised pre-scan of Q (NULL: plain scan) */
    /* MLP models only (else NULL / 0): packed weights (br_model.h) and the
     * precomputed book halves of the first layer, n_books rows of h1. */
    const float *mlp;
    uint32_t h1, h2;
    float *hb;
};

/* Negatives sampled for a bpr fold-in. */
#define BR_REC_BPR_NEG 64
#define BR_REC_BPR_ITERS 300  /* 9 on goodbooks readers; a reader of few books with more
                               * dimensions than books and a small reg needed ~100 */
#define BR_REC_BPR_AA 5     /* steps Anderson acceleration remembers */

struct br_rec_scratch {
    uint32_t n_books, dim, stride;
    float *scores;             /* n_books, 64-byte aligned */
    void *qwork;               /* br_qscan's work space (NULL without a pre-scan) */
    br_scored *heap;           /* n_books */
    float *vec;                /* stride floats, 64-byte aligned: a folded-in reader */
    uint32_t *books;           /* n_books: sorted unique internal indices of a reader */
    float *rating;             /* n_books: their ratings */
    uint64_t *mark;            /* n_books bits */
    double *A;                 /* (dim+1)^2: normal equations / majoriser */
    double *w;                 /* work: (8 + 2 BR_REC_BPR_AA) (dim+1)
                                * + 3 (n_books + BR_REC_BPR_NEG) doubles */
    uint32_t *neg;             /* BR_REC_BPR_NEG sampled negatives */
    uint32_t h1, h2;           /* MLP widths the scratch was made for (0: not MLP) */
    float *mlp_work;           /* MLP: hu[h1] a1[h1] a2[h2], 64-byte aligned */
};

/* ---- MLP scoring (see the top comment) ---------------------------------------- */

/* The network's operations are trainer/br_mlp.c's own (br_mlp_ops.h), so
 * scores equal its predictions bit for bit; the loops are built for the
 * x86-64 baseline and for AVX2 and chosen at load time. */

/* The book half of the first layer for every book (once per model). */
BR_MLP_CLONES
static void br_rec_mlp_books(br_rec *r)
{
    for (uint32_t b = 0; b < r->n_books; b++)
        br_mlp_half(r->mlp, r->dim, r->dim, r->h1, NULL, r->Q + (size_t)b * r->stride,
                    r->hb + (size_t)b * r->h1);
}

/* The network's output for reader p and book b; work holds 2 h1 + h2 floats. */
BR_MLP_CLONES
static float br_rec_mlp_one(const br_rec *r, const float *p, uint32_t b, float *work)
{
    float *hu = work, *a1 = hu + r->h1, *a2 = a1 + r->h1;
    br_mlp_half(r->mlp, 0, r->dim, r->h1, r->mlp + (size_t)2 * r->dim * r->h1, p, hu);
    return br_mlp_head(r->mlp, r->dim, r->h1, r->h2, hu, r->hb + (size_t)b * r->h1, a1, a2);
}

/* scores[b] = MLP(p, q_b) for every book; work holds 2 h1 + h2 floats. */
BR_MLP_CLONES
static void br_rec_mlp_scores(const br_rec *r, const float *p, float *scores, float *work)
{
    float *hu = work, *a1 = hu + r->h1, *a2 = a1 + r->h1;
    br_mlp_half(r->mlp, 0, r->dim, r->h1, r->mlp + (size_t)2 * r->dim * r->h1, p, hu);
    for (uint32_t b = 0; b < r->n_books; b++)
        scores[b] = br_mlp_head(r->mlp, r->dim, r->h1, r->h2, hu, r->hb + (size_t)b * r->h1,
                                a1, a2);
}

/* ---- handle ---------------------------------------------------------------- */

br_err br_rec_create(const br_model *m, br_rec **out, br_diag *diag)
{
    return br_rec_create_flags(m, 0, out, diag);
}

br_err br_rec_create_flags(const br_model *m, unsigned flags, br_rec **out, br_diag *diag)
{
    if (!m || !out)
        return br_fail(diag, BR_ERR_ARG, "NULL argument");
    *out = NULL;
    const br_model_meta *mt = br_model_get_meta(m);
    if (mt->kind == BR_MODEL_MLP &&
        (!br_model_mlp(m) || mt->mlp_h1 == 0 || mt->mlp_h2 == 0))
        return br_fail(diag, BR_ERR_UNSUPPORTED, "mlp model without weights");
    if (mt->kind != BR_MODEL_DOT && mt->kind != BR_MODEL_BIASED && mt->kind != BR_MODEL_MLP)
        return br_fail(diag, BR_ERR_UNSUPPORTED, "model kind %u is not supported", mt->kind);
    br_rec *r = calloc(1, sizeof *r);
    if (!r)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    r->m = m;
    r->k = br_kernels_get();
    r->n_users = mt->n_users;
    r->n_books = mt->n_books;
    r->dim = mt->dim;
    r->stride = mt->stride;
    r->P = br_model_user_vecs(m);
    r->Q = br_model_book_vecs(m);
    r->bu = br_model_user_bias(m);
    r->bb = br_model_book_bias(m);
    r->mean = mt->kind == BR_MODEL_BIASED ? mt->global_mean : 0.0f;
    r->reg = isfinite(mt->reg) && mt->reg > 0 ? mt->reg : 0.0f;
    r->reg_bias = isfinite(mt->reg_bias) && mt->reg_bias > 0 ? mt->reg_bias : 0.0f;
    r->mse = mt->loss != BR_LOSS_BPR;
    r->inv_norm = malloc((size_t)r->n_books * sizeof *r->inv_norm);
    if (!r->inv_norm) {
        free(r);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    const float *norms = br_model_book_norms(m);
    for (uint32_t b = 0; b < r->n_books; b++)
        r->inv_norm[b] = norms[b] > 0.0f ? 1.0f / norms[b] : 0.0f;
    if (mt->kind != BR_MODEL_MLP && !(flags & BR_REC_NO_PRESCAN) &&
        br_qscan_create(r->Q, r->bb, r->n_books, r->stride, &r->qs, NULL) != BR_OK)
        r->qs = NULL;   /* values it cannot bound, or no memory: the plain scan serves */
    if (mt->kind == BR_MODEL_MLP) {
        r->mlp = br_model_mlp(m);
        r->h1 = mt->mlp_h1;
        r->h2 = mt->mlp_h2;
        r->hb = br_alloc64((size_t)r->n_books * r->h1 * sizeof(float));
        if (!r->hb) {
            uint32_t nb = r->n_books, h1 = r->h1;
            br_rec_free(r);
            return br_fail(diag, BR_ERR_NOMEM, "out of memory for the mlp book halves "
                           "(%u books x %u)", nb, h1);
        }
        br_rec_mlp_books(r);
    }
    *out = r;
    return BR_OK;
}

void br_rec_free(br_rec *r)
{
    if (!r)
        return;
    free(r->inv_norm);
    br_qscan_free(r->qs);
    free(r->hb);
    free(r);
}

const br_model *br_rec_model(const br_rec *r) { return r->m; }
uint32_t br_rec_n_books(const br_rec *r) { return r->n_books; }
uint32_t br_rec_n_users(const br_rec *r) { return r->n_users; }
const char *br_rec_kernel_name(const br_rec *r) { return r->k->name; }

br_err br_rec_scratch_create(const br_rec *r, br_rec_scratch **out, br_diag *diag)
{
    if (!r || !out)
        return br_fail(diag, BR_ERR_ARG, "NULL argument");
    *out = NULL;
    br_rec_scratch *s = calloc(1, sizeof *s);
    if (!s)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    size_t nb = r->n_books, d1 = (size_t)r->dim + 1;
    s->n_books = r->n_books;
    s->dim = r->dim;
    s->stride = r->stride;
    s->scores = br_alloc64(nb * sizeof(float));
    if (r->qs && !(s->qwork = br_alloc64(br_qscan_work_bytes(r->qs)))) {
        br_rec_scratch_free(s);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    s->heap = malloc(nb * sizeof *s->heap);
    s->vec = br_alloc64(r->stride * sizeof(float));
    s->books = malloc(nb * sizeof *s->books);
    s->rating = malloc(nb * sizeof *s->rating);
    s->mark = calloc((nb + 63) / 64, sizeof *s->mark);
    s->A = malloc(d1 * d1 * sizeof *s->A);
    s->w = malloc(((8 + 2 * BR_REC_BPR_AA) * d1 + 3 * nb + 3 * BR_REC_BPR_NEG) * sizeof *s->w);
    s->neg = malloc(BR_REC_BPR_NEG * sizeof *s->neg);
    if (r->mlp) {
        s->h1 = r->h1;
        s->h2 = r->h2;
        s->mlp_work = br_alloc64(((size_t)2 * r->h1 + r->h2) * sizeof(float));
        if (!s->mlp_work) {
            br_rec_scratch_free(s);
            return br_fail(diag, BR_ERR_NOMEM, "out of memory");
        }
    }
    if (!s->scores || !s->heap || !s->vec || !s->books || !s->rating || !s->mark || !s->A ||
        !s->w || !s->neg) {
        br_rec_scratch_free(s);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    *out = s;
    return BR_OK;
}

void br_rec_scratch_free(br_rec_scratch *s)
{
    if (!s)
        return;
    free(s->scores);
    free(s->qwork);
    free(s->heap);
    free(s->vec);
    free(s->books);
    free(s->rating);
    free(s->mark);
    free(s->A);
    free(s->w);
    free(s->neg);
    free(s->mlp_work);
    free(s);
}

static br_err br_rec_check(const br_rec *r, const br_rec_scratch *s, size_t k,
                           const br_rec_item *out, const size_t *n_out, br_diag *diag)
{
    if (!r || !s || !out || !n_out)
        return br_fail(diag, BR_ERR_ARG, "NULL argument");
    if (s->n_books != r->n_books || s->dim != r->dim || s->stride != r->stride ||
        s->h1 != r->h1 || s->h2 != r->h2)
        return br_fail(diag, BR_ERR_ARG, "scratch was made for a model of other dimensions");
    if (k == 0)
        return br_fail(diag, BR_ERR_ARG, "k must be at least 1");
    return BR_OK;
}

/* ---- top-k ------------------------------------------------------------------- */


/* The first n entries of s->heap into out, with the dataset's ids. */
static size_t br_rec_items(const br_rec *r, const br_rec_scratch *s, size_t n,
                           br_rec_item *out)
{
    const uint32_t *ids = br_model_book_ids(r->m);
    for (size_t i = 0; i < n; i++)
        out[i] = (br_rec_item){ids[s->heap[i].idx], s->heap[i].idx, s->heap[i].score};
    return n;
}

/* Top k of s->scores, minus the excluded books, into out. */
static size_t br_rec_pick(const br_rec *r, br_rec_scratch *s, const uint32_t *exclude,
                          size_t n_ex, size_t k, br_rec_item *out)
{
    if (k > r->n_books)
        k = r->n_books;
    return br_rec_items(r, s, br_topk(s->scores, r->n_books, exclude, n_ex, k, s->heap), out);
}

br_err br_rec_vector(const br_rec *r, br_rec_scratch *s, const float *vec, float add,
                     const uint32_t *exclude, size_t n_ex, size_t k, br_rec_item *out,
                     size_t *n_out, br_diag *diag)
{
    br_err e = br_rec_check(r, s, k, out, n_out, diag);
    if (e)
        return e;
    if (!vec || (n_ex && !exclude))
        return br_fail(diag, BR_ERR_ARG, "NULL argument");
    size_t n;
    if (r->qs && s->qwork &&
        br_qscan_topk(r->qs, r->k, vec, add, exclude, n_ex, k, s->qwork, s->heap, &n) == BR_OK) {
        *n_out = br_rec_items(r, s, n, out);
        return BR_OK;
    }
    if (r->mlp)
        br_rec_mlp_scores(r, vec, s->scores, s->mlp_work);
    else
        r->k->score(vec, r->Q, r->n_books, r->stride, r->bb, add, s->scores);
    *n_out = br_rec_pick(r, s, exclude, n_ex, k, out);
    return BR_OK;
}

br_err br_rec_user_index(const br_rec *r, br_rec_scratch *s, uint32_t u, size_t k,
                         unsigned flags, br_rec_item *out, size_t *n_out, br_diag *diag)
{
    if (r && u >= r->n_users)
        return br_fail(diag, BR_ERR_RANGE, "user index %u is out of range (%u users)", u,
                       r->n_users);
    br_err e = br_rec_check(r, s, k, out, n_out, diag);
    if (!e)
        e = br_model_check_user(r->m, u, diag);   /* a no-op unless opened lazily */
    if (e)
        return e;
    size_t n_ex = 0;
    const uint32_t *ex = NULL;
    if (!(flags & BR_REC_INCLUDE_READ))
        ex = br_model_user_read(r->m, u, &n_ex);
    float add = r->bu ? r->mean + r->bu[u] : r->mean;
    return br_rec_vector(r, s, r->P + (size_t)u * r->stride, add, ex, n_ex, k, out, n_out,
                         diag);
}

br_err br_rec_user(const br_rec *r, br_rec_scratch *s, uint32_t user_id, size_t k,
                   unsigned flags, br_rec_item *out, size_t *n_out, br_diag *diag)
{
    if (!r)
        return br_fail(diag, BR_ERR_ARG, "NULL argument");
    int64_t u = br_model_find_user(r->m, user_id);
    if (u < 0)
        return br_fail(diag, BR_ERR_NOT_FOUND,
                       "user %u is not in the model; for a new reader list the books they "
                       "read with --read ID,ID,... or --read-file FILE",
                       user_id);
    return br_rec_user_index(r, s, (uint32_t)u, k, flags, out, n_out, diag);
}

br_err br_rec_similar(const br_rec *r, br_rec_scratch *s, uint32_t book_id, size_t k,
                      br_rec_item *out, size_t *n_out, br_diag *diag)
{
    br_err e = br_rec_check(r, s, k, out, n_out, diag);
    if (e)
        return e;
    int64_t b = br_model_find_book(r->m, book_id);
    if (b < 0)
        return br_fail(diag, BR_ERR_NOT_FOUND, "book %u is not in the model", book_id);
    r->k->score(r->Q + (size_t)b * r->stride, r->Q, r->n_books, r->stride, NULL, 0.0f,
                s->scores);
    float ia = r->inv_norm[b];
    for (uint32_t i = 0; i < r->n_books; i++)
        s->scores[i] = (s->scores[i] * r->inv_norm[i]) * ia;
    uint32_t self = (uint32_t)b;
    *n_out = br_rec_pick(r, s, &self, 1, k, out);
    return BR_OK;
}

/* ---- fold-in --------------------------------------------------------------- */

/* a . b over n doubles, in four independent sums (a single running sum
 * waits on each addition: most of a fold-in's time at dim 128). */
static inline double br_ddot(const double *a, const double *b, size_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t k = 0;
    for (; k + 4 <= n; k += 4) {
        s0 += a[k] * b[k];
        s1 += a[k + 1] * b[k + 1];
        s2 += a[k + 2] * b[k + 2];
        s3 += a[k + 3] * b[k + 3];
    }
    for (; k < n; k++)
        s0 += a[k] * b[k];
    return (s0 + s1) + (s2 + s3);
}

/* The same for two float rows, in double. */
static inline double br_fdot(const float *a, const float *b, size_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t k = 0;
    for (; k + 4 <= n; k += 4) {
        s0 += (double)a[k] * b[k];
        s1 += (double)a[k + 1] * b[k + 1];
        s2 += (double)a[k + 2] * b[k + 2];
        s3 += (double)a[k + 3] * b[k + 3];
    }
    for (; k < n; k++)
        s0 += (double)a[k] * b[k];
    return (s0 + s1) + (s2 + s3);
}

/* In-place Cholesky factor (lower) of the n x n matrix A; 0 if not positive
 * definite. */
static int br_cholesky(double *A, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        double d = A[j * n + j] - br_ddot(A + j * n, A + j * n, j);
        if (!(d > 0.0))
            return 0;
        d = sqrt(d);
        A[j * n + j] = d;
        for (size_t i = j + 1; i < n; i++)
            A[i * n + j] = (A[i * n + j] - br_ddot(A + i * n, A + j * n, j)) / d;
    }
    return 1;
}

/* Solves L L^T x = b in place (x holds b on entry). */
static void br_chol_solve(const double *L, size_t n, double *x)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (x[i] - br_ddot(L + i * n, x, i)) / L[i * n + i];
    /* L^T x = y by columns of L^T, i.e. rows of L: contiguous, and the
     * updates of x[0..i) independent (they vectorise) */
    for (size_t i = n; i-- > 0;) {
        double v = x[i] / L[i * n + i];
        x[i] = v;
        for (size_t k = 0; k < i; k++)
            x[k] -= L[i * n + k] * v;
    }
}

static int br_cmp_scored_idx(const void *a, const void *b)
{
    uint32_t x = ((const br_scored *)a)->idx, y = ((const br_scored *)b)->idx;
    return (x > y) - (x < y);
}

static void br_rec_unmark(br_rec_scratch *s, const br_scored *p, size_t m)
{
    for (size_t j = 0; j < m; j++)
        s->mark[p[j].idx / 64] = 0;
}

/* Maps the reader's books to sorted unique internal indices in s->books,
 * their ratings beside them in s->rating (the last listed rating of a
 * duplicate counts); *n_out receives the count. */
static br_err br_rec_gather(const br_rec *r, br_rec_scratch *s, const uint32_t *book_ids,
                            const float *ratings, size_t n, size_t *n_out, br_diag *diag)
{
    if (n == 0)
        return br_fail(diag, BR_ERR_EMPTY, "no books were given for the new reader");
    if (!book_ids)
        return br_fail(diag, BR_ERR_ARG, "NULL argument");
    br_scored *p = s->heap;   /* (rating, book) pairs; n_books fit */
    size_t m = 0;
    /* Backwards, so the first time a book is met is its last rating. */
    for (size_t i = n; i-- > 0;) {
        int64_t b = br_model_find_book(r->m, book_ids[i]);
        if (b < 0) {
            br_rec_unmark(s, p, m);
            return br_fail(diag, BR_ERR_NOT_FOUND, "book %u is not in the model",
                           book_ids[i]);
        }
        float v = ratings ? ratings[i] : BR_REC_DEFAULT_RATING;
        if (!(v >= 1.0f && v <= 5.0f)) {
            br_rec_unmark(s, p, m);
            return br_fail(diag, BR_ERR_RANGE, "rating %g of book %u is outside 1..5",
                           (double)v, book_ids[i]);
        }
        uint64_t bit = 1ull << (b % 64);
        if (s->mark[b / 64] & bit)
            continue;
        s->mark[b / 64] |= bit;
        p[m++] = (br_scored){v, (uint32_t)b};
    }
    br_rec_unmark(s, p, m);
    qsort(p, m, sizeof *p, br_cmp_scored_idx);
    for (size_t j = 0; j < m; j++) {
        s->books[j] = p[j].idx;
        s->rating[j] = p[j].score;
    }
    *n_out = m;
    return BR_OK;
}

/* Least squares for an mse model (see br_recommend.h). */
static br_err br_rec_foldin_mse(const br_rec *r, br_rec_scratch *s, size_t m, float *vec,
                                float *bias, br_diag *diag)
{
    size_t dim = r->dim, D = dim + (r->bu ? 1 : 0);
    double *A = s->A, *x = s->w, *f = s->w + D;
    /* The trainer regularises once per rating: reg * n on the diagonal. A
     * tiny ridge keeps an unregularised model solvable with few books. */
    double lam = (double)r->reg * (double)m, lamb = (double)r->reg_bias * (double)m;
    if (m < D && lam >= 1e-6 && (!r->bu || lamb >= 1e-6)) {
        /* Fewer books than unknowns: the same solution from the m x m
         * system. With F the books' rows (and a 1 for the bias), t the
         * targets and L the diagonal of regularisers,
         *   (F^T F + L) x = F^T t  has  x = L^-1 F^T a,  (F L^-1 F^T + I) a = t,
         * as (F^T F + L) L^-1 F^T a = F^T (F L^-1 F^T + I) a. */
        double il = 1.0 / lam, ilb = r->bu ? 1.0 / lamb : 0.0, *a = x;
        for (size_t j = 0; j < m; j++) {
            const float *qj = r->Q + (size_t)s->books[j] * r->stride;
            for (size_t k = 0; k <= j; k++) {
                const float *qk = r->Q + (size_t)s->books[k] * r->stride;
                A[j * m + k] = il * br_fdot(qj, qk, dim) + ilb + (j == k ? 1.0 : 0.0);
                A[k * m + j] = A[j * m + k];
            }
            a[j] = (double)s->rating[j] -
                   (r->bb ? (double)r->mean + r->bb[s->books[j]] : 0.0);
        }
        if (!br_cholesky(A, m))
            return br_fail(diag, BR_ERR_NUMERIC, "fold-in: the normal equations are singular");
        br_chol_solve(A, m, a);
        memset(f, 0, D * sizeof *f);
        for (size_t j = 0; j < m; j++) {
            const float *qj = r->Q + (size_t)s->books[j] * r->stride;
            for (size_t d = 0; d < dim; d++)
                f[d] += a[j] * qj[d];
            if (r->bu)
                f[dim] += a[j];
        }
        memset(vec, 0, r->stride * sizeof *vec);
        for (size_t d = 0; d < dim; d++) {
            double v = il * f[d];
            if (!isfinite(v) || fabs(v) > 1e30)
                return br_fail(diag, BR_ERR_NUMERIC, "fold-in: the solution is not finite");
            vec[d] = (float)v;
        }
        *bias = r->bu ? (float)(ilb * f[dim]) : 0.0f;
        return BR_OK;
    }
    memset(A, 0, D * D * sizeof *A);
    memset(x, 0, D * sizeof *x);
    for (size_t j = 0; j < m; j++) {
        uint32_t b = s->books[j];
        const float *q = r->Q + (size_t)b * r->stride;
        for (size_t d = 0; d < dim; d++)
            f[d] = q[d];
        if (r->bu)
            f[dim] = 1.0;
        double t = (double)s->rating[j] - (r->bb ? (double)r->mean + r->bb[b] : 0.0);
        for (size_t a = 0; a < D; a++) {
            double fa = f[a];
            x[a] += t * fa;
            double *row = A + a * D;
            for (size_t c = 0; c <= a; c++)
                row[c] += fa * f[c];
        }
    }
    for (size_t a = 0; a < dim; a++)
        A[a * D + a] += lam > 1e-9 ? lam : 1e-9;
    if (r->bu)
        A[dim * D + dim] += lamb > 1e-9 ? lamb : 1e-9;
    for (size_t a = 0; a < D; a++)
        for (size_t c = a + 1; c < D; c++)
            A[a * D + c] = A[c * D + a];
    if (!br_cholesky(A, D))
        return br_fail(diag, BR_ERR_NUMERIC, "fold-in: the normal equations are singular");
    br_chol_solve(A, D, x);
    for (size_t d = 0; d < D; d++)
        if (!isfinite(x[d]) || fabs(x[d]) > 1e30)
            return br_fail(diag, BR_ERR_NUMERIC, "fold-in: the solution is not finite");
    memset(vec, 0, r->stride * sizeof *vec);
    for (size_t d = 0; d < dim; d++)
        vec[d] = (float)x[d];
    *bias = r->bu ? (float)x[dim] : 0.0f;
    return BR_OK;
}

/* The rows of the fold-in's books j0..j0+3 of n (the m positives s->books,
 * then the negatives s->neg) into q, their indices into b; past the end,
 * book j0 again. Returns how many are real. */
static size_t br_rec_bpr_rows4(const br_rec *r, const br_rec_scratch *s, size_t m, size_t n,
                               size_t j0, const float **q, uint32_t *b)
{
    for (size_t t = 0; t < 4; t++) {
        size_t j = j0 + t < n ? j0 + t : j0;
        b[t] = j < m ? s->books[j] : s->neg[j - m];
        q[t] = r->Q + (size_t)b[t] * r->stride;
    }
    return n - j0 < 4 ? n - j0 : 4;
}

/* g = the gradient of F at p (see br_rec_foldin_bpr) for the m positives
 * s->books and M negatives s->neg. ai: m + M scores, ex: 2 (m + M) doubles
 * of work space. */
static void br_rec_bpr_grad(const br_rec *r, const br_rec_scratch *s, size_t m, size_t M,
                            double lam, const double *p, double *ai, double *ex, double *g)
{
    size_t D = r->dim;
    double *cj = ai + m, *wi = ex, *wj = ex + m, *ea = ex + m + M, *ec = ea + m;
    /* ai[j] = b_j + p.q_j (ai[m + j] = cj[j]); four books at a time, four
     * independent sums (one chain of adds was a third of the fold-in); past
     * the end the first of the four is summed again and dropped */
    for (size_t j0 = 0; j0 < m + M; j0 += 4) {
        const float *q[4];
        uint32_t b[4];
        double v[4];
        br_rec_bpr_rows4(r, s, m, m + M, j0, q, b);
        for (int t = 0; t < 4; t++)
            v[t] = r->bb ? r->bb[b[t]] : 0.0;
        for (size_t a = 0; a < D; a++) {
            v[0] += p[a] * q[0][a];
            v[1] += p[a] * q[1][a];
            v[2] += p[a] * q[2][a];
            v[3] += p[a] * q[3][a];
        }
        for (size_t t = 0; t < 4 && j0 + t < m + M; t++)
            ai[j0 + t] = v[t];
    }
    memset(wi, 0, (m + M) * sizeof *wi);
    /* sigmoid(c_j - a_i) = 1 / (1 + e^a_i e^-c_j): m + M exponentials
     * instead of m M (the pairs took two thirds of the time); within
     * +-300 neither factor nor their product can overflow */
    double big = 0;
    for (size_t j = 0; j < m + M; j++)
        big = fmax(big, fabs(ai[j]));
    if (big <= 300) {
        for (size_t i = 0; i < m; i++)
            ea[i] = exp(ai[i]);
        for (size_t j = 0; j < M; j++)
            ec[j] = exp(-cj[j]);
        for (size_t i = 0; i < m; i++) {
            double acc = 0;
            for (size_t j = 0; j < M; j++) {
                double sg = 1.0 / (1.0 + ea[i] * ec[j]);
                acc += sg;
                wj[j] += sg;
            }
            wi[i] = acc;
        }
    } else {
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < M; j++) {
                double sg = 1.0 / (1.0 + exp(ai[i] - cj[j]));   /* sigmoid(c_j - a_i) */
                wi[i] += sg;
                wj[j] += sg;
            }
    }
    for (size_t a = 0; a < D; a++)
        g[a] = -lam * p[a];
    /* g += sum_j c_j q_j, four books per pass over g (past the end, c 0) */
    for (size_t j0 = 0; j0 < m + M; j0 += 4) {
        const float *q[4];
        uint32_t b[4];
        double c[4];
        size_t live = br_rec_bpr_rows4(r, s, m, m + M, j0, q, b);
        for (size_t t = 0; t < 4; t++) {
            size_t j = j0 + t;
            c[t] = t < live ? (j < m ? wi[j] : -wj[j - m]) / (double)M : 0.0;
        }
        for (size_t a = 0; a < D; a++)
            g[a] += (c[0] * q[0][a] + c[1] * q[1][a]) + (c[2] * q[2][a] + c[3] * q[3][a]);
    }
}

/* The majoriser's step from p: g = grad F(p), d = B^-1 g (L: B's Cholesky
 * factor); returns g . d, the step's length in B's metric. */
static double br_rec_bpr_step(const br_rec *r, const br_rec_scratch *s, size_t m, size_t M,
                              double lam, const double *L, const double *p, double *ai,
                              double *ex, double *g, double *d)
{
    size_t D = r->dim;
    br_rec_bpr_grad(r, s, m, M, lam, p, ai, ex, g);
    memcpy(d, g, D * sizeof *d);
    br_chol_solve(L, D, d);
    return br_ddot(g, d, D);
}

/* Majorise-minimise for a bpr model (see br_recommend.h). With positives I
 * (m books) and M sampled negatives J, the objective
 *   F(p) = 1/M sum_ij log sigmoid(p.(q_i - q_j) + b_i - b_j) - lam/2 |p|^2,
 * lam = reg * m, is concave; its negated Hessian is at most
 *   B = 1/(4M) sum_ij (q_i - q_j)(q_i - q_j)^T + lam I
 *     = 1/(4M) (M S_I + m S_J - s_I s_J^T - s_J s_I^T) + lam I
 * (S the sums of q q^T, s the sums of q), so the step p += B^-1 grad F never
 * lowers F and, repeated, converges to the maximiser; Anderson acceleration
 * (below) gets there in fewer steps. */
static br_err br_rec_foldin_bpr(const br_rec *r, br_rec_scratch *s, size_t m, float *vec,
                                float *bias, br_diag *diag)
{
    size_t dim = r->dim, D = dim;
    /* Negatives: a fixed-seed sample of unread books, seeded by the reader's
     * books so the same reader always gets the same vector. */
    size_t avail = r->n_books - m, M = avail < BR_REC_BPR_NEG ? avail : BR_REC_BPR_NEG;
    if (M == 0)
        return br_fail(diag, BR_ERR_ARG, "fold-in: the reader has read every book");
    for (size_t j = 0; j < m; j++)
        s->mark[s->books[j] / 64] |= 1ull << (s->books[j] % 64);
    if (avail <= BR_REC_BPR_NEG) {
        size_t c = 0;
        for (uint32_t b = 0; b < r->n_books && c < M; b++)
            if (!(s->mark[b / 64] & (1ull << (b % 64))))
                s->neg[c++] = b;
    } else {
        br_rng g;
        br_rng_seed(&g, br_hash64(s->books, m * sizeof *s->books, 0x62707266ULL));
        size_t c = 0;
        while (c < M) {
            uint32_t b = (uint32_t)br_rng_below(&g, r->n_books);
            uint64_t bit = 1ull << (b % 64);
            if (s->mark[b / 64] & bit)
                continue;
            s->mark[b / 64] |= bit;
            s->neg[c++] = b;
        }
        for (size_t j = 0; j < M; j++)
            s->mark[s->neg[j] / 64] = 0;
    }
    for (size_t j = 0; j < m; j++)
        s->mark[s->books[j] / 64] = 0;

    double *A = s->A, *sI = s->w, *sJ = s->w + D, *p = s->w + 2 * D;
    double *ai = s->w + 4 * (D + 1);    /* m + M doubles */
    double *ex = ai + m + M;            /* 2 (m + M) more */
    double *x = ex + 2 * (m + M);       /* (4 + 2 BR_REC_BPR_AA) D more */
    /* B sums differences q_i - q_j, so it is the same for rows shifted by a
     * common vector: they are centred on their mean first, or the sums below
     * cancel (book vectors sharing a large component lost B's definiteness
     * to rounding when summed in floats) */
    double *cen = p;
    memset(cen, 0, D * sizeof *cen);
    for (size_t j = 0; j < m + M; j++) {
        const float *q = r->Q + (size_t)(j < m ? s->books[j] : s->neg[j - m]) * r->stride;
        for (size_t a = 0; a < D; a++)
            cen[a] += q[a];
    }
    for (size_t a = 0; a < D; a++)
        cen[a] /= (double)(m + M);
    memset(A, 0, D * D * sizeof *A);
    memset(sI, 0, 2 * D * sizeof *sI);
    for (int side = 0; side < 2; side++) {
        size_t cnt = side ? M : m;
        const uint32_t *list = side ? s->neg : s->books;
        double wgt = side ? (double)m : (double)M;
        double *sum = side ? sJ : sI;
        /* four books per pass over A's lower triangle (a quarter of the
         * loads and stores of one at a time), centred as doubles in x;
         * past the end, rows of zeros */
        double *q0 = x, *q1 = x + D, *q2 = x + 2 * D, *q3 = x + 3 * D;
        for (size_t j0 = 0; j0 < cnt; j0 += 4) {
            for (size_t t = 0; t < 4; t++) {
                const float *q = r->Q + (size_t)list[j0 + t < cnt ? j0 + t : j0] * r->stride;
                for (size_t a = 0; a < D; a++)
                    x[t * D + a] = j0 + t < cnt ? q[a] - cen[a] : 0.0;
            }
            for (size_t a = 0; a < D; a++) {
                double a0 = q0[a], a1 = q1[a], a2 = q2[a], a3 = q3[a];
                sum[a] += (a0 + a1) + (a2 + a3);
                a0 *= wgt, a1 *= wgt, a2 *= wgt, a3 *= wgt;
                double *row = A + a * D;
                for (size_t c = 0; c <= a; c++)
                    row[c] += (a0 * q0[c] + a1 * q1[c]) + (a2 * q2[c] + a3 * q3[c]);
            }
        }
    }
    double lam = (double)r->reg * (double)m;
    if (lam < 1e-9)
        lam = 1e-9;
    for (size_t a = 0; a < D; a++) {
        for (size_t c = 0; c <= a; c++) {
            double v = (A[a * D + c] - sI[a] * sJ[c] - sJ[a] * sI[c]) / (4.0 * (double)M);
            A[a * D + c] = v + (a == c ? lam : 0.0);
        }
    }
    for (size_t a = 0; a < D; a++)
        for (size_t c = a + 1; c < D; c++)
            A[a * D + c] = A[c * D + a];
    if (!br_cholesky(A, D))
        return br_fail(diag, BR_ERR_NUMERIC, "fold-in: the bpr majoriser is singular");

    /* The majoriser's step d(p) = B^-1 grad F(p) never lowers F but creeps
     * (20-29 steps on goodbooks readers). Anderson acceleration: p is moved
     * by the combination of the last BR_REC_BPR_AA steps that best cancels
     * the current one (least squares on their differences), then accepted
     * if the new step is no longer in B's metric (grad . d); if not, the plain
     * step from p is taken and the history forgotten. The fixed point, and
     * so the answer, is the same: where d = 0. */
    double *d = x, *g = x + D, *pn = x + 2 * D, *dn = x + 3 * D;
    double *hx = x + 4 * D, *hf = hx + BR_REC_BPR_AA * D;   /* differences of p and d */
    double G[BR_REC_BPR_AA * BR_REC_BPR_AA], c[BR_REC_BPR_AA];
    size_t nh = 0, head = 0;   /* history entries, the next to write */
    memset(p, 0, D * sizeof *p);
    double res = br_rec_bpr_step(r, s, m, M, lam, A, p, ai, ex, g, d);
    for (int it = 0; it < BR_REC_BPR_ITERS; it++) {
        double step = 0, norm = 0;   /* the largest |d| and |p|; NaN if any is */
        for (size_t a = 0; a < D; a++) {
            if (!(fabs(d[a]) <= step))
                step = fabs(d[a]);
            if (!(fabs(p[a]) <= norm))
                norm = fabs(p[a]);
        }
        if (!isfinite(step) || !isfinite(norm) || !isfinite(res))
            return br_fail(diag, BR_ERR_NUMERIC, "fold-in: the solution is not finite");
        if (step <= 1e-4 * (norm > 1.0 ? norm : 1.0))
            break;
        /* pn = p + d - sum_i c_i (hx_i + hf_i), c minimising |d - sum c_i hf_i| */
        for (size_t a = 0; a < D; a++)
            pn[a] = p[a] + d[a];
        if (nh) {
            double tr = 0;
            for (size_t i = 0; i < nh; i++) {
                for (size_t j = 0; j <= i; j++)
                    G[i * nh + j] = br_ddot(hf + i * D, hf + j * D, D);
                c[i] = br_ddot(hf + i * D, d, D);
                tr += G[i * nh + i];
            }
            for (size_t i = 0; i < nh; i++)
                G[i * nh + i] += 1e-10 * tr + 1e-300;
            if (br_cholesky(G, nh)) {
                br_chol_solve(G, nh, c);
                for (size_t i = 0; i < nh; i++)
                    for (size_t a = 0; a < D; a++)
                        pn[a] -= c[i] * (hx[i * D + a] + hf[i * D + a]);
            }
        }
        double rn = br_rec_bpr_step(r, s, m, M, lam, A, pn, ai, ex, g, dn);
        if (nh && !(rn <= res)) {   /* no better: the plain step, history forgotten */
            for (size_t a = 0; a < D; a++)
                pn[a] = p[a] + d[a];
            rn = br_rec_bpr_step(r, s, m, M, lam, A, pn, ai, ex, g, dn);
            nh = head = 0;
        } else {
            for (size_t a = 0; a < D; a++) {
                hx[head * D + a] = pn[a] - p[a];
                hf[head * D + a] = dn[a] - d[a];
            }
            head = (head + 1) % BR_REC_BPR_AA;
            nh += nh < BR_REC_BPR_AA;
        }
        memcpy(p, pn, D * sizeof *p);
        memcpy(d, dn, D * sizeof *d);
        res = rn;
    }
    for (size_t a = 0; a < D; a++) {
        p[a] += d[a];
        if (!isfinite((float)p[a]))
            return br_fail(diag, BR_ERR_NUMERIC, "fold-in: the solution is not finite");
    }
    memset(vec, 0, r->stride * sizeof *vec);
    for (size_t a = 0; a < dim; a++)
        vec[a] = (float)p[a];
    *bias = 0.0f;
    return BR_OK;
}

/* Fold-in that also reports how many distinct books the reader has; they
 * stay in s->books (sorted) for the caller. */
static br_err br_rec_foldin_n(const br_rec *r, br_rec_scratch *s, const uint32_t *book_ids,
                              const float *ratings, size_t n, float *vec, float *bias,
                              size_t *m_out, br_diag *diag)
{
    if (!r || !s || !vec || !bias)
        return br_fail(diag, BR_ERR_ARG, "NULL argument");
    if (s->n_books != r->n_books || s->dim != r->dim || s->stride != r->stride)
        return br_fail(diag, BR_ERR_ARG, "scratch was made for a model of other dimensions");
    if (r->mlp)
        return br_fail(diag, BR_ERR_UNSUPPORTED,
                       "fold-in (a reader given by the books they read) is not supported for "
                       "mlp models; ask for a reader the model knows (--user)");
    size_t m = 0;   /* set by br_rec_gather on success (GCC cannot see it at -O2 -g) */
    br_err e = br_rec_gather(r, s, book_ids, ratings, n, &m, diag);
    if (e)
        return e;
    *m_out = m;
    return r->mse ? br_rec_foldin_mse(r, s, m, vec, bias, diag)
                  : br_rec_foldin_bpr(r, s, m, vec, bias, diag);
}

br_err br_rec_foldin(const br_rec *r, br_rec_scratch *s, const uint32_t *book_ids,
                     const float *ratings, size_t n, float *vec, float *bias, br_diag *diag)
{
    size_t m;
    return br_rec_foldin_n(r, s, book_ids, ratings, n, vec, bias, &m, diag);
}

br_err br_rec_reader(const br_rec *r, br_rec_scratch *s, const uint32_t *book_ids,
                     const float *ratings, size_t n, size_t k, unsigned flags,
                     br_rec_item *out, size_t *n_out, br_diag *diag)
{
    br_err e = br_rec_check(r, s, k, out, n_out, diag);
    if (e)
        return e;
    float bias = 0.0f;
    size_t m = 0;
    e = br_rec_foldin_n(r, s, book_ids, ratings, n, s->vec, &bias, &m, diag);
    if (e)
        return e;
    if (flags & BR_REC_INCLUDE_READ)
        m = 0;
    return br_rec_vector(r, s, s->vec, r->mean + bias, s->books, m, k, out, n_out, diag);
}

/* ---- single predictions ----------------------------------------------------- */

static float br_rec_clamp(const br_rec *r, float v)
{
    if (!r->mse)
        return v;
    return v < 1.0f ? 1.0f : v > 5.0f ? 5.0f : v;
}

br_err br_rec_predict(const br_rec *r, uint32_t user_id, uint32_t book_id, float *out,
                      br_diag *diag)
{
    if (!r || !out)
        return br_fail(diag, BR_ERR_ARG, "NULL argument");
    int64_t u = br_model_find_user(r->m, user_id), b = br_model_find_book(r->m, book_id);
    if (u < 0 || b < 0) {
        float v = r->mse ? 3.0f : 0.0f;
        if (r->bu) {
            v = r->mean + (u >= 0 ? r->bu[u] : 0.0f) + (b >= 0 ? r->bb[b] : 0.0f);
        }
        *out = br_rec_clamp(r, v);
        if (u < 0)
            return br_fail(diag, BR_ERR_NOT_FOUND, "user %u is not in the model", user_id);
        return br_fail(diag, BR_ERR_NOT_FOUND, "book %u is not in the model", book_id);
    }
    br_err e = br_model_check_user(r->m, (uint32_t)u, diag);   /* no-op unless lazy */
    if (e)
        return e;
    if (r->mlp) {
        /* The very operations of br_rec_mlp_scores (and of the trainer). */
        size_t wl = (size_t)2 * r->h1 + r->h2;
        float stack[1024], *w = wl <= 1024 ? stack : malloc(wl * sizeof *w);
        if (!w)
            return br_fail(diag, BR_ERR_NOMEM, "out of memory");
        float y = br_rec_mlp_one(r, r->P + (size_t)u * r->stride, (uint32_t)b, w);
        if (w != stack)
            free(w);
        *out = br_rec_clamp(r, y);
        return BR_OK;
    }
    /* The very operations of the score kernel, so a prediction equals the
     * score the recommendations show (before clamping). */
    float add = r->bu ? r->mean + r->bu[u] : r->mean;
    float s = r->k->dot(r->P + (size_t)u * r->stride, r->Q + (size_t)b * r->stride, r->stride);
    *out = br_rec_clamp(r, (add + (r->bb ? r->bb[b] : 0.0f)) + s);
    return BR_OK;
}
