// Small SVG charts for run reports: line charts (with optional error bars) and overlaid histograms.
#include "pipeline/svg_plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace rlrf {
namespace {

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string tick_text(double v, double step) {
  int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  return fmt::format("{:.{}f}", v, std::min(decimals, 6));
}

// The plotting frame shared by both chart kinds: margins, scales, axes, title.
struct Frame {
  double left = 70, right = 20, top = 40, bottom = 55;
  double width, height, x_lo, x_hi, y_lo, y_hi;
  double px(double x) const { return left + (x - x_lo) / (x_hi - x_lo) * (width - left - right); }
  double py(double y) const { return height - bottom - (y - y_lo) / (y_hi - y_lo) * (height - top - bottom); }
};

void expand_if_flat(double& lo, double& hi) {
  if (!(hi > lo)) {
    double pad = std::abs(lo) > 0 ? std::abs(lo) * 0.05 : 1.0;
    lo -= pad;
    hi += pad;
  }
}

std::string axes(const Frame& f, const std::string& title, const std::string& xl, const std::string& yl,
                 const std::vector<double>& xt, const std::vector<std::string>& xt_labels, const std::vector<double>& yt) {
  std::string s;
  s += fmt::format("<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
                   f.width / 2, escape(title));
  double x0 = f.left, x1 = f.width - f.right, y0 = f.height - f.bottom, y1 = f.top;
  s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", x0, y1, x1 - x0, y0 - y1);
  double ystep = yt.size() > 1 ? yt[1] - yt[0] : 1;
  for (double v : yt) {
    double y = f.py(v);
    s += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", x0, y, x1, y);
    s += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\" font-size=\"11\">{}</text>\n", x0 - 5, y + 4, tick_text(v, ystep));
  }
  double xstep = xt.size() > 1 ? xt[1] - xt[0] : 1;
  for (size_t i = 0; i < xt.size(); ++i) {
    double x = f.px(xt[i]);
    std::string label = i < xt_labels.size() ? xt_labels[i] : tick_text(xt[i], xstep);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{}\" x2=\"{:.1f}\" y2=\"{}\" stroke=\"#444\"/>\n", x, y0, x, y0 + 4);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\">{}</text>\n", x, y0 + 17, escape(label));
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\">{}</text>\n", (x0 + x1) / 2, f.height - 12, escape(xl));
  s += fmt::format("<text x=\"16\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 16 {})\">{}</text>\n",
                   (y0 + y1) / 2, (y0 + y1) / 2, escape(yl));
  return s;
}

std::string legend(const Frame& f, const std::vector<std::string>& labels) {
  std::string s;
  double y = f.top + 8;
  for (size_t i = 0; i < labels.size(); ++i, y += 16) {
    double x = f.width - f.right - 150;
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"3\" fill=\"{}\"/>\n", x, y, kColors[i % 8]);
    s += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>\n", x + 16, y + 5, escape(labels[i]));
  }
  return s;
}

std::string open_svg(int w, int h) {
  return fmt::format("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" "
                     "font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n", w, h, w, h);
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  expand_if_flat(lo, hi);
  double raw = (hi - lo) / std::max(1, target);
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * mag;
    if (raw <= step) break;
  }
  std::vector<double> ticks;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) ticks.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  return ticks;
}

