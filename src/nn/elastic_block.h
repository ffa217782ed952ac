#pragma once
// The weight-sharing block: it owns the weights of the largest block its slot can be and runs any smaller
// block of the same type by slicing them (see dynamic_ops.h). The supernet is a sequence of these, and so
// is the elastic stage that block-wise distillation trains.
#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "nn/dynamic_ops.h"
#include "space/arch_spec.h"

namespace qnas::nn {

// One slot of a block's main path: an elastic conv(+BN)(+act), an elastic SE, a pool or an elastic linear.
struct ElasticLayer {
  space::LayerSpec max;  // the largest layer this slot can be
  DynamicConv2d conv{nullptr};
  DynamicBatchNorm2d bn{nullptr};  // every conv slot has one: in K3 stacks the BN moves with the depth
  DynamicConv2d se_expand{nullptr};
  torch::Tensor se_reduce_bias, se_expand_bias;
  DynamicLinear linear{nullptr};
  // The quantisation contract's activation points this slot produces (null where it produces logits).
  quant::LsqPlusActivation output_quant{nullptr};
  quant::LsqPlusActivation pool_quant{nullptr}, mid_quant{nullptr};  // SE only
};

struct ElasticBlock {
  space::BlockSpec max;
  std::vector<ElasticLayer> layers;
  std::optional<ElasticLayer> projection;  // residual block types: used whenever the active shapes differ
};

// Registers the block's weights on `owner` under names starting with `prefix`.
ElasticBlock make_elastic_block(torch::nn::Module& owner, const space::BlockSpec& max,
                                const std::string& prefix);
// Runs `active` (a block no larger than the slot's) on the slot's weights.
torch::Tensor run_elastic_block(ElasticBlock& slot, const space::BlockSpec& active, const torch::Tensor& x);
// Matches each active layer to the slot layer it runs on (see elastic_block.cpp).
std::vector<size_t> align_layers(const ElasticBlock& slot, const space::BlockSpec& active);

}  // namespace qnas::nn
