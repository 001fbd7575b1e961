/*
 * br_qscan.h - exact top-k of u . q_b (+ add + bias_b) over all books, by a
 * quantised pre-scan that reads half the bytes of the float matrix.
 *
 * Scoring 10,000 books at dim 32 reads 1.28 MB of floats: more than a core's
 * L2, so the exact scan is bound by memory (about 12 us here). br_qscan
 * keeps a second copy of the book matrix as int8 with one scale per book
 * (400 KB with its constants: blocks of 16 books, one zmm per four
 * dimensions, for vpdpbusd / vpmaddubsw) and, per query:
 *
 *   1. quantises the reader's vector to 7 bits with one scale;
 *   2. computes every book's integer dot product (exact) and from it an
 *      upper bound of the book's exact float score: the quantised score plus
 *      a proven bound of the quantisation error plus a margin for the float
 *      rounding of both scores (see br_qscan.c for the derivation), and the
 *      max bound of every block (group) of 16 books;
 *   3. finds a floor: the 1.5k to 3k groups with the highest bounds (a level
 *      found by bisection) give as many unread books, and the k-th best of
 *      their exact scores is one the k-th best reaches;
 *   4. collects the unread books whose bound reaches the floor (whole
 *      groups passed over by their max), fetches their float rows together
 *      and computes their exact scores (the kernel table's `score` on each
 *      row: the very bits of a full scan), and takes the k best.
 * For a large k (more than 1/8 of the groups) steps 3-4 give way to
 * br_topk_bounded over all the bounds.
 *
 * The result therefore equals "score every book, then br_topk" exactly,
 * ties by index included; only the work differs (typically a few dozen exact
 * rows).
 *
 * Values must be finite and not huge (|x| < 1e18); br_qscan_create refuses
 * other matrices and br_qscan_topk other vectors with BR_ERR_UNSUPPORTED, so
 * the caller takes the plain path.
 */
#ifndef BR_QSCAN_H
#define BR_QSCAN_H

#include <stddef.h>
#include <stdint.h>

#include "br_error.h"
#include "br_kernels.h"
#include "br_topk.h"

typedef struct br_qscan br_qscan;

/* Builds the quantised copy of Q (n_books rows of `stride` floats, stride a
 * multiple of 8) with bias (n_books floats, NULL for none). Keeps pointers
 * to Q and bias for the exact rescoring: they must outlive the handle. */
br_err br_qscan_create(const float *Q, const float *bias, uint32_t n_books, uint32_t stride,
                       br_qscan **out, br_diag *diag);
void br_qscan_free(br_qscan *q);   /* NULL ok */

/* Bytes of work space a query needs (per thread). */
size_t br_qscan_work_bytes(const br_qscan *q);

/* The k best books for reader vector u (stride floats) and constant `add`,
 * skipping `exclude` (ascending indices), best first, into out (room for
 * min(k, n_books)); *n_out gets the count. kt: the kernel table (both
 * tables give the same answer). work: br_qscan_work_bytes bytes, 64-byte
 * aligned. BR_ERR_UNSUPPORTED if u or add is not finite or too large. */
br_err br_qscan_topk(const br_qscan *q, const br_kernels *kt, const float *u, float add,
                     const uint32_t *exclude, size_t n_ex, size_t k, void *work,
                     br_scored *out, size_t *n_out);

/* br_qscan_topk for m <= BR_QSCAN_MULTI readers at once: u[i], add[i],
 * exclude[i] / n_ex[i], out[i] / n_out[i] as there, rc[i] the reader's
 * result code (BR_ERR_UNSUPPORTED: that reader needs the plain path). The
 * quantised books are read once for all of them (kernel qscan_multi), and
 * every answer is the one br_qscan_topk gives. work: m x
 * br_qscan_work_bytes bytes, 64-byte aligned. */
void br_qscan_topk_multi(const br_qscan *q, const br_kernels *kt, size_t m,
                         const float *const *u, const float *add,
                         const uint32_t *const *exclude, const size_t *n_ex, size_t k,
                         void *work, br_scored *const *out, size_t *n_out, br_err *rc);

#endif
