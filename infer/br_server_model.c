/*
 * br_server_model.c - reference-counted served models and the current-model
 * cell (see br_server_model.h).
 *
 * The count is a C11 atomic; the cell's pointer is read and its reference
 * taken under one mutex held for a few instructions, which is what makes a
 * concurrent swap safe without hazard pointers: a swap cannot drop the
 * cell's reference between a reader loading the pointer and incrementing
 * the count.
 */
#include "br_server_model.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct br_srv_model {
    atomic_long refs;
    br_model *model;
    br_rec *rec;
    uint64_t generation;
    double loaded_unix;    /* seconds since the epoch */
    double load_seconds;   /* open + validate + br_rec_create */
    char *path;
    char *book_json;           /* every book's members, back to back */
    size_t *book_off;          /* n_books + 1 offsets into book_json */
    char *status_json;         /* /healthz's "model" and "kernel" members */
    size_t status_len;
    char fingerprint[17];
};

struct br_srv_model_cell {
    pthread_mutex_t lock;
    br_srv_model *cur;
};

static atomic_long br_srv_model_count;

/* Appends the JSON text of a string (quoted, escaped) to f. */
static int br_srv_model_put_str(FILE *f, const char *s)
{
    json_t *j = json_string(s);   /* NULL for invalid UTF-8: written as "" */
    int ok = j ? json_dumpf(j, f, JSON_ENCODE_ANY) == 0 : fputs("\"\"", f) >= 0;
    json_decref(j);
    return ok;
}

/* Renders every book's members into m->book_json / m->book_off. */
static br_err br_srv_model_render_books(br_srv_model *m, br_diag *diag)
{
    uint32_t nb = br_model_get_meta(m->model)->n_books;
    m->book_off = malloc(((size_t)nb + 1) * sizeof *m->book_off);
    size_t len = 0;
    FILE *f = m->book_off ? open_memstream(&m->book_json, &len) : NULL;
    if (!f)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    int ok = 1;
    for (uint32_t b = 0; b < nb && ok; b++) {
        br_book bk;
        br_model_book_info(m->model, b, &bk);
        fflush(f);
        m->book_off[b] = len;
        ok = fprintf(f, "\"book_id\":%u,\"title\":", bk.book_id) > 0 &&
             br_srv_model_put_str(f, bk.title) && fputs(",\"authors\":", f) >= 0 &&
             br_srv_model_put_str(f, bk.authors) &&
             (bk.year ? fprintf(f, ",\"year\":%d", (int)bk.year) : fprintf(f, ",\"year\":null")) > 0;
    }
    if (fclose(f) != 0 || !ok || !m->book_json)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    m->book_off[nb] = len;
    return BR_OK;
}

const char *br_srv_model_kind_name(uint32_t kind)
{
    return kind == BR_MODEL_DOT ? "dot" : kind == BR_MODEL_BIASED ? "biased"
         : kind == BR_MODEL_MLP ? "mlp" : "unknown";
}

static void br_srv_model_iso_time(double unix_s, char *out, size_t n)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

json_t *br_srv_json_str(const char *s)
{
    json_t *j = json_string(s);   /* NULL for invalid UTF-8 */
    return j ? j : json_string("");
}

/* Renders /healthz's members that only change with the model into
 * m->status_json: "model":{"path":..,..,"load_seconds":..},"kernel":"..". */
static br_err br_srv_model_render_status(br_srv_model *m, br_diag *diag)
{
    const br_model_meta *mt = br_model_get_meta(m->model);
    char created[32], loaded[32];
    br_srv_model_iso_time((double)mt->created_unix, created, sizeof created);
    br_srv_model_iso_time(m->loaded_unix, loaded, sizeof loaded);
    json_t *mo = json_object(), *kernel = json_string(br_rec_kernel_name(m->rec));
    if (mo) {
        json_object_set_new(mo, "path", br_srv_json_str(m->path));
        json_object_set_new(mo, "generation", json_integer((json_int_t)m->generation));
        json_object_set_new(mo, "fingerprint", json_string(m->fingerprint));
        json_object_set_new(mo, "format_version", json_integer(BR_MODEL_VERSION));
        json_object_set_new(mo, "kind", json_string(br_srv_model_kind_name(mt->kind)));
        json_object_set_new(mo, "loss", json_string(mt->loss == BR_LOSS_BPR ? "bpr" : "mse"));
        json_object_set_new(mo, "dim", json_integer(mt->dim));
        json_object_set_new(mo, "users", json_integer(mt->n_users));
        json_object_set_new(mo, "books", json_integer(mt->n_books));
        json_object_set_new(mo, "created", json_string(created));
        json_object_set_new(mo, "loaded", json_string(loaded));
        json_object_set_new(mo, "load_seconds", json_real(m->load_seconds));
    }
    /* the flags of every answer the server renders with jansson */
    size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(7);
    char *mt_text = mo ? json_dumps(mo, flags) : NULL;
    char *k_text = kernel ? json_dumps(kernel, flags | JSON_ENCODE_ANY) : NULL;
    json_decref(mo);
    json_decref(kernel);
    size_t n = mt_text && k_text ? strlen(mt_text) + strlen(k_text) + 20 : 0;
    m->status_json = n ? malloc(n) : NULL;
    if (m->status_json)
        m->status_len = (size_t)snprintf(m->status_json, n, "\"model\":%s,\"kernel\":%s",
                                         mt_text, k_text);
    free(mt_text);
    free(k_text);
    return m->status_json ? BR_OK : br_fail(diag, BR_ERR_NOMEM, "out of memory");
}

