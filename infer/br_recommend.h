/*
 * br_recommend.h - recommendations from a bookrec model: the top k books for
 * a reader of the model, for a new reader given by the books they read
 * (fold-in), the books most similar to a book, and single predictions.
 *
 * A br_rec wraps a validated model (br_model) and is read-only after
 * br_rec_create, so any number of threads may query one br_rec at once. Each
 * thread brings its own br_rec_scratch (score buffer, heap, fold-in work
 * space); a scratch must not be used by two threads at the same time.
 * Results go to caller-provided arrays. Nothing here prints or exits.
 *
 * Scores. For a reader u and a book b the score is the model's output,
 *   dot:     p_u . q_b
 *   biased:  (mean + b_u + b_b) + p_u . q_b
 *   mlp:     w3 . relu(W2^T relu(W1^T [p_u, q_b] + b1) + b2) + b3
 * computed by the br_kernels score/dot kernels (AVX2 or the scalar
 * reference: bit-identical); for mlp models by a slower path (the book half
 * of the first layer precomputed per model in br_rec_create, n_books x h1
 * floats; then about h1 h2 / 2 multiply-adds per book and query: a few
 * milliseconds for 10,000 books), with the trainer's operations in the
 * trainer's order, so scores equal the trainer's predictions. For models trained on ratings (mse loss) it is
 * the predicted rating, not clamped (br_rec_predict clamps to 1..5); for bpr
 * models it is a ranking score. The k best are found by a bounded heap
 * (never a full sort of all books): higher score first, equal scores by
 * lower book id; the result equals a full sort of all the scores in that
 * order cut to k, exactly. Fold-in (br_rec_foldin, br_rec_reader) is not
 * available for mlp models (BR_ERR_UNSUPPORTED); br_rec_similar ranks by the
 * cosine of the book embeddings for every kind.
 *
 * Ids are the dataset's own user_id / book_id everywhere in this API.
 */
#ifndef BR_RECOMMEND_H
#define BR_RECOMMEND_H

#include <stddef.h>
#include <stdint.h>
#include "br_error.h"
#include "br_model.h"

typedef struct br_rec br_rec;                 /* opaque, shared between threads */
typedef struct br_rec_scratch br_rec_scratch; /* opaque, one per thread */

/* One recommended book. */
typedef struct br_rec_item {
    uint32_t book_id;   /* the dataset's book_id */
    uint32_t book;      /* internal index in the model (for br_model_book_info) */
    float score;        /* see the top comment; cosine for br_rec_similar */
} br_rec_item;

/* Flags for the top-k queries. */
#define BR_REC_INCLUDE_READ 1u   /* keep the books the reader has read */

/* Wraps a model (borrowed: it must outlive the br_rec). For an mlp model
 * this precomputes the book halves of the first layer (n_books x h1 floats);
 * for the others the quantised copy of the book matrix that top-k queries
 * pre-scan (br_qscan.h: n_books x stride int16, built in about a tenth of a
 * millisecond for 10,000 books at dim 32; the answers are the same without
 * it, only slower).
 * Errors: BR_ERR_UNSUPPORTED for an unknown kind or an mlp model without
 * weights, BR_ERR_NOMEM. */
br_err br_rec_create(const br_model *m, br_rec **out, br_diag *diag);

/* The same with flags: BR_REC_NO_PRESCAN skips the quantised copy, for a
 * process that answers one query (building it costs more than it saves). */
#define BR_REC_NO_PRESCAN 1u
br_err br_rec_create_flags(const br_model *m, unsigned flags, br_rec **out, br_diag *diag);
void br_rec_free(br_rec *r);                  /* NULL ok */

const br_model *br_rec_model(const br_rec *r);
uint32_t br_rec_n_books(const br_rec *r);
uint32_t br_rec_n_users(const br_rec *r);
const char *br_rec_kernel_name(const br_rec *r);   /* "avx2" or "scalar" */

/* Per-thread work space for queries on r (and any br_rec over a model with
 * the same dimensions). */
br_err br_rec_scratch_create(const br_rec *r, br_rec_scratch **out, br_diag *diag);
void br_rec_scratch_free(br_rec_scratch *s);  /* NULL ok */

/* The k best books for the model's reader user_id. Without
 * BR_REC_INCLUDE_READ the books that reader rated are left out. out must
 * hold min(k, n_books) items; *n_out receives how many were written
 * (min(k, n_books - excluded)). Errors: BR_ERR_NOT_FOUND for a user id the
 * model does not know (the message suggests folding in with --read),
 * BR_ERR_ARG for k == 0 or NULL pointers. */
