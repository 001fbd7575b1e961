/*
 * test_model.c - the model file: round trips of every kind with and without
 * book metadata, every truncation and every single-bit flip refused, each
 * structural check of the reader exercised on files with a valid checksum,
 * random mutations that must never crash, the known-bad files in tests/bad/,
 * atomic saves, and br_hash64's pinned values, sensitivity and speed.
 *
 * The known-bad files are derived from the small test model; to rebuild them
 * after a deliberate format change run `BR_REGEN_BAD=1 ./test_model` (it
 * rewrites tests/bad/model_*.bin in the source tree, see tests/bad/README.md).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "br_books.h"
#include "br_model.h"

/* Layout constants from docs/FORMAT.md, restated here so the test also
 * checks the writer against the spec. */
#define OFF_VERSION 8
#define OFF_ENDIAN 12
#define OFF_FILE_SIZE 16
#define OFF_CHECKSUM 24
#define OFF_HEADER_SIZE 32
#define OFF_N_SECTIONS 36
#define OFF_TABLE 40
#define OFF_KIND 48
#define OFF_LOSS 52
#define OFF_OPTIM 56
#define OFF_DIM 60
#define OFF_STRIDE 64
#define OFF_N_USERS 68
#define OFF_MLP_H1 80
#define ENTRY_SIZE 40
#define REC_SIZE 32

enum { S_BOOK_VECS = 1, S_USER_VECS, S_USER_BIAS, S_BOOK_BIAS, S_MLP, S_BOOK_NORMS,
       S_READ_PTR, S_READ_IDX, S_USER_IDS, S_BOOK_IDS, S_STRINGS, S_BOOK_INFO };

/* ---- byte helpers ---------------------------------------------------------- */

static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

#define OFF_CHUNK_SHIFT 144
#define OFF_N_CHUNKS 148
#define OFF_CHUNKS 152

/* The header checksum of a version 2 file, written from docs/FORMAT.md:
 * br_hash64 of the header (checksum field zero) followed by the chunk sums. */
static uint64_t v2_header_sum(const uint8_t *buf, uint64_t off, uint64_t n)
{
    uint8_t *cat = malloc(256 + n * 8);
    assert_non_null(cat);
    memcpy(cat, buf, 256);
    put64(cat + OFF_CHECKSUM, 0);
    memcpy(cat + 256, buf + off, n * 8);
    uint64_t h = br_hash64(cat, 256 + n * 8, 0);
    free(cat);
    return h;
}

/* Recomputes the checksums after a deliberate patch, from the spec: for
 * version 2, each chunk's sum (br_hash64 of its bytes, the checksum field
 * zero, seed = the chunk's number), then the header's; for version 1, the
 * whole file's. Header fields the patch made unusable are left (the reader
 * refuses the file for them). */
static void fix_checksum(uint8_t *buf, size_t len)
{
    put64(buf + OFF_CHECKSUM, 0);
    uint32_t shift = get32(buf + OFF_CHUNK_SHIFT);
    uint64_t n = get32(buf + OFF_N_CHUNKS), off = get64(buf + OFF_CHUNKS);
    if (get32(buf + OFF_VERSION) < 2 || shift < 12 || shift > 30 || off > len ||
        n > (len - off) / 8) {
        put64(buf + OFF_CHECKSUM, br_hash64(buf, len, 0));
        return;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t lo = i << shift, hi = lo + (1ull << shift);
        if (lo > off)
            break;
        hi = hi < off ? hi : off;
        put64(buf + off + i * 8, br_hash64(buf + lo, hi - lo, i));
    }
    put64(buf + OFF_CHECKSUM, v2_header_sum(buf, off, n));
}

/* Entry of section `id` in the table, or NULL. */
static uint8_t *find_entry(uint8_t *buf, uint32_t id)
{
    uint32_t n = get32(buf + OFF_N_SECTIONS);
    uint8_t *t = buf + get64(buf + OFF_TABLE);
    for (uint32_t i = 0; i < n; i++)
        if (get32(t + i * ENTRY_SIZE) == id)
            return t + i * ENTRY_SIZE;
    return NULL;
}

static uint8_t *section(uint8_t *buf, uint32_t id)
{
    uint8_t *e = find_entry(buf, id);
    assert_non_null(e);
    return buf + get64(e + 8);
}

/* An exact-size, 64-byte aligned copy, so the reader uses it in place and
 * ASan sees any read past its end. */
static uint8_t *exact_copy(const void *src, size_t len)
{
    void *p = NULL;
    assert_int_equal(posix_memalign(&p, 64, len ? len : 1), 0);
    if (len)
        memcpy(p, src, len);
    return p;
}

static void expect_open_err(const uint8_t *buf, size_t len, br_err want, const char *substr);

/* ---- the small test model -------------------------------------------------- */

#define NU 5
#define NB 7
#define DIM 5
#define SRC 6       /* source stride: > DIM to check only DIM floats are taken */
#define H1 3
#define H2 2
#define NNZ 13
#define MLP_N (2 * DIM * H1 + H1 + H1 * H2 + H2 + H2 + 1)

typedef struct fixture {
    br_model_data d;
    float uv[NU * SRC], bv[NB * SRC], ub[NU], bb[NB], mlp[MLP_N];
    uint32_t uids[NU], bids[NB];
    uint64_t ptr[NU + 1];
    uint32_t idx[NNZ];
} fixture;

static const uint32_t fx_uids[NU] = {3, 10, 11, 40, 1000};
static const uint32_t fx_bids[NB] = {2, 5, 7, 8, 100, 101, 4000000000u};
static const uint64_t fx_ptr[NU + 1] = {0, 3, 3, 4, 11, 13};
static const uint32_t fx_idx[NNZ] = {0, 3, 6, /* user 1 reads nothing */ 1, 0, 1, 2, 3, 4, 5, 6, 2, 5};

static void make_fixture(fixture *f, br_model_kind kind, const br_books *books)
{
    memset(f, 0, sizeof *f);
    for (int u = 0; u < NU; u++)
        for (int c = 0; c < SRC; c++)
            f->uv[u * SRC + c] = c < DIM ? (u + 1) * 0.5f - c * 0.25f + 0.125f : 999.0f;
    for (int b = 0; b < NB; b++)
        for (int c = 0; c < SRC; c++)
            f->bv[b * SRC + c] = c < DIM ? -(b + 1) * 0.375f + c * 0.5f : -999.0f;
    for (int u = 0; u < NU; u++)
        f->ub[u] = 0.1f * u - 0.2f;
    for (int b = 0; b < NB; b++)
        f->bb[b] = -0.05f * b + 0.3f;
    for (int k = 0; k < MLP_N; k++)
        f->mlp[k] = (float)((k * 37) % 19) / 19.0f - 0.5f;
    memcpy(f->uids, fx_uids, sizeof fx_uids);
    memcpy(f->bids, fx_bids, sizeof fx_bids);
    memcpy(f->ptr, fx_ptr, sizeof fx_ptr);
    memcpy(f->idx, fx_idx, sizeof fx_idx);

    br_model_meta *m = &f->d.meta;
    m->kind = kind;
    m->loss = kind == BR_MODEL_MLP ? BR_LOSS_BPR : BR_LOSS_MSE;
    m->optim = BR_OPTIM_ADAM;
    m->dim = DIM;
    m->stride = 0; /* recomputed by the writer */
    m->n_users = NU;
    m->n_books = NB;
    m->epochs = 12;
    m->mlp_h1 = kind == BR_MODEL_MLP ? H1 : 0;
    m->mlp_h2 = kind == BR_MODEL_MLP ? H2 : 0;
    m->seed = 0x1234567890abcdefull;
    m->n_train = NNZ;
    m->data_fingerprint = 0xfeedfacecafebeefull;
    m->created_unix = 1700000000;
    m->global_mean = kind == BR_MODEL_BIASED ? 3.75f : 0.0f;
    m->lr = 0.01f;
    m->reg = 0.05f;
    m->reg_bias = 0.001f;
    m->test_rmse = 0.85f;
    m->test_mae = NAN;

    f->d.user_vecs = f->uv;
    f->d.book_vecs = f->bv;
    f->d.src_stride = SRC;
    f->d.user_bias = kind == BR_MODEL_BIASED ? f->ub : NULL;
    f->d.book_bias = kind == BR_MODEL_BIASED ? f->bb : NULL;
    f->d.mlp = kind == BR_MODEL_MLP ? f->mlp : NULL;
    f->d.user_ids = f->uids;
    f->d.book_ids = f->bids;
    f->d.read_ptr = f->ptr;
    f->d.read_idx = f->idx;
    f->d.books = books;
}

/* books.csv for some of the fixture's books (8 and 4000000000 are missing;
 * 9999 is not in the model), with quoting, a negative year and a tag file. */
static const char books_csv[] =
    "book_id,goodreads_book_id,title,authors,original_publication_year,average_rating,ratings_count\n"
    "2,1001,\"The Hobbit, or There and Back Again\",J.R.R. Tolkien,1937,4.25,2000\n"
    "5,1002,\"A \"\"quoted\"\" title\",Anon,-500,3.5,10\n"
    "7,1003,Dune,Frank Herbert,1965,4.2,1500\n"
    "100,1004,Emma,Jane Austen,1815,3.9,800\n"
    "101,1005,Persuasion,Jane Austen,1817,4.1,700\n"
    "9999,1006,Not In Model,Nobody,2000,1.0,1\n";
