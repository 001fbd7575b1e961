/*
 * bookrec-train - learns reader and book embeddings from goodbooks-10k
 * ratings, reports held-out figures, and writes one model file.
 *
 * This file only parses options, calls the libraries (common/, trainer/)
 * and talks to the user; see README.md for the flags and the defaults.
 */
#include "br_books.h"
#include "br_data.h"
#include "br_eval.h"
#include "br_io.h"
#include "br_mlp.h"
#include "br_model.h"
#include "br_opt.h"
#include "br_progress.h"
#include "br_ratings.h"
#include "br_train.h"
#ifdef BOOKREC_WITH_MPI
#include "br_dist.h"
#endif

#include <errno.h>
#include <math.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROG "bookrec-train"

typedef struct cli {
    const char *data, *ratings, *books, *tags, *test, *out, *metrics, *to_read;
    const char *model, *loss, *optim, *split;
    int distributed;
    int threads, quiet, verbose, help, version, skip_bad, implicit, no_to_read;
    unsigned dim, epochs, patience, topk, neg;
    float lr, reg, reg_bias, reg_exp, lr_decay, init_std, reg_y;
    double holdout, valid;
    uint64_t seed;
} cli;

static int die(br_err e, const br_diag *d)
{
    return br_error(e == BR_ERR_ARG ? 2 : 1, "%s", br_diag_text(d, e));
}

/* Fails before loading and training, not after: the folder that will hold
 * an output file must exist and be writable. Returns the exit code, 0 if ok. */
static int check_output(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (access(dir, W_OK | X_OK) != 0)
        return br_error(1, "cannot write %s: %s (folder %s)", path, strerror(errno), dir);
    return 0;
}

static int parse_choice(const char *v, const char *const *names, const int *values, int *out)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(v, names[i]) == 0) {
            *out = values[i];
            return 1;
        }
    return 0;
}

/* Marks as TEST every rating whose (user, book) pair is in `test`. */
static size_t mark_test_pairs(const br_ratings *all, const br_ratings *test, uint8_t *fold)
{
    size_t marked = 0;
    for (size_t i = 0; i < all->n; i++) {
        int64_t tu = br_ratings_find_user(test, all->user_ids[all->user[i]]);
        int64_t tb = br_ratings_find_book(test, all->book_ids[all->book[i]]);
        if (tu < 0 || tb < 0)
            continue;
        for (uint64_t j = test->user_ptr[tu]; j < test->user_ptr[tu + 1]; j++)
            if (test->book[j] == (uint32_t)tb) {
                fold[i] = BR_FOLD_TEST;
                marked++;
                break;
            }
    }
    return marked;
}

