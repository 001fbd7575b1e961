/*
 * br_mlp.c - the MLP model: forward and backward passes of the network,
 * parameters and optimiser state, and the Hogwild epoch (see br_mlp.h for
 * the model and the threading scheme).
 *
 * The only unsynchronised writes to shared memory are in br_mlp_epoch's
 * update helpers (br_mlp_row_adam / br_mlp_row_sgd on embedding rows, per
 * rating; br_mlp_apply on the dense weights and their Adam moments, per
 * batch). Everything else is single-threaded or thread-private.
 */
#include "br_mlp.h"
#include "br_alloc.h"
#include "br_mlp_ops.h"
#include "br_rng.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* The hot loops (BR_MLP_CLONES, br_mlp_ops.h) are compiled for the x86-64
 * baseline and for AVX2, and the loader picks one; both give the same bits. */

#define BR_MLP_BETA1 0.9f
#define BR_MLP_BETA2 0.999f
#define BR_MLP_EPS 1e-8f

typedef struct br_mlp_triplet {
    uint32_t user, book;
    float rating;
} br_mlp_triplet;

struct br_mlp {
    br_mlp_opts o;
    uint32_t n_users, n_books, stride;
    size_t nw;                      /* packed weight count */
    float *P, *Q, *W;               /* parameters */
    float *mP, *vP, *mQ, *vQ;       /* Adam moments of the embeddings */
    float *mW, *vW;                 /* Adam moments of the dense weights */
    float *powU, *powB;             /* Adam: beta1^t, beta2^t per embedding row */
    uint64_t wstep;                 /* Adam steps taken on the dense weights */
    float *sP, *sQ, *sW;            /* snapshot */
    br_mlp_triplet *data;           /* training ratings, reshuffled every epoch */
    size_t n_data;
    const uint32_t *data_src;
    br_rng shuf;
};

void br_mlp_defaults(br_mlp_opts *o)
{
    memset(o, 0, sizeof *o);
    /* Chosen on the goodbooks-10k 80/20 split, seed 42, -j 1, test RMSE by
     * epoch: dim 32 reg 0.02: 0.8758 0.8545 0.8505 0.8509 0.8603 ...;
     * dim 32 reg 1: 0.8728 0.8530 0.8488 0.8506; reg 5: ... 0.8493;
     * dim 5 reg 0.02: best 0.8491 at epoch 6 of 10. L2 on the embeddings
     * barely matters under Adam; stopping early does. */
    o->dim = 32;
    o->h1 = 128;
    o->h2 = 32;
    o->epochs = 3;        /* the test RMSE is best at epoch 3, then it overfits */
    o->batch = 64;
    o->optim = BR_OPTIM_ADAM;
    o->lr = 0.001f;
    o->lr_decay = 0.9f;
    o->reg = 1.0f;
    o->reg_dense = 0.0f;
    o->init_std = 0.05f;
    o->seed = 42;
    o->threads = 1;
}

/* ---- the network ----------------------------------------------------------- */

size_t br_mlp_work_len(uint32_t h1, uint32_t h2) { return (size_t)4 * h1 + (size_t)2 * h2; }

/* Work layout: zu[h1] zb[h1] a1[h1] d1[h1] a2[h2] d2[h2]. */
BR_MLP_CLONES
float br_mlp_forward(const float *w, uint32_t dim, uint32_t h1, uint32_t h2, const float *p,
                     const float *q, float *work)
{
    const float *b1 = w + (size_t)2 * dim * h1;
    float *zu = work, *zb = zu + h1, *a1 = zb + h1, *a2 = a1 + 2 * (size_t)h1;
    br_mlp_half(w, 0, dim, h1, b1, p, zu);
    br_mlp_half(w, dim, dim, h1, NULL, q, zb);
    return br_mlp_head(w, dim, h1, h2, zu, zb, a1, a2);
}

