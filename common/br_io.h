/*
 * br_io.h - whole-file reads (plain or gzip, detected by content) and atomic
 * file replacement.
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

/* Decompresses a gzip buffer into a malloc'd, NUL-terminated buffer. */
br_err br_gunzip(const void *src, size_t src_len, const char *name,
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

#endif
