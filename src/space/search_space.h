#pragma once
// A SearchSpace (= one supernet) is a hyperspace with one block type and one width window chosen per
// choosable stage, encoded as "<hyperspace>-<block digit per stage1..6>-<window digit per stage1..6>",
// e.g. "onnxw-151122-023231" (official SupernetConfig / SuperSpace.get_building_blocks).
#include <string>
#include <vector>

#include "space/hyperspace.h"

namespace qnas::space {

// What one stage of a concrete search space offers.
struct StageChoices {
  const StageDef* def = nullptr;
  const BlockType* block = nullptr;
  std::vector<int> widths;  // the widths of the chosen window
  int window = 0;           // the chosen window (0 for stages without windows)
  const std::string& name() const { return def->name; }
};

class SearchSpace {
 public:
  // Throws qnas::Error naming the field and stage when the encoding is malformed or out of range.
  static SearchSpace parse(const std::string& encoding);
  SearchSpace(const Hyperspace& hyperspace, std::vector<int> block_choices, std::vector<int> window_choices);

  std::string encode() const;
  const Hyperspace& hyperspace() const { return *hyperspace_; }
  const std::vector<int>& block_choices() const { return blocks_; }
  const std::vector<int>& window_choices() const { return windows_; }

  // All stages, heads included, in network order.
  int num_stages() const { return static_cast<int>(stages_.size()); }
  // The stages a subnet encoding covers (first_conv, stage0..stage6).
  int num_subnet_stages() const { return hyperspace_->num_subnet_stages(); }
  const StageChoices& stage(int index) const { return stages_.at(index); }

  // Number of distinct subnets: product over subnet stages of sum_d (|k|*|w|*|e|)^d, times resolutions.
  // A double: the official spaces hold around 1e20..1e30 subnets.
  double num_subnets() const;

  bool operator==(const SearchSpace& other) const { return encode() == other.encode(); }

 private:
  const Hyperspace* hyperspace_;
  std::vector<int> blocks_;
  std::vector<int> windows_;
  std::vector<StageChoices> stages_;
};

}  // namespace qnas::space
