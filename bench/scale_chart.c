/*
 * scale_chart.c - draws the scale study's figure (bench/scale.sh) with the
 * viz library's line charts: time per epoch, peak memory of training and
 * per-query latency against the number of ratings, one line per catalogue
 * size, log-log axes, three panels side by side.
 *
 *   scale-chart TABLE.tsv OUT.png
 *
 * TABLE.tsv: a header line naming the columns, then one row per run; the
 * columns used are books, ratings, epoch_s, train_rss_mb and p50_us (any
 * order, others ignored). Rows with the same books value form one line, in
 * the order of the file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "br_chart.h"
#include "br_plot.h"

enum { COL_BOOKS, COL_RATINGS, COL_EPOCH, COL_RSS, COL_P50, N_COLS };
static const char *col_names[N_COLS] = {"books", "ratings", "epoch_s", "train_rss_mb", "p50_us"};
#define MAX_ROWS 64
#define MAX_LINES 8

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "scale-chart: error: %s: %s\n", what, why);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: scale-chart TABLE.tsv OUT.png\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "r");
    if (!in)
        return fail(argv[1], "cannot open");
    char buf[1024];
    int where[N_COLS];
    for (int k = 0; k < N_COLS; k++)
        where[k] = -1;
    if (!fgets(buf, sizeof buf, in)) {
        fclose(in);
        return fail(argv[1], "empty file");
    }
    int ncol = 0;
    for (char *tok = strtok(buf, "\t\r\n"); tok; tok = strtok(NULL, "\t\r\n"), ncol++)
        for (int k = 0; k < N_COLS; k++)
            if (!strcmp(tok, col_names[k]))
                where[k] = ncol;
    for (int k = 0; k < N_COLS; k++)
        if (where[k] < 0) {
            fclose(in);
            fprintf(stderr, "scale-chart: error: %s: no column %s in the header\n", argv[1],
                    col_names[k]);
            return 1;
        }
    /* rows grouped by catalogue size */
    double books[MAX_LINES], x[MAX_LINES][MAX_ROWS], y[3][MAX_LINES][MAX_ROWS];
    size_t nline = 0, npt[MAX_LINES] = {0};
    int row = 1;
    while (fgets(buf, sizeof buf, in)) {
        row++;
        double v[N_COLS] = {0};
        int got = 0, c = 0;
        for (char *tok = strtok(buf, "\t\r\n"); tok; tok = strtok(NULL, "\t\r\n"), c++)
            for (int k = 0; k < N_COLS; k++)
                if (c == where[k]) {
                    char *end;
                    v[k] = strtod(tok, &end);
                    if (end != tok && *end == '\0')
                        got |= 1 << k;
                }
        if (c == 0)
            continue;
        if (got != (1 << N_COLS) - 1) {
            fclose(in);
            fprintf(stderr, "scale-chart: error: %s:%d: a column is missing or not a number\n",
                    argv[1], row);
            return 1;
        }
        size_t l = 0;
        while (l < nline && books[l] != v[COL_BOOKS])
            l++;
        if (l == nline) {
            if (nline == MAX_LINES) {
                fclose(in);
                return fail(argv[1], "more than 8 catalogue sizes");
            }
            books[nline++] = v[COL_BOOKS];
        }
        if (npt[l] == MAX_ROWS) {
            fclose(in);
            return fail(argv[1], "more than 64 rows for one catalogue size");
        }
        x[l][npt[l]] = v[COL_RATINGS];
        y[0][l][npt[l]] = v[COL_EPOCH];
        y[1][l][npt[l]] = v[COL_RSS];
        y[2][l][npt[l]] = v[COL_P50];
        npt[l]++;
    }
    fclose(in);
    if (nline == 0)
        return fail(argv[1], "no rows");

    char names[MAX_LINES][48];
    br_chart_series se[3][MAX_LINES];
    for (int p = 0; p < 3; p++)
        for (size_t l = 0; l < nline; l++) {
            if (books[l] >= 1000 && books[l] == 1000 * (double)(long)(books[l] / 1000))
                snprintf(names[l], sizeof names[l], "%.0fk books", books[l] / 1000);
            else
                snprintf(names[l], sizeof names[l], "%.0f books", books[l]);
            se[p][l] = (br_chart_series){.name = names[l], .x = x[l], .y = y[p][l], .n = npt[l]};
        }
    static const char *titles[3] = {"Time per epoch", "Peak memory of training",
                                    "One query, top 10"};
    static const char *ylabels[3] = {"seconds (-j 2)", "peak RSS, MB", "p50 latency, us"};
    const int pw = 520, ph = 420;
    br_plot_canvas *cv;
    br_diag d;
    br_err e = br_plot_canvas_create(3 * pw, ph, &cv, &d);
    if (e)
        return fail("canvas", br_diag_text(&d, e));
    for (int p = 0; p < 3 && !e; p++) {
        br_chart ch = {.title = titles[p],
                       .x = {.label = "ratings", .log = 1},
                       .y = {.label = ylabels[p], .log = 1},
                       .series = se[p],
                       .n_series = nline};
        e = br_chart_draw(cv, &ch, (float)(p * pw), 0, (float)((p + 1) * pw), (float)ph, &d);
    }
    if (!e)
        e = br_plot_save_png(cv, argv[2], &d);
    br_plot_canvas_free(cv);
    if (e)
        return fail(argv[2], br_diag_text(&d, e));
    return 0;
}
