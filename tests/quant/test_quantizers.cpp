// Fake quantizers: forward values on hand-computed examples, gradients against the LSQ/LSQ+ formulas,
// quantisation error bounds, initialisation that covers the whole weight range, BatchQuant statistics.
#include "quant/quantizers.h"

#include <cmath>
#include <sstream>

#include <gtest/gtest.h>

#include "test_util.h"

using namespace qnas::quant;

namespace {

torch::Tensor tensor(std::vector<float> v) {
  return torch::tensor(v).reshape({1, static_cast<int64_t>(v.size())});
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, double tol = 1e-6) {
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_LE((a - b).abs().max().item<double>(), tol) << a << "\nvs\n" << b;
}

// Sets a quantizer's state without going through the first-batch initialisation.
void set_lsq_plus(LsqPlusActivation& q, float scale, float offset) {
  q->forward(torch::zeros({1, 1}));  // marks it initialised
  torch::NoGradGuard no_grad;
  q->scale.fill_(scale);
  q->offset.fill_(offset);
}

TEST(LsqPlusActivation, ForwardMatchesAHandComputedExample) {
  LsqPlusActivation q(2);  // Qp = 3
  set_lsq_plus(q, 0.5f, -0.3f);
  q->eval();
  // The contract (core/quant_contract.h): zero point round(0.3 / 0.5) = 1; x / 0.5 = [-2, -0.5, 0.2,
  // 0.6, 1.6, 4]
  // -> round (half to even) + 1 = [-1, 1, 1, 2, 3, 5] -> clamp [0, 3] -> (code - 1) * 0.5
  EXPECT_EQ(q->zero_point(), 1);
  const auto y = q->forward(tensor({-1.0f, -0.25f, 0.1f, 0.3f, 0.8f, 2.0f}));
  expect_close(y, tensor({-0.5f, 0.0f, 0.0f, 0.5f, 1.0f, 1.0f}));
}

TEST(LsqPlusActivation, FirstBatchSetsMinMaxRangeAndFloatModePassesThrough) {
  LsqPlusActivation q(8);
  const auto x = tensor({-0.5f, 0.0f, 2.0f, 1.5f});
  q->forward(x);
  EXPECT_NEAR(q->scale.item<double>(), 2.5 / 255.0, 1e-7);
  EXPECT_NEAR(q->offset.item<double>(), -0.5, 1e-7);
  q->set_bits(kFloatBits);
  expect_close(q->forward(x), x, 0.0);
}

TEST(LsqPlusActivation, GradientsFollowTheLsqPlusFormulas) {
  LsqPlusActivation q(2);
  const double s = 0.5, b = -0.3;
  set_lsq_plus(q, static_cast<float>(s), static_cast<float>(b));
  q->train();
  const std::vector<float> xs = {-1.0f, 0.1f, 0.3f, 0.55f, 0.8f, 2.0f};
  const std::vector<float> up = {0.3f, -1.2f, 0.7f, 0.4f, -0.9f, 1.1f};
  auto x = tensor(xs).requires_grad_(true);
  (q->forward(x) * tensor(up)).sum().backward();
  // y = (clamp(round(x/s) + z, 0, Qp) - z) * s with z = round(-b/s), straight-through rounding:
  // inside, dy/dx = 1, dy/ds = round(x/s) - x/s, dy/db = 0 (LSQ+'s terms cancel as before);
  // clipped at code c (0 or Qp), dy/ds = c - z - b/s and dy/db = 1 (through z's dz/db = -1/s).
  const double qp = 3, g = 1.0 / std::sqrt(xs.size() * qp), z = std::nearbyint(-b / s);
  double ds = 0, db = 0;
  std::vector<float> dx;
  for (size_t i = 0; i < xs.size(); ++i) {
    const double v = xs[i] / s, code = std::nearbyint(v) + z;
    if (code < 0 || code > qp) {
      const double c = code < 0 ? 0 : qp;
      ds += up[i] * (c - z - b / s);
      db += up[i];
      dx.push_back(0);
    } else {
      ds += up[i] * (std::nearbyint(v) - v);
      dx.push_back(up[i]);
    }
  }
  expect_close(x.grad(), tensor(dx));
  EXPECT_NEAR(q->scale.grad().item<double>(), g * ds, 1e-6);
  EXPECT_NEAR(q->offset.grad().item<double>(), g * db, 1e-6);
}

TEST(LsqPlusActivation, ErrorIsAtMostHalfAStepInsideTheRange) {
  LsqPlusActivation q(4);
  set_lsq_plus(q, 0.1f, -0.3f);
  q->eval();
  const auto x = torch::rand({1, 1000}) * (15 * 0.1) - 0.3;  // exactly the representable range
  EXPECT_LE((q->forward(x) - x).abs().max().item<double>(), 0.05 + 1e-6);
}

TEST(LsqWeight, PerChannelInitCoversTheWholeRange) {
  torch::manual_seed(0);
  const auto w = torch::randn({16, 8, 3, 3});
  LsqWeight q(16, /*per_channel=*/true, 8);
  q->eval();
  const auto y = q->forward(w);
  const auto channel_max = w.abs().flatten(1).amax(1);
  expect_close(q->scale * 127, channel_max, 1e-5);
  // Nothing is clipped: every weight is within half a step of its quantised value.
  const auto step = (channel_max / 127).reshape({16, 1, 1, 1});
  EXPECT_TRUE(((y - w).abs() <= step / 2 + 1e-6).all().item<bool>());
}

TEST(LsqWeight, TheOfficialInitWouldClipAboutHalfTheRange) {
  // The official SpaceEvo LSQ+ init computes max(2 * (max|w|, eps)) / (2^b - 1): the tuple repetition makes
  // it max|w| / 255 while the weight range is [-127, 127] steps, so only |w| <= 0.498 max|w| is
  // representable.
  torch::manual_seed(1);
  const auto w = torch::randn({4096});
  const double official_scale = w.abs().max().item<double>() / 255.0;
  const double covered = official_scale * 127 / w.abs().max().item<double>();
  EXPECT_NEAR(covered, 127.0 / 255.0, 1e-9);
  const double clipped = (w.abs() > official_scale * 127).to(torch::kFloat).mean().item<double>();
  EXPECT_GT(clipped, 0.005);  // real weights beyond half the max are lost
  LsqWeight ours(1, false, 8);
  ours->eval();
  const auto y = ours->forward(w);
  EXPECT_LE((y - w).abs().max().item<double>(), ours->scale.item<double>() / 2 + 1e-6);
}

TEST(LsqWeight, ScaleGradientFollowsTheLsqFormula) {
  LsqWeight q(1, false, 2);  // Qp = 1, range [-1, 1] steps
  q->forward(torch::ones({1, 1}));
  {
    torch::NoGradGuard no_grad;
    q->scale.fill_(0.4f);
  }
  q->train();
  const std::vector<float> ws = {-0.9f, -0.1f, 0.25f, 0.7f};
  const std::vector<float> up = {1.0f, 2.0f, -1.0f, 0.5f};
  auto w = tensor(ws).requires_grad_(true);
  (q->forward(w) * tensor(up)).sum().backward();
  double ds = 0;
  for (size_t i = 0; i < ws.size(); ++i) {
    const double v = ws[i] / 0.4;
    ds += up[i] * (v < -1 ? -1.0 : v > 1 ? 1.0 : std::nearbyint(v) - v);
  }
  EXPECT_NEAR(q->scale.grad().item<double>(), ds / std::sqrt(4.0 * 1), 1e-6);
}

TEST(LsqWeight, ElasticWidthUsesTheLeadingChannelScales) {
  LsqWeight q(8, true, 8);
  q->forward(torch::randn({8, 4}));
  const auto scales = q->scale.detach().clone();
  q->eval();
  const auto narrow = torch::randn({3, 4}) * 0.01;
  const auto y = q->forward(narrow);
  EXPECT_EQ(y.size(0), 3);
  expect_close(q->scale.detach(), scales, 0.0);  // already initialised: the narrower call changes nothing
  EXPECT_CONTAINS(qnas::testing::error_message([&] {
                    q->forward(torch::randn({9, 4}));
                  }),
                  "8 channel scales");
}

// One channel per column of a [N, C] tensor: a column vector is one channel, so its range is min and max.
torch::Tensor column(std::vector<float> v) {
  return torch::tensor(v).reshape({static_cast<int64_t>(v.size()), 1});
}

TEST(BatchQuantActivation, TrainingUsesBatchRangeAndCalibrationFillsRunningStatistics) {
  BatchQuantActivation q(8);
  q->train();
  const auto x = torch::linspace(-1.0, 3.0, 101).reshape({101, 1});
  const auto y = q->forward(x);
  EXPECT_LE((y - x).abs().max().item<double>(), 4.0 / 255 / 2 + 1e-6);
  q->reset_statistics();
  q->set_calibrating(true);
  q->forward(column({-1.0f, 1.0f}));
  q->forward(column({-3.0f, 5.0f}));
  q->set_calibrating(false);
  EXPECT_NEAR(q->running_min.item<double>(), -2.0, 1e-6);
  EXPECT_NEAR(q->running_max.item<double>(), 3.0, 1e-6);
  q->eval();
  const auto [scale, offset] = q->scale_and_offset(x);
  EXPECT_NEAR(scale.item<double>(), 5.0 / 255, 1e-7);
  EXPECT_NEAR(offset.item<double>(), -2.0, 1e-7);
  // What the engine stores: |scale| and the offset as an integer zero point, round(2 / (5 / 255)) = 102.
  EXPECT_NEAR(q->inference_scale(), 5.0 / 255, 1e-7);
  EXPECT_EQ(q->inference_zero_point(), 102);
}

// QFA's range: per channel the extremes over batch and positions, 0 included, averaged over the channels.
TEST(BatchQuantActivation, RangeIsTheChannelAverageOfExtremesWithZeroIncluded) {
  BatchQuantActivation q(8);
  q->reset_statistics();
  q->set_calibrating(true);
  // [N=2, C=2, 1, 1]: channel 0 holds {1, 3} (its range [0, 3] with 0), channel 1 holds {-2, 0.5}.
  q->forward(torch::tensor({1.0f, -2.0f, 3.0f, 0.5f}).reshape({2, 2, 1, 1}));
  q->set_calibrating(false);
  EXPECT_NEAR(q->running_min.item<double>(), (0.0 - 2.0) / 2, 1e-6);
  EXPECT_NEAR(q->running_max.item<double>(), (3.0 + 0.5) / 2, 1e-6);
  // In calibration the output is quantised with the batch's range, as in training, so BN recalibration sees
  // what the quantised network feeds it: -2 lies below [-1, 1.75] and is clipped to it.
  q->set_calibrating(true);
  const auto y = q->forward(torch::tensor({1.0f, -2.0f, 3.0f, 0.5f}).reshape({2, 2, 1, 1}));
  EXPECT_NEAR(y.flatten()[1].item<double>(), -1.0, 2.75 / 255);
}

TEST(BatchQuantActivation, OffsetGradientCountsOutOfRangeElements) {
  BatchQuantActivation q(2);
  q->train();
  {
    torch::NoGradGuard no_grad;
    q->multiplier_logit.fill_(std::log(std::exp(0.5 * std::log(2.0)) - 1.0));  // multiplier 0.5
  }
  const std::vector<float> xs = {0.0f, 0.2f, 0.45f, 1.0f};  // range 1 -> scale 0.5 / 3, top of range at 0.5
  const std::vector<float> up = {1.0f, 2.0f, 3.0f, 4.0f};
  auto x = column(xs).requires_grad_(true);
  (q->forward(x) * column(up)).sum().backward();
  // Only x = 1.0 lies above the quantised range [0, 0.5]: d/d offset = g * 4.
  EXPECT_NEAR(q->offset_shift.grad().item<double>(), 4.0 / std::sqrt(1.0 * 3), 1e-6);
  EXPECT_NEAR(x.grad()[3][0].item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(x.grad()[1][0].item<double>(), 2.0, 1e-12);
}

// `activation_quantizer: batchquant`: the LSQ+ quantizer a network owns delegates to BatchQuant, counts once,
// and reports the calibrated range as the engine's scale and zero point.
TEST(LsqPlusActivation, InBatchQuantModeItFollowsTheBatchAndReportsTheCalibratedRange) {
  torch::nn::Sequential net(LsqPlusActivation(8));
  use_batch_range(*net);
  auto* q = net[0]->as<LsqPlusActivationImpl>();
  ASSERT_TRUE(q->uses_batch_range());
  EXPECT_EQ(count_quantizers(*net), 1);
  EXPECT_TRUE(net->named_parameters().contains("0.batch_range.multiplier_logit"));
  set_bits(*net, 4);
  EXPECT_EQ(q->batch_range->bits(), 4);
  set_bits(*net, 8);

  net->train();
  const auto x = torch::linspace(-1.0, 3.0, 101).reshape({101, 1});
  BatchQuantActivation alone(8);
  alone->train();
  EXPECT_TRUE(torch::equal(net->forward(x), alone->forward(x)));

  EXPECT_EQ(set_batch_range_calibration(*net, true), 1);
  net->forward(column({-1.0f, 1.0f}));
  net->forward(column({-3.0f, 5.0f}));
  set_batch_range_calibration(*net, false);
  EXPECT_NEAR(q->effective_scale(), 5.0 / 255, 1e-7);
  EXPECT_EQ(q->zero_point(), 102);
  EXPECT_TRUE(q->initialized());
}

TEST(Quantizers, OneSwitchSetsEveryModuleAndBadBitsAreRefused) {
  torch::nn::Sequential net(LsqPlusActivation(), LsqWeight(4, true), BatchQuantActivation());
  set_bits(*net, 4);
  EXPECT_EQ(count_quantizers(*net), 3);
  EXPECT_EQ(net[0]->as<LsqPlusActivationImpl>()->bits(), 4);
  EXPECT_EQ(net[1]->as<LsqWeightImpl>()->bits(), 4);
  EXPECT_EQ(net[2]->as<BatchQuantActivationImpl>()->bits(), 4);
  EXPECT_CONTAINS(qnas::testing::error_message([&] { set_bits(*net, 5); }), "bit-width 5 is not supported");
}

}  // namespace

// Below 4 bits min-max leaves most of a bell-shaped tensor in the zero bin; the scale starts at LSQ's
// 2 <|x|> / sqrt(Qp) instead, never wider than min-max. 4 bits keeps min-max.
TEST(LsqWeight, BelowFourBitsTheScaleStartsAtLsqsInit) {
  torch::manual_seed(2);
  const auto w = torch::randn({4, 64});
  for (int bits : {2, 3, 4}) {
    LsqWeight q(4, /*per_channel=*/true, bits);
    q->eval();
    q->forward(w);
    const double qp = (1 << (bits - 1)) - 1;
    torch::Tensor expected = w.abs().amax(1) / qp;
    if (bits < 4) expected = torch::minimum(expected, 2 * w.abs().mean(1) / std::sqrt(qp));
    expect_close(q->scale.detach(), expected, 1e-5);
  }
  // A 2-bit tensor of Gaussian weights then keeps about half of them away from zero, not a few.
  LsqWeight q(1, false, 2);
  q->eval();
  const auto y = q->forward(torch::randn({4096}));
  const double nonzero = (y != 0).to(torch::kFloat).mean().item<double>();
  EXPECT_GT(nonzero, 0.4);
  EXPECT_LT(nonzero, 0.8);
}

TEST(LsqPlusActivation, BelowFourBitsTheScaleStartsAtLsqsInit) {
  torch::manual_seed(3);
  const auto x = torch::relu(torch::randn({8, 256})) - 0.25;  // lo = -0.25
  LsqPlusActivation q(2);
  q->eval();
  q->forward(x);
  const double lo = x.min().item<double>(), hi = x.max().item<double>();
  const double expected = std::min((hi - lo) / 3, 2 * (x - lo).abs().mean().item<double>() / std::sqrt(3.0));
  EXPECT_NEAR(q->scale.item<double>(), expected, 1e-5);
  EXPECT_NEAR(q->offset.item<double>(), lo, 1e-6);
}

// QFA: one scale per bit-width over the same weights; 8 bits is the quantizer's own "scale".
TEST(ScaleBank, EachBitWidthKeepsItsOwnScale) {
  torch::manual_seed(4);
  const auto w = torch::randn({2, 16});
  LsqWeight q(2, true, 8);
  q->enable_bit_bank({2, 4});
  q->eval();
  const auto names = q->named_parameters();
  EXPECT_TRUE(names.contains("scale") && names.contains("scale_b2") && names.contains("scale_b4"));
  EXPECT_FALSE(names.contains("scale_b8"));
  q->forward(w);
  const auto s8 = q->scale.detach().clone();
  expect_close(s8, w.abs().amax(1) / 127, 1e-6);
  q->set_bits(4);
  EXPECT_FALSE(q->initialized());  // a bit-width of its own: initialised on its first batch
  q->forward(w);
  const auto s4 = q->scale.detach().clone();
  expect_close(s4, w.abs().amax(1) / 7, 1e-6);
  expect_close(q->named_parameters()["scale"].detach(), s8, 0.0);  // the 8-bit scale is untouched
  q->set_bits(32);
  expect_close(q->forward(w), w, 0.0);
  q->set_bits(2);
  q->forward(w);
  q->set_bits(4);
  EXPECT_TRUE(q->initialized());
  expect_close(q->scale.detach(), s4, 0.0);
  EXPECT_CONTAINS(qnas::testing::error_message([&] { q->set_bits(3); }), "3 bits is not in its bit bank");
  EXPECT_CONTAINS(qnas::testing::error_message([&] { q->enable_bit_bank({2}); }), "already enabled");

  // A checkpoint round trip keeps every entry and its initialisation.
  torch::serialize::OutputArchive out;
  q->save(out);
  std::stringstream stream;
  out.save_to(stream);
  LsqWeight loaded(2, true, 8);
  loaded->enable_bit_bank({2, 4});
  torch::serialize::InputArchive in;
  in.load_from(stream);
  loaded->load(in);
  loaded->set_bits(4);
  EXPECT_TRUE(loaded->initialized());
  expect_close(loaded->scale.detach(), s4, 0.0);
  loaded->set_bits(8);
  expect_close(loaded->scale.detach(), s8, 0.0);
}

TEST(ScaleBank, ActivationEntriesHaveTheirOwnOffsets) {
  LsqPlusActivation q(8);
  q->enable_bit_bank({3});
  q->eval();
  const auto x = torch::linspace(-1, 3, 101);
  q->forward(x);
  const double s8 = q->scale.item<double>();
  EXPECT_NEAR(s8, 4.0 / 255, 1e-6);
  q->set_bits(3);
  q->forward(x + 1);  // another range: only the 3-bit entry sees it
  EXPECT_NEAR(q->offset.item<double>(), 0.0, 1e-6);
  q->set_bits(8);
  EXPECT_NEAR(q->scale.item<double>(), s8, 1e-9);
  EXPECT_NEAR(q->offset.item<double>(), -1.0, 1e-6);
}