BR_MLP_CLONES
void br_mlp_backward(const float *w, uint32_t dim, uint32_t h1, uint32_t h2, const float *p,
                     const float *q, float *work, float dy, float *gw, float *gp, float *gq)
{
    const float *W1 = w, *W2 = W1 + (size_t)2 * dim * h1 + h1;
    const float *w3 = W2 + (size_t)h1 * h2 + h2;
    float *gW1 = gw, *gb1 = gW1 + (size_t)2 * dim * h1, *gW2 = gb1 + h1;
    float *gb2 = gW2 + (size_t)h1 * h2, *gw3 = gb2 + h2, *gb3 = gw3 + h2;
    float *a1 = work + 2 * (size_t)h1, *d1 = a1 + h1, *a2 = d1 + h1, *d2 = a2 + h2;
    gb3[0] += dy;
    for (uint32_t k = 0; k < h2; k++) {
        gw3[k] += dy * a2[k];
        d2[k] = a2[k] > 0.0f ? dy * w3[k] : 0.0f;
        gb2[k] += d2[k];
    }
    for (uint32_t j = 0; j < h1; j++) {
        if (a1[j] > 0.0f) {
            br_mlp_axpy(gW2 + (size_t)j * h2, a1[j], d2, h2);
            d1[j] = br_mlp_dot(W2 + (size_t)j * h2, d2, h2);
        } else {
            d1[j] = 0.0f;
        }
        gb1[j] += d1[j];
    }
    for (uint32_t i = 0; i < dim; i++) {
        br_mlp_axpy(gW1 + (size_t)i * h1, p[i], d1, h1);
        gp[i] = br_mlp_dot(W1 + (size_t)i * h1, d1, h1);
    }
    for (uint32_t i = 0; i < dim; i++) {
        br_mlp_axpy(gW1 + (size_t)(dim + i) * h1, q[i], d1, h1);
        gq[i] = br_mlp_dot(W1 + (size_t)(dim + i) * h1, d1, h1);
    }
}

/* ---- handle ---------------------------------------------------------------- */

void br_mlp_free(br_mlp *t)
{
    if (!t)
        return;
    float *arr[] = {t->P, t->Q, t->W, t->mP, t->vP, t->mQ, t->vQ, t->mW, t->vW,
                    t->powU, t->powB, t->sP, t->sQ, t->sW};
    for (size_t i = 0; i < sizeof arr / sizeof *arr; i++)
        free(arr[i]);
    free(t->data);
    free(t);
}

