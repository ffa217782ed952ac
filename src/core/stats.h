#pragma once
// Small statistics used by reports: rank correlation and error summaries.
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace qnas {

// Kendall's tau-b (ties in either variable handled); O(n^2), fine for the few hundred points reports use.
double kendall_tau(const std::vector<double>& x, const std::vector<double>& y);

// A scatter plot as a standalone SVG file (no plotting library needed to look at a report).
struct ScatterSeries {
  std::string label;
  std::vector<std::pair<double, double>> points;
};
std::string scatter_svg(const std::string& title, const std::string& x_label, const std::string& y_label,
                        const std::vector<ScatterSeries>& series, bool diagonal = false);

}  // namespace qnas
