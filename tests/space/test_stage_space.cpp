// Stage spaces (what block KD trains and a LUT row measures) against the whole-network expansion.
#include "space/stage_space.h"

#include <gtest/gtest.h>

#include "space/sampling.h"
#include "test_util.h"

using namespace qnas;
using namespace qnas::space;

TEST(StageSpace, NamesParseAndCountEveryBlockOfTheHyperspace) {
  const Hyperspace& hs = find_hyperspace("fmnistw");
  const auto all = all_stage_spaces(hs, 28);
  // Windows per stage 3 + 4 + 5 + 5 + 5 + 3, times six block types.
  EXPECT_EQ(all.size(), 25u * 6u);
  const StageSpace s = parse_stage_space(hs, "stage3_1_2", 28);
  EXPECT_EQ(s.name(), "stage3_1_2");
  EXPECT_EQ(s.stage_name, "stage3");
  EXPECT_EQ(s.type->name, "MobileNetV2ResBlock");
  EXPECT_EQ(s.widths, (std::vector<int>{64, 72, 80}));
  EXPECT_EQ(s.in_widths, hs.stages[static_cast<size_t>(hs.stage_index("stage2"))].widths);
  EXPECT_EQ(s.in_hw, 14);
  EXPECT_CONTAINS(qnas::testing::error_message([&] { parse_stage_space(hs, "stage3-1-2", 28); }),
                  "not a block name");
  EXPECT_CONTAINS(qnas::testing::error_message([&] { parse_stage_space(hs, "stage7_1_0", 28); }),
                  "out of range");
  EXPECT_CONTAINS(qnas::testing::error_message([&] { parse_stage_space(hs, "stage3_1_9", 28); }),
                  "width window 9");
}

TEST(StageSpace, RowsEncodeAsTheOfficialLuts) {
  const Hyperspace& hs = find_hyperspace("onnxw");
  SubStage dual{96, {{3, 112, 0}, {5, 128, 0}}};
  EXPECT_EQ(dual.encode(), "3#112#None_5#128#None");
  SubStage res{96, {{5, 112, 4.0}, {3, 112, 0.5}}};
  EXPECT_EQ(res.encode(), "5#112#4.0_3#112#0.5");
  const StageSpace s = make_stage_space(hs, 4, 1, 0, 224);
  EXPECT_CONTAINS(qnas::testing::error_message([&] {
                    validate(SubStage{97, {{3, 112, 4.0}, {3, 112, 4.0}}}, s);
                  }),
                  "input width 97");
}

// A sub-stage is exactly the stage of a full network whose previous stage ends with the same width.
TEST(StageSpace, SubStageEqualsTheStageInsideANetwork) {
  const SearchSpace sp = SearchSpace::parse("fmnistw-312045-123412");
  Rng rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    Subnet subnet = sample_random(sp, rng);
    subnet.resolution = 28;
    const ArchSpec net = build_arch_spec(sp, subnet);
    for (int stage = 1; stage <= 6; ++stage) {
      const StageSpace s =
          make_stage_space(sp.hyperspace(), stage, sp.block_choices()[static_cast<size_t>(stage - 1)],
                           sp.window_choices()[static_cast<size_t>(stage - 1)], 28);
      std::vector<BlockSpec> in_net;
      for (const auto& b : net.blocks)
        if (b.stage == s.stage_name) in_net.push_back(b);
      const SubStage sub{in_net.front().cin, subnet.stages[static_cast<size_t>(s.stage_index)]};
      const auto alone = build_sub_stage(s, sub);
      ASSERT_EQ(alone.size(), in_net.size());
      EXPECT_EQ(macs(alone), macs(in_net)) << s.name();
      EXPECT_EQ(params(alone), params(in_net)) << s.name();
      EXPECT_EQ(alone.front().in_hw, in_net.front().in_hw) << s.name();
    }
  }
}

TEST(StageSpace, SamplesStayInsideAndExtremesBoundThem) {
  const StageSpace s = parse_stage_space(find_hyperspace("fmnistw"), "stage5_3_4", 28);
  const auto max = build_sub_stage(s, max_sub_stage(s)), min = build_sub_stage(s, min_sub_stage(s));
  Rng rng(3);
  for (int i = 0; i < 200; ++i) {
    const SubStage sub = sample_sub_stage(s, rng);
    const auto blocks = build_sub_stage(s, sub);  // validates
    EXPECT_LE(macs(blocks), macs(max));
    EXPECT_GE(macs(blocks), macs(min));
  }
}
