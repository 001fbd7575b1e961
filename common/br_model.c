/*
 * br_model.c - the bookrec model file: writer, validating mmap reader, and
 * br_hash64, the checksum used for the file and for dataset fingerprints.
 *
 * The byte-level format is specified in docs/FORMAT.md; this file is its
 * reference implementation. In short: a 256-byte header of little-endian
 * fixed-width fields, a table of 40-byte section entries, then sections on
 * 64-byte boundaries. The writer builds the whole file in memory, field by
 * field (never by dumping structs), so br_model_save and br_model_save_buffer
 * produce the same bytes; saving to disk then goes through br_atomic_*.
 *
 * The reader maps the file read-only and hands out pointers into the mapping.
 * Before that it checks, in this order: magic, byte order, version, header
 * size, file length, checksum, then the section table and every section
 * (alignment, bounds, sizes, counts against the header, CSR structure, id
 * order, string offsets). Each check has its own message; no byte of the file
 * is trusted before it has been checked, so no input makes it read out of
 * bounds.
 */
#include "br_model.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "br_io.h"

/* ---- format constants (docs/FORMAT.md) ----------------------------------- */

static const uint8_t br_model_magic[8] = {'B', 'O', 'O', 'K', 'R', 'E', 'C', '\0'};
#define BR_MODEL_ENDIAN_WORD 0x01020304u
#define BR_MODEL_ENDIAN_SWAPPED 0x04030201u
#define BR_MODEL_ENTRY_SIZE 40u     /* bytes per section table entry */
#define BR_MODEL_MAX_SECTIONS 64u   /* a reader refuses tables longer than this */
#define BR_MODEL_BOOK_REC_SIZE 32u  /* bytes per book metadata record */

/* Header field offsets. */
enum {
    H_MAGIC = 0, H_VERSION = 8, H_ENDIAN = 12, H_FILE_SIZE = 16, H_CHECKSUM = 24,
    H_HEADER_SIZE = 32, H_N_SECTIONS = 36, H_TABLE_OFFSET = 40,
    H_KIND = 48, H_LOSS = 52, H_OPTIM = 56, H_DIM = 60, H_STRIDE = 64,
    H_N_USERS = 68, H_N_BOOKS = 72, H_EPOCHS = 76, H_MLP_H1 = 80, H_MLP_H2 = 84,
    H_SEED = 88, H_N_TRAIN = 96, H_FINGERPRINT = 104, H_CREATED = 112,
    H_GLOBAL_MEAN = 120, H_LR = 124, H_REG = 128, H_REG_BIAS = 132,
    H_TEST_RMSE = 136, H_TEST_MAE = 140,
    /* version 2: the chunk sums (see "Chunked checksums" below) */
    H_CHUNK_SHIFT = 144, H_N_CHUNKS = 148, H_CHUNKS_OFFSET = 152,
    H_RESERVED = 160   /* .. BR_MODEL_HEADER_SIZE: zero */
};

/* Version 2 writes chunks of 2^16 bytes; readers take 2^12 .. 2^30. */
#define BR_MODEL_CHUNK_SHIFT 16u

/* Section table entry field offsets. */
enum { E_ID = 0, E_TYPE = 4, E_OFFSET = 8, E_SIZE = 16, E_ROWS = 24, E_COLS = 32 };

/* Book metadata record field offsets. */
enum { R_GOODREADS = 0, R_TITLE = 8, R_AUTHORS = 12, R_GENRE = 16, R_YEAR = 20,
       R_AVG = 24, R_COUNT = 28 };

/* Section ids. Unknown ids are skipped by readers (after bounds checks). */
enum {
    SEC_BOOK_VECS = 1, SEC_USER_VECS = 2, SEC_USER_BIAS = 3, SEC_BOOK_BIAS = 4,
    SEC_MLP = 5, SEC_BOOK_NORMS = 6, SEC_READ_PTR = 7, SEC_READ_IDX = 8,
    SEC_USER_IDS = 9, SEC_BOOK_IDS = 10, SEC_STRINGS = 11, SEC_BOOK_INFO = 12,
    SEC_CHUNK_SUMS = 13,
    SEC__LAST = 13
};

/* Element types. */
enum { T_F32 = 1, T_U32 = 2, T_U64 = 3, T_U8 = 4, T_BOOK_REC = 5 };

static const char *const sec_name[SEC__LAST + 1] = {
    [SEC_BOOK_VECS] = "book_vecs", [SEC_USER_VECS] = "user_vecs",
    [SEC_USER_BIAS] = "user_bias", [SEC_BOOK_BIAS] = "book_bias",
    [SEC_MLP] = "mlp", [SEC_BOOK_NORMS] = "book_norms",
    [SEC_READ_PTR] = "read_ptr", [SEC_READ_IDX] = "read_idx",
    [SEC_USER_IDS] = "user_ids", [SEC_BOOK_IDS] = "book_ids",
    [SEC_STRINGS] = "strings", [SEC_BOOK_INFO] = "book_info",
    [SEC_CHUNK_SUMS] = "chunk_sums",
};

static const uint32_t sec_type[SEC__LAST + 1] = {
    [SEC_BOOK_VECS] = T_F32, [SEC_USER_VECS] = T_F32, [SEC_USER_BIAS] = T_F32,
    [SEC_BOOK_BIAS] = T_F32, [SEC_MLP] = T_F32, [SEC_BOOK_NORMS] = T_F32,
    [SEC_READ_PTR] = T_U64, [SEC_READ_IDX] = T_U32, [SEC_USER_IDS] = T_U32,
    [SEC_BOOK_IDS] = T_U32, [SEC_STRINGS] = T_U8, [SEC_BOOK_INFO] = T_BOOK_REC,
    [SEC_CHUNK_SUMS] = T_U64,
};

static uint64_t type_size(uint32_t t)
{
    switch (t) {
    case T_F32: case T_U32: return 4;
    case T_U64: return 8;
    case T_U8: return 1;
    case T_BOOK_REC: return BR_MODEL_BOOK_REC_SIZE;
    default: return 0;
    }
}

/* ---- little-endian access ------------------------------------------------ */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define BR_HOST_BE 1
#else
#define BR_HOST_BE 0
#endif

static inline uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
#if BR_HOST_BE
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if BR_HOST_BE
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline float rdf32(const uint8_t *p)
{
    uint32_t u = rd32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline void wr32(uint8_t *p, uint32_t v)
{
#if BR_HOST_BE
    v = __builtin_bswap32(v);
#endif
    memcpy(p, &v, 4);
}

static inline void wr64(uint8_t *p, uint64_t v)
{
#if BR_HOST_BE
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
}

static inline void wrf32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    wr32(p, u);
}

/* Checked arithmetic: return 1 on overflow. */
static inline int mul_ovf(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_mul_overflow(a, b, r); }
static inline int add_ovf(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_add_overflow(a, b, r); }

/* ---- br_hash64 ------------------------------------------------------------ */
/*
 * Four independent 64-bit lanes consume 32-byte stripes (8 bytes per lane);
 * each lane step is acc = rotl(acc + w*K2, 29) * K1, so the lanes' multiply
 * chains overlap in the CPU. The lanes are then folded together, the length
 * is added, the remaining < 32 bytes are absorbed 8, 4 and 1 at a time, and
 * a final xorshift-multiply avalanche spreads every input bit over the
 * output. Words are read little-endian (memcpy: no unaligned-load UB), so the
 * value is the same on every machine. Spec: docs/FORMAT.md "Checksum".
 */

#define HK1 0x9E3779B97F4A7C15ull
#define HK2 0xD6E8FEB86659FD93ull
#define HK3 0xA0761D6478BD642Full
#define HK4 0xE7037ED1A0B428DBull
#define HK5 0x8EBC6AF09C88C6E3ull

static inline uint64_t rotl64(uint64_t x, unsigned r) { return (x << r) | (x >> (64u - r)); }

static inline uint64_t h_round(uint64_t acc, uint64_t w)
{
    acc += w * HK2;
    return rotl64(acc, 29) * HK1;
}

static void h_init(uint64_t v[4], uint64_t seed)
{
    v[0] = seed + HK1;
    v[1] = seed + HK2;
    v[2] = seed + HK3;
    v[3] = seed + HK4;
}

static void h_stripes(uint64_t v[4], const uint8_t *p, size_t nstripes)
{
    uint64_t a = v[0], b = v[1], c = v[2], d = v[3];
    for (size_t i = 0; i < nstripes; i++, p += 32) {
        a = h_round(a, rd64(p));
        b = h_round(b, rd64(p + 8));
        c = h_round(c, rd64(p + 16));
        d = h_round(d, rd64(p + 24));
    }
    v[0] = a; v[1] = b; v[2] = c; v[3] = d;
}

