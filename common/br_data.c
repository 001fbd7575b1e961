/*
 * br_data.c - data folder lookup (see br_data.h for the order).
 */
#include "br_data.h"
#include "br_io.h"

#include <stdio.h>
#include <stdlib.h>

br_err br_data_file(const char *dir, const char *stem, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s.csv", dir, stem);
    if (br_file_exists(out))
        return BR_OK;
    snprintf(out, cap, "%s/%s.csv.gz", dir, stem);
    return br_file_exists(out) ? BR_OK : BR_ERR_NOT_FOUND;
}

static int br_data_has_ratings(const char *dir)
{
    char p[4096];
    return br_data_file(dir, "ratings", p, sizeof p) == BR_OK;
}

br_err br_data_find(const char *explicit_dir, char *out, size_t cap, br_diag *diag)
{
    static const char hint[] =
        "get the public goodbooks-10k data set with scripts/fetch-data.sh (it writes ./data), "
        "or pass --data DIR / set BOOKREC_DATA";
    if (explicit_dir) {
        if (br_data_has_ratings(explicit_dir)) {
            snprintf(out, cap, "%s", explicit_dir);
            return BR_OK;
        }
        return br_fail(diag, BR_ERR_NOT_FOUND, "no ratings.csv or ratings.csv.gz in '%s'; %s",
                       explicit_dir, hint);
    }
    const char *env = getenv("BOOKREC_DATA");
    if (env && *env && br_data_has_ratings(env)) {
        snprintf(out, cap, "%s", env);
        return BR_OK;
    }
    static const char *const places[] = {"data", "../shared/data/goodbooks-10k"};
    for (size_t i = 0; i < sizeof places / sizeof *places; i++) {
        if (br_data_has_ratings(places[i])) {
            snprintf(out, cap, "%s", places[i]);
            return BR_OK;
        }
    }
    return br_fail(diag, BR_ERR_NOT_FOUND,
                   "goodbooks-10k data not found (looked in $BOOKREC_DATA%s%s%s, ./data, "
                   "../shared/data/goodbooks-10k); %s",
                   env && *env ? "='" : " (unset)", env && *env ? env : "",
                   env && *env ? "'" : "", hint);
}
