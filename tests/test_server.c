/*
 * test_server.c - the HTTP server library (infer/br_server.h) and its
 * reference-counted model cell (infer/br_server_model.h), in process, on
 * synthetic models written to a temporary folder.
 *
 * The cell: an acquired model outlives a swap and is freed with its last
 * reference. The server (loopback only, on a port the kernel picks): each
 * route answers, each error has its status and a JSON {"error"} body, k and
 * body limits hold, and reloads under load (models of other dimensions, so
 * per-thread scratch is remade, and damaged files, which are refused) never
 * fail a request; a stop with nothing in flight is clean and frees every
 * model. The program (signals, exit status, access log) is tested by
 * tests/cli/server.sh.
 *
 * The client is plain sockets: one request per connection (Connection:
 * close), read to end of file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "br_model.h"
#include "br_rng.h"
#include "br_server.h"
#include "br_server_model.h"
#include "fuzz/fuzz_server.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>

/* ---- synthetic model files ------------------------------------------------------ */

/* Writes a dot/biased model of nu users (ids 1..nu), nb books (ids 1..nb),
 * each user having read books 1..3, to path. */
static void write_model(const char *path, uint32_t nu, uint32_t nb, uint32_t dim, uint64_t seed)
{
    br_rng g;
    br_rng_seed(&g, seed);
    float *P = calloc((size_t)nu * dim, sizeof *P), *Q = calloc((size_t)nb * dim, sizeof *Q);
    float *bu = calloc(nu, sizeof *bu), *bb = calloc(nb, sizeof *bb);
    uint32_t *uid = calloc(nu, sizeof *uid), *bid = calloc(nb, sizeof *bid);
    uint64_t *ptr = calloc((size_t)nu + 1, sizeof *ptr);
    uint32_t *idx = calloc((size_t)nu * 3, sizeof *idx);
    assert_non_null(P);
    assert_non_null(idx);
    for (size_t i = 0; i < (size_t)nu * dim; i++)
        P[i] = (float)(br_rng_next(&g) >> 40) / (float)(1u << 24) - 0.5f;
    for (size_t i = 0; i < (size_t)nb * dim; i++)
        Q[i] = (float)(br_rng_next(&g) >> 40) / (float)(1u << 24) - 0.5f;
    for (uint32_t b = 0; b < nb; b++)
        bid[b] = b + 1;
    for (uint32_t u = 0; u < nu; u++) {
        uid[u] = u + 1;
        ptr[u] = 3 * (uint64_t)u;
        for (uint32_t j = 0; j < 3; j++)
            idx[3 * u + j] = j;
    }
    ptr[nu] = 3 * (uint64_t)nu;
    br_model_data d;
    memset(&d, 0, sizeof d);
    d.meta.kind = BR_MODEL_BIASED;
    d.meta.loss = BR_LOSS_MSE;
    d.meta.optim = BR_OPTIM_SGD;
    d.meta.dim = dim;
    d.meta.n_users = nu;
    d.meta.n_books = nb;
    d.meta.global_mean = 3.5f;
    d.meta.reg = d.meta.reg_bias = 0.05f;
    d.meta.seed = seed;
    d.meta.test_rmse = d.meta.test_mae = NAN;
    d.user_vecs = P;
    d.book_vecs = Q;
    d.src_stride = dim;
    d.user_bias = bu;
    d.book_bias = bb;
    d.user_ids = uid;
    d.book_ids = bid;
    d.read_ptr = ptr;
    d.read_idx = idx;
    br_diag dg;
    assert_int_equal(br_model_save(&d, path, &dg), BR_OK);
    free(P);
    free(Q);
    free(bu);
    free(bb);
    free(uid);
    free(bid);
    free(ptr);
    free(idx);
}

