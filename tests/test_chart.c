/*
 * test_chart.c - the viz library's line charts (viz/br_chart.c): data to
 * pixel mapping on linear and log axes (frame corners, a decade midway
 * between its neighbours), points a log axis cannot show are skipped, every
 * marker lands in its series' colour and the segments between them are
 * drawn, the chart survives a PNG round trip, and bad arguments give
 * BR_ERR_ARG with a message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "br_chart.h"
#include "br_plot.h"

#include "stb_image_impl.h"

static uint32_t pixel(const br_plot_canvas *c, float x, float y)
{
    const uint8_t *p = c->px + ((size_t)(int)y * (size_t)c->w + (size_t)(int)x) * 4;
    return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

/* Squared RGB distance. */
static int dist2(uint32_t a, uint32_t b)
{
    int d = 0;
    for (int s = 0; s < 24; s += 8) {
        int x = (int)((a >> s) & 255) - (int)((b >> s) & 255);
        d += x * x;
    }
    return d;
}

static void test_linear_frame_corners(void **state)
{
    (void)state;
    const double x[] = {0, 4, 10}, y[] = {0, 5, 2};
    br_chart_series se = {"a", x, y, 3, 0};
    br_chart ch = {"title", {"x", 0}, {"y", 0}, &se, 1};
    br_chart_frame f;
    assert_int_equal(br_chart_layout(&ch, 0, 0, 400, 300, &f, NULL), BR_OK);
    assert_true(f.lo[0] <= 0 && f.hi[0] >= 10 && f.hi[0] <= 12);
    assert_true(f.lo[1] <= 0 && f.hi[1] >= 5 && f.hi[1] <= 6);
    assert_true(f.px0 > 0 && f.px1 < 400 && f.px0 < f.px1);
    assert_true(f.py0 > 0 && f.py1 < 300 && f.py0 < f.py1);
    float px, py;
    assert_int_equal(br_chart_to_px(&f, f.lo[0], f.lo[1], &px, &py), 1);
    assert_float_equal(px, f.px0, 1e-3);
    assert_float_equal(py, f.py1, 1e-3);
    assert_int_equal(br_chart_to_px(&f, f.hi[0], f.hi[1], &px, &py), 1);
    assert_float_equal(px, f.px1, 1e-3);
    assert_float_equal(py, f.py0, 1e-3);
    /* a title and axis labels take room from the plot area */
    br_chart bare = {NULL, {NULL, 0}, {NULL, 0}, &se, 1};
    br_chart_frame g;
    assert_int_equal(br_chart_layout(&bare, 0, 0, 400, 300, &g, NULL), BR_OK);
    assert_true(g.py1 - g.py0 > f.py1 - f.py0);
}

static void test_log_axes(void **state)
{
    (void)state;
    const double x[] = {1, 10, 100, -5, NAN}, y[] = {0.5, 50, 5000, 7, 1};
    br_chart_series se = {"a", x, y, 5, 0};
    br_chart ch = {NULL, {"n", 1}, {"t", 1}, &se, 1};
    br_chart_frame f;
    assert_int_equal(br_chart_layout(&ch, 10, 20, 500, 400, &f, NULL), BR_OK);
    /* the range covers the positive points only, with a small margin */
    assert_true(f.lo[0] < 1 && f.lo[0] > 0.5 && f.hi[0] > 100 && f.hi[0] < 200);
    assert_true(f.lo[1] < 0.5 && f.lo[1] > 0.25 && f.hi[1] > 5000 && f.hi[1] < 10000);
    float p1x, p1y, p10x, p10y, p100x, p100y;
    assert_int_equal(br_chart_to_px(&f, 1, 0.5, &p1x, &p1y), 1);
    assert_int_equal(br_chart_to_px(&f, 10, 50, &p10x, &p10y), 1);
    assert_int_equal(br_chart_to_px(&f, 100, 5000, &p100x, &p100y), 1);
    /* equal ratios are equal distances */
    assert_float_equal(p10x - p1x, p100x - p10x, 1e-2);
    assert_float_equal(p10y - p1y, p100y - p10y, 1e-2);
    assert_true(p1x < p10x && p10y < p1y);   /* x grows right, y grows up */
    float px = -1, py = -1;
    assert_int_equal(br_chart_to_px(&f, -5, 7, &px, &py), 0);
    assert_int_equal(br_chart_to_px(&f, 10, 0, &px, &py), 0);
    assert_int_equal(br_chart_to_px(&f, NAN, 7, &px, &py), 0);
    assert_float_equal(px, -1, 0);   /* left alone */
    /* a single point still gets a range of one decade around it */
    const double one = 30;
    br_chart_series s1 = {NULL, &one, &one, 1, 0};
    br_chart c1 = {NULL, {NULL, 1}, {NULL, 1}, &s1, 1};
    assert_int_equal(br_chart_layout(&c1, 0, 0, 300, 200, &f, NULL), BR_OK);
    assert_float_equal(log10(f.hi[0]) - log10(f.lo[0]), 1.0, 1e-9);
    assert_true(f.lo[0] < 30 && f.hi[0] > 30);
}

