/*
 * bookrec-viz - maps of the book embeddings of a bookrec model: PCA and
 * t-SNE, drawn as a PNG or shown in an SDL2 window, exported as CSV or as
 * TensorBoard Embedding Projector files.
 *
 *   bookrec-viz --tsne --png map.png           t-SNE map (the default method)
 *   bookrec-viz --pca --png pca.png            the first two principal components
 *   bookrec-viz --window                       interactive (default with a display)
 *   bookrec-viz --csv map.csv --projector DIR  exports
 *
 * Exit status: 0 success; 2 for a usage error or bad option value; 1 for
 * other failures (missing or damaged model, I/O, no display).
 *
 * This file only parses options, calls the library (viz/br_pca.h,
 * viz/br_tsne.h, viz/br_plot.h) and reports.
 */
#include "br_io.h"
#include "br_model.h"
#include "br_opt.h"
#include "br_pca.h"
#include "br_plot.h"
#include "br_progress.h"
#include "br_tsne.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PROG "bookrec-viz"

typedef struct cli {
    const char *model, *png, *csv, *projector, *size, *color;
    int pca, tsne, window, normalize, raw, quiet, help, version, threads, iters, labels;
    double perplexity, theta;
    uint64_t seed;
} cli;

static int die(br_err e, const br_diag *d)
{
    return br_error(e == BR_ERR_ARG ? 2 : 1, "%s", br_diag_text(d, e));
}

/* ---- progress ---------------------------------------------------------------- */

typedef struct progress {
    double t0;          /* start of the run (kNN included) */
    double t_first;     /* time of the first callback, 0 before */
    int it_first;
    int tty;
} progress;

static int on_progress(void *ctx, int iter, int iters, double kl)
{
    progress *p = ctx;
    if (!p->tty)
        return 0;
    double now = br_now(), el = now - p->t0, eta = 0;
    if (p->t_first == 0) {   /* the rate is measured from here: kNN and P are done */
        p->t_first = now;
        p->it_first = iter;
    } else if (iter > p->it_first) {
        eta = (now - p->t_first) / (iter - p->it_first) * (iters - iter);
    }
    char b1[32], b2[32], klt[32];
    if (isfinite(kl))
        snprintf(klt, sizeof klt, "%.4f", kl);
    else
        snprintf(klt, sizeof klt, "-");
    fprintf(stderr, "\rt-SNE: iteration %4d/%d  KL %s  elapsed %s  ETA %s   ", iter, iters, klt,
            br_fmt_duration(el, b1, sizeof b1), br_fmt_duration(eta, b2, sizeof b2));
    if (iter == iters)
        fputc('\n', stderr);
    fflush(stderr);
    return 0;
}

/* ---- exports ----------------------------------------------------------------- */

/* A TSV field: tabs and line breaks become spaces. */
static void tsv_field(FILE *f, const char *s)
{
    for (; *s; s++)
        fputc(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s, f);
}

