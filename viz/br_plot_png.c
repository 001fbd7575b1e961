/*
 * br_plot_png.c - the software renderer behind both the PNG and the window:
 * an RGBA canvas with antialiased discs and boxes, text from stb_easy_font
 * (its quads filled as boxes, so any scale stays crisp), the scatter plot
 * with its colours, legend, title and non-overlapping labels, and PNG output
 * through stb_image_write (the one translation unit that implements it).
 */
#include "br_plot.h"
#include "br_io.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>
#include <stb/stb_easy_font.h>
#pragma GCC diagnostic pop

/* ---- canvas ---------------------------------------------------------------- */

br_err br_plot_canvas_create(int w, int h, br_plot_canvas **out, br_diag *diag)
{
    if (!out)
        return br_fail(diag, BR_ERR_ARG, "canvas: no output handle");
    *out = NULL;
    if (w < 16 || h < 16 || w > 16384 || h > 16384)
        return br_fail(diag, BR_ERR_ARG, "image size %dx%d is outside 16x16 .. 16384x16384", w, h);
    br_plot_canvas *c = calloc(1, sizeof *c);
    if (!c)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    c->px = malloc((size_t)w * (size_t)h * 4);
    if (!c->px) {
        free(c);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory for a %dx%d image", w, h);
    }
    c->w = w;
    c->h = h;
    br_plot_fill(c, 0xFFFFFF);
    *out = c;
    return BR_OK;
}

void br_plot_canvas_free(br_plot_canvas *c)
{
    if (!c)
        return;
    free(c->px);
    free(c);
}

void br_plot_fill(br_plot_canvas *c, uint32_t rgb)
{
    size_t n = (size_t)c->w * (size_t)c->h;
    for (size_t i = 0; i < n; i++) {
        c->px[4 * i] = (uint8_t)(rgb >> 16);
        c->px[4 * i + 1] = (uint8_t)(rgb >> 8);
        c->px[4 * i + 2] = (uint8_t)rgb;
        c->px[4 * i + 3] = 255;
    }
}

static inline void blend(br_plot_canvas *c, int x, int y, uint32_t rgb, float a)
{
    if (a <= 0)
        return;
    if (a > 1)
        a = 1;
    uint8_t *p = c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 4;
    float r = (float)((rgb >> 16) & 255), g = (float)((rgb >> 8) & 255), b = (float)(rgb & 255);
    p[0] = (uint8_t)(p[0] + (r - p[0]) * a + 0.5f);
    p[1] = (uint8_t)(p[1] + (g - p[1]) * a + 0.5f);
    p[2] = (uint8_t)(p[2] + (b - p[2]) * a + 0.5f);
}

void br_plot_disc(br_plot_canvas *c, float x, float y, float r, uint32_t rgb, float alpha)
{
    int x0 = (int)floorf(x - r - 1), x1 = (int)ceilf(x + r + 1);
    int y0 = (int)floorf(y - r - 1), y1 = (int)ceilf(y + r + 1);
    if (x1 < 0 || y1 < 0 || x0 >= c->w || y0 >= c->h)
        return;
    if (x0 < 0)
        x0 = 0;
    if (y0 < 0)
        y0 = 0;
    if (x1 >= c->w)
        x1 = c->w - 1;
    if (y1 >= c->h)
        y1 = c->h - 1;
    for (int py = y0; py <= y1; py++) {
        float dy = (float)py + 0.5f - y;
        for (int px = x0; px <= x1; px++) {
            float dx = (float)px + 0.5f - x;
            float cov = r + 0.5f - sqrtf(dx * dx + dy * dy);
            if (cov <= 0)
                continue;
            blend(c, px, py, rgb, alpha * (cov > 1 ? 1 : cov));
        }
    }
}

void br_plot_box(br_plot_canvas *c, float x0, float y0, float x1, float y1, uint32_t rgb,
                 float alpha)
{
    if (x0 < 0)
        x0 = 0;
    if (y0 < 0)
        y0 = 0;
    if (x1 > (float)c->w)
        x1 = (float)c->w;
    if (y1 > (float)c->h)
        y1 = (float)c->h;
    if (x1 <= x0 || y1 <= y0)
        return;
    int ix0 = (int)floorf(x0), ix1 = (int)ceilf(x1), iy0 = (int)floorf(y0), iy1 = (int)ceilf(y1);
    for (int py = iy0; py < iy1 && py < c->h; py++) {
        float cy = fminf((float)py + 1, y1) - fmaxf((float)py, y0);
        for (int px = ix0; px < ix1 && px < c->w; px++) {
            float cx = fminf((float)px + 1, x1) - fmaxf((float)px, x0);
            blend(c, px, py, rgb, alpha * cx * cy);
        }
    }
}

