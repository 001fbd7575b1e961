/*
 * br_train.h - training of the factorisation models: parameters, optimiser
 * state, and one Hogwild epoch at a time.
 *
 * A trainer owns the model's parameters (user and book embeddings in rows of
 * `stride` floats, 64-byte aligned, zero padded; biases; the global mean) and
 * the optimiser's state. br_trainer_epoch runs one pass over the training
 * ratings in a fresh random order, on the block schedule of DSGD / LIBMF:
 * users and books are cut into B = 2 x threads groups of consecutive ids
 * holding equal shares of the ratings, the ratings into B x B blocks, and an
 * epoch is B rounds of B blocks that share no user and no book. A thread
 * owns the same reader groups in every round (their rows stay in its
 * core's caches) and, done with them, takes the blocks other threads have
 * not started; inside a block the updates are the lock-free (Hogwild)
 * steps. So threads never write the same embedding row at once (they
 * scale: 2.0x at 2 threads, dim 32, when the host runs both cores at one
 * speed), except for BPR's sampled negative books, which come from the
 * whole catalogue and are updated Hogwild-style. Rounds are reordered every epoch and blocks
 * reshuffled inside: rating by rating, except for the rating loss with
 * rows of 128 floats or more, reader by reader (the block's readers in a
 * fresh order, each one's ratings shuffled), so a reader's row stays in
 * cache through their ratings (the same test RMSE as a rating-by-rating
 * shuffle, measured, in less time: 1.4x at dim 256).
 * MSE runs are bit-for-bit reproducible for a given -j (and a fixed seed);
 * so is BPR at -j 1.
 *
 * Regularisation: L2 with weight reg on every step of a row (reg_bias for
 * biases); with reg_exp != 0 (SGD on ratings) a row's weight is reg x
 * (mean count / the row's count)^reg_exp, so rarely rated readers and
 * books are held closer to zero per step (0.25 gained 0.0004-0.0006 RMSE).
 *
 * Models: DOT (p_u . q_b), BIASED (mean + b_u + b_b + p_u . q_b), and
 * BIASED with the SVD++ implicit term (Koren 2008): the user vector becomes
 * p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j over the books N(u) the user is known
 * to have met. Training then goes user by user (users in a fresh random
 * order, each user's ratings shuffled) so the implicit sum is computed once
 * per user; the parameter view and the model file hold the effective user
 * vectors, so inference needs no y.
 *
 * AutoRec (I-AutoRec, Sedhain et al. 2015), a better rating model: each book
 * is encoded from its column of training ratings, h_b = sigmoid(mu +
 * sum_u V_u r_ub) (dim hidden units), and decoded per reader, r_ub ~ b_u +
 * W_u . h_b. Readers' W_u and books' h_b are again embeddings whose dot
 * product (plus the reader's bias) is the prediction, so the model file is a
 * BIASED one (mean 0, book biases 0) and inference needs nothing new.
 * Training goes book by book (books in a fresh random order; Hogwild across
 * threads on the shared V and W rows).
 * Losses: MSE on ratings; BPR on (rated book, sampled unrated book) pairs.
 * Optimisers: SGD with a per-epoch decaying learning rate; lazy Adam with
 * per-row step counts (only the rows a rating touches are updated).
 */
#ifndef BR_TRAIN_H
#define BR_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include "br_error.h"
#include "br_model.h"
#include "br_ratings.h"

