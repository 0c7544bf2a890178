// Small SVG charts for run reports: line charts (with optional error bars) and overlaid histograms.
// Self-contained SVG text, readable in any browser and in GitHub's markdown.
#pragma once
#include <string>
#include <vector>

namespace rlrf {

struct PlotSeries {
  std::string label;
  std::vector<double> x, y;
  std::vector<double> y_err;  // optional: half-width of an error bar per point
};

struct LineChart {
  std::string title, x_label, y_label;
  std::vector<PlotSeries> series;
  std::vector<std::string> x_tick_labels;  // optional: label per integer x (e.g. "KAR", "round 1")
  int width = 640, height = 400;
};

struct Histogram {
  std::string title, x_label;
  std::vector<std::string> labels;            // one per sample set
  std::vector<std::vector<double>> samples;   // overlaid, same bins
  int bins = 30;
  int width = 640, height = 400;
};

std::string render_svg(const LineChart& chart);
std::string render_svg(const Histogram& hist);

// "Nice" axis ticks covering [lo, hi]: about `target` round numbers (1, 2, 5 x 10^k steps).
std::vector<double> nice_ticks(double lo, double hi, int target = 5);

}  // namespace rlrf