/* ---- text ------------------------------------------------------------------ */

/* UTF-8 to the ASCII stb_easy_font draws: accented Latin letters lose their
 * accent, typographic quotes and dashes become plain ones, anything else '?'. */
static void to_ascii(const char *s, char *out, size_t cap)
{
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p && k + 1 < cap) {
        unsigned cp;
        int len;
        if (*p < 0x80) {
            cp = *p;
            len = 1;
        } else if ((*p & 0xE0) == 0xC0 && (p[1] & 0xC0) == 0x80) {
            cp = ((unsigned)(*p & 0x1F) << 6) | (p[1] & 0x3F);
            len = 2;
        } else if ((*p & 0xF0) == 0xE0 && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80) {
            cp = ((unsigned)(*p & 0x0F) << 12) | ((unsigned)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
            len = 3;
        } else {
            cp = '?';
            len = 1;
            while (p[len] && (p[len] & 0xC0) == 0x80)
                len++;
        }
        char ch = '?';
        if (cp < 0x80)
            ch = (cp == '\t' || cp == '\n' || cp == '\r') ? ' ' : (char)cp;
        else if (cp >= 0xC0 && cp <= 0xFF) {
            static const char lat[] = "AAAAAAACEEEEIIIIDNOOOOOxOUUUUYPsaaaaaaaceeeeiiiidnooooo/ouuuuypy";
            ch = lat[cp - 0xC0];
        } else if (cp == 0x2018 || cp == 0x2019)
            ch = '\'';
        else if (cp == 0x201C || cp == 0x201D)
            ch = '"';
        else if (cp == 0x2013 || cp == 0x2014)
            ch = '-';
        else if (cp == 0x2026)
            ch = '.';
        else if (cp == 0xA0)
            ch = ' ';
        out[k++] = ch;
        p += len;
    }
    out[k] = '\0';
}

void br_plot_text_size(const char *text, float scale, float *w, float *h)
{
    char buf[512];
    to_ascii(text, buf, sizeof buf);
    *w = (float)stb_easy_font_width(buf) * scale;
    *h = 8.0f * scale;   /* cap height 7 plus a descender row */
}

float br_plot_text(br_plot_canvas *c, float x, float y, const char *text, float scale,
                   uint32_t rgb)
{
    char buf[512];
    static char vbuf[512 * 270];   /* ~270 bytes per character (stb_easy_font) */
    to_ascii(text, buf, sizeof buf);
    /* The static buffer is shared: text is drawn by one thread at a time
     * (the renderer is single-threaded). */
    int quads = stb_easy_font_print(0, 0, buf, NULL, vbuf, (int)sizeof vbuf);
    for (int q = 0; q < quads; q++) {
        const float *v0 = (const float *)(vbuf + (size_t)q * 64);
        const float *v2 = (const float *)(vbuf + (size_t)q * 64 + 32);
        br_plot_box(c, x + v0[0] * scale, y + v0[1] * scale, x + v2[0] * scale,
                    y + v2[1] * scale, rgb, 1.0f);
    }
    return (float)stb_easy_font_width(buf) * scale;
}

/* ---- PNG ------------------------------------------------------------------- */

static void png_write(void *ctx, void *data, int size)
{
    FILE *f = ctx;
    if (size > 0)
        fwrite(data, 1, (size_t)size, f);
}

br_err br_plot_save_png(const br_plot_canvas *c, const char *path, br_diag *diag)
{
    if (!c || !path)
        return br_fail(diag, BR_ERR_ARG, "save png: bad arguments");
    size_t n = (size_t)c->w * (size_t)c->h;
    uint8_t *rgb = malloc(n * 3);
    if (!rgb)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        rgb[3 * i] = c->px[4 * i];
        rgb[3 * i + 1] = c->px[4 * i + 1];
        rgb[3 * i + 2] = c->px[4 * i + 2];
    }
    br_atomic *a = NULL;
    br_err e = br_atomic_open(path, &a, diag);
    if (!e) {
        FILE *f = br_atomic_file(a);
        if (!stbi_write_png_to_func(png_write, f, c->w, c->h, 3, rgb, c->w * 3)) {
            br_atomic_abort(a);
            e = br_fail(diag, BR_ERR_IO, "%s: PNG encoding failed", path);
        } else if (ferror(f)) {
            br_atomic_abort(a);
            e = br_fail(diag, BR_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        } else {
            e = br_atomic_commit(a, diag);
        }
    }
    free(rgb);
    return e;
}

/* ---- colours --------------------------------------------------------------- */

