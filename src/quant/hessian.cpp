#include "quant/hessian.h"

#include <cmath>

#include "core/error.h"

namespace qnas::quant {

HutchinsonResult hutchinson_traces(const std::function<torch::Tensor()>& loss,
                                   const std::vector<torch::Tensor>& params,
                                   const HutchinsonOptions& options) {
  if (params.empty()) fail("Hutchinson trace: no parameter tensors given");
  if (options.max_iterations < 1) fail("Hutchinson trace: max_iterations must be at least 1");
  torch::Generator gen = at::detail::createCPUGenerator(options.seed);
  HutchinsonResult result;
  std::vector<double> sums(params.size(), 0.0);
  double previous_mean = 0;
  for (int it = 1; it <= options.max_iterations; ++it) {
    const torch::Tensor l = loss();
    const auto grads = torch::autograd::grad({l}, params, {}, /*retain_graph=*/true, /*create_graph=*/true);
    std::vector<torch::Tensor> vs;
    for (const auto& p : params) {
      // Rademacher: +-1 with equal probability, drawn on the CPU generator so a seed gives the same vectors.
      auto v = torch::randint(0, 2, p.sizes(), gen, torch::TensorOptions().dtype(p.scalar_type())) * 2 - 1;
      vs.push_back(v.to(p.device()));
    }
    const auto hv = torch::autograd::grad(grads, params, vs, /*retain_graph=*/false, /*create_graph=*/false,
                                          /*allow_unused=*/true);
    double total = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      if (hv[i].defined()) sums[i] += (hv[i] * vs[i]).sum().item<double>();
      total += sums[i];
    }
    const double mean = total / it;
    result.iterations = it;
    // |.| in the denominator: a trace may be negative away from a minimum.
    if (it >= options.min_iterations &&
        std::abs(mean - previous_mean) < options.tolerance * (std::abs(previous_mean) + 1e-30)) {
      result.converged = true;
      break;
    }
    previous_mean = mean;
  }
  for (size_t i = 0; i < params.size(); ++i) {
    TraceEstimate t;
    t.trace = sums[i] / result.iterations;
    t.trace_per_weight = t.trace / static_cast<double>(params[i].numel());
    result.traces.push_back(t);
  }
  return result;
}

double weight_perturbation(const torch::Tensor& weight, int bits) {
  if (bits >= 32) return 0.0;
  if (bits < 2) fail("weight perturbation: {} bits is below the 2 bits a symmetric quantiser needs", bits);
  torch::NoGradGuard no_grad;
  const torch::Tensor w = weight.detach().to(torch::kDouble);
  const double qmax = std::pow(2.0, bits - 1) - 1;
  const torch::Tensor flat = w.reshape({w.size(0), -1});
  const torch::Tensor scale = (flat.abs().amax(1, /*keepdim=*/true) / qmax).clamp_min(1e-12);
  const torch::Tensor q = torch::round(flat / scale).clamp(-qmax, qmax) * scale;
  return (q - flat).pow(2).sum().item<double>();
}

}  // namespace qnas::quant