static uint64_t h_merge(const uint64_t v[4])
{
    uint64_t h = rotl64(v[0], 3) + rotl64(v[1], 11) + rotl64(v[2], 23) + rotl64(v[3], 41);
    for (int i = 0; i < 4; i++)
        h = (h ^ h_round(0, v[i])) * HK1 + HK4;
    return h;
}

/* Absorbs the last n (< 32) bytes and applies the final avalanche. */
static uint64_t h_finish(uint64_t h, const uint8_t *p, size_t n)
{
    for (; n >= 8; n -= 8, p += 8) {
        h ^= h_round(0, rd64(p));
        h = rotl64(h, 27) * HK1 + HK4;
    }
    if (n >= 4) {
        h ^= (uint64_t)rd32(p) * HK1;
        h = rotl64(h, 23) * HK2 + HK3;
        p += 4;
        n -= 4;
    }
    for (; n > 0; n--, p++) {
        h ^= (uint64_t)*p * HK5;
        h = rotl64(h, 11) * HK1;
    }
    h ^= h >> 33;
    h *= HK2;
    h ^= h >> 29;
    h *= HK3;
    h ^= h >> 32;
    return h;
}

uint64_t br_hash64(const void *data, size_t len, uint64_t seed)
{
    const uint8_t *p = data;
    if (len == 0)
        return h_finish(seed + HK5, NULL, 0);
    uint64_t h;
    size_t nstripes = len / 32;
    if (nstripes > 0) {
        uint64_t v[4];
        h_init(v, seed);
        h_stripes(v, p, nstripes);
        h = h_merge(v);
    } else {
        h = seed + HK5;
    }
    h += (uint64_t)len;
    return h_finish(h, p + nstripes * 32, len % 32);
}

/* br_hash64(a || b, |a| + |b|, seed), the first part a header copy with its
 * checksum field zeroed (the header is whole stripes, so b continues the
 * stripes). Computed without joining the two. */
static uint64_t hash_header_and(const uint8_t *file, const uint8_t *b, size_t blen,
                                uint64_t seed)
{
    _Static_assert(BR_MODEL_HEADER_SIZE % 32 == 0, "header must be whole stripes");
    uint8_t hdr[BR_MODEL_HEADER_SIZE];
    memcpy(hdr, file, sizeof hdr);
    memset(hdr + H_CHECKSUM, 0, 8);
    uint64_t v[4];
    h_init(v, seed);
    h_stripes(v, hdr, sizeof hdr / 32);
    h_stripes(v, b, blen / 32);
    uint64_t h = h_merge(v) + (uint64_t)(sizeof hdr + blen);
    return h_finish(h, b + blen / 32 * 32, blen % 32);
}

/* Version 1's checksum: br_hash64(file, len, 0) with the checksum field read
 * as zero. len >= BR_MODEL_HEADER_SIZE. */
static uint64_t model_file_hash(const uint8_t *file, size_t len)
{
    return hash_header_and(file, file + BR_MODEL_HEADER_SIZE, len - BR_MODEL_HEADER_SIZE, 0);
}

/* Chunked checksums (version 2). The bytes before the chunk_sums section
 * (the last thing in the file, at H_CHUNKS_OFFSET) are cut into chunks of
 * 2^shift bytes; chunk i's sum is br_hash64 of its bytes (the checksum field
 * read as zero) with seed i. The header's checksum is br_hash64 of the
 * header (checksum field zero) followed by the chunk sums. So the header and
 * the sums are checked together, and each chunk on its own: a reader can
 * check what it touches when it touches it (br_model_open_flags,
 * BR_MODEL_OPEN_LAZY). */
static uint64_t chunk_hash(const uint8_t *file, uint64_t covered, unsigned shift, uint64_t i)
{
    uint64_t lo = i << shift, hi = lo + (1ull << shift);
    if (hi > covered)
        hi = covered;
    if (i == 0)
        return hash_header_and(file, file + BR_MODEL_HEADER_SIZE, hi - BR_MODEL_HEADER_SIZE, 0);
    return br_hash64(file + lo, hi - lo, i);
}

/* ---- writer --------------------------------------------------------------- */

static const char *kind_name(uint32_t k)
{
    switch (k) {
    case BR_MODEL_DOT: return "dot";
    case BR_MODEL_BIASED: return "biased";
    case BR_MODEL_MLP: return "mlp";
    default: return "unknown";
    }
}

/* MLP weight count with overflow check (br_model_mlp_len without the risk). */
static int mlp_len_checked(uint32_t dim, uint32_t h1, uint32_t h2, uint64_t *out)
{
    uint64_t a, b, s;
    if (mul_ovf(2ull * dim, h1, &a) || mul_ovf(h1, h2, &b))
        return 1;
    if (add_ovf(a, b, &s) || add_ovf(s, (uint64_t)h1 + 2ull * h2 + 1, &s))
        return 1;
    *out = s;
    return 0;
}

/* Returns the index of the first non-finite value among n rows of `cols`
 * floats read with `stride`, or -1. */
static int64_t first_nonfinite(const float *x, uint64_t rows, uint64_t cols, uint64_t stride)
{
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t c = 0; c < cols; c++)
            if (!isfinite(x[r * stride + c]))
                return (int64_t)r;
    return -1;
}

static br_err validate_data(const br_model_data *d, br_diag *diag)
{
    if (!d)
        return br_fail(diag, BR_ERR_ARG, "model data is NULL");
    const br_model_meta *mt = &d->meta;
    if (mt->kind < BR_MODEL_DOT || mt->kind > BR_MODEL_MLP)
        return br_fail(diag, BR_ERR_ARG, "unknown model kind %u", mt->kind);
    if (mt->loss != BR_LOSS_MSE && mt->loss != BR_LOSS_BPR)
        return br_fail(diag, BR_ERR_ARG, "unknown loss kind %u", mt->loss);
    if (mt->optim != BR_OPTIM_SGD && mt->optim != BR_OPTIM_ADAM)
        return br_fail(diag, BR_ERR_ARG, "unknown optimizer kind %u", mt->optim);
    if (mt->dim == 0 || br_model_stride(mt->dim) < mt->dim)
        return br_fail(diag, BR_ERR_ARG, "embedding dimension %u is not usable", mt->dim);
    if (mt->n_users == 0 || mt->n_books == 0)
        return br_fail(diag, BR_ERR_ARG, "model has %u users and %u books; both must be > 0",
                       mt->n_users, mt->n_books);
    if (d->src_stride < mt->dim)
        return br_fail(diag, BR_ERR_ARG, "source stride %zu is smaller than the dimension %u",
                       d->src_stride, mt->dim);
    if (!d->user_vecs || !d->book_vecs || !d->user_ids || !d->book_ids || !d->read_ptr)
        return br_fail(diag, BR_ERR_ARG, "model data lacks vectors, ids or read lists");
    if (mt->kind == BR_MODEL_BIASED) {
        if (!d->user_bias || !d->book_bias)
            return br_fail(diag, BR_ERR_ARG, "biased model without bias arrays");
        if (!isfinite(mt->global_mean))
            return br_fail(diag, BR_ERR_NUMERIC, "global mean is not finite");
    }
    uint64_t mlp_n = 0;
    if (mt->kind == BR_MODEL_MLP) {
        if (!d->mlp)
            return br_fail(diag, BR_ERR_ARG, "mlp model without weights");
        if (mt->mlp_h1 == 0 || mt->mlp_h2 == 0)
            return br_fail(diag, BR_ERR_ARG, "mlp hidden widths %u, %u must be > 0",
                           mt->mlp_h1, mt->mlp_h2);
        if (mlp_len_checked(mt->dim, mt->mlp_h1, mt->mlp_h2, &mlp_n) || mlp_n > SIZE_MAX / 4)
            return br_fail(diag, BR_ERR_ARG, "mlp is too large");
    }

    for (uint32_t i = 1; i < mt->n_users; i++)
        if (d->user_ids[i] <= d->user_ids[i - 1])
            return br_fail(diag, BR_ERR_ARG, "user ids not strictly ascending at index %u (%u after %u)",
                           i, d->user_ids[i], d->user_ids[i - 1]);
    for (uint32_t i = 1; i < mt->n_books; i++)
        if (d->book_ids[i] <= d->book_ids[i - 1])
            return br_fail(diag, BR_ERR_ARG, "book ids not strictly ascending at index %u (%u after %u)",
                           i, d->book_ids[i], d->book_ids[i - 1]);

    if (d->read_ptr[0] != 0)
        return br_fail(diag, BR_ERR_ARG, "read_ptr[0] is %llu, not 0",
                       (unsigned long long)d->read_ptr[0]);
    for (uint32_t u = 0; u < mt->n_users; u++)
        if (d->read_ptr[u + 1] < d->read_ptr[u])
            return br_fail(diag, BR_ERR_ARG, "read_ptr decreases at user index %u", u);
    uint64_t nnz = d->read_ptr[mt->n_users];
    if (nnz > SIZE_MAX / 4)
        return br_fail(diag, BR_ERR_ARG, "read lists too large");
    if (nnz > 0 && !d->read_idx)
        return br_fail(diag, BR_ERR_ARG, "read_idx is NULL but read_ptr counts %llu entries",
                       (unsigned long long)nnz);
    for (uint32_t u = 0; u < mt->n_users; u++) {
        for (uint64_t k = d->read_ptr[u]; k < d->read_ptr[u + 1]; k++) {
            if (d->read_idx[k] >= mt->n_books)
                return br_fail(diag, BR_ERR_RANGE, "user index %u: read book index %u >= %u books",
                               u, d->read_idx[k], mt->n_books);
            if (k > d->read_ptr[u] && d->read_idx[k] <= d->read_idx[k - 1])
                return br_fail(diag, BR_ERR_ARG, "user index %u: read books not strictly ascending",
                               u);
        }
    }

    int64_t r;
    if ((r = first_nonfinite(d->user_vecs, mt->n_users, mt->dim, d->src_stride)) >= 0)
        return br_fail(diag, BR_ERR_NUMERIC, "user vector %lld is not finite", (long long)r);
    if ((r = first_nonfinite(d->book_vecs, mt->n_books, mt->dim, d->src_stride)) >= 0)
        return br_fail(diag, BR_ERR_NUMERIC, "book vector %lld is not finite", (long long)r);
    if (mt->kind == BR_MODEL_BIASED) {
        if ((r = first_nonfinite(d->user_bias, mt->n_users, 1, 1)) >= 0)
            return br_fail(diag, BR_ERR_NUMERIC, "user bias %lld is not finite", (long long)r);
        if ((r = first_nonfinite(d->book_bias, mt->n_books, 1, 1)) >= 0)
            return br_fail(diag, BR_ERR_NUMERIC, "book bias %lld is not finite", (long long)r);
    }
    if (mt->kind == BR_MODEL_MLP && (r = first_nonfinite(d->mlp, mlp_n, 1, 1)) >= 0)
        return br_fail(diag, BR_ERR_NUMERIC, "mlp weight %lld is not finite", (long long)r);
    return BR_OK;
}

