/*
 * br_data.h - where the goodbooks-10k files are.
 *
 * The data folder is the first of these that holds ratings.csv or
 * ratings.csv.gz: the folder the user named (--data DIR; when given, no
 * other place is tried), $BOOKREC_DATA, ./data, ../shared/data/goodbooks-10k.
 */
#ifndef BR_DATA_H
#define BR_DATA_H

#include <stddef.h>
#include "br_error.h"

/* Finds the data folder; writes it to out. BR_ERR_NOT_FOUND with a message
 * that lists the places tried and how to fetch the data. */
br_err br_data_find(const char *explicit_dir, char *out, size_t cap, br_diag *diag);

/* dir/stem.csv if it exists, else dir/stem.csv.gz if it exists, else
 * BR_ERR_NOT_FOUND (out then holds dir/stem.csv.gz). */
br_err br_data_file(const char *dir, const char *stem, char *out, size_t cap);

#endif