/* One colour per genre of br_books_genre_name's list, in that order, picked
 * so that neighbouring genres on a map (fantasy / young-adult / romance,
 * mystery / thriller / horror) stay distinguishable. */
static const uint32_t genre_colors[] = {
    0x7B3FBF, /* fantasy: purple */
    0x1F77B4, /* science-fiction: blue */
    0xE7298A, /* romance: magenta */
    0x2CA02C, /* mystery: green */
    0xD62728, /* thriller: red */
    0x222222, /* horror: near black */
    0x8C564B, /* historical-fiction: brown */
    0xFF7F0E, /* young-adult: orange */
    0xA6A600, /* classics: olive */
    0x17BECF, /* non-fiction: cyan */
    0x00665A, /* biography: dark teal */
    0xF2B701, /* childrens: gold */
    0x3B3EAC, /* graphic-novels: indigo */
    0xF49AC2, /* poetry: light pink */
    0x8FD16F, /* humor: light green */
    0xC49C94, /* literary-fiction: tan */
};
#define NO_GENRE_COLOR 0xB8B8B8

int br_plot_genre_index(const char *g)
{
    if (!g || !*g)
        return -1;
    for (size_t i = 0; i < br_books_genre_count(); i++)
        if (strcmp(g, br_books_genre_name(i)) == 0)
            return (int)i;
    return -1;
}

uint32_t br_plot_genre_color(int i)
{
    if (i < 0 || (size_t)i >= sizeof genre_colors / sizeof genre_colors[0])
        return NO_GENRE_COLOR;
    return genre_colors[i];
}

/* A perceptually ordered map (viridis, 9 stops), t in [0, 1]. */
static uint32_t ramp(double t)
{
    static const uint32_t stops[] = {0x440154, 0x472D7B, 0x3B528B, 0x2C728E, 0x21918C,
                                     0x28AE80, 0x5EC962, 0xADDC30, 0xFDE725};
    if (!(t >= 0))
        t = 0;
    if (t > 1)
        t = 1;
    double f = t * 8;
    int i = (int)f;
    if (i >= 8)
        i = 7;
    double u = f - i;
    uint32_t a = stops[i], b = stops[i + 1], out = 0;
    for (int s = 16; s >= 0; s -= 8) {
        double ca = (a >> s) & 255, cb = (b >> s) & 255;
        out |= (uint32_t)(ca + (cb - ca) * u + 0.5) << s;
    }
    return out;
}

/* Colour-scale range of the continuous modes. */
static void scale_range(br_plot_color m, double *lo, double *hi)
{
    if (m == BR_PLOT_COLOR_RATING) {
        *lo = 3.5;
        *hi = 4.5;
    } else {
        *lo = 1950;   /* most of goodbooks-10k is after 1950; older books share one end */
        *hi = 2017;
    }
}

/* The colour of point i, and whether it has a value at all. */
static uint32_t point_color(const br_plot_data *d, size_t i, int *has)
{
    const br_book *b = &d->books[i];
    double lo, hi;
    switch (d->color) {
    case BR_PLOT_COLOR_RATING:
        *has = isfinite(b->avg_rating);
        scale_range(d->color, &lo, &hi);
        return *has ? ramp((b->avg_rating - lo) / (hi - lo)) : NO_GENRE_COLOR;
    case BR_PLOT_COLOR_YEAR:
        *has = b->year != 0;
        scale_range(d->color, &lo, &hi);
        return *has ? ramp((b->year - lo) / (hi - lo)) : NO_GENRE_COLOR;
    default: {
        int g = br_plot_genre_index(b->genre);
        *has = g >= 0;
        return br_plot_genre_color(g);
    }
    }
}

/* ---- view ------------------------------------------------------------------ */

/* Layout of the canvas: title band, plot area, legend column. */
typedef struct frame {
    float ui;                  /* text scale */
    float title_h;             /* height of the title band */
    float legend_w;            /* width of the legend column */
    float px0, py0, px1, py1;  /* plot area */
} frame;