/* Loads training ratings, and the explicit test file if any, into one set. */
static br_err load_ratings(const cli *c, const char *path, br_ratings **out, uint8_t **fold,
                           size_t *n_test_rows, br_diag *d)
{
    br_load_opts lo = {.skip_bad = c->skip_bad};
    br_ratings *tr = NULL, *te = NULL;
    br_err e = br_ratings_load(path, &lo, &tr, d);
    if (e)
        return e;
    if (tr->skipped)
        br_say("warning: skipped %zu malformed rows of %s (first at line %zu: %s)\n", tr->skipped,
            path, tr->first_bad_line, tr->first_bad);
    if (!c->test) {
        *out = tr;
        *fold = calloc(tr->n, 1);
        if (!*fold) {
            br_ratings_free(tr);
            return br_fail(d, BR_ERR_NOMEM, "out of memory");
        }
        return BR_OK;
    }
    e = br_ratings_load(c->test, &lo, &te, d);
    if (e) {
        br_ratings_free(tr);
        return e;
    }
    /* Union of both, then mark the pairs the test file holds. */
    size_t n = tr->n + te->n;
    uint32_t *u = malloc(n * sizeof *u), *b = malloc(n * sizeof *b);
    float *v = malloc(n * sizeof *v);
    br_ratings *all = NULL;
    e = BR_ERR_NOMEM;
    if (u && b && v) {
        const br_ratings *parts[2] = {tr, te};
        size_t k = 0;
        for (int p = 0; p < 2; p++)
            for (size_t i = 0; i < parts[p]->n; i++, k++) {
                u[k] = parts[p]->user_ids[parts[p]->user[i]];
                b[k] = parts[p]->book_ids[parts[p]->book[i]];
                v[k] = parts[p]->rating[i];
            }
        e = br_ratings_build(u, b, v, n, &all, d);
    } else {
        br_fail(d, e, "out of memory");
    }
    free(u);
    free(b);
    free(v);
    if (!e) {
        *fold = calloc(all->n, 1);
        if (!*fold) {
            e = br_fail(d, BR_ERR_NOMEM, "out of memory");
        } else {
            *n_test_rows = mark_test_pairs(all, te, *fold);
            all->rows = tr->rows + te->rows;
            all->dup_rows = tr->dup_rows + te->dup_rows;
            all->dup_pairs = tr->dup_pairs + te->dup_pairs;
            all->user_first = tr->user_first;
        }
    }
    br_ratings_free(tr);
    br_ratings_free(te);
    if (e) {
        br_ratings_free(all);
        return e;
    }
    *out = all;
    return BR_OK;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* N(u) for the SVD++ term: the books of the user's training ratings plus the
 * extra (to-read) pairs, sorted and without repeats. */
static br_err build_implicit_sets(const br_ratings *r, const uint32_t *idx, size_t n,
                                  const uint32_t *xu, const uint32_t *xb, size_t nx,
                                  br_csr *out, br_diag *d)
{
    memset(out, 0, sizeof *out);
    out->n_rows = r->n_users;
    out->ptr = calloc((size_t)r->n_users + 1, sizeof *out->ptr);
    out->col = malloc((n + nx ? n + nx : 1) * sizeof *out->col);
    uint64_t *pos = malloc(((size_t)r->n_users + 1) * sizeof *pos);
    if (!out->ptr || !out->col || !pos) {
        free(pos);
        br_csr_free(out);
        return br_fail(d, BR_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        out->ptr[r->user[idx[i]] + 1]++;
    for (size_t i = 0; i < nx; i++)
        out->ptr[xu[i] + 1]++;
    for (uint32_t u = 0; u < r->n_users; u++)
        out->ptr[u + 1] += out->ptr[u];
    memcpy(pos, out->ptr, ((size_t)r->n_users + 1) * sizeof *pos);
    for (size_t i = 0; i < n; i++)
        out->col[pos[r->user[idx[i]]]++] = r->book[idx[i]];
    for (size_t i = 0; i < nx; i++)
        out->col[pos[xu[i]]++] = xb[i];
    free(pos);
    /* sort and unique each row, compacting in place */
    uint64_t w = 0;
    for (uint32_t u = 0; u < r->n_users; u++) {
        uint64_t a = out->ptr[u], b = out->ptr[u + 1];
        qsort(out->col + a, (size_t)(b - a), sizeof *out->col, cmp_u32);
        out->ptr[u] = w;
        for (uint64_t k = a; k < b; k++)
            if (k == a || out->col[k] != out->col[k - 1])
                out->col[w++] = out->col[k];
    }
    out->ptr[r->n_users] = w;
    out->nnz = w;
    return BR_OK;
}

static void json_metrics(FILE *f, const char *name, const br_rank_metrics *m, int last)
{
    fprintf(f,
            "    \"%s\": {\"k\": %u, \"users\": %zu, \"recall\": %.6f, \"ndcg\": %.6f, "
            "\"hr\": %.6f, \"map\": %.6f, \"coverage\": %.6f}%s\n",
            name, m->k, m->users, m->recall, m->ndcg, m->hr, m->map, m->coverage,
            last ? "" : ",");
}

static void json_num(FILE *f, const char *key, double v, int comma)
{
    if (isfinite(v))
        fprintf(f, "  \"%s\": %.6g%s\n", key, v, comma ? "," : "");
    else
        fprintf(f, "  \"%s\": null%s\n", key, comma ? "," : "");
}

/* --model mlp (br_mlp.h): its own epoch loop, figures and model file. The
 * options the other models use keep their meaning where they apply (--dim,
 * --epochs, --lr, --lr-decay, --reg, --init-std, --seed, -j, --patience);
 * the MLP always trains with Adam. Ranking figures are not computed:
 * scoring every book for every test reader through the network is too slow
 * to be worth it here. Returns BR_OK or the error (detail in d). */
static br_err train_mlp(const cli *c, const br_ratings *r, const uint8_t *fold,
                        const uint32_t *idx, size_t n_train, size_t n_test, int early,
                        float mean, const br_books *books, double t0, br_diag *d)
{
    br_mlp_opts mo;
    br_mlp_defaults(&mo);
    if (c->dim)
        mo.dim = c->dim;
    if (c->epochs)
        mo.epochs = c->epochs;
    if (!isnan(c->lr))
        mo.lr = c->lr;
    if (!isnan(c->lr_decay))
        mo.lr_decay = c->lr_decay;
    if (!isnan(c->reg))
        mo.reg = c->reg;
    if (!isnan(c->init_std))
        mo.init_std = c->init_std;
    mo.seed = c->seed;
    mo.threads = c->threads;
    br_mlp *t = NULL;
    br_err e = br_mlp_create(&mo, r->n_users, r->n_books, mean, &t, d);
    if (e)
        return e;
    br_say("training mlp model (dim %u, dense %u -> %u -> 1, ReLU), mse loss, adam, up to %u "
        "epochs, %d thread%s\n", mo.dim, mo.h1, mo.h2, mo.epochs, mo.threads,
        mo.threads == 1 ? "" : "s");
    br_train_data td = {.r = r, .idx = idx, .n = n_train};
    double best = INFINITY, train_time = 0, loss_v = 0, test_rmse = NAN, test_mae = NAN;
    uint32_t best_epoch = 0, since = 0, ran = 0;
    int tty = br_isatty(stderr);
    for (uint32_t ep = 0; ep < mo.epochs && !e; ep++) {
        double te0 = br_now();
        e = br_mlp_epoch(t, &td, ep, &loss_v, d);
        double dt = br_now() - te0;
        train_time += dt;
        ran = ep + 1;
        if (e)
            break;
        double rm = NAN, ma = NAN, vm = NAN, vmae;
        if (n_test)
            br_mlp_eval_rmse(t, r, fold, BR_FOLD_TEST, &rm, &ma, NULL);
        if (early)
            br_mlp_eval_rmse(t, r, fold, BR_FOLD_VALID, &vm, &vmae, NULL);
        char el[32], et[32], line[256];
        int n = snprintf(line, sizeof line, "epoch %3u/%u  loss %.4f", ran, mo.epochs, loss_v);
        if (isfinite(rm))
            n += snprintf(line + n, sizeof line - (size_t)n, "  test RMSE %.4f MAE %.4f", rm, ma);
        if (early)
            n += snprintf(line + n, sizeof line - (size_t)n, "  valid RMSE %.4f", vm);
        snprintf(line + n, sizeof line - (size_t)n, "  %.2f M ratings/s  epoch %s  elapsed %s",
                 n_train / dt / 1e6, br_fmt_duration(dt, et, sizeof et),
                 br_fmt_duration(br_now() - t0, el, sizeof el));
        br_say("%s%s", line, tty && !c->verbose ? "\033[K\r" : "\n");
        if (!early) {
            best_epoch = ran;
            test_rmse = rm;
            test_mae = ma;
        } else if (vm < best - 1e-5) {
            best = vm;
            best_epoch = ran;
            since = 0;
            test_rmse = rm;
            test_mae = ma;
            if (br_mlp_snapshot(t) != BR_OK)
                e = br_fail(d, BR_ERR_NOMEM, "out of memory");
        } else if (++since >= c->patience) {
            break;
        }
    }
    if (tty && !c->verbose)
        br_say("\n");
    if (!e && early && best_epoch && best_epoch != ran) {
        br_mlp_restore(t);
        br_say("early stop: kept epoch %u (validation RMSE %.4f)\n", best_epoch, best);
    }
    char b1[32], tb[32];
    if (!e && isfinite(test_rmse))
        br_say("test RMSE %.4f  MAE %.4f  (%s held-out ratings)\n", test_rmse, test_mae,
            br_fmt_count(n_test, b1, sizeof b1));
    if (!e) {
        br_model_data md;
        memset(&md, 0, sizeof md);
        md.meta.loss = BR_LOSS_MSE;
        md.meta.optim = BR_OPTIM_ADAM;
        md.meta.n_users = r->n_users;
        md.meta.n_books = r->n_books;
        md.meta.epochs = best_epoch;
        md.meta.seed = c->seed;
        md.meta.n_train = n_train;
        md.meta.data_fingerprint = r->fingerprint;
        md.meta.created_unix = (int64_t)time(NULL);
        md.meta.lr = mo.lr;
        md.meta.reg = mo.reg;
        md.meta.test_rmse = (float)test_rmse;
        md.meta.test_mae = (float)test_mae;
        br_mlp_model_data(t, &md);
        md.user_ids = r->user_ids;
        md.book_ids = r->book_ids;
        md.read_ptr = r->user_ptr;
        md.read_idx = r->book;
        md.books = books;
        e = br_model_save(&md, c->out, d);
        if (!e)
            br_say("wrote %s (%s total)\n", c->out, br_fmt_duration(br_now() - t0, tb, sizeof tb));
    }
    if (!e && c->metrics) {
        br_atomic *a = NULL;
        e = br_atomic_open(c->metrics, &a, d);
        if (!e) {
            FILE *f = br_atomic_file(a);
            fprintf(f, "{\n  \"model\": \"mlp\", \"loss\": \"mse\", \"optim\": \"adam\",\n");
            fprintf(f, "  \"dim\": %u, \"h1\": %u, \"h2\": %u, \"epochs_run\": %u, "
                    "\"best_epoch\": %u, \"threads\": %d,\n", mo.dim, mo.h1, mo.h2, ran,
                    best_epoch, mo.threads);
            fprintf(f, "  \"lr\": %g, \"reg\": %g, \"lr_decay\": %g, \"seed\": %llu,\n", mo.lr,
                    mo.reg, mo.lr_decay, (unsigned long long)c->seed);
            fprintf(f, "  \"ratings\": %zu, \"users\": %u, \"books\": %u, \"train\": %zu, "
                    "\"test\": %zu,\n", r->n, r->n_users, r->n_books, n_train, n_test);
            json_num(f, "test_rmse", test_rmse, 1);
            json_num(f, "test_mae", test_mae, 1);
            json_num(f, "final_train_loss", loss_v, 1);
            json_num(f, "train_seconds", train_time, 1);
            json_num(f, "total_seconds", br_now() - t0, 0);
            fprintf(f, "}\n");
            e = br_atomic_commit(a, d);
        }
    }
    br_mlp_free(t);
    return e;
}

/* --distributed: the DSGD trainer over MPI ranks (br_dist.h); rank 0 talks.
 * Returns the exit code. */
static int run_distributed(int *argc, char ***argv, const cli *c, const br_train_opts *to,
                           const char *rpath, const char *bpath)
{
#ifndef BOOKREC_WITH_MPI
    (void)argc, (void)argv, (void)c, (void)to, (void)rpath, (void)bpath;
    return br_error(2, "--distributed: this bookrec-train was built without MPI "
                       "(install libopenmpi-dev and rebuild with -DBOOKREC_WITH_MPI=ON)");
#else
    br_diag d;
    br_diag_clear(&d);
    int rank = 0, nranks = 1;
    br_err e = br_dist_start(argc, argv, &rank, &nranks, &d);
    if (e)
        return die(e, &d);
    if (rank != 0)
        br_cli_quiet(1);
    br_dist_opts o = {.train = *to, .ratings = rpath, .load = {.skip_bad = c->skip_bad},
                      .holdout = c->holdout};
    br_dist *t = NULL;
    double t0 = br_now();
    e = br_dist_create(&o, &t, &d);
    if (e) {   /* agreed by every rank: rank 0 reports */
        br_dist_stop();
        return rank == 0 ? die(e, &d) : 1;
    }
    br_dist_info in;
    br_dist_get_info(t, &in);
    char b1[32], b2[32], b3[32], b4[32], b5[32], tb[32];
    br_say("distributed over %d rank%s (-j %d each): %s ratings, %s users, %s books; "
           "%s to %s ratings per rank; loaded in %s\n", nranks, nranks == 1 ? "" : "s",
           to->threads, br_fmt_count(in.n_ratings, b1, sizeof b1),
           br_fmt_count(in.n_users, b2, sizeof b2), br_fmt_count(in.n_books, b3, sizeof b3),
           br_fmt_count(in.min_local, b4, sizeof b4), br_fmt_count(in.max_local, b5, sizeof b5),
           br_fmt_duration(in.load_seconds, tb, sizeof tb));
    br_say("split (hash, seed %llu): %s train, %s test; training %s model, mse, sgd, dim %u, "
           "%u epochs\n", (unsigned long long)to->seed, br_fmt_count(in.n_train, b1, sizeof b1),
           br_fmt_count(in.n_test, b2, sizeof b2), c->model, to->dim, to->epochs);
    br_dist_stats st = {0};
    double train_s = 0, comm_s = 0, eval_s = 0, cpu_s = 0;
    uint64_t train_b = 0, eval_b = 0, save_b = 0;
    for (uint32_t ep = 0; ep < to->epochs && !e; ep++) {
        e = br_dist_epoch(t, ep, &st, &d);
        if (e)
            break;
        train_s += st.train_seconds;
        comm_s += st.comm_seconds;
        eval_s += st.eval_seconds;
        cpu_s += st.train_cpu_seconds;
        train_b += st.train_bytes;
        eval_b += st.eval_bytes;
        char tst[64] = "";
        if (in.n_test)
            snprintf(tst, sizeof tst, "  test RMSE %.4f MAE %.4f", st.test_rmse, st.test_mae);
        br_say("epoch %3u/%u  loss %.4f%s  train %.3f s (comm %.3f s, %.1f M ratings/s, "
               "%.3f CPU s)  eval %.3f s  sent %.2f MB + %.2f MB\n", ep + 1, to->epochs,
               st.loss, tst, st.train_seconds, st.comm_seconds,
               in.n_train / st.train_seconds / 1e6, st.train_cpu_seconds, st.eval_seconds,
               st.train_bytes / 1e6, st.eval_bytes / 1e6);
    }
    if (!e) {
        if (isfinite(st.test_rmse))
            br_say("test RMSE %.4f  MAE %.4f  (%s held-out ratings)\n", st.test_rmse,
                   st.test_mae, br_fmt_count(in.n_test, b1, sizeof b1));
        e = br_dist_save(t, c->out, bpath[0] ? bpath : NULL, to->epochs, (float)st.test_rmse,
                         (float)st.test_mae, &save_b, &d);
    }
    if (!e)
        br_say("wrote %s (%s total; counted bytes: set-up %.2f MB, training %.2f MB, "
               "evaluation %.2f MB, model gather %.2f MB)\n", c->out,
               br_fmt_duration(br_now() - t0, tb, sizeof tb), in.setup_bytes / 1e6,
               train_b / 1e6, eval_b / 1e6, save_b / 1e6);
    if (!e && rank == 0 && c->metrics) {
        br_atomic *a = NULL;
        e = br_atomic_open(c->metrics, &a, &d);
        if (!e) {
            FILE *f = br_atomic_file(a);
            fprintf(f, "{\n  \"distributed\": true, \"ranks\": %d, \"threads\": %d,\n",
                    nranks, to->threads);
            fprintf(f, "  \"model\": \"%s\", \"dim\": %u, \"epochs\": %u, \"seed\": %llu,\n",
                    c->model, to->dim, to->epochs, (unsigned long long)to->seed);
            fprintf(f, "  \"ratings\": %llu, \"users\": %u, \"books\": %u, \"train\": %llu, "
                    "\"test\": %llu,\n", (unsigned long long)in.n_ratings, in.n_users,
                    in.n_books, (unsigned long long)in.n_train, (unsigned long long)in.n_test);
            json_num(f, "test_rmse", st.test_rmse, 1);
            json_num(f, "test_mae", st.test_mae, 1);
            json_num(f, "final_train_loss", st.loss, 1);
            json_num(f, "load_seconds", in.load_seconds, 1);
            json_num(f, "train_seconds", train_s, 1);
            json_num(f, "comm_seconds", comm_s, 1);
            json_num(f, "train_cpu_seconds", cpu_s, 1);
            json_num(f, "eval_seconds", eval_s, 1);
            json_num(f, "setup_bytes", (double)in.setup_bytes, 1);
            json_num(f, "train_bytes", (double)train_b, 1);
            json_num(f, "eval_bytes", (double)eval_b, 1);
            json_num(f, "save_bytes", (double)save_b, 1);
            json_num(f, "total_seconds", br_now() - t0, 0);
            fprintf(f, "}\n");
            e = br_atomic_commit(a, &d);
            if (e) {   /* only rank 0 writes: nobody else can wait on this */
                br_error(1, "%s", br_diag_text(&d, e));
                br_dist_abort(1);
            }
        }
    }
    br_dist_free(t);
    br_dist_stop();
    if (e)
        return rank == 0 ? die(e, &d) : 1;
    return 0;
#endif
}

/* A call on a thread of its own: the genres (book_tags.csv + tags.csv, as
 * much parsing as the ratings) load beside the training, and the model file
 * is written beside the ranking figures. bg_start runs fn(ctx) there (at
 * once when no thread is to be had); bg_join waits for it and returns its
 * result, and may be called again. */
typedef struct bg_job {
    br_err (*fn)(void *ctx, br_diag *d);
    void *ctx;
    pthread_t thread;
    int running;
    br_err e;
    br_diag d;
} bg_job;

static void *bg_main(void *arg)
{
    bg_job *j = arg;
    j->e = j->fn(j->ctx, &j->d);
    return NULL;
}

static void bg_start(bg_job *j, br_err (*fn)(void *, br_diag *), void *ctx)
{
    memset(j, 0, sizeof *j);
    j->fn = fn;
    j->ctx = ctx;
    if (pthread_create(&j->thread, NULL, bg_main, j) == 0)
        j->running = 1;
    else
        bg_main(j);
}

static br_err bg_join(bg_job *j)
{
    if (j->running) {
        pthread_join(j->thread, NULL);
        j->running = 0;
    }
    return j->e;
}

typedef struct tags_args {
    br_books *books;
    const char *bt, *tn;
} tags_args;

static br_err tags_call(void *ctx, br_diag *d)
{
    const tags_args *a = ctx;
    return a->books && a->bt[0] ? br_books_load_tags(a->books, a->bt, a->tn, d) : BR_OK;
}

/* The genres' result: a failure costs them only (a warning, once). */
static void tags_join(bg_job *j)
{
    br_err e = bg_join(j);
    if (e) {
        br_say("warning: no genres: %s\n", br_diag_text(&j->d, e));
        j->e = BR_OK;
    }
}

typedef struct save_args {
    const br_model_data *md;
    const char *path;
} save_args;

static br_err save_call(void *ctx, br_diag *d)
{
    const save_args *a = ctx;
    return br_model_save(a->md, a->path, d);
}

int main(int argc, char **argv)
{
    br_cli_init(PROG);
    cli c = {0};
    c.threads = omp_get_num_procs();
    c.out = "bookrec.model";
    c.model = "biased";
    c.loss = NULL;   /* bpr, or mse for --model autorec */
    c.optim = "sgd";
    c.split = "random";
    c.holdout = 0.2;
    c.valid = 0.05;
    c.topk = 10;
    c.seed = 42;
    c.patience = 0;   /* early stopping is opt-in: measured better without (README) */
    /* Sentinels: 0 / NaN mean "the default for the chosen model". */
    c.lr = c.reg = c.reg_bias = c.reg_exp = c.lr_decay = c.init_std = c.reg_y = NAN;

    const br_opt opts[] = {
        {0, NULL, BR_OPT_GROUP, NULL, NULL, "Input:"},
        {0, "data", BR_OPT_STR, &c.data, "DIR", "goodbooks-10k folder (else $BOOKREC_DATA, ./data, ../shared/data/goodbooks-10k)"},
        {0, "ratings", BR_OPT_STR, &c.ratings, "FILE", "ratings CSV (.csv or .csv.gz) instead of DIR/ratings.csv.gz"},
        {0, "books", BR_OPT_STR, &c.books, "FILE", "books.csv for titles (default: DIR/books.csv if present)"},
        {0, "tags", BR_OPT_STR, &c.tags, "FILE", "book_tags.csv(.gz) for genres (tags.csv beside it)"},
        {0, "to-read", BR_OPT_STR, &c.to_read, "FILE", "to_read.csv(.gz) pairs as extra positives for --loss bpr (off by default: measured worse)"},
        {0, "test", BR_OPT_STR, &c.test, "FILE", "explicit held-out ratings file (no internal split)"},
        {0, "holdout", BR_OPT_DOUBLE, &c.holdout, "F", "fraction of ratings held out for test figures (default 0.2; 0 = train on all)"},
        {0, "split", BR_OPT_STR, &c.split, "HOW", "random (default: exactly --holdout of the ratings) | hash (of user, book, seed: the split --distributed uses)"},
        {0, "skip-bad", BR_OPT_FLAG, &c.skip_bad, NULL, "skip malformed CSV rows (counted) instead of failing"},
        {0, NULL, BR_OPT_GROUP, NULL, NULL, "Model:"},
        {0, "model", BR_OPT_STR, &c.model, "KIND", "biased (default) | dot | autorec (rating model, see README)"},
        {0, "loss", BR_OPT_STR, &c.loss, "LOSS", "bpr (ranking, default) | mse (rating regression)"},
        {0, "optim", BR_OPT_STR, &c.optim, "OPT", "sgd | adam (default sgd)"},
        {0, "dim", BR_OPT_UINT, &c.dim, "N", "embedding dimension (default 64 for bpr, 256 for mse, 5 for dot+mse as in the seed)"},
        {0, "epochs", BR_OPT_UINT, &c.epochs, "N", "maximum epochs (default 40 for bpr, 18 for mse, 30 for dot)"},
        {0, "lr", BR_OPT_FLOAT, &c.lr, "X", "learning rate"},
        {0, "lr-decay", BR_OPT_FLOAT, &c.lr_decay, "X", "SGD: learning rate multiplier per epoch"},
        {0, "reg", BR_OPT_FLOAT, &c.reg, "X", "L2 regularisation of embeddings"},
        {0, "reg-bias", BR_OPT_FLOAT, &c.reg_bias, "X", "L2 regularisation of biases"},
        {0, "reg-exp", BR_OPT_FLOAT, &c.reg_exp, "A", "mse+sgd: a row's L2 weight is reg x (mean count / its count)^A (default 0.25; 0: the same for all rows)"},
        {0, "init-std", BR_OPT_FLOAT, &c.init_std, "X", "standard deviation of initial embeddings"},
        {0, "implicit", BR_OPT_FLAG, &c.implicit, NULL, "SVD++ term: users also described by the books they rated and want to read"},
        {0, "reg-y", BR_OPT_FLOAT, &c.reg_y, "X", "--implicit: L2 regularisation of the implicit vectors"},
        {0, "no-to-read", BR_OPT_FLAG, &c.no_to_read, NULL, "--implicit without to_read.csv"},
        {0, "neg", BR_OPT_UINT, &c.neg, "N", "BPR: sample N negatives, train on the highest scored"},
        {0, "seed", BR_OPT_U64, &c.seed, "N", "random seed for init, split and order (default 42)"},
        {0, "patience", BR_OPT_UINT, &c.patience, "N", "stop after N epochs without validation gain (default 0: off)"},
        {0, "valid", BR_OPT_DOUBLE, &c.valid, "F", "fraction of training ratings used for early stopping (default 0.05)"},
        {0, "distributed", BR_OPT_FLAG, &c.distributed, NULL, "train over MPI ranks (mpirun -np N bookrec-train --distributed ...): DSGD, --loss mse --optim sgd, dot or biased; -j threads per rank"},
        {0, NULL, BR_OPT_GROUP, NULL, NULL, "Output:"},
        {'o', "output", BR_OPT_STR, &c.out, "FILE", "model file to write (default ./bookrec.model)"},
        {0, "metrics", BR_OPT_STR, &c.metrics, "FILE", "write every figure of the run as JSON"},
        {0, "top", BR_OPT_UINT, &c.topk, "K", "k of the ranking figures (default 10)"},
        {'j', "threads", BR_OPT_INT, &c.threads, "N", "training threads (default: all cores)"},
        {'q', "quiet", BR_OPT_FLAG, &c.quiet, NULL, "no progress output"},
        {'v', "verbose", BR_OPT_FLAG, &c.verbose, NULL, "more detail"},
        {'h', "help", BR_OPT_FLAG, &c.help, NULL, "show this help"},
        {0, "version", BR_OPT_FLAG, &c.version, NULL, "show the version"},
        {0, NULL, 0, NULL, NULL, NULL},
    };
    br_diag d;
    br_diag_clear(&d);
    int npos = 0;
    br_err e = br_opt_parse(opts, argc, argv, &npos, &d);
    if (e)
        return die(e, &d);
    if (c.help) {
        br_opt_usage(stdout, PROG " [options]", opts);
        return 0;
    }
    if (c.version) {
        printf(PROG " %s\n", BOOKREC_VERSION);
        return 0;
    }
    if (npos > 0)
        return br_error(2, "unexpected argument '%s' (see --help)", argv[1]);
    br_cli_quiet(c.quiet);

    enum { KIND_AUTOREC = 100 };   /* trained as AutoRec, written as a biased model */
    static const char *const kinds[] = {"dot", "biased", "mlp", "autorec", NULL};
    static const int kindv[] = {BR_MODEL_DOT, BR_MODEL_BIASED, BR_MODEL_MLP, KIND_AUTOREC};
    static const char *const losses[] = {"mse", "bpr", NULL};
    static const int lossv[] = {BR_LOSS_MSE, BR_LOSS_BPR};
    static const char *const optims[] = {"sgd", "adam", NULL};
    static const int optimv[] = {BR_OPTIM_SGD, BR_OPTIM_ADAM};
    int kind, loss, optim;
    if (!parse_choice(c.model, kinds, kindv, &kind))
        return br_error(2, "--model must be dot, biased or autorec, not '%s'", c.model);
    int autorec = kind == KIND_AUTOREC;
    if (autorec)
        kind = BR_MODEL_BIASED;
    if (!c.loss)
        c.loss = autorec || c.distributed ? "mse" : "bpr";
    if (!parse_choice(c.loss, losses, lossv, &loss))
        return br_error(2, "--loss must be mse or bpr, not '%s'", c.loss);
    if (!parse_choice(c.optim, optims, optimv, &optim))
        return br_error(2, "--optim must be sgd or adam, not '%s'", c.optim);
    if (kind == BR_MODEL_MLP && (loss != BR_LOSS_MSE || c.implicit))
        return br_error(2, "--model mlp trains on ratings: use --loss mse (and no --implicit)");
    if (autorec && (loss != BR_LOSS_MSE || optim != BR_OPTIM_SGD))
        return br_error(2, "--model autorec trains with --loss mse --optim sgd");
    if (c.threads < 1)
        return br_error(2, "-j must be at least 1");
    if (!(c.holdout >= 0 && c.holdout < 1))
        return br_error(2, "--holdout must be in [0, 1), not %g", c.holdout);
    if (!(c.valid >= 0 && c.valid < 1))
        return br_error(2, "--valid must be in [0, 1), not %g", c.valid);
    if (c.topk == 0)
        return br_error(2, "--top must be at least 1");
    if (strcmp(c.split, "random") != 0 && strcmp(c.split, "hash") != 0)
        return br_error(2, "--split must be random or hash, not '%s'", c.split);
    if (c.distributed && (autorec || kind == BR_MODEL_MLP || loss != BR_LOSS_MSE ||
                          optim != BR_OPTIM_SGD || c.implicit || c.test || c.to_read ||
                          c.patience))
        return br_error(2, "--distributed trains --model dot|biased --loss mse --optim sgd "
                           "(no --implicit, --test, --to-read or --patience)");
    int orc = check_output(c.out);
    if (!orc && c.metrics)
        orc = check_output(c.metrics);
    if (orc)
        return orc;

    br_train_opts to;
    br_train_defaults(&to, (br_model_kind)kind, (br_loss_kind)loss, (br_optim_kind)optim);
    if (autorec)
        br_train_defaults_autorec(&to);
    if (c.dim)
        to.dim = c.dim;
    if (c.epochs)
        to.epochs = c.epochs;
    if (!isnan(c.lr))
        to.lr = c.lr;
    if (!isnan(c.reg))
        to.reg = c.reg;
    if (!isnan(c.reg_bias))
        to.reg_bias = c.reg_bias;
    if (!isnan(c.reg_exp))
        to.reg_exp = c.reg_exp;
    if (!isnan(c.lr_decay))
        to.lr_decay = c.lr_decay;
    if (!isnan(c.init_std))
        to.init_std = c.init_std;
    if (c.neg)
        to.neg = c.neg;
    to.implicit = c.implicit;
    if (!isnan(c.reg_y))
        to.reg_y = c.reg_y;
    to.seed = c.seed;
    to.threads = c.threads;

    /* ---- data ---- */
    double t0 = br_now();
    char dir[4096] = "", rpath[4200], bpath[4200] = "", tpath[4200] = "", tnpath[4200] = "";
    if (!c.ratings) {
        e = br_data_find(c.data, dir, sizeof dir, &d);
        if (e)
            return die(e, &d);
        br_data_file(dir, "ratings", rpath, sizeof rpath);
    } else {
        snprintf(rpath, sizeof rpath, "%s", c.ratings);
        if (c.data)
            snprintf(dir, sizeof dir, "%s", c.data);
    }
    if (c.books)
        snprintf(bpath, sizeof bpath, "%s", c.books);
    else if (dir[0] && br_data_file(dir, "books", bpath, sizeof bpath) != BR_OK)
        bpath[0] = '\0';
    if (c.tags) {
        snprintf(tpath, sizeof tpath, "%s", c.tags);
    } else if (dir[0] && br_data_file(dir, "book_tags", tpath, sizeof tpath) != BR_OK) {
        tpath[0] = '\0';
    }
    if (tpath[0]) {
        /* tags.csv lives beside book_tags.csv */
        snprintf(tnpath, sizeof tnpath, "%s", tpath);
        char *slash = strrchr(tnpath, '/');
        size_t base = slash ? (size_t)(slash - tnpath + 1) : 0;
        snprintf(tnpath + base, sizeof tnpath - base, "tags.csv");
        if (!br_file_exists(tnpath)) {
            snprintf(tnpath + base, sizeof tnpath - base, "tags.csv.gz");
            if (!br_file_exists(tnpath))
                tpath[0] = '\0';
        }
    }

    if (c.distributed)
        return run_distributed(&argc, &argv, &c, &to, rpath, bpath);

    /* The ratings and the book list are read at once, each on its own
     * core; the genres then load beside the training (tags_job). */
    br_ratings *r = NULL;
    uint8_t *fold = NULL;
    size_t n_test_rows = 0;
    br_books *books = NULL;
    br_diag db;
    br_diag_clear(&db);
    br_err eb = BR_OK;
    double t_ratings = 0;
#pragma omp parallel sections num_threads(c.threads > 1 ? 2 : 1)
    {
#pragma omp section
        {
            e = load_ratings(&c, rpath, &r, &fold, &n_test_rows, &d);
            t_ratings = br_now() - t0;
        }
#pragma omp section
        if (bpath[0])
            eb = br_books_load(bpath, &books, &db);
    }
    if (e) {
        br_books_free(books);
        return die(e, &d);
    }
    char b1[32], b2[32], b3[32], b4[32], b5[32], tb[32];
    br_say("loaded %s: %s ratings, %s users, %s books (%s duplicate rows merged) in %s\n", rpath,
        br_fmt_count(r->n, b1, sizeof b1), br_fmt_count(r->n_users, b2, sizeof b2),
        br_fmt_count(r->n_books, b3, sizeof b3), br_fmt_count(r->dup_rows, b4, sizeof b4),
        br_fmt_duration(t_ratings, tb, sizeof tb));
    if (eb) {
        br_ratings_free(r);
        free(fold);
        return die(eb, &db);
    }
    tags_args ta = {books, tpath, tnpath};
    bg_job tj;
    bg_start(&tj, tags_call, &ta);

    /* to_read pairs: extra positives for BPR (users and books the ratings know). */
    uint32_t *xu = NULL, *xb = NULL;
    size_t n_extra = 0;
    char trbuf[4200] = "";
    if (c.to_read)
        snprintf(trbuf, sizeof trbuf, "%s", c.to_read);
    else if (c.implicit && !c.no_to_read && dir[0] &&
             br_data_file(dir, "to_read", trbuf, sizeof trbuf) != BR_OK)
        trbuf[0] = '\0';
    if (trbuf[0] && (c.implicit ? !c.no_to_read : loss == BR_LOSS_BPR)) {
        const char *trpath = trbuf;
        {
            br_load_opts io = {.skip_bad = c.skip_bad, .implicit = 1};
            br_ratings *tr_set = NULL;
            e = br_ratings_load(trpath, &io, &tr_set, &d);
            if (e) {
                br_ratings_free(r);
                tags_join(&tj);
                br_books_free(books);
                free(fold);
                return die(e, &d);
            }
            xu = malloc(tr_set->n * sizeof *xu);
            xb = malloc(tr_set->n * sizeof *xb);
            if (xu && xb) {
                for (size_t i = 0; i < tr_set->n; i++) {
                    int64_t u = br_ratings_find_user(r, tr_set->user_ids[tr_set->user[i]]);
                    int64_t b = br_ratings_find_book(r, tr_set->book_ids[tr_set->book[i]]);
                    if (u >= 0 && b >= 0) {
                        xu[n_extra] = (uint32_t)u;
                        xb[n_extra] = (uint32_t)b;
                        n_extra++;
                    }
                }
                br_say("to-read: %s (user, book) pairs from %s\n",
                    br_fmt_count(n_extra, b1, sizeof b1), trpath);
            } else {
                n_extra = 0;
            }
            br_ratings_free(tr_set);
        }
    }

    /* ---- split ---- */
    if (!c.test && c.holdout > 0 && strcmp(c.split, "hash") == 0)
        br_split_hash(r, c.holdout, c.seed, fold, BR_FOLD_TEST);
    else if (!c.test && c.holdout > 0)
        br_split_random(r, c.holdout, c.seed, fold, BR_FOLD_TEST);
    int early = c.patience > 0 && c.valid > 0;
    if (early)
        br_split_random(r, c.valid, c.seed + 1, fold, BR_FOLD_VALID);
    size_t n_train = 0, n_test = 0, n_valid = 0;
    for (size_t i = 0; i < r->n; i++) {
        n_train += fold[i] == BR_FOLD_TRAIN;
        n_test += fold[i] == BR_FOLD_TEST;
        n_valid += fold[i] == BR_FOLD_VALID;
    }
    uint32_t *idx = malloc((n_train ? n_train : 1) * sizeof *idx);
    br_csr known = {0}, test_csr = {0}, nsets = {0}, vseen = {0}, vcsr = {0};
    int rc = 1;
    br_trainer *tr = NULL;
    if (!idx) {
        e = br_fail(&d, BR_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0, k = 0; i < r->n; i++)
        if (fold[i] == BR_FOLD_TRAIN)
            idx[k++] = (uint32_t)i;
    if (n_train == 0) {
        e = br_fail(&d, BR_ERR_EMPTY, "no training ratings left after the split");
        goto done;
    }
    if (c.implicit) {
        e = build_implicit_sets(r, idx, n_train, xu, xb, n_extra, &nsets, &d);
        if (e)
            goto done;
    }
    e = br_csr_by_user_mask(r, fold, BR_FOLD_MASK(BR_FOLD_TRAIN) | BR_FOLD_MASK(BR_FOLD_VALID),
                            &known, &d);
    if (!e)
        e = br_csr_by_user(r, fold, BR_FOLD_TEST, &test_csr, &d);
    if (!e && early && loss == BR_LOSS_BPR) {
        /* Ranking models stop on Recall@k of the validation ratings of one
         * user in four (enough users for a steady figure, cheap per epoch). */
        uint8_t *vf = malloc(r->n);
        if (!vf) {
            e = br_fail(&d, BR_ERR_NOMEM, "out of memory");
        } else {
            for (size_t i = 0; i < r->n; i++)
                vf[i] = fold[i] == BR_FOLD_VALID && r->user[i] % 4 != 0 ? 3 : fold[i];
            e = br_csr_by_user(r, vf, BR_FOLD_VALID, &vcsr, &d);
            if (!e)
                e = br_csr_by_user(r, fold, BR_FOLD_TRAIN, &vseen, &d);
            free(vf);
        }
    }
    if (e)
        goto done;
    br_say("split: %s train, %s validation, %s test (seed %llu)\n",
        br_fmt_count(n_train, b1, sizeof b1), br_fmt_count(n_valid, b2, sizeof b2),
        br_fmt_count(n_test, b3, sizeof b3), (unsigned long long)c.seed);

    /* Mean of the training ratings only. */
    double sum = 0;
    for (size_t i = 0; i < n_train; i++)
        sum += r->rating[idx[i]];
    float mean = (float)(sum / (double)n_train);
    if (kind == BR_MODEL_MLP) {
        tags_join(&tj);
        e = train_mlp(&c, r, fold, idx, n_train, n_test, early, mean, books, t0, &d);
        if (!e)
            rc = 0;
        goto done;
    }

    e = br_trainer_create(&to, r->n_users, r->n_books, mean, &tr, &d);
    if (e)
        goto done;
    br_say("training %s model, %s loss, %s, dim %u, up to %u epochs, %d thread%s\n", c.model,
        c.loss, c.optim, to.dim, to.epochs, to.threads, to.threads == 1 ? "" : "s");

    br_train_data td = {.r = r, .idx = idx, .n = n_train, .pos = &known,
                        .extra_user = xu, .extra_book = xb, .n_extra = n_extra,
                        .implicit_sets = c.implicit ? &nsets : NULL};
    br_params prm;
    double best = INFINITY, train_time = 0, loss_v = 0;
    uint32_t best_epoch = 0, since = 0, ran = 0;
    double test_rmse = NAN, test_mae = NAN, last_rmse = NAN, last_mae = NAN;
    int tty = br_isatty(stderr);
    for (uint32_t ep = 0; ep < to.epochs; ep++) {
        double te0 = br_now();
        e = br_trainer_epoch(tr, &td, ep, &loss_v, &d);
        double dt = br_now() - te0;
        train_time += dt;
        ran = ep + 1;
        if (e)
            goto done;
        br_trainer_params(tr, &prm);
        double vmetric = NAN, rm = NAN, ma = NAN;
        if (loss == BR_LOSS_MSE) {
            /* the test figures of every epoch are for the progress line
             * (with -q only the final model's are computed, below: 0.6 s
             * less at dim 128) */
            if (n_test && !c.quiet) {
                br_eval_rmse(&prm, r, fold, BR_FOLD_TEST, c.threads, &rm, &ma, NULL);
                last_rmse = rm;
                last_mae = ma;
            }
            if (early) {
                double vm;
                br_eval_rmse(&prm, r, fold, BR_FOLD_VALID, c.threads, &vmetric, &vm, NULL);
            }
        } else if (early) {
            br_rank_metrics vm;
            e = br_eval_ranking(&prm, &vseen, &vcsr, c.topk, c.threads, &vm, &d);
            if (e)
                goto done;
            vmetric = -vm.recall;   /* lower is better, as for RMSE */
        }
        double eta = train_time / ran * (to.epochs - ran);
        char el[32], et[32], line[256];
        int n = snprintf(line, sizeof line, "epoch %3u/%u  loss %.4f", ran, to.epochs, loss_v);
        if (isfinite(rm))
            n += snprintf(line + n, sizeof line - (size_t)n, "  test RMSE %.4f MAE %.4f", rm, ma);
        if (early && loss == BR_LOSS_MSE)
            n += snprintf(line + n, sizeof line - (size_t)n, "  valid RMSE %.4f", vmetric);
        else if (early)
            n += snprintf(line + n, sizeof line - (size_t)n, "  valid recall@%u %.4f", c.topk,
                          -vmetric);
        snprintf(line + n, sizeof line - (size_t)n, "  %.1f M ratings/s  elapsed %s  ETA %s",
                 n_train / dt / 1e6, br_fmt_duration(br_now() - t0, el, sizeof el),
                 br_fmt_duration(eta, et, sizeof et));
        br_say("%s%s", line, tty && !c.verbose ? "\033[K\r" : "\n");
        if (early) {
            if (vmetric < best - 1e-5) {
                best = vmetric;
                best_epoch = ran;
                since = 0;
                e = br_trainer_snapshot(tr);
                if (e) {
                    br_fail(&d, e, "out of memory");
                    goto done;
                }
            } else if (++since >= c.patience) {
                break;
            }
        } else {
            best_epoch = ran;
        }
    }
    if (tty && !c.verbose)
        br_say("\n");
    if (early && best_epoch && best_epoch != ran) {
        br_trainer_restore(tr);
        br_say("early stop: kept epoch %u (validation %s %.4f)\n", best_epoch,
            loss == BR_LOSS_MSE ? "RMSE" : "recall", fabs(best));
    }
    /* The epochs' working copies go before the model file's buffer is made
     * (glibc keeps freed heap pages unless asked to hand them back). */
    br_trainer_trim(tr);
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    br_trainer_params(tr, &prm);
    if (loss == BR_LOSS_MSE && n_test) {
        if (isfinite(last_rmse) && best_epoch == ran) {   /* the last epoch's, already measured */
            test_rmse = last_rmse;
            test_mae = last_mae;
        } else {
            br_eval_rmse(&prm, r, fold, BR_FOLD_TEST, c.threads, &test_rmse, &test_mae, NULL);
        }
    }
    if (isfinite(test_rmse))
        br_say("test RMSE %.4f  MAE %.4f  (%s held-out ratings)\n", test_rmse, test_mae,
            br_fmt_count(n_test, b5, sizeof b5));

    /* ---- model file: every rating the user gave counts as read ----
     * Written on a thread of its own while the ranking figures (which the
     * file does not hold) are computed: the write and its fsync overlap the
     * scan instead of following it. */
    br_model_data md;
    memset(&md, 0, sizeof md);
    md.meta.kind = (uint32_t)kind;
    md.meta.loss = (uint32_t)loss;
    md.meta.optim = (uint32_t)optim;
    md.meta.dim = to.dim;
    md.meta.n_users = r->n_users;
    md.meta.n_books = r->n_books;
    md.meta.epochs = best_epoch;
    md.meta.seed = c.seed;
    md.meta.n_train = n_train;
    md.meta.data_fingerprint = r->fingerprint;
    md.meta.created_unix = (int64_t)time(NULL);
    md.meta.global_mean = prm.mean;
    md.meta.lr = to.lr;
    md.meta.reg = to.reg;
    md.meta.reg_bias = to.reg_bias;
    md.meta.test_rmse = (float)test_rmse;
    md.meta.test_mae = (float)test_mae;
    md.user_vecs = prm.P;
    md.book_vecs = prm.Q;
    md.src_stride = prm.stride;
    md.user_bias = prm.bu;
    md.book_bias = prm.bb;
    md.user_ids = r->user_ids;
    md.book_ids = r->book_ids;
    md.read_ptr = r->user_ptr;
    md.read_idx = r->book;
    tags_join(&tj);
    md.books = books;
    save_args sa = {&md, c.out};
    bg_job sj;
    bg_start(&sj, save_call, &sa);

    br_rank_metrics rk = {0}, pop = {0};
    if (n_test) {
        double r0 = br_now();
        e = br_eval_ranking(&prm, &known, &test_csr, c.topk, c.threads, &rk, &d);
        if (!e)
            e = br_eval_popularity(&known, &test_csr, r->n_books, c.topk, c.threads, &pop, &d);
        if (e) {
            bg_join(&sj);
            goto done;
        }
        br_say("ranking @%u over %zu users (%s):\n", c.topk, rk.users,
            br_fmt_duration(br_now() - r0, tb, sizeof tb));
        br_say("  %-11s recall %.4f  ndcg %.4f  hr %.4f  map %.4f  coverage %.4f\n", "model",
            rk.recall, rk.ndcg, rk.hr, rk.map, rk.coverage);
        br_say("  %-11s recall %.4f  ndcg %.4f  hr %.4f  map %.4f  coverage %.4f\n", "popularity",
            pop.recall, pop.ndcg, pop.hr, pop.map, pop.coverage);
    }

    if ((e = bg_join(&sj)) != BR_OK) {
        d = sj.d;
        goto done;
    }
    br_say("wrote %s (%s total)\n", c.out, br_fmt_duration(br_now() - t0, tb, sizeof tb));

    if (c.metrics) {
        br_atomic *a = NULL;
        e = br_atomic_open(c.metrics, &a, &d);
        if (e)
            goto done;
        FILE *f = br_atomic_file(a);
        fprintf(f, "{\n  \"model\": \"%s\", \"loss\": \"%s\", \"optim\": \"%s\",\n", c.model,
                c.loss, c.optim);
        fprintf(f, "  \"dim\": %u, \"epochs_run\": %u, \"best_epoch\": %u, \"threads\": %d,\n",
                to.dim, ran, best_epoch, to.threads);
        fprintf(f, "  \"lr\": %g, \"reg\": %g, \"reg_bias\": %g, \"reg_exp\": %g, \"lr_decay\": %g, \"seed\": %llu,\n",
                to.lr, to.reg, to.reg_bias, to.reg_exp, to.lr_decay, (unsigned long long)c.seed);
        fprintf(f, "  \"ratings\": %zu, \"users\": %u, \"books\": %u, \"duplicate_rows\": %zu,\n",
                r->n, r->n_users, r->n_books, r->dup_rows);
        fprintf(f, "  \"train\": %zu, \"valid\": %zu, \"test\": %zu,\n", n_train, n_valid, n_test);
        json_num(f, "test_rmse", test_rmse, 1);
        json_num(f, "test_mae", test_mae, 1);
        json_num(f, "final_train_loss", loss_v, 1);
        json_num(f, "train_seconds", train_time, 1);
        json_num(f, "ratings_per_second", ran ? n_train * (double)ran / train_time : NAN, 1);
        json_num(f, "total_seconds", br_now() - t0, 1);
        fprintf(f, "  \"ranking\": {\n");
        json_metrics(f, "model", &rk, 0);
        json_metrics(f, "popularity", &pop, 1);
        fprintf(f, "  }\n}\n");
        e = br_atomic_commit(a, &d);
        if (e)
            goto done;
    }
    rc = 0;
done:
    if (rc && e)
        rc = die(e, &d);
    br_trainer_free(tr);
    free(xu);
    free(xb);
    br_csr_free(&known);
    br_csr_free(&test_csr);
    br_csr_free(&nsets);
    br_csr_free(&vseen);
    br_csr_free(&vcsr);
    free(idx);
    free(fold);
    tags_join(&tj);
    br_books_free(books);
    br_ratings_free(r);
    return rc;
}