static const char book_tags_csv[] =
    "goodreads_book_id,tag_id,count\n"
    "1001,1,50\n1001,2,10\n1003,3,40\n1004,4,30\n1005,4,20\n";
static const char tags_csv[] =
    "tag_id,tag_name\n1,fantasy\n2,to-read\n3,science-fiction\n4,romance\n";

static br_books *make_books(void)
{
    br_books *b = NULL;
    br_diag dg;
    assert_int_equal(br_books_parse(books_csv, sizeof books_csv - 1, "books.csv", &b, &dg), BR_OK);
    /* Genres are the books module's business; if its tag parsing fails the
     * model test still runs, with empty genres. */
    br_books_parse_tags(b, book_tags_csv, sizeof book_tags_csv - 1, tags_csv, sizeof tags_csv - 1, &dg);
    return b;
}

static void save_buf(const fixture *f, uint8_t **buf, size_t *len)
{
    br_diag dg;
    void *p = NULL;
    br_err e = br_model_save_buffer(&f->d, &p, len, &dg);
    if (e)
        fail_msg("save_buffer: %s", br_diag_text(&dg, e));
    assert_int_equal((uintptr_t)p % 64, 0);
    *buf = p;
}

/* Checks every accessor of m against the fixture. */
static void check_model(const br_model *m, const fixture *f)
{
    const br_model_meta *mt = br_model_get_meta(m);
    const br_model_meta *w = &f->d.meta;
    assert_int_equal(mt->kind, w->kind);
    assert_int_equal(mt->loss, w->loss);
    assert_int_equal(mt->optim, w->optim);
    assert_int_equal(mt->dim, DIM);
    assert_int_equal(mt->stride, 8);
    assert_int_equal(mt->n_users, NU);
    assert_int_equal(mt->n_books, NB);
    assert_int_equal(mt->epochs, 12);
    assert_int_equal(mt->mlp_h1, w->mlp_h1);
    assert_int_equal(mt->mlp_h2, w->mlp_h2);
    assert_true(mt->seed == w->seed);
    assert_true(mt->n_train == NNZ);
    assert_true(mt->data_fingerprint == w->data_fingerprint);
    assert_true(mt->created_unix == 1700000000);
    assert_true(mt->global_mean == w->global_mean);
    assert_true(mt->lr == w->lr && mt->reg == w->reg && mt->reg_bias == w->reg_bias);
    assert_true(mt->test_rmse == w->test_rmse);
    assert_true(isnan(mt->test_mae));

    const float *uv = br_model_user_vecs(m), *bv = br_model_book_vecs(m);
    assert_int_equal((uintptr_t)uv % 64, 0);
    assert_int_equal((uintptr_t)bv % 64, 0);
    for (int u = 0; u < NU; u++)
        for (int c = 0; c < 8; c++)
            assert_true(uv[u * 8 + c] == (c < DIM ? f->uv[u * SRC + c] : 0.0f));
    for (int b = 0; b < NB; b++)
        for (int c = 0; c < 8; c++)
            assert_true(bv[b * 8 + c] == (c < DIM ? f->bv[b * SRC + c] : 0.0f));
    const float *norms = br_model_book_norms(m);
    assert_non_null(norms);
    for (int b = 0; b < NB; b++) {
        double s = 0;
        for (int c = 0; c < DIM; c++)
            s += (double)f->bv[b * SRC + c] * f->bv[b * SRC + c];
        assert_true(fabs(norms[b] - sqrt(s)) <= 1e-6 * sqrt(s));
    }

    if (w->kind == BR_MODEL_BIASED) {
        const float *ub = br_model_user_bias(m), *bb = br_model_book_bias(m);
        assert_non_null(ub);
        assert_non_null(bb);
        assert_memory_equal(ub, f->ub, sizeof f->ub);
        assert_memory_equal(bb, f->bb, sizeof f->bb);
    } else {
        assert_null(br_model_user_bias(m));
        assert_null(br_model_book_bias(m));
    }
    if (w->kind == BR_MODEL_MLP) {
        assert_non_null(br_model_mlp(m));
        assert_int_equal(br_model_mlp_len(DIM, H1, H2), MLP_N);
        assert_memory_equal(br_model_mlp(m), f->mlp, sizeof f->mlp);
    } else {
        assert_null(br_model_mlp(m));
    }

    assert_memory_equal(br_model_user_ids(m), fx_uids, sizeof fx_uids);
    assert_memory_equal(br_model_book_ids(m), fx_bids, sizeof fx_bids);
    for (uint32_t u = 0; u < NU; u++) {
        size_t n = 99;
        const uint32_t *r = br_model_user_read(m, u, &n);
        assert_int_equal(n, fx_ptr[u + 1] - fx_ptr[u]);
        if (n)
            assert_memory_equal(r, fx_idx + fx_ptr[u], n * 4);
    }
    size_t n = 99;
    assert_null(br_model_user_read(m, NU, &n));
    assert_int_equal(n, 0);

    for (int u = 0; u < NU; u++)
        assert_int_equal(br_model_find_user(m, fx_uids[u]), u);
    for (int b = 0; b < NB; b++)
        assert_int_equal(br_model_find_book(m, fx_bids[b]), b);
    const uint32_t absent[] = {0, 1, 4, 9, 12, 39, 41, 999, 1001, 3999999999u, UINT32_MAX};
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
        assert_int_equal(br_model_find_user(m, absent[i]), -1);
        if (absent[i] != 4000000000u)
            assert_int_equal(br_model_find_book(m, absent[i]), -1);
    }

    for (uint32_t b = 0; b < NB; b++) {
        br_book info;
        br_model_book_info(m, b, &info);
        assert_int_equal(info.book_id, fx_bids[b]);
        assert_non_null(info.title);
        assert_non_null(info.authors);
        assert_non_null(info.genre);
        assert_null(info.tags[0]);
        const br_book *src = f->d.books ? br_books_find(f->d.books, fx_bids[b]) : NULL;
        if (src) {
            assert_string_equal(info.title, src->title);
            assert_string_equal(info.authors, src->authors);
            assert_string_equal(info.genre, src->genre);
            assert_int_equal(info.year, src->year);
            assert_true(info.avg_rating == src->avg_rating ||
                        (isnan(info.avg_rating) && isnan(src->avg_rating)));
            assert_int_equal(info.ratings_count, src->ratings_count);
            assert_true(info.goodreads_id == src->goodreads_id);
        } else {
            assert_string_equal(info.title, "");
            assert_string_equal(info.authors, "");
            assert_string_equal(info.genre, "");
            assert_int_equal(info.year, 0);
            assert_true(isnan(info.avg_rating));
            assert_int_equal(info.ratings_count, 0);
        }
    }
    br_book info;
    br_model_book_info(m, NB, &info); /* out of range: the empty record */
    assert_string_equal(info.title, "");
    assert_int_equal(info.book_id, 0);
    assert_int_equal(br_model_has_book_info(m), f->d.books != NULL);
}

/* ---- round trips ----------------------------------------------------------- */

static void round_trip(br_model_kind kind, int with_books)
{
    br_books *books = with_books ? make_books() : NULL;
    fixture f;
    make_fixture(&f, kind, books);
    uint8_t *buf;
    size_t len;
    save_buf(&f, &buf, &len);

    /* The header as the spec says. */
    assert_memory_equal(buf, "BOOKREC\0", 8);
    assert_int_equal(get32(buf + OFF_VERSION), BR_MODEL_VERSION);
    assert_memory_equal(buf + OFF_ENDIAN, "\x04\x03\x02\x01", 4);
    assert_true(get64(buf + OFF_FILE_SIZE) == len);
    assert_int_equal(get32(buf + OFF_HEADER_SIZE), BR_MODEL_HEADER_SIZE);
    assert_int_equal(get32(buf + OFF_KIND), kind);
    assert_int_equal(get32(buf + OFF_STRIDE), 8);
    assert_int_equal(get32(buf + OFF_CHUNK_SHIFT), 16);
    for (size_t i = 160; i < BR_MODEL_HEADER_SIZE; i++)
        assert_int_equal(buf[i], 0);
    assert_int_equal(find_entry(buf, S_STRINGS) != NULL, with_books);

    br_model *m = NULL;
    br_diag dg;
    br_err e = br_model_open_buffer(buf, len, &m, &dg);
    if (e)
        fail_msg("open_buffer: %s", br_diag_text(&dg, e));
    check_model(m, &f);
    assert_true(br_model_file_size(m) == len);
    if (books) {
        /* Repeated genres are stored once (Emma and Persuasion: both romance). */
        br_book e4, e5;
        br_model_book_info(m, 4, &e4);
        br_model_book_info(m, 5, &e5);
        if (e4.genre[0] && strcmp(e4.genre, e5.genre) == 0)
            assert_ptr_equal(e4.genre, e5.genre);
        assert_string_equal(e4.title, "Emma");
        br_book e1;
        br_model_book_info(m, 1, &e1);
        assert_string_equal(e1.title, "A \"quoted\" title");
        assert_int_equal(e1.year, -500);
    }
    /* The checksums as docs/FORMAT.md says: the chunk sums last in the file,
     * one per 64 KiB of what precedes them (the checksum field read as
     * zero, seed = chunk number), and the header's over the header and the
     * sums. */
    uint64_t off = get64(buf + OFF_CHUNKS), n = get32(buf + OFF_N_CHUNKS);
    assert_true(off % 64 == 0 && off + n * 8 == len && n == (off + 65535) / 65536);
    uint8_t *z = exact_copy(buf, len);
    put64(z + OFF_CHECKSUM, 0);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t lo = i * 65536, hi = lo + 65536 < off ? lo + 65536 : off;
        assert_true(get64(buf + off + i * 8) == br_hash64(z + lo, hi - lo, i));
    }
    assert_true(br_model_checksum(m) == v2_header_sum(buf, off, n));
    assert_true(br_model_checksum(m) == get64(buf + OFF_CHECKSUM));
    free(z);
    br_model_free(m);

    /* Unaligned buffer: copied, still 64-byte aligned vectors. */
    uint8_t *odd = malloc(len + 1);
    memcpy(odd + 1, buf, len);
    assert_int_equal(br_model_open_buffer(odd + 1, len, &m, &dg), BR_OK);
    check_model(m, &f);
    br_model_free(m);
    free(odd);

    /* Through a file. */
    char path[512];
    snprintf(path, sizeof path, "%s/test_model_rt_%d_%d.bin", BR_TEST_BINDIR, kind, with_books);
    e = br_model_save(&f.d, path, &dg);
    if (e)
        fail_msg("save: %s", br_diag_text(&dg, e));
    e = br_model_open(path, &m, &dg);
    if (e)
        fail_msg("open: %s", br_diag_text(&dg, e));
    check_model(m, &f);
    assert_true(br_model_checksum(m) == get64(buf + OFF_CHECKSUM)); /* same bytes */
    br_model_free(m);
    unlink(path);

    free(buf);
    br_books_free(books);
}