/* A growable string table; offset 0 always holds "". Genres repeat a lot, so
 * the last few distinct strings of each kind are remembered and reused. */
typedef struct strtab {
    char *buf;
    size_t len, cap;
    uint32_t genre_off[32];
    unsigned n_genres;
} strtab;

static int strtab_add(strtab *t, const char *s, uint32_t *off)
{
    if (!s || !*s) {
        *off = 0;
        return 0;
    }
    size_t n = strlen(s) + 1;
    if (t->len + n > UINT32_MAX)
        return 1;
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->len + n)
            cap *= 2;
        char *nb = realloc(t->buf, cap);
        if (!nb)
            return 1;
        t->buf = nb;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, s, n);
    *off = (uint32_t)t->len;
    t->len += n;
    return 0;
}

static int strtab_add_genre(strtab *t, const char *s, uint32_t *off)
{
    if (!s || !*s) {
        *off = 0;
        return 0;
    }
    for (unsigned i = 0; i < t->n_genres; i++)
        if (strcmp(t->buf + t->genre_off[i], s) == 0) {
            *off = t->genre_off[i];
            return 0;
        }
    if (strtab_add(t, s, off))
        return 1;
    if (t->n_genres < sizeof t->genre_off / sizeof t->genre_off[0])
        t->genre_off[t->n_genres++] = *off;
    return 0;
}

typedef struct sec_plan {
    uint32_t id, type;
    uint64_t rows, cols, size, offset;
} sec_plan;

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

static void put_rows(uint8_t *dst, const float *src, uint64_t rows, uint32_t dim,
                     size_t src_stride, uint32_t stride)
{
    for (uint64_t r = 0; r < rows; r++) {
        uint8_t *row = dst + r * stride * 4;
        const float *s = src + r * src_stride;
        for (uint32_t c = 0; c < dim; c++)
            wrf32(row + c * 4, s[c]);   /* padding stays zero (calloc'd) */
    }
}