static frame frame_of(int w, int h)
{
    frame f;
    float m = (float)(w < h ? w : h);
    f.ui = m >= 900 ? 2.0f : m >= 450 ? 1.5f : 1.0f;
    f.title_h = 34 * f.ui;
    f.legend_w = w >= 500 ? 150 * f.ui : 0;
    float pad = 8 * f.ui;
    f.px0 = pad;
    f.py0 = f.title_h + pad;
    f.px1 = (float)w - f.legend_w - pad;
    f.py1 = (float)h - pad;
    if (f.px1 < f.px0 + 8)
        f.px1 = f.px0 + 8;
    if (f.py1 < f.py0 + 8)
        f.py1 = f.py0 + 8;
    return f;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

br_plot_view br_plot_fit_view(const br_plot_data *d, int w, int h)
{
    frame f = frame_of(w, h);
    br_plot_view v = {(f.px0 + f.px1) / 2, (f.py0 + f.py1) / 2, 1};
    if (!d || d->n == 0)
        return v;
    float *t = malloc(d->n * sizeof *t);
    double lo[2] = {-1, -1}, hi[2] = {1, 1};
    if (t) {
        for (int a = 0; a < 2; a++) {
            size_t k = 0;
            for (size_t i = 0; i < d->n; i++)
                if (isfinite(d->xy[2 * i + a]))
                    t[k++] = d->xy[2 * i + a];
            if (k == 0)
                continue;
            qsort(t, k, sizeof *t, cmp_float);
            size_t q = k / 1000;
            lo[a] = t[q];
            hi[a] = t[k - 1 - q];
        }
        free(t);
    }
    double sx = hi[0] - lo[0], sy = hi[1] - lo[1];
    if (!(sx > 0))
        sx = 1;
    if (!(sy > 0))
        sy = 1;
    double s = fmin((f.px1 - f.px0) / sx, (f.py1 - f.py0) / sy) * 0.96;
    v.s = s;
    v.ox = (f.px0 + f.px1) / 2 - s * (lo[0] + hi[0]) / 2;
    v.oy = (f.py0 + f.py1) / 2 + s * (lo[1] + hi[1]) / 2;
    return v;
}

long br_plot_pick(const br_plot_data *d, const br_plot_view *v, double px, double py,
                  double max_px)
{
    long best = -1;
    double bd = max_px * max_px;
    for (size_t i = 0; i < d->n; i++) {
        double x = v->ox + v->s * d->xy[2 * i], y = v->oy - v->s * d->xy[2 * i + 1];
        double dd = (x - px) * (x - px) + (y - py) * (y - py);
        if (dd <= bd) {
            bd = dd;
            best = (long)i;
        }
    }
    return best;
}

/* ---- labels ---------------------------------------------------------------- */

typedef struct rect {
    float x0, y0, x1, y1;
} rect;

static int overlaps(rect a, rect b)
{
    return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
}

/* A short form of a title for a label: the series note in parentheses
 * ("(Harry Potter, #1)") dropped, cut at 34 characters with "...". */
static void short_title(const char *t, char *out, size_t cap)
{
    char a[512];
    to_ascii(t, a, sizeof a);
    char *paren = strstr(a, " (");
    if (paren && paren != a && strchr(paren, ')'))
        *paren = '\0';
    size_t len = strlen(a);
    while (len && a[len - 1] == ' ')
        a[--len] = '\0';
    if (len > 34) {
        size_t cut = 31;
        while (cut > 20 && a[cut] != ' ')
            cut--;
        a[cut] = '\0';
        snprintf(out, cap, "%s...", a);
    } else {
        snprintf(out, cap, "%s", a);
    }
}

typedef struct popular {
    uint32_t count;
    size_t i;
} popular;

static int cmp_popular(const void *a, const void *b)
{
    const popular *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return (x->i > y->i) - (x->i < y->i);
}

typedef struct rects {
    rect *r;
    size_t n, cap;
} rects;

static int rects_push(rects *rs, rect r)
{
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 64;
        rect *p = realloc(rs->r, cap * sizeof *p);
        if (!p)
            return 0;
        rs->r = p;
        rs->cap = cap;
    }
    rs->r[rs->n++] = r;
    return 1;
}

static int rect_free(const rects *rs, rect r)
{
    for (size_t k = 0; k < rs->n; k++)
        if (overlaps(rs->r[k], r))
            return 0;
    return 1;
}

/* Draws a label box for point (x, y) in the first of eight positions around
 * it that is inside `area` and free of the rects already taken; returns 1
 * if it found one. */
static int place_label(br_plot_canvas *c, rects *taken, rect area, float x, float y,
                       float gap, const char *text, float ui, uint32_t text_rgb,
                       uint32_t box_rgb, float box_alpha)
{
    float tw, th;
    br_plot_text_size(text, ui, &tw, &th);
    float padx = 3 * ui, pady = 2 * ui;
    float bw = tw + 2 * padx, bh = th + 2 * pady;
    const float pos[8][2] = {
        {gap, -bh / 2},       {-gap - bw, -bh / 2}, {-bw / 2, -gap - bh}, {-bw / 2, gap},
        {gap, -gap - bh},     {gap, gap},           {-gap - bw, -gap - bh}, {-gap - bw, gap},
    };
    for (int k = 0; k < 8; k++) {
        rect r = {x + pos[k][0], y + pos[k][1], x + pos[k][0] + bw, y + pos[k][1] + bh};
        if (r.x0 < area.x0 || r.y0 < area.y0 || r.x1 > area.x1 || r.y1 > area.y1)
            continue;
        if (!rect_free(taken, r))
            continue;
        if (!rects_push(taken, r))
            return 0;
        br_plot_box(c, r.x0, r.y0, r.x1, r.y1, box_rgb, box_alpha);
        br_plot_text(c, r.x0 + padx, r.y0 + pady + ui, text, ui, text_rgb);
        return 1;
    }
    return 0;
}

