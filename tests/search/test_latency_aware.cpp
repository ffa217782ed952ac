// INT8 or FP32 per block: blocks where INT8 gains no time go FP32, sensitive blocks follow within the slack,
// and the predicted latency is the all-INT8 sum plus the gains given up.
#include <gtest/gtest.h>

#include "core/error.h"
#include "search/latency_aware.h"

namespace qnas::search {
namespace {

TEST(LatencyAware, FP32WhereInt8GainsNothingAndNeverSlowerWithoutSlack) {
  // Block 1 is an SE block slower in INT8; block 2 is sensitive but INT8 saves 0.5 ms there.
  // Block 4 is sensitive and INT8 saves only 0.05 ms there: less than block 1's FP32 saves, but that saving
  // is not a budget, so without slack it stays INT8.
  const std::vector<BlockCosts> blocks = {
      {1.0, 2.0, 0.1}, {0.6, 0.4, 0.05}, {0.5, 1.0, 9.0}, {0.2, 0.2, 0.0}, {0.3, 0.35, 5.0}};
  const PrecisionChoice c = choose_block_precision(blocks, 0.0);
  EXPECT_EQ(c.fp32, (std::vector<bool>{false, true, false, true, false}));
  EXPECT_DOUBLE_EQ(c.all_int8_ms, 2.6);
  EXPECT_NEAR(c.predicted_ms, 2.6 - 0.2, 1e-12) << "going FP32 on block 1 saves 0.2 ms";
  EXPECT_NEAR(c.fastest_ms, c.predicted_ms, 1e-12);
  // 3% of the fastest 2.4 ms is 0.072 ms: block 4 (0.05 ms) now fits, block 2 (0.5 ms) does not.
  EXPECT_EQ(choose_block_precision(blocks, 0.03).fp32, (std::vector<bool>{false, true, false, true, true}));
}

TEST(LatencyAware, SlackBuysTheMostSensitiveBlocksPerMillisecondFirst) {
  const std::vector<BlockCosts> blocks = {{1.0, 2.0, 1.0}, {0.5, 1.0, 9.0}, {0.5, 0.6, 0.5}};
  // No free block, so the fastest assignment is all-INT8 (2 ms).
  // Prices (sensitivity per ms of INT8 gain): 1/1 = 1, 9/0.5 = 18, 0.5/0.1 = 5. A slack of 15% of 2 ms is
  // 0.3 ms: block 1 (the highest price) would cost 0.5 ms and is skipped, block 2 (0.1 ms) fits.
  PrecisionChoice c = choose_block_precision(blocks, 0.15);
  EXPECT_EQ(c.fp32, (std::vector<bool>{false, false, true}));
  // A slack of 30% (0.6 ms) takes block 1 first (the highest price), then block 2 (0.1 ms) still fits.
  c = choose_block_precision(blocks, 0.30);
  EXPECT_EQ(c.fp32, (std::vector<bool>{false, true, true}));
  EXPECT_NEAR(c.predicted_ms, 2.0 + 0.5 + 0.1, 1e-12);
  EXPECT_LE(c.predicted_ms, 2.0 * 1.3 + 1e-12);
  // Unlimited slack: everything sensitive is FP32.
  c = choose_block_precision(blocks, 10.0);
  EXPECT_EQ(c.fp32, (std::vector<bool>{true, true, true}));
}

TEST(LatencyAware, BadCostsAndSlackAreRefused) {
  EXPECT_THROW(choose_block_precision({{1.0, -1.0, 0.0}}, 0.0), Error);
  EXPECT_THROW(choose_block_precision({{1.0, 1.0, 0.0}}, -0.1), Error);
}

}  // namespace
}  // namespace qnas::search
