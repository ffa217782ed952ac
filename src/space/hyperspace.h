#pragma once
// A hyperspace (the official code calls it a "superspace"): the macro architecture (stages with width
// ranges, depth ranges, strides, width-window sizes) plus the candidate block types a searchable stage can
// use. A SearchSpace picks one block type and one width window per searchable stage.
#include <string>
#include <vector>

#include "space/block_type.h"

namespace qnas::space {

// What a stage of the macro architecture allows.
struct StageDef {
  std::string name;         // first_conv, stage0..stage6, final_expand, feature_mix, logits
  std::vector<int> widths;  // all widths of the stage, ascending
  std::vector<int> depths;  // allowed depths, ascending
  int stride = 1;           // stride of the first block of the stage
  int window_size = 0;      // consecutive widths a window holds (= widths.size() when not windowed)
  int num_windows() const { return static_cast<int>(widths.size()) - window_size + 1; }
  std::vector<int> window(int choice) const;
};

struct Hyperspace {
  std::string name;
  std::string description;
  int in_channels = 3;
  int num_classes = 1000;
  std::vector<int> resolutions;           // elastic input resolutions of the supernet
  std::vector<int> block_kd_resolutions;  // resolutions the block LUTs are measured at
  std::vector<StageDef> stages;           // all stages in order, heads included
  std::vector<BlockType> candidates;      // block types a choosable stage may use (index = encoding digit)
  std::vector<BlockType> fixed_blocks;    // one per non-choosable stage, by stage name order below
  std::vector<std::string> fixed_block_stages;

  // Stages that appear in a subnet encoding (everything but the heads): first_conv, stage0..stage6.
  int num_subnet_stages() const;
  // Stages whose block type and window are chosen by a SearchSpace encoding: stage1..stage6.
  int num_choosable_stages() const;
  // Index in `stages` of the i-th choosable stage.
  int choosable_stage_index(int i) const;
  bool is_choosable(int stage_index) const;
  // The block type of a stage that is not choosable (first_conv, stage0, heads).
  const BlockType& fixed_block(int stage_index) const;
  int stage_index(const std::string& stage_name) const;
};

// Input H/W of each stage (by index in hyperspace.stages) for a network input of `resolution`.
std::vector<int> stage_input_sizes(const Hyperspace& hyperspace, int resolution);

// The built-in hyperspaces: "onnxw" and "mobilew" exactly as the official SpaceEvo code defines them,
// "fmnistw", our 28x28 Fashion-MNIST scale-down of onnxw, and "cifarw", fmnistw at 32x32x3 (CIFAR-10).
const std::vector<std::string>& builtin_hyperspace_names();
// Throws qnas::Error naming the known hyperspaces when `name` is unknown.
const Hyperspace& find_hyperspace(const std::string& name);

}  // namespace qnas::space
