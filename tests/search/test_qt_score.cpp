#include "search/qt_score.h"

#include <cmath>

#include <gtest/gtest.h>

#include "core/error.h"
#include "lut_fixture.h"

using namespace qnas::search;
using qnas::space::SearchSpace;

namespace {
const qnas::space::Hyperspace& fmnistw_hyperspace() {
  return qnas::space::find_hyperspace("fmnistw");
}

// Every file holds one row: loss 0.1 * (block + 1) and latency 1 + window ms, so every sample of a space has
// the same loss and latency and the score is known in closed form.
BlockLutSet constant_luts() {
  static const auto dir = qnas::testing::write_fmnistw_luts("constant", [](int, int block, int window) {
    return std::vector<std::string>{std::to_string(0.1 * (block + 1)) + ",1,0.1," +
                                    std::to_string(1 + window)};
  });
  return BlockLutSet::load(dir, fmnistw_hyperspace());
}
}  // namespace

TEST(QtScore, ClosedFormOnConstantLuts) {
  const BlockLutSet luts = constant_luts();
  QtOptions options;
  options.samples = 1000;
  options.latency_limits_ms = {5.0, 6.5, 100.0};
  options.fixed_latency_ms = {{28, 0.5}};
  // Blocks all 1 -> loss 6 * 0.2 = 1.2; windows 0 -> latency 6 * 1 + 0.5 = 6.5 ms.
  const QtScore score = qt_score(luts, SearchSpace::parse("fmnistw-111111-000000"), options);
  ASSERT_EQ(score.limits.size(), 3u);
  EXPECT_DOUBLE_EQ(score.min_latency_ms, 6.5);
  EXPECT_DOUBLE_EQ(score.max_latency_ms, 6.5);
  // 5 ms: nothing within, p = 1e-5, loss 1e5, latency loss (0.1 / 1e-5)^0.01.
  EXPECT_DOUBLE_EQ(score.limits[0].p, 1e-5);
  EXPECT_DOUBLE_EQ(score.limits[0].avg_loss, 1e5);
  EXPECT_NEAR(score.limits[0].latency_loss, std::pow(1e4, 0.01), 1e-12);
  // 6.5 ms and 100 ms: everything within (the limit is inclusive), top-50 mean as the official code divides.
  for (int l = 1; l < 3; ++l) {
    EXPECT_DOUBLE_EQ(score.limits[l].p, 1.0 + 1e-5);
    EXPECT_NEAR(score.limits[l].avg_loss, 1.2 * 50 / (50 + 1e-5), 1e-6);
    EXPECT_DOUBLE_EQ(score.limits[l].latency_loss, 1.0);
  }
  EXPECT_NEAR(score.score, score.limits[0].score + 2.0 / (1.2 * 50 / (50 + 1e-5)), 1e-6);
}

TEST(QtScore, FractionWithinMatchesTheExactDistribution) {
  // Two rows per file with latencies 1 and 2 ms: the latency of a sample is 6 + Binomial(6, 1/2) ms.
  static const auto dir = qnas::testing::write_fmnistw_luts("binomial", [](int, int, int) {
    return std::vector<std::string>{"0.1,1,0.1,1", "0.3,1,0.1,2"};
  });
  const BlockLutSet luts = BlockLutSet::load(dir, fmnistw_hyperspace());
  QtOptions options;
  options.samples = 200000;
  options.latency_limits_ms = {8.0};
  options.top = 10;
  const QtScore score = qt_score(luts, SearchSpace::parse("fmnistw-000000-000000"), options);
  const double exact = (1 + 6 + 15) / 64.0;  // at most 2 of 6 stages slow
  EXPECT_NEAR(score.limits[0].p, exact + 1e-5, 0.005);
  // The 10 lowest losses within 8 ms are all-fast samples: 6 * 0.1.
  EXPECT_NEAR(score.limits[0].avg_loss, 0.6, 1e-5);

  options.form = QtForm::kExpectation;
  const QtScore expectation = qt_score(luts, SearchSpace::parse("fmnistw-000000-000000"), options);
  // E[loss | at most 2 slow] = 0.6 + 0.2 * E[#slow | #slow <= 2] = 0.6 + 0.2 * (6 + 30) / 22.
  EXPECT_NEAR(expectation.limits[0].avg_loss, 0.6 + 0.2 * 36.0 / 22.0, 0.003);
}

TEST(QtScore, DeterministicForASeedWhateverTheThreads) {
  static const auto dir = qnas::testing::write_fmnistw_luts("random", [](int stage, int block, int window) {
    std::vector<std::string> rows;
    for (int r = 0; r < 20; ++r) {
      rows.push_back(std::to_string(0.01 * ((stage * 7 + block * 3 + window + r * 11) % 37)) + ",1,0.1," +
                     std::to_string(0.1 * ((stage + block * 5 + r * 3) % 17)));
    }
    return rows;
  });
  const BlockLutSet luts = BlockLutSet::load(dir, fmnistw_hyperspace());
  QtOptions options;
  options.samples = 50000;
  options.latency_limits_ms = {3.0, 5.0};
  options.seed = 3;
  options.threads = 1;
  const SearchSpace space = SearchSpace::parse("fmnistw-012345-012340");
  const QtScore one = qt_score(luts, space, options);
  options.threads = 4;
  const QtScore four = qt_score(luts, space, options);
  EXPECT_EQ(one.score, four.score);
  EXPECT_EQ(one.limits[1].avg_loss, four.limits[1].avg_loss);
  options.seed = 4;
  EXPECT_NE(qt_score(luts, space, options).score, one.score);
}

TEST(QtScore, FixedLatencyParsing) {
  EXPECT_EQ(parse_fixed_latency("2.5", {160, 224}), (std::map<int, double>{{160, 2.5}, {224, 2.5}}));
  EXPECT_EQ(parse_fixed_latency("160:1,224:2", {160, 224}), (std::map<int, double>{{160, 1.0}, {224, 2.0}}));
  EXPECT_THROW(parse_fixed_latency("160:1", {160, 224}), qnas::Error);
  EXPECT_THROW(parse_fixed_latency("fast", {160}), qnas::Error);
  EXPECT_THROW(parse_fixed_latency("-1", {160}), qnas::Error);
}
