/*
 * br_dist.h - distributed training over MPI (built only with
 * BOOKREC_WITH_MPI): stratified SGD as in DSGD (Gemulla et al., KDD 2011)
 * for the MSE factorisation models (dot and biased, plain SGD), Hogwild
 * over OpenMP threads inside each rank.
 *
 * Each rank streams the ratings file and keeps only its own users' ratings
 * (br_dist_plan.h: users by hash of id); book ids are made global by an
 * allgather of the ids each rank saw; the held-out split is the hash split
 * (br_split_hash), so 1, 2 or 4 ranks hold out the same ratings; the
 * global mean is an allreduce. User rows and biases stay with their rank;
 * book rows and biases travel in R blocks that rotate between ranks after
 * every sub-epoch (MPI_Sendrecv). The test figures are reduced over ranks
 * after a second rotation that meets every block once more. Rank 0 gathers
 * every row and every user's rated books and writes the usual model file.
 *
 * Every function named "collective" must be called by all ranks; errors
 * are agreed (all ranks return the same code, the diag holds the message of
 * the first rank that failed, prefixed with its rank when it is not ours).
 * Bytes are counted, not measured on the wire: the payload each rank sends
 * with Sendrecv plus the payload each rank contributes to a collective
 * (allreduce, allgather, gather), summed over ranks.
 */
#ifndef BR_DIST_H
#define BR_DIST_H

#include <stddef.h>
#include <stdint.h>
#include "br_error.h"
#include "br_ratings.h"
#include "br_train.h"

/* MPI_Init_thread (only the main thread calls MPI) and MPI_Finalize. */
br_err br_dist_start(int *argc, char ***argv, int *rank, int *nranks, br_diag *diag);
void br_dist_stop(void);
/* Ends every rank at once (a failure only this rank knows about). */
void br_dist_abort(int code);

typedef struct br_dist_opts {
    br_train_opts train;     /* kind DOT or BIASED, loss MSE, optim SGD */
    const char *ratings;     /* ratings file, read in pieces by every rank */
    br_load_opts load;       /* skip_bad etc.; the row filter is set by br_dist */
    double holdout;          /* fraction held out by br_split_hash (0: none) */
    size_t chunk_bytes;      /* piece size for the loader (0: 64 MB) */
} br_dist_opts;

/* Figures of the whole run, the same on every rank. */
typedef struct br_dist_info {
    int rank, nranks;
    uint32_t n_users, n_books;
    uint64_t n_ratings, n_train, n_test, rows, dup_rows, skipped;
    uint64_t min_local, max_local;   /* ratings on the least / most loaded rank */
    float mean;                      /* mean training rating */
    uint64_t setup_bytes;            /* counted bytes of the set-up (ids, mean) */
    double load_seconds;             /* slowest rank's loading time */
} br_dist_info;

/* One epoch's figures, the same on every rank. */
typedef struct br_dist_stats {
    double loss;                     /* mean squared training error */
    double test_rmse, test_mae;      /* NAN without held-out ratings */
    double train_seconds;            /* slowest rank: training sub-epochs and rotations */
    double comm_seconds;             /* slowest rank: time inside the training rotations */
    double eval_seconds;             /* slowest rank: the evaluation rotation */
    double train_cpu_seconds;        /* CPU time of the sub-epochs' updates (rotations
                                      * excluded), summed over ranks: the work, which other
                                      * load on the machine hardly moves, unlike wall time */
    uint64_t train_bytes, eval_bytes;/* counted bytes of each phase (all ranks) */
} br_dist_stats;

typedef struct br_dist br_dist;

/* Collective: loads this rank's share, makes book ids global, splits,
 * reduces the mean and initialises the parameters. */
br_err br_dist_create(const br_dist_opts *o, br_dist **out, br_diag *diag);
void br_dist_free(br_dist *t);   /* NULL ok; not collective */
void br_dist_get_info(const br_dist *t, br_dist_info *out);

/* Collective: epoch number `epoch` (0-based), then the test figures. */
br_err br_dist_epoch(br_dist *t, uint32_t epoch, br_dist_stats *st, br_diag *diag);

/* Collective: rank 0 gathers the parameters and the rated books and writes
 * the model file (atomically, br_model_save); books_path (may be NULL) adds
 * titles. *bytes receives the counted bytes of the gathers. */
br_err br_dist_save(br_dist *t, const char *path, const char *books_path, uint32_t epochs,
                    float test_rmse, float test_mae, uint64_t *bytes, br_diag *diag);

#endif
