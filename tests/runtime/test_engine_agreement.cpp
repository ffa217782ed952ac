// The oneDNN plan against the plain reference executor (ncnn style: one reference per op, the optimised
// engine checked against it). FP32 must agree to float rounding; INT8 must reproduce the reference's
// integer arithmetic up to rare one-code rounding differences, and stay close to FP32.
#include <algorithm>
#include <cmath>

#include <gtest/gtest.h>

#include "runtime/onednn_plan.h"
#include "runtime/reference.h"
#include "runtime_fixture.h"
#include "space/baselines.h"
#include "test_util.h"

using namespace qnas;
using namespace qnas::runtime;

namespace {

float max_abs(const std::vector<float>& v) {
  float m = 0;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

size_t argmax(const std::vector<float>& v) {
  return static_cast<size_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

struct Case {
  std::string name;
  std::string space;
  int resolution;
};

// One network per block family: fmnistw and onnxw (ResNet, FusedMBConv, MobileNetV2/V3 with SE,
// hswish/swish), mobilew (K3 stacks, MobileNetV1Dual, relu6).
const Case kCases[] = {
    {"fmnistw", "fmnistw-151122-000000", 28},          {"onnxw_published", "onnxw-151122-023231", 48},
    {"onnxw_resnet_fused", "onnxw-345345-000000", 48}, {"mobilew_published", "mobilew-122222-155400", 48},
    {"mobilew_k3", "mobilew-056456-000000", 48},
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

class EngineAgreement : public ::testing::TestWithParam<Case> {};

TEST_P(EngineAgreement, Fp32MatchesTheReference) {
  const auto spec = qnas::testing::random_arch(GetParam().space, 11, GetParam().resolution);
  const Program program = lower(spec);
  const Weights weights = random_weights(program, 5);
  ReferenceExecutor reference(program, weights);
  OnednnPlan plan(program, weights, Precision::kFp32, 1);
  for (int i = 0; i < 2; ++i) {
    const auto image = qnas::testing::random_image(program.in_channels, program.resolution, 100 + i);
    const auto expected = reference.run(image);
    const auto got = plan.run(image);
    EXPECT_LE(max_abs_diff(expected, got), 1e-4f * std::max(1.0f, max_abs(expected))) << spec.subnet;
  }
}

TEST_P(EngineAgreement, Int8MatchesTheFakeQuantReference) {
  const auto spec = qnas::testing::random_arch(GetParam().space, 11, GetParam().resolution);
  const Program program = lower(spec);
  const Weights weights = random_weights(program, 5);
  const QuantParams quant = calibrate(program, weights, qnas::testing::random_images(program, 4, 200));
  ReferenceExecutor fake_quant(program, weights, &quant);
  ReferenceExecutor fp32(program, weights);
  OnednnPlan plan(program, weights, Precision::kInt8, 1, &quant);
  int same_top1 = 0;
  const int images = 6;
  for (int i = 0; i < images; ++i) {
    const auto image = qnas::testing::random_image(program.in_channels, program.resolution, 300 + i);
    const auto expected = fake_quant.run(image);
    const auto got = plan.run(image);
    const float range = max_abs(expected);
    // Float-ordering differences flip single codes at rounding boundaries (the per-block test bounds them
    // by one code); through ~20 random blocks they grow to a few codes of the logits, never more.
    EXPECT_LE(max_abs_diff(expected, got), 0.1f * range) << spec.subnet << " image " << i;
    same_top1 += argmax(expected) == argmax(got);
    // And INT8 stays an approximation of FP32: the per-tensor quantisation error stays bounded.
    const auto real = fp32.run(image);
    EXPECT_LE(max_abs_diff(real, got), 0.25f * max_abs(real)) << spec.subnet << " image " << i;
  }
  EXPECT_GE(same_top1, images - 1);
}

// Block by block, the INT8 plan reproduces the reference's integer output to within one code.
TEST_P(EngineAgreement, Int8BlocksMatchTheReferenceWithinOneCode) {
  const auto spec = qnas::testing::random_arch(GetParam().space, 11, GetParam().resolution);
  for (const auto& block : spec.blocks) {
    const Program program = lower_block(block);
    const Weights weights = random_weights(program, 5);
    const auto images = qnas::testing::random_images(program, 2, 7);
    const QuantParams quant = calibrate(program, weights, images);
    ReferenceExecutor reference(program, weights, &quant);
    OnednnPlan plan(program, weights, Precision::kInt8, 1, &quant);
    const float code =
        program.tensors[program.output].is_logits ? 1e-3f : quant.tensors[program.output].scale;
    EXPECT_LE(max_abs_diff(reference.run(images[0]), plan.run(images[0])), 1.01f * code)
        << block.stage << " block " << block.block_index << " " << block.type->name;
  }
}

// LSQ+'s deployment: the tensors that can be negative are u8 with a zero point. oneDNN 2.6 pools int8
// only into the source's own type, so an SE block whose pooled tensor changes type takes an f32 path,
// which must give the same codes (it once refused to build: MobileNetV3 blocks with zero points).
TEST_P(EngineAgreement, Int8BlocksWithZeroPointsMatchTheReferenceWithinOneCode) {
  const auto spec = qnas::testing::random_arch(GetParam().space, 11, GetParam().resolution);
  for (const auto& block : spec.blocks) {
    const Program program = lower_block(block);
    const Weights weights = random_weights(program, 5);
    const auto images = qnas::testing::random_images(program, 2, 7);
    QuantParams quant = calibrate(program, weights, images);
    auto shift = [](TensorQuant& t) {
      if (t.is_unsigned) return;
      t.is_unsigned = true;
      t.zero_point = 128;
    };
    for (size_t t = 0; t < quant.tensors.size(); ++t) {
      if (static_cast<int>(t) != program.input) shift(quant.tensors[t]);
    }
    // The pooled SE vector stays s8: its type then differs from its u8 source's.
    ReferenceExecutor reference(program, weights, &quant);
    OnednnPlan plan(program, weights, Precision::kInt8, 1, &quant);
    const float code =
        program.tensors[program.output].is_logits ? 1e-3f : quant.tensors[program.output].scale;
    EXPECT_LE(max_abs_diff(reference.run(images[0]), plan.run(images[0])), 1.01f * code)
        << block.stage << " block " << block.block_index << " " << block.type->name;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, EngineAgreement, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return info.param.name; });

TEST(EngineAgreement, BaselineWithSqueezeExciteHeadRuns) {
  const auto spec = space::mobilenet_v3_small(64, 10);
  const Program program = lower(spec);
  const Weights weights = random_weights(program, 3);
  ReferenceExecutor reference(program, weights);
  OnednnPlan plan(program, weights, Precision::kFp32, 1);
  const auto image = qnas::testing::random_image(3, 64, 9);
  const auto expected = reference.run(image);
  EXPECT_LE(max_abs_diff(expected, plan.run(image)), 1e-4f * std::max(1.0f, max_abs(expected)));
}

TEST(TimingWeights, HaveTheShapesAndVariancesOfTheRandomWeights) {
  const Program program = lower(space::mobilenet_v3_small(64, 10));
  const Weights normal = random_weights(program, 3), uniform = timing_weights(program, 3);
  ASSERT_EQ(normal.steps.size(), uniform.steps.size());
  double normal_sq = 0, uniform_sq = 0;
  size_t count = 0;
  for (size_t i = 0; i < normal.steps.size(); ++i) {
    const StepWeights &n = normal.steps[i], &u = uniform.steps[i];
    ASSERT_EQ(n.weight.size(), u.weight.size()) << "step " << i;
    ASSERT_EQ(n.bias.size(), u.bias.size()) << "step " << i;
    ASSERT_EQ(n.weight2.size(), u.weight2.size()) << "step " << i;
    ASSERT_EQ(n.bias2.size(), u.bias2.size()) << "step " << i;
    for (size_t j = 0; j < n.weight.size(); ++j) {
      normal_sq += double(n.weight[j]) * n.weight[j];
      uniform_sq += double(u.weight[j]) * u.weight[j];
    }
    count += n.weight.size();
  }
  ASSERT_GT(count, 10000u);
  // Same per-layer standard deviations, so the sums of squares agree to sampling noise (~1%).
  EXPECT_NEAR(uniform_sq / normal_sq, 1.0, 0.05);
  // And the values are deterministic: the same seed gives the same weights.
  EXPECT_EQ(timing_weights(program, 3).steps[1].weight, uniform.steps[1].weight);
}

TEST(OnednnPlan, RejectsWrongInputAndMissingQuant) {
  const auto spec = qnas::testing::random_arch("fmnistw-151122-000000", 1, 20);
  const Program program = lower(spec);
  const Weights weights = random_weights(program, 1);
  EXPECT_CONTAINS(qnas::testing::error_message([&] { OnednnPlan(program, weights, Precision::kInt8, 1); }),
                  "needs quantisation parameters");
  EXPECT_CONTAINS(qnas::testing::error_message([&] { OnednnPlan(program, weights, Precision::kFp32, 0); }),
                  "thread count");
  OnednnPlan plan(program, weights, Precision::kFp32, 1);
  EXPECT_CONTAINS(qnas::testing::error_message([&] { plan.run(std::vector<float>(5)); }),
                  "input has 5 values");
}

TEST(OnednnPlan, Int8UsesVnniKernelsWhenTheCpuHasThem) {
  const auto spec = qnas::testing::random_arch("onnxw-151122-023231", 2, 64);
  const Program program = lower(spec);
  const Weights weights = random_weights(program, 2);
  const QuantParams quant = calibrate(program, weights, qnas::testing::random_images(program, 1, 7));
  OnednnPlan plan(program, weights, Precision::kInt8, 1, &quant);
  int reference_kernels = 0;
  for (const auto& [name, count] : plan.implementations()) {
    if (name.rfind("ref", 0) == 0) {
      reference_kernels += count;
      ADD_FAILURE() << name << " used by " << count << " primitives";
    }
  }
  EXPECT_EQ(reference_kernels, 0) << "a primitive fell back to oneDNN's slow reference kernel";
  EXPECT_LE(plan.reorder_count(), 2);
  if (has_vnni()) {
    int vnni_kernels = 0;
    for (const auto& [name, count] : plan.implementations()) {
      if (name.find("vnni") != std::string::npos) vnni_kernels += count;
    }
    EXPECT_GT(vnni_kernels, 0);
  }
}

}  // namespace