br_err br_rec_user(const br_rec *r, br_rec_scratch *s, uint32_t user_id, size_t k,
                   unsigned flags, br_rec_item *out, size_t *n_out, br_diag *diag);

/* Same for internal user index u (no id lookup; u < n_users). */
br_err br_rec_user_index(const br_rec *r, br_rec_scratch *s, uint32_t u, size_t k,
                         unsigned flags, br_rec_item *out, size_t *n_out, br_diag *diag);

/* The k books whose embeddings have the highest cosine with book_id's, the
 * book itself left out (a zero vector has cosine 0 with everything). Same
 * output contract; BR_ERR_NOT_FOUND for an unknown book id. */
br_err br_rec_similar(const br_rec *r, br_rec_scratch *s, uint32_t book_id, size_t k,
                      br_rec_item *out, size_t *n_out, br_diag *diag);

/* Rating assumed for a book listed without one when folding in a reader
 * for an mse model: listing a book means the reader liked it. */
#define BR_REC_DEFAULT_RATING 5.0f

/* Fold-in: the vector of a reader who is not in the model, from the books
 * they read. With the book vectors and biases fixed this solves, for mse
 * models, the regularised least-squares problem the trainer minimises for
 * one reader,
 *   min  sum_i (r_i - (mean + b_u + b_i + p.q_i))^2 + reg n |p|^2 + reg_bias n b_u^2
 * (dot models: no mean or biases), by Cholesky on the (dim+1)-square normal
 * equations; for bpr models the matching problem,
 *   max  sum_i mean_j log sigmoid(p.(q_i - q_j) + b_i - b_j) - reg n |p|^2 / 2
 * over a fixed, seeded sample of unread books j, by majorise-minimise steps
 * (the logistic curvature is at most 1/4, so one Cholesky factor serves
 * every step) with Anderson acceleration. Ratings are ignored for bpr
 * models; ratings may be NULL (every book then counts as
 * BR_REC_DEFAULT_RATING). Duplicate book ids: the last rating counts.
 *
 * vec receives `stride` floats (zero padded past dim), *bias the reader's
 * bias (0 unless biased mse). Errors: BR_ERR_EMPTY for n == 0,
 * BR_ERR_NOT_FOUND for a book id the model lacks, BR_ERR_RANGE for a rating
 * outside 1..5 or not finite, BR_ERR_NUMERIC if the solve fails,
 * BR_ERR_UNSUPPORTED for mlp models ("not supported for mlp models"). */
br_err br_rec_foldin(const br_rec *r, br_rec_scratch *s, const uint32_t *book_ids,
                     const float *ratings, size_t n, float *vec, float *bias, br_diag *diag);

/* Fold-in followed by the k best books for that reader, the listed books
 * left out unless BR_REC_INCLUDE_READ. Same errors as br_rec_foldin and the
 * same output contract as br_rec_user. */
br_err br_rec_reader(const br_rec *r, br_rec_scratch *s, const uint32_t *book_ids,
                     const float *ratings, size_t n, size_t k, unsigned flags,
                     br_rec_item *out, size_t *n_out, br_diag *diag);

/* The k best books for an arbitrary reader vector vec (stride floats, 32-byte
 * aligned) with score add + b_b + vec.q_b (b_b only for biased models),
 * leaving out the internal book indices exclude[0..n_ex) (ascending;
 * out-of-range entries ignored). For mlp models vec is a reader embedding
 * (dim floats used), the score is the network's output and add is ignored. */
br_err br_rec_vector(const br_rec *r, br_rec_scratch *s, const float *vec, float add,
                     const uint32_t *exclude, size_t n_ex, size_t k, br_rec_item *out,
                     size_t *n_out, br_diag *diag);

/* The model's prediction for (user_id, book_id), as the recommendations
 * score it; clamped to 1..5 for mse models. If the model lacks the user or
 * the book, *out receives the fallback (biased: mean plus whichever bias is
 * known, clamped to 1..5 for mse; dot: 3, the middle of the rating scale,
 * for mse, 0 for bpr) and the result is BR_ERR_NOT_FOUND. Thread-safe without scratch. */
br_err br_rec_predict(const br_rec *r, uint32_t user_id, uint32_t book_id, float *out,
                      br_diag *diag);

#endif
