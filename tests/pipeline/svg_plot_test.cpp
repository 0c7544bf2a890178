// Tests of the report charts: tick choice and well-formed SVG with every series drawn.
#include <gtest/gtest.h>

#include "pipeline/svg_plot.h"

using namespace rlrf;

TEST(SvgPlot, NiceTicksAreRoundAndCoverTheRange) {
  auto unit = nice_ticks(0, 1, 5);
  ASSERT_EQ(unit.size(), 6u);
  for (size_t i = 0; i < unit.size(); ++i) EXPECT_NEAR(unit[i], 0.2 * double(i), 1e-12);
  auto t = nice_ticks(0.31, 0.47, 5);
  ASSERT_GE(t.size(), 3u);
  EXPECT_NEAR(t[1] - t[0], 0.05, 1e-12);
  EXPECT_GE(t.front(), 0.31 - 1e-12);
  EXPECT_LE(t.back(), 0.47 + 1e-12);
  EXPECT_FALSE(nice_ticks(2, 2).empty());  // a flat range still gets ticks
}

TEST(SvgPlot, LineChartHasOnePolylinePerSeriesAndEscapesText) {
  LineChart c;
  c.title = "MAP@5 <per round>";
  c.series = {{"DLCM", {0, 1, 2}, {0.4, 0.45, 0.46}, {0.01, 0.02, 0.01}}, {"PRM", {0, 1, 2}, {0.41, 0.43, 0.44}, {}}};
  c.x_tick_labels = {"KAR", "round 1", "round 2"};
  std::string svg = render_svg(c);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  size_t lines = 0;
  for (size_t p = svg.find("<polyline"); p != std::string::npos; p = svg.find("<polyline", p + 1)) ++lines;
  EXPECT_EQ(lines, 2u);
  EXPECT_NE(svg.find("&lt;per round&gt;"), std::string::npos);
  EXPECT_NE(svg.find("round 2"), std::string::npos);
}

TEST(SvgPlot, HistogramDrawsBarsForEachSet) {
  Histogram h;
  h.labels = {"chosen", "rejected"};
  h.samples = {{0.5, 0.6, 0.7}, {0.1, 0.2}};
  h.bins = 4;
  std::string svg = render_svg(h);
  size_t bars = 0;
  for (size_t p = svg.find("fill-opacity"); p != std::string::npos; p = svg.find("fill-opacity", p + 1)) ++bars;
  EXPECT_GE(bars, 3u);
}
