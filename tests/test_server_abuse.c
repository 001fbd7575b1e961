/*
 * test_server_abuse.c - bookrec-infer --serve against hostile clients, in
 * CI: the real program (a child process on 127.0.0.1, port chosen by the
 * kernel) on a small model, while a prober thread asks GET /healthz every
 * 50 ms on a fresh connection. Each phase, in order:
 *
 *   slow      20 clients send a request one byte a second (for
 *             BR_ABUSE_SLOW_S seconds, then the rest at once) and must get
 *             their answer; they run through all the phases below
 *   headers   40 KB of headers (JSON 431), 200 KB (431 from libmicrohttpd
 *             or a close), 8 MB of headers that never end (a close)
 *   bodies    Content-Length over the limit (413 at once), overflowing and
 *             negative Content-Length, a chunked body 40x the limit (closed),
 *             bodies that are not JSON or not UTF-8 (400 with a JSON error)
 *   queries   broken percent-encoding, huge / negative / overflowing ids and
 *             k, bytes that are not UTF-8 in path and arguments: each a
 *             4xx with an {"error"} body that jansson parses (valid UTF-8)
 *   idle      1,000 connections that send nothing, held while the prober
 *             runs, then closed by the server's --timeout (3 s)
 *
 * Throughout: every /healthz answers 200, at least 99% of them within
 * BR_ABUSE_HEALTHZ_MS (default 100) ms and none in 10 times that (scheduler
 * noise on a loaded machine is tolerated, a stalled server is not), the
 * server's peak RSS (VmHWM) stays within 64 MB of its
 * RSS after start-up, and at the end it still answers queries and exits 0
 * on SIGTERM. BR_ABUSE_LONG=1 is the long mode for the record: the slow
 * clients send their whole request a byte a second (~70 s), the endless
 * header is 64 MB, and the other phases repeat in rounds until the slow
 * clients are done (so a leak would show in the peak RSS).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fuzz/fuzz_server.h"   /* srv_fuzz_write_model: a small real model */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long env_long(const char *name, long def)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : def;
}

/* ---- the server process ----------------------------------------------------------- */

typedef struct server {
    pid_t pid;
    unsigned port;
    int err_fd;          /* its stderr */
    char dir[64], model[96];
    long rss0_kb;
} server;

static long proc_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

static server *g_server;   /* killed and removed by the teardown if a check failed */

static int teardown(void **state)
{
    server *s = g_server;
    if (!s)
        return 0;
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    if (s->model[0])
        unlink(s->model);
    if (s->dir[0])
        rmdir(s->dir);
    g_server = NULL;
    return 0;
}

