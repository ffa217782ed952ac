#pragma once
// A plain (non-elastic) LibTorch network built from an ArchSpec: the form a subnet takes once extracted
// from the supernet, and the form baselines and teachers are trained in. Every conv and linear carries the
// same fake quantizers as the supernet (LSQ per-channel weights, LSQ+ on every tensor it produces, see
// core/quant_contract.h), in FP32 until set_bits().
//
// It is written with stock torch::nn layers on purpose: it is a second, independent implementation of
// what an ArchSpec means, so "extracted subnet == supernet with that subnet active" is a real check.
#include <torch/torch.h>

#include "nn/network.h"
#include "quant/quantizers.h"
#include "space/arch_spec.h"

namespace qnas::nn {

// conv/depthwise + BN + activation, or SE, or global pool, or linear: one LayerSpec. Quantizers follow the
// contract (core/quant_contract.h): a layer owns the activation quantizer of the tensor it produces, so every
// reader of that tensor (the next layer, a residual add, a projection) sees the same codes the engine stores.
struct StaticLayer {
  space::LayerSpec spec;
  torch::nn::Conv2d conv{nullptr};                 // conv, depthwise, SE reduce
  torch::nn::Conv2d se_expand{nullptr};            // SE expand
  torch::nn::BatchNorm2d bn{nullptr};              // when spec.batch_norm
  torch::nn::Linear linear{nullptr};               // linear
  quant::LsqWeight weight_quant{nullptr};          // conv / SE reduce / linear weight
  quant::LsqWeight expand_weight_quant{nullptr};   // SE expand weight
  quant::LsqPlusActivation output_quant{nullptr};  // conv, depthwise, SE, pool: the output tensor
  quant::LsqPlusActivation pool_quant{nullptr};    // SE: the pooled vector
  quant::LsqPlusActivation mid_quant{nullptr};     // SE: the squeezed vector after its relu
};

struct StaticBlock {
  space::BlockSpec spec;
  std::vector<StaticLayer> layers;
  std::optional<StaticLayer> projection;
};

class StaticNetImpl : public NetworkImpl {
 public:
  explicit StaticNetImpl(space::ArchSpec spec);
  torch::Tensor forward(const torch::Tensor& images) override;
  // What the stage named `stage` receives and returns for these images (block-wise distillation targets).
  // Runs only the blocks up to the end of that stage; throws naming the stages when there is no such stage.
  std::pair<torch::Tensor, torch::Tensor> stage_io(const torch::Tensor& images, const std::string& stage);
  // Channels into and out of a stage.
  std::pair<int, int> stage_channels(const std::string& stage) const;
  const space::ArchSpec& spec() const { return spec_; }
  std::vector<StaticBlock>& blocks() { return blocks_; }

  quant::LsqPlusActivation input_quant{nullptr};  // the normalised image

 private:
  StaticLayer make_layer(const space::LayerSpec& spec, const std::string& name);
  torch::Tensor run_layer(StaticLayer& layer, const torch::Tensor& x);
  torch::Tensor conv_bn(StaticLayer& layer, const torch::Tensor& x);
  // The layer and its output quantizer, a conv's activation fused into the quantizer's pass.
  torch::Tensor run_quantized_layer(StaticLayer& layer, const torch::Tensor& x);
  torch::Tensor run_block(StaticBlock& block, const torch::Tensor& x);
  static torch::Tensor quantize_output(StaticLayer& layer, const torch::Tensor& y);
  std::pair<size_t, size_t> stage_blocks(const std::string& stage) const;  // [first, last]

  space::ArchSpec spec_;
  std::vector<StaticBlock> blocks_;
};
TORCH_MODULE(StaticNet);

}  // namespace qnas::nn
