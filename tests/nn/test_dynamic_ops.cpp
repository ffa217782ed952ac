// Elastic layers against plain LibTorch ops on the sliced weights: a sub-configuration of a shared layer
// must compute exactly what a static layer holding that slice computes.
#include "nn/dynamic_ops.h"
#include "quant/collectives.h"

#include <gtest/gtest.h>

#include "test_util.h"

using namespace qnas::nn;

namespace {

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

TEST(DynamicConv2d, SmallerKernelIsTheCentreCrop) {
  torch::manual_seed(0);
  DynamicConv2d conv(8, 16, 7, 1, false);
  conv->set_active(16, 3);
  const auto x = torch::randn({2, 8, 10, 10});
  const auto expected = torch::conv2d(x, conv->weight.slice(2, 2, 5).slice(3, 2, 5), {}, 1, 1);
  EXPECT_LT(max_diff(conv->forward(x), expected), 1e-5);
}

TEST(DynamicConv2d, NarrowerWidthIsTheLeadingChannels) {
  torch::manual_seed(1);
  DynamicConv2d conv(16, 32, 5, 2, false);
  const auto x = torch::randn({1, 12, 9, 9});  // 12 of 16 input channels active
  conv->set_active(32, 5);
  const auto full = conv->forward(x);
  conv->set_active(8, 5);
  const auto narrow = conv->forward(x);
  EXPECT_EQ(narrow.sizes(), (std::vector<int64_t>{1, 8, 5, 5}));
  EXPECT_LT(max_diff(narrow, full.narrow(1, 0, 8)), 1e-5);
}

TEST(DynamicConv2d, DepthwiseFollowsTheInputWidth) {
  torch::manual_seed(2);
  DynamicConv2d conv(48, 48, 5, 1, true);
  conv->set_active(48, 3);
  const auto x = torch::randn({1, 24, 6, 6});
  const auto w = conv->weight.narrow(0, 0, 24).slice(2, 1, 4).slice(3, 1, 4);
  EXPECT_LT(max_diff(conv->forward(x), torch::conv2d(x, w, {}, 1, 1, 1, 24)), 1e-5);
}

TEST(DynamicConv2d, GradientsReachOnlyTheActiveSlice) {
  DynamicConv2d conv(4, 8, 5, 1, false);
  conv->set_active(2, 3);
  conv->forward(torch::randn({1, 3, 6, 6})).sum().backward();
  const auto g = conv->weight.grad();
  EXPECT_GT(g.narrow(0, 0, 2).narrow(1, 0, 3).slice(2, 1, 4).slice(3, 1, 4).abs().sum().item<double>(), 0.0);
  EXPECT_EQ(g.narrow(0, 2, 6).abs().sum().item<double>(), 0.0);  // inactive output channels
  EXPECT_EQ(g.narrow(1, 3, 1).abs().sum().item<double>(), 0.0);  // the input channel not fed
  EXPECT_EQ(g.slice(2, 0, 1).abs().sum().item<double>(), 0.0);   // outside the centre 3x3
}

TEST(DynamicConv2d, QuantisedModeUsesInt8WeightsPerChannel) {
  torch::manual_seed(3);
  DynamicConv2d conv(8, 8, 3, 1, false);
  qnas::quant::set_bits(*conv, 8);
  conv->eval();
  const auto x = torch::rand({1, 8, 5, 5});
  const auto y = conv->forward(x);
  // Against FP32: the error of 8-bit weights and inputs stays small relative to the output.
  qnas::quant::set_bits(*conv, 32);
  const auto y32 = conv->forward(x);
  EXPECT_LT(max_diff(y, y32), 0.02 * y32.abs().max().item<double>());
  EXPECT_GT(max_diff(y, y32), 0.0);
}

TEST(DynamicConv2d, RejectsConfigurationsOutsideTheLayer) {
  DynamicConv2d conv(8, 16, 5, 1, false);
  EXPECT_CONTAINS(qnas::testing::error_message([&] { conv->set_active(32, 3); }), "at most 16");
  EXPECT_CONTAINS(qnas::testing::error_message([&] { conv->set_active(8, 7); }), "odd kernels up to 5");
  EXPECT_CONTAINS(qnas::testing::error_message([&] {
                    conv->forward(torch::randn({1, 9, 4, 4}));
                  }),
                  "at most 8");
}

TEST(DynamicBatchNorm2d, UpdatesOnlyTheActiveChannelsStatistics) {
  DynamicBatchNorm2d bn(8);
  bn->train();
  const auto x = torch::randn({4, 3, 5, 5}) * 2 + 1;
  bn->forward(x);
  const auto mean = x.mean({0, 2, 3});
  EXPECT_LT(max_diff(bn->running_mean.narrow(0, 0, 3), mean * 0.1), 1e-5);
  EXPECT_EQ(bn->running_mean.narrow(0, 3, 5).abs().sum().item<double>(), 0.0);
  EXPECT_EQ(bn->running_var.narrow(0, 3, 5).sub(1).abs().sum().item<double>(), 0.0);
}

TEST(DynamicBatchNorm2d, CumulativeRecalibrationAveragesBatches) {
  DynamicBatchNorm2d bn(2);
  bn->momentum = -1;
  bn->reset_running_stats();
  bn->train();
  const auto a = torch::full({2, 2, 2, 2}, 1.0), b = torch::full({2, 2, 2, 2}, 3.0);
  bn->forward(a);
  bn->forward(b);
  EXPECT_LT(max_diff(bn->running_mean, torch::full({2}, 2.0)), 1e-6);
}

TEST(DynamicLinear, LeadingRowsAndColumns) {
  torch::manual_seed(4);
  DynamicLinear fc(16, 10);
  fc->set_active(4);
  const auto x = torch::randn({3, 12});
  const auto expected =
      torch::linear(x, fc->weight.narrow(0, 0, 4).narrow(1, 0, 12), fc->bias.narrow(0, 0, 4));
  EXPECT_LT(max_diff(fc->forward(x), expected), 1e-6);
}

}  // namespace

