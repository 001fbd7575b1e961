/*
 * br_model.h - the bookrec model file: one versioned, checksummed,
 * memory-mappable file holding everything inference and viz need.
 *
 * Layout (all integers and floats little-endian, fixed width; full spec in
 * docs/FORMAT.md):
 *
 *   header      fixed size (BR_MODEL_HEADER_SIZE bytes): magic "BOOKREC\0",
 *               format version, endianness check word, file size, checksum,
 *               model metadata (kind, loss, dims, counts, hyper-parameters,
 *               dataset fingerprint), section count and table offset
 *   sections    each starts on a 64-byte boundary; the section table lists
 *               (id, element type, offset, byte size, rows, cols) per section
 *
 * The checksum (br_hash64 over every byte of the file, with the checksum field
 * itself taken as zero) detects any change to the file. The reader maps the
 * file read-only and trusts nothing: every count, size and offset is checked
 * against overflow, against the others and against the file length; a newer
 * format version is refused with both numbers in the message.
 *
 * Vectors are stored as rows of `stride` floats (dim rounded up to a multiple
 * of 8, zero padded), so every row is 32-byte aligned and SIMD kernels need no
 * tail handling.
 */
#ifndef BR_MODEL_H
#define BR_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "br_error.h"
#include "br_books.h"

#define BR_MODEL_VERSION 2         /* bumped only for structural change (2: chunk sums) */
#define BR_MODEL_ALIGN 64          /* section alignment in bytes */
#define BR_MODEL_HEADER_SIZE 256   /* fixed header size in bytes (docs/FORMAT.md) */

typedef enum br_model_kind {
    BR_MODEL_DOT = 1,      /* score = p_u . q_b (the seed tutorial's network) */
    BR_MODEL_BIASED = 2,   /* score = mean + b_u + b_b + p_u . q_b */
    BR_MODEL_MLP = 3,      /* score = MLP([p_u, q_b]): dense h1 -> h2 -> 1, ReLU */
} br_model_kind;

typedef enum br_loss_kind { BR_LOSS_MSE = 1, BR_LOSS_BPR = 2 } br_loss_kind;
typedef enum br_optim_kind { BR_OPTIM_SGD = 1, BR_OPTIM_ADAM = 2 } br_optim_kind;

/* Rounds a dimension up to the stored row width (a multiple of 8 floats). */
static inline uint32_t br_model_stride(uint32_t dim) { return (dim + 7u) & ~7u; }

/* Model metadata, stored in the header. */
typedef struct br_model_meta {
    uint32_t kind;            /* br_model_kind */
    uint32_t loss;            /* br_loss_kind */
    uint32_t optim;           /* br_optim_kind */
    uint32_t dim;             /* embedding dimension */
    uint32_t stride;          /* floats per stored row = br_model_stride(dim) */
    uint32_t n_users;
    uint32_t n_books;
    uint32_t epochs;          /* epochs trained (the kept epoch if early-stopped) */
    uint32_t mlp_h1, mlp_h2;  /* hidden widths of the MLP (0 for other kinds) */
    uint64_t seed;
    uint64_t n_train;         /* ratings trained on */
    uint64_t data_fingerprint;/* hash of the training ratings (see br_ratings) */
    int64_t created_unix;     /* seconds since the epoch when written */
    float global_mean;        /* mean rating (biased model), 0 otherwise */
    float lr, reg, reg_bias;  /* hyper-parameters used */
    float test_rmse, test_mae;/* held-out figures, NAN if not measured */
} br_model_meta;

/* Number of floats in the packed MLP weights for a given dim, h1, h2:
 * W1[2*dim][h1] (row-major, input-major), b1[h1], W2[h1][h2], b2[h2], w3[h2], b3[1]. */
static inline size_t br_model_mlp_len(uint32_t dim, uint32_t h1, uint32_t h2)
{
    return (size_t)2 * dim * h1 + h1 + (size_t)h1 * h2 + h2 + h2 + 1;
}

/* What the writer needs. Arrays are read with the given source stride;
 * optional ones may be NULL as the comments say. */
typedef struct br_model_data {
    br_model_meta meta;       /* stride is recomputed by the writer */
    const float *user_vecs;   /* n_users rows of src_stride floats (first dim used) */
    const float *book_vecs;   /* n_books rows of src_stride floats */
    size_t src_stride;        /* >= dim */
    const float *user_bias;   /* n_users; NULL unless kind == BIASED */
    const float *book_bias;   /* n_books; NULL unless kind == BIASED */
    const float *mlp;         /* br_model_mlp_len() floats; NULL unless kind == MLP */
    const uint32_t *user_ids; /* n_users external ids, strictly ascending */
    const uint32_t *book_ids; /* n_books external ids, strictly ascending */
    const uint64_t *read_ptr; /* n_users+1 offsets into read_idx (CSR of rated books) */
    const uint32_t *read_idx; /* internal book indices, ascending within each user */
    const br_books *books;    /* optional titles/authors/...; matched on book id */
} br_model_data;

