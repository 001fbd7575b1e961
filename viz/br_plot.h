/*
 * br_plot.h - drawing a 2-D layout of books: a small RGBA software canvas
 * (antialiased discs and boxes, text through stb_easy_font), the scatter
 * plot itself (points coloured by genre, rating or year, a legend, a title
 * line, the titles of the most-read books placed so they do not overlap),
 * PNG output through stb_image_write, and the interactive SDL2 window that
 * draws with the same renderer (br_plot_window_*).
 *
 * Library code: never prints or exits; failures return a br_err and fill the
 * br_diag.
 */
#ifndef BR_PLOT_H
#define BR_PLOT_H

#include <stddef.h>
#include <stdint.h>
#include "br_books.h"
#include "br_error.h"

/* ---- canvas ---------------------------------------------------------------- */

typedef struct br_plot_canvas {
    int w, h;
    uint8_t *px;   /* w * h * 4 bytes: R, G, B, A (A always 255) */
} br_plot_canvas;

/* BR_ERR_ARG for sizes outside 16..16384, BR_ERR_NOMEM. Starts white. */
br_err br_plot_canvas_create(int w, int h, br_plot_canvas **out, br_diag *diag);
void br_plot_canvas_free(br_plot_canvas *c);   /* NULL ok */

void br_plot_fill(br_plot_canvas *c, uint32_t rgb);
/* Antialiased disc of radius r (pixels) centred at (x, y), colour 0xRRGGBB
 * blended with opacity alpha in [0, 1]. */
void br_plot_disc(br_plot_canvas *c, float x, float y, float r, uint32_t rgb, float alpha);
/* Box [x0, x1) x [y0, y1) with fractional (antialiased) edges. */
void br_plot_box(br_plot_canvas *c, float x0, float y0, float x1, float y1, uint32_t rgb,
                 float alpha);
/* Text (UTF-8; accented Latin letters drawn as their base letter, other
 * non-ASCII as '?') with its top-left at (x, y), stb_easy_font scaled by
 * `scale`. Returns the width drawn. text_size gives the box without drawing. */
float br_plot_text(br_plot_canvas *c, float x, float y, const char *text, float scale,
                   uint32_t rgb);
void br_plot_text_size(const char *text, float scale, float *w, float *h);

/* Writes the canvas as an RGB PNG, atomically (temp file + rename).
 * BR_ERR_IO with the reason when the file cannot be written. */
br_err br_plot_save_png(const br_plot_canvas *c, const char *path, br_diag *diag);

/* ---- the scatter plot ------------------------------------------------------- */

typedef enum br_plot_color {
    BR_PLOT_COLOR_GENRE = 0,   /* categorical: the book's genre from its tags */
    BR_PLOT_COLOR_RATING,      /* average rating, a sequential colour map */
    BR_PLOT_COLOR_YEAR,        /* publication year, a sequential colour map */
} br_plot_color;

/* What to draw. books[i] describes point i (xy[2i], xy[2i+1]). */
typedef struct br_plot_data {
    size_t n;
    const float *xy;           /* n x 2 layout coordinates */
    const br_book *books;      /* n records: title, authors, year, avg_rating, genre, ratings_count */
    br_plot_color color;
    const char *title;         /* the title line (may be NULL) */
    const char *subtitle;      /* a smaller second line (may be NULL) */
    size_t n_labels;           /* titles of this many most-read books, at most (0: none) */
} br_plot_data;

/* Mapping from layout to pixels: px = ox + s * x, py = oy - s * y (y up). */
typedef struct br_plot_view {
    double ox, oy, s;
} br_plot_view;

/* The view that fits the layout (its 0.1..99.9% quantile box, with a
 * margin) into the plot area of a w x h canvas, equal aspect. */
br_plot_view br_plot_fit_view(const br_plot_data *d, int w, int h);

/* Extra state the window draws over the plot. */
typedef struct br_plot_overlay {
    long hover;                /* point under the cursor (tooltip), -1 none */
    long selected;             /* clicked point, -1 none */
    const uint32_t *near;      /* its nearest neighbours (point indices) */
    size_t n_near;
    const char *status;        /* a help / status line at the bottom, NULL none */
} br_plot_overlay;

/* Renders the whole plot onto c. ov may be NULL. BR_ERR_ARG on bad input,
 * BR_ERR_NOMEM. */
br_err br_plot_render(br_plot_canvas *c, const br_plot_data *d, const br_plot_view *v,
                      const br_plot_overlay *ov, br_diag *diag);

/* Index of the point nearest to pixel (px, py) within max_px pixels, or -1. */
long br_plot_pick(const br_plot_data *d, const br_plot_view *v, double px, double py,
                  double max_px);

/* Index of genre name g in br_books_genre_name's list, or -1 ("" or unknown). */
int br_plot_genre_index(const char *g);
/* The categorical colour of genre index i (-1: the "no genre" grey). */
uint32_t br_plot_genre_color(int i);

/* ---- the SDL2 window -------------------------------------------------------- */

typedef struct br_plot_window br_plot_window;

/* A layout the window can show: up to two (PCA and t-SNE; `m` switches). */
typedef struct br_plot_layout {
    const char *name;          /* "PCA", "t-SNE" */
    const float *xy;           /* n x 2 */
    const char *title, *subtitle;
} br_plot_layout;

typedef struct br_plot_window_opts {
    int w, h;                  /* window size in pixels */
    const br_book *books;      /* n records */
    size_t n;
    const br_plot_layout *layouts;
    size_t n_layouts;          /* 1 or 2 */
    br_plot_color color;
    size_t n_labels;
    /* Nearest neighbours in embedding space: n_near per point, row-major
     * (point i's list at near + i * n_near), nearest first. */
    const uint32_t *near;
    size_t n_near;
    const char *save_path;     /* where `s` writes the view ("bookrec-viz.png" if NULL) */
    int hidden;                /* 1: create the window hidden (tests) */
} br_plot_window_opts;

/* Opens the window (SDL_Init of the video subsystem included). The options
 * and the arrays they point to must outlive the window. BR_ERR_UNSUPPORTED
 * with SDL's message when no display can be opened. */
br_err br_plot_window_open(const br_plot_window_opts *o, br_plot_window **out, br_diag *diag);

/* Handles every pending event and redraws if needed; waits up to wait_ms
 * for the first event (0: do not wait). Returns 1 while the window is open,
 * 0 once the user closed it (Escape, q, or the close button). */
int br_plot_window_step(br_plot_window *w, int wait_ms, br_diag *diag);

/* Runs the event loop until the window is closed. */
br_err br_plot_window_run(br_plot_window *w, br_diag *diag);

/* Saves what the window shows as a PNG. */
br_err br_plot_window_save(br_plot_window *w, const char *path, br_diag *diag);

/* State for tests and for the program's messages. */
typedef struct br_plot_window_state {
    size_t layout;             /* index into layouts */
    long hover, selected;
    size_t n_near;             /* neighbours highlighted (0 when none selected) */
    br_plot_view view;
    int saves;                 /* PNGs written by `s` so far */
    br_err last_save_error;    /* BR_OK, or why the last `s` failed */
} br_plot_window_state;
void br_plot_window_get_state(const br_plot_window *w, br_plot_window_state *s);

/* Closes the window and quits SDL's video subsystem. NULL ok. */
void br_plot_window_free(br_plot_window *w);

#endif
