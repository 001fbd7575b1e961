/*
 * br_mlp.h - the seed notebook's second network (issue 3): user and book
 * embeddings concatenated and fed through a small multilayer perceptron,
 *
 *   x  = [p_u, q_b]                      (2 dim)
 *   a1 = relu(W1^T x + b1)               (h1 = 128)
 *   a2 = relu(W2^T a1 + b2)              (h2 = 32)
 *   y  = w3 . a2 + b3                    (the predicted rating)
 *
 * trained on the squared error of the ratings (evaluation clamps y to 1..5,
 * as for the other explicit models). The weights are packed as the model file
 * stores them (br_model.h, br_model_mlp_len): W1[2 dim][h1] input-major,
 * b1[h1], W2[h1][h2], b2[h2], w3[h2], b3; the embeddings are rows of `stride`
 * floats, zero padded, so the trainer's arrays go to the file unchanged.
 *
 * Training (br_mlp_epoch) goes over the training ratings in a fresh shuffled
 * order each epoch; each OpenMP thread takes one contiguous slice of that
 * order and walks it in mini-batches of `batch` ratings:
 *   - the embedding rows of a rating are updated at once, per rating (lazy
 *     Adam with per-row step counts, or SGD), with no lock: Hogwild, as the
 *     factorisation kernels do;
 *   - the dense weights' gradient is summed in a thread-private buffer over
 *     the batch and applied to the shared weights once per batch (Adam on the
 *     batch mean, or SGD). Threads read the shared weights while another
 *     thread applies its batch: Hogwild again, but once per batch rather than
 *     per rating, so threads do not fight over the weights' cache lines.
 * These races are deliberate and confined to br_mlp_epoch's update loops;
 * they cost a little accuracy, never memory safety. With one thread and a
 * fixed seed a run is bit-for-bit reproducible.
 *
 * The inner loops are plain C written so the compiler vectorises them
 * (axpy over contiguous rows; dot products with eight explicit partial
 * sums so the order of additions is fixed by the source, not the compiler).
 * The hot functions are also built for AVX2 (GCC target_clones) and chosen
 * at load time; the operations and their order are the same in both, so
 * both give the same bits.
 */
#ifndef BR_MLP_H
#define BR_MLP_H

#include <stddef.h>
#include <stdint.h>
#include "br_error.h"
#include "br_model.h"
#include "br_ratings.h"
#include "br_train.h"

typedef struct br_mlp_opts {
    uint32_t dim;         /* embedding width */
    uint32_t h1, h2;      /* hidden widths (128, 32 as in the seed) */
    uint32_t epochs;      /* maximum epochs (for the caller's loop) */
    uint32_t batch;       /* ratings per dense-weight update, per thread */
    br_optim_kind optim;  /* ADAM (default) or SGD, for embeddings and weights */
    float lr;             /* learning rate (Adam step size) */
    float lr_decay;       /* lr at epoch e is lr * lr_decay^e */
    float reg;            /* L2 on the embeddings, per rating that touches a row */
    float reg_dense;      /* L2 on the dense weights (not the biases) */
    float init_std;       /* initial embeddings ~ N(0, init_std^2) */
    uint64_t seed;
    int threads;          /* Hogwild threads (>= 1) */
} br_mlp_opts;

/* The measured defaults (README, "The MLP model"). Sets every field. */
void br_mlp_defaults(br_mlp_opts *o);

typedef struct br_mlp br_mlp;

/* Errors: BR_ERR_ARG for dim outside 1..4096, hidden widths outside
 * 1..4096, batch 0, lr not > 0, negative regularisation; BR_ERR_EMPTY for
 * no users or books; BR_ERR_NOMEM. `mean` (the training mean rating)
 * initialises the output bias b3. */
br_err br_mlp_create(const br_mlp_opts *o, uint32_t n_users, uint32_t n_books, float mean,
                     br_mlp **out, br_diag *diag);
void br_mlp_free(br_mlp *t);   /* NULL ok */

/* One epoch (0-based number `epoch`) over d->idx[0..d->n) of d->r (the
 * other fields of br_train_data are not used). *loss receives the mean
 * squared error measured during the pass, before each rating's update.
 * BR_ERR_NUMERIC if the loss or a parameter is no longer finite;
 * BR_ERR_RANGE for a rating whose user or book is outside the trainer's. */
br_err br_mlp_epoch(br_mlp *t, const br_train_data *d, uint32_t epoch, double *loss,
                    br_diag *diag);

/* The network's output for internal user u and book b (not clamped), and the
 * same clamped to 1..5. */
float br_mlp_score(const br_mlp *t, uint32_t u, uint32_t b);
float br_mlp_predict(const br_mlp *t, uint32_t u, uint32_t b);

/* RMSE and MAE of the clamped predictions over the ratings with
 * fold[i] == want (fold NULL: all); *count (may be NULL) gets how many. */
void br_mlp_eval_rmse(const br_mlp *t, const br_ratings *r, const uint8_t *fold,
                      uint8_t want, double *rmse, double *mae, size_t *count);

/* Keeps a copy of the parameters / puts it back (early stopping). */
br_err br_mlp_snapshot(br_mlp *t);
void br_mlp_restore(br_mlp *t);

/* Fills the parts of a model description the MLP owns: meta.kind (MLP),
 * meta.dim, meta.mlp_h1/h2, user_vecs, book_vecs, src_stride and mlp. The
 * pointers stay valid until the next epoch or br_mlp_free. */
void br_mlp_model_data(const br_mlp *t, br_model_data *md);

/* Read-only views (rows of br_model_stride(dim) floats; packed weights). */
const float *br_mlp_user_vecs(const br_mlp *t);
const float *br_mlp_book_vecs(const br_mlp *t);
const float *br_mlp_weights(const br_mlp *t);
const br_mlp_opts *br_mlp_get_opts(const br_mlp *t);

/* ---- the network alone (for tests) -------------------------------------
 * w: packed weights for (dim, h1, h2); p, q: dim floats each; work:
 * br_mlp_work_len(h1, h2) floats, holding the forward pass's activations
 * for the backward pass. */
size_t br_mlp_work_len(uint32_t h1, uint32_t h2);

/* Returns y. The first layer is summed as (b1 + W1_user^T p) + W1_book^T q,
 * in that order, which lets a server precompute the book half once. */
float br_mlp_forward(const float *w, uint32_t dim, uint32_t h1, uint32_t h2, const float *p,
                     const float *q, float *work);

/* Back-propagates dL/dy = dy through the pass held in work (left by
 * br_mlp_forward on the same w, p, q): adds dL/dw to gw (packed like w) and
 * writes dL/dp, dL/dq (dim floats each). At a ReLU's kink (input exactly 0)
 * the derivative is taken as 0. */
void br_mlp_backward(const float *w, uint32_t dim, uint32_t h1, uint32_t h2, const float *p,
                     const float *q, float *work, float dy, float *gw, float *gp, float *gq);

#endif
