/*
 * br_rng.c - the non-inline parts of the seeded generator.
 */
#include "br_rng.h"

#include <math.h>

double br_rng_normal(br_rng *r)
{
    double u1 = br_rng_uniform(r), u2 = br_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Marsaglia's polar method: a point drawn uniformly in the unit disc gives
 * two normals with one log and no trigonometry. */
void br_rng_normal2(br_rng *r, double *a, double *b)
{
    double x, y, s;
    do {
        x = 2.0 * br_rng_uniform(r) - 1.0;
        y = 2.0 * br_rng_uniform(r) - 1.0;
        s = x * x + y * y;
    } while (s >= 1.0 || s < 1e-300);
    double m = sqrt(-2.0 * log(s) / s);
    *a = x * m;
    *b = y * m;
}

void br_rng_shuffle_u32(br_rng *r, uint32_t *v, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(((br_rng_next(r) >> 11) * (double)i) * 0x1.0p-53);
        if (j >= i)
            j = i - 1;
        uint32_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}
