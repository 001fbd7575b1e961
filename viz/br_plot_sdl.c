/*
 * br_plot_sdl.c - the interactive map: an SDL2 window showing the same
 * software-rendered plot as the PNG (br_plot_render into a canvas, uploaded
 * as a streaming texture). Drag pans, the wheel zooms about the cursor,
 * hovering shows a book's title, authors, year and rating, a click rings
 * the book and its nearest neighbours in embedding space, `m` switches
 * between the layouts (PCA / t-SNE), `c` cycles the colouring, `r` resets
 * the view, `s` saves the view as a PNG, `q` or Escape closes.
 *
 * Works with any SDL video driver, including "offscreen" (tests run it
 * headless that way), falling back to SDL's software renderer.
 */
#include "br_plot.h"

#define SDL_MAIN_HANDLED
#include <SDL.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct br_plot_window {
    br_plot_window_opts o;
    SDL_Window *win;
    SDL_Renderer *ren;
    SDL_Texture *tex;
    br_plot_canvas *canvas;
    size_t layout;
    br_plot_view view[2];
    br_plot_color color;
    long hover, selected;
    int dragging, moved, drag_x, drag_y, mouse_x, mouse_y;
    int dirty, open, saves;
    br_err last_save_error;
    char status[256];
};

static br_plot_data data_of(const br_plot_window *w)
{
    const br_plot_layout *l = &w->o.layouts[w->layout];
    br_plot_data d = {w->o.n, l->xy, w->o.books, w->color, l->title, l->subtitle, w->o.n_labels};
    return d;
}

static void reset_views(br_plot_window *w)
{
    size_t saved = w->layout;
    for (size_t i = 0; i < w->o.n_layouts; i++) {
        w->layout = i;
        br_plot_data d = data_of(w);
        w->view[i] = br_plot_fit_view(&d, w->canvas->w, w->canvas->h);
    }
    w->layout = saved;
}

static br_err make_surface(br_plot_window *w, int width, int height, br_diag *diag)
{
    br_plot_canvas *c = NULL;
    br_err e = br_plot_canvas_create(width, height, &c, diag);
    if (e)
        return e;
    SDL_Texture *t = SDL_CreateTexture(w->ren, SDL_PIXELFORMAT_RGBA32, SDL_TEXTUREACCESS_STREAMING,
                                       width, height);
    if (!t) {
        br_plot_canvas_free(c);
        return br_fail(diag, BR_ERR_UNSUPPORTED, "SDL_CreateTexture: %s", SDL_GetError());
    }
    if (w->tex)
        SDL_DestroyTexture(w->tex);
    br_plot_canvas_free(w->canvas);
    w->tex = t;
    w->canvas = c;
    return BR_OK;
}

br_err br_plot_window_open(const br_plot_window_opts *o, br_plot_window **out, br_diag *diag)
{
    if (!out)
        return br_fail(diag, BR_ERR_ARG, "window: no output handle");
    *out = NULL;
    if (!o || !o->books || !o->layouts || o->n_layouts < 1 || o->n_layouts > 2 || o->n == 0 ||
        (o->n_near && !o->near))
        return br_fail(diag, BR_ERR_ARG, "window: bad options");
    for (size_t i = 0; i < o->n_layouts; i++)
        if (!o->layouts[i].xy)
            return br_fail(diag, BR_ERR_ARG, "window: layout %zu has no points", i);
    br_plot_window *w = calloc(1, sizeof *w);
    if (!w)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    w->o = *o;
    w->color = o->color;
    w->hover = w->selected = -1;
    SDL_SetMainReady();
    if (SDL_InitSubSystem(SDL_INIT_VIDEO) != 0) {
        br_err e = br_fail(diag, BR_ERR_UNSUPPORTED, "cannot open a window: %s", SDL_GetError());
        free(w);
        return e;
    }
    int width = o->w >= 16 ? o->w : 1200, height = o->h >= 16 ? o->h : 900;
    Uint32 flags = SDL_WINDOW_RESIZABLE | (o->hidden ? SDL_WINDOW_HIDDEN : SDL_WINDOW_SHOWN);
    w->win = SDL_CreateWindow("bookrec-viz", SDL_WINDOWPOS_CENTERED, SDL_WINDOWPOS_CENTERED,
                              width, height, flags);
    br_err e = BR_OK;
    if (!w->win) {
        e = br_fail(diag, BR_ERR_UNSUPPORTED, "cannot open a window: %s", SDL_GetError());
        goto fail;
    }
    w->ren = SDL_CreateRenderer(w->win, -1, 0);
    if (!w->ren)
        w->ren = SDL_CreateRenderer(w->win, -1, SDL_RENDERER_SOFTWARE);
    if (!w->ren) {
        e = br_fail(diag, BR_ERR_UNSUPPORTED, "cannot create a renderer: %s", SDL_GetError());
        goto fail;
    }
    if ((e = make_surface(w, width, height, diag)) != BR_OK)
        goto fail;
    reset_views(w);
    w->open = 1;
    w->dirty = 1;
    *out = w;
    return BR_OK;
fail:
    br_plot_window_free(w);
    return e;
}

