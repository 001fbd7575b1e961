/*
 * br_chart.h - line charts on the br_plot canvas: a framed plot area with
 * ticks and labels (decades on a log axis, 1-2-5 steps on a linear one),
 * one polyline with markers per series, a legend and a title. bench/ draws
 * the scale study's figure with it (bench/scale_chart.c).
 *
 * Library code: never prints or exits; failures return a br_err and fill the
 * br_diag.
 */
#ifndef BR_CHART_H
#define BR_CHART_H

#include <stddef.h>
#include <stdint.h>
#include "br_error.h"
#include "br_plot.h"

typedef struct br_chart_series {
    const char *name;          /* legend text (NULL: no legend entry) */
    const double *x, *y;       /* n points, drawn in the order given */
    size_t n;
    uint32_t rgb;              /* 0xRRGGBB; 0 picks the palette colour of its index */
} br_chart_series;

typedef struct br_chart_axis {
    const char *label;         /* NULL: none */
    int log;                   /* 1: log10 scale (non-positive values are skipped) */
} br_chart_axis;

typedef struct br_chart {
    const char *title;         /* NULL: none */
    br_chart_axis x, y;
    const br_chart_series *series;
    size_t n_series;
} br_chart;

/* Where a chart lands in pixels: the plot area [px0, px1] x [py0, py1]
 * (y down) and the data range [lo, hi] of each axis (x = 0, y = 1) it
 * shows, in data units (a log axis reaches an eighth of a decade past the
 * data, and spans one decade at least). */
typedef struct br_chart_frame {
    float px0, py0, px1, py1;
    double lo[2], hi[2];
    int log[2];
} br_chart_frame;

/* Computes the frame of chart ch drawn into the box (x0, y0)-(x1, y1) of a
 * canvas: margins for the title, tick labels and axis labels, ranges from
 * the finite (and, on a log axis, positive) points. BR_ERR_ARG when there
 * is no series, a series has n > 0 and a NULL array, no point can be drawn,
 * or the box is too small (under 120 x 90 pixels). */
br_err br_chart_layout(const br_chart *ch, float x0, float y0, float x1, float y1,
                       br_chart_frame *f, br_diag *diag);

/* Data point to pixel under frame f. Returns 0 (and leaves px, py alone)
 * for a point the frame cannot show: not finite, or <= 0 on a log axis. */
int br_chart_to_px(const br_chart_frame *f, double x, double y, float *px, float *py);

/* The palette colour of series i (distinct for the first 8). */
uint32_t br_chart_color(size_t i);

/* Draws chart ch into the box (x0, y0)-(x1, y1) of c (the box is not
 * cleared first). Errors as br_chart_layout. */
br_err br_chart_draw(br_plot_canvas *c, const br_chart *ch, float x0, float y0, float x1,
                     float y1, br_diag *diag);

#endif