/* Writes a model atomically (temp file, fsync, rename, fsync of the folder).
 * On failure the old file at path, if any, is untouched and no temporary is
 * left. The input is checked first (nothing is written if it fails):
 * BR_ERR_ARG for unknown kind/loss/optim, dim 0, no users or books, missing
 * arrays, ids not strictly ascending, a bad read_ptr or read books not
 * strictly ascending; BR_ERR_RANGE for a read book index >= n_books;
 * BR_ERR_NUMERIC for NaN/infinity in vectors, biases, global mean or MLP.
 * The writer recomputes meta.stride, writes mlp_h1 = mlp_h2 = 0 unless
 * kind == MLP, ignores arrays the kind does not use, and stores the current
 * time if meta.created_unix is 0. Same input (created_unix set), same bytes. */
br_err br_model_save(const br_model_data *d, const char *path, br_diag *diag);

/* Same, into a malloc'd buffer (for tests and fuzzing). The buffer is
 * 64-byte aligned (so br_model_open_buffer uses it in place); free() it. */
br_err br_model_save_buffer(const br_model_data *d, void **buf, size_t *len, br_diag *diag);

/* Sets the file size field to len and recomputes every checksum of an
 * in-memory model file (version 2 when its chunk fields are usable, else
 * version 1's): for tools and fuzzing that edit a file on purpose. */
void br_model_reseal(void *buf, size_t len);

typedef struct br_model br_model;   /* opaque handle to a validated model */

/* Maps and validates a model file (read-only, MAP_PRIVATE). Errors:
 * BR_ERR_NOT_FOUND / BR_ERR_IO (with strerror), BR_ERR_MODEL_MAGIC,
 * _TRUNCATED, _ENDIAN, _VERSION, _CHECKSUM, and BR_ERR_MODEL_CORRUPT for any
 * inconsistency; the diag message names the file and the cause. */
br_err br_model_open(const char *path, br_model **out, br_diag *diag);

/* The same with flags. BR_MODEL_OPEN_LAZY (version 2 files; ignored for
 * version 1): check at open only what every query uses (header, section
 * table, book vectors, biases, ids, metadata: every chunk outside the user
 * vectors and read lists) and leave each user's row and read list to
 * br_model_check_user, so opening costs what a query touches, not the size
 * of the file. For one-shot programs; a server opens eagerly. */
#define BR_MODEL_OPEN_LAZY 1u
br_err br_model_open_flags(const char *path, unsigned flags, br_model **out, br_diag *diag);

/* Checks user u's vector row and read list (their chunk sums and contents)
 * before they are used, once per chunk, thread-safe. BR_OK at once for an
 * eagerly opened model (checked at open); BR_ERR_MODEL_CHECKSUM or
 * BR_ERR_MODEL_CORRUPT if that part of the file is damaged; BR_ERR_RANGE if
 * u >= n_users. */
br_err br_model_check_user(const br_model *m, uint32_t u, br_diag *diag);

/* Checks everything a lazy open left (BR_OK at once for an eager one). */
br_err br_model_check_all(const br_model *m, br_diag *diag);

/* 1 if opened with BR_MODEL_OPEN_LAZY on a version 2 file. */
int br_model_is_lazy(const br_model *m);

/* Validates a model held in memory, with the same checks. A 64-byte aligned
 * buffer is used in place and must outlive the handle; any other buffer is
 * copied into an aligned block owned by the handle. */
br_err br_model_open_buffer(const void *buf, size_t len, br_model **out, br_diag *diag);

void br_model_free(br_model *m);    /* NULL ok */

const br_model_meta *br_model_get_meta(const br_model *m);
uint64_t br_model_checksum(const br_model *m);   /* the file's checksum: its fingerprint */
size_t br_model_file_size(const br_model *m);

const float *br_model_user_vecs(const br_model *m);  /* n_users x stride, 64-byte aligned */
const float *br_model_book_vecs(const br_model *m);  /* n_books x stride, 64-byte aligned */
const float *br_model_user_bias(const br_model *m);  /* NULL unless BIASED */
const float *br_model_book_bias(const br_model *m);  /* NULL unless BIASED */
const float *br_model_book_norms(const br_model *m); /* n_books L2 norms of the book vectors */
const float *br_model_mlp(const br_model *m);        /* NULL unless MLP */
const uint32_t *br_model_user_ids(const br_model *m);/* external ids, ascending */
const uint32_t *br_model_book_ids(const br_model *m);

/* The books user u (internal index) rated in training, ascending internal
 * indices; NULL and *n = 0 if u >= n_users. On a lazily opened model, call
 * br_model_check_user(u) first (also before reading u's vector). */
const uint32_t *br_model_user_read(const br_model *m, uint32_t u, size_t *n);

/* External id -> internal index, or -1 if the model does not know it. */
int64_t br_model_find_user(const br_model *m, uint32_t user_id);
int64_t br_model_find_book(const br_model *m, uint32_t book_id);

/* Book metadata for internal book index b; strings point into the mapping
 * (never NULL: "" when the model was written without books, or for a book
 * books.csv lacked; then year 0, avg_rating NAN). tags[] unused (NULL).
 * b >= n_books gives that empty record with book_id 0. */
void br_model_book_info(const br_model *m, uint32_t b, br_book *out);
int br_model_has_book_info(const br_model *m);

/* Fast 64-bit hash (4 lanes over 32-byte stripes, ~16 GB/s) used for the
 * model checksum and dataset fingerprints. Its values are part of the file
 * format (specified in docs/FORMAT.md, pinned by tests): never change it. */
uint64_t br_hash64(const void *data, size_t len, uint64_t seed);

#endif
