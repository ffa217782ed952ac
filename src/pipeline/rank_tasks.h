#pragma once
// `qnas run` under a launcher (scripts/launch-local.sh, torchrun, srun): rank 0 runs the pipeline, and hands
// each training stage to the other ranks as a task in the c10d store, so they join that stage's data-parallel
// training (or block-wise distillation) and otherwise wait. Tasks are numbered; a rank that waits polls the
// store, which lives in rank 0's process, so a rank 0 that dies is a store error on the others, not a hang.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>

#include "dist/process_group.h"

namespace qnas::pipeline {

class RankTasks {
 public:
  explicit RankTasks(dist::ProcessGroup& group);
  // Rank 0 that never said finish() (it is unwinding from an error) tells the others to stop.
  ~RankTasks();
  RankTasks(const RankTasks&) = delete;
  RankTasks& operator=(const RankTasks&) = delete;

  // Rank 0: the next task for every other rank.
  void publish(const nlohmann::json& task);
  // Rank 0: the pipeline ended (finished or --until); the others return.
  void finish();
  // Rank 0: the pipeline failed with `why`; the others stop with it.
  void stop(const std::string& why);
  // Other ranks: rank 0's next task, waiting as long as rank 0 lives: {"kind": "done"} when it finished; a
  // qnas::Error carrying rank 0's error when it failed.
  nlohmann::json next(std::chrono::milliseconds poll = std::chrono::milliseconds(500));

  int rank() const { return group_.rank(); }
  int world_size() const { return group_.world_size(); }
  dist::ProcessGroup& group() { return group_; }

 private:
  void wait_for_others(std::chrono::milliseconds limit);
  dist::ProcessGroup& group_;
  std::int64_t count_ = 0;
  bool finished_ = false;
};

}  // namespace qnas::pipeline