/* Copies src to dst with one byte in the middle flipped. */
static void write_damaged(const char *src, const char *dst)
{
    FILE *f = fopen(src, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n / 2] ^= 0x55;
    f = fopen(dst, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    free(buf);
}

typedef struct fixture {
    char dir[64];
    char a[128], b[128], bad[128], live[128];
} fixture;

/* Model a (dim 8, 40 books), b (dim 13, 57 books), bad (a damaged), and
 * live, the path the server serves (a copy of a). */
static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/br_test_server.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->a, sizeof f->a, "%s/a.model", f->dir);
    snprintf(f->b, sizeof f->b, "%s/b.model", f->dir);
    snprintf(f->bad, sizeof f->bad, "%s/bad.model", f->dir);
    snprintf(f->live, sizeof f->live, "%s/live.model", f->dir);
    write_model(f->a, 30, 40, 8, 1);
    write_model(f->b, 25, 57, 13, 2);
    write_damaged(f->a, f->bad);
    write_model(f->live, 30, 40, 8, 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    unlink(f->a);
    unlink(f->b);
    unlink(f->bad);
    unlink(f->live);
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s/next.model", f->dir);
    unlink(tmp);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Atomically replaces the served file with a copy of src. */
static void install(const fixture *f, const char *src)
{
    char tmp[160], cmd[1024];
    snprintf(tmp, sizeof tmp, "%s/next.model", f->dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && mv '%s' '%s'", src, tmp, tmp, f->live);
    assert_int_equal(system(cmd), 0);
}

/* ---- a minimal HTTP client ------------------------------------------------------- */

/* A connection to 127.0.0.1:port (loopback only), or -1. With burst, the
 * connect does not wait (as wrk opens its connections: they reach the
 * server all at once) and the socket stays non-blocking. */
static int lo_connect(unsigned port, int burst)
{
    int fd = socket(AF_INET, SOCK_STREAM | (burst ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && !(burst && errno == EINPROGRESS)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends raw (a whole request) to 127.0.0.1:port and reads the answer to
 * EOF. Returns the status (0 on a connection failure); the body (malloc'd,
 * NUL-terminated) goes to *body if body is not NULL. */
static int http_raw(unsigned port, const char *raw, size_t rawlen, char **body)
{
    if (body)
        *body = NULL;
    int fd = lo_connect(port, 0);
    if (fd < 0)
        return 0;
    struct timeval tv = {20, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    size_t off = 0;
    while (off < rawlen) {
        ssize_t w = send(fd, raw + off, rawlen - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;   /* the server may answer (413) and close before reading it all */
        off += (size_t)w;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1024 > cap)
            buf = realloc(buf, cap *= 2);
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        status = 0;
    char *b = strstr(buf, "\r\n\r\n");
    if (body)
        *body = strdup(b ? b + 4 : "");
    free(buf);
    return status;
}

static int http(unsigned port, const char *method, const char *target, const char *data,
                char **body)
{
    char req[8192];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     method, target, data ? strlen(data) : 0, data ? data : "");
    assert_true(n > 0 && (size_t)n < sizeof req);
    return http_raw(port, req, (size_t)n, body);
}

/* Status of a request, and that an error body is {"error": ...}. */
static void expect(unsigned port, const char *method, const char *target, const char *data,
                   int want, const char *body_has)
{
    char *body = NULL;
    int got = http(port, method, target, data, &body);
    if (got != want || (body_has && !strstr(body, body_has)))
        fail_msg("%s %s: status %d (want %d), body %s", method, target, got, want, body);
    if (want >= 400 && strncmp(body, "{\"error\":\"", 10) != 0)
        fail_msg("%s %s: error body is not {\"error\": ...}: %s", method, target, body);
    free(body);
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_cell_refcount(void **state)
{
    fixture *f = *state;
    long live0 = br_srv_model_live();
    br_srv_model *a = NULL, *b = NULL;
    br_diag d;
    assert_int_equal(br_srv_model_open(f->a, 1, &a, &d), BR_OK);
    assert_int_equal(br_srv_model_open(f->b, 2, &b, &d), BR_OK);
    assert_int_equal(br_srv_model_live(), live0 + 2);
    br_srv_model *bad = NULL;
    assert_int_equal(br_srv_model_open(f->bad, 3, &bad, &d), BR_ERR_MODEL_CHECKSUM);
    assert_null(bad);
    assert_int_equal(br_srv_model_live(), live0 + 2);

    br_srv_model_cell *c = NULL;
    assert_int_equal(br_srv_model_cell_create(a, &c, &d), BR_OK);
    br_srv_model *held = br_srv_model_cell_acquire(c);   /* a request on a */
    assert_ptr_equal(held, a);
    br_srv_model_cell_swap(c, b);
    assert_int_equal(br_srv_model_live(), live0 + 2);   /* a lives on for the request */
    br_srv_model *now = br_srv_model_cell_acquire(c);
    assert_ptr_equal(now, b);
    assert_int_equal(br_srv_model_generation(now), 2);
    assert_int_equal(br_model_get_meta(br_srv_model_model(held))->dim, 8);
    size_t len;
    const char *bj = br_srv_model_book_json(held, 0, &len);
    assert_true(len > 0 && strncmp(bj, "\"book_id\":1,\"title\":\"\"", 22) == 0);
    br_srv_model_unref(held);                           /* the request ends */
    assert_int_equal(br_srv_model_live(), live0 + 1);
    br_srv_model_unref(now);
    br_srv_model_cell_free(c);
    assert_int_equal(br_srv_model_live(), live0);
}

/* A server of cfg (on a free port) started on the fixture's live model. */
static br_srv *start_cfg(const fixture *f, br_srv_config *cfg)
{
    cfg->port = 0;
    br_srv *s = NULL;
    br_diag d;
    br_err e = br_srv_create(cfg, f->live, &s, &d);
    if (e)
        fail_msg("br_srv_create: %s", br_diag_text(&d, e));
    e = br_srv_start(s, &d);
    if (e)
        fail_msg("br_srv_start: %s", br_diag_text(&d, e));
    assert_true(br_srv_port(s) > 0);
    return s;
}

static br_srv *start(const fixture *f, unsigned max_k, size_t max_body)
{
    br_srv_config cfg;
    br_srv_config_default(&cfg);
    cfg.threads = 2;
    cfg.max_k = max_k;
    cfg.max_body = max_body;
    return start_cfg(f, &cfg);
}

static void test_routes_and_errors(void **state)
{
    fixture *f = *state;
    install(f, f->a);
    long live0 = br_srv_model_live();
    br_srv *s = start(f, 20, 2048);
    unsigned p = br_srv_port(s);

    expect(p, "GET", "/healthz", NULL, 200, "\"status\":\"ok\"");
    expect(p, "HEAD", "/healthz", NULL, 200, NULL);
    expect(p, "GET", "/v1/recommend?user=1&k=5", NULL, 200, "\"rank\":5,");
    expect(p, "GET", "/v1/recommend?user=1&k=5&include_read=1", NULL, 200, "\"include_read\":true");
    expect(p, "GET", "/v1/similar?book=2&k=3", NULL, 200, "\"score\":\"cosine\"");
    expect(p, "GET", "/v1/books/7", NULL, 200, "\"book_id\":7");
    expect(p, "POST", "/v1/recommend", "{\"read\": [4, 5], \"ratings\": [5, 3], \"k\": 4}", 200,
           "\"read_count\":2");
    expect(p, "GET", "/metrics", NULL, 200, "bookrec_model_info{");

    /* read books are left out: user 1 read books 1..3 */
    char *body = NULL;
    assert_int_equal(http(p, "GET", "/v1/recommend?user=1&k=20", NULL, &body), 200);
    assert_null(strstr(body, "\"book_id\":1,"));
    assert_null(strstr(body, "\"book_id\":2,"));
    free(body);

    expect(p, "GET", "/v1/recommend", NULL, 400, "missing parameter 'user'");
    expect(p, "GET", "/v1/recommend?user=x1", NULL, 400, "not a user id");
    expect(p, "GET", "/v1/recommend?user=1&k=0", NULL, 400, "k must be");
    expect(p, "GET", "/v1/recommend?user=1&k=21", NULL, 400, "between 1 and 20");
    expect(p, "GET", "/v1/recommend?user=1&k=ten", NULL, 400, "not a whole number");
    expect(p, "GET", "/v1/recommend?user=1&include_read=maybe", NULL, 400, "include_read");
    expect(p, "GET", "/v1/similar", NULL, 400, "missing parameter 'book'");
    expect(p, "GET", "/v1/books/x", NULL, 400, "not a book id");
    expect(p, "GET", "/v1/books/", NULL, 400, "missing book id");
    expect(p, "POST", "/v1/recommend", "", 400, "empty body");
    expect(p, "POST", "/v1/recommend", "{\"read\": [1,", 400, "malformed JSON");
    expect(p, "POST", "/v1/recommend", "[1, 2]", 400, "JSON object");
    expect(p, "POST", "/v1/recommend", "{\"read\": []}", 400, "non-empty");
    expect(p, "POST", "/v1/recommend", "{\"read\": [1, -2]}", 400, "'read'[1]");
    expect(p, "POST", "/v1/recommend", "{\"read\": [1, 2], \"ratings\": [5]}", 400, "as long as");
    expect(p, "POST", "/v1/recommend", "{\"read\": [1], \"ratings\": [9]}", 400, "1..5");
    expect(p, "POST", "/v1/recommend", "{\"read\": [1], \"k\": 2.5}", 400, "'k'");

    expect(p, "GET", "/v1/recommend?user=31", NULL, 404, "user 31 is not in the model");
    expect(p, "GET", "/v1/similar?book=41", NULL, 404, "book 41");
    expect(p, "GET", "/v1/books/41", NULL, 404, "book 41");
    expect(p, "POST", "/v1/recommend", "{\"read\": [1, 41]}", 404, "book 41");
    expect(p, "GET", "/nope", NULL, 404, "no route");

    expect(p, "DELETE", "/healthz", NULL, 405, "not allowed");
    expect(p, "PUT", "/v1/recommend", "{}", 405, "not allowed");
    expect(p, "POST", "/v1/similar?book=1", "{}", 405, "not allowed");

    /* 413: a declared length over the limit, and a chunked body over it */
    char big[4096];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    expect(p, "POST", "/v1/recommend", big, 413, "over the limit");
    char chunked[6000];
    int n = snprintf(chunked, sizeof chunked,
                     "POST /v1/recommend HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n",
                     (unsigned)strlen(big), big);
    assert_int_equal(http_raw(p, chunked, (size_t)n, NULL), 413);

    /* 431: headers over the limit (32 KiB) */
    size_t hl = 40000;
    char *hdr = malloc(hl + 200);
    n = snprintf(hdr, 200, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: ");
    memset(hdr + n, 'a', hl);
    memcpy(hdr + n + hl, "\r\n\r\n", 5);
    char *b431 = NULL;
    assert_int_equal(http_raw(p, hdr, (size_t)n + hl + 4, &b431), 431);
    assert_non_null(strstr(b431, "{\"error\":\"request line and headers"));
    free(b431);
    free(hdr);

    /* the metrics counted them */
    assert_int_equal(http(p, "GET", "/metrics", NULL, &body), 200);
    assert_non_null(strstr(body, "route=\"/v1/recommend\",method=\"GET\",code=\"400\"}"));
    assert_non_null(strstr(body, "route=\"/healthz\",method=\"other\",code=\"405\"} 1"));
    assert_non_null(strstr(body, "code=\"413\"} 2"));
    assert_non_null(strstr(body, "route=\"/healthz\",method=\"GET\",code=\"431\"} 1"));
    assert_non_null(strstr(body, "bookrec_http_request_duration_seconds_bucket{route=\"/v1/similar\",le=\"+Inf\"}"));
    free(body);

    assert_int_equal(br_srv_stop(s, 2000), 0);
    br_srv_free(s);
    assert_int_equal(br_srv_model_live(), live0);
}

typedef struct load {
    unsigned port;
    atomic_int stop;
    atomic_long ok, bad;
    int seq;
} load;

static void *load_thread(void *arg)
{
    load *l = arg;
    unsigned i = 0;
    while (!atomic_load(&l->stop)) {
        char target[64];
        int st;
        i++;
        if (i % 3 == 0) {
            st = http(l->port, "POST", "/v1/recommend", "{\"read\": [4, 5, 6], \"k\": 3}", NULL);
        } else {
            snprintf(target, sizeof target, "/v1/recommend?user=%u&k=5", 1 + i % 25);
            st = http(l->port, "GET", target, NULL, NULL);
        }
        if (st == 200)
            atomic_fetch_add(&l->ok, 1);
        else
            atomic_fetch_add(&l->bad, 1);
    }
    return NULL;
}

/* Reloads while four clients query: models of other dimensions swap in,
 * damaged ones are refused, and no request fails. */
static void test_reload_under_load(void **state)
{
    fixture *f = *state;
    install(f, f->a);
    long live0 = br_srv_model_live();
    br_srv *s = start(f, 100, 4096);
    load l = {.port = br_srv_port(s)};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, load_thread, &l), 0);
    uint64_t gen = 1;
    br_diag d;
    for (int r = 0; r < 12; r++) {
        usleep(20000);
        if (r % 3 == 2) {
            install(f, f->bad);
            assert_int_equal(br_srv_reload(s, &d), BR_ERR_MODEL_CHECKSUM);
            assert_int_equal(br_srv_generation(s), gen);
        } else {
            install(f, r % 2 ? f->b : f->a);
            br_err e = br_srv_reload(s, &d);
            if (e)
                fail_msg("reload %d: %s", r, br_diag_text(&d, e));
            assert_int_equal(br_srv_generation(s), ++gen);
        }
        char *body = NULL;
        assert_int_equal(http(l.port, "GET", "/healthz", NULL, &body), 200);
        char want[64];
        snprintf(want, sizeof want, "\"generation\":%llu", (unsigned long long)gen);
        assert_non_null(strstr(body, want));
        free(body);
    }
    usleep(20000);
    atomic_store(&l.stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    print_message("reload under load: %ld requests answered 200, %ld not\n",
                  atomic_load(&l.ok), atomic_load(&l.bad));
    assert_true(atomic_load(&l.ok) > 0);
    assert_int_equal(atomic_load(&l.bad), 0);
    char *body = NULL;
    assert_int_equal(http(l.port, "GET", "/metrics", NULL, &body), 200);
    assert_non_null(strstr(body, "bookrec_model_reloads_total{result=\"failed\"} 4"));
    assert_non_null(strstr(body, "bookrec_model_reloads_total{result=\"ok\"} 8"));
    free(body);
    assert_int_equal(br_srv_stop(s, 2000), 0);
    br_srv_free(s);
    assert_int_equal(br_srv_model_live(), live0);
}

static void test_config_errors(void **state)
{
    fixture *f = *state;
    br_srv_config cfg;
    br_diag d;
    br_srv *s = NULL;
    br_srv_config_default(&cfg);
    cfg.threads = 0;
    assert_int_equal(br_srv_create(&cfg, f->a, &s, &d), BR_ERR_ARG);
    br_srv_config_default(&cfg);
    cfg.max_k = 0;
    assert_int_equal(br_srv_create(&cfg, f->a, &s, &d), BR_ERR_ARG);
    br_srv_config_default(&cfg);
    assert_int_equal(br_srv_create(&cfg, f->bad, &s, &d), BR_ERR_MODEL_CHECKSUM);
    assert_null(s);
    char missing[160];
    snprintf(missing, sizeof missing, "%s/none.model", f->dir);
    assert_int_equal(br_srv_create(&cfg, missing, &s, &d), BR_ERR_NOT_FOUND);
    br_srv_free(NULL);
}

/* ---- connections ------------------------------------------------------------------ */

/* Sends GET /healthz on fd (kept alive) and waits up to ms for the start of
 * an answer: its status, 0 if none came. */
static int ka_healthz(int fd, int ms)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1))
        return 0;
    struct pollfd pf = {fd, POLLIN, 0};
    if (poll(&pf, 1, ms) != 1)
        return 0;
    char buf[4096];
    ssize_t r = recv(fd, buf, sizeof buf - 1, 0);
    if (r <= 0)
        return 0;
    buf[r] = '\0';
    int status = 0;
    return sscanf(buf, "HTTP/1.%*d %d", &status) == 1 ? status : 0;
}

/* Sockets in each epoll set of process pid (one set per worker: its
 * sockets are the "tfd:" lines of the set's /proc fdinfo whose descriptor
 * is a socket), into n[] (at most max sets); the number of sets. */
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

/* Connections opened at once are shared evenly by the workers (with
 * libmicrohttpd's own accept, one worker could take up to ten in a row and
 * often took nearly all), and the connection limit holds: past it a
 * connection waits, unanswered, until one closes. */
static void test_connections(void **state)
{
    fixture *f = *state;
    install(f, f->a);
    br_srv_config cfg;
    br_srv_config_default(&cfg);
    cfg.threads = 2;
    cfg.max_connections = 32;
    br_srv *s = start_cfg(f, &cfg);
    unsigned port = br_srv_port(s);

    int fds[33];
    for (int i = 0; i < 32; i++)
        assert_true((fds[i] = lo_connect(port, 1)) >= 0);
    for (int i = 0; i < 32; i++) {
        struct pollfd pw = {fds[i], POLLOUT, 0};
        assert_int_equal(poll(&pw, 1, 5000), 1);
        assert_int_equal(fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) & ~O_NONBLOCK), 0);
    }
    for (int i = 0; i < 32; i++)
        assert_int_equal(ka_healthz(fds[i], 5000), 200);
    int n[4] = {0};
    assert_int_equal(worker_sockets(getpid(), n, 4), 2);
    print_message("32 connections: %d and %d on the two workers\n", n[0], n[1]);
    assert_int_equal(n[0], 16);
    assert_int_equal(n[1], 16);

    /* at the limit: the 33rd waits, then is served when one closes */
    assert_true((fds[32] = lo_connect(port, 0)) >= 0);   /* the backlog takes it */
    assert_int_equal(ka_healthz(fds[32], 300), 0);
    assert_int_equal(ka_healthz(fds[3], 2000), 200);   /* the others still answer */
    close(fds[0]);
    struct pollfd pf = {fds[32], POLLIN, 0};
    assert_int_equal(poll(&pf, 1, 5000), 1);
    char buf[64] = "";
    assert_true(recv(fds[32], buf, sizeof buf - 1, 0) > 12);
    assert_int_equal(strncmp(buf, "HTTP/1.1 200", 12), 0);

    for (int i = 1; i < 33; i++)
        close(fds[i]);
    assert_int_equal(br_srv_stop(s, 2000), 0);
    /* stopped: nothing listens any more */
    assert_int_equal(lo_connect(port, 0), -1);
    br_srv_free(s);
}

/* The ids of this process's threads (up to max); how many. */
static int thread_ids(long *ids, int max)
{
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max)
        if (e->d_name[0] != '.')
            ids[n++] = atol(e->d_name);
    closedir(d);
    return n;
}

/* The Cpus_allowed_list ("0", "0,3", "0-1", ...) of /proc/self/task/<tid>,
 * or of the calling thread for tid 0; 0 if the thread is gone. */
static int thread_cpu_list(long tid, char *list)
{
    char path[64], line[256];
    if (tid)
        snprintf(path, sizeof path, "/proc/self/task/%ld/status", tid);
    else
        snprintf(path, sizeof path, "/proc/thread-self/status");
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    list[0] = '\0';
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Cpus_allowed_list: %63s", list) == 1)
            break;
    fclose(f);
    return list[0] != '\0';
}

/* Starts a server of `threads` workers (pin as given) and the CPU lists of
 * the threads it started (the workers and the acceptor): how many. */
static br_srv *start_listing(const fixture *f, unsigned threads, int pin, char lists[][64],
                             int *n)
{
    long before[256], after[256];
    int nb = thread_ids(before, 256);
    br_srv_config cfg;
    br_srv_config_default(&cfg);
    cfg.threads = threads;
    cfg.pin = pin;
    br_srv *s = start_cfg(f, &cfg);
    int na = thread_ids(after, 256);
    *n = 0;
    for (int i = 0; i < na; i++) {
        int old = 0;
        for (int j = 0; j < nb && !old; j++)
            old = after[i] == before[j];
        if (!old && *n < 8 && thread_cpu_list(after[i], lists[*n]))
            (*n)++;
    }
    return s;
}

static void stop_free(br_srv *s)
{
    assert_int_equal(br_srv_stop(s, 2000), 0);
    br_srv_free(s);
}

/* With as many workers as CPUs the starting thread may use (here two with a
 * gap between them where the machine has them: the first and the last),
 * worker i runs only on the i-th; with more or fewer workers, or pin 0, they
 * run anywhere. The acceptor runs anywhere, and the starting thread keeps
 * its mask. */
static void test_pinning(void **state)
{
    fixture *f = *state;
    install(f, f->a);
    cpu_set_t mask, two;
    assert_int_equal(pthread_getaffinity_np(pthread_self(), sizeof mask, &mask), 0);
    int cpus[2], n_cpus = 0;
    CPU_ZERO(&two);
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &mask)) {
            cpus[n_cpus ? 1 : 0] = c;
            n_cpus = n_cpus ? 2 : 1;
        }
    for (int i = 0; i < n_cpus; i++)
        CPU_SET(cpus[i], &two);
    assert_int_equal(pthread_setaffinity_np(pthread_self(), sizeof two, &two), 0);
    char all[64], lists[8][64], after[64];
    assert_true(thread_cpu_list(0, all));

    int n;
    br_srv *s = start_listing(f, (unsigned)n_cpus, 1, lists, &n);
    assert_int_equal(n, n_cpus + 1);
    assert_true(thread_cpu_list(0, after));
    assert_string_equal(after, all);
    int seen[2] = {0}, free_threads = 0;
    for (int j = 0; j < n; j++) {
        char want[16];
        for (int i = 0; i < n_cpus; i++) {
            snprintf(want, sizeof want, "%d", cpus[i]);
            seen[i] += strcmp(lists[j], want) == 0;
        }
        free_threads += strcmp(lists[j], all) == 0;
    }
    for (int i = 0; i < n_cpus; i++) {
        assert_int_equal(br_srv_worker_cpu(s, (unsigned)i), cpus[i]);
        assert_int_equal(seen[i], n_cpus == 1 ? 2 : 1);   /* one CPU: the acceptor's too */
    }
    if (n_cpus == 2)
        assert_int_equal(free_threads, 1);   /* the acceptor */
    assert_int_equal(br_srv_worker_cpu(s, (unsigned)n_cpus), -1);
    assert_int_equal(http(br_srv_port(s), "GET", "/healthz", NULL, NULL), 200);
    stop_free(s);

    /* one worker more, one fewer, or pinning off: every thread anywhere */
    unsigned threads[3] = {(unsigned)n_cpus + 1, (unsigned)n_cpus - 1, (unsigned)n_cpus};
    for (int t = 0; t < 3; t++) {
        if (threads[t] == 0)
            continue;
        s = start_listing(f, threads[t], t < 2, lists, &n);
        assert_int_equal(n, (int)threads[t] + 1);
        for (int j = 0; j < n; j++)
            assert_string_equal(lists[j], all);
        for (unsigned i = 0; i < threads[t]; i++)
            assert_int_equal(br_srv_worker_cpu(s, i), -1);
        stop_free(s);
    }
    assert_int_equal(pthread_setaffinity_np(pthread_self(), sizeof mask, &mask), 0);
}

