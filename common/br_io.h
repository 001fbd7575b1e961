/*
 * br_io.h - whole-file reads (plain or gzip, detected by content), atomic
 * file replacement, and CSV field output.
 *
 * Atomic replacement follows the usual recipe: write to a temporary file in
 * the target's folder, fsync it, rename it over the target, fsync the folder.
 * An interrupted writer leaves the old target intact and, at worst, a stray
 * "<target>.tmp.<pid>" file, never a partial file at the target path.
 */
#ifndef BR_IO_H
#define BR_IO_H

#include <stddef.h>
#include <stdio.h>
#include "br_error.h"

/* Reads a whole file into a malloc'd buffer (NUL-terminated, the NUL not
 * counted in *len). Gzip content (magic 1f 8b) is decompressed, whatever the
 * file's name. The caller frees *buf. */
br_err br_read_file(const char *path, char **buf, size_t *len, br_diag *diag);

/* Decompresses a gzip buffer into a malloc'd, NUL-terminated buffer.
 * The output may be at most br_gunzip_limit(src_len) bytes: a "gzip bomb"
 * (deflate reaches ~1000:1 on repetitive input) fails with BR_ERR_RANGE and
 * a message naming the file and the limit, instead of taking the memory. */
br_err br_gunzip(const void *src, size_t src_len, const char *name,
                 char **buf, size_t *len, br_diag *diag);

/* The output limit: BR_GUNZIP_RATIO times the compressed size, and never
 * less than BR_GUNZIP_FLOOR. Real CSVs compress 3-5x (goodbooks-10k: 3.3x
 * to 3.9x), so 100x is far above any honest file. */
#define BR_GUNZIP_RATIO 100
#define BR_GUNZIP_FLOOR ((size_t)64 << 20)
size_t br_gunzip_limit(size_t src_len);

/* br_gunzip with an explicit output limit in bytes (for tests). */
br_err br_gunzip_max(const void *src, size_t src_len, const char *name, size_t max_out,
                     char **buf, size_t *len, br_diag *diag);

/* An atomic writer: bytes go to a temporary file; commit makes them the
 * target in one step; abort (or free without commit) removes the temporary. */
typedef struct br_atomic br_atomic;

br_err br_atomic_open(const char *path, br_atomic **out, br_diag *diag);
FILE *br_atomic_file(br_atomic *a);                  /* stdio stream to write to */
br_err br_atomic_commit(br_atomic *a, br_diag *diag); /* flush, fsync, rename, fsync dir; frees a */
void br_atomic_abort(br_atomic *a);                   /* removes the temporary; frees a; NULL ok */

/* 1 if path names an existing regular file, else 0. */
int br_file_exists(const char *path);

/* Writes s to f as one CSV field (RFC 4180): as is, or in double quotes with
 * quotes doubled when it holds a comma, quote or line break. */
void br_csv_field(FILE *f, const char *s);

#endif
