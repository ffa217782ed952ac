#include "train/losses.h"

#include <cmath>

#include "core/error.h"

namespace qnas::train {

torch::Tensor label_smoothing_cross_entropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                            double smoothing) {
  const int64_t classes = logits.size(1);
  const torch::Tensor log_probs = torch::log_softmax(logits, 1);
  const torch::Tensor nll = -log_probs.gather(1, labels.view({-1, 1})).squeeze(1);
  const torch::Tensor uniform = -log_probs.sum(1) / static_cast<double>(classes);
  return ((1.0 - smoothing) * nll + smoothing * uniform).mean();
}

torch::Tensor kl_distillation(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits) {
  const torch::Tensor p = torch::softmax(teacher_logits.detach(), 1);
  const torch::Tensor log_p = torch::log_softmax(teacher_logits.detach(), 1);
  return (p * (log_p - torch::log_softmax(student_logits, 1))).sum(1).mean();
}

namespace {

bool near(double a, double b) {
  return std::abs(a - b) < 1e-3;
}

// Per sample: the divergence (detached) and a surrogate whose gradient in the student's logits equals the
// divergence's. With t = p/q and g = d f / d t, d/dq_logits of sum_c q_c f(p_c/q_c) reduces to
// -sum_c q_c rho(t_c) d log q_c with rho(t) = t f'(t) - f(t); a constant added to rho changes nothing,
// since sum_c q_c d log q_c = 0.
std::pair<torch::Tensor, torch::Tensor> divergence_and_surrogate(const torch::Tensor& student_logits,
                                                                 const torch::Tensor& teacher_logits,
                                                                 double alpha, double ratio_clip) {
  const torch::Tensor q = torch::softmax(student_logits, 1).detach();
  const torch::Tensor p = torch::softmax(teacher_logits, 1).detach();
  const torch::Tensor log_q = torch::log_softmax(student_logits, 1);
  torch::Tensor ratio = p / q;
  torch::Tensor f, rho;
  if (near(alpha, 0.0)) {
    ratio = ratio.clamp(0.0, ratio_clip);
    f = -ratio.log();
    rho = ratio.log() - 1.0;
  } else if (near(alpha, 1.0)) {
    f = ratio * ratio.log();
    rho = ratio;
  } else {
    const torch::Tensor powered = ratio.pow(alpha).clamp(0.0, ratio_clip);
    const double base = 1.0 / (alpha * (alpha - 1.0));
    f = (powered - 1.0) * base;
    rho = powered / alpha + base;  // t f'(t) - f(t) = t^a / a + 1 / (a (a - 1))
  }
  const torch::Tensor divergence = (q * f).sum(1);
  const torch::Tensor surrogate = -(q * rho * log_q).sum(1);
  return {divergence, surrogate};
}

}  // namespace

torch::Tensor alpha_divergence(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                               double alpha, double ratio_clip) {
  // The exact divergence with gradients, for tests and logs: q enters both as weight and in the ratio.
  const torch::Tensor q = torch::softmax(student_logits, 1);
  const torch::Tensor p = torch::softmax(teacher_logits, 1).detach();
  torch::Tensor ratio = p / q;
  if (near(alpha, 0.0)) return (q * -ratio.clamp(0.0, ratio_clip).log()).sum(1);
  if (near(alpha, 1.0)) return (q * ratio * ratio.log()).sum(1);
  const double base = 1.0 / (alpha * (alpha - 1.0));
  return (q * (ratio.pow(alpha).clamp(0.0, ratio_clip) - 1.0) * base).sum(1);
}

torch::Tensor adaptive_alpha_distillation(const torch::Tensor& student_logits,
                                          const torch::Tensor& teacher_logits,
                                          const AlphaDivergenceOptions& options, double* divergence) {
  if (options.alpha_min >= 0 || options.alpha_max <= 0) {
    fail("alpha-divergence needs alpha_min < 0 < alpha_max, got {} and {}", options.alpha_min,
         options.alpha_max);
  }
  const auto [d_min, s_min] =
      divergence_and_surrogate(student_logits, teacher_logits, options.alpha_min, options.ratio_clip);
  const auto [d_max, s_max] =
      divergence_and_surrogate(student_logits, teacher_logits, options.alpha_max, options.ratio_clip);
  const torch::Tensor pick_min = (d_min > d_max).to(s_min.dtype());
  if (divergence) *divergence = torch::max(d_min, d_max).mean().item<double>();
  return (pick_min * s_min + (1.0 - pick_min) * s_max).mean();
}

}  // namespace qnas::train
