/* plot.c: the latency-over-time SVG. Two panels share the time axis: latency (p50, p99,
 * max of the requests intended in each slice) above, throughput (completions per second
 * in each slice) below. Self-contained: no scripts, no external fonts (the generic
 * sans-serif family), no stylesheets. */
#include <errno.h>
#include <math.h>
#include <stdio.h>

#include "load.h"

enum { WIDTH = 960, HEIGHT = 600, LEFT = 80, RIGHT = 30, TOP = 50, PANEL_H = 210, GAP = 70 };

struct panel {
  double y0;   /* top of the plot area, px */
  double ymax; /* the value at the top */
  const char *label;
};

/* A "nice" axis top at or above v: 1, 2 or 5 times a power of ten. */
static double nice_ceiling(double v)
{
  if (v <= 0)
    return 1;
  double p = pow(10, floor(log10(v)));
  for (double m = 1;; m = m == 1 ? 2 : m == 2 ? 5 : 10)
    if (m * p >= v)
      return m * p;
}

static double x_of(double t, double tmax)
{
  return LEFT + (WIDTH - LEFT - RIGHT) * (tmax > 0 ? t / tmax : 0);
}

static double y_of(const struct panel *p, double v)
{
  return p->y0 + PANEL_H * (1 - (v > p->ymax ? 1 : v / p->ymax));
}

static void axes(FILE *f, const struct panel *p, double tmax)
{
  fprintf(f, "<rect x='%d' y='%.0f' width='%d' height='%d' fill='none' stroke='#444'/>\n", LEFT,
          p->y0, WIDTH - LEFT - RIGHT, PANEL_H);
  for (int i = 0; i <= 5; i++) {
    double v = p->ymax * i / 5, y = y_of(p, v);
    fprintf(f,
            "<line x1='%d' y1='%.1f' x2='%d' y2='%.1f' stroke='#ddd'/>"
            "<text x='%d' y='%.1f' text-anchor='end'>%g</text>\n",
            LEFT, y, WIDTH - RIGHT, y, LEFT - 6, y + 4, v);
  }
  for (int i = 0; i <= 10; i++) {
    double t = tmax * i / 10, x = x_of(t, tmax);
    fprintf(f, "<text x='%.1f' y='%.0f' text-anchor='middle'>%.3g</text>\n", x,
            p->y0 + PANEL_H + 16, t);
  }
  fprintf(f,
          "<text transform='translate(18,%.0f) rotate(-90)' text-anchor='middle'>%s</text>\n",
          p->y0 + PANEL_H / 2.0, p->label);
  fprintf(f, "<text x='%d' y='%.0f' text-anchor='middle'>time (s)</text>\n",
          LEFT + (WIDTH - LEFT - RIGHT) / 2, p->y0 + PANEL_H + 34);
}

/* One line through the slices; value(i) < 0 skips slice i (nothing to plot there). */
static void line(FILE *f, const struct load_run *run, const struct panel *p, double tmax,
                 const char *color, double (*value)(const struct load_recorder *, int, void *),
                 void *arg)
{
  const struct load_recorder *r = &run->rec;
  double w = (double)r->slice_ns / 1e9;
  fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='1.5' points='", color);
  for (int i = 0; i < r->nslices; i++) {
    double v = value(r, i, arg);
    if (v >= 0)
      fprintf(f, "%.1f,%.1f ", x_of((i + 0.5) * w, tmax), y_of(p, v));
  }
  fprintf(f, "'/>\n");
}

static double slice_latency(const struct load_recorder *r, int i, void *q)
{
  const hist *h = &r->slice[i].lat;
  return h->total ? (double)hist_percentile(h, *(double *)q) / 1e6 : -1;
}

static double slice_rate(const struct load_recorder *r, int i, void *unused)
{
  (void)unused;
  return (double)r->slice[i].completed * 1e9 / (double)r->slice_ns;
}

static void legend(FILE *f, int x, int y, const char *color, const char *text)
{
  fprintf(f,
          "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='%s' stroke-width='3'/>"
          "<text x='%d' y='%d'>%s</text>\n",
          x, y - 4, x + 20, y - 4, color, x + 26, y, text);
}

int load_plot_svg(const struct load_run *run, const char *path)
{
  const struct load_recorder *r = &run->rec;
  FILE *f = fopen(path, "w");
  if (!f)
    return -errno;
  double tmax = (double)r->nslices * (double)r->slice_ns / 1e9, lat_max = 0, rate_max = 0;
  for (int i = 0; i < r->nslices; i++) {
    double q = 100;
    if (slice_latency(r, i, &q) > lat_max)
      lat_max = slice_latency(r, i, &q);
    if (slice_rate(r, i, NULL) > rate_max)
      rate_max = slice_rate(r, i, NULL);
  }
  struct panel lat = {TOP, nice_ceiling(lat_max), "latency (ms)"};
  struct panel rate = {TOP + PANEL_H + GAP, nice_ceiling(rate_max), "throughput (req/s)"};
  fprintf(f,
          "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' viewBox='0 0 %d %d' "
          "font-family='sans-serif' font-size='12'>\n"
          "<rect width='100%%' height='100%%' fill='white'/>\n"
          "<text x='%d' y='24' font-size='15'>weft-load: latency from intended send time, "
          "per %.0f ms</text>\n",
          WIDTH, HEIGHT, WIDTH, HEIGHT, LEFT, (double)r->slice_ns / 1e6);
  axes(f, &lat, tmax);
  axes(f, &rate, tmax);
  double p50 = 50, p99 = 99, pmax = 100;
  line(f, run, &lat, tmax, "#1f77b4", slice_latency, &p50);
  line(f, run, &lat, tmax, "#ff7f0e", slice_latency, &p99);
  line(f, run, &lat, tmax, "#d62728", slice_latency, &pmax);
  line(f, run, &rate, tmax, "#2ca02c", slice_rate, NULL);
  legend(f, WIDTH - 300, 24, "#1f77b4", "p50");
  legend(f, WIDTH - 230, 24, "#ff7f0e", "p99");
  legend(f, WIDTH - 160, 24, "#d62728", "max");
  legend(f, WIDTH - 300, (int)rate.y0 - 10, "#2ca02c", "completed per second");
  fprintf(f, "</svg>\n");
  return fclose(f) == 0 ? 0 : -EIO;
}
