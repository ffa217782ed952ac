#pragma once
// Block-wise knowledge distillation (SpaceEvo): every (stage, block type, width window) of a hyperspace is
// trained on its own to reproduce a teacher's stage output from the teacher's stage input (NSR loss, the
// 4-way sandwich: max, min and two random sub-stages per batch), FP32 epochs then LSQ+ QAT epochs. The
// trained stages then fill the block LUTs (block_lut_builder.h) that the space search scores.
//
// A run directory holds config.json (teacher, hyperspace, settings) and blocks/: per block the student's
// weights (<name>.pt) and its log (<name>.json, written last: the block is done when it exists). Blocks are
// taken through a WorkQueue, so any number of workers may share the directory. Ranks of a process group
// (torchrun, Slurm, scripts/launch-local.sh) take them through the group's store instead, and need no shared
// directory: see set_process_group.
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "dist/process_group.h"
#include "nn/elastic_stage.h"
#include "nn/static_net.h"
#include "space/stage_space.h"
#include "train/train_config.h"

namespace qnas::train {

// NSR loss: mean over batch and channels of mean_hw((t - s)^2) / var_hw(t). A channel that a ReLU switched
// off has no variance, so each variance is floored at 1e-3 of the sample's mean channel variance.
torch::Tensor nsr_loss(const torch::Tensor& student, const torch::Tensor& teacher);

struct Teacher {
  nn::StaticNet net{nullptr};
  int bits = 32;         // the precision the teacher ended its training in
  double accuracy = 0;   // its last test accuracy
  std::string identity;  // "static <space> <subnet> r<res>"
  std::filesystem::path checkpoint;
};

// Loads a network trained by `qnas train --subnet` from its run directory or checkpoint file. Errors name
// the file and the fix: missing, unreadable, a supernet checkpoint, an unfinished run.
Teacher load_teacher(const std::filesystem::path& run_dir_or_checkpoint);

struct BlockKdResult {
  std::string name;
  std::vector<double> epoch_nsr;  // mean NSR of the max sub-stage per epoch
  int steps = 0;
  double seconds = 0;
  std::string device;
  int threads = 0;
  std::string host;
  int rank = 0;  // the rank of a process group that trained it (0 without one)
};
nlohmann::json to_json(const BlockKdResult& r);

class BlockKd {
 public:
  // Creates or checks run_dir/config.json: a run directory made with another teacher, hyperspace or
  // settings is refused, naming the key.
  BlockKd(BlockKdConfig config, Teacher teacher, const data::ImageDataset& train,
          std::filesystem::path run_dir);
  const space::Hyperspace& hyperspace() const { return *hyperspace_; }
  int resolution() const { return resolution_; }
  // Every block of the hyperspace, or the named ones ("stage3_1_0").
  std::vector<space::StageSpace> blocks(const std::vector<std::string>& names = {}) const;
  bool is_done(const space::StageSpace& block) const;
  // Takes blocks until none is left that no live worker holds. Returns the blocks this process trained.
  std::vector<BlockKdResult> run(const std::vector<space::StageSpace>& blocks);
  // With a group of more than one rank, run() hands out blocks by the store's atomic counter: rank 0's run
  // directory decides which blocks are left, every rank trains the ones it claims in its own run directory,
  // and rank 0 receives each finished block's files through the store, so its directory ends up complete
  // (the others' directories need not be shared). A rank whose heartbeat stops for stale_seconds while it
  // holds a block stops rank 0 with an error naming it; the blocks finished so far are kept, and the same
  // command resumes with the rest.
  void set_process_group(dist::ProcessGroup* group) { group_ = group; }
  // Trains one block and saves it; `on_step` runs after every optimizer step (the queue's heartbeat).
  BlockKdResult train_block(const space::StageSpace& block, const std::function<void()>& on_step = {});
  // The trained student of a finished block.
  nn::StageStudent load_student(const space::StageSpace& block) const;
  // The teacher's input and output of `stage` for images [begin, end) of the training set.
  std::pair<torch::Tensor, torch::Tensor> teacher_io(const std::string& stage, std::int64_t begin,
                                                     std::int64_t end);
  // Indices of the held-out images (the end of the training set).
  std::pair<std::int64_t, std::int64_t> heldout_range() const;
  const BlockKdConfig& config() const { return config_; }
  std::filesystem::path block_dir() const { return run_dir_ / "blocks"; }
  // Test hook: the next train_block throws after this many steps (a killed worker).
  void interrupt_after_steps(std::int64_t steps) { interrupt_after_ = steps; }
  // Test hook: the most bytes of teacher features kept for a stage's blocks (0: recompute every batch).
  void cache_teacher_features_up_to(std::int64_t bytes) { max_cached_feature_bytes_ = bytes; }

 private:
  nn::StageStudent make_student(const space::StageSpace& block) const;
  std::vector<BlockKdResult> run_over_group(const std::vector<space::StageSpace>& blocks);
  void receive_blocks(const std::vector<const space::StageSpace*>& pending,
                      const std::vector<bool>& trained_here);
  torch::Tensor images(const std::vector<std::int64_t>& indices) const;
  // The teacher's input and output of `stage` for the first `count` training images, computed once and
  // shared by every block of the stage (blocks come stage by stage). Null when they would not fit in
  // max_cached_feature_bytes_: then each step runs the teacher on its own batch.
  const std::pair<torch::Tensor, torch::Tensor>* cached_teacher_io(const std::string& stage,
                                                                   std::int64_t count);
  BlockKdConfig config_;
  Teacher teacher_;
  const data::ImageDataset& train_;
  std::filesystem::path run_dir_;
  const space::Hyperspace* hyperspace_ = nullptr;
  int resolution_ = 0;
  torch::Device device_;
  std::int64_t interrupt_after_ = -1;
  std::int64_t max_cached_feature_bytes_;
  std::string cached_stage_;
  std::int64_t cached_count_ = 0;
  std::pair<torch::Tensor, torch::Tensor> cached_io_;
  dist::ProcessGroup* group_ = nullptr;
};

}  // namespace qnas::train
