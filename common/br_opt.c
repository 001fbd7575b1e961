/*
 * br_opt.c - option table parsing and usage text.
 */
#include "br_opt.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const br_opt *br_opt_find_long(const br_opt *t, const char *name, size_t len)
{
    for (; t->long_name || t->type == BR_OPT_GROUP; t++)
        if (t->type != BR_OPT_GROUP && strlen(t->long_name) == len &&
            memcmp(t->long_name, name, len) == 0)
            return t;
    return NULL;
}

static const br_opt *br_opt_find_short(const br_opt *t, char c)
{
    for (; t->long_name || t->type == BR_OPT_GROUP; t++)
        if (t->type != BR_OPT_GROUP && t->short_name == c)
            return t;
    return NULL;
}

static br_err br_opt_set(const br_opt *o, const char *v, br_diag *diag)
{
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case BR_OPT_INT: {
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno || x < INT32_MIN || x > INT32_MAX)
            return br_fail(diag, BR_ERR_ARG, "option --%s expects a whole number, got '%s'",
                           o->long_name, v);
        *(int *)o->dest = (int)x;
        return BR_OK;
    }
    case BR_OPT_UINT:
    case BR_OPT_U64: {
        if (*v == '-')
            return br_fail(diag, BR_ERR_ARG, "option --%s expects a number >= 0, got '%s'",
                           o->long_name, v);
        unsigned long long x = strtoull(v, &end, 10);
        if (!*v || *end || errno || (o->type == BR_OPT_UINT && x > UINT32_MAX))
            return br_fail(diag, BR_ERR_ARG, "option --%s expects a whole number >= 0, got '%s'",
                           o->long_name, v);
        if (o->type == BR_OPT_UINT)
            *(unsigned *)o->dest = (unsigned)x;
        else
            *(uint64_t *)o->dest = (uint64_t)x;
        return BR_OK;
    }
    case BR_OPT_FLOAT:
    case BR_OPT_DOUBLE: {
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x))
            return br_fail(diag, BR_ERR_ARG, "option --%s expects a number, got '%s'",
                           o->long_name, v);
        if (o->type == BR_OPT_FLOAT)
            *(float *)o->dest = (float)x;
        else
            *(double *)o->dest = x;
        return BR_OK;
    }
    case BR_OPT_STR:
        *(const char **)o->dest = v;
        return BR_OK;
    default:
        return BR_ERR_ARG;
    }
}

br_err br_opt_parse(const br_opt *table, int argc, char **argv, int *n_pos, br_diag *diag)
{
    int pos = 0, only_pos = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            argv[1 + pos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        const br_opt *o;
        const char *val = NULL;
        if (a[1] == '-') {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            o = br_opt_find_long(table, name, len);
            if (!o)
                return br_fail(diag, BR_ERR_ARG, "unknown option '%.*s' (see --help)",
                               (int)(len + 2), a);
            if (eq)
                val = eq + 1;
        } else {
            o = br_opt_find_short(table, a[1]);
            if (!o)
                return br_fail(diag, BR_ERR_ARG, "unknown option '-%c' (see --help)", a[1]);
            if (a[2])
                val = a + 2;
        }
        if (o->type == BR_OPT_FLAG) {
            if (val)
                return br_fail(diag, BR_ERR_ARG, "option --%s takes no value", o->long_name);
            *(int *)o->dest = 1;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc)
                return br_fail(diag, BR_ERR_ARG, "option --%s needs a value (%s)",
                               o->long_name, o->arg ? o->arg : "ARG");
            val = argv[++i];
        }
        br_err e = br_opt_set(o, val, diag);
        if (e)
            return e;
    }
    if (n_pos)
        *n_pos = pos;
    return BR_OK;
}

void br_opt_usage(FILE *f, const char *synopsis, const br_opt *t)
{
    fprintf(f, "usage: %s\n", synopsis);
    for (; t->long_name || t->type == BR_OPT_GROUP; t++) {
        if (t->type == BR_OPT_GROUP) {
            fprintf(f, "\n%s\n", t->help);
            continue;
        }
        char left[64];
        int n = 0;
        if (t->short_name)
            n = snprintf(left, sizeof left, "  -%c, --%s", t->short_name, t->long_name);
        else
            n = snprintf(left, sizeof left, "      --%s", t->long_name);
        if (t->type != BR_OPT_FLAG && n > 0 && (size_t)n < sizeof left)
            snprintf(left + n, sizeof left - (size_t)n, " %s", t->arg ? t->arg : "ARG");
        if (strlen(left) > 26)
            fprintf(f, "%s\n%28s%s\n", left, "", t->help);
        else
            fprintf(f, "%-28s%s\n", left, t->help);
    }
}

int br_parse_id(const char *s, size_t len, uint32_t *out)
{
    if (len == 0 || len > 10)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v == 0 || v > UINT32_MAX)
        return 0;
    *out = (uint32_t)v;
    return 1;
}
