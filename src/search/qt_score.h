#pragma once
// The Q-T score of a search space (SpaceEvo): how good the best subnets of the space are under each latency
// limit, estimated from block LUTs. Official definition (BlockKDSearcher._eval_individual_one_latency):
// draw N subnets by summing one random LUT row per stage (all stages at one resolution, the resolution drawn
// per sample) plus the fixed stages' latency; for each limit T:
//   p = fraction of samples with latency <= T, + 1e-5
//   avg_top_loss = mean NSR loss of the `top` lowest-loss samples within T (1e5 when none)
//   latency_loss = max(1, (t / p)^a)
//   score_T = 1 / (latency_loss * avg_top_loss)
// and the space's score is the sum over T. The "expectation" form (the paper's Q = sum_T E[quality | LAT <=
// T]) replaces the top-k mean by the mean loss of all samples within T. One sample set serves every limit
// (the official code draws a fresh one per limit: the same estimator with more noise and more time).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "search/block_lut.h"
#include "space/search_space.h"

namespace qnas::search {

enum class QtForm { kTopK, kExpectation };

struct QtOptions {
  std::vector<double> latency_limits_ms;
  std::int64_t samples = 100000;
  int top = 50;
  double t = 0.1;
  double a = 0.01;
  QtForm form = QtForm::kTopK;
  // Latency of the stages the LUTs do not cover (first_conv, stage0, heads), per resolution.
  std::map<int, double> fixed_latency_ms;
  std::uint64_t seed = 0;
  int threads = 0;  // 0 = all cores
};

struct QtLimitScore {
  double limit_ms = 0;
  double p = 0;         // fraction within the limit (+1e-5)
  double avg_loss = 0;  // top-k (or all) mean NSR loss within the limit
  double latency_loss = 0;
  double score = 0;
};

struct QtScore {
  std::string space;
  double score = 0;
  std::vector<QtLimitScore> limits;
  double min_latency_ms = 0;  // smallest sampled latency
  double max_latency_ms = 0;
};

// Deterministic for (space, options.seed) whatever the thread count.
QtScore qt_score(const BlockLutSet& luts, const space::SearchSpace& space, const QtOptions& options);

// Parses "0" or "7.5" (every resolution) or "160:1.2,192:1.6,224:2.1".
std::map<int, double> parse_fixed_latency(const std::string& text, const std::vector<int>& resolutions);

}  // namespace qnas::search
