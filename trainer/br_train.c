/*
 * br_train.c - parameters, optimiser state and the Hogwild epoch loop.
 *
 * The per-rating update is one call into the kernel table (br_kernels.h),
 * whose sgd_mf / adam_mf / bpr_mf are the documented Hogwild kernels; the
 * bias updates beside them (br_step_*) race the same way and are the only
 * other unsynchronised writes. Everything else here is single-threaded or
 * thread-private.
 */
#include "br_train.h"
#include "br_alloc.h"
#include "br_kernels.h"
#include "br_rng.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* One training rating, packed so that an epoch streams through memory in
 * order and only the embedding rows are random accesses. */
typedef struct br_triplet {
    uint32_t user, book;
    float rating;
} br_triplet;

#define BR_BIAS_PITCH 4
#define BU(t, u) ((t)->ubs[(size_t)(u) * BR_BIAS_PITCH])
#define BB(t, b) ((t)->bbs[(size_t)(b) * BR_BIAS_PITCH])

struct br_trainer {
    br_train_opts o;
    uint32_t n_users, n_books, stride;
    float mean;
    float *P, *Q, *bu, *bb;                 /* parameters */
    float *mP, *vP, *mQ, *vQ;               /* Adam moments */
    /* Biases live in slots of BR_BIAS_PITCH floats (bias, Adam m, Adam v,
     * a spare), four to a cache line; bu/bb above are contiguous copies
     * refreshed after every epoch for evaluation and the model file. (The
     * slots were a cache line each, against Hogwild false sharing; with the
     * block schedule threads own disjoint users and books, and the padding
     * cost a cache miss per update: 3.4 MB of lines for 53k users.) */
    float *ubs, *bbs;
    float *powU, *powB;                     /* Adam: beta1^t, beta2^t per row (2 floats) */
    float *sP, *sQ, *sbu, *sbb, *sY;        /* snapshot */
    float *Y, *Peff;                        /* SVD++: implicit vectors, effective user rows */
    uint64_t *uptr;                         /* SVD++: data[] offsets per user */
    uint32_t *uorder;                       /* SVD++: users in this epoch's order */
    br_triplet *data, *tmp;                 /* training ratings, reshuffled every epoch */
    size_t n_data;
    const uint32_t *data_src;               /* the idx array data was built from */
    br_rng shuf;                            /* shuffle stream, continues across epochs */
    /* Block schedule (plain MSE/BPR): users and books are cut into nblk
     * contiguous groups; data[] is sorted into nblk x nblk blocks. */
    uint32_t nblk;
    uint64_t *blk_ptr;                      /* nblk*nblk + 1 offsets into data[] */
    uint32_t *rounds;                       /* this epoch's order of the nblk rounds */
    uint32_t *claim;                        /* per round and reader group: the epoch
                                               (claim_gen) that took its block */
    uint32_t claim_gen;
    /* Rating loss with rows of BR_RUNS_MIN_STRIDE floats or more: inside
     * each block one reader's ratings are taken together;
     * runs[run_ptr[k]..run_ptr[k+1]) are block k's readers (else NULL). */
    struct br_run { uint32_t lo, n; } *runs;
    uint64_t *run_ptr;
    float *regu, *regb;                     /* per-row L2 weights (reg_exp != 0), else NULL */
    const br_kernels *k;
    /* AutoRec: encoder rows V (n_users x stride), encoder bias mu; P is the
     * decoder W, Q the book codes h; training ratings by book. */
    float *V, *mu;
    uint64_t *bptr;
    uint32_t *bcol, *border;
    float *bval;
};

void br_train_defaults(br_train_opts *o, br_model_kind kind, br_loss_kind loss,
                       br_optim_kind optim)
{
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->loss = loss;
    o->optim = optim;
    /* Chosen on the goodbooks-10k 80/20 split (README, "Defaults"): for
     * ratings, many dimensions held small by strong regularisation, weighted
     * by each row's rating count, and a large first step (dim 32 with reg
     * 0.06 reached test RMSE 0.832, dim 128 with reg 0.12 0.822; with
     * reg_exp 0.25 and lr 0.1 for 18 epochs dim 192 0.8189, dim 256 0.8177,
     * and on two other splits 0.8187 / 0.8200 against 0.8178 / 0.8189; with
     * the groups cut by shares of the ratings, dim 256 0.8175, 0.8176, 0.8189). */
    static const struct {
        uint32_t dim, epochs;
        float lr, lr_decay, reg, reg_bias, reg_exp;
    } presets[] = {
        {256, 18, 0.1f, 0.9f, 0.12f, 0.07f, 0.25f},    /* ratings (mse), SGD */
        {128, 30, 0.002f, 0.9f, 0.15f, 0.03f, 0},      /* ratings, Adam */
        {5, 30, 0.02f, 0.9f, 0.06f, 0.01f, 0},         /* dot, mse: the seed tutorial's network */
        {5, 30, 0.002f, 0.9f, 0.06f, 0.01f, 0},        /* dot, mse, Adam */
        {64, 40, 0.1f, 0.95f, 0.01f, 0.01f, 0},        /* ranking (bpr), SGD */
        {64, 40, 0.005f, 0.95f, 0.01f, 0.01f, 0},      /* ranking, Adam */
    };
    size_t i = (loss == BR_LOSS_BPR ? 4 : kind == BR_MODEL_DOT ? 2 : 0) +
               (optim == BR_OPTIM_ADAM ? 1 : 0);
    o->dim = presets[i].dim;
    o->epochs = presets[i].epochs;
    o->lr = presets[i].lr;
    o->lr_decay = presets[i].lr_decay;
    o->reg = presets[i].reg;
    o->reg_bias = presets[i].reg_bias;
    o->reg_exp = presets[i].reg_exp;
    o->neg = loss == BR_LOSS_BPR ? 16 : 1;
    o->init_std = 0.1f;
    o->seed = 42;
    o->threads = 1;
    o->reg_y = 0.5f;
}

void br_train_defaults_autorec(br_train_opts *o)
{
    br_train_defaults(o, BR_MODEL_BIASED, BR_LOSS_MSE, BR_OPTIM_SGD);
    o->autorec = 1;
    o->dim = 200;        /* hidden units */
    o->epochs = 60;
    o->lr = 0.02f;
    o->lr_decay = 0.96f;
    o->reg = 1.0f;       /* per-update L2 on V and W: AutoRec overfits fast without it */
    o->reg_bias = 0.01f;
    o->reg_exp = 0;      /* one weight for all rows */
    o->init_std = 0.03f;
}