br_err br_model_save_buffer(const br_model_data *d, void **buf, size_t *len, br_diag *diag)
{
    if (!buf || !len)
        return br_fail(diag, BR_ERR_ARG, "NULL output pointer");
    *buf = NULL;
    *len = 0;
    br_err e = validate_data(d, diag);
    if (e)
        return e;

    br_model_meta mt = d->meta;
    mt.stride = br_model_stride(mt.dim);
    if (mt.kind != BR_MODEL_MLP)
        mt.mlp_h1 = mt.mlp_h2 = 0;
    if (mt.created_unix == 0)
        mt.created_unix = (int64_t)time(NULL);
    uint64_t nnz = d->read_ptr[mt.n_users];
    uint64_t mlp_n = 0;
    if (mt.kind == BR_MODEL_MLP)
        mlp_len_checked(mt.dim, mt.mlp_h1, mt.mlp_h2, &mlp_n);

    /* Book metadata: string table and one record per model book. */
    strtab st = {0};
    uint8_t *recs = NULL;
    if (d->books) {
        recs = calloc(mt.n_books, BR_MODEL_BOOK_REC_SIZE);
        if (!recs)
            return br_fail(diag, BR_ERR_NOMEM, "out of memory");
        if (!(st.buf = malloc(st.cap = 4096)))
            goto nomem;
        st.buf[0] = '\0'; /* offset 0: the empty string */
        st.len = 1;
        for (uint32_t b = 0; b < mt.n_books; b++) {
            const br_book *bk = br_books_find(d->books, d->book_ids[b]);
            uint8_t *rec = recs + (size_t)b * BR_MODEL_BOOK_REC_SIZE;
            uint32_t t = 0, a = 0, g = 0;
            int32_t year = 0;
            float avg = NAN;
            uint32_t count = 0;
            uint64_t gr = 0;
            if (bk) {
                if (strtab_add(&st, bk->title, &t) || strtab_add(&st, bk->authors, &a) ||
                    strtab_add_genre(&st, bk->genre, &g))
                    goto nomem;
                year = bk->year;
                avg = bk->avg_rating;
                count = bk->ratings_count;
                gr = bk->goodreads_id;
            }
            uint32_t year_u;
            memcpy(&year_u, &year, 4);
            wr64(rec + R_GOODREADS, gr);
            wr32(rec + R_TITLE, t);
            wr32(rec + R_AUTHORS, a);
            wr32(rec + R_GENRE, g);
            wr32(rec + R_YEAR, year_u);
            wrf32(rec + R_AVG, avg);
            wr32(rec + R_COUNT, count);
        }
    }

    /* Plan the sections, in id order. */
    sec_plan sec[SEC__LAST];
    unsigned ns = 0;
#define ADD_SEC(ID, ROWS, COLS) \
    sec[ns++] = (sec_plan){.id = (ID), .type = sec_type[ID], .rows = (ROWS), .cols = (COLS)}
    ADD_SEC(SEC_BOOK_VECS, mt.n_books, mt.stride);
    ADD_SEC(SEC_USER_VECS, mt.n_users, mt.stride);
    if (mt.kind == BR_MODEL_BIASED) {
        ADD_SEC(SEC_USER_BIAS, mt.n_users, 1);
        ADD_SEC(SEC_BOOK_BIAS, mt.n_books, 1);
    }
    if (mt.kind == BR_MODEL_MLP)
        ADD_SEC(SEC_MLP, 1, mlp_n);
    ADD_SEC(SEC_BOOK_NORMS, mt.n_books, 1);
    ADD_SEC(SEC_READ_PTR, (uint64_t)mt.n_users + 1, 1);
    ADD_SEC(SEC_READ_IDX, nnz, 1);
    ADD_SEC(SEC_USER_IDS, mt.n_users, 1);
    ADD_SEC(SEC_BOOK_IDS, mt.n_books, 1);
    if (d->books) {
        ADD_SEC(SEC_STRINGS, st.len, 1);
        ADD_SEC(SEC_BOOK_INFO, mt.n_books, 1);
    }
    ADD_SEC(SEC_CHUNK_SUMS, 0, 1);   /* sized below, once its offset is known */
#undef ADD_SEC

    uint64_t pos = align_up(BR_MODEL_HEADER_SIZE + (uint64_t)ns * BR_MODEL_ENTRY_SIZE, BR_MODEL_ALIGN);
    uint64_t file_size = pos;
    for (unsigned i = 0; i < ns; i++) {
        uint64_t sz;
        if (mul_ovf(sec[i].rows, sec[i].cols, &sz) || mul_ovf(sz, type_size(sec[i].type), &sz) ||
            add_ovf(pos, sz, &file_size) || file_size > SIZE_MAX - BR_MODEL_ALIGN) {
            free(recs);
            free(st.buf);
            return br_fail(diag, BR_ERR_RANGE, "model too large for this machine");
        }
        sec[i].size = sz;
        sec[i].offset = pos;
        pos = align_up(file_size, BR_MODEL_ALIGN);
    }

    /* Last, the chunk sums over everything before them (version 2). */
    uint64_t cs_off = sec[ns - 1].offset, n_chunks = (cs_off + (1ull << BR_MODEL_CHUNK_SHIFT) - 1)
                                                     >> BR_MODEL_CHUNK_SHIFT;
    sec[ns - 1].rows = n_chunks;
    sec[ns - 1].size = n_chunks * 8;
    file_size = cs_off + n_chunks * 8;

    /* 64-byte aligned so br_model_open_buffer can use it in place; zeroed so
     * reserved bytes, padding and gaps are zero. */
    size_t alloc = (size_t)align_up(file_size, BR_MODEL_ALIGN);
    uint8_t *out = aligned_alloc(BR_MODEL_ALIGN, alloc);
    if (!out)
        goto nomem;
    memset(out, 0, alloc);

    memcpy(out + H_MAGIC, br_model_magic, 8);
    wr32(out + H_VERSION, BR_MODEL_VERSION);
    wr32(out + H_ENDIAN, BR_MODEL_ENDIAN_WORD);
    wr64(out + H_FILE_SIZE, file_size);
    wr64(out + H_CHECKSUM, 0);
    wr32(out + H_HEADER_SIZE, BR_MODEL_HEADER_SIZE);
    wr32(out + H_N_SECTIONS, ns);
    wr64(out + H_TABLE_OFFSET, BR_MODEL_HEADER_SIZE);
    wr32(out + H_KIND, mt.kind);
    wr32(out + H_LOSS, mt.loss);
    wr32(out + H_OPTIM, mt.optim);
    wr32(out + H_DIM, mt.dim);
    wr32(out + H_STRIDE, mt.stride);
    wr32(out + H_N_USERS, mt.n_users);
    wr32(out + H_N_BOOKS, mt.n_books);
    wr32(out + H_EPOCHS, mt.epochs);
    wr32(out + H_MLP_H1, mt.mlp_h1);
    wr32(out + H_MLP_H2, mt.mlp_h2);
    wr64(out + H_SEED, mt.seed);
    wr64(out + H_N_TRAIN, mt.n_train);
    wr64(out + H_FINGERPRINT, mt.data_fingerprint);
    wr64(out + H_CREATED, (uint64_t)mt.created_unix);
    wrf32(out + H_GLOBAL_MEAN, mt.global_mean);
    wrf32(out + H_LR, mt.lr);
    wrf32(out + H_REG, mt.reg);
    wrf32(out + H_REG_BIAS, mt.reg_bias);
    wrf32(out + H_TEST_RMSE, mt.test_rmse);
    wrf32(out + H_TEST_MAE, mt.test_mae);
    wr32(out + H_CHUNK_SHIFT, BR_MODEL_CHUNK_SHIFT);
    wr32(out + H_N_CHUNKS, (uint32_t)n_chunks);
    wr64(out + H_CHUNKS_OFFSET, cs_off);

    for (unsigned i = 0; i < ns; i++) {
        uint8_t *ent = out + BR_MODEL_HEADER_SIZE + (size_t)i * BR_MODEL_ENTRY_SIZE;
        wr32(ent + E_ID, sec[i].id);
        wr32(ent + E_TYPE, sec[i].type);
        wr64(ent + E_OFFSET, sec[i].offset);
        wr64(ent + E_SIZE, sec[i].size);
        wr64(ent + E_ROWS, sec[i].rows);
        wr64(ent + E_COLS, sec[i].cols);

        uint8_t *p = out + sec[i].offset;
        switch (sec[i].id) {
        case SEC_BOOK_VECS:
            put_rows(p, d->book_vecs, mt.n_books, mt.dim, d->src_stride, mt.stride);
            break;
        case SEC_USER_VECS:
            put_rows(p, d->user_vecs, mt.n_users, mt.dim, d->src_stride, mt.stride);
            break;
        case SEC_USER_BIAS:
            for (uint32_t u = 0; u < mt.n_users; u++)
                wrf32(p + (size_t)u * 4, d->user_bias[u]);
            break;
        case SEC_BOOK_BIAS:
            for (uint32_t b = 0; b < mt.n_books; b++)
                wrf32(p + (size_t)b * 4, d->book_bias[b]);
            break;
        case SEC_MLP:
            for (uint64_t k = 0; k < mlp_n; k++)
                wrf32(p + k * 4, d->mlp[k]);
            break;
        case SEC_BOOK_NORMS:
            for (uint32_t b = 0; b < mt.n_books; b++) {
                const float *v = d->book_vecs + (size_t)b * d->src_stride;
                double s = 0;
                for (uint32_t c = 0; c < mt.dim; c++)
                    s += (double)v[c] * v[c];
                wrf32(p + (size_t)b * 4, (float)sqrt(s));
            }
            break;
        case SEC_READ_PTR:
            for (uint64_t u = 0; u <= mt.n_users; u++)
                wr64(p + u * 8, d->read_ptr[u]);
            break;
        case SEC_READ_IDX:
            for (uint64_t k = 0; k < nnz; k++)
                wr32(p + k * 4, d->read_idx[k]);
            break;
        case SEC_USER_IDS:
            for (uint32_t u = 0; u < mt.n_users; u++)
                wr32(p + (size_t)u * 4, d->user_ids[u]);
            break;
        case SEC_BOOK_IDS:
            for (uint32_t b = 0; b < mt.n_books; b++)
                wr32(p + (size_t)b * 4, d->book_ids[b]);
            break;
        case SEC_STRINGS:
            memcpy(p, st.buf, st.len);
            break;
        case SEC_BOOK_INFO:
            memcpy(p, recs, (size_t)mt.n_books * BR_MODEL_BOOK_REC_SIZE);
            break;
        }
    }
    free(recs);
    free(st.buf);

    for (uint64_t i = 0; i < n_chunks; i++)
        wr64(out + cs_off + i * 8, chunk_hash(out, cs_off, BR_MODEL_CHUNK_SHIFT, i));
    wr64(out + H_CHECKSUM, hash_header_and(out, out + cs_off, n_chunks * 8, 0));
    *buf = out;
    *len = (size_t)file_size;
    return BR_OK;

nomem:
    free(recs);
    free(st.buf);
    return br_fail(diag, BR_ERR_NOMEM, "out of memory while building the model");
}

void br_model_reseal(void *buf, size_t len)
{
    uint8_t *p = buf;
    if (len < BR_MODEL_HEADER_SIZE)
        return;
    wr64(p + H_FILE_SIZE, len);
    wr64(p + H_CHECKSUM, 0);
    uint32_t shift = rd32(p + H_CHUNK_SHIFT);
    uint64_t n = rd32(p + H_N_CHUNKS), off = rd64(p + H_CHUNKS_OFFSET);
    if (rd32(p + H_VERSION) < 2 || shift < 12 || shift > 30 || off < BR_MODEL_HEADER_SIZE ||
        off > len || n > (len - off) / 8 || n != ((off + (1ull << shift) - 1) >> shift)) {
        wr64(p + H_CHECKSUM, model_file_hash(p, len));   /* version 1's, or nothing better */
        return;
    }
    for (uint64_t i = 0; i < n; i++)
        wr64(p + off + i * 8, chunk_hash(p, off, shift, i));
    wr64(p + H_CHECKSUM, hash_header_and(p, p + off, (size_t)n * 8, 0));
}

br_err br_model_save(const br_model_data *d, const char *path, br_diag *diag)
{
    if (!path)
        return br_fail(diag, BR_ERR_ARG, "no model path given");
    void *buf;
    size_t len;
    br_err e = br_model_save_buffer(d, &buf, &len, diag);
    if (e)
        return e;
    br_atomic *a;
    e = br_atomic_open(path, &a, diag);
    if (e) {
        free(buf);
        return e;
    }
    if (fwrite(buf, 1, len, br_atomic_file(a)) != len) {
        int err = errno;
        br_atomic_abort(a);
        free(buf);
        return br_fail(diag, BR_ERR_IO, "cannot write %s: %s", path, strerror(err));
    }
    free(buf);
    return br_atomic_commit(a, diag);
}

