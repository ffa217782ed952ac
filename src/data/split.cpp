#include "data/split.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "core/error.h"
#include "core/rng.h"

namespace qnas::data {

HoldoutSplit split_holdout(std::int64_t count, std::int64_t holdout, std::uint64_t seed) {
  if (count < 0) fail("cannot split a data set of {} images", count);
  if (holdout < 0 || holdout > count) {
    fail("cannot hold out {} of {} images; choose a hold-out size between 0 and {} (e.g. --holdout {})",
         holdout, count, count, count / 6);
  }
  std::vector<std::int64_t> order(static_cast<std::size_t>(count));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  // Fisher-Yates stopped after `holdout` steps: the first `holdout` slots are then a uniform random subset.
  Rng rng(seed);
  const auto size = static_cast<std::uint64_t>(count);
  for (std::uint64_t i = 0; i < static_cast<std::uint64_t>(holdout); ++i) {
    std::swap(order[i], order[i + rng.below(size - i)]);
  }
  HoldoutSplit split;
  split.holdout.assign(order.begin(), order.begin() + holdout);
  split.train.assign(order.begin() + holdout, order.end());
  std::sort(split.holdout.begin(), split.holdout.end());
  std::sort(split.train.begin(), split.train.end());
  return split;
}

}  // namespace qnas::data
