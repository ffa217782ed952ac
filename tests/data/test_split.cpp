#include "data/split.h"

#include <algorithm>

#include <gtest/gtest.h>

#include "data_test_util.h"

namespace qnas::data {
namespace {

using testing::error_message;

void expect_partition(const HoldoutSplit& split, std::int64_t count) {
  EXPECT_TRUE(std::is_sorted(split.train.begin(), split.train.end()));
  EXPECT_TRUE(std::is_sorted(split.holdout.begin(), split.holdout.end()));
  std::vector<std::int64_t> all;
  std::merge(split.train.begin(), split.train.end(), split.holdout.begin(), split.holdout.end(),
             std::back_inserter(all));
  std::vector<std::int64_t> expected(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) expected[static_cast<std::size_t>(i)] = i;
  EXPECT_EQ(all, expected) << "train and hold-out must be disjoint and cover 0.." << count - 1;
}

TEST(SplitHoldout, DisjointCompleteAndSized) {
  const HoldoutSplit split = split_holdout(60000, 10000, 7);
  EXPECT_EQ(split.train.size(), 50000u);
  EXPECT_EQ(split.holdout.size(), 10000u);
  expect_partition(split, 60000);
}

TEST(SplitHoldout, SameSeedSameSplit) {
  EXPECT_EQ(split_holdout(1000, 100, 42).holdout, split_holdout(1000, 100, 42).holdout);
}

TEST(SplitHoldout, OtherSeedOtherSplit) {
  EXPECT_NE(split_holdout(1000, 100, 42).holdout, split_holdout(1000, 100, 43).holdout);
}

TEST(SplitHoldout, PinnedValuesAreTheSameOnEveryPlatform) {
  // mt19937_64 and the rejection sampler are fully specified; these indices were computed independently
  // (a Python MT19937-64 running the same partial Fisher-Yates) and must never change.
  EXPECT_EQ(split_holdout(20, 4, 2024).holdout, (std::vector<std::int64_t>{1, 6, 7, 14}));
}

TEST(SplitHoldout, SpreadsOverTheWholeRange) {
  const HoldoutSplit split = split_holdout(60000, 10000, 1);
  const auto in_first_half =
      std::count_if(split.holdout.begin(), split.holdout.end(), [](std::int64_t i) { return i < 30000; });
  EXPECT_NEAR(static_cast<double>(in_first_half), 5000.0, 300.0);
}

TEST(SplitHoldout, EdgeSizes) {
  expect_partition(split_holdout(10, 0, 1), 10);
  EXPECT_TRUE(split_holdout(10, 0, 1).holdout.empty());
  EXPECT_EQ(split_holdout(10, 10, 1).holdout.size(), 10u);
}

TEST(SplitHoldout, HoldoutLargerThanTheSetIsAnError) {
  EXPECT_CONTAINS(error_message([] { split_holdout(500, 10000, 0); }), "cannot hold out 10000 of 500 images");
  EXPECT_CONTAINS(error_message([] { split_holdout(500, -1, 0); }), "cannot hold out -1");
}

}  // namespace
}  // namespace qnas::data
