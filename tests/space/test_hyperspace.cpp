#include "space/hyperspace.h"

#include <gtest/gtest.h>

#include "core/error.h"

using namespace qnas::space;

TEST(Hyperspace, OnnxwMatchesTheOfficialTables) {
  const Hyperspace& hs = find_hyperspace("onnxw");
  ASSERT_EQ(hs.stages.size(), 11u);
  EXPECT_EQ(hs.num_subnet_stages(), 8);
  EXPECT_EQ(hs.num_choosable_stages(), 6);
  const StageDef& stage5 = hs.stages[hs.stage_index("stage5")];
  EXPECT_EQ(stage5.widths, (std::vector<int>{192, 208, 224, 240, 256, 272, 288, 304}));
  EXPECT_EQ(stage5.window_size, 5);
  EXPECT_EQ(stage5.num_windows(), 4);
  EXPECT_EQ(stage5.window(3), (std::vector<int>{240, 256, 272, 288, 304}));
  EXPECT_EQ(hs.stages[hs.stage_index("stage6")].num_windows(), 4);  // 304..448 step 16, window 7
  EXPECT_EQ(hs.candidates.size(), 6u);
  EXPECT_EQ(hs.candidates[5].kind, BlockKind::kFusedMBConvRes);
  EXPECT_EQ(hs.candidates[2].activation, Activation::kHswish);
  EXPECT_TRUE(hs.candidates[2].has_se());
  EXPECT_EQ(hs.resolutions, (std::vector<int>{160, 176, 192, 208, 224}));
}

TEST(Hyperspace, MobilewHasSevenBlockTypesWithK3Variants) {
  const Hyperspace& hs = find_hyperspace("mobilew");
  ASSERT_EQ(hs.candidates.size(), 7u);
  EXPECT_EQ(hs.candidates[5].kind, BlockKind::kMobileNetV3K3Res);
  EXPECT_EQ(hs.candidates[6].kind, BlockKind::kMobileNetV2K3Res);
  EXPECT_EQ(hs.candidates[4].kind, BlockKind::kFusedMBConvSERes);
  const StageDef& stage4 = hs.stages[hs.stage_index("stage4")];
  EXPECT_EQ(stage4.depths.back(), 8);
  EXPECT_EQ(stage4.widths.front(), 112);
  EXPECT_EQ(stage4.widths.back(), 176);
  EXPECT_EQ(hs.stages[hs.stage_index("stage5")].widths.size(), 9u);
}

TEST(Hyperspace, FmnistwIsSmallGreyAndTenWay) {
  const Hyperspace& hs = find_hyperspace("fmnistw");
  EXPECT_EQ(hs.in_channels, 1);
  EXPECT_EQ(hs.num_classes, 10);
  EXPECT_EQ(hs.resolutions.back(), 28);
  EXPECT_EQ(hs.num_choosable_stages(), 6);
  for (const auto& stage : hs.stages) {
    EXPECT_GE(stage.num_windows(), 1) << stage.name;
  }
}

TEST(Hyperspace, UnknownNameListsTheKnownOnes) {
  try {
    find_hyperspace("onnx_w");
    FAIL();
  } catch (const qnas::Error& e) {
    EXPECT_NE(std::string(e.what()).find("onnxw, mobilew, fmnistw"), std::string::npos) << e.what();
  }
}