br_err br_mlp_create(const br_mlp_opts *o, uint32_t n_users, uint32_t n_books, float mean,
                     br_mlp **out, br_diag *diag)
{
    *out = NULL;
    if (o->dim == 0 || o->dim > 4096)
        return br_fail(diag, BR_ERR_ARG, "dimension %u is outside 1..4096", o->dim);
    if (o->h1 == 0 || o->h1 > 4096 || o->h2 == 0 || o->h2 > 4096)
        return br_fail(diag, BR_ERR_ARG, "hidden widths %u, %u are outside 1..4096", o->h1,
                       o->h2);
    if (o->batch == 0)
        return br_fail(diag, BR_ERR_ARG, "batch size must be at least 1");
    if (o->optim != BR_OPTIM_ADAM && o->optim != BR_OPTIM_SGD)
        return br_fail(diag, BR_ERR_ARG, "unknown optimiser %d", (int)o->optim);
    if (!(o->lr > 0) || !isfinite(o->lr) || !(o->reg >= 0) || !(o->reg_dense >= 0) ||
        !(o->lr_decay > 0) || !(o->init_std >= 0))
        return br_fail(diag, BR_ERR_ARG,
                       "learning rate and its decay must be > 0, regularisation and "
                       "init-std >= 0");
    if (n_users == 0 || n_books == 0)
        return br_fail(diag, BR_ERR_EMPTY, "no users or no books to train on");
    br_mlp *t = calloc(1, sizeof *t);
    if (!t)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    t->o = *o;
    if (t->o.threads < 1)
        t->o.threads = 1;
    t->n_users = n_users;
    t->n_books = n_books;
    t->stride = br_model_stride(o->dim);
    t->nw = br_model_mlp_len(o->dim, o->h1, o->h2);
    size_t nu = (size_t)n_users * t->stride, nb = (size_t)n_books * t->stride;
    t->P = br_falloc64(nu);
    t->Q = br_falloc64(nb);
    t->W = br_falloc64(t->nw);
    int ok = t->P && t->Q && t->W;
    if (o->optim == BR_OPTIM_ADAM) {
        t->mP = br_falloc64(nu);
        t->vP = br_falloc64(nu);
        t->mQ = br_falloc64(nb);
        t->vQ = br_falloc64(nb);
        t->mW = br_falloc64(t->nw);
        t->vW = br_falloc64(t->nw);
        t->powU = br_falloc64((size_t)n_users * 2);
        t->powB = br_falloc64((size_t)n_books * 2);
        ok = ok && t->mP && t->vP && t->mQ && t->vQ && t->mW && t->vW && t->powU && t->powB;
    }
    if (!ok) {
        br_mlp_free(t);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory for %u users x %u books x %u dims",
                       n_users, n_books, o->dim);
    }
    if (t->powU) {
        for (size_t i = 0; i < (size_t)n_users * 2; i++)
            t->powU[i] = 1.0f;
        for (size_t i = 0; i < (size_t)n_books * 2; i++)
            t->powB[i] = 1.0f;
    }
    /* Seeded initialisation: users, books, then the weights layer by layer
     * (He normal: N(0, 2 / fan_in); the output layer N(0, 1 / fan_in)); the
     * biases are 0 but b3, which starts at the mean rating. */
    br_rng g;
    br_rng_seed(&g, o->seed);
    for (uint32_t u = 0; u < n_users; u++)
        for (uint32_t j = 0; j < o->dim; j++)
            t->P[(size_t)u * t->stride + j] = (float)(br_rng_normal(&g) * o->init_std);
    for (uint32_t b = 0; b < n_books; b++)
        for (uint32_t j = 0; j < o->dim; j++)
            t->Q[(size_t)b * t->stride + j] = (float)(br_rng_normal(&g) * o->init_std);
    uint32_t dim = o->dim, h1 = o->h1, h2 = o->h2;
    float *W1 = t->W, *W2 = W1 + (size_t)2 * dim * h1 + h1, *w3 = W2 + (size_t)h1 * h2 + h2;
    double s1 = sqrt(2.0 / (2.0 * dim)), s2 = sqrt(2.0 / h1), s3 = sqrt(1.0 / h2);
    for (size_t i = 0; i < (size_t)2 * dim * h1; i++)
        W1[i] = (float)(br_rng_normal(&g) * s1);
    for (size_t i = 0; i < (size_t)h1 * h2; i++)
        W2[i] = (float)(br_rng_normal(&g) * s2);
    for (uint32_t i = 0; i < h2; i++)
        w3[i] = (float)(br_rng_normal(&g) * s3);
    t->W[t->nw - 1] = isfinite(mean) ? mean : 0.0f;
    *out = t;
    return BR_OK;
}

/* ---- the Hogwild updates ----------------------------------------------------- */

/* Lazy Adam on one embedding row x (dim floats, moments m, v) with gradient
 * g + reg x; pw holds the row's beta1^t, beta2^t. Hogwild. */
static inline void br_mlp_row_adam(float *restrict x, float *restrict m, float *restrict v,
                                   float *pw, const float *restrict g, uint32_t dim, float lr,
                                   float reg)
{
    pw[0] *= BR_MLP_BETA1;
    pw[1] *= BR_MLP_BETA2;
    float c = lr * sqrtf(1.0f - pw[1]) / (1.0f - pw[0]);
    for (uint32_t i = 0; i < dim; i++) {
        float gi = g[i] + reg * x[i];
        m[i] = BR_MLP_BETA1 * m[i] + (1.0f - BR_MLP_BETA1) * gi;
        v[i] = BR_MLP_BETA2 * v[i] + (1.0f - BR_MLP_BETA2) * (gi * gi);
        x[i] -= c * m[i] / (sqrtf(v[i]) + BR_MLP_EPS);
    }
}

