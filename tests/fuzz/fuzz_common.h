/*
 * fuzz_common.h - small helpers shared by the libFuzzer targets in
 * tests/fuzz/ (see scripts/fuzz.sh and docs/RELIABILITY.md).
 *
 * FUZZ_CHECK aborts on a broken invariant, so libFuzzer reports it as a
 * crash with the input that caused it. The targets only ever call the
 * library's public API.
 */
#ifndef BR_FUZZ_COMMON_H
#define BR_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "br_error.h"

#define FUZZ_CHECK(cond)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);  \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

/* Every failure must leave a NUL-terminated, non-empty message that names
 * the input (`name`), and a code inside the enum. */
static inline void fuzz_check_diag(br_err e, const br_diag *d, const char *name)
{
    FUZZ_CHECK(e > BR_OK && e < BR_ERR__COUNT);
    FUZZ_CHECK(memchr(d->msg, '\0', sizeof d->msg) != NULL);
    FUZZ_CHECK(d->msg[0] != '\0');
    if (name)
        FUZZ_CHECK(strstr(d->msg, name) != NULL);
}

#endif