/* Draws two series and checks every marker and every segment midpoint. */
static void test_draw_markers_and_lines(void **state)
{
    (void)state;
    const double x[] = {1e6, 6e6, 3e7}, ya[] = {0.1, 0.6, 4}, yb[] = {2, 1.5, 1.2};
    br_chart_series se[2] = {{"10k books", x, ya, 3, 0}, {"100k books", x, yb, 3, 0x00AA00}};
    br_chart ch = {"Time per epoch", {"ratings", 1}, {"seconds", 1}, se, 2};
    br_plot_canvas *c = NULL;
    assert_int_equal(br_plot_canvas_create(480, 360, &c, NULL), BR_OK);
    br_diag d;
    br_diag_clear(&d);
    assert_int_equal(br_chart_draw(c, &ch, 0, 0, 480, 360, &d), BR_OK);
    br_chart_frame f;
    assert_int_equal(br_chart_layout(&ch, 0, 0, 480, 360, &f, NULL), BR_OK);
    uint32_t col[2] = {br_chart_color(0), 0x00AA00};
    assert_int_not_equal(col[0], 0xFFFFFF);
    for (int s = 0; s < 2; s++) {
        const double *y = s ? yb : ya;
        for (int i = 0; i < 3; i++) {
            float px, py;
            assert_int_equal(br_chart_to_px(&f, x[i], y[i], &px, &py), 1);
            assert_int_equal(pixel(c, px, py), col[s]);
            if (i == 0)
                continue;
            float qx, qy;
            br_chart_to_px(&f, x[i - 1], y[i - 1], &qx, &qy);
            uint32_t mid = pixel(c, (px + qx) / 2, (py + qy) / 2);
            assert_true(dist2(mid, col[s]) < dist2(mid, 0xFFFFFF));
        }
    }
    /* far from both lines (upper left of the plot area) nothing is drawn in
     * a series colour */
    size_t stray = 0;
    for (int py = (int)f.py0 + 2; py < (int)f.py0 + 40; py++)
        for (int px = (int)f.px0 + 4; px < (int)f.px0 + 60; px++) {
            uint32_t v = pixel(c, (float)px, (float)py);
            stray += dist2(v, col[0]) < 3000 || dist2(v, col[1]) < 3000;
        }
    assert_int_equal(stray, 0);

    /* PNG round trip keeps size and colours */
    char path[] = "/tmp/test_chart_XXXXXX.png";
    int fd = mkstemps(path, 4);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(br_plot_save_png(c, path, NULL), BR_OK);
    int w = 0, h = 0, comp = 0;
    unsigned char *img = stbi_load(path, &w, &h, &comp, 3);
    assert_non_null(img);
    assert_int_equal(w, 480);
    assert_int_equal(h, 360);
    float px, py;
    br_chart_to_px(&f, x[1], yb[1], &px, &py);
    const unsigned char *p = img + ((size_t)(int)py * 480 + (size_t)(int)px) * 3;
    assert_int_equal(p[0], 0x00);
    assert_int_equal(p[1], 0xAA);
    assert_int_equal(p[2], 0x00);
    stbi_image_free(img);
    unlink(path);
    br_plot_canvas_free(c);
}

static void test_errors(void **state)
{
    (void)state;
    const double x[] = {1, 2}, y[] = {-1, 0};
    br_chart_series se = {"a", x, y, 2, 0};
    br_chart ch = {NULL, {NULL, 0}, {NULL, 1}, &se, 1};
    br_chart_frame f;
    br_diag d;
    br_plot_canvas *c = NULL;
    assert_int_equal(br_plot_canvas_create(300, 200, &c, NULL), BR_OK);

    br_diag_clear(&d);   /* no positive y on a log axis */
    assert_int_equal(br_chart_draw(c, &ch, 0, 0, 300, 200, &d), BR_ERR_ARG);
    assert_non_null(strstr(d.msg, "no point"));
    ch.y.log = 0;         /* the same points on a linear axis are fine */
    assert_int_equal(br_chart_draw(c, &ch, 0, 0, 300, 200, &d), BR_OK);

    br_diag_clear(&d);
    assert_int_equal(br_chart_layout(&ch, 0, 0, 100, 200, &f, &d), BR_ERR_ARG);
    assert_true(strlen(d.msg) > 0);
    br_diag_clear(&d);
    ch.n_series = 0;
    assert_int_equal(br_chart_layout(&ch, 0, 0, 300, 200, &f, &d), BR_ERR_ARG);
    assert_true(strlen(d.msg) > 0);
    ch.n_series = 1;
    se.y = NULL;
    br_diag_clear(&d);
    assert_int_equal(br_chart_layout(&ch, 0, 0, 300, 200, &f, &d), BR_ERR_ARG);
    assert_true(strlen(d.msg) > 0);
    se.y = y;
    const double nan2[] = {NAN, INFINITY};
    se.x = nan2;
    assert_int_equal(br_chart_layout(&ch, 0, 0, 300, 200, &f, NULL), BR_ERR_ARG);
    se.x = x;
    assert_int_equal(br_chart_layout(NULL, 0, 0, 300, 200, &f, NULL), BR_ERR_ARG);
    assert_int_equal(br_chart_draw(NULL, &ch, 0, 0, 300, 200, NULL), BR_ERR_ARG);
    assert_int_equal(br_chart_layout(&ch, 0, 0, NAN, 200, &f, NULL), BR_ERR_ARG);
    br_plot_canvas_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_frame_corners),
        cmocka_unit_test(test_log_axes),
        cmocka_unit_test(test_draw_markers_and_lines),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