/* The former rendering of a top-k answer (snprintf, "%.7g" scores), the
 * reference for the printf-free writer. */
static char *ref_items(const br_srv_model *m, const char *query, const char *kind,
                       const br_rec_item *it, size_t n)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *o = open_memstream(&buf, &len);
    assert_non_null(o);
    fprintf(o, "{%s,\"model\":{\"generation\":%llu,\"fingerprint\":\"%s\"},\"score\":\"%s\","
               "\"results\":[", query, (unsigned long long)br_srv_model_generation(m),
            br_srv_model_fingerprint(m), kind);
    for (size_t i = 0; i < n; i++) {
        size_t bl;
        const char *bj = br_srv_model_book_json(m, it[i].book, &bl);
        fprintf(o, "%s{\"rank\":%zu,", i ? "," : "", i + 1);
        fwrite(bj, 1, bl, o);
        if (isfinite(it[i].score))
            fprintf(o, ",\"score\":%.7g}", (double)it[i].score);
        else
            fputs(",\"score\":null}", o);
    }
    fputs("]}\n", o);
    assert_int_equal(fclose(o), 0);
    return buf;
}

static br_srv_reply answer(br_srv *s, const char *path, const char *k1, const char *v1,
                           const char *k2, const char *v2, const char *k3, const char *v3)
{
    br_srv_arg args[3] = {{k1, v1, k1 ? strlen(k1) : 0, v1 ? strlen(v1) : 0},
                          {k2, v2, k2 ? strlen(k2) : 0, v2 ? strlen(v2) : 0},
                          {k3, v3, k3 ? strlen(k3) : 0, v3 ? strlen(v3) : 0}};
    size_t n = k3 ? 3 : k2 ? 2 : k1 ? 1 : 0;
    br_srv_query q = {"GET", path, args, n, NULL, 0};
    br_srv_reply r;
    assert_int_equal(br_srv_answer(s, &q, &r), BR_OK);
    assert_int_equal(r.status, 200);
    return r;
}

