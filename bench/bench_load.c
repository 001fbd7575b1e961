/*
 * bench_load.c - how long loading ratings takes, end to end, in process.
 *
 * Two inputs:
 *   real  the goodbooks-10k ratings.csv.gz (981,756 rows, gzip), --runs
 *         times (default 10);
 *   6M    a synthetic 5,976,479-row plain CSV (53,424 users, 10,000 books,
 *         user_id,book_id,rating, the size of the current goodbooks release)
 *         written once with br_gen_write to --tmp and reused while its size
 *         matches what the generator produces; --runs-6m times (default 5).
 *         Its loaded fingerprint is checked against br_ratings_build on the
 *         generator's rows in memory.
 * Each run times br_read_file alone (read + decompress), br_ratings_parse
 * alone on that text (parse + merge + index) and br_ratings_load (both), as
 * wall-clock min / median and CPU-time median. The loader is single-threaded,
 * so these are one-core figures. Targets (issue): real file under 250 ms,
 * 6M-row CSV under 1.5 s, end to end.
 *
 * Build and run (Release):
 *   cmake -S . -B build-rt && cmake --build build-rt -j2 && ./build-rt/bench-load
 * Options: --data DIR (default ../shared/data/goodbooks-10k), --tmp PATH
 * (default /tmp/bookrec-bench-6m.csv), --runs N, --runs-6m N, --no-real,
 * --no-6m.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "br_data.h"
#include "br_error.h"
#include "br_gen.h"
#include "br_io.h"
#include "br_ratings.h"

#define BENCH_MAX_RUNS 1000

static double clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static double now_ms(void) { return clock_ms(CLOCK_MONOTONIC); }
static double cpu_ms(void) { return clock_ms(CLOCK_PROCESS_CPUTIME_ID); }

/* One timed step: wall-clock and CPU time of each run. CPU time (user +
 * system, page faults included) is the steadier figure on a busy machine. */
typedef struct timing {
    double wall[BENCH_MAX_RUNS], cpu[BENCH_MAX_RUNS];
    double w0, c0;
} timing;

static void tick(timing *t)
{
    t->w0 = now_ms();
    t->c0 = cpu_ms();
}

