/*
 * test_kernels.c - the kernel tables (br_kernels.h).
 *
 * For every kernel (dot, sgd_mf, adam_mf, bpr_mf, adam_bpr, score) the AVX2 table must
 * give BIT-IDENTICAL results to the scalar reference on random inputs of every
 * padded length 8..136 (the design mirrors the operation order exactly, so
 * memcmp is the right comparison, on returned values and on every updated
 * array). Both tables are also checked against a plain double-precision
 * evaluation of the documented formula, within a tolerance derived from the
 * floating-point error bound of the operations, so a kernel that is wrong in
 * both tables also fails. Finally the dispatch: br_kernels_get() picks AVX2
 * on a CPU that has AVX2 and FMA, and the scalar table under
 * BOOKREC_KERNEL=scalar (checked in a forked child, before this process
 * makes its own first call).
 */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "br_kernels.h"
#include "br_rng.h"

#define N_MAX 136   /* largest vector length tested */

static int g_get_called;   /* br_kernels_get() has run in this process */

/* ---- helpers ---------------------------------------------------------------- */

/* 64-byte aligned, zeroed floats (rows are 32-byte aligned in real use). */
static float *falloc(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    assert_non_null(p);
    memset(p, 0, bytes ? bytes : 64);
    return p;
}

/* A random float with a spread of magnitudes: uniform in (-1, 1) times 2^e,
 * e in [lo_exp, hi_exp]. Varied exponents make rounding depend on the
 * operation order, so an order mismatch between tables shows. */
static float rnd(br_rng *g, int lo_exp, int hi_exp)
{
    double u = br_rng_uniform(g) * 2.0 - 1.0;
    int e = lo_exp + (int)br_rng_below(g, (uint32_t)(hi_exp - lo_exp + 1));
    return (float)ldexp(u, e);
}

static void fill(br_rng *g, float *v, size_t n, int lo_exp, int hi_exp)
{
    for (size_t i = 0; i < n; i++)
        v[i] = rnd(g, lo_exp, hi_exp);
}

static void assert_same_bits(const void *a, const void *b, size_t bytes, const char *what,
                             size_t n)
{
    if (memcmp(a, b, bytes) != 0) {
        const float *fa = a, *fb = b;
        for (size_t i = 0; i < bytes / sizeof(float); i++)
            if (memcmp(&fa[i], &fb[i], sizeof(float)) != 0) {
                print_error("%s (n=%zu): scalar and avx2 differ at [%zu]: %a vs %a\n", what, n, i,
                            (double)fa[i], (double)fb[i]);
                break;
            }
        fail();
    }
}

static void assert_close(double got, double ref, double tol, const char *what, const char *table,
                         size_t n, size_t i)
{
    if (!(fabs(got - ref) <= tol)) {
        print_error("%s [%s] (n=%zu) at [%zu]: got %.9g, reference %.9g, |diff| %.3g > tol %.3g\n",
                    what, table, n, i, got, ref, fabs(got - ref), tol);
        fail();
    }
}

/* Error bound of the 8-lane fused dot product (n/8 roundings per lane, three
 * levels of the reduction tree) relative to sum |a_i b_i|, with a margin. */
static double dot_tol(size_t n, double abs_sum)
{
    return ((double)n / 8.0 + 6.0) * FLT_EPSILON * abs_sum + 1e-30;
}

static const size_t *lengths(size_t *count)
{
    static size_t ns[N_MAX / 8];
    size_t c = 0;
    for (size_t n = 8; n <= N_MAX; n += 8)
        ns[c++] = n;
    *count = c;
    return ns;
}

/* The tables under test: scalar, and avx2 if the CPU has it. */
static int tables(const br_kernels *t[2])
{
    t[0] = br_kernels_scalar();
    t[1] = br_kernels_avx2();
    return t[1] ? 2 : 1;
}

/* ---- dispatch ---------------------------------------------------------------- */

