#include "nn/network.h"

#include <limits>

#include "core/error.h"
#include "nn/dynamic_ops.h"
#include "quant/quantizers.h"

namespace qnas::nn {

torch::Tensor activate(const torch::Tensor& x, space::Activation activation) {
  using space::Activation;
  switch (activation) {
    case Activation::kNone:
      return x;
    case Activation::kRelu:
      return torch::relu(x);
    case Activation::kRelu6:
      return torch::hardtanh(x, 0.0, 6.0);  // one fused backward kernel, where clamp takes four
    case Activation::kHswish:
      return torch::hardswish(x);
    case Activation::kSwish:
      return torch::silu(x);
    case Activation::kHsigmoid:
      // relu6(x + 3) / 6: the same values and gradient as torch::hardsigmoid, which LibTorch 1.13 cannot
      // differentiate twice (HAWQ's Hessian traces need that); it runs on SE's pooled vector only.
      return torch::hardtanh(x + 3.0, 0.0, 6.0) / 6.0;
    case Activation::kSigmoid:
      return torch::sigmoid(x);
  }
  return x;
}

torch::Tensor activate_and_quantize(const torch::Tensor& x, space::Activation activation,
                                    quant::LsqPlusActivation& quant) {
  if (!quant) return activate(x, activation);
  if (activation == space::Activation::kRelu)
    return quant->forward_clamped(x, 0.0, std::numeric_limits<double>::infinity());
  if (activation == space::Activation::kRelu6) return quant->forward_clamped(x, 0.0, 6.0);
  return quant(activate(x, activation));
}

torch::Tensor resize_images(const torch::Tensor& images, int resolution) {
  if (images.dim() != 4) fail("expected a [N, C, H, W] image batch, got {} dimensions", images.dim());
  if (images.size(2) == resolution && images.size(3) == resolution) return images;
  namespace F = torch::nn::functional;
  return F::interpolate(images, F::InterpolateFuncOptions()
                                    .size(std::vector<int64_t>{resolution, resolution})
                                    .mode(torch::kBilinear)
                                    .align_corners(false));
}

int recalibrate_batch_norm(NetworkImpl& model, const std::function<bool(torch::Tensor&)>& next_images,
                           int batches) {
  std::vector<std::pair<DynamicBatchNorm2dImpl*, double>> dynamic;
  std::vector<std::pair<torch::nn::BatchNorm2dImpl*, c10::optional<double>>> plain;
  for (const auto& m : model.modules(/*include_self=*/false)) {
    if (auto* bn = dynamic_cast<DynamicBatchNorm2dImpl*>(m.get())) {
      dynamic.emplace_back(bn, bn->momentum);
      bn->reset_running_stats();
      bn->momentum = -1;  // cumulative average
    } else if (auto* bn2 = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get())) {
      plain.emplace_back(bn2, bn2->options.momentum());
      bn2->reset_running_stats();
      bn2->options.momentum(c10::nullopt);  // cumulative average
    }
  }
  quant::set_batch_range_calibration(model, true);
  torch::NoGradGuard no_grad;
  model.train();
  int used = 0;
  torch::Tensor images;
  while (used < batches && next_images(images)) {
    model.forward(images);
    ++used;
  }
  for (auto& [bn, momentum] : dynamic) bn->momentum = momentum;
  for (auto& [bn, momentum] : plain) bn->options.momentum(momentum);
  quant::set_batch_range_calibration(model, false);
  model.eval();
  if (used == 0) fail("BN recalibration got no batches: the calibration data is empty");
  return used;
}

}  // namespace qnas::nn
