/*
 * br_io.c - whole-file reads with transparent gzip, and atomic replacement.
 */
#include "br_io.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

int br_file_exists(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

size_t br_gunzip_limit(size_t src_len)
{
    if (src_len > SIZE_MAX / BR_GUNZIP_RATIO)
        return SIZE_MAX - 1;
    size_t lim = src_len * BR_GUNZIP_RATIO;
    return lim < BR_GUNZIP_FLOOR ? BR_GUNZIP_FLOOR : lim;
}

br_err br_gunzip(const void *src, size_t src_len, const char *name,
                 char **buf, size_t *len, br_diag *diag)
{
    return br_gunzip_max(src, src_len, name, br_gunzip_limit(src_len), buf, len, diag);
}

br_err br_gunzip_max(const void *src, size_t src_len, const char *name, size_t max_out,
                     char **buf, size_t *len, br_diag *diag)
{
    if (max_out >= SIZE_MAX - 1)
        max_out = SIZE_MAX - 2;
    /* Guess 4x the compressed size; grow geometrically up to one byte past
     * the limit (a full buffer of max_out + 1 bytes means too much). */
    size_t cap = src_len < 1024 ? 4096 : src_len > SIZE_MAX / 8 ? SIZE_MAX / 2 : src_len * 4;
    if (cap > max_out + 1)
        cap = max_out + 1;
    char *out = malloc(cap + 1);
    if (!out)
        return br_fail(diag, BR_ERR_NOMEM, "%s: out of memory", name);

    z_stream zs;
    memset(&zs, 0, sizeof zs);
    /* 15 + 32: zlib or gzip header, detected automatically. */
    if (inflateInit2(&zs, 15 + 32) != Z_OK) {
        free(out);
        return br_fail(diag, BR_ERR_NOMEM, "%s: cannot start decompression", name);
    }
    const unsigned char *in = src;
    size_t in_left = src_len, produced = 0;
    int rc = Z_OK;
    for (;;) {
        if (produced == cap) {
            if (produced > max_out) {
                inflateEnd(&zs);
                free(out);
                return br_fail(diag, BR_ERR_RANGE,
                               "%s: decompresses to more than %zu bytes (%zu compressed): "
                               "refused as a likely gzip bomb (limit: %dx the compressed "
                               "size, at least %zu MiB)",
                               name, max_out, src_len, BR_GUNZIP_RATIO,
                               (size_t)(BR_GUNZIP_FLOOR >> 20));
            }
            size_t ncap = cap > (max_out + 1) / 2 ? max_out + 1 : cap * 2;
            char *n = realloc(out, ncap + 1);
            if (!n) {
                inflateEnd(&zs);
                free(out);
                return br_fail(diag, BR_ERR_NOMEM, "%s: out of memory", name);
            }
            out = n;
            cap = ncap;
        }
        uInt in_chunk = in_left > UINT32_MAX ? UINT32_MAX : (uInt)in_left;
        size_t out_room = cap - produced;
        uInt out_chunk = out_room > UINT32_MAX ? UINT32_MAX : (uInt)out_room;
        zs.next_in = (Bytef *)in;
        zs.avail_in = in_chunk;
        zs.next_out = (Bytef *)out + produced;
        zs.avail_out = out_chunk;
        rc = inflate(&zs, Z_NO_FLUSH);
        size_t used = in_chunk - zs.avail_in;
        in += used;
        in_left -= used;
        produced += out_chunk - zs.avail_out;
        if (rc == Z_STREAM_END) {
            /* Concatenated gzip members: continue with the next one. */
            if (in_left > 0 && inflateReset(&zs) == Z_OK)
                continue;
            break;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            inflateEnd(&zs);
            free(out);
            return br_fail(diag, BR_ERR_PARSE, "%s: corrupt compressed data (%s)", name,
                           zs.msg ? zs.msg : "zlib error");
        }
        if (in_left == 0 && zs.avail_out != 0) {
            inflateEnd(&zs);
            free(out);
            return br_fail(diag, BR_ERR_PARSE, "%s: compressed data is truncated", name);
        }
    }
    inflateEnd(&zs);
    if (produced > max_out) {   /* ended exactly one byte past the limit */
        free(out);
        return br_fail(diag, BR_ERR_RANGE,
                       "%s: decompresses to more than %zu bytes (%zu compressed): refused as a "
                       "likely gzip bomb", name, max_out, src_len);
    }
    out[produced] = '\0';
    *buf = out;
    *len = produced;
    return BR_OK;
}

br_err br_read_file(const char *path, char **buf, size_t *len, br_diag *diag)
{
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return br_fail(diag, errno == ENOENT ? BR_ERR_NOT_FOUND : BR_ERR_IO,
                       "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return br_fail(diag, BR_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    char *raw = malloc(size + 1);
    if (!raw) {
        close(fd);
        return br_fail(diag, BR_ERR_NOMEM, "%s: out of memory (%zu bytes)", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, raw + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            free(raw);
            return br_fail(diag, BR_ERR_IO, "%s: read failed: %s", path, strerror(e));
        }
        if (r == 0)
            break; /* file shrank while reading: take what is there */
        got += (size_t)r;
    }
    close(fd);
    raw[got] = '\0';
    if (got >= 2 && (unsigned char)raw[0] == 0x1f && (unsigned char)raw[1] == 0x8b) {
        br_err e = br_gunzip(raw, got, path, buf, len, diag);
        free(raw);
        return e;
    }
    *buf = raw;
    *len = got;
    return BR_OK;
}

struct br_atomic {
    FILE *f;
    char *target;
    char *tmp;
};

br_err br_atomic_open(const char *path, br_atomic **out, br_diag *diag)
{
    *out = NULL;
    br_atomic *a = calloc(1, sizeof *a);
    size_t n = strlen(path);
    if (!a || !(a->target = strdup(path)) || !(a->tmp = malloc(n + 32))) {
        if (a) {
            free(a->target);
            free(a);
        }
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    snprintf(a->tmp, n + 32, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(a->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || !(a->f = fdopen(fd, "wb"))) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
            unlink(a->tmp);
        }
        br_err code = br_fail(diag, e == ENOENT ? BR_ERR_NOT_FOUND : BR_ERR_IO,
                              "cannot write %s: %s", path, strerror(e));
        free(a->tmp);
        free(a->target);
        free(a);
        return code;
    }
    *out = a;
    return BR_OK;
}

FILE *br_atomic_file(br_atomic *a) { return a->f; }

static void br_atomic_free(br_atomic *a)
{
    free(a->tmp);
    free(a->target);
    free(a);
}

void br_atomic_abort(br_atomic *a)
{
    if (!a)
        return;
    if (a->f)
        fclose(a->f);
    unlink(a->tmp);
    br_atomic_free(a);
}

br_err br_atomic_commit(br_atomic *a, br_diag *diag)
{
    int bad = ferror(a->f) || fflush(a->f) != 0 || fsync(fileno(a->f)) != 0;
    int e = errno;
    if (fclose(a->f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    a->f = NULL;
    if (bad) {
        br_err code = br_fail(diag, BR_ERR_IO, "cannot write %s: %s", a->target, strerror(e));
        unlink(a->tmp);
        br_atomic_free(a);
        return code;
    }
    if (rename(a->tmp, a->target) != 0) {
        e = errno;
        br_err code = br_fail(diag, BR_ERR_IO, "cannot rename %s to %s: %s", a->tmp,
                              a->target, strerror(e));
        unlink(a->tmp);
        br_atomic_free(a);
        return code;
    }
    /* fsync the folder so the rename itself survives a crash. */
    char *dcopy = strdup(a->target);
    if (dcopy) {
        int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dcopy);
    }
    br_atomic_free(a);
    return BR_OK;
}

void br_csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}
