/*
 * br_opt.h - one option table per program that both parses the command line
 * and prints the usage text (after git's parse-options).
 *
 * Accepted forms: -j 4, -j4, --dim 32, --dim=32, and flags (-q, --json).
 * Arguments that do not start with '-' (and everything after "--") are
 * positional and left in place; br_opt_parse reports how many there were.
 * Parsing never prints: errors come back as BR_ERR_ARG with a message.
 * Also br_parse_id, the one reading of a typed dataset id (command line and
 * HTTP query alike).
 */
#ifndef BR_OPT_H
#define BR_OPT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "br_error.h"

typedef enum br_opt_type {
    BR_OPT_FLAG,    /* int, set to 1 */
    BR_OPT_INT,     /* int */
    BR_OPT_UINT,    /* unsigned */
    BR_OPT_U64,     /* uint64_t */
    BR_OPT_FLOAT,   /* float */
    BR_OPT_DOUBLE,  /* double */
    BR_OPT_STR,     /* const char * (points into argv) */
    BR_OPT_GROUP,   /* not an option: a heading in the usage text */
} br_opt_type;

typedef struct br_opt {
    char short_name;        /* 0 if none */
    const char *long_name;  /* without the dashes; NULL ends the table */
    br_opt_type type;
    void *dest;
    const char *arg;        /* placeholder for the value in usage, e.g. "N" */
    const char *help;
} br_opt;

/* Parses argv[1..argc). Positional arguments are moved, in order, to
 * argv[1..1+*n_pos). */
br_err br_opt_parse(const br_opt *table, int argc, char **argv, int *n_pos, br_diag *diag);

/* Writes "usage: <synopsis>" and a line per option. */
void br_opt_usage(FILE *f, const char *synopsis, const br_opt *table);

/* A dataset id as users type it (command line, HTTP query): the first len
 * bytes of s are decimal digits only, value 1 .. 2^32-1. 1 and *out set, or
 * 0 for anything else (empty, signs, spaces, overflow, zero). */
int br_parse_id(const char *s, size_t len, uint32_t *out);

#endif