static void test_round_trip_dot(void **s) { (void)s; round_trip(BR_MODEL_DOT, 0); }
static void test_round_trip_biased(void **s) { (void)s; round_trip(BR_MODEL_BIASED, 0); }
static void test_round_trip_mlp(void **s) { (void)s; round_trip(BR_MODEL_MLP, 0); }
static void test_round_trip_dot_books(void **s) { (void)s; round_trip(BR_MODEL_DOT, 1); }
static void test_round_trip_biased_books(void **s) { (void)s; round_trip(BR_MODEL_BIASED, 1); }
static void test_round_trip_mlp_books(void **s) { (void)s; round_trip(BR_MODEL_MLP, 1); }

/* The writer's bytes are pinned: a change to them is a format change. */
static void test_pinned_bytes(void **s)
{
    (void)s;
    const uint64_t want[4] = {0, 0x18520f38602aade6ull, 0xbaa852dea12b70b1ull, 0x467035dcc942d693ull};
    int bad = 0;
    for (int k = BR_MODEL_DOT; k <= BR_MODEL_MLP; k++) {
        fixture f;
        make_fixture(&f, k, NULL);
        uint8_t *buf;
        size_t len;
        save_buf(&f, &buf, &len);
        uint64_t got = get64(buf + OFF_CHECKSUM);
        if (got != want[k]) {
            print_message("kind %d: checksum 0x%016llxull, pinned 0x%016llxull (%zu bytes)\n", k,
                          (unsigned long long)got, (unsigned long long)want[k], len);
            bad++;
        }
        free(buf);
    }
    assert_int_equal(bad, 0);
}

/* A model big enough for many chunks (3,000 users x stride 16: 192 KB of
 * user rows; 20 read books each: 240 KB of read lists). */