static void server_start(server *s)
{
    snprintf(s->dir, sizeof s->dir, "/tmp/br_test_abuse.XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    snprintf(s->model, sizeof s->model, "%s/m.model", s->dir);
    assert_int_equal(srv_fuzz_write_model(s->model), 0);
    int p[2];
    assert_int_equal(pipe(p), 0);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        dup2(p[1], 2);
        int nul = open("/dev/null", O_WRONLY);
        if (nul >= 0)
            dup2(nul, 1);
        close(p[0]);
        close(p[1]);
        /* the usual default of 1,024 descriptors, whatever the test raised
         * its own to: the server must cope with its connection limit */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 1024) {
            rl.rlim_cur = 1024;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        execl(BR_TEST_BINDIR "/bookrec-infer", "bookrec-infer", "-m", s->model, "--serve",
              "127.0.0.1:0", "-j", "2", "--timeout", "3", "--max-body", "65536", (char *)NULL);
        _exit(127);
    }
    g_server = s;
    close(p[1]);
    s->err_fd = p[0];
    char buf[4096];
    size_t len = 0;
    double t0 = now_s();
    while (!s->port && now_s() - t0 < 30 && len < sizeof buf - 1) {
        struct pollfd pf = {s->err_fd, POLLIN, 0};
        if (poll(&pf, 1, 200) <= 0)
            continue;
        ssize_t r = read(s->err_fd, buf + len, sizeof buf - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        buf[len] = '\0';
        const char *at = strstr(buf, " on http://127.0.0.1:");
        if (at)
            s->port = (unsigned)strtoul(at + 21, NULL, 10);
    }
    if (!s->port)
        fail_msg("the server did not start: %s", buf);
    /* drain its stderr from now on so it never blocks on a full pipe */
    fcntl(s->err_fd, F_SETFL, O_NONBLOCK);
}

static void server_drain_stderr(server *s, int show)
{
    char buf[4096];
    ssize_t r;
    while ((r = read(s->err_fd, buf, sizeof buf - 1)) > 0) {
        buf[r] = '\0';
        if (show)
            print_message("server: %s", buf);
    }
}

/* ---- a client ---------------------------------------------------------------------- */

static int connect_lo(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);   /* loopback only */
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads an answer to EOF; returns the status (0: none) and the body. */
static int read_answer(int fd, char **body)
{
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (len + 1024 > cap) {
            buf = realloc(buf, cap *= 2);
            assert_non_null(buf);
        }
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        status = 0;
    if (body) {
        char *b = strstr(buf, "\r\n\r\n");
        *body = strdup(b ? b + 4 : "");
    }
    free(buf);
    return status;
}

/* Sends raw (as much as the server takes) and reads the answer. */
static int raw_request(unsigned port, const char *raw, size_t len, char **body)
{
    if (body)
        *body = NULL;
    int fd = connect_lo(port);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t w = send(fd, raw + off, len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;   /* the server answered and closed early: fine, read what it said */
        off += (size_t)w;
    }
    int st = read_answer(fd, body);
    close(fd);
    return st;
}

/* body must be one JSON object {"error": "..."} (jansson also checks UTF-8). */
static void expect_json_error(const char *what, const char *body)
{
    json_error_t je;
    json_t *o = json_loads(body, 0, &je);
    if (!o || !json_is_string(json_object_get(o, "error")))
        fail_msg("%s: error body is not valid JSON {\"error\"} (%s): %s", what, je.text, body);
    json_decref(o);
}

/* GET target; the status must be one of want (0-terminated). */
static void expect_get(unsigned port, const char *target, const int *want)
{
    static char req[40000];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                     target);
    assert_true(n > 0 && (size_t)n < sizeof req);
    char *body = NULL;
    int st = raw_request(port, req, (size_t)n, &body);
    int ok = 0;
    for (const int *w = want; *w; w++)
        ok |= st == *w;
    if (!ok)
        fail_msg("GET %.200s: status %d: %.300s", target, st, body ? body : "");
    if (st >= 400)
        expect_json_error(target, body);
    free(body);
}

/* ---- the /healthz prober ------------------------------------------------------------ */

typedef struct prober {
    unsigned port;
    atomic_int stop;
    pthread_t th;
    atomic_long probes;
    long failures, slow;
    double worst_ms, worst_at;   /* and when, seconds after the prober started */
    double limit_ms, t0;
} prober;