void br_plot_window_free(br_plot_window *w)
{
    if (!w)
        return;
    if (w->tex)
        SDL_DestroyTexture(w->tex);
    if (w->ren)
        SDL_DestroyRenderer(w->ren);
    if (w->win)
        SDL_DestroyWindow(w->win);
    br_plot_canvas_free(w->canvas);
    SDL_QuitSubSystem(SDL_INIT_VIDEO);
    SDL_Quit();
    free(w);
}

static br_err redraw(br_plot_window *w, br_diag *diag)
{
    br_plot_data d = data_of(w);
    const char *names[] = {"genre", "rating", "year"};
    snprintf(w->status, sizeof w->status,
             "%s  |  drag: pan  wheel: zoom  click: 10 nearest  m: %s  c: colour (%s)  r: reset  "
             "s: save  q: quit",
             w->o.layouts[w->layout].name,
             w->o.n_layouts > 1 ? w->o.layouts[1 - w->layout].name : "-", names[w->color]);
    br_plot_overlay ov = {w->hover, w->selected, NULL, 0, w->status};
    if (w->selected >= 0 && w->o.n_near) {
        ov.near = w->o.near + (size_t)w->selected * w->o.n_near;
        ov.n_near = w->o.n_near;
    }
    br_err e = br_plot_render(w->canvas, &d, &w->view[w->layout], &ov, diag);
    if (e)
        return e;
    SDL_UpdateTexture(w->tex, NULL, w->canvas->px, w->canvas->w * 4);
    SDL_RenderClear(w->ren);
    SDL_RenderCopy(w->ren, w->tex, NULL, NULL);
    SDL_RenderPresent(w->ren);
    w->dirty = 0;
    return BR_OK;
}

br_err br_plot_window_save(br_plot_window *w, const char *path, br_diag *diag)
{
    if (!w || !path)
        return br_fail(diag, BR_ERR_ARG, "window save: bad arguments");
    if (w->dirty) {
        br_err e = redraw(w, diag);
        if (e)
            return e;
    }
    return br_plot_save_png(w->canvas, path, diag);
}

