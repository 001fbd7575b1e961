/*
 * br_fmt.c - printf-free number text (see br_fmt.h).
 *
 * "%.7g" of a float v = M * 2^E (M < 2^24): find the decimal exponent X
 * with 10^X <= |v| < 10^(X+1), take T = floor(|v| * 10^(6-X)) (seven
 * digits) and the exact remainder, round T to nearest with ties to even,
 * carry 10^7 into X + 1, then lay out the digits as %g does (fixed for
 * -4 <= X < 7, else d.dddddde+XX; trailing zeros and a bare '.' dropped).
 * For 1e-5 <= |v| < 1e15 every step is exact in 64-bit integers:
 * M * 10^(6-X) < 2^24 * 10^11 < 2^61 with a shift of at most 41 bits when
 * X <= 6, and M * 2^E < 2^50 divided by 10^(X-6) when X >= 7.
 */
#include "br_fmt.h"

#include <stdio.h>
#include <string.h>

static const uint64_t br_fmt_pow10[] = {
    1ull,          10ull,          100ull,          1000ull,          10000ull,
    100000ull,     1000000ull,     10000000ull,     100000000ull,     1000000000ull,
    10000000000ull, 100000000000ull};

size_t br_fmt_uint(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

/* floor(M * 2^E * 10^(6-X)) into *t and whether the rest is below, at or
 * above one half (-1, 0, 1) into *half. 0 when X is outside -5..14. */
static int br_fmt_scaled(uint32_t M, int E, int X, uint64_t *t, int *half)
{
    if (X < -5 || X > 14)
        return 0;
    if (X <= 6) {
        uint64_t N = (uint64_t)M * br_fmt_pow10[6 - X];
        if (E >= 0) {   /* |v| >= 2^23 here, so X = 6 and N = M: exact */
            if (E > 40)
                return 0;
            *t = N << E;
            *half = -1;
            return 1;
        }
        int s = -E;
        if (s > 63)
            return 0;
        uint64_t mask = ((uint64_t)1 << s) - 1, rem = N & mask, h = (uint64_t)1 << (s - 1);
        *t = N >> s;
        *half = rem < h ? -1 : rem > h ? 1 : 0;
        return 1;
    }
    if (E < 0 || E > 26)
        return 0;
    uint64_t N = (uint64_t)M << E, d = br_fmt_pow10[X - 6];
    uint64_t rem = N % d;
    *t = N / d;
    *half = 2 * rem < d ? -1 : 2 * rem > d ? 1 : 0;
    return 1;
}

size_t br_fmt_g7(char *out, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    uint32_t ef = (bits >> 23) & 0xffu, M = bits & 0x7fffffu;
    if (ef == 0 || ef == 0xffu)   /* zero, subnormals, infinities and NaN */
        return (size_t)snprintf(out, BR_FMT_MAX, "%.7g", (double)v);
    M |= 0x800000u;
    int E = (int)ef - 150;
    /* |v| lies in [2^(E+23), 2^(E+24)); 1233/4096 is just under log10(2),
     * so this X is within one or two of the true one (checked below). */
    int e2 = E + 23, X = e2 >= 0 ? (e2 * 1233) >> 12 : -((-e2 * 1233 + 4095) >> 12);
    uint64_t t;
    int half;
    for (int tries = 0;; tries++) {   /* at most two steps from the estimate */
        if (tries == 4 || !br_fmt_scaled(M, E, X, &t, &half))
            return (size_t)snprintf(out, BR_FMT_MAX, "%.7g", (double)v);
        if (t >= 10000000u)
            X++;
        else if (t < 1000000u)
            X--;
        else
            break;
    }
    if (half > 0 || (half == 0 && (t & 1)))
        t++;
    if (t == 10000000u) {
        t = 1000000u;
        X++;
    }
    char dig[7];
    for (int i = 6; i >= 0; i--) {
        dig[i] = (char)('0' + t % 10);
        t /= 10;
    }
    int nd = 7;   /* significant digits left once trailing zeros go */
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    size_t o = 0;
    if (bits >> 31)
        out[o++] = '-';
    if (X >= -4 && X < 7) {
        if (X >= 0) {
            for (int i = 0; i <= X; i++)
                out[o++] = dig[i];
            if (nd > X + 1) {
                out[o++] = '.';
                for (int i = X + 1; i < nd; i++)
                    out[o++] = dig[i];
            }
        } else {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -X - 1; i++)
                out[o++] = '0';
            for (int i = 0; i < nd; i++)
                out[o++] = dig[i];
        }
    } else {
        out[o++] = dig[0];
        if (nd > 1) {
            out[o++] = '.';
            for (int i = 1; i < nd; i++)
                out[o++] = dig[i];
        }
        out[o++] = 'e';
        out[o++] = X < 0 ? '-' : '+';
        int ax = X < 0 ? -X : X;
        out[o++] = (char)('0' + ax / 10);
        out[o++] = (char)('0' + ax % 10);
    }
    out[o] = '\0';
    return o;
}

size_t br_fmt_json_real7(char *out, double v)
{
    int n = snprintf(out, BR_FMT_MAX, "%.7g", v);   /* at most 14 bytes */
    char *e = memchr(out, 'e', (size_t)n);
    if (!e && !memchr(out, '.', (size_t)n)) {
        out[n++] = '.';
        out[n++] = '0';
        out[n] = '\0';
        return (size_t)n;
    }
    if (e) {
        char *start = e + 1, *end = e + 2;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        /* keeps the NUL: end points into the string */
        memmove(start, end, (size_t)(out + n + 1 - end));
        n -= (int)(end - start);
    }
    return (size_t)n;
}
