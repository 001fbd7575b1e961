/*
 * br_dist.c - DSGD over MPI ranks with Hogwild threads inside each rank
 * (see br_dist.h). The pure parts (partition, schedule, loader) are in
 * br_dist_plan.c; this file holds the parameters and every MPI call.
 */
#include "br_dist.h"
#include "br_alloc.h"
#include "br_books.h"
#include "br_dist_plan.h"
#include "br_kernels.h"
#include "br_model.h"
#include "br_rng.h"

#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A rating as the rotation needs it: local user, slot in its book block. */
typedef struct br_dtrip {
    uint32_t user, slot;
    float rating;
} br_dtrip;

struct br_dist {
    br_dist_opts o;
    int rank, nranks;
    MPI_Comm comm;
    br_ratings *r;              /* this rank's ratings, local indices */
    uint32_t *lb2g;             /* local book -> global book index */
    uint32_t *gbook;            /* global book ids, ascending */
    uint32_t n_books, stride;
    float mean;
    int biased;
    float *P, *bu;              /* this rank's users */
    float *regu, *regb;         /* per-row L2 weights (reg_exp != 0): local users, all books */
    br_dtrip *tr, *te;          /* training / test ratings grouped by book block */
    uint64_t *tr_ptr, *te_ptr;  /* nranks + 1 offsets each */
    /* Each block's training ratings are cut into tiles of tile_u users x
     * tile_b books (rows of both fit in a core's L2 cache together); an
     * epoch takes the tiles in a fresh random order and shuffles inside
     * each, so updates stay random but memory traffic stays local. */
    uint32_t tile_u, tile_b;
    uint64_t **tile_ptr;        /* per block: n_tiles + 1 offsets into tr[] */
    uint32_t *n_tiles, *tile_order;
    float *blk, *rbuf;          /* held block: sz*stride book rows, then sz biases */
    uint64_t step;              /* rotations so far: held block = (rank + step) mod R */
    const br_kernels *k;
    br_dist_info info;
};

br_err br_dist_start(int *argc, char ***argv, int *rank, int *nranks, br_diag *diag)
{
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return br_fail(diag, BR_ERR_IO, "MPI_Init_thread failed");
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, nranks);
    return BR_OK;
}

void br_dist_stop(void) { MPI_Finalize(); }

void br_dist_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

/* All ranks learn whether any failed; the first failing rank's code and
 * message become everyone's result. */
static br_err br_dist_agree(const br_dist *t, br_err e, br_diag *diag)
{
    int mine = e ? t->rank : t->nranks, first = t->nranks;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, t->comm);
    if (first == t->nranks)
        return BR_OK;
    int code = (int)e;
    char msg[BR_DIAG_MAX];
    snprintf(msg, sizeof msg, "%s", br_diag_text(diag, e));
    MPI_Bcast(&code, 1, MPI_INT, first, t->comm);
    MPI_Bcast(msg, BR_DIAG_MAX, MPI_CHAR, first, t->comm);
    msg[BR_DIAG_MAX - 1] = '\0';
    if (t->rank != first)
        br_fail(diag, (br_err)code, "rank %d: %s", first, msg);
    return (br_err)code;
}

void br_dist_free(br_dist *t)
{
    if (!t)
        return;
    br_ratings_free(t->r);
    free(t->lb2g);
    free(t->gbook);
    free(t->P);
    free(t->bu);
    free(t->regu);
    free(t->regb);
    free(t->tr);
    free(t->te);
    free(t->tr_ptr);
    free(t->te_ptr);
    for (int k = 0; t->tile_ptr && k < t->nranks; k++)
        free(t->tile_ptr[k]);
    free(t->tile_ptr);
    free(t->n_tiles);
    free(t->tile_order);
    free(t->blk);
    free(t->rbuf);
    free(t);
}

void br_dist_get_info(const br_dist *t, br_dist_info *out) { *out = t->info; }

static uint32_t br_block_sz(const br_dist *t, uint32_t k)
{
    return br_dist_block_size(t->n_books, (uint32_t)t->nranks, k);
}

