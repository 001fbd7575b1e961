/*
 * fuzz_ratings_skip.c - libFuzzer target for br_ratings_parse in the
 * lenient modes: skip_bad (malformed rows counted, not fatal) and
 * skip_bad + implicit. Same checks as fuzz_ratings.c, which holds the code.
 */
#define FUZZ_RATINGS_SKIP 1
#include "fuzz_ratings.c"
