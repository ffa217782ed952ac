#pragma once
// Block LUTs from trained block-KD students, in the official SpaceEvo CSV format (search/block_lut.h): per
// block, `rows` sub-stages drawn at random (seeded by the block's name), each with its NSR loss against the
// teacher on the held-out images, its FLOPs and parameters, and its INT8 latency on this machine from the
// latency LUT (blocks not in it yet are measured first, so the LUT file grows and is reused).
// Also writes fixed_latency.json: the mean latency of the stages a LUT does not cover (first_conv, stage0,
// heads), which the space search adds to every sample.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "latency/latency_lut.h"
#include "train/block_kd.h"

namespace qnas::train {

struct LutBuildOptions {
  int rows = 1000;
  std::uint64_t seed = 0;
  std::int64_t eval_batch = 128;  // held-out images per forward pass (BN uses their statistics)
  std::int64_t eval_images = 0;   // the first N held-out images measure each row (0 = all of them)
  int fixed_samples = 200;        // random subnets averaged for the fixed stages' latency
  runtime::MeasureOptions measure;
};

struct LutBuildSummary {
  int files_written = 0;
  int files_kept = 0;  // already there from an earlier run
  std::size_t blocks_measured = 0;
  std::map<int, double> fixed_latency_ms;  // per resolution
  double seconds = 0;
};

class BlockLutBuilder {
 public:
  // `latency_lut_path` is loaded when it exists (it must be profiled under `lut`'s key) and saved as it
  // grows.
  BlockLutBuilder(BlockKd& kd, latency::LatencyLut& lut, std::filesystem::path latency_lut_path,
                  LutBuildOptions options);
  // The sub-stages a block's LUT file lists, in row order.
  std::vector<space::SubStage> sample_rows(const space::StageSpace& block) const;
  // Writes out_dir/<block>.csv for every block whose file is missing; files already there are kept (delete
  // one to rebuild it). Every block must be trained.
  LutBuildSummary build(const std::vector<space::StageSpace>& blocks, const std::filesystem::path& out_dir);
  // INT8 latency of a sub-stage: the LUT's block entries times the stage's slope.
  double latency_ms(const std::vector<space::BlockSpec>& blocks) const;
  // Test hook: throw TrainingInterrupted once this many files have been written by this build (a kill).
  void interrupt_after_files(int files) { interrupt_after_files_ = files; }

 private:
  std::vector<space::BlockSpec> fixed_stage_samples(std::vector<space::ArchSpec>* specs) const;
  std::string csv_of(const space::StageSpace& block, const std::vector<space::SubStage>& rows);
  BlockKd& kd_;
  latency::LatencyLut& lut_;
  std::filesystem::path lut_path_;
  LutBuildOptions options_;
  std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> heldout_io_;  // per stage name
  int interrupt_after_files_ = -1;
};

}  // namespace qnas::train