/* Top-k answers and /healthz byte for byte as the server wrote them when it
 * rendered them with printf and jansson per request. */
static void test_answer_text(void **state)
{
    fixture *f = *state;
    install(f, f->a);
    br_srv_config cfg;
    br_srv_config_default(&cfg);
    cfg.max_k = 100;
    br_srv *s = NULL;
    br_diag d;
    assert_int_equal(br_srv_create(&cfg, f->live, &s, &d), BR_OK);
    br_srv_model *m = NULL;
    assert_int_equal(br_srv_model_open(f->live, 1, &m, &d), BR_OK);
    const br_rec *rec = br_srv_model_rec(m);
    const br_model *model = br_srv_model_model(m);
    br_rec_scratch *sc = NULL;
    assert_int_equal(br_rec_scratch_create(rec, &sc, &d), BR_OK);
    br_rec_item it[100];
    size_t n = 0;
    static const struct { uint32_t user; size_t k; int incl; } cases[] = {
        {1, 40, 0}, {7, 5, 1}, {30, 100, 1}, {12, 1, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char user[16], k[16], q[128];
        snprintf(user, sizeof user, "%u", cases[c].user);
        snprintf(k, sizeof k, "%zu", cases[c].k);
        br_srv_reply r = answer(s, "/v1/recommend", "user", user, "k", k, "include_read",
                                cases[c].incl ? "true" : "0");
        int64_t u = br_model_find_user(model, cases[c].user);
        assert_true(u >= 0);
        assert_int_equal(br_rec_user_index(rec, sc, (uint32_t)u, cases[c].k,
                                           cases[c].incl ? BR_REC_INCLUDE_READ : 0, it, &n, &d),
                         BR_OK);
        snprintf(q, sizeof q, "\"user_id\":%u,\"k\":%zu,\"include_read\":%s", cases[c].user,
                 cases[c].k, cases[c].incl ? "true" : "false");
        char *want = ref_items(m, q, "predicted rating", it, n);
        assert_string_equal(r.body, want);
        assert_int_equal(r.len, strlen(want));
        free(want);
        br_srv_reply_free(&r);
    }
    br_srv_reply r = answer(s, "/v1/similar", "book", "5", "k", "39", NULL, NULL);
    assert_int_equal(br_rec_similar(rec, sc, 5, 39, it, &n, &d), BR_OK);
    char *want = ref_items(m, "\"book_id\":5,\"k\":39", "cosine", it, n);
    assert_string_equal(r.body, want);
    free(want);
    br_srv_reply_free(&r);

    /* /healthz: the answer's values in the former tree, dumped by jansson
     * (the reals made reals again, so "3" for 3.0 would differ) */
    r = answer(s, "/healthz", NULL, NULL, NULL, NULL, NULL, NULL);
    json_error_t je;
    json_t *got = json_loadb(r.body, r.len, 0, &je);
    assert_non_null(got);
    json_t *gm = json_object_get(got, "model");
    assert_string_equal(json_string_value(json_object_get(gm, "path")), f->live);
    assert_string_equal(json_string_value(json_object_get(gm, "kind")), "biased");
    assert_string_equal(json_string_value(json_object_get(gm, "loss")), "mse");
    assert_string_equal(json_string_value(json_object_get(gm, "fingerprint")),
                        br_srv_model_fingerprint(m));
    assert_int_equal(json_integer_value(json_object_get(gm, "dim")), 8);
    assert_int_equal(json_integer_value(json_object_get(gm, "users")), 30);
    assert_int_equal(json_integer_value(json_object_get(gm, "books")), 40);
    assert_int_equal(json_integer_value(json_object_get(gm, "generation")), 1);
    assert_int_equal(json_integer_value(json_object_get(gm, "format_version")), BR_MODEL_VERSION);
    assert_string_equal(json_string_value(json_object_get(got, "kernel")),
                        br_rec_kernel_name(rec));
    json_t *o = json_object(), *mo = json_object();
    json_object_set_new(o, "status", json_string("ok"));
    static const char *const members[] = {"path", "generation", "fingerprint", "format_version",
                                          "kind", "loss", "dim", "users", "books", "created",
                                          "loaded"};
    for (size_t i = 0; i < sizeof members / sizeof *members; i++)
        json_object_set(mo, members[i], json_object_get(gm, members[i]));
    json_object_set_new(mo, "load_seconds",
                        json_real(json_number_value(json_object_get(gm, "load_seconds"))));
    json_object_set_new(o, "model", mo);
    json_object_set(o, "kernel", json_object_get(got, "kernel"));
    json_object_set(o, "in_flight", json_object_get(got, "in_flight"));
    json_object_set_new(o, "uptime_seconds",
                        json_real(json_number_value(json_object_get(got, "uptime_seconds"))));
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(7));
    assert_non_null(text);
    assert_int_equal(r.len, strlen(text) + 1);
    assert_memory_equal(r.body, text, strlen(text));
    assert_int_equal(r.body[r.len - 1], '\n');
    free(text);
    json_decref(o);
    json_decref(got);
    br_srv_reply_free(&r);

    br_rec_scratch_free(sc);
    br_srv_model_unref(m);
    br_srv_free(s);
}

