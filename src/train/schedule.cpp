#include "train/schedule.h"

#include <algorithm>
#include <cmath>

namespace qnas::train {

double CosineSchedule::at(std::int64_t step) const {
  if (step < warmup_steps) return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  const std::int64_t decay_steps = std::max<std::int64_t>(1, total_steps - warmup_steps);
  const double progress =
      std::min(1.0, static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps));
  return final_lr + 0.5 * (base_lr - final_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace qnas::train
