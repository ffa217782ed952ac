#include "cli/format.h"

#include <algorithm>

#include <fmt/format.h>

namespace qnas::cli {

std::string Table::render() const {
  std::vector<size_t> widths(header_.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c)
      widths[c] = std::max(widths[c], row[c].size());
  };
  measure(header_);
  for (const auto& row : rows_) measure(row);
  auto line = [&](const std::vector<std::string>& row) {
    std::string out;
    for (size_t c = 0; c < widths.size(); ++c) {
      const std::string cell = c < row.size() ? row[c] : "";
      out += c == 0 ? fmt::format("{:<{}}", cell, widths[c]) : fmt::format("  {:>{}}", cell, widths[c]);
    }
    return out + "\n";
  };
  std::string out = line(header_);
  size_t total = 0;
  for (size_t w : widths) total += w + 2;
  out += std::string(total - 2, '-') + "\n";
  for (const auto& row : rows_) out += line(row);
  return out;
}

std::string format_millions(double value, int decimals) {
  return fmt::format("{:.{}f}", value / 1e6, decimals);
}

}  // namespace qnas::cli
