/*
 * make_model_seeds.c - writes the small valid models that seed the model
 * loader's fuzz corpus (tests/fuzz/corpus/fuzz_model/valid_*.bin).
 *
 *   make-model-seeds OUT_DIR
 *
 * One model per kind (dot, biased, mlp), with and without book metadata,
 * with dims that do and do not fill a row of 8 floats, a user with no read
 * books, sparse and dense ids. A few users and books each, so every file is
 * a few KB and mutations stay cheap. Same bytes on every run (created_unix
 * is fixed). Not a test; built with -DBOOKREC_FUZZ=ON.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "br_books.h"
#include "br_model.h"

static const char books_csv[] =
    "book_id,goodreads_book_id,title,authors,original_publication_year,average_rating,"
    "ratings_count\n"
    "2,20,\"Dune, Part One\",Frank Herbert,1965,4.2,1000\n"
    "3,30,\"Say \"\"hi\"\"\",A. N. Other,-400,3.5,12\n"
    "5,50,Emma,Jane Austen,1815.0,4.0,\n"
    "9,90,,,,,\n";

static int write_model(const char *dir, const char *name, uint32_t kind, uint32_t dim,
                       uint32_t nu, uint32_t nb, int sparse, const br_books *books)
{
    br_model_data d;
    memset(&d, 0, sizeof d);
    d.meta.kind = kind;
    d.meta.loss = kind == BR_MODEL_DOT ? BR_LOSS_MSE : BR_LOSS_BPR;
    d.meta.optim = kind == BR_MODEL_MLP ? BR_OPTIM_ADAM : BR_OPTIM_SGD;
    d.meta.dim = dim;
    d.meta.n_users = nu;
    d.meta.n_books = nb;
    d.meta.epochs = 3;
    d.meta.seed = 42;
    d.meta.n_train = 11;
    d.meta.created_unix = 1700000000;
    d.meta.global_mean = kind == BR_MODEL_BIASED ? 3.5f : 0.0f;
    d.meta.lr = 0.01f;
    d.meta.reg = 0.05f;
    d.meta.test_rmse = NAN;
    d.meta.test_mae = NAN;
    if (kind == BR_MODEL_MLP) {
        d.meta.mlp_h1 = 3;
        d.meta.mlp_h2 = 2;
    }
    float *uv = calloc((size_t)nu * dim, sizeof *uv), *bv = calloc((size_t)nb * dim, sizeof *bv);
    float *ub = calloc(nu, sizeof *ub), *bb = calloc(nb, sizeof *bb);
    size_t ml = br_model_mlp_len(dim, 3, 2);
    float *mlp = calloc(ml, sizeof *mlp);
    uint32_t *uid = calloc(nu, sizeof *uid), *bid = calloc(nb, sizeof *bid);
    uint64_t *ptr = calloc((size_t)nu + 1, sizeof *ptr);
    uint32_t *idx = calloc((size_t)nu * nb + 1, sizeof *idx);
    for (uint32_t i = 0; i < nu * dim; i++)
        uv[i] = (float)((int)(i * 7 % 11) - 5) / 8.0f;
    for (uint32_t i = 0; i < nb * dim; i++)
        bv[i] = (float)((int)(i * 5 % 13) - 6) / 8.0f;
    for (uint32_t i = 0; i < nu; i++)
        ub[i] = 0.125f * (float)i;
    for (uint32_t i = 0; i < nb; i++)
        bb[i] = -0.25f * (float)i;
    for (size_t i = 0; i < ml; i++)
        mlp[i] = (float)(i % 5) / 4.0f - 0.5f;
    /* books.csv ids are 2,3,5,9: use them for the book ids when given. */
    static const uint32_t book_csv_ids[] = {2, 3, 5, 9};
    for (uint32_t i = 0; i < nu; i++)
        uid[i] = sparse ? 1000000000u + i * 7919u : i + 1;
    for (uint32_t i = 0; i < nb; i++)
        bid[i] = books && i < 4 ? book_csv_ids[i] : (sparse ? 5u + i * 104729u : i + 1);
    if (books && nb > 4)
        for (uint32_t i = 4; i < nb; i++)
            bid[i] = 9 + i;
    size_t k = 0;
    for (uint32_t u = 0; u < nu; u++) {
        ptr[u] = k;
        if (u == 1)
            continue;   /* a user with nothing read */
        for (uint32_t b = u % 2; b < nb; b += 1 + u % 3)
            idx[k++] = b;
    }
    ptr[nu] = k;
    d.user_vecs = uv;
    d.book_vecs = bv;
    d.src_stride = dim;
    d.user_bias = ub;
    d.book_bias = bb;
    d.mlp = mlp;
    d.user_ids = uid;
    d.book_ids = bid;
    d.read_ptr = ptr;
    d.read_idx = idx;
    d.books = books;
    void *buf = NULL;
    size_t len = 0;
    br_diag dg;
    br_diag_clear(&dg);
    br_err e = br_model_save_buffer(&d, &buf, &len, &dg);
    int rc = 1;
    if (e) {
        fprintf(stderr, "%s: %s\n", name, br_diag_text(&dg, e));
    } else {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, "wb");
        if (f && fwrite(buf, 1, len, f) == len && fclose(f) == 0) {
            printf("%s: %zu bytes\n", path, len);
            rc = 0;
        } else {
            perror(path);
        }
    }
    free(buf);
    free(uv);
    free(bv);
    free(ub);
    free(bb);
    free(mlp);
    free(uid);
    free(bid);
    free(ptr);
    free(idx);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make-model-seeds OUT_DIR\n");
        return 2;
    }
    br_books *books = NULL;
    br_diag dg;
    br_err e = br_books_parse(books_csv, sizeof books_csv - 1, "seed_books.csv", &books, &dg);
    if (e) {
        fprintf(stderr, "%s\n", br_diag_text(&dg, e));
        return 1;
    }
    int bad = 0;
    bad |= write_model(argv[1], "valid_dot_d5.bin", BR_MODEL_DOT, 5, 4, 6, 0, NULL);
    bad |= write_model(argv[1], "valid_dot_d8_sparse.bin", BR_MODEL_DOT, 8, 3, 5, 1, NULL);
    bad |= write_model(argv[1], "valid_biased_d3.bin", BR_MODEL_BIASED, 3, 5, 4, 0, NULL);
    bad |= write_model(argv[1], "valid_biased_d9_books.bin", BR_MODEL_BIASED, 9, 3, 6, 0, books);
    bad |= write_model(argv[1], "valid_mlp_d2.bin", BR_MODEL_MLP, 2, 3, 3, 1, NULL);
    bad |= write_model(argv[1], "valid_dot_d1_books.bin", BR_MODEL_DOT, 1, 2, 4, 0, books);
    bad |= write_model(argv[1], "valid_one_user_one_book.bin", BR_MODEL_DOT, 4, 1, 1, 0, NULL);
    br_books_free(books);
    return bad;
}
