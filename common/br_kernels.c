/*
 * br_kernels.c - run-time choice of the kernel table.
 */
#include "br_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Defined in br_kernels_avx2.c / br_kernels_avx512.c; only called when the
 * CPU supports them. */
const br_kernels *br_kernels_avx2_table(void);
const br_kernels *br_kernels_avx512_table(void);

float br_sigmoid_neg(float x)
{
    if (x > 30.0f)
        return 0.0f;
    if (x < -30.0f)
        return 1.0f;
    return 1.0f / (1.0f + expf(x));
}

const br_kernels *br_kernels_avx2(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return br_kernels_avx2_table();
#endif
    return NULL;
}

const br_kernels *br_kernels_avx512(void)
{
#if defined(__x86_64__)
    if (br_kernels_avx2() && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni"))
        return br_kernels_avx512_table();
#endif
    return NULL;
}

static const br_kernels *br_kernels_choose(void)
{
    const char *force = getenv("BOOKREC_KERNEL");
    if (force && strcmp(force, "scalar") == 0)
        return br_kernels_scalar();
    const br_kernels *k = NULL;
    if (!force || strcmp(force, "avx2") != 0)
        k = br_kernels_avx512();
    if (!k)
        k = br_kernels_avx2();
    return k ? k : br_kernels_scalar();
}

const br_kernels *br_kernels_get(void)
{
    /* A benign race: every thread computes the same pointer. */
    static const br_kernels *_Atomic chosen;
    const br_kernels *k = chosen;
    if (!k) {
        k = br_kernels_choose();
        chosen = k;
    }
    return k;
}