static int cpu_has_avx2_fma(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* In a child process that has not called br_kernels_get() yet, the
 * environment variable forces the scalar table. */
static void test_get_env_forces_scalar(void **state)
{
    (void)state;
    assert_false(g_get_called);   /* must run first: the choice is made once */
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("BOOKREC_KERNEL", "scalar", 1);
        const br_kernels *k = br_kernels_get();
        _exit(k == br_kernels_scalar() && strcmp(k->name, "scalar") == 0 ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_tables_and_get(void **state)
{
    (void)state;
    const br_kernels *s = br_kernels_scalar(), *a = br_kernels_avx2();
    assert_non_null(s);
    assert_string_equal(s->name, "scalar");
    assert_non_null(s->dot);
    assert_non_null(s->sgd_mf);
    assert_non_null(s->adam_mf);
    assert_non_null(s->adam_bpr);
    assert_non_null(s->bpr_mf);
    assert_non_null(s->score);
    assert_non_null(s->qscan);
    /* br_kernels_avx2() must agree with what the CPU says. */
    if (cpu_has_avx2_fma()) {
        assert_non_null(a);
        assert_string_equal(a->name, "avx2");
        assert_non_null(a->dot);
        assert_non_null(a->sgd_mf);
        assert_non_null(a->adam_mf);
        assert_non_null(a->adam_bpr);
        assert_non_null(a->bpr_mf);
        assert_non_null(a->score);
        assert_non_null(a->qscan);
        assert_ptr_not_equal(a, s);
    } else {
        assert_null(a);
    }
    /* The avx512 table: AVX2's kernels but for its own qscan, and only on
     * a CPU with AVX-512 F, BW and VNNI. */
    const br_kernels *x = br_kernels_avx512();
#if defined(__x86_64__)
    int has512 = a && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vnni");
#else
    int has512 = 0;
#endif
    if (has512) {
        assert_non_null(x);
        assert_string_equal(x->name, "avx512");
        assert_ptr_equal(x->dot, a->dot);
        assert_ptr_equal(x->sgd_mf, a->sgd_mf);
        assert_ptr_equal(x->score, a->score);
        assert_non_null(x->qscan);
        assert_ptr_not_equal(x->qscan, a->qscan);
    } else {
        assert_null(x);
    }
    g_get_called = 1;
    const br_kernels *k = br_kernels_get();
    assert_ptr_equal(k, br_kernels_get());   /* chosen once */
    const char *force = getenv("BOOKREC_KERNEL");
    if (force && strcmp(force, "scalar") == 0)
        assert_ptr_equal(k, s);
    else if (x && !(force && strcmp(force, "avx2") == 0))
        assert_ptr_equal(k, x);
    else if (a)
        assert_ptr_equal(k, a);
    else
        assert_ptr_equal(k, s);
}

/* ---- dot ----------------------------------------------------------------- */

static void test_dot(void **state)
{
    (void)state;
    const br_kernels *t[2];
    int nt = tables(t);
    br_rng g;
    br_rng_seed(&g, 1);
    size_t nn;
    const size_t *ns = lengths(&nn);
    float *a = falloc(N_MAX), *b = falloc(N_MAX);
    for (int rep = 0; rep < 20; rep++)
        for (size_t li = 0; li < nn; li++) {
            size_t n = ns[li];
            fill(&g, a, n, -6, 6);
            fill(&g, b, n, -6, 6);
            double ref = 0, abs_sum = 0;
            for (size_t i = 0; i < n; i++) {
                ref += (double)a[i] * b[i];
                abs_sum += fabs((double)a[i] * b[i]);
            }
            float out[2];
            for (int k = 0; k < nt; k++) {
                out[k] = t[k]->dot(a, b, n);
                assert_close(out[k], ref, dot_tol(n, abs_sum), "dot", t[k]->name, n, 0);
            }
            if (nt == 2)
                assert_same_bits(&out[0], &out[1], sizeof(float), "dot", n);
        }
    free(a);
    free(b);
}

/* ---- sgd_mf ---------------------------------------------------------------- */

static void test_sgd_mf(void **state)
{
    (void)state;
    const br_kernels *t[2];
    int nt = tables(t);
    br_rng g;
    br_rng_seed(&g, 2);
    size_t nn;
    const size_t *ns = lengths(&nn);
    float *p0 = falloc(N_MAX), *q0 = falloc(N_MAX);
    float *p[2] = {falloc(N_MAX), falloc(N_MAX)}, *q[2] = {falloc(N_MAX), falloc(N_MAX)};
    double rp[N_MAX], rq[N_MAX];
    for (int rep = 0; rep < 20; rep++)
        for (size_t li = 0; li < nn; li++) {
            size_t n = ns[li];
            fill(&g, p0, n, -4, 0);
            fill(&g, q0, n, -4, 0);
            float base = 3.0f + (float)br_rng_uniform(&g);
            float r = (float)(1 + br_rng_below(&g, 5));
            float lr = 0.05f * (float)(0.5 + br_rng_uniform(&g));
            float reg = 0.1f * (float)(0.5 + br_rng_uniform(&g));
            float regq = 0.1f * (float)(0.5 + br_rng_uniform(&g));   /* rows' own weights */
            /* double reference of the documented step */
            double dot = 0, abs_sum = 0;
            for (size_t i = 0; i < n; i++) {
                dot += (double)p0[i] * q0[i];
                abs_sum += fabs((double)p0[i] * q0[i]);
            }
            double e = (double)r - ((double)base + dot);
            double etol = dot_tol(n, abs_sum) + 4 * FLT_EPSILON * (fabs(base) + fabs(r));
            for (size_t i = 0; i < n; i++) {
                rp[i] = p0[i] + lr * (e * q0[i] - reg * p0[i]);
                rq[i] = q0[i] + lr * (e * p0[i] - regq * q0[i]);
            }
            float er[2];
            for (int k = 0; k < nt; k++) {
                memcpy(p[k], p0, n * sizeof(float));
                memcpy(q[k], q0, n * sizeof(float));
                er[k] = t[k]->sgd_mf(p[k], q[k], n, base, r, lr, reg, regq);
                assert_close(er[k], e, etol, "sgd_mf e", t[k]->name, n, 0);
                for (size_t i = 0; i < n; i++) {
                    double sp = fabs(p0[i]) + lr * (fabs(e * q0[i]) + reg * fabs(p0[i]));
                    double sq = fabs(q0[i]) + lr * (fabs(e * p0[i]) + regq * fabs(q0[i]));
                    assert_close(p[k][i], rp[i], 8 * FLT_EPSILON * sp + lr * fabs(q0[i]) * etol,
                                 "sgd_mf p", t[k]->name, n, i);
                    assert_close(q[k][i], rq[i], 8 * FLT_EPSILON * sq + lr * fabs(p0[i]) * etol,
                                 "sgd_mf q", t[k]->name, n, i);
                }
                /* the padding beyond n is never touched */
                for (size_t i = n; i < N_MAX; i++)
                    assert_true(p[k][i] == 0.0f && q[k][i] == 0.0f);
            }
            if (nt == 2) {
                assert_same_bits(&er[0], &er[1], sizeof(float), "sgd_mf e", n);
                assert_same_bits(p[0], p[1], n * sizeof(float), "sgd_mf p", n);
                assert_same_bits(q[0], q[1], n * sizeof(float), "sgd_mf q", n);
                /* a chain of further steps stays identical */
                for (int s = 0; s < 8; s++) {
                    float rr = (float)(1 + br_rng_below(&g, 5));
                    for (int k = 0; k < 2; k++)
                        er[k] = t[k]->sgd_mf(p[k], q[k], n, base, rr, lr, reg, regq);
                    assert_same_bits(&er[0], &er[1], sizeof(float), "sgd_mf chain e", n);
                }
                assert_same_bits(p[0], p[1], n * sizeof(float), "sgd_mf chain p", n);
                assert_same_bits(q[0], q[1], n * sizeof(float), "sgd_mf chain q", n);
            }
            for (int k = 0; k < 2; k++) {   /* clear for the next length */
                memset(p[k], 0, N_MAX * sizeof(float));
                memset(q[k], 0, N_MAX * sizeof(float));
            }
        }
    free(p0);
    free(q0);
    for (int k = 0; k < 2; k++) {
        free(p[k]);
        free(q[k]);
    }
}

/* ---- adam_mf --------------------------------------------------------------- */

typedef struct adam_bufs {
    float *p, *q, *mp, *vp, *mq, *vq;
} adam_bufs;

static void adam_alloc(adam_bufs *b)
{
    b->p = falloc(N_MAX);
    b->q = falloc(N_MAX);
    b->mp = falloc(N_MAX);
    b->vp = falloc(N_MAX);
    b->mq = falloc(N_MAX);
    b->vq = falloc(N_MAX);
}

static void adam_free(adam_bufs *b)
{
    free(b->p);
    free(b->q);
    free(b->mp);
    free(b->vp);
    free(b->mq);
    free(b->vq);
}

static void adam_copy(adam_bufs *d, const adam_bufs *s, size_t n)
{
    memcpy(d->p, s->p, n * sizeof(float));
    memcpy(d->q, s->q, n * sizeof(float));
    memcpy(d->mp, s->mp, n * sizeof(float));
    memcpy(d->vp, s->vp, n * sizeof(float));
    memcpy(d->mq, s->mq, n * sizeof(float));
    memcpy(d->vq, s->vq, n * sizeof(float));
}

static void adam_same(const adam_bufs *a, const adam_bufs *b, size_t n, const char *what)
{
    char name[64];
    const float *xa[6] = {a->p, a->q, a->mp, a->vp, a->mq, a->vq};
    const float *xb[6] = {b->p, b->q, b->mp, b->vp, b->mq, b->vq};
    static const char *names[6] = {"p", "q", "mp", "vp", "mq", "vq"};
    for (int j = 0; j < 6; j++) {
        snprintf(name, sizeof name, "%s %s", what, names[j]);
        assert_same_bits(xa[j], xb[j], n * sizeof(float), name, n);
    }
}

/* Reference for one parameter x with gradient gr: returns the new x and
 * checks the kernel's (x, m, v) against it. */
static void adam_check_one(const char *what, const char *table, size_t n, size_t i, float x0,
                           float m0, float v0, double gr, double gr_tol, double gr_abs,
                           const br_adam *a, float c, float x, float m, float v)
{
    double b1 = a->beta1, b2 = a->beta2, c1 = 1.0 - b1, c2 = 1.0 - b2;
    double mr = b1 * m0 + c1 * gr;
    double vr = b2 * v0 + c2 * gr * gr;
    double xr = x0 - c * mr / (sqrt(vr) + a->eps);
    /* Tolerances: a few roundings of each term, plus the gradient's error. */
    double mtol = 8 * FLT_EPSILON * (b1 * fabs(m0) + c1 * gr_abs) + c1 * gr_tol;
    double vtol = 8 * FLT_EPSILON * (b2 * v0 + c2 * gr_abs * gr_abs) +
                  c2 * (2 * gr_abs + gr_tol) * gr_tol;
    double sv = sqrt(vr);
    double stol = (mtol + fabs(mr) * vtol / (2 * vr)) / sv +
                  8 * FLT_EPSILON * fabs(mr) / sv;   /* error of m / sqrt(v) */
    double xtol = 8 * FLT_EPSILON * (fabs(x0) + c * fabs(mr) / sv) + c * stol;
    char name[64];
    snprintf(name, sizeof name, "adam_mf %s m", what);
    assert_close(m, mr, mtol, name, table, n, i);
    snprintf(name, sizeof name, "adam_mf %s v", what);
    assert_close(v, vr, vtol, name, table, n, i);
    snprintf(name, sizeof name, "adam_mf %s", what);
    assert_close(x, xr, xtol, name, table, n, i);
}

static void test_adam_mf(void **state)
{
    (void)state;
    const br_kernels *t[2];
    int nt = tables(t);
    br_rng g;
    br_rng_seed(&g, 3);
    size_t nn;
    const size_t *ns = lengths(&nn);
    adam_bufs s0, s[2];
    adam_alloc(&s0);
    adam_alloc(&s[0]);
    adam_alloc(&s[1]);
    for (int rep = 0; rep < 20; rep++)
        for (size_t li = 0; li < nn; li++) {
            size_t n = ns[li];
            fill(&g, s0.p, n, -4, 0);
            fill(&g, s0.q, n, -4, 0);
            fill(&g, s0.mp, n, -6, -1);
            fill(&g, s0.mq, n, -6, -1);
            for (size_t i = 0; i < n; i++) {   /* second moments: positive, not tiny */
                s0.vp[i] = fabsf(rnd(&g, -8, -2)) + 1e-3f;
                s0.vq[i] = fabsf(rnd(&g, -8, -2)) + 1e-3f;
            }
            br_adam a = {.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                         .reg = 0.1f * (float)(0.5 + br_rng_uniform(&g))};
            float base = 3.0f + (float)br_rng_uniform(&g);
            float r = (float)(1 + br_rng_below(&g, 5));
            float cp = 0.01f * (float)(0.5 + br_rng_uniform(&g));
            float cq = 0.02f * (float)(0.5 + br_rng_uniform(&g));
            double dot = 0, abs_sum = 0;
            for (size_t i = 0; i < n; i++) {
                dot += (double)s0.p[i] * s0.q[i];
                abs_sum += fabs((double)s0.p[i] * s0.q[i]);
            }
            double e = (double)r - ((double)base + dot);
            double etol = dot_tol(n, abs_sum) + 4 * FLT_EPSILON * (fabs(base) + fabs(r));
            float er[2];
            for (int k = 0; k < nt; k++) {
                adam_copy(&s[k], &s0, n);
                er[k] = t[k]->adam_mf(s[k].p, s[k].q, s[k].mp, s[k].vp, s[k].mq, s[k].vq, n,
                                      base, r, &a, cp, cq);
                assert_close(er[k], e, etol, "adam_mf e", t[k]->name, n, 0);
                for (size_t i = 0; i < n; i++) {
                    /* gradient of e^2/2 + reg x^2/2 with e = r - base - p.q */
                    double gp = -e * s0.q[i] + a.reg * s0.p[i];
                    double gq = -e * s0.p[i] + a.reg * s0.q[i];
                    double gpa = fabs(e * s0.q[i]) + a.reg * fabs(s0.p[i]);
                    double gqa = fabs(e * s0.p[i]) + a.reg * fabs(s0.q[i]);
                    double gpt = 4 * FLT_EPSILON * gpa + fabs(s0.q[i]) * etol;
                    double gqt = 4 * FLT_EPSILON * gqa + fabs(s0.p[i]) * etol;
                    adam_check_one("p", t[k]->name, n, i, s0.p[i], s0.mp[i], s0.vp[i], gp, gpt,
                                   gpa, &a, cp, s[k].p[i], s[k].mp[i], s[k].vp[i]);
                    adam_check_one("q", t[k]->name, n, i, s0.q[i], s0.mq[i], s0.vq[i], gq, gqt,
                                   gqa, &a, cq, s[k].q[i], s[k].mq[i], s[k].vq[i]);
                }
            }
            if (nt == 2) {
                assert_same_bits(&er[0], &er[1], sizeof(float), "adam_mf e", n);
                adam_same(&s[0], &s[1], n, "adam_mf");
                for (int st = 0; st < 8; st++) {
                    float rr = (float)(1 + br_rng_below(&g, 5));
                    for (int k = 0; k < 2; k++)
                        er[k] = t[k]->adam_mf(s[k].p, s[k].q, s[k].mp, s[k].vp, s[k].mq, s[k].vq,
                                              n, base, rr, &a, cp, cq);
                    assert_same_bits(&er[0], &er[1], sizeof(float), "adam_mf chain e", n);
                }
                adam_same(&s[0], &s[1], n, "adam_mf chain");
            }
        }
    adam_free(&s0);
    adam_free(&s[0]);
    adam_free(&s[1]);
}

/* ---- bpr_mf ---------------------------------------------------------------- */

static void test_bpr_mf(void **state)
{
    (void)state;
    const br_kernels *t[2];
    int nt = tables(t);
    br_rng g;
    br_rng_seed(&g, 4);
    size_t nn;
    const size_t *ns = lengths(&nn);
    float *p0 = falloc(N_MAX), *a0 = falloc(N_MAX), *b0 = falloc(N_MAX);
    float *p[2], *qi[2], *qj[2];
    for (int k = 0; k < 2; k++) {
        p[k] = falloc(N_MAX);
        qi[k] = falloc(N_MAX);
        qj[k] = falloc(N_MAX);
    }
    /* base_diff values: ordinary ones and both saturated ends of the sigmoid */
    for (int rep = 0; rep < 24; rep++)
        for (size_t li = 0; li < nn; li++) {
            size_t n = ns[li];
            fill(&g, p0, n, -3, 0);
            fill(&g, a0, n, -3, 0);
            fill(&g, b0, n, -3, 0);
            float bd = rep % 8 == 6 ? 45.0f : rep % 8 == 7 ? -45.0f : rnd(&g, -3, 1);
            float lr = 0.05f * (float)(0.5 + br_rng_uniform(&g));
            float reg = 0.1f * (float)(0.5 + br_rng_uniform(&g));
            double dot = 0, abs_sum = 0;
            for (size_t i = 0; i < n; i++) {
                double d = (double)a0[i] - b0[i];
                dot += p0[i] * d;
                abs_sum += fabs(p0[i] * d);
            }
            double x = bd + dot;
            /* x: the dot error plus the rounding of qi - qj and of the add */
            double xtol = dot_tol(n, abs_sum) * 2 + 4 * FLT_EPSILON * (fabs(bd) + fabs(dot));
            double gs = 1.0 / (1.0 + exp(x));
            /* sigmoid' <= 1/4; expf and the division add a few ulps */
            double gtol = 0.25 * xtol + 8 * FLT_EPSILON * gs + 1e-30;
            float xr[2];
            for (int k = 0; k < nt; k++) {
                memcpy(p[k], p0, n * sizeof(float));
                memcpy(qi[k], a0, n * sizeof(float));
                memcpy(qj[k], b0, n * sizeof(float));
                xr[k] = t[k]->bpr_mf(p[k], qi[k], qj[k], n, bd, lr, reg);
                assert_close(xr[k], x, xtol, "bpr_mf x", t[k]->name, n, 0);
                for (size_t i = 0; i < n; i++) {
                    double pu = p0[i], ai = a0[i], bi = b0[i];
                    double rp = pu + lr * (gs * (ai - bi) - reg * pu);
                    double ra = ai + lr * (gs * pu - reg * ai);
                    double rb = bi + lr * (-gs * pu - reg * bi);
                    double tp = 8 * FLT_EPSILON * (fabs(pu) + lr * (gs * (fabs(ai) + fabs(bi)) + reg * fabs(pu))) +
                                lr * gtol * fabs(ai - bi);
                    double ta = 8 * FLT_EPSILON * (fabs(ai) + lr * (gs * fabs(pu) + reg * fabs(ai))) +
                                lr * gtol * fabs(pu);
                    double tb = 8 * FLT_EPSILON * (fabs(bi) + lr * (gs * fabs(pu) + reg * fabs(bi))) +
                                lr * gtol * fabs(pu);
                    assert_close(p[k][i], rp, tp, "bpr_mf p", t[k]->name, n, i);
                    assert_close(qi[k][i], ra, ta, "bpr_mf qi", t[k]->name, n, i);
                    assert_close(qj[k][i], rb, tb, "bpr_mf qj", t[k]->name, n, i);
                }
            }
            if (nt == 2) {
                assert_same_bits(&xr[0], &xr[1], sizeof(float), "bpr_mf x", n);
                assert_same_bits(p[0], p[1], n * sizeof(float), "bpr_mf p", n);
                assert_same_bits(qi[0], qi[1], n * sizeof(float), "bpr_mf qi", n);
                assert_same_bits(qj[0], qj[1], n * sizeof(float), "bpr_mf qj", n);
                for (int s = 0; s < 8; s++) {
                    for (int k = 0; k < 2; k++)
                        xr[k] = t[k]->bpr_mf(p[k], qi[k], qj[k], n, bd, lr, reg);
                    assert_same_bits(&xr[0], &xr[1], sizeof(float), "bpr_mf chain x", n);
                }
                assert_same_bits(p[0], p[1], n * sizeof(float), "bpr_mf chain p", n);
                assert_same_bits(qi[0], qi[1], n * sizeof(float), "bpr_mf chain qi", n);
                assert_same_bits(qj[0], qj[1], n * sizeof(float), "bpr_mf chain qj", n);
            }
        }
    free(p0);
    free(a0);
    free(b0);
    for (int k = 0; k < 2; k++) {
        free(p[k]);
        free(qi[k]);
        free(qj[k]);
    }
}

/* ---- adam_bpr -------------------------------------------------------------- */

static void test_adam_bpr(void **state)
{
    (void)state;
    const br_kernels *t[2];
    int nt = tables(t);
    br_rng g;
    br_rng_seed(&g, 6);
    size_t nn;
    const size_t *ns = lengths(&nn);
    /* rows p, qi, qj and their moments: 9 arrays, for the input and each table */
    float *in[9], *w[2][9];
    for (int j = 0; j < 9; j++) {
        in[j] = falloc(N_MAX);
        w[0][j] = falloc(N_MAX);
        w[1][j] = falloc(N_MAX);
    }
    static const char *names[9] = {"p", "qi", "qj", "mp", "vp", "mi", "vi", "mj", "vj"};
    for (int rep = 0; rep < 16; rep++)
        for (size_t li = 0; li < nn; li++) {
            size_t n = ns[li];
            for (int j = 0; j < 3; j++)
                fill(&g, in[j], n, -3, 0);
            for (int j = 3; j < 9; j += 2) {
                fill(&g, in[j], n, -6, -1);
                for (size_t i = 0; i < n; i++)
                    in[j + 1][i] = fabsf(rnd(&g, -8, -2)) + 1e-3f;
            }
            float bd = rep % 8 == 6 ? 45.0f : rep % 8 == 7 ? -45.0f : rnd(&g, -3, 1);
            br_adam a = {.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                         .reg = 0.05f * (float)(0.5 + br_rng_uniform(&g))};
            float cs[3];
            for (int j = 0; j < 3; j++)
                cs[j] = 0.01f * (float)(0.5 + br_rng_uniform(&g));
            double dot = 0, abs_sum = 0;
            for (size_t i = 0; i < n; i++) {
                double d = (double)in[1][i] - in[2][i];
                dot += in[0][i] * d;
                abs_sum += fabs(in[0][i] * d);
            }
            double x = bd + dot;
            double xtol = dot_tol(n, abs_sum) * 2 + 4 * FLT_EPSILON * (fabs(bd) + fabs(dot));
            double gs = 1.0 / (1.0 + exp(x));
            double gtol = 0.25 * xtol + 8 * FLT_EPSILON * gs + 1e-30;
            float xr[2];
            for (int k = 0; k < nt; k++) {
                for (int j = 0; j < 9; j++)
                    memcpy(w[k][j], in[j], n * sizeof(float));
                float **b = w[k];
                xr[k] = t[k]->adam_bpr(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], n,
                                       bd, &a, cs[0], cs[1], cs[2]);
                assert_close(xr[k], x, xtol, "adam_bpr x", t[k]->name, n, 0);
                for (size_t i = 0; i < n; i++) {
                    double pu = in[0][i], ai = in[1][i], bj = in[2][i];
                    /* gradients of -log sigmoid(x) + reg/2 |.|^2 */
                    double gr[3] = {-gs * (ai - bj) + a.reg * pu, -gs * pu + a.reg * ai,
                                    gs * pu + a.reg * bj};
                    double ga[3] = {gs * fabs(ai - bj) + a.reg * fabs(pu),
                                    gs * fabs(pu) + a.reg * fabs(ai),
                                    gs * fabs(pu) + a.reg * fabs(bj)};
                    double gt[3] = {4 * FLT_EPSILON * ga[0] + gtol * fabs(ai - bj),
                                    4 * FLT_EPSILON * ga[1] + gtol * fabs(pu),
                                    4 * FLT_EPSILON * ga[2] + gtol * fabs(pu)};
                    for (int j = 0; j < 3; j++)
                        adam_check_one(names[j], t[k]->name, n, i, in[j][i], in[3 + 2 * j][i],
                                       in[4 + 2 * j][i], gr[j], gt[j], ga[j], &a, cs[j],
                                       b[j][i], b[3 + 2 * j][i], b[4 + 2 * j][i]);
                }
            }
            if (nt == 2) {
                assert_same_bits(&xr[0], &xr[1], sizeof(float), "adam_bpr x", n);
                for (int s = 0; s < 8; s++) {
                    for (int k = 0; k < 2; k++) {
                        float **b = w[k];
                        xr[k] = t[k]->adam_bpr(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                                               b[8], n, bd, &a, cs[0], cs[1], cs[2]);
                    }
                    assert_same_bits(&xr[0], &xr[1], sizeof(float), "adam_bpr chain x", n);
                }
                for (int j = 0; j < 9; j++) {
                    char name[48];
                    snprintf(name, sizeof name, "adam_bpr %s", names[j]);
                    assert_same_bits(w[0][j], w[1][j], n * sizeof(float), name, n);
                }
            }
        }
    for (int j = 0; j < 9; j++) {
        free(in[j]);
        free(w[0][j]);
        free(w[1][j]);
    }
}

/* ---- score ----------------------------------------------------------------- */

static void check_score(const br_kernels *t[2], int nt, br_rng *g, size_t n_books, size_t stride,
                        int with_bias)
{
    float *u = falloc(stride), *Q = falloc(n_books * stride);
    float *bias = with_bias ? falloc(n_books) : NULL;
    /* one extra float past the end of out: must stay untouched */
    float *out[2] = {falloc(n_books + 1), falloc(n_books + 1)};
    fill(g, u, stride, -4, 2);
    fill(g, Q, n_books * stride, -4, 2);
    if (bias)
        fill(g, bias, n_books, -3, 1);
    float add = rnd(g, -2, 2);
    const float canary = 12345.5f;
    for (int k = 0; k < nt; k++) {
        for (size_t b = 0; b <= n_books; b++)
            out[k][b] = canary;
        t[k]->score(u, Q, n_books, stride, bias, add, out[k]);
        assert_true(out[k][n_books] == canary);
        for (size_t b = 0; b < n_books; b++) {
            const float *q = Q + b * stride;
            double ref = 0, abs_sum = 0;
            for (size_t i = 0; i < stride; i++) {
                ref += (double)u[i] * q[i];
                abs_sum += fabs((double)u[i] * q[i]);
            }
            double lead = (double)add + (bias ? bias[b] : 0.0);
            double tol = dot_tol(stride, abs_sum) +
                         4 * FLT_EPSILON * (fabs(add) + (bias ? fabs(bias[b]) : 0) + fabs(ref));
            ref += lead;
            assert_close(out[k][b], ref, tol, with_bias ? "score+bias" : "score", t[k]->name,
                         stride, b);
        }
    }
    if (nt == 2)
        assert_same_bits(out[0], out[1], n_books * sizeof(float),
                         with_bias ? "score+bias" : "score", stride);
    free(u);
    free(Q);
    free(bias);
    free(out[0]);
    free(out[1]);
}

static void test_score(void **state)
{
    (void)state;
    const br_kernels *t[2];
    int nt = tables(t);
    br_rng g;
    br_rng_seed(&g, 5);
    static const size_t books[] = {1, 7, 8, 9, 16, 31, 1001};
    size_t nn;
    const size_t *ns = lengths(&nn);
    for (size_t bi = 0; bi < sizeof books / sizeof *books; bi++)
        for (size_t li = 0; li < nn; li++)
            for (int with_bias = 0; with_bias < 2; with_bias++) {
                /* the largest count only at a few strides, to keep it quick */
                if (books[bi] == 1001 && ns[li] % 24 != 0 && ns[li] != 8 && ns[li] != N_MAX)
                    continue;
                check_score(t, nt, &g, books[bi], ns[li], with_bias);
            }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_env_forces_scalar),   /* first: see the test */
        cmocka_unit_test(test_tables_and_get),
        cmocka_unit_test(test_dot),
        cmocka_unit_test(test_sgd_mf),
        cmocka_unit_test(test_adam_mf),
        cmocka_unit_test(test_bpr_mf),
        cmocka_unit_test(test_adam_bpr),
        cmocka_unit_test(test_score),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