static void handle(br_plot_window *w, const SDL_Event *ev)
{
    br_plot_view *v = &w->view[w->layout];
    switch (ev->type) {
    case SDL_QUIT:
        w->open = 0;
        break;
    case SDL_WINDOWEVENT:
        if (ev->window.event == SDL_WINDOWEVENT_CLOSE)
            w->open = 0;
        else if (ev->window.event == SDL_WINDOWEVENT_SIZE_CHANGED) {
            int nw = ev->window.data1, nh = ev->window.data2;
            if (nw >= 16 && nh >= 16 && (nw != w->canvas->w || nh != w->canvas->h) &&
                make_surface(w, nw, nh, NULL) == BR_OK)
                reset_views(w);
        }
        w->dirty = 1;
        break;
    case SDL_KEYDOWN:
        switch (ev->key.keysym.sym) {
        case SDLK_ESCAPE:
        case SDLK_q:
            w->open = 0;
            break;
        case SDLK_m:
        case SDLK_TAB:
            if (w->o.n_layouts > 1)
                w->layout = 1 - w->layout;
            w->hover = -1;
            w->dirty = 1;
            break;
        case SDLK_c:
            w->color = (br_plot_color)((w->color + 1) % 3);
            w->dirty = 1;
            break;
        case SDLK_r:
            reset_views(w);
            w->selected = -1;
            w->dirty = 1;
            break;
        case SDLK_s: {
            br_diag d;
            br_diag_clear(&d);
            const char *path = w->o.save_path ? w->o.save_path : "bookrec-viz.png";
            w->last_save_error = br_plot_window_save(w, path, &d);
            if (!w->last_save_error)
                w->saves++;
            char t[300];
            snprintf(t, sizeof t, "bookrec-viz - %s %s", w->last_save_error ? "could not save" : "saved",
                     path);
            SDL_SetWindowTitle(w->win, t);
            break;
        }
        default:
            break;
        }
        break;
    case SDL_MOUSEBUTTONDOWN:
        if (ev->button.button == SDL_BUTTON_LEFT) {
            w->dragging = 1;
            w->moved = 0;
            w->drag_x = ev->button.x;
            w->drag_y = ev->button.y;
        }
        break;
    case SDL_MOUSEBUTTONUP:
        if (ev->button.button == SDL_BUTTON_LEFT) {
            if (w->dragging && !w->moved) {
                br_plot_data d = data_of(w);
                w->selected = br_plot_pick(&d, v, ev->button.x, ev->button.y, 10);
                w->dirty = 1;
            }
            w->dragging = 0;
        }
        break;
    case SDL_MOUSEMOTION:
        w->mouse_x = ev->motion.x;
        w->mouse_y = ev->motion.y;
        if (w->dragging) {
            int dx = ev->motion.x - w->drag_x, dy = ev->motion.y - w->drag_y;
            if (abs(dx) + abs(dy) > 3 || w->moved) {
                w->moved = 1;
                v->ox += dx;
                v->oy += dy;
                w->drag_x = ev->motion.x;
                w->drag_y = ev->motion.y;
                w->dirty = 1;
            }
        } else {
            br_plot_data d = data_of(w);
            long h = br_plot_pick(&d, v, ev->motion.x, ev->motion.y, 6);
            if (h != w->hover) {
                w->hover = h;
                w->dirty = 1;
            }
        }
        break;
    case SDL_MOUSEWHEEL: {
        double f = pow(1.2, ev->wheel.y);
        double mx = w->mouse_x, my = w->mouse_y;
        v->ox = mx - (mx - v->ox) * f;
        v->oy = my - (my - v->oy) * f;
        v->s *= f;
        w->dirty = 1;
        break;
    }
    default:
        break;
    }
}

int br_plot_window_step(br_plot_window *w, int wait_ms, br_diag *diag)
{
    if (!w || !w->open)
        return 0;
    SDL_Event ev;
    int got = wait_ms > 0 ? SDL_WaitEventTimeout(&ev, wait_ms) : SDL_PollEvent(&ev);
    while (got) {
        handle(w, &ev);
        got = SDL_PollEvent(&ev);
    }
    if (w->open && w->dirty && redraw(w, diag) != BR_OK)
        return 0;
    return w->open;
}

br_err br_plot_window_run(br_plot_window *w, br_diag *diag)
{
    if (!w)
        return br_fail(diag, BR_ERR_ARG, "window: no handle");
    br_diag_clear(diag);
    while (br_plot_window_step(w, 100, diag))
        ;
    if (diag && diag->msg[0])
        return BR_ERR_NOMEM;
    return BR_OK;
}

void br_plot_window_get_state(const br_plot_window *w, br_plot_window_state *s)
{
    memset(s, 0, sizeof *s);
    if (!w)
        return;
    s->layout = w->layout;
    s->hover = w->hover;
    s->selected = w->selected;
    s->n_near = w->selected >= 0 ? w->o.n_near : 0;
    s->view = w->view[w->layout];
    s->saves = w->saves;
    s->last_save_error = w->last_save_error;
}