/* Genre names written over the map where each genre is densest (a 3 x 3
 * smoothed count on a grid of ~40 px cells, the genre at least 40% of the
 * points there), so the clusters say what they are. Their rects go into
 * `taken` before the book titles are placed. */
static void draw_genre_names(br_plot_canvas *c, const br_plot_data *d, const br_plot_view *v,
                             const frame *f, rects *taken)
{
    enum { MAXG = 32 };
    float ui = f->ui, cell = 20 * ui;
    int gw = (int)((f->px1 - f->px0) / cell) + 1, gh = (int)((f->py1 - f->py0) / cell) + 1;
    size_t ng = br_books_genre_count();
    if (ng > MAXG)
        ng = MAXG;
    size_t cells = (size_t)gw * (size_t)gh;
    uint16_t *cnt = calloc(cells * (ng + 1), sizeof *cnt);
    if (!cnt)
        return;
    size_t per_genre[MAXG] = {0};
    for (size_t i = 0; i < d->n; i++) {
        float x = (float)(v->ox + v->s * d->xy[2 * i]), y = (float)(v->oy - v->s * d->xy[2 * i + 1]);
        if (x < f->px0 || x >= f->px1 || y < f->py0 || y >= f->py1)
            continue;
        int g = br_plot_genre_index(d->books[i].genre);
        size_t cidx = (size_t)((int)((y - f->py0) / cell) * gw + (int)((x - f->px0) / cell));
        if (cnt[cidx * (ng + 1) + ng] < 65535)
            cnt[cidx * (ng + 1) + ng]++;
        if (g >= 0 && (size_t)g < ng) {
            if (cnt[cidx * (ng + 1) + (size_t)g] < 65535)
                cnt[cidx * (ng + 1) + (size_t)g]++;
            per_genre[g]++;
        }
    }
    for (size_t g = 0; g < ng; g++) {
        if (per_genre[g] < 25)
            continue;
        /* the best few cells by smoothed count, tried in order */
        int best[6] = {-1, -1, -1, -1, -1, -1};
        double bestv[6] = {0};
        for (int cy = 0; cy < gh; cy++)
            for (int cx = 0; cx < gw; cx++) {
                double own = 0, all = 0;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++) {
                        int x = cx + dx, y = cy + dy;
                        if (x < 0 || y < 0 || x >= gw || y >= gh)
                            continue;
                        size_t ci = (size_t)(y * gw + x) * (ng + 1);
                        own += cnt[ci + g];
                        all += cnt[ci + ng];
                    }
                if (own < 6 || own < 0.4 * all)
                    continue;
                for (int k = 0; k < 6; k++)
                    if (own > bestv[k]) {
                        for (int m = 5; m > k; m--) {
                            best[m] = best[m - 1];
                            bestv[m] = bestv[m - 1];
                        }
                        best[k] = cy * gw + cx;
                        bestv[k] = own;
                        break;
                    }
            }
        const char *name = br_books_genre_name(g);
        float ts = ui * 1.5f, tw, th;
        br_plot_text_size(name, ts, &tw, &th);
        for (int k = 0; k < 6 && best[k] >= 0; k++) {
            float x = f->px0 + ((float)(best[k] % gw) + 0.5f) * cell - tw / 2 - 3 * ui;
            float y = f->py0 + ((float)(best[k] / gw) + 0.5f) * cell - th / 2 - 2 * ui;
            rect r = {x, y, x + tw + 6 * ui, y + th + 4 * ui};
            if (r.x0 < f->px0 || r.x1 > f->px1 || r.y0 < f->py0 || r.y1 > f->py1)
                continue;
            if (!rect_free(taken, r))
                continue;
            uint32_t col = br_plot_genre_color((int)g);
            br_plot_box(c, r.x0, r.y0, r.x1, r.y1, 0xFFFFFF, 0.72f);
            br_plot_text(c, x + 3 * ui, y + 2 * ui, name, ts, col);
            br_plot_text(c, x + 3 * ui + ui * 0.75f, y + 2 * ui, name, ts, col);   /* bold */
            rects_push(taken, r);
            break;
        }
    }
    free(cnt);
}

