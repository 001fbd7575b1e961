/*
 * br_progress.c - console helpers for the programs.
 */
#include "br_progress.h"

#include <time.h>
#include <unistd.h>

double br_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int br_isatty(FILE *f) { return isatty(fileno(f)); }

const char *br_fmt_duration(double s, char *buf, size_t cap)
{
    if (s < 0)
        s = 0;
    if (s < 60)
        snprintf(buf, cap, "%.2f s", s);
    else if (s < 3600)
        snprintf(buf, cap, "%d m %02d s", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, cap, "%d h %02d m", (int)(s / 3600), ((int)s % 3600) / 60);
    return buf;
}

const char *br_fmt_count(unsigned long long v, char *buf, size_t cap)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%llu", v), k = 0;
    for (int i = 0; i < n && (size_t)k + 2 < cap; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[k++] = ',';
        buf[k++] = tmp[i];
    }
    buf[k] = '\0';
    return buf;
}