static void write_big(const char *path, uint32_t nu, uint32_t nb)
{
    const uint32_t dim = 13, per = 20;
    float *uv = malloc((size_t)nu * dim * 4), *bv = malloc((size_t)nb * dim * 4);
    uint32_t *uids = malloc(nu * 4), *bids = malloc(nb * 4), *idx = malloc((size_t)nu * per * 4);
    uint64_t *ptr = malloc(((size_t)nu + 1) * 8);
    assert_true(uv && bv && uids && bids && idx && ptr);
    for (size_t i = 0; i < (size_t)nu * dim; i++)
        uv[i] = (float)(i % 97) * 0.01f - 0.4f;
    for (size_t i = 0; i < (size_t)nb * dim; i++)
        bv[i] = (float)(i % 89) * 0.02f - 0.8f;
    for (uint32_t u = 0; u < nu; u++) {
        uids[u] = 10 + 2 * u;
        ptr[u] = (uint64_t)u * per;
    }
    /* ascending read lists: books u % 3, +3, +6, ... */
    for (uint32_t u = 0; u < nu; u++)
        for (uint32_t k = 0; k < per; k++)
            idx[(size_t)u * per + k] = u % 3 + 3 * k;
    ptr[nu] = (uint64_t)nu * per;
    for (uint32_t b = 0; b < nb; b++)
        bids[b] = b + 1;
    br_model_data d = {0};
    d.meta.kind = BR_MODEL_DOT;
    d.meta.loss = BR_LOSS_BPR;
    d.meta.optim = BR_OPTIM_SGD;
    d.meta.dim = dim;
    d.meta.n_users = nu;
    d.meta.n_books = nb;
    d.meta.created_unix = 1700000000;
    d.user_vecs = uv;
    d.book_vecs = bv;
    d.src_stride = dim;
    d.user_ids = uids;
    d.book_ids = bids;
    d.read_ptr = ptr;
    d.read_idx = idx;
    br_diag dg;
    br_err e = br_model_save(&d, path, &dg);
    if (e)
        fail_msg("save: %s", br_diag_text(&dg, e));
    free(uv);
    free(bv);
    free(uids);
    free(bids);
    free(idx);
    free(ptr);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void write_all(const char *path, const uint8_t *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
}

/* Lazy opening: the same answers as an eager open; a flipped bit in user
 * u's row or read list passes the open but is caught by
 * br_model_check_user(u) (and by br_model_check_all), while other users far
 * from it still check out; a flip anywhere else is caught at open. Every
 * flip is caught by one of them. */
static void test_lazy_open(void **s)
{
    (void)s;
    char path[512], bad[512];
    snprintf(path, sizeof path, "%s/test_model_lazy.bin", BR_TEST_BINDIR);
    snprintf(bad, sizeof bad, "%s/test_model_lazy_bad.bin", BR_TEST_BINDIR);
    const uint32_t nu = 3000, nb = 60;
    write_big(path, nu, nb);
    br_model *m = NULL, *e = NULL;
    br_diag dg;
    assert_int_equal(br_model_open_flags(path, BR_MODEL_OPEN_LAZY, &m, &dg), BR_OK);
    assert_int_equal(br_model_open(path, &e, &dg), BR_OK);
    assert_true(br_model_is_lazy(m));
    assert_false(br_model_is_lazy(e));
    assert_true(br_model_checksum(m) == br_model_checksum(e));
    for (uint32_t u = 0; u < nu; u += 7) {
        assert_int_equal(br_model_check_user(m, u, &dg), BR_OK);
        assert_int_equal(br_model_check_user(e, u, &dg), BR_OK);
        size_t n1, n2;
        const uint32_t *r1 = br_model_user_read(m, u, &n1), *r2 = br_model_user_read(e, u, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(r1, r2, n1 * 4);
    }
    assert_int_equal(br_model_check_user(m, nu, &dg), BR_ERR_RANGE);
    assert_int_equal(br_model_check_all(m, &dg), BR_OK);
    br_model_free(m);
    br_model_free(e);

    size_t len;
    uint8_t *buf = read_all(path, &len);
    const uint8_t *uv_ent = find_entry(buf, S_USER_VECS), *ri_ent = find_entry(buf, S_READ_IDX);
    uint64_t uv = get64(uv_ent + 8), ri = get64(ri_ent + 8), row = 16 * 4;
    uint32_t victims[] = {5, 1500, 2999};
    for (int part = 0; part < 2; part++)
        for (size_t vi = 0; vi < 3; vi++) {
            uint32_t u = victims[vi];
            uint64_t at = part == 0 ? uv + u * row + 9 : ri + (uint64_t)u * 20 * 4 + 3;
            buf[at] ^= 0x10;
            write_all(bad, buf, len);
            buf[at] ^= 0x10;
            assert_int_equal(br_model_open(bad, &m, &dg), BR_ERR_MODEL_CHECKSUM);
            br_err le = br_model_open_flags(bad, BR_MODEL_OPEN_LAZY, &m, &dg);
            if (le != BR_OK) {
                /* the first and last users share chunks with other sections,
                 * which a lazy open checks at once */
                assert_int_equal(le, BR_ERR_MODEL_CHECKSUM);
                assert_true(vi != 1);   /* the middle one lies in a lazy chunk */
                continue;
            }
            br_err ce = br_model_check_user(m, u, &dg);
            assert_int_equal(ce, BR_ERR_MODEL_CHECKSUM);
            assert_non_null(strstr(dg.msg, "test_model_lazy_bad.bin"));
            assert_non_null(strstr(dg.msg, "damaged"));
            /* a user in another chunk of the same section is fine */
            uint32_t far = u < nu / 2 ? nu - 1 : 0;
            assert_int_equal(br_model_check_user(m, far, &dg), BR_OK);
            assert_int_equal(br_model_check_user(m, u, &dg), BR_ERR_MODEL_CHECKSUM);   /* again */
            assert_int_equal(br_model_check_all(m, &dg), BR_ERR_MODEL_CHECKSUM);
            br_model_free(m);
        }
    /* every 997th byte flipped: an eager open refuses it; a lazy one
     * refuses it at open or in check_all */
    for (size_t i = 0; i < len; i += 997) {
        buf[i] ^= 0x01;
        write_all(bad, buf, len);
        buf[i] ^= 0x01;
        assert_int_not_equal(br_model_open(bad, &m, &dg), BR_OK);
        br_err le = br_model_open_flags(bad, BR_MODEL_OPEN_LAZY, &m, &dg);
        if (le == BR_OK) {
            assert_int_not_equal(br_model_check_all(m, &dg), BR_OK);
            br_model_free(m);
        }
    }
    free(buf);
    unlink(path);
    unlink(bad);
}

/* br_model_reseal gives the bytes the spec does (fix_checksum above, written
 * from docs/FORMAT.md), and a resealed edit opens. */
static void test_reseal(void **s)
{
    (void)s;
    fixture f;
    make_fixture(&f, BR_MODEL_BIASED, NULL);
    uint8_t *buf;
    size_t len;
    save_buf(&f, &buf, &len);
    uint8_t *a = exact_copy(buf, len), *b = exact_copy(buf, len);
    const uint8_t *ub = find_entry(a, S_USER_BIAS);
    uint64_t at = get64(ub + 8);   /* a user bias: any float is valid there */
    a[at] ^= 0x01;
    b[at] ^= 0x01;
    br_model *m = NULL;
    assert_int_equal(br_model_open_buffer(a, len, &m, NULL), BR_ERR_MODEL_CHECKSUM);
    br_model_reseal(a, len);
    fix_checksum(b, len);
    assert_memory_equal(a, b, len);
    assert_int_equal(br_model_open_buffer(a, len, &m, NULL), BR_OK);
    br_model_free(m);
    free(a);
    free(b);
    free(buf);
}

/* Books present but none of them in the model: metadata sections still
 * written, every record empty. */
static void test_books_no_overlap(void **s)
{
    (void)s;
    static const char csv[] = "book_id,title,authors\n9999,X,Y\n";
    br_books *books = NULL;
    assert_int_equal(br_books_parse(csv, sizeof csv - 1, "b.csv", &books, NULL), BR_OK);
    fixture f;
    make_fixture(&f, BR_MODEL_DOT, books);
    uint8_t *buf;
    size_t len;
    save_buf(&f, &buf, &len);
    br_model *m;
    assert_int_equal(br_model_open_buffer(buf, len, &m, NULL), BR_OK);
    check_model(m, &f);
    br_model_free(m);
    free(buf);
    br_books_free(books);
}

/* Contiguous ids take the direct-lookup path in find_user/find_book. */
static void test_dense_ids(void **s)
{
    (void)s;
    fixture f;
    make_fixture(&f, BR_MODEL_DOT, NULL);
    for (int u = 0; u < NU; u++)
        f.uids[u] = 7 + u;
    for (int b = 0; b < NB; b++)
        f.bids[b] = b; /* starting at 0 */
    uint8_t *buf;
    size_t len;
    save_buf(&f, &buf, &len);
    br_model *m;
    assert_int_equal(br_model_open_buffer(buf, len, &m, NULL), BR_OK);
    for (uint32_t id = 0; id < 20; id++) {
        assert_int_equal(br_model_find_user(m, id), id >= 7 && id < 7 + NU ? (int64_t)id - 7 : -1);
        assert_int_equal(br_model_find_book(m, id), id < NB ? (int64_t)id : -1);
    }
    assert_int_equal(br_model_find_user(m, UINT32_MAX), -1);
    assert_int_equal(br_model_find_book(m, UINT32_MAX), -1);
    br_model_free(m);
    free(buf);
}

/* Nobody has read anything: an empty read_idx section (read_idx may be NULL). */
static void test_no_reads(void **s)
{
    (void)s;
    fixture f;
    make_fixture(&f, BR_MODEL_BIASED, NULL);
    memset(f.ptr, 0, sizeof f.ptr);
    f.d.read_idx = NULL;
    uint8_t *buf;
    size_t len;
    save_buf(&f, &buf, &len);
    assert_true(get64(find_entry(buf, S_READ_IDX) + 16) == 0);
    br_model *m;
    br_diag dg;
    br_err e = br_model_open_buffer(buf, len, &m, &dg);
    if (e)
        fail_msg("%s", br_diag_text(&dg, e));
    for (uint32_t u = 0; u < NU; u++) {
        size_t n = 99;
        br_model_user_read(m, u, &n);
        assert_int_equal(n, 0);
    }
    br_model_free(m);
    for (size_t n = 0; n < len; n++)
        expect_open_err(buf, n, BR_ERR_MODEL_TRUNCATED, NULL);
    free(buf);
}

/* ---- writer validation ----------------------------------------------------- */

static void expect_save_err(const fixture *f, br_err want, const char *substr)
{
    br_diag dg;
    br_diag_clear(&dg);
    void *buf = (void *)1;
    size_t len = 1;
    br_err e = br_model_save_buffer(&f->d, &buf, &len, &dg);
    if (e != want)
        fail_msg("save: want %s, got %s (%s)", br_strerror(want), br_strerror(e), dg.msg);
    assert_null(buf);
    assert_int_equal(len, 0);
    if (substr && !strstr(dg.msg, substr))
        fail_msg("message '%s' lacks '%s'", dg.msg, substr);
}

static void test_writer_validation(void **s)
{
    (void)s;
    fixture f;
#define CASE(KIND, STMT, ERR, SUB)            \
    do {                                      \
        make_fixture(&f, KIND, NULL);         \
        STMT;                                 \
        expect_save_err(&f, ERR, SUB);        \
    } while (0)
    CASE(BR_MODEL_DOT, f.d.meta.kind = 0, BR_ERR_ARG, "kind");
    CASE(BR_MODEL_DOT, f.d.meta.kind = 4, BR_ERR_ARG, "kind");
    CASE(BR_MODEL_DOT, f.d.meta.loss = 3, BR_ERR_ARG, "loss");
    CASE(BR_MODEL_DOT, f.d.meta.optim = 0, BR_ERR_ARG, "optimizer");
    CASE(BR_MODEL_DOT, f.d.meta.dim = 0, BR_ERR_ARG, "dimension");
    CASE(BR_MODEL_DOT, f.d.meta.dim = UINT32_MAX, BR_ERR_ARG, "dimension");
    CASE(BR_MODEL_DOT, f.d.meta.n_users = 0, BR_ERR_ARG, "users");
    CASE(BR_MODEL_DOT, f.d.meta.n_books = 0, BR_ERR_ARG, "books");
    CASE(BR_MODEL_DOT, f.d.src_stride = DIM - 1, BR_ERR_ARG, "stride");
    CASE(BR_MODEL_DOT, f.d.user_vecs = NULL, BR_ERR_ARG, NULL);
    CASE(BR_MODEL_DOT, f.d.read_ptr = NULL, BR_ERR_ARG, NULL);
    CASE(BR_MODEL_DOT, f.d.read_idx = NULL, BR_ERR_ARG, "read_idx");
    CASE(BR_MODEL_BIASED, f.d.book_bias = NULL, BR_ERR_ARG, "bias");
    CASE(BR_MODEL_BIASED, f.d.meta.global_mean = NAN, BR_ERR_NUMERIC, "global mean");
    CASE(BR_MODEL_MLP, f.d.mlp = NULL, BR_ERR_ARG, "mlp");
    CASE(BR_MODEL_MLP, f.d.meta.mlp_h2 = 0, BR_ERR_ARG, "mlp");
    CASE(BR_MODEL_DOT, f.uids[2] = f.uids[1], BR_ERR_ARG, "user ids");
    CASE(BR_MODEL_DOT, f.uids[4] = 1, BR_ERR_ARG, "user ids");
    CASE(BR_MODEL_DOT, f.bids[6] = 101, BR_ERR_ARG, "book ids");
    CASE(BR_MODEL_DOT, f.ptr[0] = 1, BR_ERR_ARG, "read_ptr[0]");
    CASE(BR_MODEL_DOT, f.ptr[2] = 2, BR_ERR_ARG, "read_ptr");
    CASE(BR_MODEL_DOT, f.idx[4] = NB, BR_ERR_RANGE, "read book index");
    CASE(BR_MODEL_DOT, f.idx[2] = 3, BR_ERR_ARG, "ascending");
    CASE(BR_MODEL_DOT, f.uv[3 * SRC + 4] = NAN, BR_ERR_NUMERIC, "user vector 3");
    CASE(BR_MODEL_DOT, f.bv[6 * SRC + 0] = INFINITY, BR_ERR_NUMERIC, "book vector 6");
    CASE(BR_MODEL_DOT, f.bv[1 * SRC + 2] = -INFINITY, BR_ERR_NUMERIC, "book vector 1");
    CASE(BR_MODEL_BIASED, f.ub[4] = NAN, BR_ERR_NUMERIC, "user bias 4");
    CASE(BR_MODEL_BIASED, f.bb[0] = INFINITY, BR_ERR_NUMERIC, "book bias 0");
    CASE(BR_MODEL_MLP, f.mlp[MLP_N - 1] = NAN, BR_ERR_NUMERIC, "mlp weight");
#undef CASE
    /* Values past dim in the source rows are not model data: NaN there is fine. */
    make_fixture(&f, BR_MODEL_DOT, NULL);
    f.uv[SRC - 1] = NAN;
    uint8_t *buf;
    size_t len;
    save_buf(&f, &buf, &len);
    free(buf);
    assert_int_equal(br_model_save_buffer(NULL, (void **)&buf, &len, NULL), BR_ERR_ARG);
    /* Non-MLP kinds: stray hidden widths are normalised to 0. */
    make_fixture(&f, BR_MODEL_DOT, NULL);
    f.d.meta.mlp_h1 = 4;
    save_buf(&f, &buf, &len);
    br_model *m;
    assert_int_equal(br_model_open_buffer(buf, len, &m, NULL), BR_OK);
    assert_int_equal(br_model_get_meta(m)->mlp_h1, 0);
    br_model_free(m);
    free(buf);
}

/* ---- refusing damaged input ------------------------------------------------ */

static br_err open_exact(const uint8_t *buf, size_t len, br_diag *dg)
{
    uint8_t *c = exact_copy(buf, len);
    br_model *m = NULL;
    br_err e = br_model_open_buffer(c, len, &m, dg);
    if (e == BR_OK)
        br_model_free(m);
    else
        assert_null(m);
    free(c);
    return e;
}

static void expect_open_err(const uint8_t *buf, size_t len, br_err want, const char *substr)
{
    br_diag dg;
    br_diag_clear(&dg);
    br_err e = open_exact(buf, len, &dg);
    if (e != want)
        fail_msg("open: want %s, got %s (%s)", br_strerror(want), br_strerror(e), dg.msg);
    if (substr && !strstr(dg.msg, substr))
        fail_msg("message '%s' lacks '%s'", dg.msg, substr);
}

static void test_every_truncation(void **s)
{
    (void)s;
    for (int k = BR_MODEL_DOT; k <= BR_MODEL_MLP; k++) {
        br_books *books = k == BR_MODEL_MLP ? make_books() : NULL;
        fixture f;
        make_fixture(&f, k, books);
        uint8_t *buf;
        size_t len;
        save_buf(&f, &buf, &len);
        for (size_t n = 0; n < len; n++)
            expect_open_err(buf, n, BR_ERR_MODEL_TRUNCATED, NULL);
        /* And an extra byte at the end. */
        uint8_t *longer = calloc(1, len + 1);
        memcpy(longer, buf, len);
        expect_open_err(longer, len + 1, BR_ERR_MODEL_CORRUPT, "trailing");
        free(longer);
        free(buf);
        br_books_free(books);
    }
}

static void test_every_bit_flip(void **s)
{
    (void)s;
    br_books *books = make_books();
    fixture f;
    make_fixture(&f, BR_MODEL_BIASED, books);
    uint8_t *buf;
    size_t len;
    save_buf(&f, &buf, &len);
    uint8_t *c = exact_copy(buf, len);
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            c[i] ^= (uint8_t)(1u << bit);
            br_model *m = NULL;
            br_diag dg;
            br_err e = br_model_open_buffer(c, len, &m, &dg);
            c[i] ^= (uint8_t)(1u << bit);
            if (e == BR_OK)
                fail_msg("flip of byte %zu bit %d accepted", i, bit);
            assert_null(m);
            /* Past the fields checked before the checksum, it is the checksum
             * that fires; the chunk fields (version 2) are checked against
             * the file's shape first. */
            if (i >= OFF_CHUNK_SHIFT && i < OFF_CHUNKS + 8)
                assert_true(e == BR_ERR_MODEL_CHECKSUM || e == BR_ERR_MODEL_CORRUPT);
            else if ((i >= OFF_CHECKSUM && i < OFF_HEADER_SIZE) || i >= OFF_HEADER_SIZE + 4)
                assert_int_equal(e, BR_ERR_MODEL_CHECKSUM);
            else if (i < 8)
                assert_int_equal(e, BR_ERR_MODEL_MAGIC);
        }
    }
    free(c);
    free(buf);
    br_books_free(books);
}

