/*
 * br_server_model.h - the model a server answers from, and the cell that
 * holds the current one so it can be replaced while requests run.
 *
 * A br_srv_model is a validated, mapped model file with its br_rec, the
 * time it was loaded and a generation number, behind a reference count.
 * Whoever holds a reference may use the model; the last br_srv_model_unref
 * unmaps it. A br_srv_model_cell holds one reference to the current model:
 * br_srv_model_cell_acquire hands out a further reference (taken under a
 * short lock, so a swap can never free a model between reading the pointer
 * and counting the reference), br_srv_model_cell_swap installs a new model
 * and drops the cell's reference to the old one. Requests that acquired the
 * old model keep using it, and the old mapping goes away when the last of
 * them releases it.
 *
 * Nothing here prints or exits.
 */
#ifndef BR_SERVER_MODEL_H
#define BR_SERVER_MODEL_H

#include <stdint.h>
#include "br_error.h"
#include "br_model.h"
#include "br_recommend.h"

typedef struct br_srv_model br_srv_model;           /* refcounted, immutable */
typedef struct br_srv_model_cell br_srv_model_cell; /* the current model */

/* Maps and validates the model file at path (br_model_open), wraps it
 * (br_rec_create) and renders every book's JSON members and /healthz's
 * model members; the result holds one reference. Errors are those of
 * br_model_open and br_rec_create, and BR_ERR_NOMEM; nothing is left
 * allocated on failure. */
br_err br_srv_model_open(const char *path, uint64_t generation, br_srv_model **out,
                         br_diag *diag);

br_srv_model *br_srv_model_ref(br_srv_model *m);   /* returns m; NULL ok */
void br_srv_model_unref(br_srv_model *m);           /* frees at zero; NULL ok */

const br_rec *br_srv_model_rec(const br_srv_model *m);
const br_model *br_srv_model_model(const br_srv_model *m);
uint64_t br_srv_model_generation(const br_srv_model *m);  /* 1 for the first load */
double br_srv_model_loaded_unix(const br_srv_model *m);   /* wall time of the load, s */
double br_srv_model_load_seconds(const br_srv_model *m);  /* how long open+validate took */
const char *br_srv_model_path(const br_srv_model *m);

/* The book of internal index b as a JSON object's members, made once at
 * load (by jansson, so strings are escaped correctly):
 *   "book_id":1,"title":"...","authors":"...","year":2008
 * ("year":null when unknown). *len receives its length. b < n_books. */
const char *br_srv_model_book_json(const br_srv_model *m, uint32_t b, size_t *len);

/* /healthz's members that change only with the model, made once at load
 * (by jansson, with the flags of the server's other JSON answers):
 *   "model":{"path":..,"generation":..,...,"load_seconds":..},"kernel":".."
 * *len receives its length. */
const char *br_srv_model_status_json(const br_srv_model *m, size_t *len);

/* A JSON string of s, or "" when s is not valid UTF-8 (jansson's json_t;
 * NULL only when out of memory). */
struct json_t;
struct json_t *br_srv_json_str(const char *s);

/* "dot", "biased", "mlp" or "unknown" for a BR_MODEL_* kind. */
const char *br_srv_model_kind_name(uint32_t kind);

/* The model file's checksum as 16 hex digits. */
const char *br_srv_model_fingerprint(const br_srv_model *m);

/* Live models (opened and not yet freed) in the whole process: for tests
 * that check the old model is freed once its last request ends. */
long br_srv_model_live(void);

/* A cell holding m (takes over the caller's reference). BR_ERR_ARG for a
 * NULL m, BR_ERR_NOMEM. */
br_err br_srv_model_cell_create(br_srv_model *m, br_srv_model_cell **out, br_diag *diag);
void br_srv_model_cell_free(br_srv_model_cell *c);  /* drops its reference; NULL ok */

/* A new reference to the current model (never NULL). */
br_srv_model *br_srv_model_cell_acquire(br_srv_model_cell *c);

/* Installs m (takes over the caller's reference) and drops the cell's
 * reference to the old model. */
void br_srv_model_cell_swap(br_srv_model_cell *c, br_srv_model *m);

#endif