static void tock(timing *t, int i)
{
    t->cpu[i] = cpu_ms() - t->c0;
    t->wall[i] = now_ms() - t->w0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts t[0..n) and returns the median (mean of the middle two if n is even). */
static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* Prints one table row, and against a target (ms, 0 for none) whether the
 * median meets it; returns the median wall-clock time. */
static double row(const char *what, int runs, timing *t, double target)
{
    double med = median(t->wall, runs), cpu = median(t->cpu, runs);
    printf("%-38s %5d %9.1f %9.1f %9.1f", what, runs, t->wall[0], med, cpu);
    if (target > 0)
        printf("   < %.0f: %s", target, med < target ? "met" : "MISSED");
    printf("\n");
    return med;
}

static void die(const char *what, br_err e, const br_diag *d)
{
    fprintf(stderr, "bench-load: %s: %s\n", what, br_diag_text(d, e));
    exit(1);
}

/* Times br_read_file, br_ratings_parse and br_ratings_load on one file.
 * If want_fp is not 0, the loaded ratings' fingerprint must equal it. */
static void bench_file(const char *label, const char *path, int runs, double target,
                       uint64_t want_fp)
{
    static timing t_read, t_parse, t_load;
    br_diag d;
    br_err e;
    char *buf = NULL;
    size_t len = 0;
    br_ratings *r = NULL;
    char what[96];

    for (int i = 0; i < runs; i++) {
        tick(&t_read);
        if ((e = br_read_file(path, &buf, &len, &d)))
            die(path, e, &d);
        tock(&t_read, i);
        tick(&t_parse);
        if ((e = br_ratings_parse(buf, len, path, NULL, &r, &d)))
            die(path, e, &d);
        tock(&t_parse, i);
        br_ratings_free(r);
        free(buf);
        tick(&t_load);
        if ((e = br_ratings_load(path, NULL, &r, &d)))
            die(path, e, &d);
        tock(&t_load, i);
        if (i + 1 < runs)
            br_ratings_free(r);
    }
    struct stat st;
    if (stat(path, &st) != 0)
        st.st_size = 0;
    double mb = (double)st.st_size / 1e6;
    printf("\n%s: %s (%.1f MB on disk, %zu text bytes)\n", label, path, mb, len);
    printf("  rows %zu, ratings %zu, users %u, books %u, duplicate rows %zu in %zu pairs\n",
           r->rows, r->n, r->n_users, r->n_books, r->dup_rows, r->dup_pairs);
    printf("%-38s %5s %9s %9s %9s   %s\n", "  step (ms)", "runs", "min", "median", "cpu med",
           "target");
    snprintf(what, sizeof what, "  br_read_file (read%s)",
             len > (size_t)st.st_size ? " + gunzip" : "");
    row(what, runs, &t_read, 0);
    row("  br_ratings_parse (parse+merge+index)", runs, &t_parse, 0);
    double med = row("  br_ratings_load (end to end)", runs, &t_load, target);
    printf("  => %.0f rows/s, %.0f MB/s of text (median load)\n", (double)r->rows / med * 1e3,
           (double)len / 1e6 / med * 1e3);
    if (want_fp) {
        printf("  fingerprint %016llx: %s\n", (unsigned long long)r->fingerprint,
               r->fingerprint == want_fp ? "same as br_ratings_build on the generator's rows"
                                         : "DIFFERS from the generator's rows");
        if (r->fingerprint != want_fp)
            exit(1);
    }
    br_ratings_free(r);
}

/* The bytes br_gen_write produces for p: header plus one "a,b,r\n" per rating. */
static int digits(uint32_t v)
{
    int n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* Generates p's rows in memory: the CSV size they make and the fingerprint
 * of br_ratings_build on them (what loading the CSV must give). */
static br_err expected_csv(const br_gen_params *p, uint64_t *size, uint64_t *fp, br_diag *d)
{
    uint32_t *u, *b;
    float *v;
    br_err e = br_gen_memory(p, &u, &b, &v, d);
    if (e)
        return e;
    uint64_t s = strlen("user_id,book_id,rating\n");
    for (uint64_t i = 0; i < p->n_ratings; i++)
        s += (uint64_t)digits(u[i]) + (uint64_t)digits(b[i]) + 4;   /* 2 commas, rating, \n */
    br_ratings *r = NULL;
    e = br_ratings_build(u, b, v, (size_t)p->n_ratings, &r, d);
    if (!e)
        *fp = r->fingerprint;
    br_ratings_free(r);
    free(u);
    free(b);
    free(v);
    *size = s;
    return e;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench-load [--data DIR] [--tmp PATH] [--runs N] [--runs-6m N] [--no-real] "
            "[--no-6m]\n"
            "  --data DIR    goodbooks-10k folder holding ratings.csv.gz "
            "(default ../shared/data/goodbooks-10k)\n"
            "  --tmp PATH    where the 6M-row CSV is written and reused "
            "(default /tmp/bookrec-bench-6m.csv)\n"
            "  --runs N      runs on the real file (default 10)\n"
            "  --runs-6m N   runs on the 6M-row CSV (default 5)\n");
}

static int parse_runs(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 1 || v > BENCH_MAX_RUNS) {
        fprintf(stderr, "bench-load: runs must be 1..%d, not '%s'\n", BENCH_MAX_RUNS, s);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv)
{
    const char *data = "../shared/data/goodbooks-10k";
    const char *tmp = "/tmp/bookrec-bench-6m.csv";
    int runs = 10, runs6 = 5, do_real = 1, do_6m = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--data") && has_val)
            data = argv[++i];
        else if (!strcmp(a, "--tmp") && has_val)
            tmp = argv[++i];
        else if (!strcmp(a, "--runs") && has_val)
            runs = parse_runs(argv[++i]);
        else if (!strcmp(a, "--runs-6m") && has_val)
            runs6 = parse_runs(argv[++i]);
        else if (!strcmp(a, "--no-real"))
            do_real = 0;
        else if (!strcmp(a, "--no-6m"))
            do_6m = 0;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench-load: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    br_diag d;
    br_err e;
    printf("bench-load: ratings loader timings (single-threaded)\n");

    if (do_real) {
        char dir[4096], path[4200];
        if ((e = br_data_find(data, dir, sizeof dir, &d)))
            die("data", e, &d);
        if ((e = br_data_file(dir, "ratings", path, sizeof path)))
            die(path, e, NULL);
        bench_file("real", path, runs, 250, 0);
    }

    if (do_6m) {
        br_gen_params p;
        br_gen_defaults(&p);
        p.n_users = 53424;
        p.n_books = 10000;
        p.n_ratings = 5976479;
        p.user_first = 1;
        uint64_t want = 0, fp = 0;
        if ((e = expected_csv(&p, &want, &fp, &d)))
            die("generator", e, &d);
        struct stat st;
        if (stat(tmp, &st) == 0 && (uint64_t)st.st_size == want) {
            printf("\n6M: reusing %s (%llu bytes)\n", tmp, (unsigned long long)want);
        } else {
            double t0 = now_ms();
            if ((e = br_gen_write(&p, tmp, &d)))
                die(tmp, e, &d);
            if (stat(tmp, &st) != 0 || (uint64_t)st.st_size != want) {
                fprintf(stderr, "bench-load: %s has %lld bytes, expected %llu\n", tmp,
                        (long long)st.st_size, (unsigned long long)want);
                return 1;
            }
            printf("\n6M: wrote %s (%llu bytes) in %.0f ms\n", tmp, (unsigned long long)want,
                   now_ms() - t0);
        }
        bench_file("6M", tmp, runs6, 1500, fp);
    }
    return 0;
}