static void test_newer_version(void **s)
{
    (void)s;
    fixture f;
    make_fixture(&f, BR_MODEL_DOT, NULL);
    uint8_t *buf;
    size_t len;
    save_buf(&f, &buf, &len);
    put32(buf + OFF_VERSION, 7);
    fix_checksum(buf, len);
    expect_open_err(buf, len, BR_ERR_MODEL_VERSION,
                    "model format version 7 is newer than this program supports (2)");
    /* Even with a bad checksum, the version is reported (a newer format may
     * checksum differently). */
    buf[len - 1] ^= 1;
    expect_open_err(buf, len, BR_ERR_MODEL_VERSION, NULL);
    put32(buf + OFF_VERSION, BR_MODEL_VERSION + 1);
    expect_open_err(buf, len, BR_ERR_MODEL_VERSION, NULL);
    free(buf);
}

/* A structural defect with a valid checksum: the reader's own checks fire. */
typedef void (*patch_fn)(uint8_t *buf, size_t len);

static void expect_corrupt(br_model_kind kind, int books, patch_fn patch, br_err want, const char *substr)
{
    br_books *b = books ? make_books() : NULL;
    fixture f;
    make_fixture(&f, kind, b);
    uint8_t *buf;
    size_t len;
    save_buf(&f, &buf, &len);
    patch(buf, len);
    fix_checksum(buf, len);
    expect_open_err(buf, len, want, substr);
    free(buf);
    br_books_free(b);
}

#define PATCH(name, body) static void name(uint8_t *buf, size_t len) { (void)len; body; }
PATCH(p_kind, put32(buf + OFF_KIND, 9))
PATCH(p_loss, put32(buf + OFF_LOSS, 0))
PATCH(p_optim, put32(buf + OFF_OPTIM, 7))
PATCH(p_dim0, put32(buf + OFF_DIM, 0))
PATCH(p_stride, put32(buf + OFF_STRIDE, 16))
PATCH(p_dim_huge, put32(buf + OFF_DIM, UINT32_MAX); put32(buf + OFF_STRIDE, 0))
PATCH(p_users, put32(buf + OFF_N_USERS, NU + 1))
PATCH(p_users0, put32(buf + OFF_N_USERS, 0))
PATCH(p_h1_dot, put32(buf + OFF_MLP_H1, 3))
PATCH(p_h1_mlp, put32(buf + OFF_MLP_H1, 0))
PATCH(p_h1_mlp_big, put32(buf + OFF_MLP_H1, 4))
PATCH(p_h1_ovf, put32(buf + OFF_MLP_H1, UINT32_MAX); put32(buf + OFF_MLP_H1 + 4, UINT32_MAX))
PATCH(p_header_size, put32(buf + OFF_HEADER_SIZE, 128))
PATCH(p_version0, put32(buf + OFF_VERSION, 0))
PATCH(p_nsec, put32(buf + OFF_N_SECTIONS, 65))
PATCH(p_nsec_past, put32(buf + OFF_N_SECTIONS, 60))
PATCH(p_table_off, put64(buf + OFF_TABLE, len & ~(size_t)7))
PATCH(p_table_small, put64(buf + OFF_TABLE, 64))
PATCH(p_table_odd, put64(buf + OFF_TABLE, 259))
PATCH(p_table_huge, put64(buf + OFF_TABLE, UINT64_MAX - 7))
PATCH(p_sec_misaligned, put64(find_entry(buf, S_USER_VECS) + 8, get64(find_entry(buf, S_USER_VECS) + 8) + 8))
PATCH(p_sec_in_header, put64(find_entry(buf, S_USER_IDS) + 8, 0))
PATCH(p_sec_past_end, put64(find_entry(buf, S_BOOK_IDS) + 8, (len + 63) / 64 * 64))
PATCH(p_sec_off_huge, put64(find_entry(buf, S_BOOK_IDS) + 8, UINT64_MAX - 63))
PATCH(p_sec_size_huge, put64(find_entry(buf, S_BOOK_IDS) + 16, UINT64_MAX))
PATCH(p_sec_rows, uint8_t *e = find_entry(buf, S_BOOK_NORMS); put64(e + 24, get64(e + 24) + 1))
PATCH(p_sec_rows_ovf, uint8_t *e = find_entry(buf, S_READ_IDX); put64(e + 24, 1ull << 62); put64(e + 32, 4))
PATCH(p_sec_shape, uint8_t *e = find_entry(buf, S_BOOK_VECS); put64(e + 24, 14); put64(e + 32, 4))
PATCH(p_sec_type, put32(find_entry(buf, S_BOOK_VECS) + 4, 2))
PATCH(p_sec_twice, put32(find_entry(buf, S_BOOK_NORMS), S_BOOK_VECS))
PATCH(p_sec_missing, put32(find_entry(buf, S_READ_PTR), 99))
PATCH(p_sec_foreign, put32(buf + OFF_KIND, BR_MODEL_DOT); put32(buf + OFF_MLP_H1, 0); put32(buf + OFF_MLP_H1 + 4, 0))
PATCH(p_sec_overlap, put64(find_entry(buf, S_BOOK_IDS) + 8, get64(find_entry(buf, S_USER_IDS) + 8)))
PATCH(p_ptr0, put64(section(buf, S_READ_PTR), 1))
PATCH(p_ptr_mono, put64(section(buf, S_READ_PTR) + 2 * 8, 2))
PATCH(p_ptr_big, put64(section(buf, S_READ_PTR) + 1 * 8, 1000))
PATCH(p_ptr_end, put64(section(buf, S_READ_PTR) + NU * 8, NNZ - 1))
PATCH(p_idx_range, put32(section(buf, S_READ_IDX) + 4 * 4, NB))
PATCH(p_idx_order, put32(section(buf, S_READ_IDX) + 1 * 4, 0))
PATCH(p_uid_order, put32(section(buf, S_USER_IDS) + 2 * 4, fx_uids[1]))
PATCH(p_bid_order, put32(section(buf, S_BOOK_IDS) + 6 * 4, 0))
PATCH(p_padding, buf[get64(find_entry(buf, S_BOOK_VECS) + 8) + 2 * 32 + 6 * 4 + 3] = 0x3f)
PATCH(p_upadding, buf[get64(find_entry(buf, S_USER_VECS) + 8) + 4 * 32 + 7 * 4] = 1)
PATCH(p_str_nul, uint8_t *e = find_entry(buf, S_STRINGS); buf[get64(e + 8) + get64(e + 16) - 1] = 'x')
PATCH(p_str_off, uint8_t *e = find_entry(buf, S_STRINGS); put32(section(buf, S_BOOK_INFO) + 3 * REC_SIZE + 12, (uint32_t)get64(e + 16)))
PATCH(p_str_off_huge, put32(section(buf, S_BOOK_INFO) + 6 * REC_SIZE + 16, UINT32_MAX))
PATCH(p_info_alone, put32(find_entry(buf, S_STRINGS), 99))
PATCH(p_str_empty, uint8_t *e = find_entry(buf, S_STRINGS); put64(e + 16, 0); put64(e + 24, 0))
#undef PATCH