typedef struct br_train_opts {
    br_model_kind kind;
    br_loss_kind loss;
    br_optim_kind optim;
    uint32_t dim;        /* embedding width */
    uint32_t epochs;     /* maximum epochs */
    float lr;            /* initial learning rate */
    float lr_decay;      /* SGD: lr at epoch e is lr * lr_decay^e */
    float reg;           /* L2 on embeddings */
    float reg_exp;       /* MSE+SGD: a row's L2 weight is reg x (mean count / its count)^reg_exp */
    float reg_bias;      /* L2 on biases */
    float init_std;      /* initial embeddings: centred, spread init_std (br_rng_bell) */
    uint64_t seed;
    int threads;         /* Hogwild threads (>= 1) */
    uint32_t neg;        /* BPR: negatives sampled per positive; the highest scored is used */
    int implicit;        /* MSE+SGD: SVD++ user term |N(u)|^-1/2 sum_{j in N(u)} y_j */
    float reg_y;         /* L2 on the implicit vectors y_j */
    int autorec;         /* MSE+SGD: item-based AutoRec (see below) instead of factorisation */
} br_train_opts;

/* The defaults for a model kind / loss / optimiser (the best measured
 * settings; see README). Sets every field. */
void br_train_defaults(br_train_opts *o, br_model_kind kind, br_loss_kind loss,
                       br_optim_kind optim);

/* Defaults for AutoRec (biased kind, MSE, SGD) with o->autorec set. */
void br_train_defaults_autorec(br_train_opts *o);

typedef struct br_trainer br_trainer;

/* Training data: the ratings and the indices of those to train on. For BPR,
 * `pos` is the CSR by user of every book known to be read by each user
 * (never sampled as a negative). The trainer keeps pointers; they must
 * outlive it. */
typedef struct br_train_data {
    const br_ratings *r;
    const uint32_t *idx;    /* rating indices to train on */
    size_t n;
    const br_csr *pos;      /* BPR only */
    /* BPR only: extra positive (user, book) pairs in internal indices, such
     * as books on a reader's to-read shelf; trained like rated books. */
    const uint32_t *extra_user, *extra_book;
    size_t n_extra;
    /* opts.implicit only: N(u), the books each user is known to have met
     * (CSR by user, internal book indices): rated in training, to-read. */
    const br_csr *implicit_sets;
} br_train_data;

br_err br_trainer_create(const br_train_opts *o, uint32_t n_users, uint32_t n_books,
                         float mean, br_trainer **out, br_diag *diag);
void br_trainer_free(br_trainer *t);   /* NULL ok */

/* Rating counts w[0..n) into L2 weights, in place: reg x (mean_count /
 * count)^reg_exp, and reg for a row with no rating (see reg_exp). Shared by
 * the single-process and the distributed trainer. */
void br_row_weights(float *w, size_t n, double mean_count, float reg, float reg_exp);

/* Frees the epochs' working copies of the ratings (the packed, blocked
 * ratings and their order: about 30 bytes a rating) once training is over,
 * before the model is written; the parameters stay. A later epoch would
 * rebuild them, from a fresh shuffle stream. */
void br_trainer_trim(br_trainer *t);

/* Runs epoch number `epoch` (0-based). *loss receives the mean training loss
 * (squared error for MSE, -log sigmoid for BPR) measured during the pass.
 * BR_ERR_NUMERIC if the loss or a parameter became NaN or infinite. */
br_err br_trainer_epoch(br_trainer *t, const br_train_data *d, uint32_t epoch, double *loss,
                        br_diag *diag);

/* Keeps a copy of the current parameters / puts the copy back (early stopping). */
br_err br_trainer_snapshot(br_trainer *t);
void br_trainer_restore(br_trainer *t);

/* Predicted score for internal user u and book b (for MSE models clamped to 1..5). */
float br_trainer_predict(const br_trainer *t, uint32_t u, uint32_t b);

/* A read-only view of the parameters, laid out as the model file wants. */
typedef struct br_params {
    br_model_kind kind;
    uint32_t dim, stride, n_users, n_books;
    float mean;
    const float *P, *Q;       /* rows of stride floats */
    const float *bu, *bb;     /* NULL for DOT */
    int clamp;                /* 1: predictions are ratings, clamp to 1..5 */
} br_params;

void br_trainer_params(const br_trainer *t, br_params *out);

/* Score of user u for book b from a parameter view (no clamping). */
float br_params_score(const br_params *p, uint32_t u, uint32_t b);

#endif
