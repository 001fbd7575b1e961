/*
 * test_mlp.c - the MLP model (trainer/br_mlp.h) and its serving path in
 * br_rec (infer/br_recommend.h).
 *
 *   - forward pass against a double-precision reference on a tiny network;
 *   - gradient check: br_mlp_backward's gradients of every weight and of both
 *     embeddings against central finite differences of the reference (the
 *     random network is redrawn until no pre-activation sits near a ReLU's
 *     kink, where the derivative is not defined);
 *   - training on planted synthetic data (br_gen_memory, br_ratings_build;
 *     random 80/20 split) brings the test RMSE well below the global-mean
 *     baseline, with one thread and with two;
 *   - one thread and one seed give bit-identical parameters; another seed
 *     does not;
 *   - a trained model written with br_model_save_buffer and opened with
 *     br_model_open_buffer scores the same in br_rec (top-k scores and
 *     br_rec_predict) as the trainer (within 1e-5), never recommends a read
 *     book, and refuses fold-in with a clear message;
 *   - bad options are refused.
 * Sizes are small so the sanitizer build stays quick.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "br_gen.h"
#include "br_mlp.h"
#include "br_model.h"
#include "br_ratings.h"
#include "br_recommend.h"
#include "br_rng.h"

static void must(br_err e, const br_diag *d, const char *what)
{
    if (e) {
        print_error("%s: %s\n", what, br_diag_text(d, e));
        fail();
    }
}

/* ---- a double-precision reference of the network ---------------------------- */

typedef struct tiny {
    uint32_t dim, h1, h2;
    size_t nw;
    float *w, p[8], q[8];
} tiny;

/* y of the network in double; z1[h1], z2[h2] receive the pre-activations. */
static double ref_forward(const tiny *t, const double *w, const double *p, const double *q,
                          double *z1, double *z2)
{
    uint32_t dim = t->dim, h1 = t->h1, h2 = t->h2;
    const double *W1 = w, *b1 = W1 + 2 * dim * h1, *W2 = b1 + h1, *b2 = W2 + h1 * h2;
    const double *w3 = b2 + h2, *b3 = w3 + h2;
    double a1[64], a2[64];
    for (uint32_t j = 0; j < h1; j++) {
        double z = b1[j];
        for (uint32_t i = 0; i < dim; i++)
            z += p[i] * W1[i * h1 + j] + q[i] * W1[(dim + i) * h1 + j];
        z1[j] = z;
        a1[j] = z > 0 ? z : 0;
    }
    for (uint32_t k = 0; k < h2; k++) {
        double z = b2[k];
        for (uint32_t j = 0; j < h1; j++)
            z += a1[j] * W2[j * h2 + k];
        z2[k] = z;
        a2[k] = z > 0 ? z : 0;
    }
    double y = b3[0];
    for (uint32_t k = 0; k < h2; k++)
        y += w3[k] * a2[k];
    return y;
}

/* Smallest |pre-activation| of the network at (w, p, q). */
static double kink_margin(const tiny *t, const double *w, const double *p, const double *q)
{
    double z1[64], z2[64], m = INFINITY;
    ref_forward(t, w, p, q, z1, z2);
    for (uint32_t j = 0; j < t->h1; j++)
        m = fmin(m, fabs(z1[j]));
    for (uint32_t k = 0; k < t->h2; k++)
        m = fmin(m, fabs(z2[k]));
    return m;
}

/* A random tiny network whose pre-activations all stay at least 0.05 from 0. */
static void tiny_make(tiny *t, uint32_t dim, uint32_t h1, uint32_t h2, uint64_t seed,
                      double *wd, double *pd, double *qd)
{
    t->dim = dim;
    t->h1 = h1;
    t->h2 = h2;
    t->nw = br_model_mlp_len(dim, h1, h2);
    t->w = malloc(t->nw * sizeof *t->w);
    assert_non_null(t->w);
    br_rng g;
    br_rng_seed(&g, seed);
    for (int tries = 0;; tries++) {
        assert_true(tries < 1000);
        for (size_t i = 0; i < t->nw; i++)
            wd[i] = t->w[i] = (float)(br_rng_uniform(&g) * 1.6 - 0.8);
        for (uint32_t i = 0; i < dim; i++) {
            pd[i] = t->p[i] = (float)(br_rng_uniform(&g) * 2 - 1);
            qd[i] = t->q[i] = (float)(br_rng_uniform(&g) * 2 - 1);
        }
        if (kink_margin(t, wd, pd, qd) > 0.05)
            break;
    }
}