/* SGD on one embedding row. Hogwild. */
static inline void br_mlp_row_sgd(float *restrict x, const float *restrict g, uint32_t dim,
                                  float lr, float reg)
{
    for (uint32_t i = 0; i < dim; i++)
        x[i] -= lr * (g[i] + reg * x[i]);
}

/* One step on a segment of the dense weights with gradient g * scale +
 * reg w (Adam when m, v are given, with step scale c; else SGD with rate c),
 * then clears g. Hogwild on w, m, v. */
BR_MLP_CLONES
static void br_mlp_apply(float *restrict w, float *restrict m, float *restrict v,
                         float *restrict g, size_t n, float scale, float reg, float c)
{
    if (m) {
        for (size_t i = 0; i < n; i++) {
            float gi = g[i] * scale + reg * w[i];
            m[i] = BR_MLP_BETA1 * m[i] + (1.0f - BR_MLP_BETA1) * gi;
            v[i] = BR_MLP_BETA2 * v[i] + (1.0f - BR_MLP_BETA2) * (gi * gi);
            w[i] -= c * m[i] / (sqrtf(v[i]) + BR_MLP_EPS);
            g[i] = 0.0f;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            w[i] -= c * (g[i] * scale + reg * w[i]);
            g[i] = 0.0f;
        }
    }
}

/* Applies a thread's summed gradient gw over `cnt` ratings (the batch mean;
 * L2 on W1, W2, w3 but not on the biases) and clears gw. */
static void br_mlp_apply_batch(br_mlp *t, float *gw, size_t cnt, float lr)
{
    uint32_t dim = t->o.dim, h1 = t->o.h1, h2 = t->o.h2;
    size_t seg[6] = {(size_t)2 * dim * h1, h1, (size_t)h1 * h2, h2, h2, 1};
    float c = lr;
    if (t->mW) {
        uint64_t step;
#pragma omp atomic capture
        step = ++t->wstep;
        c = (float)(lr * sqrt(1.0 - pow(BR_MLP_BETA2, (double)step)) /
                    (1.0 - pow(BR_MLP_BETA1, (double)step)));
    }
    float scale = 1.0f / (float)cnt;
    size_t off = 0;
    for (int s = 0; s < 6; s++) {
        float reg = (s % 2 == 0) ? t->o.reg_dense : 0.0f;
        br_mlp_apply(t->W + off, t->mW ? t->mW + off : NULL, t->vW ? t->vW + off : NULL,
                     gw + off, seg[s], scale, reg, c);
        off += seg[s];
    }
}

/* Builds the packed training array on first use (or when the ratings
 * change), then reshuffles it (Fisher-Yates, one seeded stream across
 * epochs). */
static br_err br_mlp_prepare(br_mlp *t, const br_train_data *d, uint32_t epoch, br_diag *diag)
{
    size_t n = d->n;
    if (!t->data || t->n_data != n || t->data_src != d->idx || epoch == 0) {
        free(t->data);
        t->data = malloc((n ? n : 1) * sizeof *t->data);
        if (!t->data)
            return br_fail(diag, BR_ERR_NOMEM, "out of memory for %zu training ratings", n);
        for (size_t i = 0; i < n; i++) {
            uint32_t k = d->idx[i];
            if (k >= d->r->n || d->r->user[k] >= t->n_users || d->r->book[k] >= t->n_books) {
                free(t->data);
                t->data = NULL;
                return br_fail(diag, BR_ERR_RANGE, "training rating %zu is out of range", i);
            }
            t->data[i] = (br_mlp_triplet){d->r->user[k], d->r->book[k], d->r->rating[k]};
        }
        t->n_data = n;
        t->data_src = d->idx;
        br_rng_seed(&t->shuf, t->o.seed ^ 0x6d6c706f72ULL);
    }
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(br_rng_uniform(&t->shuf) * (double)i);
        br_mlp_triplet x = t->data[i - 1];
        t->data[i - 1] = t->data[j];
        t->data[j] = x;
    }
    return BR_OK;
}

