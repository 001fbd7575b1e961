/*
 * peakrss.c - runs a command and reports its wall time and peak resident set
 * size, for bench/run.sh on machines without GNU time (/usr/bin/time is not
 * installed on a clean Debian):
 *
 *   peakrss [-o FILE] COMMAND [ARGS...]
 *
 * The command inherits stdin, stdout and stderr. When it ends, one line
 * "WALL_SECONDS PEAK_RSS_KB" is written to FILE (or to stderr without -o);
 * the peak is the child's ru_maxrss from wait4, which covers the process
 * itself (the largest of its threads' shared RSS), not its own children.
 * Exit status: the command's, 128 + N if it died of signal N, 127 if it
 * could not be started, 2 on a usage error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    const char *out = NULL;
    int i = 1;
    if (i + 1 < argc && !strcmp(argv[i], "-o")) {
        out = argv[i + 1];
        i += 2;
    }
    if (i >= argc || argv[i][0] == '-') {
        fprintf(stderr, "usage: peakrss [-o FILE] COMMAND [ARGS...]\n");
        return 2;
    }
    double t0 = now_s();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "peakrss: error: fork: %s\n", strerror(errno));
        return 127;
    }
    if (pid == 0) {
        execvp(argv[i], argv + i);
        fprintf(stderr, "peakrss: error: cannot run %s: %s\n", argv[i], strerror(errno));
        _exit(127);
    }
    int status;
    struct rusage ru;
    pid_t w;
    while ((w = wait4(pid, &status, 0, &ru)) < 0 && errno == EINTR)
        ;
    double wall = now_s() - t0;
    if (w < 0) {
        fprintf(stderr, "peakrss: error: wait4: %s\n", strerror(errno));
        return 127;
    }
    FILE *f = out ? fopen(out, "w") : stderr;
    if (!f) {
        fprintf(stderr, "peakrss: error: cannot write %s: %s\n", out, strerror(errno));
        return 127;
    }
    fprintf(f, "%.3f %ld\n", wall, ru.ru_maxrss);
    if (out && fclose(f) != 0) {
        fprintf(stderr, "peakrss: error: cannot write %s\n", out);
        return 127;
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 127;
}