void br_trainer_trim(br_trainer *t)
{
    void *bufs[] = {t->data, t->tmp, t->blk_ptr, t->rounds, t->claim, t->runs, t->run_ptr,
                    t->regu, t->regb, t->bcol, t->bval};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        free(bufs[i]);
    t->data = t->tmp = NULL;
    t->blk_ptr = t->run_ptr = NULL;
    t->rounds = t->claim = NULL;
    t->runs = NULL;
    t->regu = t->regb = NULL;
    t->bcol = NULL;
    t->bval = NULL;
    t->n_data = 0;
    t->data_src = NULL;
}

void br_trainer_free(br_trainer *t)
{
    if (!t)
        return;
    float *arr[] = {t->P, t->Q, t->bu, t->bb, t->mP, t->vP, t->mQ, t->vQ, t->ubs, t->bbs,
                    t->powU, t->powB, t->sP, t->sQ, t->sbu, t->sbb, t->sY,
                    t->Y, t->Peff};
    free(t->uptr);
    free(t->uorder);
    free(t->V);
    free(t->mu);
    free(t->bptr);
    free(t->border);
    for (size_t i = 0; i < sizeof arr / sizeof *arr; i++)
        free(arr[i]);
    br_trainer_trim(t);
    free(t);
}

br_err br_trainer_create(const br_train_opts *o, uint32_t n_users, uint32_t n_books,
                         float mean, br_trainer **out, br_diag *diag)
{
    *out = NULL;
    if (o->dim == 0 || o->dim > 4096)
        return br_fail(diag, BR_ERR_ARG, "dimension %u is outside 1..4096", o->dim);
    if (o->kind != BR_MODEL_DOT && o->kind != BR_MODEL_BIASED)
        return br_fail(diag, BR_ERR_UNSUPPORTED, "this trainer builds dot and biased models");
    if (!(o->lr > 0) || !isfinite(o->lr) || !(o->reg >= 0) || !(o->reg_bias >= 0))
        return br_fail(diag, BR_ERR_ARG, "learning rate must be > 0 and regularisation >= 0");
    if (!(fabsf(o->reg_exp) <= 2))
        return br_fail(diag, BR_ERR_ARG, "the regularisation exponent must be within -2..2");
    if (o->reg_exp != 0 && (o->loss != BR_LOSS_MSE || o->optim != BR_OPTIM_SGD || o->autorec))
        return br_fail(diag, BR_ERR_UNSUPPORTED,
                       "the per-row regularisation exponent needs --loss mse --optim sgd");
    if (n_users == 0 || n_books == 0)
        return br_fail(diag, BR_ERR_EMPTY, "no users or no books to train on");
    if (o->implicit && (o->kind != BR_MODEL_BIASED || o->loss != BR_LOSS_MSE ||
                        o->optim != BR_OPTIM_SGD))
        return br_fail(diag, BR_ERR_UNSUPPORTED,
                       "the implicit (SVD++) term needs --model biased --loss mse --optim sgd");
    if (o->autorec && (o->kind != BR_MODEL_BIASED || o->loss != BR_LOSS_MSE ||
                       o->optim != BR_OPTIM_SGD || o->implicit))
        return br_fail(diag, BR_ERR_UNSUPPORTED,
                       "autorec trains with --loss mse --optim sgd (and no --implicit)");
    br_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    t->o = *o;
    if (t->o.threads < 1)
        t->o.threads = 1;
    if (t->o.neg < 1)
        t->o.neg = 1;
    t->n_users = n_users;
    t->n_books = n_books;
    t->stride = br_model_stride(o->dim);
    t->mean = o->kind == BR_MODEL_BIASED ? mean : 0.0f;
    t->k = br_kernels_get();
    size_t nu = (size_t)n_users * t->stride, nb = (size_t)n_books * t->stride;
    int biased = o->kind == BR_MODEL_BIASED;
    int adam = o->optim == BR_OPTIM_ADAM;
    t->P = br_falloc64_raw(nu);   /* filled below, padding included */
    t->Q = br_falloc64_raw(nb);
    int ok = t->P && t->Q;
    if (biased) {
        t->bu = br_falloc64(n_users);
        t->bb = br_falloc64(n_books);
        t->ubs = br_falloc64((size_t)n_users * BR_BIAS_PITCH);
        t->bbs = br_falloc64((size_t)n_books * BR_BIAS_PITCH);
        ok = ok && t->bu && t->bb && t->ubs && t->bbs;
    }
    if (adam) {
        t->mP = br_falloc64(nu);
        t->vP = br_falloc64(nu);
        t->mQ = br_falloc64(nb);
        t->vQ = br_falloc64(nb);
        t->powU = br_falloc64((size_t)n_users * 2);
        t->powB = br_falloc64((size_t)n_books * 2);
        ok = ok && t->mP && t->vP && t->mQ && t->vQ && t->powU && t->powB;
    }
    if (o->implicit) {
        t->Y = br_falloc64(nb);
        t->Peff = br_falloc64(nu);
        t->uptr = calloc((size_t)n_users + 1, sizeof *t->uptr);
        t->uorder = malloc((size_t)n_users * sizeof *t->uorder);
        ok = ok && t->Y && t->Peff && t->uptr && t->uorder;
    }
    if (o->autorec) {
        t->V = br_falloc64(nu);
        t->mu = br_falloc64(t->stride);
        t->bptr = calloc((size_t)n_books + 1, sizeof *t->bptr);
        t->border = malloc((size_t)n_books * sizeof *t->border);
        ok = ok && t->V && t->mu && t->bptr && t->border;
    }
    if (!ok) {
        br_trainer_free(t);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory for %u users x %u books x %u dims",
                       n_users, n_books, o->dim);
    }
    if (adam) {
        for (size_t i = 0; i < (size_t)n_users * 2; i++)
            t->powU[i] = 1.0f;
        for (size_t i = 0; i < (size_t)n_books * 2; i++)
            t->powB[i] = 1.0f;
    }
    /* Seeded initialisation, each row from its own stream (so the threads
     * draw the same values whatever their number, and touch the pages they
     * will use first). */
