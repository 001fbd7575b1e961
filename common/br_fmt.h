/*
 * br_fmt.h - number text without printf: a whole number in decimal (the
 * server's answers, bookrec-infer's CSV, bookrec-gen's ratings), and a
 * float exactly as printf's "%.7g" writes it (the server's scores, what the
 * answers have always carried).
 *
 * A top-k answer holds a dozen numbers; through vsnprintf they cost about
 * as many instructions as the rest of the request's user-space work outside
 * scoring and libmicrohttpd's buffer clearing (callgrind: ~30,000 of
 * ~46,000 per GET /v1/recommend at k=10). These write the same bytes in a
 * few dozen instructions each.
 *
 * Nothing here allocates, prints or fails.
 */
#ifndef BR_FMT_H
#define BR_FMT_H

#include <stddef.h>
#include <stdint.h>

/* Room for any output of the functions below, NUL included. */
#define BR_FMT_MAX 32

/* v in decimal ("%llu") into out, NUL-terminated; returns the length. */
size_t br_fmt_uint(char *out, uint64_t v);

/* The bytes snprintf(out, BR_FMT_MAX, "%.7g", (double)v) writes, for any
 * float (non-finite values included), NUL-terminated; returns the length.
 * Normal values from 1e-5 to 1e15 in magnitude (every score seen so far)
 * are converted here, exactly (correct rounding, ties to even, as glibc
 * does); zeros, subnormals, non-finite and other values go to snprintf. */
size_t br_fmt_g7(char *out, float v);

/* The bytes jansson writes for a real with JSON_REAL_PRECISION(7): "%.7g"
 * of v, then ".0" if that has neither '.' nor 'e', and the exponent
 * without '+' or leading zeros ("1e+07" -> "1e7"). v finite. */
size_t br_fmt_json_real7(char *out, double v);

#endif
