/*
 * worker_sockets.h - for the server tests: how many sockets each worker of a
 * running server holds. Each worker is one epoll set; its sockets are the
 * "tfd:" lines of the set's /proc fdinfo whose descriptor is a socket.
 * Include after cmocka.h (it asserts).
 */
#ifndef BR_TEST_WORKER_SOCKETS_H
#define BR_TEST_WORKER_SOCKETS_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* Sockets in each epoll set of process pid (one set per worker), into n[]
 * (at most max sets); the number of sets. */
static int worker_sockets(pid_t pid, int *n, int max)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%ld/fd", (long)pid);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int sets = 0;
    struct dirent *e;
    while ((e = readdir(d)) && sets < max) {
        char link[256] = "", path[600];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (readlink(path, link, sizeof link - 1) <= 0 || !strstr(link, "eventpoll"))
            continue;
        snprintf(path, sizeof path, "/proc/%ld/fdinfo/%s", (long)pid, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        char line[256];
        n[sets] = 0;
        while (fgets(line, sizeof line, f)) {
            int tfd;
            char tl[256] = "", tp[600];
            if (sscanf(line, "tfd: %d", &tfd) != 1)
                continue;
            snprintf(tp, sizeof tp, "%s/%d", dir, tfd);
            if (readlink(tp, tl, sizeof tl - 1) > 0 && !strncmp(tl, "socket:", 7))
                n[sets]++;
        }
        fclose(f);
        sets++;
    }
    closedir(d);
    return sets;
}

#endif