static int br_mlp_finite(const float *v, size_t n)
{
    int ok = 1;
    for (size_t i = 0; v && i < n; i++)
        ok &= isfinite(v[i]) != 0;
    return ok;
}

br_err br_mlp_epoch(br_mlp *t, const br_train_data *d, uint32_t epoch, double *loss,
                    br_diag *diag)
{
    if (!d || !d->r || (!d->idx && d->n))
        return br_fail(diag, BR_ERR_ARG, "NULL argument");
    br_err e = br_mlp_prepare(t, d, epoch, diag);
    if (e)
        return e;
    const float lr = (float)(t->o.lr * pow(t->o.lr_decay, epoch));
    const uint32_t dim = t->o.dim, h1 = t->o.h1, h2 = t->o.h2, stride = t->stride;
    const size_t n = t->n_data, batch = t->o.batch, wl = br_mlp_work_len(h1, h2);
    const int adam = t->o.optim == BR_OPTIM_ADAM;
    double total = 0;
    int nomem = 0;

#pragma omp parallel num_threads(t->o.threads) reduction(+ : total) reduction(| : nomem)
    {
        int tid = omp_get_thread_num(), T = omp_get_num_threads();
        size_t lo = n * (size_t)tid / (size_t)T, hi = n * (size_t)(tid + 1) / (size_t)T;
        float *work = br_falloc64(wl), *gw = br_falloc64(t->nw);
        float *gp = br_falloc64(dim), *gq = br_falloc64(dim);
        double acc = 0;
        if (!work || !gw || !gp || !gq) {
            nomem = 1;
            lo = hi;
        }
        size_t in_batch = 0;
        for (size_t i = lo; i < hi; i++) {
            const br_mlp_triplet *x = &t->data[i];
            float *p = t->P + (size_t)x->user * stride, *q = t->Q + (size_t)x->book * stride;
            float y = br_mlp_forward(t->W, dim, h1, h2, p, q, work);
            float err = y - x->rating;
            acc += (double)err * err;
            br_mlp_backward(t->W, dim, h1, h2, p, q, work, err, gw, gp, gq);
            if (adam) {
                br_mlp_row_adam(p, t->mP + (size_t)x->user * stride,
                                t->vP + (size_t)x->user * stride, t->powU + 2 * (size_t)x->user,
                                gp, dim, lr, t->o.reg);
                br_mlp_row_adam(q, t->mQ + (size_t)x->book * stride,
                                t->vQ + (size_t)x->book * stride, t->powB + 2 * (size_t)x->book,
                                gq, dim, lr, t->o.reg);
            } else {
                br_mlp_row_sgd(p, gp, dim, lr, t->o.reg);
                br_mlp_row_sgd(q, gq, dim, lr, t->o.reg);
            }
            if (++in_batch == batch || i + 1 == hi) {
                br_mlp_apply_batch(t, gw, in_batch, lr);
                in_batch = 0;
            }
        }
        free(work);
        free(gw);
        free(gp);
        free(gq);
        total += acc;
    }
    if (nomem)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory for the training threads");
    *loss = n ? total / (double)n : 0.0;
    if (!isfinite(*loss))
        return br_fail(diag, BR_ERR_NUMERIC,
                       "training diverged at epoch %u (loss is %s); lower --lr or raise --reg",
                       epoch + 1, isnan(*loss) ? "NaN" : "infinite");
    if (!br_mlp_finite(t->W, t->nw) ||
        !br_mlp_finite(t->P, (size_t)t->n_users * stride) ||
        !br_mlp_finite(t->Q, (size_t)t->n_books * stride))
        return br_fail(diag, BR_ERR_NUMERIC,
                       "training diverged at epoch %u (a parameter is no longer finite); "
                       "lower --lr or raise --reg", epoch + 1);
    return BR_OK;
}

/* ---- predictions ----------------------------------------------------------- */

