#pragma once
// Learning-rate schedule: linear warm-up from 0, then cosine decay to `final_lr`, by optimizer step.
#include <cstdint>

namespace qnas::train {

struct CosineSchedule {
  double base_lr = 0.1;
  double final_lr = 0.0;
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 1;

  double at(std::int64_t step) const;
};

}  // namespace qnas::train