/* ---- the plot -------------------------------------------------------------- */

typedef struct legend_row {
    int genre;
    size_t count;
} legend_row;

static int cmp_legend(const void *a, const void *b)
{
    const legend_row *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return x->genre - y->genre;
}

/* The legend column; its rect is added to `taken`. */
static void draw_legend(br_plot_canvas *c, const br_plot_data *d, const frame *f, rects *taken)
{
    if (f->legend_w <= 0)
        return;
    float ui = f->ui, x = (float)c->w - f->legend_w, y = f->title_h + 8 * ui;
    float lh = 13 * ui;
    char line[96];
    if (d->color == BR_PLOT_COLOR_GENRE) {
        legend_row rows[32];
        size_t ng = br_books_genre_count();
        if (ng > 31)
            ng = 31;
        for (size_t g = 0; g <= ng; g++) {
            rows[g].genre = g < ng ? (int)g : -1;
            rows[g].count = 0;
        }
        for (size_t i = 0; i < d->n; i++) {
            int g = br_plot_genre_index(d->books[i].genre);
            rows[g >= 0 && (size_t)g < ng ? (size_t)g : ng].count++;
        }
        qsort(rows, ng + 1, sizeof rows[0], cmp_legend);
        br_plot_text(c, x, y, "Genre (books)", ui, 0x222222);
        y += lh * 1.3f;
        for (size_t r = 0; r <= ng; r++) {
            if (rows[r].count == 0)
                continue;
            br_plot_disc(c, x + 5 * ui, y + 3.5f * ui, 4.5f * ui, br_plot_genre_color(rows[r].genre),
                         1.0f);
            snprintf(line, sizeof line, "%s (%zu)",
                     rows[r].genre >= 0 ? br_books_genre_name((size_t)rows[r].genre) : "no genre",
                     rows[r].count);
            br_plot_text(c, x + 13 * ui, y, line, ui, 0x222222);
            y += lh;
        }
    } else {
        double lo, hi;
        scale_range(d->color, &lo, &hi);
        const char *what = d->color == BR_PLOT_COLOR_RATING ? "Average rating" : "Publication year";
        br_plot_text(c, x, y, what, ui, 0x222222);
        y += lh * 1.3f;
        float bar_h = 160 * ui, bar_w = 14 * ui;
        for (int k = 0; k < (int)bar_h; k++) {
            double t = 1.0 - (double)k / bar_h;
            br_plot_box(c, x, y + (float)k, x + bar_w, y + (float)k + 1, ramp(t), 1.0f);
        }
        for (int k = 0; k <= 4; k++) {
            double val = hi - (hi - lo) * k / 4;
            if (d->color == BR_PLOT_COLOR_RATING)
                snprintf(line, sizeof line, "%s%.2f", k == 0 ? ">= " : k == 4 ? "<= " : "", val);
            else
                snprintf(line, sizeof line, "%s%.0f", k == 0 ? ">= " : k == 4 ? "<= " : "", val);
            br_plot_text(c, x + bar_w + 5 * ui, y + bar_h * (float)k / 4 - 3 * ui, line, ui,
                         0x222222);
        }
        y += bar_h + lh;
        br_plot_disc(c, x + 5 * ui, y + 3.5f * ui, 4.5f * ui, NO_GENRE_COLOR, 1.0f);
        br_plot_text(c, x + 13 * ui, y, "unknown", ui, 0x222222);
        y += lh;
    }
    y += lh * 0.5f;
    if (d->n_labels) {
        br_plot_text(c, x, y, "Labels: the most", ui, 0x555555);
        br_plot_text(c, x, y + lh, "read books", ui, 0x555555);
        y += 2 * lh;
    }
    rect r = {x - 4 * ui, f->title_h, (float)c->w, y};
    rects_push(taken, r);
}