static void test_structural_checks(void **s)
{
    (void)s;
    const br_err C = BR_ERR_MODEL_CORRUPT;
    expect_corrupt(BR_MODEL_DOT, 0, p_kind, C, "unknown model kind 9");
    expect_corrupt(BR_MODEL_DOT, 0, p_loss, C, "unknown loss");
    expect_corrupt(BR_MODEL_DOT, 0, p_optim, C, "unknown optimizer");
    expect_corrupt(BR_MODEL_DOT, 0, p_dim0, C, "dimension is 0");
    expect_corrupt(BR_MODEL_DOT, 0, p_stride, C, "stride 16");
    expect_corrupt(BR_MODEL_DOT, 0, p_dim_huge, C, "stride");
    expect_corrupt(BR_MODEL_DOT, 0, p_users, C, "expected 6 x 8");
    expect_corrupt(BR_MODEL_DOT, 0, p_users0, C, "must be > 0");
    expect_corrupt(BR_MODEL_DOT, 0, p_h1_dot, C, "mlp widths");
    expect_corrupt(BR_MODEL_MLP, 0, p_h1_mlp, C, "mlp hidden widths");
    expect_corrupt(BR_MODEL_MLP, 0, p_h1_mlp_big, C, "section 5 (mlp)");
    expect_corrupt(BR_MODEL_MLP, 0, p_h1_ovf, C, "overflow");
    expect_corrupt(BR_MODEL_DOT, 0, p_header_size, C, "header size 128");
    expect_corrupt(BR_MODEL_DOT, 0, p_version0, C, "version 0");
    expect_corrupt(BR_MODEL_DOT, 0, p_nsec, C, "65 sections");
    expect_corrupt(BR_MODEL_DOT, 0, p_nsec_past, C, NULL);
    expect_corrupt(BR_MODEL_DOT, 0, p_table_off, C, "past the end");
    expect_corrupt(BR_MODEL_DOT, 0, p_table_small, C, "table offset");
    expect_corrupt(BR_MODEL_DOT, 0, p_table_odd, C, "table offset");
    expect_corrupt(BR_MODEL_DOT, 0, p_table_huge, C, "past the end");
    expect_corrupt(BR_MODEL_DOT, 0, p_sec_misaligned, C, "not a multiple of 64");
    expect_corrupt(BR_MODEL_DOT, 0, p_sec_in_header, C, "overlaps the header");
    expect_corrupt(BR_MODEL_DOT, 0, p_sec_past_end, C, "past the end");
    expect_corrupt(BR_MODEL_DOT, 0, p_sec_off_huge, C, "past the end");
    expect_corrupt(BR_MODEL_DOT, 0, p_sec_size_huge, C, "past the end");
    expect_corrupt(BR_MODEL_DOT, 0, p_sec_rows, C, "do not match");
    expect_corrupt(BR_MODEL_DOT, 0, p_sec_rows_ovf, C, "do not match");
    expect_corrupt(BR_MODEL_DOT, 0, p_sec_shape, C, "expected 7 x 8");
    expect_corrupt(BR_MODEL_DOT, 0, p_sec_type, C, "element type");
    expect_corrupt(BR_MODEL_DOT, 0, p_sec_twice, C, "appears twice");
    expect_corrupt(BR_MODEL_DOT, 0, p_sec_missing, C, "section 7 (read_ptr) is missing");
    expect_corrupt(BR_MODEL_BIASED, 0, p_sec_foreign, C, "does not belong in a dot model");
    expect_corrupt(BR_MODEL_MLP, 0, p_sec_foreign, C, "does not belong in a dot model");
    expect_corrupt(BR_MODEL_DOT, 0, p_sec_overlap, C, "overlap");
    expect_corrupt(BR_MODEL_DOT, 0, p_ptr0, C, "read_ptr[0]");
    expect_corrupt(BR_MODEL_DOT, 0, p_ptr_mono, C, "monotone");
    expect_corrupt(BR_MODEL_DOT, 0, p_ptr_big, C, "monotone");
    expect_corrupt(BR_MODEL_DOT, 0, p_ptr_end, C, "ends at 12");
    expect_corrupt(BR_MODEL_DOT, 0, p_idx_range, C, "read book index 7");
    expect_corrupt(BR_MODEL_DOT, 0, p_idx_order, C, "ascending");
    expect_corrupt(BR_MODEL_DOT, 0, p_uid_order, C, "user ids");
    expect_corrupt(BR_MODEL_DOT, 0, p_bid_order, C, "book ids");
    expect_corrupt(BR_MODEL_DOT, 0, p_padding, C, "book row 2 has non-zero padding");
    expect_corrupt(BR_MODEL_DOT, 0, p_upadding, C, "user row 4 has non-zero padding");
    expect_corrupt(BR_MODEL_DOT, 1, p_str_nul, C, "NUL");
    expect_corrupt(BR_MODEL_DOT, 1, p_str_off, C, "book index 3: string offset");
    expect_corrupt(BR_MODEL_DOT, 1, p_str_off_huge, C, "book index 6: string offset");
    expect_corrupt(BR_MODEL_DOT, 1, p_info_alone, C, "come together");
    expect_corrupt(BR_MODEL_DOT, 1, p_str_empty, C, "non-empty");
}

static void test_wrong_endian(void **s)
{
    (void)s;
    fixture f;
    make_fixture(&f, BR_MODEL_DOT, NULL);
    uint8_t *buf;
    size_t len;
    save_buf(&f, &buf, &len);
    memcpy(buf + OFF_ENDIAN, "\x01\x02\x03\x04", 4);
    expect_open_err(buf, len, BR_ERR_MODEL_ENDIAN, "byte order");
    memcpy(buf + OFF_ENDIAN, "\x04\x03\x02\x00", 4);
    expect_open_err(buf, len, BR_ERR_MODEL_CORRUPT, "check word");
    free(buf);
}

/* Random byte patches with the checksum repaired: whatever the reader
 * accepts must be safe to use through every accessor (ASan watches). */
static void test_mutations_never_crash(void **s)
{
    (void)s;
    br_books *books = make_books();
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int accepted = 0, total = 0;
    for (int k = BR_MODEL_DOT; k <= BR_MODEL_MLP; k++) {
        for (int wb = 0; wb < 2; wb++) {
            fixture f;
            make_fixture(&f, k, wb ? books : NULL);
            uint8_t *buf;
            size_t len;
            save_buf(&f, &buf, &len);
            uint8_t *c = exact_copy(buf, len);
            size_t table_end = get64(buf + OFF_TABLE) + get32(buf + OFF_N_SECTIONS) * ENTRY_SIZE;
            for (int it = 0; it < 3000; it++) {
                memcpy(c, buf, len);
                int n = 1 + (int)(x % 3);
                for (int j = 0; j < n; j++) {
                    x = x * 6364136223846793005ull + 1442695040888963407ull;
                    /* Mostly the header and table, where the structure lives. */
                    size_t at = (x >> 33) % (it % 2 ? table_end : len);
                    uint8_t v = (uint8_t)(x >> 20);
                    c[at] = (x >> 60) & 1 ? v : (uint8_t)(c[at] ^ (1u << (v & 7)));
                    if (at >= OFF_CHECKSUM && at < OFF_CHECKSUM + 8)
                        c[at] = buf[at];
                }
                fix_checksum(c, len);
                br_model *m = NULL;
                total++;
                if (br_model_open_buffer(c, len, &m, NULL) != BR_OK)
                    continue;
                accepted++;
                const br_model_meta *mt = br_model_get_meta(m);
                volatile float sink = 0;
                const float *uv = br_model_user_vecs(m), *bv = br_model_book_vecs(m);
                sink += uv[(size_t)mt->n_users * mt->stride - 1] + bv[(size_t)mt->n_books * mt->stride - 1];
                sink += br_model_book_norms(m)[mt->n_books - 1];
                if (br_model_user_bias(m))
                    sink += br_model_user_bias(m)[mt->n_users - 1] + br_model_book_bias(m)[mt->n_books - 1];
                if (br_model_mlp(m))
                    sink += br_model_mlp(m)[br_model_mlp_len(mt->dim, mt->mlp_h1, mt->mlp_h2) - 1];
                for (uint32_t u = 0; u < mt->n_users; u++) {
                    size_t nr;
                    const uint32_t *r = br_model_user_read(m, u, &nr);
                    for (size_t q = 0; q < nr; q++) {
                        assert_true(r[q] < mt->n_books);
                        sink += bv[(size_t)r[q] * mt->stride];
                    }
                    assert_int_equal(br_model_find_user(m, br_model_user_ids(m)[u]), u);
                }
                for (uint32_t b = 0; b < mt->n_books; b++) {
                    br_book info;
                    br_model_book_info(m, b, &info);
                    sink += (float)(strlen(info.title) + strlen(info.authors) + strlen(info.genre));
                    assert_int_equal(br_model_find_book(m, br_model_book_ids(m)[b]), b);
                }
                (void)sink;
                br_model_free(m);
            }
            free(c);
            free(buf);
        }
    }
    print_message("mutations: %d of %d accepted (all safely readable)\n", accepted, total);
    br_books_free(books);
}