static void test_forward_reference(void **state)
{
    (void)state;
    static const uint32_t shapes[][3] = {{3, 5, 4}, {1, 1, 1}, {7, 13, 9}, {5, 16, 8}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        tiny t;
        double wd[4096], pd[8], qd[8], z1[64], z2[64];
        tiny_make(&t, shapes[s][0], shapes[s][1], shapes[s][2], 11 + s, wd, pd, qd);
        float work[512];
        assert_true(br_mlp_work_len(t.h1, t.h2) <= 512);
        float y = br_mlp_forward(t.w, t.dim, t.h1, t.h2, t.p, t.q, work);
        double yr = ref_forward(&t, wd, pd, qd, z1, z2);
        assert_true(fabs(y - yr) <= 1e-5 * (1 + fabs(yr)));
        free(t.w);
    }
}

/* Every analytic gradient against a central difference of the reference. */
static void test_gradient_check(void **state)
{
    (void)state;
    static const uint32_t shapes[][3] = {{3, 5, 4}, {2, 9, 3}, {4, 11, 7}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        tiny t;
        double wd[4096], pd[8], qd[8], z1[64], z2[64];
        tiny_make(&t, shapes[s][0], shapes[s][1], shapes[s][2], 100 + s, wd, pd, qd);
        float work[512], gp[8], gq[8];
        float *gw = calloc(t.nw, sizeof *gw);
        assert_non_null(gw);
        /* dL/dy = 1.5: the gradients are those of 1.5 y. */
        br_mlp_forward(t.w, t.dim, t.h1, t.h2, t.p, t.q, work);
        br_mlp_backward(t.w, t.dim, t.h1, t.h2, t.p, t.q, work, 1.5f, gw, gp, gq);
        const double h = 1e-5, dy = 1.5;
        size_t checked = 0;
        for (size_t i = 0; i < t.nw + 2 * t.dim; i++) {
            double *x = i < t.nw ? &wd[i] : i < t.nw + t.dim ? &pd[i - t.nw]
                                                               : &qd[i - t.nw - t.dim];
            double keep = *x;
            *x = keep + h;
            double yp = ref_forward(&t, wd, pd, qd, z1, z2);
            *x = keep - h;
            double ym = ref_forward(&t, wd, pd, qd, z1, z2);
            *x = keep;
            double num = dy * (yp - ym) / (2 * h);
            double ana = i < t.nw ? gw[i] : i < t.nw + t.dim ? gp[i - t.nw]
                                                              : gq[i - t.nw - t.dim];
            if (fabs(num - ana) > 1e-3 * (1 + fabs(num))) {
                print_error("shape %zu, parameter %zu: analytic %.7g, numeric %.7g\n", s, i,
                            ana, num);
                fail();
            }
            checked++;
        }
        assert_int_equal(checked, t.nw + 2 * t.dim);
        /* The output bias's gradient is dy itself. */
        assert_true(gw[t.nw - 1] == 1.5f);
        free(gw);
        free(t.w);
    }
}

/* ---- planted data ------------------------------------------------------------ */

typedef struct planted {
    br_ratings *r;
    uint8_t *fold;
    uint32_t *idx;
    size_t n_train;
    float mean;
} planted;

static planted g_pl;

