#pragma once
// Training objectives: cross-entropy with label smoothing for the largest subnet, and the two in-place
// distillation losses the sandwich rule uses for the others (the max subnet's logits are the teacher):
//   - KL(teacher || student), the soft-target cross-entropy of OFA / BigNAS;
//   - AlphaNet's adaptive alpha-divergence (Wang et al. 2021): the larger of the two alpha-divergences at
//     alpha_min < 0 and alpha_max > 0, with the importance ratio clipped to bound the gradient variance.
#include <torch/torch.h>

#include "train/train_config.h"

namespace qnas::train {

// Mean over the batch of -sum_c q_c log softmax(logits)_c, q = (1 - eps) one_hot + eps / C.
torch::Tensor label_smoothing_cross_entropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                            double smoothing);

// Mean over the batch of sum_c p_c (log p_c - log q_c), p = softmax(teacher), q = softmax(student).
// The teacher is detached.
torch::Tensor kl_distillation(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits);

// D_alpha(p || q) = sum_c q_c f(p_c / q_c), f(t) = (t^alpha - 1) / (alpha (alpha - 1)), with the KL limits
// at alpha = 0 (-log t) and alpha = 1 (t log t). Per sample, not reduced.
torch::Tensor alpha_divergence(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                               double alpha, double ratio_clip);

// AlphaNet's adaptive loss. Its value is a surrogate whose gradient with respect to the student's logits is
// the gradient of max(D_alpha_min, D_alpha_max) per sample (with the ratio clipped); its value is not the
// divergence, so `divergence`, when given, receives the batch mean of that max (detached) for logs.
torch::Tensor adaptive_alpha_distillation(const torch::Tensor& student_logits,
                                          const torch::Tensor& teacher_logits,
                                          const AlphaDivergenceOptions& options,
                                          double* divergence = nullptr);

}  // namespace qnas::train
