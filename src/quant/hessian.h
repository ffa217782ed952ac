#pragma once
// Layer sensitivity for HAWQ-v2: the trace of each parameter tensor's Hessian block, estimated with
// Hutchinson's method as NNCF does it. For a Rademacher vector v (entries +-1), E[v^T H v] = Tr(H), and H v
// is one more backward through the gradient (double backprop), so the Hessian is never formed.
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace qnas::quant {

struct HutchinsonOptions {
  int max_iterations = 200;
  // Stop when the running mean of the summed trace moves by less than this fraction of itself (NNCF: 1e-4).
  double tolerance = 1e-4;
  int min_iterations = 10;  // so that two lucky early samples cannot end the estimate
  std::uint64_t seed = 0;
};

struct TraceEstimate {
  double trace = 0;             // Tr(H) of the tensor's block
  double trace_per_weight = 0;  // Tr(H) / numel: what HAWQ weighs the perturbation with
};

struct HutchinsonResult {
  std::vector<TraceEstimate> traces;  // one per parameter tensor
  int iterations = 0;
  bool converged = false;
};

// `loss` returns a fresh scalar loss whose graph reaches `params` (it may draw a new batch each call).
HutchinsonResult hutchinson_traces(const std::function<torch::Tensor()>& loss,
                                   const std::vector<torch::Tensor>& params,
                                   const HutchinsonOptions& options);

// ||Q_b(W) - W||^2 with symmetric per-output-channel min-max quantisation to b bits (scale max|w| /
// (2^(b-1)-1)), the weight perturbation HAWQ multiplies the trace with. 32 bits is no perturbation.
double weight_perturbation(const torch::Tensor& weight, int bits);

}  // namespace qnas::quant
