/*
 * test_viz_window.c - the SDL2 window of bookrec-viz, headless: SDL's
 * "offscreen" video driver (set here, whatever the environment says), a
 * hidden window over two small layouts, then events pushed into SDL's
 * queue as a user would cause them: hover, click (neighbours highlighted),
 * drag (pan), wheel (zoom), `m` (switch layout), `s` (save a PNG), `q`.
 * The screenshots are decoded and checked. Skipped when this SDL has no
 * offscreen driver.
 *
 * SDL's video drivers keep a few process-lifetime allocations that
 * LeakSanitizer would report at exit; they are suppressed for libSDL2 only
 * (see __lsan_default_suppressions below), so leaks of our own still fail.
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

#define SDL_MAIN_HANDLED
#include <SDL.h>

#include "br_plot.h"
#include "br_rng.h"

#include "stb_image_impl.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libSDL2\nleak:libdbus\n"; }

enum { N = 240, W = 480, H = 360, K = 10 };

static br_book books[N];
static char titles[N][40];
static float lay_a[2 * N], lay_b[2 * N];
static uint32_t near[N * K];

static void make_data(void)
{
    br_rng r;
    br_rng_seed(&r, 5);
    const char *genres[3] = {"fantasy", "mystery", "romance"};
    for (int i = 0; i < N; i++) {
        int g = i % 3;
        snprintf(titles[i], sizeof titles[i], "Title %d", i);
        books[i] = (br_book){.book_id = (uint32_t)i + 1, .title = titles[i], .authors = "A. Writer",
                             .year = 2000 + i % 17, .avg_rating = 4.0f, .genre = genres[g],
                             .ratings_count = (uint32_t)(N - i)};
        lay_a[2 * i] = (float)(br_rng_normal(&r) + 8 * g);
        lay_a[2 * i + 1] = (float)(br_rng_normal(&r) + 4 * (g == 1));
        lay_b[2 * i] = (float)br_rng_normal(&r);
        lay_b[2 * i + 1] = (float)br_rng_normal(&r);
    }
    /* neighbours: the next K books of the same genre */
    for (int i = 0; i < N; i++)
        for (int k = 0; k < K; k++)
            near[i * K + k] = (uint32_t)((i + 3 * (k + 1)) % N);
}

static void push_motion(int x, int y)
{
    SDL_Event e = {0};
    e.type = SDL_MOUSEMOTION;
    e.motion.x = x;
    e.motion.y = y;
    SDL_PushEvent(&e);
}

static void push_button(int down, int x, int y)
{
    SDL_Event e = {0};
    e.type = down ? SDL_MOUSEBUTTONDOWN : SDL_MOUSEBUTTONUP;
    e.button.button = SDL_BUTTON_LEFT;
    e.button.x = x;
    e.button.y = y;
    SDL_PushEvent(&e);
}

static void push_key(SDL_Keycode k)
{
    SDL_Event e = {0};
    e.type = SDL_KEYDOWN;
    e.key.keysym.sym = k;
    SDL_PushEvent(&e);
}

static void push_wheel(int y)
{
    SDL_Event e = {0};
    e.type = SDL_MOUSEWHEEL;
    e.wheel.y = y;
    SDL_PushEvent(&e);
}

/* Decodes a PNG; returns the share of non-white pixels, or -1. */
static double check_png(const char *path, int w, int h)
{
    int iw = 0, ih = 0, comp = 0;
    unsigned char *img = stbi_load(path, &iw, &ih, &comp, 3);
    if (!img)
        return -1;
    assert_int_equal(iw, w);
    assert_int_equal(ih, h);
    size_t ink = 0;
    for (int i = 0; i < iw * ih; i++)
        ink += !(img[3 * i] == 255 && img[3 * i + 1] == 255 && img[3 * i + 2] == 255);
    stbi_image_free(img);
    return (double)ink / (iw * ih);
}

static void point_pixel(const br_plot_window_state *s, const float *xy, int i, int *x, int *y)
{
    *x = (int)lround(s->view.ox + s->view.s * xy[2 * i]);
    *y = (int)lround(s->view.oy - s->view.s * xy[2 * i + 1]);
}

