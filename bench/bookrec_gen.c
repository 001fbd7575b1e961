/*
 * bookrec_gen.c - bookrec-gen: writes a synthetic ratings CSV (goodbooks
 * layout, gzip if the name ends in .gz) for tests and scale benchmarks.
 *
 *   bookrec-gen --users 53424 --books 10000 --ratings 6M -o ratings6m.csv
 *
 * All the work is br_gen_write (common/br_gen.h); this file parses options
 * and reports. One option table drives both parsing and --help.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "br_gen.h"

enum opt_id { OPT_USERS, OPT_BOOKS, OPT_RATINGS, OPT_RANK, OPT_NOISE, OPT_SKEW, OPT_SEED,
              OPT_USER_FIRST, OPT_OUTPUT, OPT_QUIET, OPT_HELP };

static const struct option_spec {
    enum opt_id id;
    const char *long_name;
    char short_name;  /* 0 if none */
    const char *arg;  /* NULL for a flag */
    const char *help;
} options[] = {
    {OPT_USERS, "users", 0, "N", "number of users, ids 1..N (required)"},
    {OPT_BOOKS, "books", 0, "N", "number of books, ids 1..N (required)"},
    {OPT_RATINGS, "ratings", 0, "N", "number of ratings, at most users x books (required)"},
    {OPT_RANK, "rank", 0, "R", "planted rank (default 8)"},
    {OPT_NOISE, "noise", 0, "S", "standard deviation of rating noise (default 0.5)"},
    {OPT_SKEW, "skew", 0, "Z", "Zipf exponent of book popularity, 0..4 (default 0.8)"},
    {OPT_SEED, "seed", 0, "S", "random seed (default 42)"},
    {OPT_USER_FIRST, "user-first", 0, NULL,
     "header user_id,book_id,rating (default book_id,user_id,rating)"},
    {OPT_OUTPUT, "output", 'o', "FILE", "output file; gzip if it ends in .gz (required)"},
    {OPT_QUIET, "quiet", 'q', NULL, "print nothing on success"},
    {OPT_HELP, "help", 'h', NULL, "show this help"},
};
#define N_OPTIONS (sizeof options / sizeof options[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: bookrec-gen --users N --books N --ratings N [options] -o FILE\n\n"
               "Writes synthetic ratings with a planted low-rank structure, popularity skew\n"
               "and noise; the same options give the same bytes. Counts accept a k, M or G\n"
               "suffix (powers of 1000), e.g. --ratings 6M.\n\noptions:\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char left[64];
        if (options[i].short_name)
            snprintf(left, sizeof left, "-%c, --%s%s%s", options[i].short_name,
                     options[i].long_name, options[i].arg ? " " : "",
                     options[i].arg ? options[i].arg : "");
        else
            snprintf(left, sizeof left, "    --%s%s%s", options[i].long_name,
                     options[i].arg ? " " : "", options[i].arg ? options[i].arg : "");
        fprintf(f, "  %-22s %s\n", left, options[i].help);
    }
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bookrec-gen: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

/* Parses a non-negative integer with an optional k/M/G suffix. */
static int parse_count(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return 0;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return 0;
    uint64_t mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1000, end++;
    else if (*end == 'M')
        mult = 1000000, end++;
    else if (*end == 'G')
        mult = 1000000000, end++;
    if (*end || v > max / mult)
        return 0;
    *out = (uint64_t)v * mult;
    return 1;
}

static int parse_float(const char *s, float *out)
{
    if (!s || !*s)
        return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v))
        return 0;
    *out = (float)v;
    return 1;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    br_gen_params p;
    br_gen_defaults(&p);
    const char *out = NULL;
    int quiet = 0, have_users = 0, have_books = 0, have_ratings = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        const struct option_spec *o = NULL;
        if (a[0] == '-' && a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            for (size_t k = 0; k < N_OPTIONS && !o; k++)
                if (strlen(options[k].long_name) == n && !strncmp(options[k].long_name, a + 2, n))
                    o = &options[k];
            if (o && eq) {
                if (!o->arg)
                    return fail("option --%s takes no value", o->long_name);
                val = eq + 1;
            }
        } else if (a[0] == '-' && a[1] && !a[2]) {
            for (size_t k = 0; k < N_OPTIONS && !o; k++)
                if (options[k].short_name == a[1])
                    o = &options[k];
        }
        if (!o)
            return fail("unknown option '%s' (see --help)", a);
        if (o->arg && !val) {
            if (i + 1 >= argc)
                return fail("option --%s needs a value %s", o->long_name, o->arg);
            val = argv[++i];
        }
        uint64_t v;
        switch (o->id) {
        case OPT_USERS:
        case OPT_BOOKS:
        case OPT_RANK:
            if (!parse_count(val, UINT32_MAX, &v))
                return fail("--%s '%s' is not a count up to %" PRIu32, o->long_name, val,
                            UINT32_MAX);
            if (o->id == OPT_USERS)
                p.n_users = (uint32_t)v, have_users = 1;
            else if (o->id == OPT_BOOKS)
                p.n_books = (uint32_t)v, have_books = 1;
            else
                p.rank = (uint32_t)v;
            break;
        case OPT_RATINGS:
            if (!parse_count(val, UINT64_MAX, &v))
                return fail("--ratings '%s' is not a count", val);
            p.n_ratings = v;
            have_ratings = 1;
            break;
        case OPT_SEED:
            if (!parse_count(val, UINT64_MAX, &v))
                return fail("--seed '%s' is not a non-negative integer", val);
            p.seed = v;
            break;
        case OPT_NOISE:
            if (!parse_float(val, &p.noise))
                return fail("--noise '%s' is not a number", val);
            break;
        case OPT_SKEW:
            if (!parse_float(val, &p.pop_skew))
                return fail("--skew '%s' is not a number", val);
            break;
        case OPT_USER_FIRST:
            p.user_first = 1;
            break;
        case OPT_OUTPUT:
            out = val;
            break;
        case OPT_QUIET:
            quiet = 1;
            break;
        case OPT_HELP:
            usage(stdout);
            return 0;
        }
    }
    if (!have_users || !have_books || !have_ratings)
        return fail("--users, --books and --ratings are required (see --help)");
    if (!out || !*out)
        return fail("no output file; give -o FILE (see --help)");

    double t0 = now();
    br_diag diag;
    br_diag_clear(&diag);
    br_err e = br_gen_write(&p, out, &diag);
    if (e)
        return fail("%s", br_diag_text(&diag, e));
    if (!quiet)
        printf("bookrec-gen: wrote %" PRIu64 " ratings (%" PRIu32 " users, %" PRIu32
               " books, rank %" PRIu32 ") to %s in %.2f s\n",
               p.n_ratings, p.n_users, p.n_books, p.rank, out, now() - t0);
    return 0;
}