/* ---- files: open errors, known-bad files, atomic saves --------------------- */

static int write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = n ? fwrite(p, 1, n, f) : 0;
    return fclose(f) == 0 && w == n ? 0 : -1;
}

typedef struct bad_file {
    const char *name;
    br_err err;
    const char *substr;
} bad_file;

static const bad_file bad_files[] = {
    {"model_empty.bin", BR_ERR_MODEL_TRUNCATED, "file is empty"},
    {"model_not_a_model.bin", BR_ERR_MODEL_MAGIC, "bad magic"},
    {"model_short_header.bin", BR_ERR_MODEL_TRUNCATED, "shorter than the 256-byte model header"},
    {"model_truncated.bin", BR_ERR_MODEL_TRUNCATED, "but its header says"},
    {"model_trailing.bin", BR_ERR_MODEL_CORRUPT, "trailing data"},
    {"model_flipped.bin", BR_ERR_MODEL_CHECKSUM, "checksum mismatch"},
    {"model_newer_version.bin", BR_ERR_MODEL_VERSION,
     "model format version 7 is newer than this program supports (2)"},
    {"model_wrong_endian.bin", BR_ERR_MODEL_ENDIAN, "byte order"},
    {"model_misaligned_section.bin", BR_ERR_MODEL_CORRUPT, "not a multiple of 64"},
    {"model_section_past_end.bin", BR_ERR_MODEL_CORRUPT, "past the end of the file"},
    {"model_bad_read_idx.bin", BR_ERR_MODEL_CORRUPT, "read book index 7 >= 7 books"},
    {"model_bad_string_offset.bin", BR_ERR_MODEL_CORRUPT, "string offset"},
};

/* Builds the known-bad files' bytes from the small test model. */
static void make_bad(const char *name, uint8_t **out, size_t *out_len)
{
    br_books *books = NULL;
    if (strcmp(name, "model_bad_string_offset.bin") == 0)
        books = make_books();
    fixture f;
    make_fixture(&f, BR_MODEL_DOT, books);
    uint8_t *buf;
    size_t len;
    save_buf(&f, &buf, &len);
    if (strcmp(name, "model_empty.bin") == 0) {
        len = 0;
    } else if (strcmp(name, "model_not_a_model.bin") == 0) {
        static const char text[] = "user_id,book_id,rating\n1,258,5\n2,4081,4\n";
        memcpy(buf, text, sizeof text - 1);
        len = sizeof text - 1;
    } else if (strcmp(name, "model_short_header.bin") == 0) {
        len = 100;
    } else if (strcmp(name, "model_truncated.bin") == 0) {
        len = len / 2;
    } else if (strcmp(name, "model_trailing.bin") == 0) {
        uint8_t *b = realloc(buf, len + 16);
        assert_non_null(b);
        buf = b;
        memcpy(buf + len, "trailing garbage", 16);
        len += 16;
    } else if (strcmp(name, "model_flipped.bin") == 0) {
        buf[get64(find_entry(buf, S_USER_VECS) + 8) + 5] ^= 0x10;
    } else if (strcmp(name, "model_newer_version.bin") == 0) {
        put32(buf + OFF_VERSION, 7);
        fix_checksum(buf, len);
    } else if (strcmp(name, "model_wrong_endian.bin") == 0) {
        memcpy(buf + OFF_ENDIAN, "\x01\x02\x03\x04", 4);
        fix_checksum(buf, len);
    } else if (strcmp(name, "model_misaligned_section.bin") == 0) {
        uint8_t *e = find_entry(buf, S_USER_VECS);
        put64(e + 8, get64(e + 8) + 4);
        fix_checksum(buf, len);
    } else if (strcmp(name, "model_section_past_end.bin") == 0) {
        put64(find_entry(buf, S_BOOK_NORMS) + 8, (len + 64) / 64 * 64);
        fix_checksum(buf, len);
    } else if (strcmp(name, "model_bad_read_idx.bin") == 0) {
        put32(section(buf, S_READ_IDX) + 4 * 4, NB);
        fix_checksum(buf, len);
    } else if (strcmp(name, "model_bad_string_offset.bin") == 0) {
        put32(section(buf, S_BOOK_INFO) + 2 * REC_SIZE + 8, 0x7fffffff);
        fix_checksum(buf, len);
    } else {
        fail_msg("unknown bad file %s", name);
    }
    *out = buf;
    *out_len = len;
    br_books_free(books);
}

static void test_known_bad_files(void **s)
{
    (void)s;
    int regen = getenv("BR_REGEN_BAD") != NULL;
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/bad/%s", BR_TEST_SRCDIR, bad_files[i].name);
        uint8_t *bytes;
        size_t n;
        make_bad(bad_files[i].name, &bytes, &n);
        if (regen)
            assert_int_equal(write_file(path, bytes, n), 0);
        /* The recipe itself gives the error (from memory)... */
        expect_open_err(bytes, n, bad_files[i].err, bad_files[i].substr);
        free(bytes);
        /* ...and so does the committed file (through mmap). */
        br_model *m = NULL;
        br_diag dg;
        br_diag_clear(&dg);
        br_err e = br_model_open(path, &m, &dg);
        if (e != bad_files[i].err)
            fail_msg("%s: want %s, got %s (%s)", bad_files[i].name, br_strerror(bad_files[i].err),
                     br_strerror(e), dg.msg);
        assert_null(m);
        if (!strstr(dg.msg, bad_files[i].substr))
            fail_msg("%s: message '%s' lacks '%s'", bad_files[i].name, dg.msg, bad_files[i].substr);
        if (!strstr(dg.msg, bad_files[i].name))
            fail_msg("%s: message '%s' does not name the file", bad_files[i].name, dg.msg);
    }
}

static void test_open_errors(void **s)
{
    (void)s;
    br_model *m = (br_model *)1;
    br_diag dg;
    char path[512];
    snprintf(path, sizeof path, "%s/no_such_model.bin", BR_TEST_BINDIR);
    assert_int_equal(br_model_open(path, &m, &dg), BR_ERR_NOT_FOUND);
    assert_null(m);
    assert_non_null(strstr(dg.msg, strerror(ENOENT)));
    assert_non_null(strstr(dg.msg, "no_such_model.bin"));
    assert_int_equal(br_model_open(BR_TEST_BINDIR, &m, &dg), BR_ERR_IO);
    assert_non_null(strstr(dg.msg, "not a regular file"));
    assert_int_equal(br_model_open_buffer(NULL, 0, &m, &dg), BR_ERR_MODEL_TRUNCATED);
    assert_int_equal(br_model_open_buffer(NULL, 10, &m, &dg), BR_ERR_ARG);
    br_model_free(NULL);
}

static int count_temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp."))
            n++;
    closedir(d);
    return n;
}

static uint64_t file_checksum(const char *path)
{
    br_model *m;
    br_diag dg;
    br_err e = br_model_open(path, &m, &dg);
    if (e)
        fail_msg("%s", br_diag_text(&dg, e));
    uint64_t c = br_model_checksum(m);
    br_model_free(m);
    return c;
}