#pragma omp parallel for num_threads(t->o.threads) schedule(static)
    for (size_t row = 0; row < (size_t)n_users + n_books; row++) {
        br_rng gr;
        br_rng_seed(&gr, o->seed ^ ((uint64_t)(row + 1) * 0x9e3779b97f4a7c15ULL));
        float *x = row < n_users ? t->P + row * t->stride : t->Q + (row - n_users) * t->stride;
        for (uint32_t j = 0; j < o->dim; j++)
            x[j] = br_rng_bell(&gr) * o->init_std;
        for (uint32_t j = o->dim; j < t->stride; j++)
            x[j] = 0.0f;
    }
    if (o->autorec) {
        /* Decoder W is P (drawn above); encoder V likewise; the decoder's
         * reader biases start at the mean, which the model then carries. */
        br_rng g;
        br_rng_seed(&g, o->seed);
        for (uint32_t u = 0; u < n_users; u++)
            for (uint32_t j = 0; j < o->dim; j++)
                t->V[(size_t)u * t->stride + j] = (float)(br_rng_normal(&g) * o->init_std);
        for (uint32_t u = 0; u < n_users; u++)
            BU(t, u) = mean;
        t->mean = 0.0f;
    }
    *out = t;
    return BR_OK;
}

/* ---- Hogwild steps ---------------------------------------------------------
 * Each step reads and writes the rows of one user and one or two books with
 * no lock; see br_kernels.h for why that is deliberate. */

/* A row's L2 weight: reg, or reg x (mean count / the row's count)^reg_exp. */
#define BR_REG_U(t, u) ((t)->regu ? (t)->regu[u] : (t)->o.reg)
#define BR_REG_B(t, b) ((t)->regb ? (t)->regb[b] : (t)->o.reg)

static inline float br_step_sgd(br_trainer *t, uint32_t u, uint32_t b, float r, float lr)
{
    float *p = t->P + (size_t)u * t->stride, *q = t->Q + (size_t)b * t->stride;
    float base = t->mean;
    if (t->ubs)
        base += BU(t, u) + BB(t, b);
    float e = t->k->sgd_mf(p, q, t->stride, base, r, lr, BR_REG_U(t, u), BR_REG_B(t, b));
    if (t->ubs) {
        float rb = t->o.reg_bias;
        BU(t, u) += lr * (e - rb * BU(t, u));
        BB(t, b) += lr * (e - rb * BB(t, b));
    }
    return e;
}

/* Lazy Adam on a scalar parameter (a bias). */
static inline void br_adam_scalar(float *x, float *m, float *v, float g, const br_adam *a,
                                  float c)
{
    *m = a->beta1 * *m + (1.0f - a->beta1) * g;
    *v = a->beta2 * *v + (1.0f - a->beta2) * g * g;
    *x -= c * *m / (sqrtf(*v) + a->eps);
}

/* Advances a row's step count (kept as beta1^t, beta2^t) and returns its
 * bias-corrected step scale lr * sqrt(1 - beta2^t) / (1 - beta1^t). */
static inline float br_adam_scale(float *pw, const br_adam *a)
{
    pw[0] *= a->beta1;
    pw[1] *= a->beta2;
    return a->lr * sqrtf(1.0f - pw[1]) / (1.0f - pw[0]);
}

static inline float br_step_adam(br_trainer *t, uint32_t u, uint32_t b, float r,
                                 const br_adam *a)
{
    size_t ou = (size_t)u * t->stride, ob = (size_t)b * t->stride;
    float base = t->mean;
    if (t->ubs)
        base += BU(t, u) + BB(t, b);
    float cu = br_adam_scale(t->powU + 2 * (size_t)u, a);
    float cb = br_adam_scale(t->powB + 2 * (size_t)b, a);
    float e = t->k->adam_mf(t->P + ou, t->Q + ob, t->mP + ou, t->vP + ou, t->mQ + ob,
                            t->vQ + ob, t->stride, base, r, a, cu, cb);
    if (t->ubs) {
        float rb = t->o.reg_bias, *su = &BU(t, u), *sb = &BB(t, b);
        br_adam_scalar(su, su + 1, su + 2, -e + rb * su[0], a, cu);
        br_adam_scalar(sb, sb + 1, sb + 2, -e + rb * sb[0], a, cb);
    }
    return e;
}

/* 1 if book b is in the sorted list [v, v+n). */
static inline int br_in_sorted(const uint32_t *v, size_t n, uint32_t b)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v[mid] < b)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && v[lo] == b;
}

static inline float br_step_bpr_adam(br_trainer *t, uint32_t u, uint32_t i, uint32_t j,
                                     const br_adam *a)
{
    size_t ou = (size_t)u * t->stride, oi = (size_t)i * t->stride, oj = (size_t)j * t->stride;
    float bd = t->bbs ? BB(t, i) - BB(t, j) : 0.0f;
    float cu = br_adam_scale(t->powU + 2 * (size_t)u, a);
    float ci = br_adam_scale(t->powB + 2 * (size_t)i, a);
    float cj = br_adam_scale(t->powB + 2 * (size_t)j, a);
    float x = t->k->adam_bpr(t->P + ou, t->Q + oi, t->Q + oj, t->mP + ou, t->vP + ou,
                             t->mQ + oi, t->vQ + oi, t->mQ + oj, t->vQ + oj, t->stride, bd, a,
                             cu, ci, cj);
    if (t->bbs) {
        float g = br_sigmoid_neg(x), rb = t->o.reg_bias, *si = &BB(t, i), *sj = &BB(t, j);
        br_adam_scalar(si, si + 1, si + 2, -g + rb * si[0], a, ci);
        br_adam_scalar(sj, sj + 1, sj + 2, g + rb * sj[0], a, cj);
    }
    return x;
}

static inline float br_step_bpr(br_trainer *t, uint32_t u, uint32_t i, uint32_t j, float lr)
{
    float *p = t->P + (size_t)u * t->stride;
    float *qi = t->Q + (size_t)i * t->stride, *qj = t->Q + (size_t)j * t->stride;
    float bd = t->bbs ? BB(t, i) - BB(t, j) : 0.0f;
    float x = t->k->bpr_mf(p, qi, qj, t->stride, bd, lr, t->o.reg);
    if (t->bbs) {
        float g = br_sigmoid_neg(x), rb = t->o.reg_bias;
        BB(t, i) += lr * (g - rb * BB(t, i));
        BB(t, j) += lr * (-g - rb * BB(t, j));
    }
    return x;
}

/* -log(sigmoid(x)), stable for large |x| (float: it runs once per update). */
static inline float br_softplus_neg(float x)
{
    return x > 0 ? log1pf(expf(-x)) : -x + log1pf(expf(x));
}