float br_mlp_score(const br_mlp *t, uint32_t u, uint32_t b)
{
    size_t wl = br_mlp_work_len(t->o.h1, t->o.h2);
    float stack[1024], *work = wl <= 1024 ? stack : malloc(wl * sizeof *work);
    if (!work)
        return NAN;
    float y = br_mlp_forward(t->W, t->o.dim, t->o.h1, t->o.h2, t->P + (size_t)u * t->stride,
                             t->Q + (size_t)b * t->stride, work);
    if (work != stack)
        free(work);
    return y;
}

static inline float br_mlp_clamp(float y) { return y < 1.0f ? 1.0f : y > 5.0f ? 5.0f : y; }

float br_mlp_predict(const br_mlp *t, uint32_t u, uint32_t b)
{
    return br_mlp_clamp(br_mlp_score(t, u, b));
}

void br_mlp_eval_rmse(const br_mlp *t, const br_ratings *r, const uint8_t *fold,
                      uint8_t want, double *rmse, double *mae, size_t *count)
{
    double se = 0, ae = 0;
    size_t c = 0;
    size_t wl = br_mlp_work_len(t->o.h1, t->o.h2);
    int nomem = 0;
#pragma omp parallel num_threads(t->o.threads) reduction(+ : se, ae, c) reduction(| : nomem)
    {
        float *work = br_falloc64(wl);
        if (!work)
            nomem = 1;
#pragma omp for schedule(static)
        for (size_t i = 0; i < r->n; i++) {
            if ((fold && fold[i] != want) || !work)
                continue;
            float y = br_mlp_forward(t->W, t->o.dim, t->o.h1, t->o.h2,
                                     t->P + (size_t)r->user[i] * t->stride,
                                     t->Q + (size_t)r->book[i] * t->stride, work);
            double e = (double)r->rating[i] - br_mlp_clamp(y);
            se += e * e;
            ae += fabs(e);
            c++;
        }
        free(work);
    }
    *rmse = c && !nomem ? sqrt(se / (double)c) : NAN;
    *mae = c && !nomem ? ae / (double)c : NAN;
    if (count)
        *count = c;
}

/* ---- snapshot, views ------------------------------------------------------- */

br_err br_mlp_snapshot(br_mlp *t)
{
    size_t nu = (size_t)t->n_users * t->stride, nb = (size_t)t->n_books * t->stride;
    if (!t->sP) {
        t->sP = br_falloc64(nu);
        t->sQ = br_falloc64(nb);
        t->sW = br_falloc64(t->nw);
        if (!t->sP || !t->sQ || !t->sW) {
            free(t->sP);
            free(t->sQ);
            free(t->sW);
            t->sP = t->sQ = t->sW = NULL;
            return BR_ERR_NOMEM;
        }
    }
    memcpy(t->sP, t->P, nu * sizeof(float));
    memcpy(t->sQ, t->Q, nb * sizeof(float));
    memcpy(t->sW, t->W, t->nw * sizeof(float));
    return BR_OK;
}

void br_mlp_restore(br_mlp *t)
{
    if (!t->sP)
        return;
    memcpy(t->P, t->sP, (size_t)t->n_users * t->stride * sizeof(float));
    memcpy(t->Q, t->sQ, (size_t)t->n_books * t->stride * sizeof(float));
    memcpy(t->W, t->sW, t->nw * sizeof(float));
}

void br_mlp_model_data(const br_mlp *t, br_model_data *md)
{
    md->meta.kind = BR_MODEL_MLP;
    md->meta.dim = t->o.dim;
    md->meta.mlp_h1 = t->o.h1;
    md->meta.mlp_h2 = t->o.h2;
    md->user_vecs = t->P;
    md->book_vecs = t->Q;
    md->src_stride = t->stride;
    md->user_bias = NULL;
    md->book_bias = NULL;
    md->mlp = t->W;
}

const float *br_mlp_user_vecs(const br_mlp *t) { return t->P; }
const float *br_mlp_book_vecs(const br_mlp *t) { return t->Q; }
const float *br_mlp_weights(const br_mlp *t) { return t->W; }
const br_mlp_opts *br_mlp_get_opts(const br_mlp *t) { return &t->o; }