static int setup_planted(void **state)
{
    (void)state;
    br_gen_params gp;
    br_gen_defaults(&gp);
    gp.n_users = 600;
    gp.n_books = 200;
    gp.n_ratings = 48000;
    gp.rank = 4;
    gp.noise = 0.3f;
    gp.seed = 5;
    uint32_t *u, *b;
    float *v;
    br_diag d;
    br_diag_clear(&d);
    if (br_gen_memory(&gp, &u, &b, &v, &d) != BR_OK)
        return -1;
    br_err e = br_ratings_build(u, b, v, (size_t)gp.n_ratings, &g_pl.r, &d);
    free(u);
    free(b);
    free(v);
    if (e)
        return -1;
    g_pl.fold = calloc(g_pl.r->n, 1);
    g_pl.idx = malloc(g_pl.r->n * sizeof *g_pl.idx);
    if (!g_pl.fold || !g_pl.idx)
        return -1;
    if (br_split_random(g_pl.r, 0.2, 3, g_pl.fold, BR_FOLD_TEST) != BR_OK)
        return -1;
    double s = 0;
    for (size_t i = 0; i < g_pl.r->n; i++)
        if (g_pl.fold[i] == BR_FOLD_TRAIN) {
            g_pl.idx[g_pl.n_train++] = (uint32_t)i;
            s += g_pl.r->rating[i];
        }
    g_pl.mean = (float)(s / (double)g_pl.n_train);
    return 0;
}

static int teardown_planted(void **state)
{
    (void)state;
    br_ratings_free(g_pl.r);
    free(g_pl.fold);
    free(g_pl.idx);
    memset(&g_pl, 0, sizeof g_pl);
    return 0;
}

static void small_opts(br_mlp_opts *o)
{
    br_mlp_defaults(o);
    o->dim = 8;
    o->h1 = 32;
    o->h2 = 16;
    o->lr = 0.003f;
    o->lr_decay = 0.9f;
    o->reg = 0.02f;
    o->batch = 32;
}

static br_mlp *train(const br_mlp_opts *o, uint32_t epochs)
{
    br_mlp *t = NULL;
    br_diag d;
    br_diag_clear(&d);
    must(br_mlp_create(o, g_pl.r->n_users, g_pl.r->n_books, g_pl.mean, &t, &d), &d,
         "br_mlp_create");
    br_train_data td = {.r = g_pl.r, .idx = g_pl.idx, .n = g_pl.n_train};
    double prev = INFINITY;
    for (uint32_t ep = 0; ep < epochs; ep++) {
        double loss;
        must(br_mlp_epoch(t, &td, ep, &loss, &d), &d, "br_mlp_epoch");
        assert_true(isfinite(loss));
        if (o->threads == 1 && ep >= 1)
            assert_true(loss < prev);   /* the training loss falls */
        prev = loss;
    }
    return t;
}

static double baseline_rmse(void)
{
    double se = 0;
    size_t c = 0;
    for (size_t i = 0; i < g_pl.r->n; i++)
        if (g_pl.fold[i] == BR_FOLD_TEST) {
            double e = g_pl.r->rating[i] - g_pl.mean;
            se += e * e;
            c++;
        }
    return sqrt(se / (double)c);
}

static void test_learns_planted(void **state)
{
    (void)state;
    double base = baseline_rmse();
    for (int threads = 1; threads <= 2; threads++) {
        br_mlp_opts o;
        small_opts(&o);
        o.threads = threads;
        br_mlp *t = train(&o, 8);
        double rmse, mae;
        size_t c;
        br_mlp_eval_rmse(t, g_pl.r, g_pl.fold, BR_FOLD_TEST, &rmse, &mae, &c);
        print_message("mlp, %d thread(s): test RMSE %.4f (global mean %.4f)\n", threads, rmse,
                      base);
        assert_true(c > 0);
        assert_true(mae <= rmse);
        assert_true(rmse < base - 0.15);
        /* br_mlp_predict is the clamped score; eval agrees with it */
        double se = 0;
        for (size_t i = 0; i < g_pl.r->n; i++)
            if (g_pl.fold[i] == BR_FOLD_TEST) {
                double e = g_pl.r->rating[i] - br_mlp_predict(t, g_pl.r->user[i], g_pl.r->book[i]);
                se += e * e;
            }
        assert_true(fabs(sqrt(se / (double)c) - rmse) < 1e-9);
        br_mlp_free(t);
    }
}

