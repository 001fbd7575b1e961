/*
 * br_dist_plan.c - partition, schedule, initial rows and the streaming
 * loader of one rank's share of the ratings (see br_dist_plan.h). No MPI.
 */
#include "br_dist_plan.h"
#include "br_rng.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

uint32_t br_dist_user_rank(uint32_t user_id, uint32_t nranks)
{
    uint64_t x = (uint64_t)user_id ^ 0x7573657272616e6bULL;
    return (uint32_t)(br_splitmix64(&x) % (nranks ? nranks : 1));
}

void br_dist_init_row(float *row, uint32_t dim, uint32_t stride, uint64_t seed, int is_book,
                      uint32_t id, float std)
{
    uint64_t x = seed ^ ((uint64_t)(is_book ? 2 : 1) << 56) ^ ((uint64_t)id << 8);
    br_rng g;
    br_rng_seed(&g, br_splitmix64(&x));
    for (uint32_t j = 0; j < dim; j++)
        row[j] = (float)(br_rng_normal(&g) * std);
    for (uint32_t j = dim; j < stride; j++)
        row[j] = 0.0f;
}

size_t br_dist_merge_ids(const uint32_t *a, size_t na, const uint32_t *b, size_t nb,
                         uint32_t *out)
{
    size_t i = 0, j = 0, n = 0;
    while (i < na || j < nb) {
        if (j >= nb || (i < na && a[i] < b[j]))
            out[n++] = a[i++];
        else if (i >= na || b[j] < a[i])
            out[n++] = b[j++];
        else {
            out[n++] = a[i++];
            j++;
        }
    }
    return n;
}

typedef struct br_share {
    uint32_t rank, nranks;
} br_share;

static int br_keep_share(uint32_t user_id, uint32_t book_id, void *ctx)
{
    const br_share *s = ctx;
    (void)book_id;
    return br_dist_user_rank(user_id, s->nranks) == s->rank;
}

/* Growing arrays of external (user, book, rating) rows. */
typedef struct br_rows {
    uint32_t *u, *b;
    float *v;
    size_t n, cap;
} br_rows;

static int br_rows_add(br_rows *r, const br_ratings *part)
{
    if (r->n + part->n > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        while (cap < r->n + part->n)
            cap *= 2;
        uint32_t *u = realloc(r->u, cap * sizeof *u);
        if (u)
            r->u = u;
        uint32_t *b = realloc(r->b, cap * sizeof *b);
        if (b)
            r->b = b;
        float *v = realloc(r->v, cap * sizeof *v);
        if (v)
            r->v = v;
        if (!u || !b || !v)
            return 0;
        r->cap = cap;
    }
    for (size_t i = 0; i < part->n; i++, r->n++) {
        r->u[r->n] = part->user_ids[part->user[i]];
        r->b[r->n] = part->book_ids[part->book[i]];
        r->v[r->n] = part->rating[i];
    }
    return 1;
}

