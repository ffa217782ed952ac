#pragma once
// A held-out validation split of a training set, the same on every machine for a given seed, so search
// and evaluation never see the images the supernet was trained on.
#include <cstdint>
#include <vector>

namespace qnas::data {

struct HoldoutSplit {
  std::vector<std::int64_t> train;    // sorted, count - holdout indices
  std::vector<std::int64_t> holdout;  // sorted, holdout indices, disjoint from train
};

// Picks `holdout` of the indices 0..count-1 uniformly at random with a partial Fisher-Yates shuffle driven by
// std::mt19937_64 and rejection sampling (qnas::Rng), both specified bit for bit, so a seed gives the same
// split with every compiler and standard library. holdout must be in [0, count].
HoldoutSplit split_holdout(std::int64_t count, std::int64_t holdout = 10000, std::uint64_t seed = 0);

}  // namespace qnas::data
