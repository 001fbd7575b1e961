/*
 * br_error.c - error code texts and the diagnostic buffer helpers.
 */
#include "br_error.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const br_err_text[BR_ERR__COUNT] = {
    [BR_OK] = "success",
    [BR_ERR_NOMEM] = "out of memory",
    [BR_ERR_IO] = "input/output error",
    [BR_ERR_NOT_FOUND] = "not found",
    [BR_ERR_PARSE] = "malformed input",
    [BR_ERR_EMPTY] = "input is empty",
    [BR_ERR_RANGE] = "value out of range",
    [BR_ERR_ARG] = "invalid argument",
    [BR_ERR_MODEL_MAGIC] = "not a bookrec model file",
    [BR_ERR_MODEL_VERSION] = "model file format version is newer than this program supports",
    [BR_ERR_MODEL_ENDIAN] = "model file has the wrong byte order",
    [BR_ERR_MODEL_TRUNCATED] = "model file is truncated",
    [BR_ERR_MODEL_CHECKSUM] = "model file is damaged (checksum mismatch)",
    [BR_ERR_MODEL_CORRUPT] = "model file is damaged (inconsistent header)",
    [BR_ERR_NUMERIC] = "numeric failure (NaN or infinity)",
    [BR_ERR_UNSUPPORTED] = "not supported",
};

const char *br_strerror(br_err e)
{
    if ((unsigned)e >= BR_ERR__COUNT || !br_err_text[e])
        return "unknown error";
    return br_err_text[e];
}

void br_diag_clear(br_diag *d)
{
    if (d)
        d->msg[0] = '\0';
}

br_err br_fail(br_diag *d, br_err e, const char *fmt, ...)
{
    if (d) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->msg, sizeof d->msg, fmt, ap);
        va_end(ap);
    }
    return e;
}

const char *br_diag_text(const br_diag *d, br_err e)
{
    if (d && d->msg[0])
        return d->msg;
    return br_strerror(e);
}
