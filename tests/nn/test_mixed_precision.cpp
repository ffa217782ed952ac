// A bit assignment on a static network: each quantised layer's weight and input quantizer found, bits set
// with the trained range kept, a tensor read by two layers at the higher of their bits, and a 4-bit layer's
// weights on exactly 2^4 - 1 levels.
#include "nn/mixed_precision.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "quant/hessian.h"
#include "space/sampling.h"
#include "space/search_space.h"

namespace qnas::nn {
namespace {

StaticNet trained_int8_net(const std::string& space_text) {
  const auto space = space::SearchSpace::parse(space_text);
  torch::manual_seed(0);
  StaticNet net(space::build_arch_spec(space, space::min_subnet(space)));
  quant::set_bits(*net, 8);
  net->train();
  net->forward(torch::randn({4, 1, 28, 28}));  // initialises every quantizer (min-max)
  net->eval();
  return net;
}

TEST(MixedPrecision, HandlesCoverEveryQuantisedLayerInOrder) {
  StaticNet net = trained_int8_net("fmnistw-151122-000000");
  const auto ql = space::quant_layers(net->spec());
  const auto h = quant_layer_handles(*net);
  ASSERT_EQ(h.size(), ql.size());
  for (size_t i = 0; i < ql.size(); ++i) {
    EXPECT_EQ(h[i].weight.size(0), ql[i].cout) << ql[i].name;
    EXPECT_EQ(h[i].weight.numel(), ql[i].weights) << ql[i].name;
  }
  EXPECT_EQ(h[0].input_quant.get(), net->input_quant.get()) << "the stem reads the image";
}

TEST(MixedPrecision, ApplyBitsKeepsTheTrainedRangeAndTakesTheHigherBitsOfSharedInputs) {
  StaticNet net = trained_int8_net("fmnistw-151122-000000");
  const auto ql = space::quant_layers(net->spec());
  auto h = quant_layer_handles(*net);
  auto bits = space::BitAssignment::uniform(net->spec(), 8, 8);
  // A projection and the block's first layer read the same tensor: give them different input bits.
  size_t projection = ql.size();
  for (size_t i = 0; i < ql.size(); ++i)
    if (ql[i].part == space::QuantLayer::Part::kProjection) projection = i;
  ASSERT_LT(projection, ql.size()) << "the min subnet of this space has a projection";
  size_t first_of_block = 0;
  for (size_t i = 0; i < ql.size(); ++i)
    if (ql[i].block == ql[projection].block && ql[i].layer == 0) first_of_block = i;
  EXPECT_EQ(h[first_of_block].input_quant.get(), h[projection].input_quant.get());
  bits.layers[first_of_block] = {4, 4};
  bits.layers[projection] = {4, 2};
  const size_t other = first_of_block + 1;
  bits.layers[other] = {2, 3};
  const torch::Tensor w_range = h[first_of_block].weight_quant->scale.clone() * 127;
  const torch::Tensor a_range = h[other].input_quant->scale.clone() * 255;
  apply_bits(*net, bits);
  EXPECT_EQ(h[first_of_block].weight_quant->bits(), 4);
  EXPECT_EQ(h[projection].weight_quant->bits(), 4);
  EXPECT_EQ(h[first_of_block].input_quant->bits(), 4) << "max(4, 2) for the shared block input";
  EXPECT_EQ(h[other].input_quant->bits(), 3);
  EXPECT_EQ(h[other].weight_quant->bits(), 2);
  EXPECT_TRUE(torch::allclose(h[first_of_block].weight_quant->scale * 7, w_range, 1e-5, 1e-7));
  EXPECT_TRUE(torch::allclose(h[other].input_quant->scale * 7, a_range, 1e-5, 1e-7));

  // A 4-bit layer's fake-quantised weights sit on integer codes in [-7, 7] of its per-channel scale.
  torch::NoGradGuard no_grad;
  const torch::Tensor wq = h[first_of_block].weight_quant(h[first_of_block].weight);
  const torch::Tensor s = h[first_of_block].weight_quant->scale.reshape({-1, 1, 1, 1});
  const torch::Tensor codes = wq / s;
  EXPECT_TRUE(torch::allclose(codes, codes.round(), 0, 1e-3));
  EXPECT_LE(codes.abs().max().item<double>(), 7.0 + 1e-3);
  EXPECT_TRUE(torch::isfinite(net->forward(torch::randn({2, 1, 28, 28}))).all().item<bool>());

  auto wrong = bits;
  wrong.layers.pop_back();
  EXPECT_THROW(apply_bits(*net, wrong), Error);
}

// HAWQ differentiates the loss twice through every activation a space uses (SE's hard sigmoid, hardswish,
// swish, relu6): LibTorch 1.13 has no double backward for hardsigmoid, which this network would hit.
TEST(MixedPrecision, HessianTracesRunThroughEveryActivation) {
  StaticNet net = trained_int8_net("fmnistw-151122-000000");
  quant::set_bits(*net, 32);
  std::vector<torch::Tensor> weights;
  for (const auto& h : quant_layer_handles(*net)) weights.push_back(h.weight);
  torch::manual_seed(1);
  const torch::Tensor images = torch::randn({4, 1, 28, 28});
  const torch::Tensor labels = torch::tensor({0, 1, 2, 3}, torch::kLong);
  quant::HutchinsonOptions o;
  o.max_iterations = 2;
  o.min_iterations = 2;
  const auto r = quant::hutchinson_traces(
      [&] { return torch::nn::functional::cross_entropy(net->forward(images), labels); }, weights, o);
  ASSERT_EQ(r.traces.size(), weights.size());
  double total = 0;
  for (const auto& t : r.traces) {
    EXPECT_TRUE(std::isfinite(t.trace));
    total += std::abs(t.trace);
  }
  EXPECT_GT(total, 0.0);
}

}  // namespace
}  // namespace qnas::nn