static double br_srv_now(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

br_err br_srv_model_open(const char *path, uint64_t generation, br_srv_model **out,
                         br_diag *diag)
{
    if (!path || !out)
        return br_fail(diag, BR_ERR_ARG, "NULL argument");
    *out = NULL;
    double t0 = br_srv_now(CLOCK_MONOTONIC);
    br_srv_model *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    br_err e = br_model_open(path, &m->model, diag);
    if (!e)
        e = br_rec_create(m->model, &m->rec, diag);
    if (!e)
        e = br_srv_model_render_books(m, diag);
    if (!e) {
        snprintf(m->fingerprint, sizeof m->fingerprint, "%016llx",
                 (unsigned long long)br_model_checksum(m->model));
        m->generation = generation;
        m->loaded_unix = br_srv_now(CLOCK_REALTIME);
        m->load_seconds = br_srv_now(CLOCK_MONOTONIC) - t0;
        e = br_srv_model_render_status(m, diag);
    }
    if (e) {
        br_rec_free(m->rec);
        free(m->book_json);
        free(m->book_off);
        free(m->status_json);
        br_model_free(m->model);
        free(m->path);
        free(m);
        return e;
    }
    atomic_init(&m->refs, 1);
    atomic_fetch_add(&br_srv_model_count, 1);
    *out = m;
    return BR_OK;
}

br_srv_model *br_srv_model_ref(br_srv_model *m)
{
    if (m)
        atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

void br_srv_model_unref(br_srv_model *m)
{
    if (!m || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
        return;
    br_rec_free(m->rec);
    br_model_free(m->model);
    free(m->book_json);
    free(m->book_off);
    free(m->status_json);
    free(m->path);
    free(m);
    atomic_fetch_sub(&br_srv_model_count, 1);
}

const br_rec *br_srv_model_rec(const br_srv_model *m) { return m->rec; }
const br_model *br_srv_model_model(const br_srv_model *m) { return m->model; }
uint64_t br_srv_model_generation(const br_srv_model *m) { return m->generation; }
double br_srv_model_loaded_unix(const br_srv_model *m) { return m->loaded_unix; }
double br_srv_model_load_seconds(const br_srv_model *m) { return m->load_seconds; }
const char *br_srv_model_path(const br_srv_model *m) { return m->path; }
const char *br_srv_model_fingerprint(const br_srv_model *m) { return m->fingerprint; }

const char *br_srv_model_book_json(const br_srv_model *m, uint32_t b, size_t *len)
{
    *len = m->book_off[b + 1] - m->book_off[b];
    return m->book_json + m->book_off[b];
}

const char *br_srv_model_status_json(const br_srv_model *m, size_t *len)
{
    *len = m->status_len;
    return m->status_json;
}

long br_srv_model_live(void) { return atomic_load(&br_srv_model_count); }

br_err br_srv_model_cell_create(br_srv_model *m, br_srv_model_cell **out, br_diag *diag)
{
    if (!m || !out)
        return br_fail(diag, BR_ERR_ARG, "NULL argument");
    *out = NULL;
    br_srv_model_cell *c = calloc(1, sizeof *c);
    if (!c)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return br_fail(diag, BR_ERR_NOMEM, "cannot create a mutex");
    }
    c->cur = m;
    *out = c;
    return BR_OK;
}

void br_srv_model_cell_free(br_srv_model_cell *c)
{
    if (!c)
        return;
    br_srv_model_unref(c->cur);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

br_srv_model *br_srv_model_cell_acquire(br_srv_model_cell *c)
{
    pthread_mutex_lock(&c->lock);
    br_srv_model *m = br_srv_model_ref(c->cur);
    pthread_mutex_unlock(&c->lock);
    return m;
}

void br_srv_model_cell_swap(br_srv_model_cell *c, br_srv_model *m)
{
    pthread_mutex_lock(&c->lock);
    br_srv_model *old = c->cur;
    c->cur = m;
    pthread_mutex_unlock(&c->lock);
    br_srv_model_unref(old);   /* outside the lock: unmapping takes a while */
}