/* ---- reader --------------------------------------------------------------- */

struct br_model {
    const uint8_t *base;      /* the validated file bytes */
    size_t len;
    void *map;                /* mmap'd region (NULL for buffers) */
    void *owned;              /* aligned copy made by open_buffer, or NULL */
    br_model_meta meta;
    uint64_t checksum;
    const float *user_vecs, *book_vecs, *user_bias, *book_bias, *norms, *mlp;
    const uint64_t *read_ptr;
    const uint32_t *read_idx;
    const uint32_t *user_ids, *book_ids;
    const char *strings;
    uint64_t strings_len;
    const uint8_t *book_info;
    int64_t user_dense_base, book_dense_base; /* first id if ids are contiguous, else -1 */
    uint64_t read_nnz;
    /* version 2 */
    uint32_t version, chunk_shift;
    uint64_t n_chunks, chunks_off;   /* chunk sums: n_chunks u64 at chunks_off */
    int lazy;                        /* user rows and read lists checked on first use */
    uint64_t *chunk_ok;              /* lazy: bit i set once chunk i matched (atomic) */
    char *name;                      /* for messages of the lazy checks */
};

static const char *sname(uint32_t id) { return id >= 1 && id <= SEC__LAST ? sec_name[id] : "unknown"; }

#define CORRUPT(...) br_fail(diag, BR_ERR_MODEL_CORRUPT, __VA_ARGS__)

/* Checks the fixed header: everything up to and including the checksum. */
static br_err check_header(const uint8_t *p, size_t len, const char *name, br_diag *diag)
{
    if (len == 0)
        return br_fail(diag, BR_ERR_MODEL_TRUNCATED, "%s: file is empty (a model has at least %u bytes)",
                       name, BR_MODEL_HEADER_SIZE);
    if (memcmp(p, br_model_magic, len < 8 ? len : 8) != 0)
        return br_fail(diag, BR_ERR_MODEL_MAGIC, "%s: not a bookrec model (bad magic)", name);
    if (len < BR_MODEL_HEADER_SIZE)
        return br_fail(diag, BR_ERR_MODEL_TRUNCATED,
                       "%s: file is %zu bytes, shorter than the %u-byte model header", name, len,
                       BR_MODEL_HEADER_SIZE);
    uint32_t endian;
    memcpy(&endian, p + H_ENDIAN, 4); /* native read: tells whether our byte order matches */
    if (endian == BR_MODEL_ENDIAN_SWAPPED)
        return br_fail(diag, BR_ERR_MODEL_ENDIAN,
                       "%s: model byte order differs from this machine's", name);
    if (endian != BR_MODEL_ENDIAN_WORD)
        return CORRUPT("%s: bad byte-order check word 0x%08x", name, endian);
    uint32_t version = rd32(p + H_VERSION);
    if (version > BR_MODEL_VERSION)
        return br_fail(diag, BR_ERR_MODEL_VERSION,
                       "%s: model format version %u is newer than this program supports (%u)",
                       name, version, (unsigned)BR_MODEL_VERSION);
    if (version == 0)
        return CORRUPT("%s: model format version 0 is not valid", name);
    uint32_t hsize = rd32(p + H_HEADER_SIZE);
    if (hsize != BR_MODEL_HEADER_SIZE)
        return CORRUPT("%s: header size %u, expected %u", name, hsize, BR_MODEL_HEADER_SIZE);
    uint64_t fsize = rd64(p + H_FILE_SIZE);
    if (fsize > len)
        return br_fail(diag, BR_ERR_MODEL_TRUNCATED,
                       "%s: file is %zu bytes but its header says %llu", name, len,
                       (unsigned long long)fsize);
    if (fsize < len)
        return CORRUPT("%s: file is %zu bytes but its header says %llu (trailing data)", name,
                       len, (unsigned long long)fsize);
    uint64_t want = rd64(p + H_CHECKSUM), got;
    if (version == 1) {
        got = model_file_hash(p, len);
    } else {
        /* version 2: the header with the chunk sums; the chunks themselves
         * are checked by model_validate (chunk 0 first: it holds the table) */
        uint32_t shift = rd32(p + H_CHUNK_SHIFT);
        uint64_t n = rd32(p + H_N_CHUNKS), off = rd64(p + H_CHUNKS_OFFSET);
        if (shift < 12 || shift > 30)
            return CORRUPT("%s: chunk size 2^%u is outside 2^12..2^30", name, shift);
        if (off < BR_MODEL_HEADER_SIZE || off % BR_MODEL_ALIGN != 0 || off > len ||
            n != ((off + (1ull << shift) - 1) >> shift) || (len - off) / 8 != n ||
            (len - off) % 8 != 0)
            return CORRUPT("%s: chunk sums (%llu at %llu, chunks of 2^%u bytes) do not fit "
                           "a %zu-byte file", name, (unsigned long long)n,
                           (unsigned long long)off, shift, len);
        got = hash_header_and(p, p + off, (size_t)n * 8, 0);
    }
    if (want != got)
        return br_fail(diag, BR_ERR_MODEL_CHECKSUM,
                       "%s: checksum mismatch (stored %016llx, computed %016llx)", name,
                       (unsigned long long)want, (unsigned long long)got);
    return BR_OK;
}

/* Version 2: checks chunk i against its stored sum (once: the bit in
 * chunk_ok, if there is one, records a match). */
static br_err check_chunk(const br_model *m, const uint8_t *p, uint64_t i, const char *name,
                          br_diag *diag)
{
    uint64_t *word = m->chunk_ok ? &m->chunk_ok[i / 64] : NULL, bit = 1ull << (i % 64);
    if (word && (__atomic_load_n(word, __ATOMIC_ACQUIRE) & bit))
        return BR_OK;
    uint64_t want = rd64(p + m->chunks_off + i * 8);
    if (chunk_hash(p, m->chunks_off, m->chunk_shift, i) != want) {
        uint64_t lo = i << m->chunk_shift, hi = lo + (1ull << m->chunk_shift);
        return br_fail(diag, BR_ERR_MODEL_CHECKSUM,
                       "%s: checksum mismatch in bytes %llu..%llu (chunk %llu): the file is "
                       "damaged",
                       name, (unsigned long long)lo,
                       (unsigned long long)(hi < m->chunks_off ? hi : m->chunks_off) - 1,
                       (unsigned long long)i);
    }
    if (word)
        __atomic_fetch_or(word, bit, __ATOMIC_ACQ_REL);
    return BR_OK;
}

/* Version 2: checks the chunks holding bytes [off, off + n) of the file. */
static br_err check_range(const br_model *m, uint64_t off, uint64_t n, const char *name,
                          br_diag *diag)
{
    if (n == 0)
        return BR_OK;
    for (uint64_t i = off >> m->chunk_shift; i <= (off + n - 1) >> m->chunk_shift; i++) {
        br_err e = check_chunk(m, m->base, i, name, diag);
        if (e)
            return e;
    }
    return BR_OK;
}

