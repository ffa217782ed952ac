#pragma once
// Plain-text tables for the terminal; the JSON forms are built next to them from the same values.
#include <string>
#include <vector>

namespace qnas::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add_row(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // Right-aligns every column but the first.
  std::string render() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

std::string format_millions(double value, int decimals = 1);

}  // namespace qnas::cli
