/*
 * fuzz_model.c - libFuzzer target for the model loader
 * (br_model_open_buffer).
 *
 * Each input is opened twice:
 *   1. as is, at an unaligned address (so the loader's aligned copy is
 *      exercised) - almost every mutation stops at the checksum here;
 *   2. "repaired": copied to a 64-byte aligned buffer with the header's
 *      file size set to the input length and the checksum recomputed, so
 *      mutations reach the section table and contents checks - the part of
 *      the loader that must hold against a file that is well-formed at the
 *      byte level but lies about its structure.
 * On success every accessor is walked over every user and book (vectors,
 * biases, norms, read lists, ids, book metadata strings), so a pointer the
 * loader let through that reaches outside the buffer is caught by ASan.
 * On failure: a code in the BR_ERR_MODEL_* family (or ARG/NOMEM) and a
 * message naming "model buffer".
 */
#include <stdint.h>

#include "br_model.h"
#include "fuzz_common.h"

static volatile float sink;

static void walk(const br_model *m)
{
    const br_model_meta *mt = br_model_get_meta(m);
    FUZZ_CHECK(mt->dim > 0 && mt->stride >= mt->dim && mt->stride % 8 == 0);
    FUZZ_CHECK(mt->n_users > 0 && mt->n_books > 0);
    const float *uv = br_model_user_vecs(m), *bv = br_model_book_vecs(m);
    const float *ub = br_model_user_bias(m), *bb = br_model_book_bias(m);
    const float *nrm = br_model_book_norms(m), *mlp = br_model_mlp(m);
    const uint32_t *uid = br_model_user_ids(m), *bid = br_model_book_ids(m);
    FUZZ_CHECK(uv && bv && nrm && uid && bid);
    FUZZ_CHECK((uintptr_t)uv % 32 == 0 && (uintptr_t)bv % 32 == 0);
    FUZZ_CHECK((ub != NULL) == (mt->kind == BR_MODEL_BIASED));
    FUZZ_CHECK((bb != NULL) == (mt->kind == BR_MODEL_BIASED));
    FUZZ_CHECK((mlp != NULL) == (mt->kind == BR_MODEL_MLP));
    float s = 0;
    for (uint32_t u = 0; u < mt->n_users; u++) {
        s += uv[(size_t)u * mt->stride] + uv[(size_t)u * mt->stride + mt->stride - 1];
        if (ub)
            s += ub[u];
        FUZZ_CHECK(br_model_find_user(m, uid[u]) == (int64_t)u);
        size_t n = 0;
        const uint32_t *rd = br_model_user_read(m, u, &n);
        for (size_t k = 0; k < n; k++)
            FUZZ_CHECK(rd[k] < mt->n_books);
    }
    size_t n = 1;
    FUZZ_CHECK(br_model_user_read(m, mt->n_users, &n) == NULL && n == 0);
    int info = br_model_has_book_info(m);
    for (uint32_t b = 0; b <= mt->n_books; b++) {   /* one past the end on purpose */
        br_book k;
        br_model_book_info(m, b, &k);
        FUZZ_CHECK(k.title && k.authors && k.genre);
        sink = (float)(strlen(k.title) + strlen(k.authors) + strlen(k.genre));
        if (b == mt->n_books) {
            FUZZ_CHECK(k.book_id == 0);
            break;
        }
        FUZZ_CHECK(k.book_id == bid[b]);
        if (!info)
            FUZZ_CHECK(k.title[0] == '\0');
        s += bv[(size_t)b * mt->stride] + bv[(size_t)b * mt->stride + mt->stride - 1] + nrm[b];
        if (bb)
            s += bb[b];
        FUZZ_CHECK(br_model_find_book(m, bid[b]) == (int64_t)b);
    }
    if (mlp)
        s += mlp[0] + mlp[br_model_mlp_len(mt->dim, mt->mlp_h1, mt->mlp_h2) - 1];
    sink = s;
    FUZZ_CHECK(br_model_file_size(m) >= BR_MODEL_HEADER_SIZE);
}

static void check_fail(br_err e, const br_diag *d)
{
    fuzz_check_diag(e, d, "model buffer");
    FUZZ_CHECK(e == BR_ERR_NOMEM || (e >= BR_ERR_MODEL_MAGIC && e <= BR_ERR_MODEL_CORRUPT));
}

static void open_check(const void *buf, size_t len)
{
    br_model *m = NULL;
    br_diag d;
    br_diag_clear(&d);
    br_err e = br_model_open_buffer(buf, len, &m, &d);
    if (e == BR_OK) {
        FUZZ_CHECK(m != NULL);
        walk(m);
        br_model_free(m);
    } else {
        FUZZ_CHECK(m == NULL);
        check_fail(e, &d);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (16u << 20))
        return 0;
    /* 1. as is, at an address that is not 64-byte aligned */
    uint8_t *raw = malloc(size + 1);
    if (!raw)
        return 0;
    memcpy(raw + 1, data, size);
    open_check(raw + 1, size);
    free(raw);

    /* 2. repaired: file size and checksum made to match */
    if (size < BR_MODEL_HEADER_SIZE)
        return 0;
    size_t alloc = (size + 63) / 64 * 64;
    uint8_t *a = aligned_alloc(64, alloc);
    if (!a)
        return 0;
    memcpy(a, data, size);
    br_model_reseal(a, size);   /* version 2's chunk sums, or version 1's checksum */
    open_check(a, size);
    free(a);
    return 0;
}
