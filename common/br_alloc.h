/*
 * br_alloc.h - zeroed, 64-byte aligned blocks: rows of embeddings and SIMD
 * tables start on a cache line (and an AVX-512 register's width), and
 * padding is zero. Free them with free(). Also the prefetch of such a row.
 */
#ifndef BR_ALLOC_H
#define BR_ALLOC_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* bytes rounded up to 64 (at least 64), zeroed; NULL when out of memory or
 * when the size overflows. */
/* Not zeroed: for arrays the caller fills at once (their pages are then
 * first touched by the threads that fill them). */
static inline void *br_alloc64_raw(size_t bytes)
{
    if (bytes > SIZE_MAX - 63)
        return NULL;
    bytes = (bytes + 63) & ~(size_t)63;
    if (bytes == 0)
        bytes = 64;
    return aligned_alloc(64, bytes);
}

static inline void *br_alloc64(size_t bytes)
{
    void *p = br_alloc64_raw(bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

/* Asks for the n floats at p ahead of use, a cache line at a time
 * (`write`: they will be written too). For rows read at random: a row's
 * lines are then fetched together instead of one miss after another. */
static inline void br_prefetch_floats(const float *p, size_t n, int write)
{
    const char *c = (const char *)p;
    for (size_t off = 0; off < n * sizeof(float); off += 64) {
        if (write)
            __builtin_prefetch(c + off, 1);
        else
            __builtin_prefetch(c + off, 0);
    }
}

/* n floats, as br_alloc64 / br_alloc64_raw. */
static inline float *br_falloc64(size_t n)
{
    return n > SIZE_MAX / sizeof(float) ? NULL : (float *)br_alloc64(n * sizeof(float));
}

static inline float *br_falloc64_raw(size_t n)
{
    return n > SIZE_MAX / sizeof(float) ? NULL : (float *)br_alloc64_raw(n * sizeof(float));
}

#endif