static br_err check_meta(br_model_meta *mt, const uint8_t *p, const char *name, br_diag *diag)
{
    memset(mt, 0, sizeof *mt);
    mt->kind = rd32(p + H_KIND);
    mt->loss = rd32(p + H_LOSS);
    mt->optim = rd32(p + H_OPTIM);
    mt->dim = rd32(p + H_DIM);
    mt->stride = rd32(p + H_STRIDE);
    mt->n_users = rd32(p + H_N_USERS);
    mt->n_books = rd32(p + H_N_BOOKS);
    mt->epochs = rd32(p + H_EPOCHS);
    mt->mlp_h1 = rd32(p + H_MLP_H1);
    mt->mlp_h2 = rd32(p + H_MLP_H2);
    mt->seed = rd64(p + H_SEED);
    mt->n_train = rd64(p + H_N_TRAIN);
    mt->data_fingerprint = rd64(p + H_FINGERPRINT);
    uint64_t created = rd64(p + H_CREATED);
    memcpy(&mt->created_unix, &created, 8);
    mt->global_mean = rdf32(p + H_GLOBAL_MEAN);
    mt->lr = rdf32(p + H_LR);
    mt->reg = rdf32(p + H_REG);
    mt->reg_bias = rdf32(p + H_REG_BIAS);
    mt->test_rmse = rdf32(p + H_TEST_RMSE);
    mt->test_mae = rdf32(p + H_TEST_MAE);

    if (mt->kind < BR_MODEL_DOT || mt->kind > BR_MODEL_MLP)
        return CORRUPT("%s: unknown model kind %u", name, mt->kind);
    if (mt->loss != BR_LOSS_MSE && mt->loss != BR_LOSS_BPR)
        return CORRUPT("%s: unknown loss kind %u", name, mt->loss);
    if (mt->optim != BR_OPTIM_SGD && mt->optim != BR_OPTIM_ADAM)
        return CORRUPT("%s: unknown optimizer kind %u", name, mt->optim);
    if (mt->dim == 0)
        return CORRUPT("%s: dimension is 0", name);
    if (mt->stride != br_model_stride(mt->dim) || mt->stride < mt->dim)
        return CORRUPT("%s: stride %u does not match dimension %u", name, mt->stride, mt->dim);
    if (mt->n_users == 0 || mt->n_books == 0)
        return CORRUPT("%s: %u users and %u books; both must be > 0", name, mt->n_users,
                       mt->n_books);
    if (mt->kind == BR_MODEL_MLP) {
        if (mt->mlp_h1 == 0 || mt->mlp_h2 == 0)
            return CORRUPT("%s: mlp hidden widths %u, %u must be > 0", name, mt->mlp_h1, mt->mlp_h2);
    } else if (mt->mlp_h1 != 0 || mt->mlp_h2 != 0) {
        return CORRUPT("%s: %s model with mlp widths %u, %u", name, kind_name(mt->kind),
                       mt->mlp_h1, mt->mlp_h2);
    }
    return BR_OK;
}

typedef struct sec_ent {
    uint32_t id, type;
    uint64_t offset, size, rows, cols;
} sec_ent;

/* Reads and checks the section table; fills found[id] for known sections. */
static br_err check_sections(br_model *m, const uint8_t *p, size_t len, const char *name,
                             br_diag *diag)
{
    const br_model_meta *mt = &m->meta;
    uint32_t ns = rd32(p + H_N_SECTIONS);
    uint64_t toff = rd64(p + H_TABLE_OFFSET), tend;
    if (ns > BR_MODEL_MAX_SECTIONS)
        return CORRUPT("%s: %u sections (at most %u allowed)", name, ns, BR_MODEL_MAX_SECTIONS);
    if (toff < BR_MODEL_HEADER_SIZE || toff % 8 != 0)
        return CORRUPT("%s: section table offset %llu is invalid", name, (unsigned long long)toff);
    if (add_ovf(toff, (uint64_t)ns * BR_MODEL_ENTRY_SIZE, &tend) || tend > len)
        return CORRUPT("%s: section table (%u entries at %llu) extends past the end of the file",
                       name, ns, (unsigned long long)toff);

    sec_ent ent[BR_MODEL_MAX_SECTIONS];
    int found[SEC__LAST + 1];
    for (int i = 0; i <= SEC__LAST; i++)
        found[i] = -1;
    for (uint32_t i = 0; i < ns; i++) {
        const uint8_t *e = p + toff + (uint64_t)i * BR_MODEL_ENTRY_SIZE;
        sec_ent *s = &ent[i];
        s->id = rd32(e + E_ID);
        s->type = rd32(e + E_TYPE);
        s->offset = rd64(e + E_OFFSET);
        s->size = rd64(e + E_SIZE);
        s->rows = rd64(e + E_ROWS);
        s->cols = rd64(e + E_COLS);
        uint64_t end;
        if (s->offset % BR_MODEL_ALIGN != 0)
            return CORRUPT("%s: section %u (%s): offset %llu is not a multiple of %u", name, s->id,
                           sname(s->id), (unsigned long long)s->offset, BR_MODEL_ALIGN);
        if (s->offset < tend)
            return CORRUPT("%s: section %u (%s): offset %llu overlaps the header or section table",
                           name, s->id, sname(s->id), (unsigned long long)s->offset);
        if (add_ovf(s->offset, s->size, &end) || end > len)
            return CORRUPT("%s: section %u (%s): %llu bytes at %llu extend past the end of the file",
                           name, s->id, sname(s->id), (unsigned long long)s->size,
                           (unsigned long long)s->offset);
        for (uint32_t j = 0; j < i; j++) {
            const sec_ent *o = &ent[j];
            if (s->size && o->size && s->offset < o->offset + o->size &&
                o->offset < s->offset + s->size)
                return CORRUPT("%s: sections %u (%s) and %u (%s) overlap", name, s->id,
                               sname(s->id), o->id, sname(o->id));
        }
        if (s->id < 1 || s->id > SEC__LAST)
            continue; /* unknown section: skipped (docs/FORMAT.md, versioning) */
        if (found[s->id] >= 0)
            return CORRUPT("%s: section %u (%s) appears twice", name, s->id, sname(s->id));
        found[s->id] = (int)i;
        if (s->type != sec_type[s->id])
            return CORRUPT("%s: section %u (%s): element type %u, expected %u", name, s->id,
                           sname(s->id), s->type, sec_type[s->id]);
        uint64_t bytes;
        if (mul_ovf(s->rows, s->cols, &bytes) || mul_ovf(bytes, type_size(s->type), &bytes) ||
            bytes != s->size)
            return CORRUPT("%s: section %u (%s): %llu bytes do not match %llu x %llu elements",
                           name, s->id, sname(s->id), (unsigned long long)s->size,
                           (unsigned long long)s->rows, (unsigned long long)s->cols);
    }

    /* Which sections the kind needs (1), forbids (0) or allows (2). */
    int need[SEC__LAST + 1] = {0};
    need[SEC_BOOK_VECS] = need[SEC_USER_VECS] = need[SEC_BOOK_NORMS] = 1;
    need[SEC_READ_PTR] = need[SEC_READ_IDX] = need[SEC_USER_IDS] = need[SEC_BOOK_IDS] = 1;
    need[SEC_USER_BIAS] = need[SEC_BOOK_BIAS] = mt->kind == BR_MODEL_BIASED;
    need[SEC_MLP] = mt->kind == BR_MODEL_MLP;
    need[SEC_STRINGS] = need[SEC_BOOK_INFO] = 2;
    need[SEC_CHUNK_SUMS] = m->version >= 2;
    for (uint32_t id = 1; id <= SEC__LAST; id++) {
        if (need[id] == 1 && found[id] < 0)
            return CORRUPT("%s: required section %u (%s) is missing", name, id, sname(id));
        if (need[id] == 0 && found[id] >= 0)
            return CORRUPT("%s: section %u (%s) does not belong in a %s model", name, id,
                           sname(id), kind_name(mt->kind));
    }
    if ((found[SEC_STRINGS] >= 0) != (found[SEC_BOOK_INFO] >= 0))
        return CORRUPT("%s: sections strings and book_info must come together", name);

    /* Shapes against the header counts. */
    uint64_t mlp_n = 0;
    if (mt->kind == BR_MODEL_MLP && mlp_len_checked(mt->dim, mt->mlp_h1, mt->mlp_h2, &mlp_n))
        return CORRUPT("%s: mlp widths %u, %u overflow", name, mt->mlp_h1, mt->mlp_h2);
    struct { uint32_t id; uint64_t rows, cols; } shape[] = {
        {SEC_BOOK_VECS, mt->n_books, mt->stride}, {SEC_USER_VECS, mt->n_users, mt->stride},
        {SEC_USER_BIAS, mt->n_users, 1},          {SEC_BOOK_BIAS, mt->n_books, 1},
        {SEC_MLP, 1, mlp_n},                      {SEC_BOOK_NORMS, mt->n_books, 1},
        {SEC_READ_PTR, (uint64_t)mt->n_users + 1, 1},
        {SEC_USER_IDS, mt->n_users, 1},           {SEC_BOOK_IDS, mt->n_books, 1},
        {SEC_BOOK_INFO, mt->n_books, 1},          {SEC_CHUNK_SUMS, m->n_chunks, 1},
    };
    for (size_t i = 0; i < sizeof shape / sizeof shape[0]; i++) {
        int k = found[shape[i].id];
        if (k < 0)
            continue;
        if (ent[k].rows != shape[i].rows || ent[k].cols != shape[i].cols)
            return CORRUPT("%s: section %u (%s) is %llu x %llu, expected %llu x %llu", name,
                           shape[i].id, sname(shape[i].id), (unsigned long long)ent[k].rows,
                           (unsigned long long)ent[k].cols, (unsigned long long)shape[i].rows,
                           (unsigned long long)shape[i].cols);
    }
    const sec_ent *ri = &ent[found[SEC_READ_IDX]];
    if (ri->cols != 1)
        return CORRUPT("%s: section read_idx has %llu columns, expected 1", name,
                       (unsigned long long)ri->cols);
    if (found[SEC_STRINGS] >= 0 && (ent[found[SEC_STRINGS]].cols != 1 || ent[found[SEC_STRINGS]].rows == 0))
        return CORRUPT("%s: section strings must be a non-empty column of bytes", name);
    if (found[SEC_CHUNK_SUMS] >= 0 && ent[found[SEC_CHUNK_SUMS]].offset != m->chunks_off)
        return CORRUPT("%s: section chunk_sums is at %llu but the header says %llu", name,
                       (unsigned long long)ent[found[SEC_CHUNK_SUMS]].offset,
                       (unsigned long long)m->chunks_off);
    m->read_nnz = ri->rows;

    /* All sizes agree: set the pointers (aligned: base is, offsets are). */
#define PTR(ID) (found[ID] >= 0 ? (const void *)(p + ent[found[ID]].offset) : NULL)
    m->book_vecs = PTR(SEC_BOOK_VECS);
    m->user_vecs = PTR(SEC_USER_VECS);
    m->user_bias = PTR(SEC_USER_BIAS);
    m->book_bias = PTR(SEC_BOOK_BIAS);
    m->mlp = PTR(SEC_MLP);
    m->norms = PTR(SEC_BOOK_NORMS);
    m->read_ptr = PTR(SEC_READ_PTR);
    m->read_idx = PTR(SEC_READ_IDX);
    m->user_ids = PTR(SEC_USER_IDS);
    m->book_ids = PTR(SEC_BOOK_IDS);
    m->strings = PTR(SEC_STRINGS);
    m->strings_len = found[SEC_STRINGS] >= 0 ? ent[found[SEC_STRINGS]].size : 0;
    m->book_info = PTR(SEC_BOOK_INFO);
#undef PTR

    return BR_OK;
}

