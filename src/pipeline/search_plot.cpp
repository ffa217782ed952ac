#include "pipeline/search_plot.h"

#include <fmt/format.h>

#include <algorithm>

namespace qnas::pipeline {
namespace {

struct Frame {
  double width = 720, height = 480, left = 70, right = 170, top = 40, bottom = 60;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  double px(double x) const { return left + (x - x0) / (x1 - x0) * (width - left - right); }
  double py(double y) const { return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom); }
};

Frame frame_of(const FrontPlot& p) {
  Frame f;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  auto extend = [&](double x, double y) {
    x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
  };
  for (const auto* list : {&p.evaluated, &p.front, &p.baseline_evaluated}) {
    for (const auto& c : *list) extend(c.latency_ms, 100 * c.accuracy);
  }
  for (double l : p.limits) x1 = std::max(x1, l);
  if (x0 > x1) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  const double padx = (x1 - x0) * 0.05 + 1e-9, pady = (y1 - y0) * 0.05 + 1e-9;
  f.x0 = x0 - padx, f.x1 = x1 + padx, f.y0 = y0 - pady, f.y1 = y1 + pady;
  return f;
}

std::string axes(const Frame& f, const FrontPlot& p) {
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n"
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n",
      f.width, f.height, (f.left + f.width - f.right) / 2, p.title, f.left, f.top, f.width - f.left - f.right,
      f.height - f.top - f.bottom);
  for (int i = 0; i <= 4; ++i) {
    const double xv = f.x0 + (f.x1 - f.x0) * i / 4, yv = f.y0 + (f.y1 - f.y0) * i / 4;
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:.3g}</text>\n", f.px(xv),
                       f.height - f.bottom + 16, xv);
    svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.3g}</text>\n", f.left - 6,
                       f.py(yv) + 4, yv);
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                     (f.left + f.width - f.right) / 2, f.height - 18, p.x_label);
  svg += fmt::format(
      "<text x=\"16\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {0})\">{1}</text>\n",
      (f.top + f.height - f.bottom) / 2, p.y_label);
  return svg;
}

std::string legend(const Frame& f, int row, const std::string& color, const std::string& label) {
  const double x = f.width - f.right + 12, y = f.top + 12 + 18 * row;
  return fmt::format(
      "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"{}\"/><text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n",
      x, y, color, x + 10, y + 4, label);
}

}  // namespace

std::string front_svg(const FrontPlot& p) {
  const Frame f = frame_of(p);
  std::string svg = axes(f, p);
  for (double l : p.limits) {
    svg += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#555\" stroke-dasharray=\"5 "
        "4\"/>\n"
        "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\" fill=\"#555\">{4:.3g} ms</text>\n",
        f.px(l), f.top, f.height - f.bottom, f.top - 4, l);
  }
  for (const auto& c : p.baseline_evaluated) {
    svg +=
        fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"2\" fill=\"#ff7f0e\" fill-opacity=\"0.25\"/>\n",
                    f.px(c.latency_ms), f.py(100 * c.accuracy));
  }
  for (const auto& c : p.evaluated) {
    svg +=
        fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"2\" fill=\"#1f77b4\" fill-opacity=\"0.25\"/>\n",
                    f.px(c.latency_ms), f.py(100 * c.accuracy));
  }
  std::string line;
  for (const auto& c : p.front)
    line += fmt::format("{:.1f},{:.1f} ", f.px(c.latency_ms), f.py(100 * c.accuracy));
  svg +=
      fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\"/>\n", line);
  for (const auto& c : p.front) {
    svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"#1f77b4\"/>\n",
                       f.px(c.latency_ms), f.py(100 * c.accuracy));
  }
  for (const auto& b : p.baseline_best) {
    if (!b.found) continue;
    const double x = f.px(b.best.latency_ms), y = f.py(100 * b.best.accuracy);
    svg += fmt::format(
        "<path d=\"M{0:.1f} {1:.1f} l8 8 M{2:.1f} {1:.1f} l-8 8\" stroke=\"#d62728\" stroke-width=\"2\"/>\n",
        x - 4, y - 4, x + 4);
  }
  svg += legend(f, 0, "#1f77b4", p.algorithm + " front");
  svg += legend(f, 1, "#8fb8dc", p.algorithm + " evaluated");
  if (!p.baseline_evaluated.empty()) svg += legend(f, 2, "#ffbf86", p.baseline_label);
  if (!p.baseline_best.empty()) svg += legend(f, 3, "#d62728", "random: best per limit");
  return svg + "</svg>\n";
}

}  // namespace qnas::pipeline
