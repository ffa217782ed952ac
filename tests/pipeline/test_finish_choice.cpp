#include "pipeline/finish_choice.h"

#include <gtest/gtest.h>

using nlohmann::json;
using qnas::pipeline::prefer_better_smaller_networks;

namespace {

json row(double limit, const std::string& subnet, double predicted_ms, double heldout_after,
         bool helped = true) {
  return {{"limit_ms", limit},
          {"found", true},
          {"subnet", subnet},
          {"predicted_latency_ms", predicted_ms},
          {"extracted_heldout_accuracy", 0.30},
          {"finetune", {{"ran", true}, {"helped", helped}, {"heldout_accuracy_after", heldout_after}}},
          {"test_accuracy", {{"onednn_int8", heldout_after - 0.01}}}};
}

TEST(FinishChoice, ALargerLimitExportsABetterNetworkFinishedForASmallerOne) {
  const json rows = {row(0.27, "small", 0.20, 0.905),
                     row(0.29, "small", 0.20, 0.905),
                     row(0.40, "max", 0.34, 0.885),
                     {{"limit_ms", 0.10}, {"found", false}, {"why", "below the smallest subnet"}}};
  const json out = prefer_better_smaller_networks(rows);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0], rows[0]);
  EXPECT_EQ(out[1], rows[1]);
  EXPECT_EQ(out[3], rows[3]);
  EXPECT_EQ(out[2]["subnet"], "small");
  EXPECT_DOUBLE_EQ(out[2]["limit_ms"].get<double>(), 0.40);
  EXPECT_DOUBLE_EQ(out[2]["same_as_limit_ms"].get<double>(), 0.27);
  EXPECT_EQ(out[2]["searched_subnet"]["subnet"], "max");
  EXPECT_DOUBLE_EQ(out[2]["searched_subnet"]["heldout_accuracy"].get<double>(), 0.885);
}

TEST(FinishChoice, ANetworkOverTheLimitOrWorseOnHeldOutIsNeverChosen) {
  // "big" is better but predicted over the smaller limit; "dropped" kept its extracted network (30%).
  const json rows = {row(0.30, "mid", 0.25, 0.80), row(0.50, "big", 0.45, 0.90),
                     row(0.60, "dropped", 0.55, 0.99, /*helped=*/false)};
  const json out = prefer_better_smaller_networks(rows);
  EXPECT_EQ(out[0], rows[0]);
  EXPECT_EQ(out[1], rows[1]);
  EXPECT_EQ(out[2]["subnet"], "big")
      << "the fine-tune of 'dropped' was not kept: its network has 30% held-out";
  EXPECT_FALSE(out[1].contains("searched_subnet"));
}

}  // namespace