/* Global book ids: every rank's sorted ids, gathered and merged. */
static br_err br_dist_global_books(br_dist *t, uint64_t *bytes, br_diag *diag)
{
    int R = t->nranks, mine = (int)t->r->n_books;
    int *cnt = malloc((size_t)R * sizeof *cnt), *off = malloc((size_t)R * sizeof *off);
    br_err e = !cnt || !off ? br_fail(diag, BR_ERR_NOMEM, "out of memory") : BR_OK;
    if ((e = br_dist_agree(t, e, diag))) {
        free(cnt);
        free(off);
        return e;
    }
    MPI_Allgather(&mine, 1, MPI_INT, cnt, 1, MPI_INT, t->comm);
    size_t total = 0;
    for (int i = 0; i < R; i++) {
        off[i] = (int)total;
        total += (size_t)cnt[i];
    }
    *bytes += (uint64_t)R * sizeof(int) + (uint64_t)total * sizeof(uint32_t);
    uint32_t *all = NULL, *merged = NULL, *tmp = NULL;
    if (total > INT_MAX) {
        e = br_fail(diag, BR_ERR_RANGE, "too many book ids to gather");
    } else {
        all = malloc((total ? total : 1) * sizeof *all);
        merged = malloc((total ? total : 1) * sizeof *merged);
        tmp = malloc((total ? total : 1) * sizeof *tmp);
        if (!all || !merged || !tmp)
            e = br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    e = br_dist_agree(t, e, diag);
    if (!e)
        MPI_Allgatherv(t->r->book_ids, mine, MPI_UINT32_T, all, cnt, off, MPI_UINT32_T,
                       t->comm);
    if (!e) {
        size_t n = 0;
        for (int i = 0; i < R; i++) {
            n = br_dist_merge_ids(merged, n, all + off[i], (size_t)cnt[i], tmp);
            uint32_t *x = merged;
            merged = tmp;
            tmp = x;
        }
        t->n_books = (uint32_t)n;
        t->gbook = merged;
        merged = NULL;
        t->lb2g = malloc(((size_t)t->r->n_books + 1) * sizeof *t->lb2g);
        if (!t->lb2g) {
            e = br_fail(diag, BR_ERR_NOMEM, "out of memory");
        } else {
            /* both lists ascend: one walk */
            size_t g = 0;
            for (uint32_t b = 0; b < t->r->n_books; b++) {
                while (t->gbook[g] < t->r->book_ids[b])
                    g++;
                t->lb2g[b] = (uint32_t)g;
            }
        }
    }
    free(cnt);
    free(off);
    free(all);
    free(merged);
    free(tmp);
    return e;
}

/* Groups this rank's ratings by book block: train and test lists. */
static br_err br_dist_group(br_dist *t, const uint8_t *fold, br_diag *diag)
{
    uint32_t R = (uint32_t)t->nranks;
    const br_ratings *r = t->r;
    t->tr_ptr = calloc((size_t)R + 1, sizeof *t->tr_ptr);
    t->te_ptr = calloc((size_t)R + 1, sizeof *t->te_ptr);
    uint64_t *ptr[2] = {t->tr_ptr, t->te_ptr};
    if (!t->tr_ptr || !t->te_ptr)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < r->n; i++) {
        if (fold[i] != BR_FOLD_TRAIN && fold[i] != BR_FOLD_TEST)
            continue;
        ptr[fold[i] == BR_FOLD_TEST][br_dist_book_block(t->lb2g[r->book[i]], R) + 1]++;
    }
    for (uint32_t k = 0; k < R; k++) {
        t->tr_ptr[k + 1] += t->tr_ptr[k];
        t->te_ptr[k + 1] += t->te_ptr[k];
    }
    t->tr = malloc((t->tr_ptr[R] ? t->tr_ptr[R] : 1) * sizeof *t->tr);
    t->te = malloc((t->te_ptr[R] ? t->te_ptr[R] : 1) * sizeof *t->te);
    uint64_t *pos = malloc(2 * ((size_t)R + 1) * sizeof *pos);
    if (!t->tr || !t->te || !pos) {
        free(pos);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    memcpy(pos, t->tr_ptr, ((size_t)R + 1) * sizeof *pos);
    memcpy(pos + R + 1, t->te_ptr, ((size_t)R + 1) * sizeof *pos);
    for (size_t i = 0; i < r->n; i++) {
        if (fold[i] != BR_FOLD_TRAIN && fold[i] != BR_FOLD_TEST)
            continue;
        uint32_t g = t->lb2g[r->book[i]], k = br_dist_book_block(g, R);
        br_dtrip x = {r->user[i], br_dist_book_slot(g, R), r->rating[i]};
        if (fold[i] == BR_FOLD_TEST)
            t->te[pos[R + 1 + k]++] = x;
        else
            t->tr[pos[k]++] = x;
    }
    free(pos);
    return BR_OK;
}

/* Sorts each block's training ratings into tiles (see struct br_dist). */
static br_err br_dist_tile(br_dist *t, br_diag *diag)
{
    uint32_t R = (uint32_t)t->nranks, nu = t->r->n_users, maxt = 1;
    t->tile_u = t->tile_b = 65536 / t->stride;   /* 256 KB of rows each */
    uint32_t ug = (nu + t->tile_u - 1) / t->tile_u;
    uint64_t maxn = 0;
    t->tile_ptr = calloc(R, sizeof *t->tile_ptr);
    t->n_tiles = calloc(R, sizeof *t->n_tiles);
    if (!t->tile_ptr || !t->n_tiles)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    for (uint32_t k = 0; k < R; k++) {
        uint32_t bg = (br_block_sz(t, k) + t->tile_b - 1) / t->tile_b;
        uint32_t nt = ug * bg;
        t->n_tiles[k] = nt ? nt : 1;
        if (t->n_tiles[k] > maxt)
            maxt = t->n_tiles[k];
        if (t->tr_ptr[k + 1] - t->tr_ptr[k] > maxn)
            maxn = t->tr_ptr[k + 1] - t->tr_ptr[k];
        t->tile_ptr[k] = calloc((size_t)t->n_tiles[k] + 1, sizeof **t->tile_ptr);
        if (!t->tile_ptr[k])
            return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    t->tile_order = malloc((size_t)maxt * sizeof *t->tile_order);
    br_dtrip *tmp = malloc((maxn ? maxn : 1) * sizeof *tmp);
    uint64_t *pos = malloc(((size_t)maxt + 1) * sizeof *pos);
    if (!t->tile_order || !tmp || !pos) {
        free(tmp);
        free(pos);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    for (uint32_t k = 0; k < R; k++) {
        uint32_t bg = (br_block_sz(t, k) + t->tile_b - 1) / t->tile_b;
        uint64_t *tp = t->tile_ptr[k], lo = t->tr_ptr[k], hi = t->tr_ptr[k + 1];
#define BR_TILE_OF(x) ((uint64_t)((x).user / t->tile_u) * bg + (x).slot / t->tile_b)
        for (uint64_t i = lo; i < hi; i++)
            tp[BR_TILE_OF(t->tr[i]) + 1]++;
        for (uint32_t j = 0; j < t->n_tiles[k]; j++)
            tp[j + 1] += tp[j];
        memcpy(pos, tp, ((size_t)t->n_tiles[k] + 1) * sizeof *pos);
        for (uint64_t i = lo; i < hi; i++)
            tmp[pos[BR_TILE_OF(t->tr[i])]++] = t->tr[i];
#undef BR_TILE_OF
        memcpy(t->tr + lo, tmp, (size_t)(hi - lo) * sizeof *tmp);
        for (uint32_t j = 0; j <= t->n_tiles[k]; j++)
            tp[j] += lo;
    }
    free(tmp);
    free(pos);
    return BR_OK;
}

br_err br_dist_create(const br_dist_opts *o, br_dist **out, br_diag *diag)
{
    *out = NULL;
    br_dist *t = calloc(1, sizeof *t);
    if (!t)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    t->o = *o;
    t->comm = MPI_COMM_WORLD;
    MPI_Comm_rank(t->comm, &t->rank);
    MPI_Comm_size(t->comm, &t->nranks);
    t->k = br_kernels_get();
    const br_train_opts *to = &o->train;
    uint32_t R = (uint32_t)t->nranks;
    br_err e = BR_OK;
    if ((to->kind != BR_MODEL_DOT && to->kind != BR_MODEL_BIASED) || to->loss != BR_LOSS_MSE ||
        to->optim != BR_OPTIM_SGD || to->implicit || to->autorec)
        e = br_fail(diag, BR_ERR_UNSUPPORTED,
                    "distributed training covers --model dot|biased --loss mse --optim sgd");
    else if (to->dim == 0 || to->dim > 4096 || !(to->lr > 0) || !(to->reg >= 0) ||
             !(to->reg_bias >= 0) || !(fabsf(to->reg_exp) <= 2))
        e = br_fail(diag, BR_ERR_ARG, "dimension must be 1..4096, lr > 0, regularisation >= 0, "
                    "its exponent within -2..2");
    else if (!(o->holdout >= 0 && o->holdout < 1))
        e = br_fail(diag, BR_ERR_ARG, "holdout must be in [0, 1)");
    e = br_dist_agree(t, e, diag);
    if (e) {
        br_dist_free(t);
        return e;
    }
    t->biased = to->kind == BR_MODEL_BIASED;
    t->stride = br_model_stride(to->dim);

    /* ---- this rank's share ---- */
    double l0 = MPI_Wtime();
    e = br_dist_load_share(o->ratings, &o->load, (uint32_t)t->rank, R, o->chunk_bytes, &t->r,
                           diag);
    e = br_dist_agree(t, e, diag);
    if (e) {
        br_dist_free(t);
        return e;
    }
    double load_s = MPI_Wtime() - l0;
    uint64_t bytes = 0;
    e = br_dist_global_books(t, &bytes, diag);
    e = br_dist_agree(t, e, diag);
    uint8_t *fold = NULL;
    if (!e) {
        fold = calloc(t->r->n ? t->r->n : 1, 1);
        if (!fold)
            e = br_fail(diag, BR_ERR_NOMEM, "out of memory");
        else if (o->holdout > 0)
            br_split_hash(t->r, o->holdout, to->seed, fold, BR_FOLD_TEST);
        if (!e)
            e = br_dist_group(t, fold, diag);
        if (!e)
            e = br_dist_tile(t, diag);
    }
    e = br_dist_agree(t, e, diag);
    free(fold);
    if (e) {
        br_dist_free(t);
        return e;
    }

    /* ---- global figures: one sum, one min/max ---- */
    double sum = 0;
    for (uint32_t k = 0; k < R; k++)
        for (uint64_t i = t->tr_ptr[k]; i < t->tr_ptr[k + 1]; i++)
            sum += t->tr[i].rating;
    double loc[8] = {sum, (double)t->tr_ptr[R], (double)t->te_ptr[R], (double)t->r->n,
                     (double)t->r->n_users, (double)t->r->rows, (double)t->r->dup_rows,
                     (double)t->r->skipped};
    double glob[8];
    MPI_Allreduce(loc, glob, 8, MPI_DOUBLE, MPI_SUM, t->comm);
    double mm[3] = {-(double)t->r->n, (double)t->r->n, load_s}, gmm[3];
    MPI_Allreduce(mm, gmm, 3, MPI_DOUBLE, MPI_MAX, t->comm);
    bytes += (uint64_t)R * (sizeof loc + sizeof mm);
    if (glob[1] < 1) {
        br_fail(diag, BR_ERR_EMPTY, "no training ratings left after the split");
        br_dist_free(t);
        return BR_ERR_EMPTY;
    }
    t->mean = t->biased ? (float)(glob[0] / glob[1]) : 0.0f;
    br_dist_info *in = &t->info;
    in->rank = t->rank;
    in->nranks = t->nranks;
    in->n_users = (uint32_t)glob[4];
    in->n_books = t->n_books;
    in->n_train = (uint64_t)glob[1];
    in->n_test = (uint64_t)glob[2];
    in->n_ratings = (uint64_t)glob[3];
    in->rows = (uint64_t)glob[5];
    in->dup_rows = (uint64_t)glob[6];
    in->skipped = (uint64_t)glob[7];
    in->min_local = (uint64_t)-gmm[0];
    in->max_local = (uint64_t)gmm[1];
    in->load_seconds = gmm[2];
    in->mean = t->mean;
    in->setup_bytes = bytes;

    /* ---- per-row L2 weights, as br_train.c: reg x (mean count / count)^reg_exp;
     * a user's ratings are all on its rank, a book's counts are summed ---- */
    if (to->reg_exp != 0) {
        t->regu = calloc(t->r->n_users ? t->r->n_users : 1, sizeof *t->regu);
        t->regb = calloc(t->n_books, sizeof *t->regb);
        e = !t->regu || !t->regb ? br_fail(diag, BR_ERR_NOMEM, "out of memory") : BR_OK;
        e = br_dist_agree(t, e, diag);
        if (e) {
            br_dist_free(t);
            return e;
        }
        for (uint32_t k = 0; k < R; k++)
            for (uint64_t i = t->tr_ptr[k]; i < t->tr_ptr[k + 1]; i++) {
                t->regu[t->tr[i].user] += 1.0f;
                t->regb[br_dist_book_global(k, t->tr[i].slot, R)] += 1.0f;
            }
        MPI_Allreduce(MPI_IN_PLACE, t->regb, (int)t->n_books, MPI_FLOAT, MPI_SUM, t->comm);
        bytes += (uint64_t)R * t->n_books * sizeof(float);
        in->setup_bytes = bytes;
        br_row_weights(t->regu, t->r->n_users, glob[1] / glob[4], to->reg, to->reg_exp);
        br_row_weights(t->regb, t->n_books, glob[1] / t->n_books, to->reg, to->reg_exp);
    }

    /* ---- parameters: rows drawn from (seed, id), whatever the rank count ---- */
    uint32_t nu = t->r->n_users, maxsz = br_block_sz(t, 0);
    size_t blkfl = (size_t)maxsz * (t->stride + 1);
    t->P = br_falloc64((size_t)nu * t->stride);
    t->bu = br_falloc64(nu);
    t->blk = br_falloc64(blkfl);
    t->rbuf = br_falloc64(blkfl);
    e = !t->P || !t->bu || !t->blk || !t->rbuf ? br_fail(diag, BR_ERR_NOMEM, "out of memory")
                                               : BR_OK;
    if (blkfl * sizeof(float) > INT_MAX)
        e = br_fail(diag, BR_ERR_RANGE, "a book block of %zu floats is too large to send", blkfl);
    e = br_dist_agree(t, e, diag);
    if (e) {
        br_dist_free(t);
        return e;
    }
    for (uint32_t u = 0; u < nu; u++)
        br_dist_init_row(t->P + (size_t)u * t->stride, to->dim, t->stride, to->seed, 0,
                         t->r->user_ids[u], to->init_std);
    uint32_t home = br_dist_block_at((uint32_t)t->rank, 0, R), sz = br_block_sz(t, home);
    for (uint32_t i = 0; i < sz; i++)
        br_dist_init_row(t->blk + (size_t)i * t->stride, to->dim, t->stride, to->seed, 1,
                         t->gbook[br_dist_book_global(home, i, R)], to->init_std);
    *out = t;
    return BR_OK;
}

/* Hands the held block to the previous rank and takes the next one's. */
static void br_dist_rotate(br_dist *t, uint64_t *bytes, double *secs)
{
    uint32_t R = (uint32_t)t->nranks, me = (uint32_t)t->rank;
    if (R == 1)
        return;
    double c0 = MPI_Wtime();
    uint32_t cur = br_dist_block_at(me, t->step, R), nxt = br_dist_block_at(me, t->step + 1, R);
    int sc = (int)((size_t)br_block_sz(t, cur) * (t->stride + 1));
    int rc = (int)((size_t)br_block_sz(t, nxt) * (t->stride + 1));
    MPI_Sendrecv(t->blk, sc, MPI_FLOAT, (int)br_dist_send_to(me, R), 17, t->rbuf, rc, MPI_FLOAT,
                 (int)br_dist_recv_from(me, R), 17, t->comm, MPI_STATUS_IGNORE);
    float *x = t->blk;
    t->blk = t->rbuf;
    t->rbuf = x;
    t->step++;
    *bytes += (uint64_t)sc * sizeof(float);
    *secs += MPI_Wtime() - c0;
}

/* Trains the held block's ratings, tile by tile in a fresh order, Hogwild
 * over the threads; returns the summed squared error (measured before each
 * update). */
static double br_dist_train_block(br_dist *t, uint32_t k, uint32_t epoch, float lr)
{
    uint64_t seed = t->o.train.seed ^ ((uint64_t)epoch << 40) ^ ((uint64_t)k << 20) ^
                    ((uint64_t)t->rank * 0x9e3779b97f4a7c15ULL) ^ 0x64736764ULL;
    br_rng g;
    br_rng_seed(&g, seed);
    uint32_t nt = t->n_tiles[k], *order = t->tile_order;
    for (uint32_t j = 0; j < nt; j++)
        order[j] = j;
    br_rng_shuffle_u32(&g, order, nt);
    const uint64_t *tp = t->tile_ptr[k];
    uint32_t stride = t->stride, sz = br_block_sz(t, k);
    float *Q = t->blk, *bb = t->blk + (size_t)sz * stride, *P = t->P, *bu = t->bu;
    float mean = t->mean, reg = t->o.train.reg, rb = t->o.train.reg_bias;
    uint32_t R = (uint32_t)t->nranks;
    int biased = t->biased;
    const br_kernels *kt = t->k;
    double acc = 0;
    /* Hogwild: threads on different tiles may update the same user or book
     * row at once (as in br_train.c; see br_kernels.h). */
#pragma omp parallel for num_threads(t->o.train.threads) schedule(dynamic, 1) reduction(+ : acc)
    for (uint32_t j = 0; j < nt; j++) {
        br_dtrip *s = t->tr + tp[order[j]];
        size_t n = tp[order[j] + 1] - tp[order[j]];
        br_rng tg;   /* per tile, so any thread count draws the same order */
        br_rng_seed(&tg, seed ^ (uint64_t)(order[j] + 1) * 0xbf58476d1ce4e5b9ULL);
        for (size_t i = n; i > 1; i--) {
            size_t m = br_rng_below(&tg, (uint32_t)i);
            br_dtrip x = s[i - 1];
            s[i - 1] = s[m];
            s[m] = x;
        }
        for (size_t i = 0; i < n; i++) {
            const br_dtrip *x = &s[i];
            float *p = P + (size_t)x->user * stride, *q = Q + (size_t)x->slot * stride;
            float base = biased ? mean + bu[x->user] + bb[x->slot] : 0.0f;
            float e = kt->sgd_mf(p, q, stride, base, x->rating, lr,
                                 t->regu ? t->regu[x->user] : reg,
                                 t->regb ? t->regb[br_dist_book_global(k, x->slot, R)] : reg);
            if (biased) {
                bu[x->user] += lr * (e - rb * bu[x->user]);
                bb[x->slot] += lr * (e - rb * bb[x->slot]);
            }
            acc += (double)e * e;
        }
    }
    return acc;
}

/* Squared and absolute errors of the held block's test ratings (clamped 1..5). */
static void br_dist_eval_block(const br_dist *t, uint32_t k, double *sse, double *sae)
{
    uint32_t stride = t->stride, sz = br_block_sz(t, k);
    const float *Q = t->blk, *bb = t->blk + (size_t)sz * stride;
    double a = 0, b = 0;
    for (uint64_t i = t->te_ptr[k]; i < t->te_ptr[k + 1]; i++) {
        const br_dtrip *x = &t->te[i];
        float s = t->k->dot(t->P + (size_t)x->user * stride, Q + (size_t)x->slot * stride, stride);
        if (t->biased)
            s += t->mean + t->bu[x->user] + bb[x->slot];
        s = s < 1.0f ? 1.0f : s > 5.0f ? 5.0f : s;
        double d = (double)x->rating - s;
        a += d * d;
        b += fabs(d);
    }
    *sse += a;
    *sae += b;
}

static int br_dist_finite(const float *v, size_t n)
{
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        ok &= isfinite(v[i]) != 0;
    return ok;
}

/* CPU seconds used by this process so far (all its threads). */
static double br_dist_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

br_err br_dist_epoch(br_dist *t, uint32_t epoch, br_dist_stats *st, br_diag *diag)
{
    uint32_t R = (uint32_t)t->nranks, me = (uint32_t)t->rank;
    memset(st, 0, sizeof *st);
    float lr = (float)(t->o.train.lr * pow(t->o.train.lr_decay, epoch));
    uint64_t tb = 0, eb = 0;
    double comm = 0, evcomm = 0, acc = 0, sse = 0, sae = 0;
    double cpu = 0, t0 = MPI_Wtime();
    /* R sub-epochs, one per book block, with R - 1 hand-overs between them. */
    for (uint32_t s = 0; s < R; s++) {
        if (s)
            br_dist_rotate(t, &tb, &comm);
        double c0 = br_dist_cpu_now();   /* compute only: MPI may spin while it waits */
        acc += br_dist_train_block(t, br_dist_block_at(me, t->step, R), epoch, lr);
        cpu += br_dist_cpu_now() - c0;
    }
    double t1 = MPI_Wtime();
    int bad = !br_dist_finite(t->P, (size_t)t->r->n_users * t->stride) ||
              !br_dist_finite(t->bu, t->r->n_users) || !isfinite(acc);
    if (t->info.n_test) {
        /* Every block once more, now only reading. */
        for (uint32_t s = 0; s < R; s++) {
            if (s)
                br_dist_rotate(t, &eb, &evcomm);
            uint32_t k = br_dist_block_at(me, t->step, R);
            br_dist_eval_block(t, k, &sse, &sae);
            bad |= !br_dist_finite(t->blk, (size_t)br_block_sz(t, k) * (t->stride + 1));
        }
    } else {
        uint32_t k = br_dist_block_at(me, t->step, R);
        bad |= !br_dist_finite(t->blk, (size_t)br_block_sz(t, k) * (t->stride + 1));
    }
    double t2 = MPI_Wtime();
    double loc[7] = {acc, sse, sae, (double)bad, (double)tb, (double)eb, cpu}, glob[7];
    MPI_Allreduce(loc, glob, 7, MPI_DOUBLE, MPI_SUM, t->comm);
    double tm[3] = {t1 - t0, comm, t2 - t1}, gtm[3];
    MPI_Allreduce(tm, gtm, 3, MPI_DOUBLE, MPI_MAX, t->comm);
    uint64_t red = (uint64_t)R * (sizeof loc + sizeof tm);
    st->loss = glob[0] / (double)t->info.n_train;
    st->test_rmse = t->info.n_test ? sqrt(glob[1] / (double)t->info.n_test) : NAN;
    st->test_mae = t->info.n_test ? glob[2] / (double)t->info.n_test : NAN;
    st->train_seconds = gtm[0];
    st->comm_seconds = gtm[1];
    st->eval_seconds = gtm[2];
    st->train_cpu_seconds = glob[6];
    st->train_bytes = (uint64_t)glob[4];
    st->eval_bytes = (uint64_t)glob[5] + red;
    if (glob[3] > 0)
        return br_fail(diag, BR_ERR_NUMERIC,
                       "training diverged at epoch %u (a parameter is no longer finite); "
                       "lower --lr or raise --reg", epoch + 1);
    return BR_OK;
}

/* Gathers n_local items of `width` elements of `type` from every rank to
 * rank 0 (counts[] per rank in items, known at rank 0). */
static br_err br_gatherv(const br_dist *t, const void *send, int n_local, MPI_Datatype type,
                         size_t elem, size_t width, const uint64_t *counts, void *recv,
                         uint64_t *bytes, br_diag *diag)
{
    int R = t->nranks;
    int *cnt = NULL, *off = NULL;
    br_err e = BR_OK;
    if (t->rank == 0) {
        cnt = malloc((size_t)R * sizeof *cnt);
        off = malloc((size_t)R * sizeof *off);
        if (!cnt || !off) {
            e = br_fail(diag, BR_ERR_NOMEM, "out of memory");
        } else {
            uint64_t o = 0;
            for (int i = 0; i < R; i++) {
                if (counts[i] * width > INT_MAX || o > INT_MAX)
                    e = br_fail(diag, BR_ERR_RANGE, "too much to gather in one message");
                cnt[i] = (int)(counts[i] * width);
                off[i] = (int)o;
                o += counts[i] * width;
            }
        }
    }
    e = br_dist_agree(t, e, diag);
    if (!e)
        MPI_Gatherv(send, (int)((size_t)n_local * width), type, recv, cnt, off, type, 0, t->comm);
    *bytes += (uint64_t)n_local * width * elem;
    free(cnt);
    free(off);
    return e;
}

static int br_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

br_err br_dist_save(br_dist *t, const char *path, const char *books_path, uint32_t epochs,
                    float test_rmse, float test_mae, uint64_t *bytes, br_diag *diag)
{
    int R = t->nranks, root = t->rank == 0;
    uint32_t nu = t->r->n_users, stride = t->stride, NB = t->n_books;
    const br_ratings *r = t->r;
    *bytes = 0;
    /* Per rank: users, rated-book entries, held block and its size, fingerprint. */
    uint64_t mine[4] = {nu, r->n, br_dist_block_at((uint32_t)t->rank, t->step, (uint32_t)R),
                        r->fingerprint};
    uint64_t *per = root ? malloc((size_t)R * 4 * sizeof *per) : NULL;
    uint64_t *ucnt = root ? malloc((size_t)R * 3 * sizeof *ucnt) : NULL;
    br_err e = root && (!per || !ucnt) ? br_fail(diag, BR_ERR_NOMEM, "out of memory") : BR_OK;
    e = br_dist_agree(t, e, diag);
    if (e) {
        free(per);
        free(ucnt);
        return e;
    }
    MPI_Gather(mine, 4, MPI_UINT64_T, per, 4, MPI_UINT64_T, 0, t->comm);
    *bytes += (uint64_t)R * sizeof mine;
    uint64_t tot_u = 0, tot_n = 0;
    uint64_t *rcnt = ucnt ? ucnt + R : NULL, *bcnt = ucnt ? ucnt + 2 * R : NULL;
    if (root)
        for (int i = 0; i < R; i++) {
            ucnt[i] = per[4 * i];
            rcnt[i] = per[4 * i + 1];
            bcnt[i] = br_block_sz(t, (uint32_t)per[4 * i + 2]);
            tot_u += ucnt[i];
            tot_n += rcnt[i];
        }
    /* This rank's rated books per user (global indices, ascending) and counts. */
    uint32_t *lcount = malloc(((size_t)nu ? nu : 1) * sizeof *lcount);
    uint32_t *lread = malloc((r->n ? r->n : 1) * sizeof *lread);
    uint32_t *gid = NULL, *gcount = NULL, *gread = NULL;
    float *gP = NULL, *gbu = NULL, *gblk = NULL, *Q = NULL, *bb = NULL, *Pall = NULL,
          *buall = NULL;
    uint64_t *order = NULL, *rptr = NULL, *uoff = NULL;
    uint32_t *ridx = NULL, *uids = NULL;
    br_books *books = NULL;
    e = !lcount || !lread ? br_fail(diag, BR_ERR_NOMEM, "out of memory") : BR_OK;
    if (!e) {
        for (uint32_t u = 0; u < nu; u++)
            lcount[u] = (uint32_t)(r->user_ptr[u + 1] - r->user_ptr[u]);
        for (size_t i = 0; i < r->n; i++)
            lread[i] = t->lb2g[r->book[i]];
    }
    if (root && !e) {
        gid = malloc((tot_u ? tot_u : 1) * sizeof *gid);
        gcount = malloc((tot_u ? tot_u : 1) * sizeof *gcount);
        gread = malloc((tot_n ? tot_n : 1) * sizeof *gread);
        gP = br_falloc64(tot_u * stride);
        gbu = br_falloc64(tot_u);
        gblk = br_falloc64((size_t)NB * (stride + 1));
        if (!gid || !gcount || !gread || !gP || !gbu || !gblk)
            e = br_fail(diag, BR_ERR_NOMEM, "out of memory for the model (%llu users)",
                        (unsigned long long)tot_u);
    }
    e = br_dist_agree(t, e, diag);
    uint32_t held = (uint32_t)mine[2], hsz = br_block_sz(t, held);
    if (!e)
        e = br_gatherv(t, r->user_ids, (int)nu, MPI_UINT32_T, 4, 1, ucnt, gid, bytes, diag);
    if (!e)
        e = br_gatherv(t, lcount, (int)nu, MPI_UINT32_T, 4, 1, ucnt, gcount, bytes, diag);
    if (!e)
        e = br_gatherv(t, lread, (int)r->n, MPI_UINT32_T, 4, 1, rcnt, gread, bytes, diag);
    if (!e)
        e = br_gatherv(t, t->P, (int)nu, MPI_FLOAT, 4, stride, ucnt, gP, bytes, diag);
    if (!e)
        e = br_gatherv(t, t->bu, (int)nu, MPI_FLOAT, 4, 1, ucnt, gbu, bytes, diag);
    if (!e)
        e = br_gatherv(t, t->blk, (int)hsz, MPI_FLOAT, 4, stride + 1, bcnt, gblk, bytes, diag);
    free(lcount);
    free(lread);
    if (!e && root) {
        /* Users in ascending id order; rows, biases and read lists follow. */
        order = malloc((tot_u ? tot_u : 1) * sizeof *order);
        uoff = malloc((tot_u + 1) * sizeof *uoff);
        rptr = malloc((tot_u + 1) * sizeof *rptr);
        ridx = malloc((tot_n ? tot_n : 1) * sizeof *ridx);
        uids = malloc((tot_u ? tot_u : 1) * sizeof *uids);
        Pall = br_falloc64(tot_u * stride);
        buall = br_falloc64(tot_u);
        Q = br_falloc64((size_t)NB * stride);
        bb = br_falloc64(NB);
        if (!order || !uoff || !rptr || !ridx || !uids || !Pall || !buall || !Q || !bb)
            e = br_fail(diag, BR_ERR_NOMEM, "out of memory for the model");
    }
    if (!e && root) {
        uoff[0] = 0;
        for (uint64_t i = 0; i < tot_u; i++) {
            order[i] = (uint64_t)gid[i] << 32 | i;   /* ids < 2^31, positions < 2^32 */
            uoff[i + 1] = uoff[i] + gcount[i];
        }
        qsort(order, tot_u, sizeof *order, br_cmp_u64);
        rptr[0] = 0;
        for (uint64_t j = 0; j < tot_u; j++) {
            uint64_t i = order[j] & 0xffffffffu;
            uids[j] = gid[i];
            memcpy(Pall + j * stride, gP + i * stride, stride * sizeof(float));
            buall[j] = gbu[i];
            memcpy(ridx + rptr[j], gread + uoff[i], gcount[i] * sizeof *ridx);
            rptr[j + 1] = rptr[j] + gcount[i];
        }
        /* Book rows: each rank sent the block it held. */
        size_t o = 0;
        for (int i = 0; i < R; i++) {
            uint32_t k = (uint32_t)per[4 * i + 2], sz = (uint32_t)bcnt[i];
            const float *src = gblk + o;
            for (uint32_t s = 0; s < sz; s++) {
                uint32_t g = br_dist_book_global(k, s, (uint32_t)R);
                memcpy(Q + (size_t)g * stride, src + (size_t)s * stride, stride * sizeof(float));
                bb[g] = src[(size_t)sz * stride + s];
            }
            o += (size_t)sz * (stride + 1);
        }
        if (books_path && books_path[0]) {
            e = br_books_load(books_path, &books, diag);
        }
    }
    if (!e && root) {
        br_model_data md;
        memset(&md, 0, sizeof md);
        const br_train_opts *to = &t->o.train;
        md.meta.kind = (uint32_t)to->kind;
        md.meta.loss = BR_LOSS_MSE;
        md.meta.optim = BR_OPTIM_SGD;
        md.meta.dim = to->dim;
        md.meta.n_users = (uint32_t)tot_u;
        md.meta.n_books = NB;
        md.meta.epochs = epochs;
        md.meta.seed = to->seed;
        md.meta.n_train = t->info.n_train;
        /* No rank saw every rating: the fingerprint hashes the ranks' own. */
        uint64_t fp = (uint64_t)R;
        for (int i = 0; i < R; i++)
            fp = br_hash64(&per[4 * i + 3], sizeof *per, fp);
        md.meta.data_fingerprint = fp;
        md.meta.created_unix = (int64_t)time(NULL);
        md.meta.global_mean = t->mean;
        md.meta.lr = to->lr;
        md.meta.reg = to->reg;
        md.meta.reg_bias = to->reg_bias;
        md.meta.test_rmse = test_rmse;
        md.meta.test_mae = test_mae;
        md.user_vecs = Pall;
        md.book_vecs = Q;
        md.src_stride = stride;
        md.user_bias = t->biased ? buall : NULL;
        md.book_bias = t->biased ? bb : NULL;
        md.user_ids = uids;
        md.book_ids = t->gbook;
        md.read_ptr = rptr;
        md.read_idx = ridx;
        md.books = books;
        e = br_model_save(&md, path, diag);
    }
    e = br_dist_agree(t, e, diag);
    br_books_free(books);
    free(per);
    free(ucnt);
    free(gid);
    free(gcount);
    free(gread);
    free(gP);
    free(gbu);
    free(gblk);
    free(order);
    free(uoff);
    free(rptr);
    free(ridx);
    free(uids);
    free(Pall);
    free(buall);
    free(Q);
    free(bb);
    return e;
}
