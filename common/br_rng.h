/*
 * br_rng.h - small, fast, seeded pseudo-random numbers (xoshiro256** seeded
 * through splitmix64). Same seed, same sequence, on every machine.
 */
#ifndef BR_RNG_H
#define BR_RNG_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct br_rng {
    uint64_t s[4];
} br_rng;

/* splitmix64 step: also a good 64-bit mixing function for hashing ids. */
static inline uint64_t br_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline void br_rng_seed(br_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = br_splitmix64(&x);
}

static inline uint64_t br_rng_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t br_rng_next(br_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = br_rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = br_rng_rotl(s[3], 45);
    return result;
}

/* Uniform in [0, n) without modulo bias worth caring about (Lemire's method). */
static inline uint32_t br_rng_below(br_rng *r, uint32_t n)
{
    return (uint32_t)(((br_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

/* Uniform double in [0, 1). */
static inline double br_rng_uniform(br_rng *r)
{
    return (double)(br_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Standard normal (Box-Muller; one of the pair is discarded for simplicity). */
double br_rng_normal(br_rng *r);
/* Two independent standard normals (the polar method): a fraction of the
 * cost per value of br_rng_normal. */
void br_rng_normal2(br_rng *r, double *a, double *b);

/* Close to a standard normal, cheaply: the sum of the four 16-bit uniforms
 * of one draw, centred and scaled to unit variance (Irwin-Hall, n = 4:
 * mean 0, variance 1, tails cut at +-3.46). For initial embeddings, where
 * the spread matters and the exact shape does not: about a tenth of the
 * cost of br_rng_normal2 per value. */
static inline float br_rng_bell(br_rng *r)
{
    uint64_t x = br_rng_next(r);
    uint32_t s = (uint32_t)(x & 0xffff) + (uint32_t)((x >> 16) & 0xffff) +
                 (uint32_t)((x >> 32) & 0xffff) + (uint32_t)(x >> 48);
    /* each term uniform on 0..65535 (+1/2 to centre the steps): variance
     * of the sum 4 x (65536^2 - 1) / 12 */
    return ((float)s + 2.0f - 131072.0f) * (float)(1.7320508075688772 / 65536.0);
}

/* Fisher-Yates shuffle of n items of `size` bytes (at most 64), the index
 * by br_rng_below; inlined with a constant size, the swaps are plain moves. */
static inline void br_rng_shuffle_items(br_rng *r, void *v, size_t n, size_t size)
{
    unsigned char *p = (unsigned char *)v, tmp[64];
    for (size_t i = n; i > 1; i--) {
        size_t j = br_rng_below(r, (uint32_t)i);
        memcpy(tmp, p + (i - 1) * size, size);
        memcpy(p + (i - 1) * size, p + j * size, size);
        memcpy(p + j * size, tmp, size);
    }
}

/* Fisher-Yates shuffle of n uint32 values. */
void br_rng_shuffle_u32(br_rng *r, uint32_t *v, size_t n);

#endif