/* The committed fuzz corpora of the server (tests/fuzz/corpus/fuzz_server_*,
 * crashes found by fuzzing included) through the same request decoding and
 * invariants as the fuzz targets: in every build, so no clang is needed. */
static void test_fuzz_corpus_replay(void **state)
{
    br_srv *s = srv_fuzz_open();
    assert_non_null(s);
    static const char *const dirs[] = {"fuzz_server_query", "fuzz_server_body"};
    size_t files = 0, by_status[6] = {0};   /* 200, 400, 404, 405, 413, other */
    for (size_t t = 0; t < 2; t++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/fuzz/corpus/%s", BR_TEST_SRCDIR, dirs[t]);
        DIR *d = opendir(dir);
        assert_non_null(d);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            FILE *f = fopen(path, "rb");
            assert_non_null(f);
            static uint8_t buf[1 << 16];
            size_t n = fread(buf, 1, sizeof buf, f);
            fclose(f);
            unsigned st = t == 0 ? srv_fuzz_query_input(s, buf, n) : srv_fuzz_body_input(s, buf, n);
            by_status[st == 200 ? 0 : st == 400 ? 1 : st == 404 ? 2 : st == 405 ? 3
                      : st == 413 ? 4 : 5]++;
            files++;
        }
        closedir(d);
    }
    print_message("replayed %zu server fuzz inputs: %zu 200, %zu 400, %zu 404, %zu 405, "
                  "%zu 413\n", files, by_status[0], by_status[1], by_status[2], by_status[3],
                  by_status[4]);
    /* the seeds cover answers and every error the handler makes */
    assert_true(files >= 40);
    for (size_t i = 0; i < 5; i++)
        assert_true(by_status[i] > 0);
    br_srv_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cell_refcount),
        cmocka_unit_test(test_routes_and_errors),
        cmocka_unit_test(test_reload_under_load),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_answer_text),
        cmocka_unit_test(test_connections),
        cmocka_unit_test(test_pinning),
        cmocka_unit_test(test_fuzz_corpus_replay),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
