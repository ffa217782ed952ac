// The fused fake-quant ops against their plain-op references (the ncnn pattern: one reference, one optimised
// kernel, one comparison): values bit for bit, the same elements clipped, input gradients within 1e-6
// (relative), scale and offset gradients as accurate as the reference's (see expect_as_accurate); per tensor
// and per channel, 2/3/4/8 bits, with and without an offset, channels-last inputs, and sums that do not
// depend on the thread count. Then the modules: fused and reference kernels give the same training step, and
// the initialisation flag survives a checkpoint without a device read per step.
#include "quant/fake_quant_ops.h"

#include <ATen/Parallel.h>

#include <limits>
#include <sstream>

#include <gtest/gtest.h>

#include "core/error.h"
#include "quant/quantizers.h"

using namespace qnas::quant;

namespace {

struct Grads {
  torch::Tensor y, x, scale, offset;
};

enum class Formula { kAffine, kZeroPoint };

Grads run(Formula formula, bool fused, const torch::Tensor& x0, const torch::Tensor& s0,
          const torch::Tensor& b0, int lo, int hi, const torch::Tensor& upstream) {
  torch::Tensor x = x0.detach().clone().requires_grad_(true);
  if (x0.is_contiguous(at::MemoryFormat::ChannelsLast) && !x0.is_contiguous()) {
    x = x0.detach().clone(at::MemoryFormat::ChannelsLast).requires_grad_(true);
  }
  torch::Tensor s = s0.detach().clone().requires_grad_(true), b = b0.detach().clone().requires_grad_(true);
  torch::Tensor y;
  if (formula == Formula::kAffine) {
    y = fused ? fake_quant_affine(x, s, b, lo, hi) : reference_fake_quant_affine(x, s, b, lo, hi);
  } else {
    y = fused ? fake_quant_zero_point(x, s, b, hi) : reference_fake_quant_zero_point(x, s, b, hi);
  }
  (y * upstream).sum().backward();
  return {y.detach(), x.grad(), s.grad(), b.grad()};
}

// Scale and offset gradients are sums over the whole tensor, so float32 rounding alone moves the reference's
// by up to ~1e-5 relative here. The exact value is the reference chain run in float64: the fused gradient
// must be within twice the float32 reference's own error of it, or within 1e-6 of the gradient's magnitude.
void expect_as_accurate(const torch::Tensor& fused, const torch::Tensor& reference,
                        const torch::Tensor& exact, const std::string& what) {
  ASSERT_TRUE(fused.defined() && reference.defined() && exact.defined()) << what;
  ASSERT_EQ(fused.sizes(), reference.sizes()) << what;
  const torch::Tensor truth = exact.to(torch::kFloat);
  const double magnitude = std::max(1.0, truth.abs().max().item<double>());
  const double reference_error = (reference - truth).abs().max().item<double>();
  const double fused_error = (fused - truth).abs().max().item<double>();
  EXPECT_LE(fused_error, std::max(2 * reference_error, 1e-6 * magnitude))
      << what << ": fused " << fused_error << ", float32 reference " << reference_error << " from float64";
}

struct Case {
  Formula formula;
  int bits;
  bool per_channel;
  bool with_offset;
  bool channels_last;
};

std::string name_of(const Case& c) {
  std::ostringstream o;
  o << (c.formula == Formula::kAffine ? "affine" : "zero_point") << c.bits << (c.per_channel ? "_pc" : "_pt")
    << (c.with_offset ? "_offset" : "") << (c.channels_last ? "_nhwc" : "");
  return o.str();
}

class FakeQuantOps : public ::testing::TestWithParam<Case> {};

TEST_P(FakeQuantOps, FusedMatchesReference) {
  const Case c = GetParam();
  torch::manual_seed(c.bits * 7 + c.per_channel);
  const int64_t channels = 6;
  torch::Tensor x = torch::randn({channels, 5, 9, 9}) * 2.0 + 0.5;
  // Exact halves on the grid, to check round-half-to-even agrees.
  x.index_put_({0, 0, 0}, torch::arange(9).to(torch::kFloat) * 0.25f + 0.125f);
  if (c.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  const int qmax_signed = (1 << (c.bits - 1)) - 1, qmax_unsigned = (1 << c.bits) - 1;
  const bool affine = c.formula == Formula::kAffine;
  const int lo = affine && !c.with_offset ? -qmax_signed : 0;
  const int hi = affine && !c.with_offset ? qmax_signed : qmax_unsigned;
  const int64_t n = c.per_channel ? channels : 1;
  // A range of about 8 around the data (mean 0.5, sd 2): some elements clip, most do not.
  const torch::Tensor s = (torch::rand({n}) * 0.3 + 0.85) * 8.0 / (hi - lo);
  torch::Tensor b = torch::zeros({n});
  if (c.with_offset) {
    b = affine ? -torch::rand({n}) * 2.0 : torch::round(torch::rand({n}) * hi * 0.5);
  }
  const torch::Tensor upstream = torch::randn(x.sizes());
  const Grads f = run(c.formula, true, x, s, b, lo, hi, upstream);
  const Grads r = run(c.formula, false, x, s, b, lo, hi, upstream);
  const Grads d = run(c.formula, false, x.to(torch::kDouble), s.to(torch::kDouble), b.to(torch::kDouble), lo,
                      hi, upstream.to(torch::kDouble));
  EXPECT_TRUE(torch::equal(f.y, r.y)) << "values differ by " << (f.y - r.y).abs().max().item<double>();
  // The reference's d/dx is (g * s) / s, the fused op's g itself: they differ by float rounding only.
  EXPECT_TRUE(torch::allclose(f.x, r.x, 1e-6, 0))
      << "d/dx differs by " << (f.x - r.x).abs().max().item<double>();
  EXPECT_TRUE(torch::equal(f.x != 0, r.x != 0)) << "the fused op clips other elements";
  expect_as_accurate(f.scale, r.scale, d.scale, "d/dscale");
  expect_as_accurate(f.offset, r.offset, d.offset, affine ? "d/doffset" : "d/dzero_point");
  // Something was clipped and something was not, so every gradient term was exercised.
  const double inside = (f.x != 0).to(torch::kFloat).mean().item<double>();
  EXPECT_GT(inside, 0.05);
  EXPECT_LT(inside, 0.999);
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (Formula f : {Formula::kAffine, Formula::kZeroPoint}) {
    for (int bits : {2, 3, 4, 8}) {
      for (bool pc : {false, true}) {
        for (bool offset : {false, true}) cases.push_back({f, bits, pc, offset, false});
      }
      cases.push_back({f, bits, false, true, true});
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(All, FakeQuantOps, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return name_of(info.param); });

// A ReLU or ReLU6 fused into the zero-point formula against hardtanh followed by the reference.
Grads run_clamped(bool fused, const torch::Tensor& x0, const torch::Tensor& s0, const torch::Tensor& z0,
                  int qmax, double lo, double hi, const torch::Tensor& upstream) {
  torch::Tensor x = x0.detach().clone(at::MemoryFormat::Preserve).requires_grad_(true);
  torch::Tensor s = s0.detach().clone().requires_grad_(true), z = z0.detach().clone().requires_grad_(true);
  const torch::Tensor y = fused ? fake_quant_zero_point_clamped(x, s, z, qmax, lo, hi)
                                : reference_fake_quant_zero_point_clamped(x, s, z, qmax, lo, hi);
  (y * upstream).sum().backward();
  return {y.detach(), x.grad(), s.grad(), z.grad()};
}

TEST(FakeQuantOps, FusedActivationMatchesHardtanhThenReference) {
  const double kInf = std::numeric_limits<double>::infinity();
  for (const double hi_clamp : {6.0, kInf}) {  // ReLU6, ReLU
    for (int bits : {2, 3, 4, 8}) {
      for (bool channels_last : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "clamp [0, " << hi_clamp << "], " << bits << " bits"
                                          << (channels_last ? ", channels last" : ""));
        torch::manual_seed(bits);
        torch::Tensor x = torch::randn({4, 6, 7, 7}) * 4.0 + 1.0;
        x.index_put_({0, 0, 0},
                     torch::tensor({0.0f, 6.0f, -0.0f, 5.999f, 6.001f, 1e-7f, -1e-7f}));  // the kinks
        if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
        const int qmax = (1 << bits) - 1;
        // The range covers about [0, 5]: codes clip at the top, the kink at 0 sits on the zero point.
        const torch::Tensor s = torch::full({1}, 5.0f / static_cast<float>(qmax));
        const torch::Tensor z = torch::full({1}, bits > 2 ? 1.0f : 0.0f);
        const torch::Tensor upstream = torch::randn(x.sizes());
        const Grads f = run_clamped(true, x, s, z, qmax, 0.0, hi_clamp, upstream);
        const Grads r = run_clamped(false, x, s, z, qmax, 0.0, hi_clamp, upstream);
        const Grads d = run_clamped(false, x.to(torch::kDouble), s.to(torch::kDouble), z.to(torch::kDouble),
                                    qmax, 0.0, hi_clamp, upstream.to(torch::kDouble));
        EXPECT_TRUE(torch::equal(f.y, r.y)) << "values differ by " << (f.y - r.y).abs().max().item<double>();
        EXPECT_TRUE(torch::allclose(f.x, r.x, 1e-6, 0))
            << "d/dx differs by " << (f.x - r.x).abs().max().item<double>();
        EXPECT_TRUE(torch::equal(f.x != 0, r.x != 0)) << "the fused op passes other elements";
        expect_as_accurate(f.scale, r.scale, d.scale, "d/dscale");
        expect_as_accurate(f.offset, r.offset, d.offset, "d/dzero_point");
        // The clamp stopped some gradients (x <= 0) and let others through.
        EXPECT_TRUE((f.x.index({x <= 0}) == 0).all().item<bool>());
        EXPECT_GT((f.x != 0).to(torch::kFloat).mean().item<double>(), 0.2);
      }
    }
  }
  EXPECT_THROW(
      fake_quant_zero_point_clamped(torch::ones({2}), torch::ones({1}), torch::zeros({1}), 255, 6.0, 0.0),
      qnas::Error);
}

TEST(FakeQuantOps, GradientsDoNotDependOnTheThreadCount) {
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({4, 16, 40, 40});  // several chunks
  const torch::Tensor s = torch::full({1}, 0.02f), z = torch::full({1}, 100.0f), g = torch::randn(x.sizes());
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const Grads one = run(Formula::kZeroPoint, true, x, s, z, 0, 255, g);
  at::set_num_threads(2);
  const Grads two = run(Formula::kZeroPoint, true, x, s, z, 0, 255, g);
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(one.x, two.x));
  EXPECT_TRUE(torch::equal(one.scale, two.scale));
  EXPECT_TRUE(torch::equal(one.offset, two.offset));
}

TEST(FakeQuantOps, RejectsAParameterOfTheWrongSize) {
  const torch::Tensor x = torch::randn({3, 4});
  EXPECT_THROW(fake_quant_affine(x, torch::ones({2}), torch::zeros({1}), -7, 7), qnas::Error);
}

// One training step of each quantizer module with either kernel: same outputs, same parameter gradients.
template <typename Module>
void expect_same_step(Module make, const torch::Tensor& input) {
  auto step = [&](Kernel k, torch::Dtype dtype) {
    set_kernel(k);
    torch::manual_seed(0);
    auto q = make();
    q->to(dtype);
    q->train();
    q->forward(input);  // initialises
    q->zero_grad();
    torch::Tensor x = input.to(dtype).clone().requires_grad_(true);
    const torch::Tensor y = q->forward(x);
    (y * y).sum().backward();
    std::vector<torch::Tensor> out = {y.detach(), x.grad()};
    for (const auto& p : q->parameters()) out.push_back(p.grad());
    set_kernel(Kernel::kFused);
    return out;
  };
  const auto fused = step(Kernel::kFused, torch::kFloat), reference = step(Kernel::kReference, torch::kFloat);
  const auto exact = step(Kernel::kReference, torch::kDouble);
  ASSERT_EQ(fused.size(), reference.size());
  EXPECT_TRUE(torch::equal(fused[0], reference[0]));
  EXPECT_TRUE(torch::allclose(fused[1], reference[1], 1e-6, 0));
  for (size_t i = 2; i < fused.size(); ++i) {
    expect_as_accurate(fused[i], reference[i], exact[i], "parameter " + std::to_string(i - 2));
  }
}

TEST(FakeQuantModules, FusedAndReferenceKernelsTrainAlike) {
  torch::manual_seed(1);
  const torch::Tensor act = torch::relu(torch::randn({8, 6, 5, 5})) * 3 - 0.2;
  expect_same_step([] { return LsqPlusActivation(8); }, act);
  expect_same_step([] { return LsqPlusActivation(3); }, act);
  expect_same_step([] { return BatchQuantActivation(4); }, act);
  const torch::Tensor weight = torch::randn({6, 4, 3, 3});
  expect_same_step([] { return LsqWeight(6, true, 4); }, weight);
  expect_same_step([] { return LsqWeight(6, false, 8); }, weight);
}

// The activation quantizer with its ReLU6 fused (what the networks call) against hardtanh and then the
// quantizer: the same first-batch initialisation, values and gradients, in a first and a second step.
TEST(FakeQuantModules, FusedActivationTrainsLikeHardtanhThenQuantizer) {
  torch::manual_seed(2);
  const torch::Tensor pre = torch::randn({8, 6, 5, 5}) * 3 + 1;
  for (int bits : {3, 8}) {
    LsqPlusActivation fused(bits), separate(bits);
    fused->train();
    separate->train();
    for (int step = 0; step < 2; ++step) {
      fused->zero_grad();
      separate->zero_grad();
      torch::Tensor xf = pre.clone().requires_grad_(true), xs = pre.clone().requires_grad_(true);
      const torch::Tensor yf = fused->forward_clamped(xf, 0.0, 6.0);
      const torch::Tensor ys = separate->forward(torch::hardtanh(xs, 0.0, 6.0));
      (yf * yf).sum().backward();
      (ys * ys).sum().backward();
      EXPECT_TRUE(torch::equal(yf, ys)) << bits << " bits, step " << step;
      EXPECT_TRUE(torch::allclose(xf.grad(), xs.grad(), 1e-6, 0)) << bits << " bits, step " << step;
      EXPECT_TRUE(torch::allclose(fused->scale.grad(), separate->scale.grad(), 1e-5, 1e-7));
      EXPECT_TRUE(torch::allclose(fused->offset.grad(), separate->offset.grad(), 1e-5, 1e-7));
      EXPECT_FLOAT_EQ(fused->scale.item<float>(), separate->scale.item<float>());
      EXPECT_EQ(fused->zero_point(), separate->zero_point());
    }
  }
}

TEST(FakeQuantModules, InitialisationFlagSurvivesACheckpoint) {
  LsqPlusActivation trained(8);
  trained->forward(torch::rand({2, 3}));
  ASSERT_TRUE(trained->initialized());
  std::stringstream buffer;
  torch::save(trained, buffer);
  LsqPlusActivation loaded(8);
  torch::load(loaded, buffer);
  EXPECT_TRUE(loaded->initialized());
  EXPECT_FLOAT_EQ(loaded->scale.item<float>(), trained->scale.item<float>());
  // A loaded quantizer is not re-initialised by the next batch.
  loaded->forward(torch::rand({2, 3}) * 100);
  EXPECT_FLOAT_EQ(loaded->scale.item<float>(), trained->scale.item<float>());
}

}  // namespace