static int params_equal(const br_mlp *a, const br_mlp *b)
{
    const br_mlp_opts *o = br_mlp_get_opts(a);
    size_t st = br_model_stride(o->dim);
    return memcmp(br_mlp_user_vecs(a), br_mlp_user_vecs(b),
                  g_pl.r->n_users * st * sizeof(float)) == 0 &&
           memcmp(br_mlp_book_vecs(a), br_mlp_book_vecs(b),
                  g_pl.r->n_books * st * sizeof(float)) == 0 &&
           memcmp(br_mlp_weights(a), br_mlp_weights(b),
                  br_model_mlp_len(o->dim, o->h1, o->h2) * sizeof(float)) == 0;
}

static void test_deterministic(void **state)
{
    (void)state;
    br_mlp_opts o;
    small_opts(&o);
    o.threads = 1;
    for (int optim = 0; optim < 2; optim++) {
        o.optim = optim ? BR_OPTIM_SGD : BR_OPTIM_ADAM;
        if (optim)
            o.lr = 0.01f;
        br_mlp *a = train(&o, 2), *b = train(&o, 2);
        assert_true(params_equal(a, b));
        o.seed = 43;
        br_mlp *c = train(&o, 2);
        assert_false(params_equal(a, c));
        o.seed = 42;
        br_mlp_free(a);
        br_mlp_free(b);
        br_mlp_free(c);
    }
}

static void test_snapshot_restore(void **state)
{
    (void)state;
    br_mlp_opts o;
    small_opts(&o);
    br_mlp *a = train(&o, 1), *b = train(&o, 1);
    assert_int_equal(br_mlp_snapshot(a), BR_OK);
    br_train_data td = {.r = g_pl.r, .idx = g_pl.idx, .n = g_pl.n_train};
    double loss;
    assert_int_equal(br_mlp_epoch(a, &td, 1, &loss, NULL), BR_OK);
    assert_false(params_equal(a, b));
    br_mlp_restore(a);
    assert_true(params_equal(a, b));
    br_mlp_free(a);
    br_mlp_free(b);
}

/* Written, reopened and served by br_rec: the same scores as the trainer. */
static void test_served_like_trained(void **state)
{
    (void)state;
    br_mlp_opts o;
    small_opts(&o);
    o.dim = 5;   /* a stride with padding */
    br_mlp *t = train(&o, 2);
    const br_ratings *r = g_pl.r;
    br_model_data md;
    memset(&md, 0, sizeof md);
    md.meta.loss = BR_LOSS_MSE;
    md.meta.optim = BR_OPTIM_ADAM;
    md.meta.n_users = r->n_users;
    md.meta.n_books = r->n_books;
    md.meta.created_unix = 1;
    md.meta.test_rmse = NAN;
    md.meta.test_mae = NAN;
    md.user_ids = r->user_ids;
    md.book_ids = r->book_ids;
    md.read_ptr = r->user_ptr;
    md.read_idx = r->book;
    br_mlp_model_data(t, &md);
    assert_int_equal(md.meta.kind, BR_MODEL_MLP);
    void *buf;
    size_t len;
    br_model *m = NULL;
    br_rec *rec = NULL;
    br_rec_scratch *sc = NULL;
    br_diag d;
    br_diag_clear(&d);
    must(br_model_save_buffer(&md, &buf, &len, &d), &d, "save");
    must(br_model_open_buffer(buf, len, &m, &d), &d, "open");
    must(br_rec_create(m, &rec, &d), &d, "br_rec_create");
    must(br_rec_scratch_create(rec, &sc, &d), &d, "scratch");

    /* predictions: every (user, book) of the test fold */
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (g_pl.fold[i] != BR_FOLD_TEST)
            continue;
        float v;
        must(br_rec_predict(rec, r->user_ids[r->user[i]], r->book_ids[r->book[i]], &v, &d), &d,
             "predict");
        float want = br_mlp_predict(t, r->user[i], r->book[i]);
        assert_true(fabsf(v - want) <= 1e-5f);
        n++;
    }
    assert_true(n > 1000);

    /* top-k: the scores are the trainer's unclamped outputs, best first, and
     * no book the user rated comes back */
    br_rec_item items[20];
    for (uint32_t u = 0; u < r->n_users; u += 37) {
        size_t got, unread = r->n_books - (size_t)(r->user_ptr[u + 1] - r->user_ptr[u]);
        must(br_rec_user(rec, sc, r->user_ids[u], 20, 0, items, &got, &d), &d, "br_rec_user");
        assert_int_equal(got, unread < 20 ? unread : 20);
        for (size_t j = 0; j < got; j++) {
            float want = br_mlp_score(t, u, items[j].book);
            assert_true(fabsf(items[j].score - want) <= 1e-5f);
            if (j)
                assert_true(items[j - 1].score >= items[j].score);
            for (uint64_t k = r->user_ptr[u]; k < r->user_ptr[u + 1]; k++)
                assert_int_not_equal(r->book[k], items[j].book);
        }
        /* the best unread book really is the best: check against all scores */
        float best = -INFINITY;
        for (uint32_t b = 0; b < r->n_books; b++) {
            int read = 0;
            for (uint64_t k = r->user_ptr[u]; k < r->user_ptr[u + 1]; k++)
                read |= r->book[k] == b;
            if (!read)
                best = fmaxf(best, br_mlp_score(t, u, b));
        }
        if (got)
            assert_true(fabsf(items[0].score - best) <= 1e-5f);
    }

    /* fold-in is refused, clearly */
    uint32_t ids[2] = {r->book_ids[0], r->book_ids[1]};
    float vec[64], bias;
    size_t got;
    assert_int_equal(br_rec_foldin(rec, sc, ids, NULL, 2, vec, &bias, &d), BR_ERR_UNSUPPORTED);
    assert_non_null(strstr(d.msg, "not supported for mlp models"));
    assert_int_equal(br_rec_reader(rec, sc, ids, NULL, 2, 5, 0, items, &got, &d),
                     BR_ERR_UNSUPPORTED);
    /* similar books still work (embedding cosine) */
    must(br_rec_similar(rec, sc, r->book_ids[0], 5, items, &got, &d), &d, "similar");
    assert_int_equal(got, 5);

    br_rec_scratch_free(sc);
    br_rec_free(rec);
    br_model_free(m);
    free(buf);
    br_mlp_free(t);
}

