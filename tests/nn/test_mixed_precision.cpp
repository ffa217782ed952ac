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

// A weight moved below its trained bits gets the per-channel scale of least rounding error against the weight
// the network computed with (its 8-bit fake-quant): every layer rounds closer than at the kept range, 4-bit
// codes stay integers in [-7, 7], weights kept at 8 bits and every input keep their ranges, and the network's
// outputs move less from the 8-bit network's than with the kept ranges.
TEST(MixedPrecision, FittedLowerWeightsRoundCloserThanTheKeptRange) {
  StaticNet kept = trained_int8_net("fmnistw-151122-000000");
  StaticNet fitted = trained_int8_net("fmnistw-151122-000000");
  auto h = quant_layer_handles(*fitted);
  auto hk = quant_layer_handles(*kept);
  torch::NoGradGuard no_grad;
  // A trained range clips: QAT leaves the largest weights outside it, and they must not widen the 4-bit one.
  for (auto& handle : h) handle.weight_quant->scale.mul_(0.5);
  for (auto& handle : hk) handle.weight_quant->scale.mul_(0.5);
  std::vector<torch::Tensor> trained_weights;
  for (auto& handle : h) trained_weights.push_back(handle.weight_quant(handle.weight).flatten(1));
  torch::manual_seed(1);
  const torch::Tensor images = torch::randn({8, 1, 28, 28});
  const torch::Tensor reference = fitted->forward(images);
  auto bits = space::BitAssignment::uniform(fitted->spec(), 4, 8);
  bits.layers[0] = {8, 8};
  const torch::Tensor stem_scale = h[0].weight_quant->scale.clone();
  const torch::Tensor input_scale = h[1].input_quant->scale.clone();
  apply_bits(*kept, bits, Scales::kKeepRange);
  apply_bits(*fitted, bits, Scales::kFitLowerBits);
  EXPECT_TRUE(torch::equal(h[0].weight_quant->scale, stem_scale)) << "the 8-bit stem keeps its scale";
  EXPECT_TRUE(torch::equal(h[1].input_quant->scale, input_scale)) << "inputs keep their range";
  double fitted_total = 0, kept_total = 0;
  for (size_t i = 1; i < h.size(); ++i) {
    ASSERT_EQ(h[i].weight_quant->bits(), 4);
    const torch::Tensor wf = h[i].weight_quant(h[i].weight).flatten(1);
    const torch::Tensor wk = hk[i].weight_quant(hk[i].weight).flatten(1);
    const torch::Tensor fitted_error = (wf - trained_weights[i]).pow(2).sum(1);
    const torch::Tensor kept_error = (wk - trained_weights[i]).pow(2).sum(1);
    EXPECT_LE(fitted_error.sum().item<double>(), kept_error.sum().item<double>() * (1 + 1e-6))
        << "layer " << i;
    fitted_total += fitted_error.sum().item<double>();
    kept_total += kept_error.sum().item<double>();
    const torch::Tensor codes = wf / h[i].weight_quant->scale.reshape({-1, 1});
    EXPECT_TRUE(torch::allclose(codes, codes.round(), 0, 1e-3)) << "layer " << i;
    EXPECT_LE(codes.abs().max().item<double>(), 7.0 + 1e-3) << "layer " << i;
  }
  EXPECT_LT(fitted_total, kept_total);
  const double fitted_drift = (fitted->forward(images) - reference).pow(2).mean().item<double>();
  const double kept_drift = (kept->forward(images) - reference).pow(2).mean().item<double>();
  EXPECT_TRUE(std::isfinite(fitted_drift));
  EXPECT_LT(fitted_drift, kept_drift);
}

// An input moved below 4 bits would keep 3 levels over its 8-bit range: it forgets the range instead and the
// next batch initialises it (min-max capped by LSQ's 2<|x - min|>/sqrt(Qp)), while a 4-bit input keeps its
// range stretched.
TEST(MixedPrecision, AnInputBelowFourBitsTakesAFreshRangeFromTheNextBatch) {
  StaticNet net = trained_int8_net("fmnistw-151122-000000");
  auto h = quant_layer_handles(*net);
  auto bits = space::BitAssignment::uniform(net->spec(), 8, 8);
  bits.layers[2] = {2, 2};
  bits.layers[3] = {4, 4};
  ASSERT_NE(h[2].input_quant.get(), h[3].input_quant.get());
  const float kept_range_4 = h[3].input_quant->effective_scale() * 255;
  const float range_8 = h[2].input_quant->effective_scale() * 255;
  apply_bits(*net, bits, Scales::kFitLowerBits);
  EXPECT_FALSE(h[2].input_quant->initialized());
  EXPECT_EQ(h[2].input_quant->bits(), 2);
  EXPECT_NEAR(h[3].input_quant->effective_scale() * 15, kept_range_4, 1e-4 * kept_range_4);
  torch::NoGradGuard no_grad;
  torch::manual_seed(2);
  EXPECT_TRUE(torch::isfinite(net->forward(torch::randn({4, 1, 28, 28}))).all().item<bool>());
  ASSERT_TRUE(h[2].input_quant->initialized());
  EXPECT_LT(h[2].input_quant->effective_scale() * 3, range_8);
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
