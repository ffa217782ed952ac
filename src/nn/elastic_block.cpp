#include "nn/elastic_block.h"

#include <fmt/format.h>

#include "core/error.h"
#include "nn/network.h"

namespace qnas::nn {

using space::BlockKind;
using space::OpKind;

namespace {

// Block types whose residual needs a 1x1 projection whenever a subnet's shapes differ across the block.
bool can_project(BlockKind kind) {
  return kind != BlockKind::kFirstConv && kind != BlockKind::kFinalExpand && kind != BlockKind::kFeatureMix &&
         kind != BlockKind::kLogits && kind != BlockKind::kMobileNetV2;
}

ElasticLayer make_layer(torch::nn::Module& owner, const space::LayerSpec& max, const std::string& name) {
  ElasticLayer layer;
  layer.max = max;
  switch (max.op) {
    case OpKind::kConv:
    case OpKind::kDepthwiseConv:
      layer.conv = owner.register_module(
          name + "_conv",
          DynamicConv2d(max.cin, max.cout, max.kernel, max.stride, max.op == OpKind::kDepthwiseConv));
      layer.bn = owner.register_module(name + "_bn", DynamicBatchNorm2d(max.cout));
      break;
    case OpKind::kSqueezeExcite:
      layer.conv = owner.register_module(name + "_reduce", DynamicConv2d(max.cin, max.se_mid, 1, 1, false));
      layer.se_expand =
          owner.register_module(name + "_expand", DynamicConv2d(max.se_mid, max.cout, 1, 1, false));
      layer.se_reduce_bias = owner.register_parameter(name + "_reduce_bias", torch::zeros({max.se_mid}));
      layer.se_expand_bias = owner.register_parameter(name + "_expand_bias", torch::zeros({max.cout}));
      break;
    case OpKind::kLinear:
      layer.linear = owner.register_module(name + "_linear", DynamicLinear(max.cin, max.cout));
      break;
    case OpKind::kGlobalAvgPool:
      break;
  }
  if (max.op == OpKind::kSqueezeExcite) {
    layer.pool_quant = owner.register_module(name + "_pool_aq", quant::LsqPlusActivation());
    layer.mid_quant = owner.register_module(name + "_mid_aq", quant::LsqPlusActivation());
  }
  if (max.op != OpKind::kLinear)
    layer.output_quant = owner.register_module(name + "_aq", quant::LsqPlusActivation());
  return layer;
}

torch::Tensor quantize_output(ElasticLayer& slot, const torch::Tensor& y) {
  return slot.output_quant ? slot.output_quant(y) : y;
}

bool is_conv(const space::LayerSpec& layer) {
  return layer.op == OpKind::kConv || layer.op == OpKind::kDepthwiseConv;
}

// A conv layer up to its activation.
torch::Tensor conv_bn(ElasticLayer& slot, const space::LayerSpec& active, const torch::Tensor& x) {
  slot.conv->set_active(active.cout, active.kernel);
  torch::Tensor y = slot.conv(x);
  return active.batch_norm ? slot.bn(y) : y;
}

torch::Tensor run_layer(ElasticLayer& slot, const space::LayerSpec& active, const torch::Tensor& x) {
  switch (active.op) {
    case OpKind::kConv:
    case OpKind::kDepthwiseConv:
      return activate(conv_bn(slot, active, x), active.activation);
    case OpKind::kSqueezeExcite: {
      const int64_t channels = x.size(1), mid = active.se_mid;
      slot.conv->set_active(static_cast<int>(mid), 1);
      slot.se_expand->set_active(static_cast<int>(channels), 1);
      torch::Tensor g = slot.pool_quant(x.mean({2, 3}, /*keepdim=*/true));
      g = torch::relu(slot.conv(g) + slot.se_reduce_bias.narrow(0, 0, mid).view({1, mid, 1, 1}));
      g = slot.se_expand(slot.mid_quant(g)) +
          slot.se_expand_bias.narrow(0, 0, channels).view({1, channels, 1, 1});
      return x * activate(g, active.activation);
    }
    case OpKind::kGlobalAvgPool:
      return x.mean({2, 3}, /*keepdim=*/true);
    case OpKind::kLinear:
      slot.linear->set_active(active.cout);
      return slot.linear(x.flatten(1));
  }
  return x;
}

// The layer and then its output quantizer, a conv's activation fused into the quantizer's pass.
torch::Tensor run_quantized_layer(ElasticLayer& slot, const space::LayerSpec& active,
                                  const torch::Tensor& x) {
  if (!is_conv(active)) return quantize_output(slot, run_layer(slot, active, x));
  return activate_and_quantize(conv_bn(slot, active, x), active.activation, slot.output_quant);
}

}  // namespace

ElasticBlock make_elastic_block(torch::nn::Module& owner, const space::BlockSpec& max,
                                const std::string& prefix) {
  ElasticBlock block{max, {}, std::nullopt};
  for (size_t l = 0; l < max.layers.size(); ++l)
    block.layers.push_back(make_layer(owner, max.layers[l], fmt::format("{}_layer{}", prefix, l)));
  if (can_project(max.type->kind)) {
    block.projection = make_layer(
        owner, space::make_conv(max.cin, max.cout, 1, max.stride, max.in_hw, space::Activation::kNone),
        prefix + "_proj");
  }
  return block;
}

// Active layers map onto slot layers in order, skipping slot layers of another kind. That covers every
// way a smaller block differs from the largest one: an inverted residual without its expand conv (hidden
// width == input width), and a K3 stack with fewer 3x3 depthwise convs (the leading ones run).
std::vector<size_t> align_layers(const ElasticBlock& slot, const space::BlockSpec& active) {
  std::vector<size_t> match;
  size_t j = 0;
  for (const auto& layer : active.layers) {
    while (j < slot.layers.size() && slot.layers[j].max.op != layer.op) ++j;
    if (j == slot.layers.size()) {
      fail("internal: block {}.{} ({}) has no slot for its layer {}", active.stage, active.block_index,
           active.type->name, match.size());
    }
    match.push_back(j++);
  }
  return match;
}

torch::Tensor run_elastic_block(ElasticBlock& slot, const space::BlockSpec& active, const torch::Tensor& x) {
  const std::vector<size_t> match = align_layers(slot, active);
  // Each layer's output is quantised by the layer that produces it; the last one only after the residual add
  // (the engine fuses the add into that conv and stores one tensor).
  torch::Tensor y = x;
  const size_t n = active.layers.size();
  for (size_t l = 0; l + 1 < n; ++l) {
    ElasticLayer& layer = slot.layers[match[l]];
    y = run_quantized_layer(layer, active.layers[l], y);
  }
  ElasticLayer& last = slot.layers[match[n - 1]];
  y = run_layer(last, active.layers[n - 1], y);
  if (active.shortcut == space::Shortcut::kIdentity) y = y + x;
  if (active.shortcut == space::Shortcut::kProjection)
    y = y + run_quantized_layer(*slot.projection, *active.projection, x);
  return activate_and_quantize(y, active.post_add_activation, last.output_quant);
}

}  // namespace qnas::nn
