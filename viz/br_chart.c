/*
 * br_chart.c - line charts on the br_plot canvas (br_chart.h): axis ranges
 * and ticks, antialiased polylines with disc markers, labels and a legend,
 * all drawn with br_plot_box / br_plot_disc / br_plot_text.
 *
 * The box a chart is given is stacked top to bottom: title, y-axis label,
 * plot area, x tick labels, x-axis label, legend; the y tick labels take
 * the left margin.
 */
#include "br_chart.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define INK 0x222222u
#define GRID 0xE4E4E4u
#define AXIS 0x555555u

uint32_t br_chart_color(size_t i)
{
    /* Okabe-Ito: distinct under the common colour-vision deficiencies */
    static const uint32_t pal[8] = {0x0072B2, 0xD55E00, 0x009E73, 0xCC79A7,
                                    0xE69F00, 0x56B4E9, 0x000000, 0xF0E442};
    return pal[i % 8];
}

static uint32_t series_rgb(const br_chart *ch, size_t i)
{
    return ch->series[i].rgb ? ch->series[i].rgb : br_chart_color(i);
}

/* The text scale for a box: 1 for small boxes, up to 2.5 for large ones. */
static float ui_scale(float w, float h)
{
    float s = fminf(w / 320.0f, h / 240.0f);
    return s < 1 ? 1 : s > 2.5f ? 2.5f : s;
}

static int usable(double v, int log_axis) { return isfinite(v) && (!log_axis || v > 0); }