/* User u's read list (ascending, below n_books) and vector padding: checked
 * for every user at open, or for one user at a time by br_model_check_user
 * on a lazily opened model. read_ptr is checked already. */
static br_err check_user_content(const br_model *m, uint32_t u, const char *name, br_diag *diag)
{
    const br_model_meta *mt = &m->meta;
    const uint32_t *r = m->read_idx + m->read_ptr[u];
    uint64_t n = m->read_ptr[u + 1] - m->read_ptr[u];
    for (uint64_t k = 0; k < n; k++) {
        if (r[k] >= mt->n_books)
            return CORRUPT("%s: user index %u read book index %u >= %u books", name, u, r[k],
                           mt->n_books);
        if (k > 0 && r[k] <= r[k - 1])
            return CORRUPT("%s: user index %u read books are not strictly ascending", name, u);
    }
    for (uint32_t c = mt->dim; c < mt->stride; c++) {
        uint32_t bits;
        memcpy(&bits, &m->user_vecs[(uint64_t)u * mt->stride + c], 4);
        if (bits != 0)
            return CORRUPT("%s: user row %u has non-zero padding", name, u);
    }
    return BR_OK;
}

/* Contents whose violation would make accessors misbehave, but for the
 * users' rows and read lists (check_user_content). Native loads are fine
 * from here on: the byte-order check passed. */
static br_err check_contents(br_model *m, const char *name, br_diag *diag)
{
    const br_model_meta *mt = &m->meta;
    uint64_t nnz = m->read_nnz;
    const uint64_t *ptr = m->read_ptr;
    if (ptr[0] != 0)
        return CORRUPT("%s: read_ptr[0] is %llu, not 0", name, (unsigned long long)ptr[0]);
    for (uint32_t u = 0; u < mt->n_users; u++)
        if (ptr[u + 1] < ptr[u] || ptr[u + 1] > nnz)
            return CORRUPT("%s: read_ptr is not monotone within 0..%llu at user index %u", name,
                           (unsigned long long)nnz, u);
    if (ptr[mt->n_users] != nnz)
        return CORRUPT("%s: read_ptr ends at %llu but read_idx holds %llu entries", name,
                       (unsigned long long)ptr[mt->n_users], (unsigned long long)nnz);
    for (uint32_t i = 1; i < mt->n_users; i++)
        if (m->user_ids[i] <= m->user_ids[i - 1])
            return CORRUPT("%s: user ids not strictly ascending at index %u", name, i);
    for (uint32_t i = 1; i < mt->n_books; i++)
        if (m->book_ids[i] <= m->book_ids[i - 1])
            return CORRUPT("%s: book ids not strictly ascending at index %u", name, i);
    /* SIMD kernels read whole rows: the padding must really be zero. */
    for (uint64_t r = 0; r < mt->n_books && mt->stride > mt->dim; r++)
        for (uint32_t c = mt->dim; c < mt->stride; c++) {
            uint32_t bits;
            memcpy(&bits, &m->book_vecs[r * mt->stride + c], 4);
            if (bits != 0)
                return CORRUPT("%s: book row %llu has non-zero padding", name,
                               (unsigned long long)r);
        }
    if (m->book_info) {
        if (m->strings[m->strings_len - 1] != '\0')
            return CORRUPT("%s: string table is not NUL-terminated", name);
        for (uint32_t b = 0; b < mt->n_books; b++) {
            const uint8_t *rec = m->book_info + (size_t)b * BR_MODEL_BOOK_REC_SIZE;
            uint32_t offs[3] = {rd32(rec + R_TITLE), rd32(rec + R_AUTHORS), rd32(rec + R_GENRE)};
            for (int k = 0; k < 3; k++)
                if (offs[k] >= m->strings_len)
                    return CORRUPT("%s: book index %u: string offset %u outside the %llu-byte string table",
                                   name, b, offs[k], (unsigned long long)m->strings_len);
        }
    }
    if (!m->lazy)
        for (uint32_t u = 0; u < mt->n_users; u++) {
            br_err e = check_user_content(m, u, name, diag);
            if (e)
                return e;
        }
    return BR_OK;
}

static int64_t dense_base(const uint32_t *ids, uint32_t n)
{
    /* Strictly ascending ids spanning exactly n values are base..base+n-1. */
    return (uint64_t)ids[n - 1] - ids[0] == (uint64_t)n - 1 ? (int64_t)ids[0] : -1;
}

/* 1 if chunk i lies wholly inside the user vectors or the read lists (the
 * parts a lazy open leaves to br_model_check_user). */
static int chunk_is_lazy(const br_model *m, uint64_t i)
{
    uint64_t lo = i << m->chunk_shift, hi = lo + (1ull << m->chunk_shift);
    if (hi > m->chunks_off)
        hi = m->chunks_off;
    uint64_t uv = (uint64_t)((const uint8_t *)m->user_vecs - m->base),
             uv_end = uv + (uint64_t)m->meta.n_users * m->meta.stride * 4;
    uint64_t ri = (uint64_t)((const uint8_t *)m->read_idx - m->base), ri_end = ri + m->read_nnz * 4;
    return (lo >= uv && hi <= uv_end) || (lo >= ri && hi <= ri_end);
}

/* Validates p[0..len) (64-byte aligned) and fills m. With m->lazy (version
 * 2 files only), the chunks wholly inside the user vectors and read lists
 * and the users' contents are left for br_model_check_user. */
static br_err model_validate(br_model *m, const uint8_t *p, size_t len, const char *name,
                             br_diag *diag)
{
    br_err e = check_header(p, len, name, diag);
    if (e)
        return e;
    m->base = p;
    m->len = len;
    m->version = rd32(p + H_VERSION);
    if (m->version >= 2) {
        m->chunk_shift = rd32(p + H_CHUNK_SHIFT);
        m->n_chunks = rd32(p + H_N_CHUNKS);
        m->chunks_off = rd64(p + H_CHUNKS_OFFSET);
        /* chunk 0 holds the header and the section table */
        if ((e = check_chunk(m, p, 0, name, diag)))
            return e;
    } else {
        m->lazy = 0;
    }
    if ((e = check_meta(&m->meta, p, name, diag)))
        return e;
    if ((e = check_sections(m, p, len, name, diag)))
        return e;
    if (m->version >= 2) {
        if (m->lazy && !(m->chunk_ok = calloc((m->n_chunks + 63) / 64, sizeof *m->chunk_ok)))
            return br_fail(diag, BR_ERR_NOMEM, "out of memory");
        for (uint64_t i = 1; i < m->n_chunks; i++)
            if (!(m->lazy && chunk_is_lazy(m, i)) && (e = check_chunk(m, p, i, name, diag)))
                return e;
    }
    if ((e = check_contents(m, name, diag)))
        return e;
    m->checksum = rd64(p + H_CHECKSUM);
    m->user_dense_base = dense_base(m->user_ids, m->meta.n_users);
    m->book_dense_base = dense_base(m->book_ids, m->meta.n_books);
    return BR_OK;
}

