#pragma once
// One (stage, block type, width window) of a hyperspace, on its own: what block-wise knowledge distillation
// trains and what a row of a block LUT measures. A sub-stage is one choice inside it: the input width (any
// width the previous stage of the hyperspace can end with), then kernel, width and expand ratio per block.
// Rows of the official LUT CSVs encode the blocks as "k#w#e_k#w#e..." with e "None" for block types that
// have no expand ratio.
#include <cstdint>
#include <string>
#include <vector>

#include "core/rng.h"
#include "space/arch_spec.h"
#include "space/hyperspace.h"

namespace qnas::space {

struct StageSpace {
  const Hyperspace* hyperspace = nullptr;
  int stage_number = 0;  // 1..6 (stage1..stage6)
  int block = 0;         // index into hyperspace->candidates
  int window = 0;
  int resolution = 0;      // network input resolution the stage is measured at
  std::string stage_name;  // "stage3"
  int stage_index = 0;     // index in hyperspace->stages
  const BlockType* type = nullptr;
  int stride = 1;
  int in_hw = 0;
  std::vector<int> in_widths;  // every width the previous stage can end with
  std::vector<int> widths;     // the window
  std::vector<int> depths;
  // "stage{i}_{block}_{window}": the LUT file stem and the block-KD job name.
  std::string name() const;
};

// Throws qnas::Error naming the field and its allowed range when a number is out of range.
StageSpace make_stage_space(const Hyperspace& hyperspace, int stage_number, int block, int window,
                            int resolution);
// Parses "stage{i}_{block}_{window}".
StageSpace parse_stage_space(const Hyperspace& hyperspace, const std::string& name, int resolution);
// Every (stage, block type, window) of the hyperspace, in file-name order.
std::vector<StageSpace> all_stage_spaces(const Hyperspace& hyperspace, int resolution);

struct SubStage {
  int cin = 0;
  std::vector<BlockChoice> blocks;
  // "k#w#e_k#w#e..." as the official LUT rows write it.
  std::string encode() const;
  int cout() const { return blocks.back().width; }
};

SubStage max_sub_stage(const StageSpace& stage);
SubStage min_sub_stage(const StageSpace& stage);
SubStage sample_sub_stage(const StageSpace& stage, Rng& rng);
// Throws qnas::Error naming the block and field the stage does not allow.
void validate(const SubStage& sub, const StageSpace& stage);
// The concrete blocks of a sub-stage (through build_stage, like every other network of qnas).
std::vector<BlockSpec> build_sub_stage(const StageSpace& stage, const SubStage& sub);
std::int64_t macs(const std::vector<BlockSpec>& blocks);
std::int64_t params(const std::vector<BlockSpec>& blocks);

}  // namespace qnas::space