/* Linear tick step: 1, 2 or 5 times a power of ten, about range / 5. */
static double nice_step(double range)
{
    double raw = range / 5, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

/* A tick label: SI suffixes for large values, %g below 1000. */
static void fmt_num(double v, char *out, size_t cap)
{
    double a = fabs(v);
    if (a >= 1e9)
        snprintf(out, cap, "%gG", v / 1e9);
    else if (a >= 1e6)
        snprintf(out, cap, "%gM", v / 1e6);
    else if (a >= 1e3)
        snprintf(out, cap, "%gk", v / 1e3);
    else if (a < 1e-12)
        snprintf(out, cap, "0");
    else
        snprintf(out, cap, "%g", v);
}

/* Ticks of axis a under frame f: fills up to cap values, returns how many. */
static size_t ticks(const br_chart_frame *f, int a, double *t, size_t cap)
{
    size_t n = 0;
    if (f->log[a]) {
        /* the decades inside the range; 2 and 5 times them too when the
         * range holds fewer than 3 decades; every k-th decade over 8 */
        int d0 = (int)floor(log10(f->lo[a])), d1 = (int)ceil(log10(f->hi[a]));
        int every = (d1 - d0 + 7) / 8, fine = (log10(f->hi[a]) - log10(f->lo[a])) < 2.2;
        static const double mant[3] = {1, 2, 5};
        for (int d = d0; d <= d1; d += every)
            for (int m = 0; m < (fine ? 3 : 1); m++) {
                double v = mant[m] * pow(10, d);
                if (v >= f->lo[a] * (1 - 1e-9) && v <= f->hi[a] * (1 + 1e-9) && n < cap)
                    t[n++] = v;
            }
    } else {
        double st = nice_step(f->hi[a] - f->lo[a]);
        for (double v = f->lo[a]; v <= f->hi[a] + st * 1e-6 && n < cap; v += st)
            t[n++] = fabs(v) < st * 1e-9 ? 0 : v;
    }
    return n;
}

static float text_w(const char *s, float ui)
{
    float w, h;
    br_plot_text_size(s, ui, &w, &h);
    return w;
}

br_err br_chart_layout(const br_chart *ch, float x0, float y0, float x1, float y1,
                       br_chart_frame *f, br_diag *diag)
{
    if (!ch || !f)
        return br_fail(diag, BR_ERR_ARG, "chart: no chart or no frame");
    if (!ch->series || ch->n_series == 0)
        return br_fail(diag, BR_ERR_ARG, "chart: no series to draw");
    if (!(x1 - x0 >= 120) || !(y1 - y0 >= 90))
        return br_fail(diag, BR_ERR_ARG, "chart: box %.0fx%.0f is under 120x90 pixels",
                       (double)(x1 - x0), (double)(y1 - y0));
    memset(f, 0, sizeof *f);
    f->log[0] = ch->x.log != 0;
    f->log[1] = ch->y.log != 0;
    double mn[2] = {INFINITY, INFINITY}, mx[2] = {-INFINITY, -INFINITY};
    for (size_t s = 0; s < ch->n_series; s++) {
        const br_chart_series *se = &ch->series[s];
        if (se->n && (!se->x || !se->y))
            return br_fail(diag, BR_ERR_ARG, "chart: series %zu has %zu points and no data", s,
                           se->n);
        for (size_t i = 0; i < se->n; i++) {
            if (!usable(se->x[i], f->log[0]) || !usable(se->y[i], f->log[1]))
                continue;
            mn[0] = fmin(mn[0], se->x[i]);
            mx[0] = fmax(mx[0], se->x[i]);
            mn[1] = fmin(mn[1], se->y[i]);
            mx[1] = fmax(mx[1], se->y[i]);
        }
    }
    if (!(mn[0] <= mx[0]))
        return br_fail(diag, BR_ERR_ARG, "chart: no point can be drawn (%s)",
                       f->log[0] || f->log[1] ? "none finite and positive on the log axes"
                                              : "none finite");
    for (int a = 0; a < 2; a++) {
        if (f->log[a]) {
            /* an eighth of a decade past the data, one decade at least */
            double l0 = log10(mn[a]) - 0.12, l1 = log10(mx[a]) + 0.12;
            if (l1 - l0 < 1) {
                double mid = (l0 + l1) / 2;
                l0 = mid - 0.5;
                l1 = mid + 0.5;
            }
            f->lo[a] = pow(10, l0);
            f->hi[a] = pow(10, l1);
        } else {
            double lo = mn[a] < 0 ? mn[a] : 0, hi = mx[a] > 0 ? mx[a] : 0;
            if (hi <= lo)
                hi = lo + 1;
            double st = nice_step(hi - lo);
            f->lo[a] = floor(lo / st) * st;
            f->hi[a] = ceil(hi / st) * st;
        }
    }
    /* margins from the text that goes around the plot area */
    float ui = ui_scale(x1 - x0, y1 - y0), line = 8 * ui, pad = 4 * ui;
    double t[64];
    size_t nt = ticks(f, 1, t, 64);
    float yw = 0;
    for (size_t i = 0; i < nt; i++) {
        char b[32];
        fmt_num(t[i], b, sizeof b);
        yw = fmaxf(yw, text_w(b, ui));
    }
    int has_legend = 0;
    for (size_t s = 0; s < ch->n_series; s++)
        has_legend |= ch->series[s].name != NULL;
    f->px0 = x0 + pad + yw + pad;
    f->px1 = x1 - 3 * pad;
    f->py0 = y0 + pad + (ch->title ? line * 1.25f + pad : 0) + (ch->y.label ? line + pad : 0) +
             line / 2;
    f->py1 = y1 - pad - (line + pad) - (ch->x.label ? line + pad : 0) -
             (has_legend ? line + 2 * pad : 0);
    if (f->px1 - f->px0 < 40 || f->py1 - f->py0 < 30)
        return br_fail(diag, BR_ERR_ARG, "chart: box %.0fx%.0f leaves no room to plot",
                       (double)(x1 - x0), (double)(y1 - y0));
    return BR_OK;
}

/* Position of v along axis a in [0, 1]. */
static double frac(const br_chart_frame *f, int a, double v)
{
    if (f->log[a])
        return (log10(v) - log10(f->lo[a])) / (log10(f->hi[a]) - log10(f->lo[a]));
    return (v - f->lo[a]) / (f->hi[a] - f->lo[a]);
}

int br_chart_to_px(const br_chart_frame *f, double x, double y, float *px, float *py)
{
    if (!usable(x, f->log[0]) || !usable(y, f->log[1]))
        return 0;
    *px = (float)(f->px0 + frac(f, 0, x) * (f->px1 - f->px0));
    *py = (float)(f->py1 - frac(f, 1, y) * (f->py1 - f->py0));
    return 1;
}

/* Antialiased segment of width w: every pixel near it gets the coverage of
 * a capsule (distance to the segment under w / 2, half a pixel of ramp). */
static void segment(br_plot_canvas *c, float ax, float ay, float bx, float by, float w,
                    uint32_t rgb)
{
    float r = w / 2, dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
    int x0 = (int)floorf(fminf(ax, bx) - r - 1), x1 = (int)ceilf(fmaxf(ax, bx) + r + 1);
    int y0 = (int)floorf(fminf(ay, by) - r - 1), y1 = (int)ceilf(fmaxf(ay, by) + r + 1);
    if (x0 < 0)
        x0 = 0;
    if (y0 < 0)
        y0 = 0;
    if (x1 > c->w - 1)
        x1 = c->w - 1;
    if (y1 > c->h - 1)
        y1 = c->h - 1;
    for (int py = y0; py <= y1; py++)
        for (int px = x0; px <= x1; px++) {
            float qx = (float)px + 0.5f - ax, qy = (float)py + 0.5f - ay;
            float t = len2 > 0 ? (qx * dx + qy * dy) / len2 : 0;
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            float ex = qx - t * dx, ey = qy - t * dy;
            float cov = r + 0.5f - sqrtf(ex * ex + ey * ey);
            if (cov > 0)
                br_plot_box(c, (float)px, (float)py, (float)px + 1, (float)py + 1, rgb,
                            cov > 1 ? 1 : cov);
        }
}

br_err br_chart_draw(br_plot_canvas *c, const br_chart *ch, float x0, float y0, float x1,
                     float y1, br_diag *diag)
{
    if (!c)
        return br_fail(diag, BR_ERR_ARG, "chart: no canvas");
    br_chart_frame f;
    br_err e = br_chart_layout(ch, x0, y0, x1, y1, &f, diag);
    if (e)
        return e;
    float ui = ui_scale(x1 - x0, y1 - y0), line = 8 * ui, pad = 4 * ui, y = y0 + pad;
    if (ch->title) {
        br_plot_text(c, f.px0, y, ch->title, ui * 1.25f, INK);
        y += line * 1.25f + pad;
    }
    if (ch->y.label)
        br_plot_text(c, f.px0, y, ch->y.label, ui, INK);

    /* grid and tick labels */
    double t[64];
    char b[32];
    size_t nt = ticks(&f, 1, t, 64);
    for (size_t i = 0; i < nt; i++) {
        float py = (float)(f.py1 - frac(&f, 1, t[i]) * (f.py1 - f.py0));
        br_plot_box(c, f.px0, py - ui * 0.5f, f.px1, py + ui * 0.5f, GRID, 1);
        fmt_num(t[i], b, sizeof b);
        br_plot_text(c, f.px0 - pad - text_w(b, ui), py - line / 2 + ui, b, ui, INK);
    }
    nt = ticks(&f, 0, t, 64);
    for (size_t i = 0; i < nt; i++) {
        float px = (float)(f.px0 + frac(&f, 0, t[i]) * (f.px1 - f.px0));
        br_plot_box(c, px - ui * 0.5f, f.py0, px + ui * 0.5f, f.py1, GRID, 1);
        fmt_num(t[i], b, sizeof b);
        br_plot_text(c, px - text_w(b, ui) / 2, f.py1 + pad, b, ui, INK);
    }
    /* minor ticks on log axes: 2..9 times each decade */
    for (int a = 0; a < 2; a++) {
        if (!f.log[a])
            continue;
        for (double d = pow(10, floor(log10(f.lo[a]))); d < f.hi[a]; d *= 10)
            for (int m = 2; m <= 9; m++) {
                if (d * m < f.lo[a] || d * m > f.hi[a])
                    continue;
                double fr = frac(&f, a, d * m);
                if (a == 0) {
                    float px = (float)(f.px0 + fr * (f.px1 - f.px0));
                    br_plot_box(c, px - ui * 0.4f, f.py1 - 2 * ui, px + ui * 0.4f, f.py1, AXIS, 1);
                } else {
                    float py = (float)(f.py1 - fr * (f.py1 - f.py0));
                    br_plot_box(c, f.px0, py - ui * 0.4f, f.px0 + 2 * ui, py + ui * 0.4f, AXIS, 1);
                }
            }
    }
    /* frame */
    br_plot_box(c, f.px0 - ui * 0.5f, f.py0, f.px0 + ui * 0.5f, f.py1, AXIS, 1);
    br_plot_box(c, f.px0, f.py1 - ui * 0.5f, f.px1, f.py1 + ui * 0.5f, AXIS, 1);

    /* the series: segments between consecutive drawable points, then markers */
    for (size_t s = 0; s < ch->n_series; s++) {
        const br_chart_series *se = &ch->series[s];
        uint32_t rgb = series_rgb(ch, s);
        float lx = 0, ly = 0, px, py;
        int have = 0;
        for (size_t i = 0; i < se->n; i++) {
            if (!br_chart_to_px(&f, se->x[i], se->y[i], &px, &py))
                continue;
            if (have)
                segment(c, lx, ly, px, py, 1.5f * ui, rgb);
            lx = px;
            ly = py;
            have = 1;
        }
        for (size_t i = 0; i < se->n; i++)
            if (br_chart_to_px(&f, se->x[i], se->y[i], &px, &py))
                br_plot_disc(c, px, py, 2.5f * ui, rgb, 1);
    }

    /* x-axis label and legend under the plot */
    y = f.py1 + pad + line + pad;
    if (ch->x.label) {
        br_plot_text(c, f.px1 - text_w(ch->x.label, ui), y, ch->x.label, ui, INK);
        y += line + pad;
    }
    float x = f.px0;
    y += pad;
    for (size_t s = 0; s < ch->n_series; s++) {
        if (!ch->series[s].name)
            continue;
        uint32_t rgb = series_rgb(ch, s);
        segment(c, x, y + line / 2, x + 3 * line, y + line / 2, 1.5f * ui, rgb);
        br_plot_disc(c, x + 1.5f * line, y + line / 2, 2.5f * ui, rgb, 1);
        x += 3 * line + pad;
        x += br_plot_text(c, x, y, ch->series[s].name, ui, INK) + 3 * pad;
    }
    return BR_OK;
}
