/*
 * br_server.h - the HTTP inference server behind `bookrec-infer --serve`:
 * the br_rec scorer behind a JSON API on libmicrohttpd (one daemon of one
 * epoll thread per worker, and an acceptor thread that hands each new
 * connection to the least busy worker). Routes, answers and errors are
 * specified in docs/HTTP.md:
 *
 *   GET  /v1/recommend?user=ID&k=10[&include_read=1]
 *   POST /v1/recommend     {"read": [ids], "ratings": [1..5, optional], "k": 10}
 *   GET  /v1/similar?book=ID&k=10
 *   GET  /v1/books/ID
 *   GET  /healthz
 *   GET  /metrics          Prometheus text format
 *
 * Errors are JSON {"error": "..."} with 400 (missing or malformed
 * parameter), 404 (unknown user, book or route), 405 (wrong method, with
 * Allow), 413 (body over the limit), 431 (request line and headers over the
 * limit; past twice the limit libmicrohttpd sends its own HTML 431 before
 * the handler sees the request), 500 (out of memory).
 *
 * Each worker thread keeps its own br_rec_scratch, made on its first query
 * and remade if a reloaded model has other dimensions; it is freed when the
 * thread ends. Each request holds a reference to the model it started on
 * (br_server_model.h), so br_srv_reload can swap models while requests run.
 *
 * Lifecycle: br_srv_create loads the model, br_srv_start listens,
 * br_srv_reload re-maps the model file (a file that fails validation is
 * refused and the old model keeps serving), br_srv_stop stops accepting,
 * waits for the requests in flight and stops the workers, br_srv_free.
 * Signals are the caller's business. Nothing here prints or exits; the
 * access log goes to the FILE the caller passes, and libmicrohttpd's own
 * messages to the caller's log callback.
 */
#ifndef BR_SERVER_H
#define BR_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "br_error.h"

typedef struct br_srv br_srv;

typedef struct br_srv_config {
    const char *host;          /* address to bind: "127.0.0.1" (default), "::1", "localhost" */
    unsigned port;             /* 0: any free port (see br_srv_port) */
    unsigned threads;          /* worker threads (default 2) */
    unsigned max_k;            /* largest k accepted (default 1000) */
    size_t max_body;           /* largest POST body in bytes (default 1 MiB) */
    size_t max_header;         /* request line + headers, bytes (default 32 KiB);
                                * more gives 431 */
    unsigned max_connections;  /* open connections at once (default 1024); more
                                * wait in the listen backlog */
    unsigned timeout_s;        /* idle connection timeout, seconds (default 30) */
    int pin;                   /* 1 (default): when there are as many workers as CPUs
                                * the starting thread may use, worker i runs only on
                                * the i-th of them; 0: the workers run anywhere */
    FILE *access_log;          /* one logfmt line per request, or NULL */
    /* libmicrohttpd's own messages (bind failures, ...), or NULL to drop them. */
    void (*log)(void *ctx, const char *msg);
    void *log_ctx;
} br_srv_config;

/* Fills c with the defaults above. */
void br_srv_config_default(br_srv_config *c);

/* Checks the configuration and loads the model at model_path (kept for
 * br_srv_reload). Errors: BR_ERR_ARG for a bad configuration, those of
 * br_model_open / br_rec_create for the model. */
br_err br_srv_create(const br_srv_config *c, const char *model_path, br_srv **out,
                     br_diag *diag);

/* Starts listening. BR_ERR_ARG for a host that does not resolve, BR_ERR_IO
 * if the daemon cannot start (the diag names host and port; the log
 * callback has libmicrohttpd's reason). */
br_err br_srv_start(br_srv *s, br_diag *diag);

/* The bound port (the real one when the configuration said 0); 0 before
 * br_srv_start. */
unsigned br_srv_port(const br_srv *s);

/* Re-maps the model file and swaps it in. The load runs on a short-lived
 * thread at nice +10, so busy workers go first; this call waits for it.
 * Requests already running finish on the old model, which is freed when
 * the last of them ends. If the new
 * file fails to load, the old model keeps serving and the error is returned
 * (and counted in /metrics). Call from one thread at a time. */
br_err br_srv_reload(br_srv *s, br_diag *diag);

/* Stops accepting connections, waits up to drain_ms for the requests in
 * flight to finish, then stops the workers. Returns the number of requests
 * that were still in flight when the wait ran out (0: a clean stop).
 * Idempotent; br_srv_free calls it with drain_ms 0 if needed. */
unsigned br_srv_stop(br_srv *s, unsigned drain_ms);

void br_srv_free(br_srv *s);   /* NULL ok */

/* The CPU worker i is pinned to, or -1 (not pinned, or no such worker).
 * Between br_srv_start and br_srv_stop, from the thread that calls them. */
int br_srv_worker_cpu(const br_srv *s, unsigned i);

/* Requests started and not yet completed. */
unsigned br_srv_in_flight(const br_srv *s);

/* The served model's generation: 1 after br_srv_create, +1 per successful
 * reload. */
uint64_t br_srv_generation(br_srv *s);

/* ---- the request handler without HTTP ----------------------------------------------
 * What the libmicrohttpd callback does once a request is read, as a pure
 * function of the request (also what the fuzz targets and tests call):
 * route, method, decoded query arguments and body in, status and answer
 * out. The HTTP layer keeps what only it sees: the header size limit (431),
 * a body over the limit it would not keep (413 without reading it), the
 * access log and the metrics. Needs no br_srv_start. Thread-safe: any
 * number of threads may call it at once (each keeps its own scratch). */

typedef struct br_srv_arg {
    const char *key;
    const char *value;          /* NULL for "?key" without '=' */
    size_t key_len, value_len;  /* decoded lengths: more than strlen when "%00"
                                 * put a NUL inside (such an argument is a 400) */
} br_srv_arg;

typedef struct br_srv_query {
    const char *method;         /* "GET", "HEAD", "POST", anything else gives 405 */
    const char *path;           /* decoded, without the query string */
    const br_srv_arg *args;     /* decoded query arguments in order; the first of a
                                 * repeated key counts */
    size_t n_args;
    const char *body;           /* POST body of body_len bytes, no NUL needed */
    size_t body_len;
} br_srv_query;

typedef struct br_srv_reply {
    unsigned status;            /* 200, 400, 404, 405, 413 or 500 */
    char *body;                 /* len bytes, malloc'd: JSON and a newline
                                 * (Prometheus text for /metrics) */
    size_t len;
    const char *type;           /* Content-Type */
    const char *allow;          /* the Allow header of a 405, else NULL */
    uint64_t generation;        /* of the model that answered, 0 if none was needed */
} br_srv_reply;

/* Answers q into *out (free with br_srv_reply_free). BR_ERR_ARG for NULL
 * arguments, BR_ERR_NOMEM when not even an error answer could be made
 * (*out is then empty); every other failure is an answer with its status. */
br_err br_srv_answer(br_srv *s, const br_srv_query *q, br_srv_reply *out);
void br_srv_reply_free(br_srv_reply *r);   /* NULL ok */

#endif