std::string render_svg(const LineChart& c) {
  double inf = std::numeric_limits<double>::infinity();
  double x_lo = inf, x_hi = -inf, y_lo = inf, y_hi = -inf;
  for (const PlotSeries& s : c.series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      double e = i < s.y_err.size() ? s.y_err[i] : 0;
      x_lo = std::min(x_lo, s.x[i]); x_hi = std::max(x_hi, s.x[i]);
      y_lo = std::min(y_lo, s.y[i] - e); y_hi = std::max(y_hi, s.y[i] + e);
    }
  }
  if (!std::isfinite(x_lo)) { x_lo = 0; x_hi = 1; y_lo = 0; y_hi = 1; }
  expand_if_flat(x_lo, x_hi);
  expand_if_flat(y_lo, y_hi);
  double pad = (y_hi - y_lo) * 0.08;
  y_lo -= pad; y_hi += pad;
  std::vector<double> yt = nice_ticks(y_lo, y_hi);
  y_lo = std::min(y_lo, yt.front()); y_hi = std::max(y_hi, yt.back());
  double xpad = (x_hi - x_lo) * 0.05;
  Frame f{70, 20, 40, 55, double(c.width), double(c.height), x_lo - xpad, x_hi + xpad, y_lo, y_hi};
  std::vector<double> xt;
  if (!c.x_tick_labels.empty()) {
    for (size_t i = 0; i < c.x_tick_labels.size(); ++i) xt.push_back(double(i));
  } else {
    xt = nice_ticks(x_lo, x_hi, 6);
  }
  std::string s = open_svg(c.width, c.height);
  s += axes(f, c.title, c.x_label, c.y_label, xt, c.x_tick_labels, yt);
  std::vector<std::string> labels;
  for (size_t k = 0; k < c.series.size(); ++k) {
    const PlotSeries& ps = c.series[k];
    const char* color = kColors[k % 8];
    labels.push_back(ps.label);
    std::string pts;
    for (size_t i = 0; i < ps.x.size() && i < ps.y.size(); ++i) {
      if (!std::isfinite(ps.y[i])) continue;
      pts += fmt::format("{:.1f},{:.1f} ", f.px(ps.x[i]), f.py(ps.y[i]));
      if (i < ps.y_err.size() && ps.y_err[i] > 0) {
        s += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"{3}\"/>\n", f.px(ps.x[i]),
                         f.py(ps.y[i] - ps.y_err[i]), f.py(ps.y[i] + ps.y_err[i]), color);
      }
      s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", f.px(ps.x[i]), f.py(ps.y[i]), color);
    }
    s += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n", pts, color);
  }
  s += legend(f, labels);
  s += "</svg>\n";
  return s;
}

std::string render_svg(const Histogram& h) {
  double inf = std::numeric_limits<double>::infinity();
  double lo = inf, hi = -inf;
  for (const auto& set : h.samples)
    for (double v : set)
      if (std::isfinite(v)) { lo = std::min(lo, v); hi = std::max(hi, v); }
  if (!std::isfinite(lo)) { lo = 0; hi = 1; }
  expand_if_flat(lo, hi);
  int bins = std::max(1, h.bins);
  double bw = (hi - lo) / bins;
  std::vector<std::vector<double>> density(h.samples.size(), std::vector<double>(bins, 0.0));
  double top = 0;
  for (size_t k = 0; k < h.samples.size(); ++k) {
    double n = 0;
    for (double v : h.samples[k]) {
      if (!std::isfinite(v)) continue;
      int b = std::min(bins - 1, std::max(0, int((v - lo) / bw)));
      density[k][b] += 1;
      n += 1;
    }
    for (double& d : density[k]) { d = n > 0 ? d / n : 0; top = std::max(top, d); }
  }
  if (top <= 0) top = 1;
  std::vector<double> yt = nice_ticks(0, top * 1.05);
  Frame f{70, 20, 40, 55, double(h.width), double(h.height), lo, hi, 0, std::max(top * 1.05, yt.back())};
  std::string s = open_svg(h.width, h.height);
  s += axes(f, h.title, h.x_label, "share of samples", nice_ticks(lo, hi, 6), {}, yt);
  for (size_t k = 0; k < density.size(); ++k) {
    const char* color = kColors[k % 8];
    for (int b = 0; b < bins; ++b) {
      if (density[k][b] <= 0) continue;
      double x0 = f.px(lo + b * bw), x1 = f.px(lo + (b + 1) * bw), y = f.py(density[k][b]);
      s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\" fill-opacity=\"0.35\" stroke=\"{}\"/>\n",
                       x0, y, std::max(0.5, x1 - x0), f.py(0) - y, color, color);
    }
  }
  s += legend(f, h.labels);
  s += "</svg>\n";
  return s;
}

}  // namespace rlrf
