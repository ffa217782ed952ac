// Losses and the schedule against hand-computed values and finite differences.
#include <gtest/gtest.h>

#include <cmath>

#include "train/losses.h"
#include "train/schedule.h"

using namespace qnas::train;

namespace {

TEST(LabelSmoothing, MatchesTheHandComputedValue) {
  const torch::Tensor logits = torch::tensor({{2.0, 0.0, 0.0}});
  const torch::Tensor labels = torch::tensor({0}, torch::kLong);
  const double log_z = std::log(std::exp(2.0) + 2.0);
  const double nll = log_z - 2.0, uniform = (3 * log_z - 2.0) / 3.0;
  EXPECT_NEAR(label_smoothing_cross_entropy(logits, labels, 0.3).item<double>(), 0.7 * nll + 0.3 * uniform,
              1e-6);
  EXPECT_NEAR(label_smoothing_cross_entropy(logits, labels, 0.0).item<double>(), nll, 1e-6);
}

TEST(KlDistillation, IsZeroForTheTeacherItselfAndMatchesTheFormula) {
  const torch::Tensor teacher = torch::tensor({{1.0, 0.0}});
  EXPECT_NEAR(kl_distillation(teacher, teacher).item<double>(), 0.0, 1e-7);
  const torch::Tensor student = torch::tensor({{0.0, 0.0}});
  const double p = std::exp(1.0) / (std::exp(1.0) + 1.0);
  const double expected = p * std::log(p / 0.5) + (1 - p) * std::log((1 - p) / 0.5);
  EXPECT_NEAR(kl_distillation(student, teacher).item<double>(), expected, 1e-6);
}

TEST(AlphaDivergence, AlphaOneIsKlAndDivergencesAreNonNegative) {
  torch::manual_seed(0);
  const torch::Tensor s = torch::randn({5, 7}), t = torch::randn({5, 7});
  EXPECT_NEAR(alpha_divergence(s, t, 1.0, 1e9).mean().item<double>(), kl_distillation(s, t).item<double>(),
              1e-5);
  for (double alpha : {-1.0, -0.5, 0.0, 0.5, 1.0, 2.0}) {
    EXPECT_GE(alpha_divergence(s, t, alpha, 1e9).min().item<double>(), -1e-6) << alpha;
    EXPECT_NEAR(alpha_divergence(t, t, alpha, 1e9).abs().max().item<double>(), 0.0, 1e-6) << alpha;
  }
}

// The adaptive loss is a surrogate: its gradient must be the gradient of max(D_-1, D_1) per sample.
TEST(AlphaDivergence, SurrogateGradientIsTheDivergenceGradient) {
  torch::manual_seed(1);
  const torch::Tensor teacher = torch::randn({4, 5}, torch::kDouble);
  torch::Tensor student = (torch::randn({4, 5}, torch::kDouble) * 0.5).requires_grad_(true);
  AlphaDivergenceOptions options;
  options.ratio_clip = 1e9;  // no clipping: the exact gradient
  adaptive_alpha_distillation(student, teacher, options).backward();
  const torch::Tensor analytic = student.grad().clone();
  auto objective = [&](const torch::Tensor& s) {
    return torch::max(alpha_divergence(s, teacher, -1.0, 1e9), alpha_divergence(s, teacher, 1.0, 1e9))
        .mean()
        .item<double>();
  };
  const double h = 1e-6;
  for (int64_t i = 0; i < 4; ++i) {
    for (int64_t c = 0; c < 5; ++c) {
      torch::Tensor plus = student.detach().clone(), minus = student.detach().clone();
      plus[i][c] += h;
      minus[i][c] -= h;
      const double numeric = (objective(plus) - objective(minus)) / (2 * h);
      EXPECT_NEAR(analytic[i][c].item<double>(), numeric, 1e-6) << i << "," << c;
    }
  }
}

TEST(AlphaDivergence, RejectsAlphasOnTheSameSide) {
  AlphaDivergenceOptions options;
  options.alpha_min = 0.5;
  EXPECT_THROW(adaptive_alpha_distillation(torch::zeros({1, 2}), torch::zeros({1, 2}), options),
               std::exception);
}

TEST(CosineSchedule, WarmsUpLinearlyThenDecaysToTheFinalRate) {
  const CosineSchedule s{0.1, 0.001, 10, 110};
  EXPECT_NEAR(s.at(0), 0.01, 1e-12);
  EXPECT_NEAR(s.at(4), 0.05, 1e-12);
  EXPECT_NEAR(s.at(10), 0.1, 1e-12);
  EXPECT_NEAR(s.at(60), (0.1 + 0.001) / 2, 1e-12);
  EXPECT_NEAR(s.at(110), 0.001, 1e-12);
  for (int64_t i = 11; i < 110; ++i) EXPECT_LT(s.at(i), s.at(i - 1));
}

}  // namespace
