// The depthwise convolution's own backward against LibTorch's (torch::conv2d with groups = channels): the
// same forward, input and weight gradients within float rounding of each other, across kernels, strides,
// odd sizes and channel counts that are no multiple of a vector; weight gradients that do not depend on the
// thread count; the double backward HAWQ needs; and inputs it does not serve, which run the reference.
#include "nn/depthwise_conv.h"

#include <ATen/Parallel.h>

#include <gtest/gtest.h>

#include <tuple>

using namespace qnas::nn;

namespace {

struct Result {
  torch::Tensor y, grad_x, grad_w;
};

Result run(bool own, const torch::Tensor& x0, const torch::Tensor& w0, int stride,
           const torch::Tensor& upstream) {
  torch::Tensor x = x0.detach().clone(at::MemoryFormat::Preserve).requires_grad_(true);
  torch::Tensor w = w0.detach().clone(at::MemoryFormat::Preserve).requires_grad_(true);
  const torch::Tensor y = own ? depthwise_conv2d(x, w, stride) : reference_depthwise_conv2d(x, w, stride);
  (y * upstream).sum().backward();
  return {y.detach(), x.grad(), w.grad()};
}

// Within float32 rounding of sums of up to K*K (input) or N*OH*OW (weight) products.
void expect_close(const torch::Tensor& own, const torch::Tensor& reference, const std::string& what) {
  ASSERT_EQ(own.sizes(), reference.sizes()) << what;
  const double scale = std::max(1.0, reference.abs().max().item<double>());
  const double error = (own - reference).abs().max().item<double>();
  EXPECT_LE(error, 2e-5 * scale) << what << ": off by " << error << " at magnitude " << scale;
}

class DepthwiseConv : public ::testing::TestWithParam<std::tuple<int, int, int, int>> {};

TEST_P(DepthwiseConv, OwnBackwardMatchesLibTorch) {
  const auto [channels, size, kernel, stride] = GetParam();
  torch::manual_seed(channels * 31 + size * 7 + kernel + stride);
  const torch::Tensor x = torch::randn({5, channels, size, size}).contiguous(at::MemoryFormat::ChannelsLast);
  const torch::Tensor w =
      torch::randn({channels, 1, kernel, kernel}).contiguous(at::MemoryFormat::ChannelsLast);
  const torch::Tensor probe = reference_depthwise_conv2d(x, w, stride);
  const torch::Tensor upstream = torch::randn(probe.sizes()).contiguous(at::MemoryFormat::ChannelsLast);
  const Result own = run(true, x, w, stride, upstream), ref = run(false, x, w, stride, upstream);
  EXPECT_TRUE(torch::equal(own.y, ref.y));  // the forward is LibTorch's own
  expect_close(own.grad_x, ref.grad_x, "d/dx");
  expect_close(own.grad_w, ref.grad_w, "d/dweight");
  EXPECT_TRUE(own.grad_x.is_contiguous(at::MemoryFormat::ChannelsLast));
}

INSTANTIATE_TEST_SUITE_P(Shapes, DepthwiseConv,
                         ::testing::Values(std::make_tuple(16, 8, 3, 1), std::make_tuple(13, 7, 5, 1),
                                           std::make_tuple(40, 9, 5, 2), std::make_tuple(33, 14, 7, 2),
                                           std::make_tuple(64, 4, 7, 1), std::make_tuple(3, 5, 3, 2),
                                           std::make_tuple(24, 1, 3, 1)));

TEST(DepthwiseConvBackward, WeightGradientDoesNotDependOnTheThreadCount) {
  torch::manual_seed(4);
  const torch::Tensor x = torch::randn({11, 24, 10, 10}).contiguous(at::MemoryFormat::ChannelsLast);
  const torch::Tensor w = torch::randn({24, 1, 5, 5}).contiguous(at::MemoryFormat::ChannelsLast);
  const torch::Tensor upstream = torch::randn({11, 24, 10, 10}).contiguous(at::MemoryFormat::ChannelsLast);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const Result one = run(true, x, w, 1, upstream);
  at::set_num_threads(2);
  const Result two = run(true, x, w, 1, upstream);
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(one.grad_w, two.grad_w));
  EXPECT_TRUE(torch::equal(one.grad_x, two.grad_x));
}

// HAWQ's Hessian-vector products differentiate the gradient again (create_graph).
TEST(DepthwiseConvBackward, DoubleBackwardMatchesLibTorch) {
  torch::manual_seed(5);
  const torch::Tensor x0 = torch::randn({3, 8, 6, 6}).contiguous(at::MemoryFormat::ChannelsLast);
  const torch::Tensor w0 = torch::randn({8, 1, 3, 3}).contiguous(at::MemoryFormat::ChannelsLast);
  const torch::Tensor v = torch::randn({8, 1, 3, 3});
  auto hessian_vector = [&](bool own) {
    torch::Tensor x = x0.clone(at::MemoryFormat::Preserve).requires_grad_(true);
    torch::Tensor w = w0.clone(at::MemoryFormat::Preserve).requires_grad_(true);
    const torch::Tensor y = own ? depthwise_conv2d(x, w, 1) : reference_depthwise_conv2d(x, w, 1);
    const torch::Tensor loss = (torch::tanh(y) * y).sum();
    const auto grads = torch::autograd::grad({loss}, {w}, {}, /*retain_graph=*/true, /*create_graph=*/true);
    return torch::autograd::grad({(grads[0] * v).sum()}, {w})[0];
  };
  expect_close(hessian_vector(true), hessian_vector(false), "Hv");
}

TEST(DepthwiseConvBackward, InputsItDoesNotServeRunTheReference) {
  torch::manual_seed(6);
  const torch::Tensor nchw = torch::randn({2, 6, 5, 5});  // not channels-last
  const torch::Tensor w = torch::randn({6, 1, 3, 3});
  const torch::Tensor upstream = torch::randn({2, 6, 5, 5});
  const Result own = run(true, nchw, w, 1, upstream), ref = run(false, nchw, w, 1, upstream);
  EXPECT_TRUE(torch::equal(own.y, ref.y));
  EXPECT_TRUE(torch::equal(own.grad_x, ref.grad_x));
  EXPECT_TRUE(torch::equal(own.grad_w, ref.grad_w));
}

}  // namespace
