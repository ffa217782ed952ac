// Hutchinson's Hessian trace on quadratics whose Hessian is known exactly, per parameter tensor, and the
// weight perturbation HAWQ weighs it with.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "quant/hessian.h"

namespace qnas::quant {
namespace {

// A symmetric matrix with diagonal in [1, 3] and small off-diagonal entries (they only add variance).
torch::Tensor symmetric(int n, std::uint64_t seed) {
  torch::manual_seed(seed);
  torch::Tensor off = torch::randn({n, n}, torch::kDouble) * 0.05;
  off = (off + off.t()) / 2;
  off.fill_diagonal_(0);
  return off + torch::diag(1.0 + 2.0 * torch::rand({n}, torch::kDouble));
}

TEST(Hessian, HutchinsonTraceOfKnownQuadraticsWithinTwoPercent) {
  // f(x, y) = 1/2 x^T A x + 1/2 y^T B y + x^T C y (a cross term): the diagonal blocks of the Hessian are A
  // and B.
  const torch::Tensor A = symmetric(24, 1), B = symmetric(10, 2) * 5;
  torch::manual_seed(3);
  const torch::Tensor C = torch::randn({24, 10}, torch::kDouble) * 0.1;
  torch::Tensor x = torch::randn({24}, torch::kDouble).requires_grad_(true);
  torch::Tensor y = torch::randn({10}, torch::kDouble).reshape({2, 5}).requires_grad_(true);
  const auto loss = [&] {
    const torch::Tensor yf = y.reshape({10});
    return 0.5 * x.dot(A.mv(x)) + 0.5 * yf.dot(B.mv(yf)) + x.dot(C.mv(yf));
  };
  HutchinsonOptions o;
  o.seed = 7;
  const auto r = hutchinson_traces(loss, {x, y}, o);
  ASSERT_EQ(r.traces.size(), 2u);
  const double ta = A.trace().item<double>(), tb = B.trace().item<double>();
  EXPECT_NEAR(r.traces[0].trace, ta, 0.02 * ta);
  EXPECT_NEAR(r.traces[1].trace, tb, 0.02 * tb);
  EXPECT_NEAR(r.traces[1].trace_per_weight, r.traces[1].trace / 10, 1e-12);
  EXPECT_GE(r.iterations, o.min_iterations);
  EXPECT_LE(r.iterations, o.max_iterations);
  // Same seed, same vectors, same estimate.
  const auto again = hutchinson_traces(loss, {x, y}, o);
  EXPECT_EQ(again.traces[0].trace, r.traces[0].trace);
}

TEST(Hessian, ADiagonalHessianIsExactFromTheFirstSample) {
  // v^T D v = Tr(D) for every Rademacher v when D is diagonal, so the mean never moves: converged at once.
  const torch::Tensor d = torch::tensor({1.0, 2.0, 3.0, 4.0}, torch::kDouble);
  torch::Tensor w = torch::ones({4}, torch::kDouble).requires_grad_(true);
  const auto r = hutchinson_traces([&] { return 0.5 * (d * w * w).sum(); }, {w}, HutchinsonOptions{});
  EXPECT_DOUBLE_EQ(r.traces[0].trace, 10.0);
  EXPECT_TRUE(r.converged);
  EXPECT_EQ(r.iterations, HutchinsonOptions{}.min_iterations);
}

TEST(Hessian, WeightPerturbationMatchesHandValues) {
  // One output channel [0.5, -1.0, 0.26] at 2 bits: qmax 1, scale 1.0 -> codes [1 (0.5 rounds to even: 0),
  // -1, 0].
  const torch::Tensor w = torch::tensor({{0.5, -1.0, 0.26}}, torch::kDouble);
  EXPECT_NEAR(weight_perturbation(w, 2), 0.25 + 0.0 + 0.26 * 0.26, 1e-12);
  // 8 bits: scale 1/127, every error at most half a step.
  const double p8 = weight_perturbation(w, 8);
  EXPECT_LE(p8, 3 * std::pow(0.5 / 127, 2));
  EXPECT_GT(weight_perturbation(w, 4), p8);
  EXPECT_EQ(weight_perturbation(w, 32), 0.0);
  EXPECT_THROW(weight_perturbation(w, 1), Error);
}

}  // namespace
}  // namespace qnas::quant
