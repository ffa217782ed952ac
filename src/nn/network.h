#pragma once
// What the trainer sees of a model: images in, logits out. The elastic supernet and the static network
// both derive from it, so baselines, teachers and supernets share one training path.
#include <torch/torch.h>

#include <functional>
#include <optional>

#include "quant/quantizers.h"
#include "space/block_type.h"

namespace qnas::nn {

class NetworkImpl : public torch::nn::Module {
 public:
  // Images are resized (bilinear) to the network's input resolution when they differ: elastic resolution.
  virtual torch::Tensor forward(const torch::Tensor& images) = 0;
};

// The activations an ArchSpec names, with the same formulas as the INT8 runtime's reference executor.
torch::Tensor activate(const torch::Tensor& x, space::Activation activation);
// `quant`(activate(x)), or activate(x) without a quantizer; a ReLU or ReLU6 runs inside the quantizer's fused
// pass (the same values and gradients, one tensor and two passes fewer).
torch::Tensor activate_and_quantize(const torch::Tensor& x, space::Activation activation,
                                    quant::LsqPlusActivation& quant);

// Bilinear resize of a [N, C, H, W] batch to `resolution` x `resolution` (a no-op when it already is).
torch::Tensor resize_images(const torch::Tensor& images, int resolution);

// BN recalibration: every batch norm under `model` forgets its running statistics, then accumulates the
// exact mean of the statistics of `batches` batches that `next_images` yields (in training mode, without
// gradients). Weight sharing leaves the shared running statistics meaningless for any one subnet, so every
// subnet evaluation needs this first. BatchQuant activation quantizers calibrate their inference range on the
// same batches (their batch-averaged range). The model is left in eval mode. Returns the batches used.
int recalibrate_batch_norm(NetworkImpl& model, const std::function<bool(torch::Tensor&)>& next_images,
                           int batches);

}  // namespace qnas::nn
