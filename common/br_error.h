/*
 * br_error.h - one error enum for the whole library, and a diagnostic buffer.
 *
 * Library functions return a br_err (BR_OK is 0) and never print or exit.
 * Where a caller wants detail ("ratings.csv:17: rating 7 is outside 1..5"),
 * it passes a br_diag; the function fills diag->msg on failure. A NULL diag is
 * always accepted. br_strerror() gives the short generic text of a code.
 */
#ifndef BR_ERROR_H
#define BR_ERROR_H

#include <stddef.h>

typedef enum br_err {
    BR_OK = 0,
    BR_ERR_NOMEM,            /* out of memory */
    BR_ERR_IO,               /* read/write/open failed; detail carries strerror */
    BR_ERR_NOT_FOUND,        /* a file, user, book or folder does not exist */
    BR_ERR_PARSE,            /* malformed input text (CSV row, number, list) */
    BR_ERR_EMPTY,            /* empty or header-only input */
    BR_ERR_RANGE,            /* a value outside its allowed range */
    BR_ERR_ARG,              /* invalid argument from the caller */
    BR_ERR_MODEL_MAGIC,      /* not a bookrec model file */
    BR_ERR_MODEL_VERSION,    /* model written by a newer format version */
    BR_ERR_MODEL_ENDIAN,     /* model written on a machine of other byte order */
    BR_ERR_MODEL_TRUNCATED,  /* model file shorter than its header says */
    BR_ERR_MODEL_CHECKSUM,   /* model contents do not match their checksum */
    BR_ERR_MODEL_CORRUPT,    /* model header or section table inconsistent */
    BR_ERR_NUMERIC,          /* NaN or infinity where a finite number is needed */
    BR_ERR_UNSUPPORTED,      /* a feature this build or this model lacks */
    BR_ERR__COUNT
} br_err;

/* Short, static, human-readable text for an error code. Never NULL. */
const char *br_strerror(br_err e);

#define BR_DIAG_MAX 512
typedef struct br_diag {
    char msg[BR_DIAG_MAX];   /* detail of the last failure, "" if none */
} br_diag;

/* Clears a diag (NULL accepted). */
void br_diag_clear(br_diag *d);

/* Formats a detail message into d (if d is not NULL) and returns e, so
 * library code can write `return br_fail(d, BR_ERR_PARSE, "%s:%zu: ...", ...)`. */
br_err br_fail(br_diag *d, br_err e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The detail text if there is one, else br_strerror(e). */
const char *br_diag_text(const br_diag *d, br_err e);

#endif