static br_err write_csv(const char *path, const br_book *books, const float *xy, size_t n,
                        br_diag *d)
{
    br_atomic *a = NULL;
    br_err e = br_atomic_open(path, &a, d);
    if (e)
        return e;
    FILE *f = br_atomic_file(a);
    fputs("book_id,x,y,title\n", f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%u,%.6g,%.6g,", books[i].book_id, (double)xy[2 * i], (double)xy[2 * i + 1]);
        br_csv_field(f, books[i].title);
        fputc('\n', f);
    }
    if (ferror(f)) {
        br_atomic_abort(a);
        return br_fail(d, BR_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return br_atomic_commit(a, d);
}

/* TensorBoard Embedding Projector: vectors.tsv (no header) and
 * metadata.tsv (header), same order as the CSV. */
static br_err write_projector(const char *dir, const br_book *books, const float *x, size_t n,
                              size_t dim, size_t stride, br_diag *d)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return br_fail(d, BR_ERR_IO, "cannot create folder %s: %s", dir, strerror(errno));
    char path[4096];
    snprintf(path, sizeof path, "%s/vectors.tsv", dir);
    br_atomic *a = NULL;
    br_err e = br_atomic_open(path, &a, d);
    if (e)
        return e;
    FILE *f = br_atomic_file(a);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < dim; k++)
            fprintf(f, "%.7g%c", (double)x[i * stride + k], k + 1 == dim ? '\n' : '\t');
    if (ferror(f)) {
        br_atomic_abort(a);
        return br_fail(d, BR_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    if ((e = br_atomic_commit(a, d)) != BR_OK)
        return e;
    snprintf(path, sizeof path, "%s/metadata.tsv", dir);
    if ((e = br_atomic_open(path, &a, d)) != BR_OK)
        return e;
    f = br_atomic_file(a);
    fputs("title\tauthors\tyear\tgenre\taverage_rating\n", f);
    for (size_t i = 0; i < n; i++) {
        tsv_field(f, books[i].title);
        fputc('\t', f);
        tsv_field(f, books[i].authors);
        fputc('\t', f);
        if (books[i].year)
            fprintf(f, "%d", (int)books[i].year);
        fputc('\t', f);
        tsv_field(f, books[i].genre);
        fputc('\t', f);
        if (isfinite(books[i].avg_rating))
            fprintf(f, "%.2f", (double)books[i].avg_rating);
        fputc('\n', f);
    }
    if (ferror(f)) {
        br_atomic_abort(a);
        return br_fail(d, BR_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return br_atomic_commit(a, d);
}

/* ---- nearest neighbours for the window ---------------------------------------- */

typedef struct nb {
    float d;
    uint32_t i;
} nb;

/* For each book, the k nearest books in the input space (the space the map
 * was made from), by brute force over blocks of rows. */
static int neighbours(const float *x, size_t n, size_t dim, size_t stride, size_t k, int threads,
                      uint32_t *out)
{
    int fail = 0;
#pragma omp parallel num_threads(threads)
    {
        nb *best = malloc((k + 1) * sizeof *best);
        if (!best) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(dynamic, 64)
        for (size_t i = 0; i < n; i++) {
            if (!best)
                continue;
            size_t m = 0;
            for (size_t j = 0; j < n; j++) {
                if (j == i)
                    continue;
                float s = 0;
                for (size_t c = 0; c < dim; c++) {
                    float t = x[i * stride + c] - x[j * stride + c];
                    s += t * t;
                }
                if (m == k && !(s < best[k - 1].d))
                    continue;
                size_t p = m < k ? m++ : k - 1;
                while (p > 0 && best[p - 1].d > s) {
                    best[p] = best[p - 1];
                    p--;
                }
                best[p] = (nb){s, (uint32_t)j};
            }
            for (size_t r = 0; r < k; r++)
                out[i * k + r] = r < m ? best[r].i : (uint32_t)i;
        }
        free(best);
    }
    return !fail;
}

/* ---- main ----------------------------------------------------------------------- */

static int parse_size(const char *s, int *w, int *h)
{
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10);
    if (end == s || (*end != 'x' && *end != 'X'))
        return 0;
    const char *t = end + 1;
    long b = strtol(t, &end, 10);
    if (end == t || *end || errno || a < 16 || b < 16 || a > 16384 || b > 16384)
        return 0;
    *w = (int)a;
    *h = (int)b;
    return 1;
}

static const char *basename_of(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int main(int argc, char **argv)
{
    br_cli_init(PROG);
    cli c = {0};
    c.model = "bookrec.model";
    c.size = "1600x1200";
    c.color = "genre";
    c.threads = omp_get_num_procs();
    c.iters = 1000;
    c.perplexity = 30;
    c.theta = 0.5;
    c.seed = 42;
    c.labels = 40;

    const br_opt opts[] = {
        {0, NULL, BR_OPT_GROUP, NULL, NULL, "Method (one of):"},
        {0, "tsne", BR_OPT_FLAG, &c.tsne, NULL, "t-SNE map (the default)"},
        {0, "pca", BR_OPT_FLAG, &c.pca, NULL, "the first two principal components"},
        {0, NULL, BR_OPT_GROUP, NULL, NULL, "Output (any of; the window is the default when a display is available and no --png is given):"},
        {0, "png", BR_OPT_STR, &c.png, "FILE", "draw the map into a PNG"},
        {0, "window", BR_OPT_FLAG, &c.window, NULL, "show the map in a window (m switches PCA / t-SNE)"},
        {0, "csv", BR_OPT_STR, &c.csv, "FILE", "write book_id,x,y,title"},
        {0, "projector", BR_OPT_STR, &c.projector, "DIR", "write DIR/vectors.tsv and DIR/metadata.tsv (TensorBoard)"},
        {0, NULL, BR_OPT_GROUP, NULL, NULL, "Options:"},
        {'m', "model", BR_OPT_STR, &c.model, "FILE", "model file (default ./bookrec.model)"},
        {0, "normalize", BR_OPT_FLAG, &c.normalize, NULL, "scale rows to unit length first (the default: "
                                                          "neighbours are then those of bookrec-infer --similar, "
                                                          "by cosine, and popular books' long vectors do not "
                                                          "pull the map apart)"},
        {0, "raw", BR_OPT_FLAG, &c.raw, NULL, "use the vectors as stored (Euclidean)"},
        {0, "color", BR_OPT_STR, &c.color, "genre|rating|year", "what the colours show (default genre)"},
        {0, "size", BR_OPT_STR, &c.size, "WxH", "image and window size (default 1600x1200)"},
        {0, "labels", BR_OPT_INT, &c.labels, "N", "titles of the N most-read books (default 40)"},
        {0, "perplexity", BR_OPT_DOUBLE, &c.perplexity, "P", "t-SNE perplexity (default 30)"},
        {0, "iters", BR_OPT_INT, &c.iters, "N", "t-SNE iterations (default 1000)"},
        {0, "theta", BR_OPT_DOUBLE, &c.theta, "T", "Barnes-Hut accuracy, 0 exact (default 0.5)"},
        {0, "seed", BR_OPT_U64, &c.seed, "S", "random seed (default 42)"},
        {'j', "threads", BR_OPT_INT, &c.threads, "N", "threads (default: all cores; -j 1 is deterministic)"},
        {'q', "quiet", BR_OPT_FLAG, &c.quiet, NULL, "no progress or figures on stderr"},
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
        br_opt_usage(stdout, PROG " [-m MODEL] [--tsne | --pca] [--png FILE] [--window] "
                             "[--csv FILE] [--projector DIR] [options]",
                     opts);
        return 0;
    }
    if (c.version) {
        printf(PROG " %s\n", BOOKREC_VERSION);
        return 0;
    }
    br_cli_quiet(c.quiet);
    if (npos > 0)
        return br_error(2, "unexpected argument '%s' (see --help)", argv[1]);
    if (c.pca && c.tsne)
        return br_error(2, "give --pca or --tsne, not both");
    if (c.normalize && c.raw)
        return br_error(2, "give --normalize or --raw, not both");
    int normalize = !c.raw;
    int w, h;
    if (!parse_size(c.size, &w, &h))
        return br_error(2, "--size: '%s' is not WxH with each side 16 .. 16384 (e.g. 1600x1200)",
                       c.size);
    br_plot_color color;
    if (strcmp(c.color, "genre") == 0)
        color = BR_PLOT_COLOR_GENRE;
    else if (strcmp(c.color, "rating") == 0)
        color = BR_PLOT_COLOR_RATING;
    else if (strcmp(c.color, "year") == 0)
        color = BR_PLOT_COLOR_YEAR;
    else
        return br_error(2, "--color: '%s' is not genre, rating or year", c.color);
    if (c.threads < 1)
        return br_error(2, "-j must be at least 1");
    if (c.iters < 0 || c.iters > 100000)
        return br_error(2, "--iters must be 0 .. 100000, not %d", c.iters);
    if (!(c.perplexity >= 1 && c.perplexity <= 1000))
        return br_error(2, "--perplexity must be 1 .. 1000, not %g", c.perplexity);
    if (!(c.theta >= 0 && c.theta <= 1.5))
        return br_error(2, "--theta must be 0 .. 1.5, not %g", c.theta);
    if (c.labels < 0)
        return br_error(2, "--labels must be 0 or more");
    const char *disp = getenv("DISPLAY"), *wl = getenv("WAYLAND_DISPLAY");
    const char *vd = getenv("SDL_VIDEODRIVER");
    int have_display = (disp && *disp) || (wl && *wl) || (vd && *vd);
    int want_window = c.window || (!c.png && have_display);
    if (!want_window && !c.png && !c.csv && !c.projector)
        return br_error(2, "no display for a window: give --png FILE (or --csv, --projector)");
    int method_tsne = !c.pca;

    br_model *m = NULL;
    e = br_model_open(c.model, &m, &d);
    if (e) {
        fprintf(stderr, PROG ": error: %s\n", br_diag_text(&d, e));
        if (e == BR_ERR_NOT_FOUND)
            fprintf(stderr, PROG ": train one with bookrec-train, or name one with -m FILE\n");
        return 1;
    }
    const br_model_meta *mt = br_model_get_meta(m);
    size_t n = mt->n_books, dim = mt->dim, stride = mt->stride;
    const float *bv = br_model_book_vecs(m);
    if (n < 3 || dim == 0 || !bv) {
        br_model_free(m);
        return br_error(1, "%s: the model has %zu book vectors of dimension %zu; a map needs at "
                          "least 3",
                       c.model, n, dim);
    }
    int rc = 1;
    float *x = NULL, *ypca = NULL, *ytsne = NULL, *ypca_all = NULL;
    br_book *books = NULL;
    char **fallback = NULL;
    uint32_t *near = NULL;
    br_pca *pca = NULL;
    br_plot_canvas *canvas = NULL;
    br_plot_window *win = NULL;

    /* Book records; a model without titles gets "book <id>". */
    books = calloc(n, sizeof *books);
    fallback = calloc(n, sizeof *fallback);
    x = aligned_alloc(64, ((n * stride * sizeof *x) + 63) / 64 * 64);
    if (!books || !fallback || !x) {
        rc = br_error(1, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        br_model_book_info(m, (uint32_t)i, &books[i]);
        books[i].book_id = br_model_book_ids(m)[i];
        if (!*books[i].title) {
            char t[32];
            snprintf(t, sizeof t, "book %u", books[i].book_id);
            fallback[i] = strdup(t);
            books[i].title = fallback[i] ? fallback[i] : "";
        }
    }
    if (!br_model_has_book_info(m))
        br_say("note: %s has no book titles or genres (train with books.csv beside the ratings)\n",
            c.model);
    size_t zero_rows = 0;
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t k = 0; k < stride; k++) {
            x[i * stride + k] = bv[i * stride + k];
            s += (double)bv[i * stride + k] * bv[i * stride + k];
        }
        if (normalize) {
            if (s > 0) {
                float inv = (float)(1 / sqrt(s));
                for (size_t k = 0; k < stride; k++)
                    x[i * stride + k] *= inv;
            } else {
                zero_rows++;
            }
        }
    }
    if (zero_rows)
        br_say("note: %zu books have all-zero vectors (left at the origin)\n", zero_rows);

    /* PCA: always (it is the t-SNE start). */
    double t0 = br_now();
    e = br_pca_fit(x, n, dim, stride, c.threads, &pca, &d);
    if (e) {
        rc = die(e, &d);
        goto done;
    }
    ypca = malloc(2 * n * sizeof *ypca);
    if (!ypca || (dim < 2 && (rc = br_error(1, "the model's vectors have one dimension: no map")))) {
        if (!ypca)
            rc = br_error(1, "out of memory");
        goto done;
    }
    e = br_pca_transform(pca, x, n, stride, 2, ypca, &d);
    if (e) {
        rc = die(e, &d);
        goto done;
    }
    double t_pca = br_now() - t0;
    char buf[64];
    br_say("%s: %zu books x %zu dims%s; PCA in %s\n", basename_of(c.model), n, dim,
        normalize ? " (rows normalised)" : "", br_fmt_duration(t_pca, buf, sizeof buf));
    if (!c.quiet) {
        double cum = 0;
        size_t show = dim < 10 ? dim : 10;
        fprintf(stderr, "explained variance:");
        for (size_t k = 0; k < show; k++) {
            cum += br_pca_explained(pca, k);
            fprintf(stderr, " PC%zu %.1f%%%s", k + 1, 100 * br_pca_explained(pca, k),
                    k + 1 < show ? "," : "");
        }
        fprintf(stderr, " (first %zu: %.1f%%)\n", show, 100 * cum);
    }

    double kl = NAN;
    int tsne_needed = method_tsne || want_window;
    if (tsne_needed) {
        ytsne = malloc(2 * n * sizeof *ytsne);
        if (!ytsne) {
            rc = br_error(1, "out of memory");
            goto done;
        }
        br_tsne_opts to;
        br_tsne_default_opts(&to);
        to.perplexity = c.perplexity;
        to.theta = c.theta;
        to.iters = c.iters;
        to.seed = c.seed;
        to.threads = c.threads;
        to.init = ypca;
        progress pr = {br_now(), 0, 0, !c.quiet && br_isatty(stderr)};
        if (pr.tty) {   /* the KL estimates cost time: only when shown */
            to.progress = on_progress;
            to.progress_ctx = &pr;
        }
        br_tsne_stats st;
        e = br_tsne_run(x, n, dim, stride, &to, ytsne, &st, &d);
        if (e) {
            rc = die(e, &d);
            goto done;
        }
        kl = st.kl;
        br_say("t-SNE: %zu books, perplexity %g, %d iterations, KL %.4f in %s (kNN %.2f s, P %.2f s, "
            "optimisation %.2f s, -j %d)\n",
            n, c.perplexity, st.iters, st.kl, br_fmt_duration(br_now() - pr.t0, buf, sizeof buf),
            st.t_knn, st.t_affinity, st.t_optimize, c.threads);
    }
    const float *ymain = method_tsne ? ytsne : ypca;

    char title[256], sub_pca[256], sub_tsne[256], title_pca[256], title_tsne[256];
    snprintf(title_tsne, sizeof title_tsne, "t-SNE of %zu books  |  %s", n, basename_of(c.model));
    snprintf(title_pca, sizeof title_pca, "PCA of %zu books  |  %s", n, basename_of(c.model));
    snprintf(sub_tsne, sizeof sub_tsne,
             "%s model, %u dims%s  |  perplexity %g, %d iterations, KL %.3f  |  colour: %s",
             mt->loss == BR_LOSS_BPR ? "BPR" : "MSE", mt->dim, normalize ? " (normalised)" : "",
             c.perplexity, c.iters, kl, c.color);
    snprintf(sub_pca, sizeof sub_pca,
             "%s model, %u dims%s  |  PC1 %.1f%%, PC2 %.1f%% of the variance  |  colour: %s",
             mt->loss == BR_LOSS_BPR ? "BPR" : "MSE", mt->dim, normalize ? " (normalised)" : "",
             100 * br_pca_explained(pca, 0), 100 * br_pca_explained(pca, 1), c.color);
    snprintf(title, sizeof title, "%s", method_tsne ? title_tsne : title_pca);

    if (c.csv) {
        e = write_csv(c.csv, books, ymain, n, &d);
        if (e) {
            rc = die(e, &d);
            goto done;
        }
        br_say("wrote %s\n", c.csv);
    }
    if (c.projector) {
        e = write_projector(c.projector, books, x, n, dim, stride, &d);
        if (e) {
            rc = die(e, &d);
            goto done;
        }
        br_say("wrote %s/vectors.tsv and %s/metadata.tsv\n", c.projector, c.projector);
    }
    if (c.png) {
        br_plot_data pd = {n, ymain, books, color, title, method_tsne ? sub_tsne : sub_pca,
                           (size_t)c.labels};
        e = br_plot_canvas_create(w, h, &canvas, &d);
        if (!e) {
            br_plot_view v = br_plot_fit_view(&pd, w, h);
            e = br_plot_render(canvas, &pd, &v, NULL, &d);
        }
        if (!e)
            e = br_plot_save_png(canvas, c.png, &d);
        if (e) {
            rc = die(e, &d);
            goto done;
        }
        br_say("wrote %s (%dx%d)\n", c.png, w, h);
    }
    if (want_window) {
        const size_t kn = 10;
        near = malloc(n * kn * sizeof *near);
        if (!near || !neighbours(x, n, dim, stride, kn < n - 1 ? kn : n - 1, c.threads, near)) {
            rc = br_error(1, "out of memory");
            goto done;
        }
        br_plot_layout lay[2] = {{"t-SNE", ytsne, title_tsne, sub_tsne},
                                 {"PCA", ypca, title_pca, sub_pca}};
        if (!method_tsne) {
            br_plot_layout t = lay[0];
            lay[0] = lay[1];
            lay[1] = t;
        }
        br_plot_window_opts wo = {0};
        wo.w = w > 1400 ? 1400 : w;
        wo.h = h > 1000 ? 1000 : h;
        if (c.window && strcmp(c.size, "1600x1200") != 0) {
            wo.w = w;
            wo.h = h;
        }
        wo.books = books;
        wo.n = n;
        wo.layouts = lay;
        wo.n_layouts = 2;
        wo.color = color;
        wo.n_labels = (size_t)c.labels;
        wo.near = near;
        wo.n_near = kn < n - 1 ? kn : n - 1;
        wo.save_path = c.png ? c.png : "bookrec-viz.png";
        e = br_plot_window_open(&wo, &win, &d);
        if (e) {
            rc = die(e, &d);
            goto done;
        }
        br_say("window: drag to pan, wheel to zoom, hover for details, click for the 10 nearest "
            "books, m switches PCA / t-SNE, s saves %s, q quits\n",
            wo.save_path);
        e = br_plot_window_run(win, &d);
        if (e) {
            rc = die(e, &d);
            goto done;
        }
        br_plot_window_state ws;
        br_plot_window_get_state(win, &ws);
        if (ws.saves)
            br_say("saved %d PNG%s to %s\n", ws.saves, ws.saves > 1 ? "s" : "", wo.save_path);
    }
    rc = 0;
done:
    br_plot_window_free(win);
    br_plot_canvas_free(canvas);
    br_pca_free(pca);
    if (fallback)
        for (size_t i = 0; i < n; i++)
            free(fallback[i]);
    free(fallback);
    free(books);
    free(near);
    free(x);
    free(ypca);
    free(ypca_all);
    free(ytsne);
    br_model_free(m);
    return rc;
}