br_err br_dist_load_share(const char *path, const br_load_opts *opts, uint32_t rank,
                          uint32_t nranks, size_t chunk_bytes, br_ratings **out, br_diag *diag)
{
    *out = NULL;
    if (nranks == 0 || rank >= nranks)
        return br_fail(diag, BR_ERR_ARG, "rank %u of %u", rank, nranks);
    if (chunk_bytes == 0)
        chunk_bytes = (size_t)64 << 20;
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return br_fail(diag, errno == ENOENT ? BR_ERR_NOT_FOUND : BR_ERR_IO, "%s: %s", path,
                       strerror(errno ? errno : EIO));
    br_share share = {rank, nranks};
    br_load_opts lo = opts ? *opts : (br_load_opts){0};
    lo.keep = br_keep_share;
    lo.keep_ctx = &share;
    br_rows rows = {0};
    br_ratings *part = NULL;
    br_err e = BR_OK;
    /* buf = [header][carried partial line][new bytes] */
    size_t cap = chunk_bytes + 1, hdr = 0, len = 0, lines = 0, total_rows = 0, dups = 0,
           skipped = 0, first_bad_line = 0;
    char first_bad[BR_DIAG_MAX] = "";
    int user_first = 0, first = 1, eof = 0;
    char *buf = malloc(cap);
    if (!buf) {
        gzclose(gz);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    while (!eof) {
        if (len == cap) {   /* one line longer than a piece: grow */
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                e = br_fail(diag, BR_ERR_NOMEM, "out of memory");
                break;
            }
            buf = nb;
            cap *= 2;
        }
        int want = cap - len > (1u << 30) ? 1 << 30 : (int)(cap - len);
        int got = gzread(gz, buf + len, (unsigned)want);
        if (got < 0) {
            int zerr;
            const char *m = gzerror(gz, &zerr);
            e = br_fail(diag, BR_ERR_IO, "%s: %s", path, zerr == Z_ERRNO ? strerror(errno) : m);
            break;
        }
        len += (size_t)got;
        eof = got == 0 || gzeof(gz);
        /* Parse up to the last newline (everything at the end of the file). */
        size_t cut = len;
        if (!eof) {
            while (cut > hdr && buf[cut - 1] != '\n')
                cut--;
            if (cut == hdr)
                continue;   /* no full line yet */
        }
        if (first && cut == 0)
            break;   /* empty file: parsed below for the message */
        size_t hs = 0;   /* first piece: where the header starts (after BOM, blank lines) */
        if (first) {
            if (cut >= 3 && (unsigned char)buf[0] == 0xEF && (unsigned char)buf[1] == 0xBB &&
                (unsigned char)buf[2] == 0xBF)
                hs = 3;
            while (hs < cut && (buf[hs] == '\n' || buf[hs] == '\r'))
                hs++;
            if (!eof && !memchr(buf + hs, '\n', cut - hs))
                continue;   /* the first piece must hold the whole header line */
        }
        lo.line_offset = first ? 0 : lines - 1;
        br_err pe = br_ratings_parse(buf, cut, path, &lo, &part, diag);
        if (pe == BR_ERR_EMPTY && !first && !part) {
            br_diag_clear(diag);   /* none of this piece's rows are ours */
        } else if (pe == BR_ERR_EMPTY && first && cut > 0) {
            /* header fine but nothing of ours in the first piece, or the
             * header alone: keep going (the message said "no ratings"). */
            br_diag_clear(diag);
        } else if (pe) {
            e = pe;
            break;
        }
        if (part) {
            if (!br_rows_add(&rows, part)) {
                e = br_fail(diag, BR_ERR_NOMEM, "out of memory");
                break;
            }
            total_rows += part->rows;
            dups += part->dup_rows;
            if (part->skipped && !skipped) {
                first_bad_line = part->first_bad_line;
                memcpy(first_bad, part->first_bad, sizeof first_bad);
            }
            skipped += part->skipped;
            user_first = part->user_first;   /* the same header for every piece */
            br_ratings_free(part);
            part = NULL;
        }
        for (size_t i = first ? 0 : hdr; i < cut; i++)
            lines += buf[i] == '\n';
        if (first) {
            /* Keep the header line in front of every later piece. */
            char *nl = memchr(buf + hs, '\n', cut - hs);
            if (!nl)
                break;   /* the header was the whole file */
            hdr = (size_t)(nl - (buf + hs)) + 1;
            memmove(buf, buf + hs, hdr);
            memmove(buf + hdr, buf + cut, len - cut);
            len = hdr + (len - cut);
            first = 0;
            if (hdr + chunk_bytes + 1 > cap) {
                char *nb = realloc(buf, hdr + chunk_bytes + 1);
                if (!nb) {
                    e = br_fail(diag, BR_ERR_NOMEM, "out of memory");
                    break;
                }
                buf = nb;
                cap = hdr + chunk_bytes + 1;
            }
            continue;
        }
        memmove(buf + hdr, buf + cut, len - cut);
        len = hdr + (len - cut);
    }
    gzclose(gz);
    br_ratings_free(part);
    if (!e && first)
        e = br_ratings_parse(buf, len, path, &lo, &part, diag);   /* empty file: its message */
    free(buf);
    br_ratings_free(part);   /* (an empty file always fails to parse) */
    if (!e && rows.n == 0)
        e = br_fail(diag, BR_ERR_EMPTY, "%s: rank %u of %u owns no user with ratings", path,
                    rank, nranks);
    br_ratings *r = NULL;
    if (!e)
        e = br_ratings_build(rows.u, rows.b, rows.v, rows.n, &r, diag);
    free(rows.u);
    free(rows.b);
    free(rows.v);
    if (e)
        return e;
    r->dup_rows += dups;
    r->rows = total_rows;
    r->skipped = skipped;
    r->first_bad_line = first_bad_line;
    memcpy(r->first_bad, first_bad, sizeof r->first_bad);
    r->user_first = user_first;
    *out = r;
    return BR_OK;
}
