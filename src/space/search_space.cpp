#include "space/search_space.h"

#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "core/strings.h"

namespace qnas::space {
namespace {

std::vector<int> parse_digits(const std::string& encoding, const std::string& field, const std::string& text,
                              int expected_count) {
  if (static_cast<int>(text.size()) != expected_count) {
    fail("space encoding '{}': the {} field '{}' must have one digit per choosable stage ({} digits, got {})",
         encoding, field, text, expected_count, text.size());
  }
  std::vector<int> digits;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') {
      fail("space encoding '{}': the {} field has '{}' for stage{}, expected a digit", encoding, field,
           text[i], i + 1);
    }
    digits.push_back(text[i] - '0');
  }
  return digits;
}

}  // namespace

SearchSpace SearchSpace::parse(const std::string& encoding) {
  const auto parts = split(encoding, '-');
  if (parts.size() != 3) {
    fail(
        "space encoding '{}' is malformed: expected <hyperspace>-<block digits>-<window digits>, "
        "e.g. onnxw-151122-023231",
        encoding);
  }
  const Hyperspace& hs = find_hyperspace(parts[0]);
  const int count = hs.num_choosable_stages();
  return SearchSpace(hs, parse_digits(encoding, "block", parts[1], count),
                     parse_digits(encoding, "window", parts[2], count));
}

SearchSpace::SearchSpace(const Hyperspace& hyperspace, std::vector<int> block_choices,
                         std::vector<int> window_choices)
    : hyperspace_(&hyperspace), blocks_(std::move(block_choices)), windows_(std::move(window_choices)) {
  const int count = hyperspace.num_choosable_stages();
  if (static_cast<int>(blocks_.size()) != count || static_cast<int>(windows_.size()) != count) {
    fail("space over {}: need {} block and {} window choices, got {} and {}", hyperspace.name, count, count,
         blocks_.size(), windows_.size());
  }
  int choosable = 0;
  for (int s = 0; s < static_cast<int>(hyperspace.stages.size()); ++s) {
    StageChoices choices;
    choices.def = &hyperspace.stages[s];
    if (hyperspace.is_choosable(s)) {
      const int block = blocks_[choosable];
      const int window = windows_[choosable];
      if (block < 0 || block >= static_cast<int>(hyperspace.candidates.size())) {
        fail("space {}: block type {} for {} is out of range (0..{} in {})", encode(), block, choices.name(),
             hyperspace.candidates.size() - 1, hyperspace.name);
      }
      if (window < 0 || window >= choices.def->num_windows()) {
        fail("space {}: width window {} for {} is out of range (0..{}: {} widths, window size {})", encode(),
             window, choices.name(), choices.def->num_windows() - 1, choices.def->widths.size(),
             choices.def->window_size);
      }
      choices.block = &hyperspace.candidates[block];
      choices.window = window;
      choices.widths = choices.def->window(window);
      ++choosable;
    } else {
      choices.block = &hyperspace.fixed_block(s);
      choices.widths = choices.def->widths;
    }
    stages_.push_back(std::move(choices));
  }
}

std::string SearchSpace::encode() const {
  std::string blocks;
  std::string windows;
  for (int b : blocks_) blocks += std::to_string(b);
  for (int w : windows_) windows += std::to_string(w);
  return hyperspace_->name + "-" + blocks + "-" + windows;
}

double SearchSpace::num_subnets() const {
  double total = static_cast<double>(hyperspace_->resolutions.size());
  for (int s = 0; s < num_subnet_stages(); ++s) {
    const auto& st = stages_[s];
    const double per_block = static_cast<double>(st.block->kernels.size() * st.widths.size() *
                                                 std::max<size_t>(1, st.block->expands.size()));
    double per_stage = 0;
    for (int depth : st.def->depths) per_stage += std::pow(per_block, depth);
    total *= per_stage;
  }
  return total;
}

}  // namespace qnas::space