static void test_window_headless(void **state)
{
    (void)state;
    setenv("SDL_VIDEODRIVER", "offscreen", 1);
    setenv("SDL_AUDIODRIVER", "dummy", 1);
    /* SDL's software renderer: no EGL/GL driver gets loaded (and unloaded
     * with allocations LeakSanitizer could no longer attribute). */
    SDL_SetHint(SDL_HINT_RENDER_DRIVER, "software");
    SDL_SetHint(SDL_HINT_FRAMEBUFFER_ACCELERATION, "0");
    make_data();
    char save[] = "/tmp/test_viz_window_XXXXXX.png";
    int fd = mkstemps(save, 4);
    assert_true(fd >= 0);
    close(fd);
    unlink(save);
    br_plot_layout lays[2] = {{"t-SNE", lay_a, "t-SNE test", "sub"}, {"PCA", lay_b, "PCA test", "sub"}};
    br_plot_window_opts o = {0};
    o.w = W;
    o.h = H;
    o.books = books;
    o.n = N;
    o.layouts = lays;
    o.n_layouts = 2;
    o.color = BR_PLOT_COLOR_GENRE;
    o.n_labels = 5;
    o.near = near;
    o.n_near = K;
    o.save_path = save;
    o.hidden = 1;
    br_plot_window *w = NULL;
    br_diag d;
    br_diag_clear(&d);
    br_err e = br_plot_window_open(&o, &w, &d);
    if (e == BR_ERR_UNSUPPORTED) {
        fprintf(stderr, "skipping: %s\n", d.msg);
        skip();
    }
    assert_int_equal(e, BR_OK);
    assert_int_equal(br_plot_window_step(w, 0, &d), 1);

    /* A first screenshot: the right size, something drawn. */
    char shot[] = "/tmp/test_viz_shot_XXXXXX.png";
    fd = mkstemps(shot, 4);
    close(fd);
    assert_int_equal(br_plot_window_save(w, shot, &d), BR_OK);
    double ink0 = check_png(shot, W, H);
    assert_true(ink0 > 0.05 && ink0 < 0.9);

    br_plot_window_state s;
    br_plot_window_get_state(w, &s);
    assert_int_equal(s.layout, 0);
    assert_int_equal(s.selected, -1);

    /* Hover over book 7. */
    int px, py;
    point_pixel(&s, lay_a, 7, &px, &py);
    push_motion(px, py);
    assert_int_equal(br_plot_window_step(w, 0, &d), 1);
    br_plot_window_get_state(w, &s);
    assert_true(s.hover >= 0);
    assert_true(fabsf(lay_a[2 * s.hover] - lay_a[14]) < 0.2f);   /* 7 or a point on top of it */

    /* Click it: it and its 10 neighbours are highlighted. */
    long hovered = s.hover;
    push_button(1, px, py);
    push_button(0, px, py);
    assert_int_equal(br_plot_window_step(w, 0, &d), 1);
    br_plot_window_get_state(w, &s);
    assert_int_equal(s.selected, hovered);
    assert_int_equal(s.n_near, K);
    assert_int_equal(br_plot_window_save(w, shot, &d), BR_OK);
    assert_true(check_png(shot, W, H) > 0);

    /* Drag pans by the mouse movement, and is not a click. */
    double ox = s.view.ox, oy = s.view.oy;
    push_button(1, 100, 100);
    push_motion(130, 110);
    push_motion(160, 120);
    push_button(0, 160, 120);
    assert_int_equal(br_plot_window_step(w, 0, &d), 1);
    br_plot_window_get_state(w, &s);
    assert_true(fabs(s.view.ox - (ox + 60)) < 1e-9);
    assert_true(fabs(s.view.oy - (oy + 20)) < 1e-9);
    assert_int_equal(s.selected, hovered);

    /* The wheel zooms in about the cursor. */
    double sc = s.view.s;
    push_motion(200, 150);
    push_wheel(2);
    assert_int_equal(br_plot_window_step(w, 0, &d), 1);
    br_plot_window_get_state(w, &s);
    assert_true(fabs(s.view.s - sc * 1.44) < 1e-9 * sc);

    /* m switches to the other layout; s saves the view. */
    push_key(SDLK_m);
    push_key(SDLK_s);
    assert_int_equal(br_plot_window_step(w, 0, &d), 1);
    br_plot_window_get_state(w, &s);
    assert_int_equal(s.layout, 1);
    assert_int_equal(s.saves, 1);
    assert_int_equal(s.last_save_error, BR_OK);
    double ink1 = check_png(save, W, H);
    assert_true(ink1 > 0.02);

    /* q closes. */
    push_key(SDLK_q);
    assert_int_equal(br_plot_window_step(w, 0, &d), 0);
    br_plot_window_free(w);
    unlink(save);
    unlink(shot);
}

static void test_window_bad_options(void **state)
{
    (void)state;
    br_plot_window *w = (br_plot_window *)1;
    br_plot_window_opts o = {0};
    br_diag d;
    br_diag_clear(&d);
    assert_int_equal(br_plot_window_open(&o, &w, &d), BR_ERR_ARG);
    assert_null(w);
    br_plot_window_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_headless),
        cmocka_unit_test(test_window_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