// Synchronised batch norm with the collectives of a single rank (sums are the identity) is plain batch
// norm: output, running statistics and the gradients of input, weight and bias.
TEST(DynamicBatchNorm2d, SynchronisedOnOneRankEqualsPlainBatchNorm) {
  torch::manual_seed(5);
  const torch::Tensor x0 = torch::randn({6, 8, 5, 5}) * 2 + 1, upstream = torch::randn({6, 5, 5, 5});
  auto run = [&](bool synchronised) {
    qnas::nn::DynamicBatchNorm2d bn(8);
    {
      torch::NoGradGuard no_grad;
      bn->weight.copy_(torch::linspace(0.5, 1.5, 8));
      bn->bias.copy_(torch::linspace(-0.2, 0.3, 8));
    }
    bn->train();
    qnas::quant::Collectives one_rank;
    one_rank.sum = [](const std::vector<torch::Tensor>&) {};
    one_rank.max = [](torch::Tensor&) {};
    one_rank.gather = [](const torch::Tensor& t) { return t.unsqueeze(0); };
    qnas::quant::set_collectives(synchronised ? &one_rank : nullptr);
    torch::Tensor x = x0.narrow(1, 0, 5).clone().requires_grad_(true);
    const torch::Tensor y = bn->forward(x);
    (y * upstream).sum().backward();
    qnas::quant::set_collectives(nullptr);
    return std::vector<torch::Tensor>{y.detach(),
                                      x.grad(),
                                      bn->weight.grad(),
                                      bn->bias.grad(),
                                      bn->running_mean.clone(),
                                      bn->running_var.clone()};
  };
  const auto plain = run(false), synced = run(true);
  const char* names[] = {"output", "d/dx", "d/dweight", "d/dbias", "running mean", "running var"};
  for (size_t i = 0; i < plain.size(); ++i) {
    EXPECT_TRUE(torch::allclose(synced[i], plain[i], 1e-4, 1e-5)) << names[i] << "\n"
                                                                  << synced[i] << "\n"
                                                                  << plain[i];
  }
}