br_err br_model_check_user(const br_model *m, uint32_t u, br_diag *diag)
{
    if (!m)
        return br_fail(diag, BR_ERR_ARG, "NULL model");
    if (u >= m->meta.n_users)
        return br_fail(diag, BR_ERR_RANGE, "user index %u is out of range (%u users)", u,
                       m->meta.n_users);
    if (!m->lazy)
        return BR_OK;
    const char *name = m->name ? m->name : "model";
    uint64_t row = (uint64_t)m->meta.stride * 4;
    uint64_t uv = (uint64_t)((const uint8_t *)m->user_vecs - m->base);
    uint64_t ri = (uint64_t)((const uint8_t *)m->read_idx - m->base);
    br_err e = check_range(m, uv + u * row, row, name, diag);
    if (!e)
        e = check_range(m, ri + m->read_ptr[u] * 4, (m->read_ptr[u + 1] - m->read_ptr[u]) * 4,
                        name, diag);
    if (!e)
        e = check_user_content(m, u, name, diag);
    return e;
}

br_err br_model_check_all(const br_model *m, br_diag *diag)
{
    if (!m)
        return br_fail(diag, BR_ERR_ARG, "NULL model");
    if (!m->lazy)
        return BR_OK;
    for (uint32_t u = 0; u < m->meta.n_users; u++) {
        br_err e = br_model_check_user(m, u, diag);
        if (e)
            return e;
    }
    return check_range(m, 0, m->chunks_off, m->name ? m->name : "model", diag);
}

int br_model_is_lazy(const br_model *m) { return m->lazy; }

br_err br_model_open(const char *path, br_model **out, br_diag *diag)
{
    return br_model_open_flags(path, 0, out, diag);
}

br_err br_model_open_flags(const char *path, unsigned flags, br_model **out, br_diag *diag)
{
    if (!out)
        return br_fail(diag, BR_ERR_ARG, "NULL output pointer");
    *out = NULL;
    if (!path)
        return br_fail(diag, BR_ERR_ARG, "no model path given");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return br_fail(diag, e == ENOENT ? BR_ERR_NOT_FOUND : BR_ERR_IO, "%s: %s", path,
                       strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return br_fail(diag, BR_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return br_fail(diag, BR_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return br_fail(diag, BR_ERR_IO, "%s: file too large to map", path);
    }
    size_t len = (size_t)st.st_size;
    if (len < BR_MODEL_HEADER_SIZE) {
        /* Too short to map usefully: read it so the error names the cause. */
        uint8_t small[BR_MODEL_HEADER_SIZE];
        ssize_t got = len ? pread(fd, small, len, 0) : 0;
        int e = errno;
        close(fd);
        if (got < 0)
            return br_fail(diag, BR_ERR_IO, "%s: read failed: %s", path, strerror(e));
        return check_header(small, (size_t)got, path, diag);
    }
    int lazy = (flags & BR_MODEL_OPEN_LAZY) != 0;
    int mflags = MAP_PRIVATE;
#ifdef MAP_POPULATE
    if (!lazy)
        mflags |= MAP_POPULATE; /* the checksum touches every page anyway: fault them in one go */
#endif
    void *map = mmap(NULL, len, PROT_READ, mflags, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return br_fail(diag, BR_ERR_IO, "%s: cannot map: %s", path, strerror(e));
    if (!lazy)
        madvise(map, len, MADV_WILLNEED);

    br_model *m = calloc(1, sizeof *m);
    if (!m || !(m->name = strdup(path))) {
        free(m);
        munmap(map, len);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    m->map = map;
    m->lazy = lazy;
    br_err err = model_validate(m, map, len, path, diag);
    if (err) {
        munmap(map, len);
        free(m->chunk_ok);
        free(m->name);
        free(m);
        return err;
    }
    *out = m;
    return BR_OK;
}

br_err br_model_open_buffer(const void *buf, size_t len, br_model **out, br_diag *diag)
{
    if (!out)
        return br_fail(diag, BR_ERR_ARG, "NULL output pointer");
    *out = NULL;
    if (!buf && len)
        return br_fail(diag, BR_ERR_ARG, "NULL buffer");
    br_model *m = calloc(1, sizeof *m);
    if (!m)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    const uint8_t *p = buf;
    static const uint8_t empty[1];
    if (len == 0) {
        p = empty;
    } else if ((uintptr_t)buf % BR_MODEL_ALIGN != 0) {
        /* Copy to an aligned block so the vectors are 64-byte aligned. */
        size_t alloc = (len + BR_MODEL_ALIGN - 1) / BR_MODEL_ALIGN * BR_MODEL_ALIGN;
        if (alloc < len || !(m->owned = aligned_alloc(BR_MODEL_ALIGN, alloc))) {
            free(m);
            return br_fail(diag, BR_ERR_NOMEM, "out of memory copying a %zu-byte model", len);
        }
        memcpy(m->owned, buf, len);
        p = m->owned;
    }
    br_err e = model_validate(m, p, len, "model buffer", diag);
    if (e) {
        free(m->owned);
        free(m->chunk_ok);
        free(m);
        return e;
    }
    *out = m;
    return BR_OK;
}

void br_model_free(br_model *m)
{
    if (!m)
        return;
    if (m->map)
        munmap(m->map, m->len);
    free(m->owned);
    free(m->chunk_ok);
    free(m->name);
    free(m);
}

/* ---- accessors ------------------------------------------------------------ */

const br_model_meta *br_model_get_meta(const br_model *m) { return &m->meta; }
uint64_t br_model_checksum(const br_model *m) { return m->checksum; }
size_t br_model_file_size(const br_model *m) { return m->len; }
const float *br_model_user_vecs(const br_model *m) { return m->user_vecs; }
const float *br_model_book_vecs(const br_model *m) { return m->book_vecs; }
const float *br_model_user_bias(const br_model *m) { return m->user_bias; }
const float *br_model_book_bias(const br_model *m) { return m->book_bias; }
const float *br_model_book_norms(const br_model *m) { return m->norms; }
const float *br_model_mlp(const br_model *m) { return m->mlp; }
const uint32_t *br_model_user_ids(const br_model *m) { return m->user_ids; }
const uint32_t *br_model_book_ids(const br_model *m) { return m->book_ids; }
int br_model_has_book_info(const br_model *m) { return m->book_info != NULL; }

const uint32_t *br_model_user_read(const br_model *m, uint32_t u, size_t *n)
{
    if (u >= m->meta.n_users) {
        if (n)
            *n = 0;
        return NULL;
    }
    if (n)
        *n = (size_t)(m->read_ptr[u + 1] - m->read_ptr[u]);
    return m->read_idx + m->read_ptr[u];
}

static int64_t find_id(const uint32_t *ids, uint32_t n, int64_t dense, uint32_t id)
{
    if (dense >= 0) {
        uint64_t k = (uint64_t)id - (uint64_t)dense;
        return id >= (uint64_t)dense && k < n ? (int64_t)k : -1;
    }
    size_t lo = 0, hi = n; /* first index with ids[i] >= id */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && ids[lo] == id ? (int64_t)lo : -1;
}

int64_t br_model_find_user(const br_model *m, uint32_t user_id)
{
    return find_id(m->user_ids, m->meta.n_users, m->user_dense_base, user_id);
}

int64_t br_model_find_book(const br_model *m, uint32_t book_id)
{
    return find_id(m->book_ids, m->meta.n_books, m->book_dense_base, book_id);
}

void br_model_book_info(const br_model *m, uint32_t b, br_book *out)
{
    memset(out, 0, sizeof *out);
    out->title = out->authors = out->genre = "";
    out->avg_rating = NAN;
    if (!m || b >= m->meta.n_books)
        return;
    out->book_id = m->book_ids[b];
    if (!m->book_info)
        return;
    const uint8_t *rec = m->book_info + (size_t)b * BR_MODEL_BOOK_REC_SIZE;
    out->goodreads_id = rd64(rec + R_GOODREADS);
    out->title = m->strings + rd32(rec + R_TITLE);
    out->authors = m->strings + rd32(rec + R_AUTHORS);
    out->genre = m->strings + rd32(rec + R_GENRE);
    uint32_t y = rd32(rec + R_YEAR);
    memcpy(&out->year, &y, 4);
    out->avg_rating = rdf32(rec + R_AVG);
    out->ratings_count = rd32(rec + R_COUNT);
}
