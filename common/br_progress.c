/*
 * br_progress.c - console helpers for the programs.
 */
#include "br_progress.h"

#include <stdarg.h>
#include <time.h>
#include <unistd.h>

static const char *br_prog = "bookrec";
static int br_quiet;

void br_cli_init(const char *prog) { br_prog = prog; }
void br_cli_quiet(int quiet) { br_quiet = quiet; }

void br_say(const char *fmt, ...)
{
    if (br_quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

int br_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error: ", br_prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

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