static void test_atomic_save(void **s)
{
    (void)s;
    char dir[512], path[600], sub[600], adir[600];
    snprintf(dir, sizeof dir, "%s/test_model_atomic", BR_TEST_BINDIR);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/model.bin", dir);
    snprintf(sub, sizeof sub, "%s/no/such/folder/model.bin", dir);
    snprintf(adir, sizeof adir, "%s/a_directory", dir);
    mkdir(adir, 0755);
    unlink(path);

    fixture a, b;
    make_fixture(&a, BR_MODEL_DOT, NULL);
    make_fixture(&b, BR_MODEL_BIASED, NULL);
    br_diag dg;
    assert_int_equal(br_model_save(&a.d, path, &dg), BR_OK);
    uint64_t ca = file_checksum(path);
    /* Saving over an existing file replaces it. */
    assert_int_equal(br_model_save(&b.d, path, &dg), BR_OK);
    uint64_t cb = file_checksum(path);
    assert_true(ca != cb);
    uint8_t *bb;
    size_t bl;
    save_buf(&b, &bb, &bl);
    assert_true(cb == get64(bb + OFF_CHECKSUM));
    free(bb);

    /* Invalid data: refused before anything touches the disk. */
    a.uv[0] = NAN;
    assert_int_equal(br_model_save(&a.d, path, &dg), BR_ERR_NUMERIC);
    assert_true(file_checksum(path) == cb);
    /* A folder that does not exist. */
    a.uv[0] = 1.0f;
    br_err e = br_model_save(&a.d, sub, &dg);
    assert_int_equal(e, BR_ERR_NOT_FOUND);
    assert_non_null(strstr(dg.msg, strerror(ENOENT)));
    /* A target that cannot be replaced (a directory): the rename fails, the
     * temporary is removed. */
    e = br_model_save(&a.d, adir, &dg);
    assert_int_equal(e, BR_ERR_IO);
    struct stat st;
    assert_int_equal(stat(adir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_true(file_checksum(path) == cb);
    assert_int_equal(count_temp_files(dir), 0);
    assert_int_equal(br_model_save(&a.d, NULL, &dg), BR_ERR_ARG);
    unlink(path);
    rmdir(adir);
    rmdir(dir);
}

/* ---- br_hash64 ------------------------------------------------------------- */

static void test_hash_known_answers(void **s)
{
    (void)s;
    uint8_t pat[1000];
    for (int i = 0; i < 1000; i++)
        pat[i] = (uint8_t)(i * 7 + 3);
    struct { const void *p; size_t n; uint64_t seed, want; } kat[] = {
        {"", 0, 0, 0x1e2f9ebe1870e5b1ull},
        {"a", 1, 0, 0x542231d1075a3e65ull},
        {"abc", 3, 0, 0xd08e6cd3856ccabeull},
        {"bookrec", 7, 0, 0xf7998dc51f5e6652ull},
        {pat, 31, 0, 0xcb7891a5a93bd3a6ull},
        {pat, 32, 0, 0xede9849a45310259ull},
        {pat, 1000, 0, 0xd4785acfc08b0995ull},
        {pat, 1000, 42, 0x44f56f06102e7eb0ull},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint64_t h = br_hash64(kat[i].p, kat[i].n, kat[i].seed);
        if (h != kat[i].want) {
            print_message("kat %zu: len %zu seed %llu: got 0x%016llxull\n", i, kat[i].n,
                          (unsigned long long)kat[i].seed, (unsigned long long)h);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_hash_sensitivity(void **s)
{
    (void)s;
    enum { N = 203 }; /* six stripes plus an 8-, 4- and 1-byte tail */
    uint8_t buf[N];
    uint64_t x = 1;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1;
        buf[i] = (uint8_t)(x >> 56);
    }
    /* Every single-bit change of every byte gives a distinct hash. */
    uint64_t *h = malloc(sizeof *h * (N * 8 + 1));
    size_t k = 0;
    h[k++] = br_hash64(buf, N, 0);
    for (int i = 0; i < N; i++)
        for (int b = 0; b < 8; b++) {
            buf[i] ^= (uint8_t)(1u << b);
            h[k++] = br_hash64(buf, N, 0);
            buf[i] ^= (uint8_t)(1u << b);
        }
    qsort(h, k, sizeof *h, cmp_u64);
    for (size_t i = 1; i < k; i++)
        assert_true(h[i] != h[i - 1]);
    free(h);

    /* Every length of zero bytes, and every seed, differs. */
    uint8_t zeros[257] = {0};
    uint64_t hl[257 + 64];
    k = 0;
    for (size_t n = 0; n <= 256; n++)
        hl[k++] = br_hash64(zeros, n, 0);
    for (uint64_t sd = 1; sd <= 64; sd++)
        hl[k++] = br_hash64(zeros, 100, sd);
    qsort(hl, k, sizeof hl[0], cmp_u64);
    for (size_t i = 1; i < k; i++)
        assert_true(hl[i] != hl[i - 1]);

    /* Same bytes at any alignment, same hash. */
    uint8_t *shifted = malloc(N + 8);
    for (int off = 0; off < 8; off++) {
        memcpy(shifted + off, buf, N);
        assert_true(br_hash64(shifted + off, N, 7) == br_hash64(buf, N, 7));
    }
    free(shifted);

    /* Avalanche, roughly: flipping one input bit flips about half the output bits. */
    double total = 0;
    int trials = 0;
    uint64_t base = br_hash64(buf, 40, 0);
    for (int i = 0; i < 40; i++)
        for (int b = 0; b < 8; b++) {
            buf[i] ^= (uint8_t)(1u << b);
            total += __builtin_popcountll(base ^ br_hash64(buf, 40, 0));
            buf[i] ^= (uint8_t)(1u << b);
            trials++;
        }
    double mean = total / trials;
    assert_true(mean > 28 && mean < 36);
}

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Not a pass/fail test: prints the hash speed and the open time of a model
 * of about inference size (~14 MB). */
static void test_speed_report(void **s)
{
    (void)s;
    size_t n = 64u << 20;
    uint8_t *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (uint8_t)(i * 131 + (i >> 12));
    volatile uint64_t sink = br_hash64(big, n, 0); /* warm up */
    double best = 1e9;
    for (int r = 0; r < 5; r++) {
        double t0 = now_sec();
        sink ^= br_hash64(big, n, (uint64_t)r);
        double dt = now_sec() - t0;
        if (dt < best)
            best = dt;
    }
    (void)sink;
    print_message("br_hash64: %.2f GB/s (64 MiB, best of 5)\n", n / best / 1e9);
    free(big);

    /* ~14 MB model: 40000 users and 10000 books at dim 64, 5 reads per user. */
    const uint32_t nu = 40000, nb = 10000, dim = 64, per = 5;
    float *uv = calloc((size_t)nu * dim, sizeof *uv), *bv = calloc((size_t)nb * dim, sizeof *bv);
    uint32_t *uid = malloc(nu * 4), *bid = malloc(nb * 4), *idx = malloc((size_t)nu * per * 4);
    uint64_t *ptr = malloc((nu + 1) * 8ull);
    for (uint32_t u = 0; u < nu; u++) {
        uid[u] = u + 1;
        for (uint32_t c = 0; c < dim; c++)
            uv[(size_t)u * dim + c] = (float)((u * 31 + c) % 97) / 97.0f;
        ptr[u] = (uint64_t)u * per;
        for (uint32_t k = 0; k < per; k++)
            idx[(size_t)u * per + k] = (u + k * 1999) % nb;
        /* sort the 5 */
        uint32_t *r = idx + (size_t)u * per;
        for (uint32_t a = 1; a < per; a++)
            for (uint32_t b = a; b > 0 && r[b] < r[b - 1]; b--) {
                uint32_t t = r[b];
                r[b] = r[b - 1];
                r[b - 1] = t;
            }
    }
    ptr[nu] = (uint64_t)nu * per;
    for (uint32_t b = 0; b < nb; b++) {
        bid[b] = b * 2 + 1;
        for (uint32_t c = 0; c < dim; c++)
            bv[(size_t)b * dim + c] = (float)((b * 17 + c) % 89) / 89.0f;
    }
    br_model_data d = {.meta = {.kind = BR_MODEL_DOT, .loss = BR_LOSS_MSE, .optim = BR_OPTIM_SGD,
                                .dim = dim, .n_users = nu, .n_books = nb, .created_unix = 1},
                       .user_vecs = uv, .book_vecs = bv, .src_stride = dim, .user_ids = uid,
                       .book_ids = bid, .read_ptr = ptr, .read_idx = idx};
    char path[512];
    snprintf(path, sizeof path, "%s/test_model_speed.bin", BR_TEST_BINDIR);
    br_diag dg;
    double t0 = now_sec();
    br_err e = br_model_save(&d, path, &dg);
    double t_save = now_sec() - t0;
    if (e)
        fail_msg("%s", br_diag_text(&dg, e));
    double best_open = 1e9;
    size_t size = 0;
    for (int r = 0; r < 10; r++) {
        br_model *m;
        t0 = now_sec();
        assert_int_equal(br_model_open(path, &m, &dg), BR_OK);
        double dt = now_sec() - t0;
        size = br_model_file_size(m);
        assert_int_equal(br_model_find_user(m, 777), 776);
        assert_int_equal(br_model_find_book(m, 777), 388);
        assert_int_equal(br_model_find_book(m, 778), -1);
        br_model_free(m);
        if (dt < best_open)
            best_open = dt;
    }
    print_message("model of %.1f MB: save %.1f ms, open+validate %.2f ms (best of 10)\n",
                  size / 1e6, t_save * 1e3, best_open * 1e3);
    unlink(path);
    free(uv);
    free(bv);
    free(uid);
    free(bid);
    free(idx);
    free(ptr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_known_answers),
        cmocka_unit_test(test_hash_sensitivity),
        cmocka_unit_test(test_round_trip_dot),
        cmocka_unit_test(test_round_trip_biased),
        cmocka_unit_test(test_round_trip_mlp),
        cmocka_unit_test(test_round_trip_dot_books),
        cmocka_unit_test(test_round_trip_biased_books),
        cmocka_unit_test(test_round_trip_mlp_books),
        cmocka_unit_test(test_pinned_bytes),
        cmocka_unit_test(test_books_no_overlap),
        cmocka_unit_test(test_dense_ids),
        cmocka_unit_test(test_no_reads),
        cmocka_unit_test(test_writer_validation),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_every_bit_flip),
        cmocka_unit_test(test_lazy_open),
        cmocka_unit_test(test_reseal),
        cmocka_unit_test(test_newer_version),
        cmocka_unit_test(test_structural_checks),
        cmocka_unit_test(test_wrong_endian),
        cmocka_unit_test(test_mutations_never_crash),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_known_bad_files),
        cmocka_unit_test(test_atomic_save),
        cmocka_unit_test(test_speed_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