static void test_bad_options(void **state)
{
    (void)state;
    br_mlp_opts o;
    br_mlp *t = (br_mlp *)1;
    br_diag d;
    small_opts(&o);
    o.dim = 0;
    assert_int_equal(br_mlp_create(&o, 3, 3, 3.0f, &t, &d), BR_ERR_ARG);
    assert_null(t);
    small_opts(&o);
    o.h2 = 0;
    assert_int_equal(br_mlp_create(&o, 3, 3, 3.0f, &t, &d), BR_ERR_ARG);
    small_opts(&o);
    o.batch = 0;
    assert_int_equal(br_mlp_create(&o, 3, 3, 3.0f, &t, &d), BR_ERR_ARG);
    small_opts(&o);
    o.lr = NAN;
    assert_int_equal(br_mlp_create(&o, 3, 3, 3.0f, &t, &d), BR_ERR_ARG);
    small_opts(&o);
    assert_int_equal(br_mlp_create(&o, 0, 3, 3.0f, &t, &d), BR_ERR_EMPTY);
    /* an absurd learning rate ends in BR_ERR_NUMERIC, not in garbage */
    small_opts(&o);
    o.optim = BR_OPTIM_SGD;
    o.lr = 1e6f;
    must(br_mlp_create(&o, g_pl.r->n_users, g_pl.r->n_books, g_pl.mean, &t, &d), &d, "create");
    br_train_data td = {.r = g_pl.r, .idx = g_pl.idx, .n = g_pl.n_train};
    double loss;
    br_err e = BR_OK;
    for (uint32_t ep = 0; ep < 3 && !e; ep++)
        e = br_mlp_epoch(t, &td, ep, &loss, &d);
    assert_int_equal(e, BR_ERR_NUMERIC);
    br_mlp_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_reference),
        cmocka_unit_test(test_gradient_check),
        cmocka_unit_test(test_learns_planted),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_snapshot_restore),
        cmocka_unit_test(test_served_like_trained),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, setup_planted, teardown_planted);
}