/* Draws a tooltip (title, authors, year, rating, genre) near (x, y). */
static void draw_tooltip(br_plot_canvas *c, const br_book *b, float x, float y, float ui)
{
    char lines[5][160], t[400];
    to_ascii(b->title, t, sizeof t);
    snprintf(lines[0], sizeof lines[0], "%.150s", t);
    to_ascii(b->authors, t, sizeof t);
    snprintf(lines[1], sizeof lines[1], "by %.140s", t);
    if (b->year)
        snprintf(lines[2], sizeof lines[2], "%d", (int)b->year);
    else
        snprintf(lines[2], sizeof lines[2], "year unknown");
    char cnt[32], raw[16];
    int rl = snprintf(raw, sizeof raw, "%u", (unsigned)b->ratings_count), k = 0;
    for (int i = 0; i < rl; i++) {   /* 1903563 -> 1,903,563 */
        if (i > 0 && (rl - i) % 3 == 0)
            cnt[k++] = ',';
        cnt[k++] = raw[i];
    }
    cnt[k] = '\0';
    if (isfinite(b->avg_rating))
        snprintf(lines[3], sizeof lines[3], "average rating %.2f (%s ratings)",
                 (double)b->avg_rating, cnt);
    else
        snprintf(lines[3], sizeof lines[3], "average rating unknown");
    snprintf(lines[4], sizeof lines[4], "genre: %s", *b->genre ? b->genre : "none");
    float w = 0, lh = 12 * ui;
    for (int i = 0; i < 5; i++) {
        float tw, th;
        br_plot_text_size(lines[i], ui, &tw, &th);
        if (tw > w)
            w = tw;
    }
    float bw = w + 12 * ui, bh = 5 * lh + 8 * ui;
    float x0 = x + 12 * ui, y0 = y + 12 * ui;
    if (x0 + bw > (float)c->w)
        x0 = x - 12 * ui - bw;
    if (x0 < 0)
        x0 = 0;
    if (y0 + bh > (float)c->h)
        y0 = y - 12 * ui - bh;
    if (y0 < 0)
        y0 = 0;
    br_plot_box(c, x0, y0, x0 + bw, y0 + bh, 0x202020, 0.92f);
    for (int i = 0; i < 5; i++)
        br_plot_text(c, x0 + 6 * ui, y0 + 5 * ui + lh * (float)i, lines[i], ui,
                     i == 0 ? 0xFFFFFF : 0xD0D0D0);
}

