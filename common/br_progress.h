/*
 * br_progress.h - the programs' shared console helpers: elapsed time and a
 * progress line. Only the programs' main() use these (library code never
 * prints); output goes to the stream the program passes, normally stderr.
 */
#ifndef BR_PROGRESS_H
#define BR_PROGRESS_H

#include <stdio.h>

/* The programs' messages. br_cli_init names the program (for
 * "bookrec-train: error: ...") and br_cli_quiet silences br_say. */
void br_cli_init(const char *prog);
void br_cli_quiet(int quiet);

/* Progress and notes on stderr, unless quiet. */
void br_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "<prog>: error: <message>" on stderr, whatever the quiet mode; returns
 * code, so a main can write `return br_error(2, "...")`. */
int br_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Monotonic seconds. */
double br_now(void);

/* 1 if f is a terminal. */
int br_isatty(FILE *f);

/* Formats seconds as "0.42 s", "1 m 05 s", "2 h 03 m" into buf. */
const char *br_fmt_duration(double s, char *buf, size_t cap);

/* Formats an integer with thousands separators: 981756 -> "981,756". */
const char *br_fmt_count(unsigned long long v, char *buf, size_t cap);

#endif