/* Contiguous copies of the padded bias slots (and back). */
static void br_bias_export(br_trainer *t)
{
    if (!t->ubs)
        return;
    for (uint32_t u = 0; u < t->n_users; u++)
        t->bu[u] = BU(t, u);
    for (uint32_t b = 0; b < t->n_books; b++)
        t->bb[b] = BB(t, b);
}

static void br_bias_import(br_trainer *t)
{
    if (!t->ubs)
        return;
    for (uint32_t u = 0; u < t->n_users; u++)
        BU(t, u) = t->bu[u];
    for (uint32_t b = 0; b < t->n_books; b++)
        BB(t, b) = t->bb[b];
}

/* Cuts ids 0..n_ids-1 (readers, or books with `books` set) into B groups
 * of consecutive ids holding about the same number of the n ratings, so
 * that the blocks of a round take about the same time; returns each id's
 * group (malloc'd), or NULL when out of memory. */
static uint8_t *br_group_cut(const br_triplet *data, size_t n, uint32_t n_ids, uint32_t B,
                             int books)
{
    uint8_t *grp = malloc(n_ids ? n_ids : 1);
    uint32_t *cnt = calloc(n_ids ? n_ids : 1, sizeof *cnt);
    if (!grp || !cnt) {
        free(grp);
        free(cnt);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        cnt[books ? data[i].book : data[i].user]++;
    uint64_t seen = 0;
    for (uint32_t id = 0; id < n_ids; id++) {
        /* the group of the id's middle rating, in B equal shares of n */
        uint64_t g = n ? (2 * seen + cnt[id]) * B / (2 * (uint64_t)n) : 0;
        grp[id] = (uint8_t)(g < B ? g : B - 1);
        seen += cnt[id];
    }
    free(cnt);
    return grp;
}

/* Sorts data[] into the nblk x nblk blocks of the schedule (stable counting
 * sort by block). Blocks (i, (i + s) mod nblk) for i = 0..nblk-1 share no
 * user and no book, so one round of them runs in parallel with no two
 * threads ever writing the same row: stratified SGD as in DSGD (Gemulla et
 * al. 2011) and LIBMF's FPSGD, which is what lets threads scale; inside a
 * block, updates are the plain lock-free (Hogwild) steps. */
static br_err br_block_sort(br_trainer *t, br_diag *diag)
{
    uint32_t B = (uint32_t)(2 * t->o.threads);
    if (B < 2)
        B = 2;
    if (B > 64)
        B = 64;
    if (B > t->n_users)
        B = t->n_users;
    if (B > t->n_books)
        B = t->n_books;
    free(t->blk_ptr);
    free(t->rounds);
    free(t->claim);
    t->nblk = B;
    t->blk_ptr = calloc((size_t)B * B + 1, sizeof *t->blk_ptr);
    t->rounds = malloc((size_t)B * sizeof *t->rounds);
    t->claim = calloc((size_t)B * B, sizeof *t->claim);
    t->claim_gen = 0;
    uint64_t *pos = malloc(((size_t)B * B + 1) * sizeof *pos);
    if (!t->blk_ptr || !t->rounds || !t->claim || !pos) {
        free(pos);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    size_t n = t->n_data;
    uint8_t *ug = br_group_cut(t->data, n, t->n_users, B, 0);
    uint8_t *bg = br_group_cut(t->data, n, t->n_books, B, 1);
    if (!ug || !bg) {
        free(ug);
        free(bg);
        free(pos);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
#define BR_BLOCK_OF(x) ((size_t)ug[(x).user] * B + bg[(x).book])
    for (size_t i = 0; i < n; i++)
        t->blk_ptr[BR_BLOCK_OF(t->data[i]) + 1]++;
    for (size_t k = 0; k < (size_t)B * B; k++)
        t->blk_ptr[k + 1] += t->blk_ptr[k];
    memcpy(pos, t->blk_ptr, ((size_t)B * B + 1) * sizeof *pos);
    for (size_t i = 0; i < n; i++)
        t->tmp[pos[BR_BLOCK_OF(t->data[i])]++] = t->data[i];
#undef BR_BLOCK_OF
    free(ug);
    free(bg);
    free(pos);
    memcpy(t->data, t->tmp, n * sizeof *t->data);
    return BR_OK;
}

/* The reader-by-reader order pays from rows of 128 floats (512 bytes) up:
 * -j 2 on the 981k ratings, 10 epochs, M updates/s reader by reader against
 * rating by rating: dim 64 25.6-26.6 / 27.4-28.3, dim 128 18.4-18.7 /
 * 16.9-18.0, dim 256 11.8-12.3 / 8.6-8.9 (below, rows are small enough
 * to stay cached anyway and the per-epoch copy costs more than it saves). */
#define BR_RUNS_MIN_STRIDE 128

/* n ratings from src into dst in a uniformly random order (the
 * "inside-out" Fisher-Yates: each one placed while copying). */
static void br_copy_shuffled(br_rng *g, br_triplet *dst, const br_triplet *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t j = br_rng_below(g, (uint32_t)(i + 1));
        if (j != i)
            dst[i] = dst[j];
        dst[j] = src[i];
    }
}

/* Block k's readers as runs (data[] in a block keeps the ratings' order,
 * which goes reader by reader). A reader whose ratings are not adjacent
 * simply makes several runs. */
static br_err br_block_runs(br_trainer *t, br_diag *diag)
{
    size_t nb = (size_t)t->nblk * t->nblk;
    free(t->runs);
    free(t->run_ptr);
    t->runs = malloc((t->n_data ? t->n_data : 1) * sizeof *t->runs);
    t->run_ptr = malloc((nb + 1) * sizeof *t->run_ptr);
    if (!t->runs || !t->run_ptr)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    size_t m = 0;
    for (size_t k = 0; k < nb; k++) {
        t->run_ptr[k] = m;
        for (uint64_t i = t->blk_ptr[k]; i < t->blk_ptr[k + 1]; i++) {
            if (i > t->blk_ptr[k] && t->data[i].user == t->data[i - 1].user)
                t->runs[m - 1].n++;
            else
                t->runs[m++] = (struct br_run){(uint32_t)i, 1};
        }
    }
    t->run_ptr[nb] = m;
    return BR_OK;
}

void br_row_weights(float *w, size_t n, double mean_count, float reg, float reg_exp)
{
    for (size_t i = 0; i < n; i++)
        w[i] = w[i] > 0 ? (float)(reg * pow(mean_count / w[i], reg_exp)) : reg;
}

/* Per-row L2 weights reg x (mean count / count)^reg_exp from the training
 * ratings: with reg_exp > 0 a reader or book with few ratings is held
 * closer to zero per step than one with many (per step, because every
 * rating applies the weight once, the total pull on a row still grows with
 * its count, as count^(1 - reg_exp)). */
static br_err br_row_regs(br_trainer *t, br_diag *diag)
{
    free(t->regu);
    free(t->regb);
    t->regu = t->regb = NULL;
    if (t->o.reg_exp == 0)
        return BR_OK;
    t->regu = calloc(t->n_users, sizeof *t->regu);
    t->regb = calloc(t->n_books, sizeof *t->regb);
    if (!t->regu || !t->regb)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < t->n_data; i++) {
        t->regu[t->data[i].user] += 1.0f;
        t->regb[t->data[i].book] += 1.0f;
    }
    br_row_weights(t->regu, t->n_users, (double)t->n_data / t->n_users, t->o.reg, t->o.reg_exp);
    br_row_weights(t->regb, t->n_books, (double)t->n_data / t->n_books, t->o.reg, t->o.reg_exp);
    return BR_OK;
}

/* Builds the packed training array on first use, then reshuffles it. */
static br_err br_trainer_prepare(br_trainer *t, const br_train_data *d, uint32_t epoch,
                                 br_diag *diag)
{
    size_t extra = t->o.loss == BR_LOSS_BPR ? d->n_extra : 0, n = d->n + extra;
    if (!t->data || t->n_data != n || t->data_src != d->idx || epoch == 0) {
        free(t->data);
        free(t->tmp);
        t->data = malloc((n ? n : 1) * sizeof *t->data);
        t->tmp = malloc((n ? n : 1) * sizeof *t->tmp);
        if (!t->data || !t->tmp)
            return br_fail(diag, BR_ERR_NOMEM, "out of memory for %zu training ratings", n);
        for (size_t i = 0; i < d->n; i++) {
            uint32_t k = d->idx[i];
            t->data[i] = (br_triplet){d->r->user[k], d->r->book[k], d->r->rating[k]};
        }
        for (size_t i = 0; i < extra; i++) {
            if (d->extra_user[i] >= t->n_users || d->extra_book[i] >= t->n_books)
                return br_fail(diag, BR_ERR_RANGE, "extra pair %zu is out of range", i);
            t->data[d->n + i] = (br_triplet){d->extra_user[i], d->extra_book[i], 1.0f};
        }
        t->n_data = n;
        t->data_src = d->idx;
        if (t->o.autorec) {
            free(t->bcol);
            free(t->bval);
            t->bcol = malloc((n ? n : 1) * sizeof *t->bcol);
            t->bval = malloc((n ? n : 1) * sizeof *t->bval);
            if (!t->bcol || !t->bval)
                return br_fail(diag, BR_ERR_NOMEM, "out of memory");
            memset(t->bptr, 0, ((size_t)t->n_books + 1) * sizeof *t->bptr);
            for (size_t i = 0; i < n; i++)
                t->bptr[t->data[i].book + 1]++;
            for (uint32_t b = 0; b < t->n_books; b++)
                t->bptr[b + 1] += t->bptr[b];
            uint64_t *pos = malloc(((size_t)t->n_books + 1) * sizeof *pos);
            if (!pos)
                return br_fail(diag, BR_ERR_NOMEM, "out of memory");
            memcpy(pos, t->bptr, ((size_t)t->n_books + 1) * sizeof *pos);
            for (size_t i = 0; i < n; i++) {
                uint64_t k = pos[t->data[i].book]++;
                t->bcol[k] = t->data[i].user;
                t->bval[k] = t->data[i].rating;
            }
            free(pos);
        }
        if (t->o.implicit) {
            /* idx ascends, so data[] is grouped by user: note each user's run. */
            memset(t->uptr, 0, ((size_t)t->n_users + 1) * sizeof *t->uptr);
            for (size_t i = 0; i < d->n; i++) {
                if (i && t->data[i].user < t->data[i - 1].user)
                    return br_fail(diag, BR_ERR_ARG, "implicit training needs ratings grouped by user");
                t->uptr[t->data[i].user + 1]++;
            }
            for (uint32_t u = 0; u < t->n_users; u++)
                t->uptr[u + 1] += t->uptr[u];
        }
        br_rng_seed(&t->shuf, t->o.seed ^ 0x6f72646572ULL);
        br_err e = br_row_regs(t, diag);
        if (!e && !t->o.autorec && !t->o.implicit) {
            e = br_block_sort(t, diag);
            if (!e && t->o.loss == BR_LOSS_MSE && t->stride >= BR_RUNS_MIN_STRIDE)
                e = br_block_runs(t, diag);
        }
        if (e)
            return e;
    }
    if (t->o.autorec) {
        for (uint32_t b = 0; b < t->n_books; b++)
            t->border[b] = b;
        br_rng_shuffle_u32(&t->shuf, t->border, t->n_books);
        return BR_OK;
    }
    if (!t->o.implicit) {
        /* A fresh order of the rounds (the blocks are reshuffled inside, in
         * parallel, by br_trainer_epoch). */
        uint32_t B = t->nblk;
        for (uint32_t r = 0; r < B; r++)
            t->rounds[r] = r;
        br_rng_shuffle_u32(&t->shuf, t->rounds, B);
        return BR_OK;
    }
    /* User by user: a fresh order of users, and each user's ratings shuffled. */
    for (uint32_t u = 0; u < t->n_users; u++) {
        t->uorder[u] = u;
        br_rng_shuffle_items(&t->shuf, t->data + t->uptr[u], t->uptr[u + 1] - t->uptr[u],
                             sizeof *t->data);
    }
    br_rng_shuffle_u32(&t->shuf, t->uorder, t->n_users);
    return BR_OK;
}

/* z = |N(u)|^-1/2 sum_{j in N(u)} y_j into out (stride floats); returns the scale. */
static float br_implicit_sum(const br_trainer *t, const br_csr *N, uint32_t u, float *out)
{
    memset(out, 0, t->stride * sizeof *out);
    if (!N || u >= N->n_rows)
        return 0.0f;
    uint64_t a = N->ptr[u], b = N->ptr[u + 1];
    if (a == b)
        return 0.0f;
    for (uint64_t k = a; k < b; k++) {
        const float *y = t->Y + (size_t)N->col[k] * t->stride;
        for (uint32_t i = 0; i < t->stride; i++)
            out[i] += y[i];
    }
    float s = 1.0f / sqrtf((float)(b - a));
    for (uint32_t i = 0; i < t->stride; i++)
        out[i] *= s;
    return s;
}

/* Effective user rows p_u + z_u, for evaluation and the model file. */
static void br_implicit_materialize(br_trainer *t, const br_csr *N)
{
#pragma omp parallel for num_threads(t->o.threads) schedule(static)
    for (uint32_t u = 0; u < t->n_users; u++) {
        float *pe = t->Peff + (size_t)u * t->stride;
        const float *p = t->P + (size_t)u * t->stride;
        br_implicit_sum(t, N, u, pe);
        for (uint32_t i = 0; i < t->stride; i++)
            pe[i] += p[i];
    }
}

/* One user's pass of SVD++ (Hogwild like the other steps): the ratings are
 * trained against the effective vector pe = p_u + z_u; its total change is
 * then given to p_u and, scaled by |N(u)|^-1/2, to every y_j in N(u). */
static double br_step_implicit_user(br_trainer *t, const br_csr *N, uint32_t u, float lr,
                                    float *pe, float *z)
{
    float s = br_implicit_sum(t, N, u, z);
    float *p = t->P + (size_t)u * t->stride;
    for (uint32_t i = 0; i < t->stride; i++)
        pe[i] = p[i] + z[i];
    double acc = 0;
    for (uint64_t k = t->uptr[u]; k < t->uptr[u + 1]; k++) {
        const br_triplet *x = &t->data[k];
        float *q = t->Q + (size_t)x->book * t->stride;
        float base = t->mean + (BU(t, u) + BB(t, x->book));
        float e = t->k->sgd_mf(pe, q, t->stride, base, x->rating, lr, BR_REG_U(t, u),
                               BR_REG_B(t, x->book));
        float rb = t->o.reg_bias;
        BU(t, u) += lr * (e - rb * BU(t, u));
        BB(t, x->book) += lr * (e - rb * BB(t, x->book));
        acc += (double)e * e;
    }
    /* delta = pe - (p + z) */
    for (uint32_t i = 0; i < t->stride; i++) {
        float delta = pe[i] - (p[i] + z[i]);
        z[i] = delta * s;
        p[i] += delta;
    }
    if (s > 0) {
        float decay = 1.0f - lr * t->o.reg_y;
        for (uint64_t k = N->ptr[u]; k < N->ptr[u + 1]; k++) {
            float *y = t->Y + (size_t)N->col[k] * t->stride;
            for (uint32_t i = 0; i < t->stride; i++)
                y[i] = y[i] * decay + z[i];
        }
    }
    return acc;
}

/* AutoRec: the code of book b into h (dim values, padding 0). */
static void br_autorec_encode(const br_trainer *t, uint32_t b, float *h)
{
    uint32_t dim = t->o.dim;
    memcpy(h, t->mu, t->stride * sizeof *h);
    for (uint64_t j = t->bptr[b]; j < t->bptr[b + 1]; j++) {
        const float *v = t->V + (size_t)t->bcol[j] * t->stride;
        float x = t->bval[j];
        for (uint32_t k = 0; k < dim; k++)
            h[k] += v[k] * x;
    }
    for (uint32_t k = 0; k < dim; k++)
        h[k] = 1.0f / (1.0f + expf(-h[k]));
    for (uint32_t k = dim; k < t->stride; k++)
        h[k] = 0.0f;
}

/* One book's SGD step of AutoRec (Hogwild on V, W and the reader biases):
 * encode, decode every training rating of the book, back-propagate. */
static double br_step_autorec_book(br_trainer *t, uint32_t b, float lr, float *h, float *gh)
{
    uint32_t dim = t->o.dim;
    float reg = t->o.reg;
    br_autorec_encode(t, b, h);
    memset(gh, 0, t->stride * sizeof *gh);
    double acc = 0;
    for (uint64_t j = t->bptr[b]; j < t->bptr[b + 1]; j++) {
        uint32_t u = t->bcol[j];
        float *w = t->P + (size_t)u * t->stride;
        float e = t->bval[j] - (BU(t, u) + t->k->dot(w, h, t->stride));
        acc += (double)e * e;
        for (uint32_t k = 0; k < dim; k++) {
            gh[k] += e * w[k];
            w[k] += lr * (e * h[k] - reg * w[k]);
        }
        BU(t, u) += lr * e;
    }
    for (uint32_t k = 0; k < dim; k++) {
        gh[k] *= h[k] * (1.0f - h[k]);
        t->mu[k] += lr * gh[k];
    }
    for (uint64_t j = t->bptr[b]; j < t->bptr[b + 1]; j++) {
        float *v = t->V + (size_t)t->bcol[j] * t->stride;
        float x = t->bval[j];
        for (uint32_t k = 0; k < dim; k++)
            v[k] += lr * (gh[k] * x - reg * v[k]);
    }
    return acc;
}

/* 1 if every float of v[0..n) is finite. */
static int br_all_finite(const float *v, size_t n)
{
    int ok = 1;
    for (size_t i = 0; v && i < n; i++)
        ok &= isfinite(v[i]) != 0;
    return ok;
}

/* 1 if every parameter (and the SVD++ rows, if any) is finite. */
static int br_params_finite(const br_trainer *t)
{
    size_t nu = (size_t)t->n_users * t->stride, nb = (size_t)t->n_books * t->stride;
    return br_all_finite(t->P, nu) && br_all_finite(t->Q, nb) &&
           br_all_finite(t->bu, t->n_users) && br_all_finite(t->bb, t->n_books) &&
           br_all_finite(t->Y, nb) && br_all_finite(t->Peff, nu);
}

/* The rows of a rating a few steps ahead are fetched while this one is
 * updated: the user and book rows are random accesses (the block's rows
 * exceed L2 at dim 128), and waiting on each in turn was most of a step. */
#define BR_PREFETCH_AHEAD 6
static inline void br_prefetch_rows(const br_trainer *t, uint32_t u, uint32_t b)
{
    br_prefetch_floats(t->P + (size_t)u * t->stride, t->stride, 1);
    br_prefetch_floats(t->Q + (size_t)b * t->stride, t->stride, 1);
    if (t->ubs) {
        __builtin_prefetch(&BU(t, u), 1);
        __builtin_prefetch(&BB(t, b), 1);
    }
}

static inline double br_step_mse(br_trainer *t, const br_triplet *x, float lr, const br_adam *a)
{
    float err = t->o.optim == BR_OPTIM_SGD ? br_step_sgd(t, x->user, x->book, x->rating, lr)
                                           : br_step_adam(t, x->user, x->book, x->rating, a);
    return (double)err * err;
}

/* Trains on data[lo..hi), one block, and returns the summed loss. BPR
 * negatives are drawn from the whole catalogue (drawn from the block's own
 * books, a positive would never be ranked against other groups' books:
 * measured Recall@10 0.157 against 0.19), so their rows are the one place
 * where threads may write the same row at once: Hogwild, as documented in
 * br_kernels.h. */
static double br_run_block(br_trainer *t, const br_train_data *d, uint64_t lo, uint64_t hi,
                           float lr, const br_adam *a, br_rng *g)
{
    double acc = 0;
    if (t->o.loss == BR_LOSS_MSE) {
        for (uint64_t i = lo; i < hi; i++) {
            const br_triplet *x = &t->data[i];
            if (i + BR_PREFETCH_AHEAD < hi)
                br_prefetch_rows(t, x[BR_PREFETCH_AHEAD].user, x[BR_PREFETCH_AHEAD].book);
            acc += br_step_mse(t, x, lr, a);
        }
        return acc;
    }
    for (uint64_t i = lo; i < hi; i++) {
        uint32_t u = t->data[i].user, b = t->data[i].book;
        const uint32_t *seen = d->pos->col + d->pos->ptr[u];
        size_t ns = d->pos->ptr[u + 1] - d->pos->ptr[u];
        /* Dynamic negative sampling: of `neg` unread candidates, train
         * against the one the model ranks highest. */
        uint32_t best = 0;
        float best_s = -INFINITY;
        const float *p = t->P + (size_t)u * t->stride;
        for (uint32_t s = 0; s < t->o.neg; s++) {
            uint32_t j;
            int tries = 0;
            do {
                j = br_rng_below(g, t->n_books);
            } while (br_in_sorted(seen, ns, j) && ++tries < 32);
            if (t->o.neg == 1) {
                best = j;
                break;
            }
            float sj = t->k->dot(p, t->Q + (size_t)j * t->stride, t->stride) +
                       (t->bbs ? BB(t, j) : 0.0f);
            if (sj > best_s) {
                best_s = sj;
                best = j;
            }
        }
        float x = t->o.optim == BR_OPTIM_ADAM ? br_step_bpr_adam(t, u, b, best, a)
                                              : br_step_bpr(t, u, b, best, lr);
        acc += br_softplus_neg(x);
    }
    return acc;
}

/* Round r's block of reader group i, if no other thread has claimed it in
 * this epoch (gen): trains it and returns its summed loss, else 0. */
static double br_round_block(br_trainer *t, const br_train_data *d, uint32_t r, uint32_t i,
                             uint32_t gen, uint32_t epoch, float lr, const br_adam *a)
{
    uint32_t B = t->nblk;
    if (__atomic_exchange_n(&t->claim[(size_t)r * B + i], gen, __ATOMIC_ACQ_REL) == gen)
        return 0;
    uint32_t blk = i * B + (i + t->rounds[r]) % B;
    br_rng bg;   /* per block, so any thread count draws the same */
    br_rng_seed(&bg, t->o.seed ^ ((uint64_t)epoch << 32) ^
                         (uint64_t)(blk + 1) * 0x9e3779b97f4a7c15ULL);
    return br_run_block(t, d, t->blk_ptr[blk], t->blk_ptr[blk + 1], lr, a, &bg);
}

br_err br_trainer_epoch(br_trainer *t, const br_train_data *d, uint32_t epoch, double *loss,
                        br_diag *diag)
{
    if (t->o.loss == BR_LOSS_BPR && !d->pos)
        return br_fail(diag, BR_ERR_ARG, "BPR training needs the read-books CSR");
    br_err e = br_trainer_prepare(t, d, epoch, diag);
    if (e)
        return e;
    float lr = t->o.lr;
    if (t->o.optim == BR_OPTIM_SGD)
        lr = (float)(t->o.lr * pow(t->o.lr_decay, epoch));
    br_adam a = {.lr = t->o.lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .reg = t->o.reg};
    int nth = t->o.threads;
    size_t n = t->n_data;
    double total = 0;
    uint32_t gen = ++t->claim_gen;   /* this epoch's blocks are claimed with it */
    if (gen == 0) {                   /* 0 means "never claimed": start again at 1 */
        gen = t->claim_gen = 1;
        if (t->claim)
            memset(t->claim, 0, (size_t)t->nblk * t->nblk * sizeof *t->claim);
    }

#pragma omp parallel num_threads(nth) reduction(+ : total)
    {
        int tid = omp_get_thread_num(), T = omp_get_num_threads();
        double acc = 0;
        if (t->o.autorec) {
            float *h = br_falloc64(t->stride), *gh = br_falloc64(t->stride);
            size_t blo = (size_t)t->n_books * (size_t)tid / (size_t)T;
            size_t bhi = (size_t)t->n_books * (size_t)(tid + 1) / (size_t)T;
            for (size_t i = blo; h && gh && i < bhi; i++)
                acc += br_step_autorec_book(t, t->border[i], lr, h, gh);
            if (!h || !gh)
                acc = NAN;
            free(h);
            free(gh);
        } else if (t->o.implicit) {
            float *pe = br_falloc64(t->stride), *z = br_falloc64(t->stride);
            size_t ulo = (size_t)t->n_users * (size_t)tid / (size_t)T;
            size_t uhi = (size_t)t->n_users * (size_t)(tid + 1) / (size_t)T;
            for (size_t i = ulo; pe && z && i < uhi; i++)
                acc += br_step_implicit_user(t, d->implicit_sets, t->uorder[i], lr, pe, z);
            if (!pe || !z)
                acc = NAN;
            free(pe);
            free(z);
        } else {
            /* The block schedule: nblk rounds of nblk independent blocks.
             * First a fresh order inside every block, each block with its
             * own stream, so any thread count shuffles alike. Both loops
             * are static: a thread owns the same reader groups (block rows)
             * in the shuffle and in every round, so their P rows and ratings
             * stay in its core's caches and only book rows change cores
             * (with any thread taking any block, 2 threads ran 1.7x one at
             * dim 32; owning, 2.1x). The groups hold equal shares of the
             * ratings (br_group_cut), which keeps the rounds balanced. */
            uint32_t B = t->nblk;
#pragma omp for schedule(static)
            for (uint32_t k = 0; k < B * B; k++) {
                br_rng sg;
                br_rng_seed(&sg, t->o.seed ^ 0x73687566ULL ^ ((uint64_t)epoch << 40) ^
                                     (uint64_t)(k + 1) * 0xbf58476d1ce4e5b9ULL);
                if (t->runs) {
                    /* Readers in a fresh order, each one's ratings shuffled,
                     * written out in that order into tmp (the block is then
                     * one flat pass, with no branch at each reader's end). */
                    struct br_run *rs = t->runs + t->run_ptr[k];
                    size_t nr = t->run_ptr[k + 1] - t->run_ptr[k];
                    br_rng_shuffle_items(&sg, rs, nr, sizeof *rs);
                    uint64_t at = t->blk_ptr[k];
                    for (size_t q = 0; q < nr; q++) {
                        br_copy_shuffled(&sg, t->tmp + at, t->data + rs[q].lo, rs[q].n);
                        rs[q].lo = (uint32_t)at;
                        at += rs[q].n;
                    }
                } else {
                    br_rng_shuffle_items(&sg, t->data + t->blk_ptr[k],
                                         t->blk_ptr[k + 1] - t->blk_ptr[k], sizeof *t->data);
                }
            }
            if (t->runs) {
#pragma omp single
                {
                    br_triplet *x = t->data;
                    t->data = t->tmp;
                    t->tmp = x;
                }
            }
            /* Each round: first the blocks of the thread's own reader
             * groups, then, from the far end, other threads' blocks not yet
             * claimed (a thread on a slower core is relieved of its last
             * blocks instead of keeping the others waiting). */
            uint32_t lo = B * (uint32_t)tid / (uint32_t)T;
            uint32_t hi = B * (uint32_t)(tid + 1) / (uint32_t)T;
            for (uint32_t r = 0; r < B; r++) {
                for (uint32_t i = lo; i < hi; i++)
                    acc += br_round_block(t, d, r, i, gen, epoch, lr, &a);
                for (uint32_t i = B; i-- > 0;)
                    if (i < lo || i >= hi)
                        acc += br_round_block(t, d, r, i, gen, epoch, lr, &a);
#pragma omp barrier
            }
        }
        total += acc;
    }
    *loss = n ? total / (double)n : 0.0;
    if (t->o.implicit)
        br_implicit_materialize(t, d->implicit_sets);
    if (t->o.autorec) {
#pragma omp parallel for num_threads(nth) schedule(static)
        for (uint32_t b = 0; b < t->n_books; b++)
            br_autorec_encode(t, b, t->Q + (size_t)b * t->stride);
    }
    br_bias_export(t);
    if (!isfinite(*loss))
        return br_fail(diag, BR_ERR_NUMERIC,
                       "training diverged at epoch %u (loss is %s); lower --lr or raise --reg",
                       epoch + 1, isnan(*loss) ? "NaN" : "infinite");
    /* The loss is measured before each update, so the last updates of a pass
     * can overflow a parameter while the loss still looks finite. */
    if (!br_params_finite(t))
        return br_fail(diag, BR_ERR_NUMERIC,
                       "training diverged at epoch %u (a parameter is no longer finite); "
                       "lower --lr or raise --reg", epoch + 1);
    return BR_OK;
}

br_err br_trainer_snapshot(br_trainer *t)
{
    size_t nu = (size_t)t->n_users * t->stride, nb = (size_t)t->n_books * t->stride;
    if (!t->sP) {
        t->sP = br_falloc64(nu);
        t->sQ = br_falloc64(nb);
        if (t->bu) {
            t->sbu = br_falloc64(t->n_users);
            t->sbb = br_falloc64(t->n_books);
        }
        if (t->Peff)
            t->sY = br_falloc64(nu);
        if (!t->sP || !t->sQ || (t->bu && (!t->sbu || !t->sbb)) || (t->Y && !t->sY))
            return BR_ERR_NOMEM;
    }
    /* SVD++: keep the effective user rows; y then only matters for resuming. */
    if (t->Peff)
        memcpy(t->sY, t->Peff, nu * sizeof(float));
    memcpy(t->sP, t->P, nu * sizeof(float));
    memcpy(t->sQ, t->Q, nb * sizeof(float));
    if (t->bu) {
        memcpy(t->sbu, t->bu, t->n_users * sizeof(float));
        memcpy(t->sbb, t->bb, t->n_books * sizeof(float));
    }
    return BR_OK;
}

void br_trainer_restore(br_trainer *t)
{
    if (!t->sP)
        return;
    if (t->Peff)
        memcpy(t->Peff, t->sY, (size_t)t->n_users * t->stride * sizeof(float));
    memcpy(t->P, t->sP, (size_t)t->n_users * t->stride * sizeof(float));
    memcpy(t->Q, t->sQ, (size_t)t->n_books * t->stride * sizeof(float));
    if (t->bu) {
        memcpy(t->bu, t->sbu, t->n_users * sizeof(float));
        memcpy(t->bb, t->sbb, t->n_books * sizeof(float));
        br_bias_import(t);
    }
}

void br_trainer_params(const br_trainer *t, br_params *out)
{
    out->kind = t->o.kind;
    out->dim = t->o.dim;
    out->stride = t->stride;
    out->n_users = t->n_users;
    out->n_books = t->n_books;
    out->mean = t->mean;
    out->P = t->Peff ? t->Peff : t->P;
    out->Q = t->Q;
    out->bu = t->bu;
    out->bb = t->bb;
    out->clamp = t->o.loss == BR_LOSS_MSE;
}

float br_params_score(const br_params *p, uint32_t u, uint32_t b)
{
    float base = p->mean + (p->bu ? p->bu[u] + p->bb[b] : 0.0f);
    return base + br_kernels_get()->dot(p->P + (size_t)u * p->stride,
                                        p->Q + (size_t)b * p->stride, p->stride);
}

float br_trainer_predict(const br_trainer *t, uint32_t u, uint32_t b)
{
    br_params p;
    br_trainer_params(t, &p);
    float s = br_params_score(&p, u, b);
    if (p.clamp)
        s = s < 1.0f ? 1.0f : s > 5.0f ? 5.0f : s;
    return s;
}