br_err br_plot_render(br_plot_canvas *c, const br_plot_data *d, const br_plot_view *v,
                      const br_plot_overlay *ov, br_diag *diag)
{
    if (!c || !d || !v || (d->n && (!d->xy || !d->books)))
        return br_fail(diag, BR_ERR_ARG, "plot: bad arguments");
    frame f = frame_of(c->w, c->h);
    float ui = f.ui;
    br_plot_fill(c, 0xFFFFFF);

    /* Point size from the plot area and the number of points: dense maps
     * get small, translucent points so clusters show as density. */
    double area = (double)(f.px1 - f.px0) * (f.py1 - f.py0);
    float r = (float)sqrt(area / (d->n ? (double)d->n : 1) / 3.14159 * 0.22);
    if (r < 1.2f)
        r = 1.2f;
    if (r > 6 * ui)
        r = 6 * ui;
    float alpha = d->n > 3000 ? 0.75f : 0.9f;
    int dim_others = ov && ov->selected >= 0;

    /* Points without a value first (grey underneath), then the rest in a
     * fixed pseudo-random order, so no colour systematically hides another. */
    size_t *order = malloc((d->n ? d->n : 1) * sizeof *order);
    popular *pop = malloc((d->n ? d->n : 1) * sizeof *pop);
    unsigned char *labelled = calloc(d->n ? d->n : 1, 1);
    rects taken = {0};
    if (!order || !pop || !labelled) {
        free(order);
        free(pop);
        free(labelled);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    size_t k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t j = 0; j < d->n; j++) {
            size_t i = d->n > 1 ? (j * 7919u) % d->n : j;   /* 7919 is prime */
            if (d->n % 7919 == 0)
                i = j;
            int has;
            point_color(d, i, &has);
            if (has == pass)
                order[k++] = i;
        }
    for (size_t j = 0; j < k; j++) {
        size_t i = order[j];
        int has;
        uint32_t col = point_color(d, i, &has);
        float x = (float)(v->ox + v->s * d->xy[2 * i]), y = (float)(v->oy - v->s * d->xy[2 * i + 1]);
        br_plot_disc(c, x, y, r, col, dim_others ? alpha * 0.25f : (has ? alpha : alpha * 0.6f));
    }

    /* Title band. */
    br_plot_box(c, 0, 0, (float)c->w, f.title_h, 0xF3F3F3, 1.0f);
    if (d->title)
        br_plot_text(c, 8 * ui, 5 * ui, d->title, ui * 1.5f, 0x111111);
    if (d->subtitle)
        br_plot_text(c, 8 * ui, 21 * ui, d->subtitle, ui, 0x555555);
    rect title_r = {0, 0, (float)c->w, f.title_h};
    rects_push(&taken, title_r);
    draw_legend(c, d, &f, &taken);

    rect plot_area = {f.px0 - 8 * ui, f.py0 - 8 * ui, f.px1 + 8 * ui, (float)c->h};
    if (d->color == BR_PLOT_COLOR_GENRE && !(ov && ov->selected >= 0) && d->n_labels)
        draw_genre_names(c, d, v, &f, &taken);
    float gap = r + 3 * ui;

    /* The selection: its neighbours ringed and labelled first. */
    if (ov && ov->selected >= 0 && (size_t)ov->selected < d->n) {
        for (size_t q = 0; q <= ov->n_near; q++) {
            size_t i = q == 0 ? (size_t)ov->selected : ov->near[q - 1];
            if (i >= d->n)
                continue;
            int has;
            uint32_t col = point_color(d, i, &has);
            float x = (float)(v->ox + v->s * d->xy[2 * i]);
            float y = (float)(v->oy - v->s * d->xy[2 * i + 1]);
            br_plot_disc(c, x, y, r + 3 * ui, q == 0 ? 0xD00000 : 0x111111, 1.0f);
            br_plot_disc(c, x, y, r + 1.5f * ui, col, 1.0f);
            char t[64];
            short_title(d->books[i].title, t, sizeof t);
            place_label(c, &taken, plot_area, x, y, gap + 2 * ui, t, ui,
                        q == 0 ? 0xFFFFFF : 0x111111, q == 0 ? 0xC00000 : 0xFFF4B0, 0.92f);
        }
    } else if (d->n_labels) {
        /* The most-read books, most read first, each placed where it fits:
         * the first third by popularity alone, then the most read book of
         * each not yet labelled region of a 6 x 5 grid, so every part of
         * the map gets a landmark, then popularity again. */
        for (size_t i = 0; i < d->n; i++) {
            pop[i].count = d->books[i].ratings_count;
            pop[i].i = i;
        }
        qsort(pop, d->n, sizeof *pop, cmp_popular);
        size_t placed = 0, first = (d->n_labels + 2) / 3;
        unsigned char cell_done[30] = {0};
        for (int phase = 0; phase < 3; phase++) {
            size_t limit = phase == 0 ? first : d->n_labels;
            for (size_t q = 0; q < d->n && placed < limit && (phase == 1 || q < d->n_labels * 6);
                 q++) {
                size_t i = pop[q].i;
                if (labelled[i])
                    continue;
                float x = (float)(v->ox + v->s * d->xy[2 * i]);
                float y = (float)(v->oy - v->s * d->xy[2 * i + 1]);
                if (x < f.px0 || x > f.px1 || y < f.py0 || y > f.py1)
                    continue;
                int cell = (int)((x - f.px0) / (f.px1 - f.px0 + 1) * 6) +
                           6 * (int)((y - f.py0) / (f.py1 - f.py0 + 1) * 5);
                if (cell < 0 || cell >= 30)
                    continue;
                if (phase == 1 && cell_done[cell])
                    continue;
                char t[64];
                short_title(d->books[i].title, t, sizeof t);
                if (!*t)
                    continue;
                if (place_label(c, &taken, plot_area, x, y, gap, t, ui, 0x111111, 0xFFFFFF,
                                0.80f)) {
                    int has;
                    uint32_t col = point_color(d, i, &has);
                    br_plot_disc(c, x, y, r + 1.5f * ui, 0x111111, 1.0f);
                    br_plot_disc(c, x, y, r + 0.5f * ui, col, 1.0f);
                    placed++;
                    labelled[i] = 1;
                    cell_done[cell] = 1;
                } else if (phase == 1) {
                    cell_done[cell] = 1;   /* its best book did not fit: leave the region */
                }
            }
        }
    }
    if (ov && ov->status) {
        float tw, th;
        br_plot_text_size(ov->status, ui, &tw, &th);
        br_plot_box(c, 0, (float)c->h - th - 6 * ui, tw + 12 * ui, (float)c->h, 0xF3F3F3, 0.9f);
        br_plot_text(c, 6 * ui, (float)c->h - th - 3 * ui, ov->status, ui, 0x333333);
    }
    if (ov && ov->hover >= 0 && (size_t)ov->hover < d->n) {
        size_t i = (size_t)ov->hover;
        float x = (float)(v->ox + v->s * d->xy[2 * i]), y = (float)(v->oy - v->s * d->xy[2 * i + 1]);
        br_plot_disc(c, x, y, r + 2.5f * ui, 0x000000, 1.0f);
        int has;
        br_plot_disc(c, x, y, r + 1 * ui, point_color(d, i, &has), 1.0f);
        draw_tooltip(c, &d->books[i], x, y, ui);
    }
    free(order);
    free(pop);
    free(labelled);
    free(taken.r);
    return BR_OK;
}
