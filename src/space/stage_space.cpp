#include "space/stage_space.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "space/subnet.h"

namespace qnas::space {

std::string StageSpace::name() const {
  return fmt::format("stage{}_{}_{}", stage_number, block, window);
}

StageSpace make_stage_space(const Hyperspace& hyperspace, int stage_number, int block, int window,
                            int resolution) {
  const int stages = hyperspace.num_choosable_stages();
  if (stage_number < 1 || stage_number > stages)
    fail("{}: stage {} is out of range: choosable stages are 1..{}", hyperspace.name, stage_number, stages);
  const int blocks = static_cast<int>(hyperspace.candidates.size());
  if (block < 0 || block >= blocks)
    fail("{} stage{}: block type {} is out of range 0..{}", hyperspace.name, stage_number, block, blocks - 1);
  StageSpace s;
  s.hyperspace = &hyperspace;
  s.stage_number = stage_number;
  s.block = block;
  s.window = window;
  s.resolution = resolution;
  s.stage_index = hyperspace.choosable_stage_index(stage_number - 1);
  const StageDef& def = hyperspace.stages.at(static_cast<size_t>(s.stage_index));
  if (window < 0 || window >= def.num_windows())
    fail("{} {}: width window {} is out of range 0..{}", hyperspace.name, def.name, window,
         def.num_windows() - 1);
  if (resolution < 1)
    fail("{} {}: resolution must be positive, got {}", hyperspace.name, def.name, resolution);
  s.stage_name = def.name;
  s.type = &hyperspace.candidates[static_cast<size_t>(block)];
  s.stride = def.stride;
  s.widths = def.window(window);
  s.depths = def.depths;
  s.in_widths = hyperspace.stages.at(static_cast<size_t>(s.stage_index - 1)).widths;
  s.in_hw = stage_input_sizes(hyperspace, resolution).at(static_cast<size_t>(s.stage_index));
  return s;
}

StageSpace parse_stage_space(const Hyperspace& hyperspace, const std::string& name, int resolution) {
  int stage = 0, block = 0, window = 0;
  char tail = 0;
  if (std::sscanf(name.c_str(), "stage%d_%d_%d%c", &stage, &block, &window, &tail) != 3)
    fail("'{}' is not a block name: write stage<i>_<block type>_<window>, e.g. stage3_1_0", name);
  return make_stage_space(hyperspace, stage, block, window, resolution);
}

std::vector<StageSpace> all_stage_spaces(const Hyperspace& hyperspace, int resolution) {
  std::vector<StageSpace> all;
  for (int stage = 1; stage <= hyperspace.num_choosable_stages(); ++stage) {
    const StageDef& def =
        hyperspace.stages.at(static_cast<size_t>(hyperspace.choosable_stage_index(stage - 1)));
    for (int block = 0; block < static_cast<int>(hyperspace.candidates.size()); ++block) {
      for (int window = 0; window < def.num_windows(); ++window)
        all.push_back(make_stage_space(hyperspace, stage, block, window, resolution));
    }
  }
  return all;
}

std::string SubStage::encode() const {
  std::string text;
  for (const auto& b : blocks) {
    if (!text.empty()) text += "_";
    text += fmt::format("{}#{}#{}", b.kernel, b.width, b.expand == 0 ? "None" : format_expand(b.expand));
  }
  return text;
}

namespace {

template <typename T>
T largest(const std::vector<T>& v) {
  return *std::max_element(v.begin(), v.end());
}
template <typename T>
T smallest(const std::vector<T>& v) {
  return *std::min_element(v.begin(), v.end());
}

SubStage uniform_sub_stage(const StageSpace& s, bool max) {
  SubStage sub;
  sub.cin = max ? largest(s.in_widths) : smallest(s.in_widths);
  const BlockType& t = *s.type;
  const BlockChoice choice{max ? largest(t.kernels) : smallest(t.kernels),
                           max ? largest(s.widths) : smallest(s.widths),
                           t.has_expand() ? (max ? largest(t.expands) : smallest(t.expands)) : 0.0};
  sub.blocks.assign(static_cast<size_t>(max ? largest(s.depths) : smallest(s.depths)), choice);
  return sub;
}

bool contains(const std::vector<int>& v, int x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

SubStage max_sub_stage(const StageSpace& stage) {
  return uniform_sub_stage(stage, true);
}
SubStage min_sub_stage(const StageSpace& stage) {
  return uniform_sub_stage(stage, false);
}

SubStage sample_sub_stage(const StageSpace& stage, Rng& rng) {
  SubStage sub;
  sub.cin = rng.pick(stage.in_widths);
  const int depth = rng.pick(stage.depths);
  for (int b = 0; b < depth; ++b) {
    BlockChoice c;
    c.kernel = rng.pick(stage.type->kernels);
    c.width = rng.pick(stage.widths);
    c.expand = stage.type->has_expand() ? rng.pick(stage.type->expands) : 0.0;
    sub.blocks.push_back(c);
  }
  return sub;
}

void validate(const SubStage& sub, const StageSpace& stage) {
  if (!contains(stage.in_widths, sub.cin))
    fail("{}: input width {} is not a width of the previous stage", stage.name(), sub.cin);
  if (!contains(stage.depths, static_cast<int>(sub.blocks.size())))
    fail("{}: depth {} is not allowed", stage.name(), sub.blocks.size());
  for (size_t i = 0; i < sub.blocks.size(); ++i) {
    const BlockChoice& b = sub.blocks[i];
    if (!contains(stage.type->kernels, b.kernel))
      fail("{} block {}: kernel {} is not allowed", stage.name(), i, b.kernel);
    if (!contains(stage.widths, b.width))
      fail("{} block {}: width {} is not in the window", stage.name(), i, b.width);
    const auto& e = stage.type->expands;
    const bool ok =
        stage.type->has_expand() ? std::find(e.begin(), e.end(), b.expand) != e.end() : b.expand == 0;
    if (!ok) fail("{} block {}: expand ratio {} is not allowed", stage.name(), i, b.expand);
  }
}

std::vector<BlockSpec> build_sub_stage(const StageSpace& stage, const SubStage& sub) {
  validate(sub, stage);
  return build_stage(*stage.type, stage.stage_name, stage.stage_index, stage.stride, sub.cin, stage.in_hw,
                     sub.blocks);
}

std::int64_t macs(const std::vector<BlockSpec>& blocks) {
  std::int64_t total = 0;
  for (const auto& b : blocks) total += b.macs();
  return total;
}

std::int64_t params(const std::vector<BlockSpec>& blocks) {
  std::int64_t total = 0;
  for (const auto& b : blocks) total += b.params();
  return total;
}

}  // namespace qnas::space