static void *prober_main(void *arg)
{
    prober *p = arg;
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    while (!atomic_load(&p->stop)) {
        double t0 = now_s();
        int st = raw_request(p->port, req, sizeof req - 1, NULL);
        double ms = (now_s() - t0) * 1e3;
        p->probes++;
        if (st != 200)
            p->failures++;
        if (ms > p->limit_ms)
            p->slow++;
        if (ms > p->worst_ms) {
            p->worst_ms = ms;
            p->worst_at = t0 - p->t0;
        }
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* ---- slow clients ------------------------------------------------------------------- */

#define N_SLOW 20

typedef struct slow {
    unsigned port;
    long trickle_s;          /* seconds of one byte a second, then the rest */
    int ok;                  /* answers that were 200 */
    atomic_int done;
    pthread_t th;
} slow;

static void *slow_main(void *arg)
{
    slow *sl = arg;
    static const char req[] =
        "GET /v1/similar?book=3&k=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int fd[N_SLOW];
    for (int i = 0; i < N_SLOW; i++)
        fd[i] = connect_lo(sl->port);
    size_t sent = 0;
    for (long t = 0; t < sl->trickle_s && sent < sizeof req - 1; t++, sent++) {
        for (int i = 0; i < N_SLOW; i++)
            if (fd[i] >= 0 && send(fd[i], req + sent, 1, MSG_NOSIGNAL) != 1) {
                close(fd[i]);
                fd[i] = -1;
            }
        sleep(1);
    }
    for (int i = 0; i < N_SLOW; i++) {
        if (fd[i] < 0)
            continue;
        if (send(fd[i], req + sent, sizeof req - 1 - sent, MSG_NOSIGNAL) ==
            (ssize_t)(sizeof req - 1 - sent))
            sl->ok += read_answer(fd[i], NULL) == 200;
        close(fd[i]);
    }
    atomic_store(&sl->done, 1);
    return NULL;
}

/* ---- the phases --------------------------------------------------------------------- */

static void phase_headers(unsigned port, int longmode)
{
    static const int w431[] = {431, 0}, w431_or_closed[] = {431, 0, -1, 0};
    size_t sizes[] = {40000, 200000};
    for (int i = 0; i < 2; i++) {
        size_t n = sizes[i];
        char *req = malloc(n + 256);
        assert_non_null(req);
        int h = sprintf(req, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: ");
        memset(req + h, 'a', n);
        strcpy(req + h + n, "\r\n\r\n");
        char *body = NULL;
        int st = raw_request(port, req, strlen(req), &body);
        if (i == 0) {
            if (st != w431[0])
                fail_msg("40 KB header: status %d", st);
            expect_json_error("40 KB header", body);
        } else if (st != 431 && st != 0) {
            fail_msg("200 KB header: status %d", st);
        }
        (void)w431_or_closed;
        free(body);
        free(req);
    }
    /* headers that never end: the server must stop reading and close */
    int fd = connect_lo(port);
    assert_true(fd >= 0);
    const char *start = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    assert_true(send(fd, start, strlen(start), MSG_NOSIGNAL) > 0);
    char line[1024];
    memset(line, 'b', sizeof line);
    memcpy(line, "X-Endless: ", 11);
    line[sizeof line - 2] = '\r';
    line[sizeof line - 1] = '\n';
    size_t total = (size_t)(longmode ? 64 : 8) << 20, sent = 0;
    while (sent < total) {
        ssize_t w = send(fd, line, sizeof line, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        sent += (size_t)w;
    }
    int st = read_answer(fd, NULL);
    close(fd);
    print_message("endless header: server stopped it after %zu bytes sent (status %d)\n", sent,
                  st);
    assert_true(sent < total);   /* it closed the connection before the end */
}

static void phase_bodies(unsigned port)
{
    char *body = NULL;
    const char *big = "POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Content-Length: 2000000\r\nConnection: close\r\n\r\n{\"read\":[";
    int st = raw_request(port, big, strlen(big), &body);
    if (st != 413)
        fail_msg("Content-Length 2000000: status %d", st);
    expect_json_error("413", body);
    free(body);
    static const char *const lengths[] = {"99999999999999999999999", "18446744073709551616",
                                          "-1", "1e6", "0x10", "12, 13"};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        char req[512];
        int n = snprintf(req, sizeof req,
                         "POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Length: %s\r\n"
                         "Connection: close\r\n\r\n{\"read\":[3]}",
                         lengths[i]);
        st = raw_request(port, req, (size_t)n, &body);
        /* libmicrohttpd refuses a malformed length itself (400 or 413); bookrec
         * answers what gets through; a hang or 200 would be wrong */
        if (st != 400 && st != 413)
            fail_msg("Content-Length '%s': status %d: %s", lengths[i], st, body);
        free(body);
    }
    /* chunked, 40x the limit: closed (or 413) before it is all read */
    int fd = connect_lo(port);
    assert_true(fd >= 0);
    const char *hd = "POST /v1/recommend HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     "Connection: close\r\n\r\n";
    assert_true(send(fd, hd, strlen(hd), MSG_NOSIGNAL) > 0);
    char chunk[8192 + 16];
    int h = sprintf(chunk, "2000\r\n");
    memset(chunk + h, ' ', 8192);
    memcpy(chunk + h + 8192, "\r\n", 2);
    size_t sent = 0, total = (size_t)40 * 65536;
    while (sent < total) {
        ssize_t w = send(fd, chunk, (size_t)h + 8194, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        sent += (size_t)w;
    }
    if (sent >= total)
        send(fd, "0\r\n\r\n", 5, MSG_NOSIGNAL);
    st = read_answer(fd, NULL);
    close(fd);
    print_message("chunked body of %zu bytes: status %d after %zu bytes\n", total, st, sent);
    assert_true(st == 413 || st == 0);
    /* bodies the JSON parser refuses, not UTF-8 included */
    static const char *const bodies[] = {"{\"read\":[3], \"x\":\"\xff\xfe\"}", "\xc3\x28",
                                         "{\"read\":[1e999]}", "{\"read\":[3],\"k\":1e999}",
                                         "{\"read\":[-9223372036854775809]}", "null", ""};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char req[512];
        int n = snprintf(req, sizeof req,
                         "POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n"
                         "Connection: close\r\n\r\n%s",
                         strlen(bodies[i]), bodies[i]);
        st = raw_request(port, req, (size_t)n, &body);
        if (st != 400)
            fail_msg("body %zu: status %d: %s", i, st, body);
        expect_json_error("POST body", body);
        free(body);
    }
}

static void phase_queries(unsigned port)
{
    static const int w200[] = {200, 0}, w400[] = {400, 0}, w404[] = {404, 0};
    static const char *const bad400[] = {
        "/v1/recommend?user=%zz", "/v1/recommend?user=%", "/v1/recommend?user=1%",
        "/v1/recommend?user=%4", "/v1/recommend?user=1%00", "/v1/recommend?user=-1",
        "/v1/recommend?user=0", "/v1/recommend?user=4294967296",
        "/v1/recommend?user=99999999999999999999999999999999",
        "/v1/recommend?user=1001&k=0", "/v1/recommend?user=1001&k=-1",
        "/v1/recommend?user=1001&k=9223372036854775808",
        "/v1/recommend?user=1001&k=18446744073709551617", "/v1/recommend?user=1001&k=1e3",
        "/v1/recommend?user=1001&k=%ff", "/v1/recommend?user=%c3%28",
        "/v1/recommend?user=\xff\xfe", "/v1/similar?book=-3", "/v1/similar?book=3&k=99999",
        "/v1/books/%ff%fe", "/v1/books/-1", "/v1/books/18446744073709551616",
        "/v1/books/\xc3\x28", "/v1/recommend?user=1001&include_read=%e2%82",
    };
    for (size_t i = 0; i < sizeof bad400 / sizeof bad400[0]; i++)
        expect_get(port, bad400[i], w400);
    expect_get(port, "/v1/recommend?user=4294967295", w404);
    expect_get(port, "/v1/books/4294967295", w404);
    expect_get(port, "/v%31/books/%33", w200);    /* libmicrohttpd decodes the path */
    expect_get(port, "/v1/books/3%00x", w400);     /* not book 3 */
    expect_get(port, "/v1/similar?book=3%00x&k=1", w400);
    expect_get(port, "/v1/recommend?user=1001&k=%00", w400);
    expect_get(port, "/\xff\xfe/x", w404);
    /* a long argument, close to the header limit */
    char *t = malloc(30000);
    assert_non_null(t);
    strcpy(t, "/v1/recommend?user=");
    memset(t + 19, '9', 29000);
    t[19 + 29000] = '\0';
    expect_get(port, t, w400);
    free(t);
}

/* ---- the test ----------------------------------------------------------------------- */

static void test_abuse(void **state)
{
    int longmode = env_long("BR_ABUSE_LONG", 0) != 0;
    /* the client side needs 1,000+ sockets too */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 1200 && rl.rlim_max >= 1200) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    int n_idle = rl.rlim_cur >= 1200 ? 1000 : (int)rl.rlim_cur - 200;
    signal(SIGPIPE, SIG_IGN);

    static server s;   /* static: the teardown reads it after a failed check */
    memset(&s, 0, sizeof s);
    server_start(&s);
    double t_start = now_s();
    static const int w200[] = {200, 0};
    for (int i = 0; i < 20; i++)   /* warm up: scratch, pools */
        expect_get(s.port, "/v1/recommend?user=1001&k=5", w200);
    s.rss0_kb = proc_kb(s.pid, "VmRSS");

    prober pr = {.port = s.port, .limit_ms = (double)env_long("BR_ABUSE_HEALTHZ_MS", 100),
                 .t0 = now_s()};
    assert_int_equal(pthread_create(&pr.th, NULL, prober_main, &pr), 0);
    slow sl = {.port = s.port, .trickle_s = env_long("BR_ABUSE_SLOW_S", longmode ? 1000 : 6)};
    assert_int_equal(pthread_create(&sl.th, NULL, slow_main, &sl), 0);

    int rounds = 0;
    do {   /* one round; in the long mode, rounds until the slow clients are done */
        rounds++;
        double t = now_s();
        phase_headers(s.port, longmode);
        print_message("headers: %.2f s to %.2f s\n", t - pr.t0, now_s() - pr.t0);
        t = now_s();
        phase_bodies(s.port);
        print_message("bodies: %.2f s to %.2f s\n", t - pr.t0, now_s() - pr.t0);
        t = now_s();
        phase_queries(s.port);
        print_message("queries: %.2f s to %.2f s\n", t - pr.t0, now_s() - pr.t0);

        /* idle connections */
        t = now_s();
        int *idle = malloc((size_t)n_idle * sizeof *idle);
        assert_non_null(idle);
        int opened = 0;
        for (int i = 0; i < n_idle; i++)
            if ((idle[i] = connect_lo(s.port)) >= 0)
                opened++;
        long probes0 = pr.probes;
        double held = now_s();
        while (now_s() - held < 1.5 || pr.probes < probes0 + 5) {
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
        long rss_idle = proc_kb(s.pid, "VmRSS");
        /* the server's --timeout 3 must close them all */
        int closed = 0;
        double wait0 = now_s();
        while (closed < opened && now_s() - wait0 < 12) {
            struct pollfd *pf = calloc((size_t)n_idle, sizeof *pf);
            int np = 0;
            for (int i = 0; i < n_idle; i++)
                if (idle[i] >= 0) {
                    pf[np].fd = idle[i];
                    pf[np++].events = POLLIN;
                }
            poll(pf, (nfds_t)np, 500);
            for (int i = 0, j = 0; i < n_idle; i++) {
                if (idle[i] < 0)
                    continue;
                if (pf[j].revents) {
                    char c;
                    if (recv(idle[i], &c, 1, MSG_DONTWAIT) <= 0) {
                        close(idle[i]);
                        idle[i] = -1;
                        closed++;
                    }
                }
                j++;
            }
            free(pf);
        }
        double close_s = now_s() - wait0;
        for (int i = 0; i < n_idle; i++)
            if (idle[i] >= 0)
                close(idle[i]);
        free(idle);
        print_message("idle: from %.2f s, opened in %.2f s, held %.2f s\n", t - pr.t0, held - t,
                      wait0 - held);
        print_message("idle: %d of %d connections opened, server RSS with them %ld kB, closed by "
                      "the server's timeout: %d, %.1f s after the hold (%.1f s)\n",
                      opened, n_idle, rss_idle, closed, close_s, now_s() - t);
        assert_int_equal(opened, n_idle);
        assert_int_equal(closed, opened);
    } while (longmode && !atomic_load(&sl.done));

    assert_int_equal(pthread_join(sl.th, NULL), 0);
    atomic_store(&pr.stop, 1);
    assert_int_equal(pthread_join(pr.th, NULL), 0);
    long hwm = proc_kb(s.pid, "VmHWM"), rss_end = proc_kb(s.pid, "VmRSS");
    print_message("%d round(s); slow clients answered: %d of %d; /healthz: %ld probes, %ld "
                  "failed, %ld over %.0f ms, worst %.1f ms (at %.2f s); server RSS: %ld kB after "
                  "start, %ld kB peak, %ld kB at the end; %.1f s in all\n",
                  rounds, sl.ok, N_SLOW, pr.probes, pr.failures, pr.slow, pr.limit_ms, pr.worst_ms,
                  pr.worst_at, s.rss0_kb, hwm, rss_end, now_s() - t_start);
    server_drain_stderr(&s, pr.failures || pr.slow);
    assert_int_equal(sl.ok, N_SLOW);
    assert_true(pr.probes >= 20);
    assert_int_equal(pr.failures, 0);
    /* a shared, loaded machine (CI, or this 2-core VM at load 9) stalls a
     * thread now and then: 1 probe in 100 may be late, none by 10x (the
     * descriptor-limit bug this test found made /healthz wait 3 s) */
    assert_true(pr.slow <= (long)atomic_load(&pr.probes) / 100);
    assert_true(pr.worst_ms < 10 * pr.limit_ms);
    assert_true(hwm - s.rss0_kb < 64 * 1024);

    /* still serving, and a clean stop */
    expect_get(s.port, "/v1/recommend?user=1001&k=5", w200);
    kill(s.pid, SIGTERM);
    int ws = 0;
    assert_int_equal(waitpid(s.pid, &ws, 0), s.pid);
    s.pid = 0;
    close(s.err_fd);
    assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_abuse, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
