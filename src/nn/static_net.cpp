#include "nn/static_net.h"

#include <fmt/format.h>

#include "core/error.h"
#include "nn/depthwise_conv.h"

namespace qnas::nn {

using space::OpKind;

StaticNetImpl::StaticNetImpl(space::ArchSpec spec) : spec_(std::move(spec)) {
  if (spec_.blocks.empty()) fail("cannot build a network from an empty architecture");
  input_quant = register_module("input_aq", quant::LsqPlusActivation());
  for (size_t b = 0; b < spec_.blocks.size(); ++b) {
    StaticBlock block{spec_.blocks[b], {}, std::nullopt};
    for (size_t l = 0; l < block.spec.layers.size(); ++l) {
      block.layers.push_back(make_layer(block.spec.layers[l], fmt::format("block{}_layer{}", b, l)));
    }
    if (block.spec.projection)
      block.projection = make_layer(*block.spec.projection, fmt::format("block{}_proj", b));
    blocks_.push_back(std::move(block));
  }
}

StaticLayer StaticNetImpl::make_layer(const space::LayerSpec& spec, const std::string& name) {
  StaticLayer layer;
  layer.spec = spec;
  switch (spec.op) {
    case OpKind::kConv:
    case OpKind::kDepthwiseConv:
      layer.conv = register_module(
          name + "_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(spec.cin, spec.cout, spec.kernel)
                                                .stride(spec.stride)
                                                .padding(spec.padding())
                                                .groups(spec.groups())
                                                .bias(false)));
      if (spec.batch_norm) layer.bn = register_module(name + "_bn", torch::nn::BatchNorm2d(spec.cout));
      layer.weight_quant = register_module(name + "_wq", quant::LsqWeight(spec.cout, true));
      layer.output_quant = register_module(name + "_aq", quant::LsqPlusActivation());
      break;
    case OpKind::kSqueezeExcite:
      layer.conv = register_module(name + "_reduce",
                                   torch::nn::Conv2d(torch::nn::Conv2dOptions(spec.cin, spec.se_mid, 1)));
      layer.se_expand = register_module(
          name + "_expand", torch::nn::Conv2d(torch::nn::Conv2dOptions(spec.se_mid, spec.cout, 1)));
      layer.weight_quant = register_module(name + "_wq", quant::LsqWeight(spec.se_mid, true));
      layer.expand_weight_quant = register_module(name + "_expand_wq", quant::LsqWeight(spec.cout, true));
      layer.pool_quant = register_module(name + "_pool_aq", quant::LsqPlusActivation());
      layer.mid_quant = register_module(name + "_mid_aq", quant::LsqPlusActivation());
      layer.output_quant = register_module(name + "_aq", quant::LsqPlusActivation());
      break;
    case OpKind::kLinear:
      layer.linear = register_module(name + "_linear", torch::nn::Linear(spec.cin, spec.cout));
      layer.weight_quant = register_module(name + "_wq", quant::LsqWeight(spec.cout, true));
      break;
    case OpKind::kGlobalAvgPool:
      layer.output_quant = register_module(name + "_aq", quant::LsqPlusActivation());
      break;
  }
  return layer;
}

// A conv layer up to its activation.
torch::Tensor StaticNetImpl::conv_bn(StaticLayer& layer, const torch::Tensor& x) {
  const space::LayerSpec& s = layer.spec;
  // Channels-last weights: see DynamicConv2dImpl::forward.
  const torch::Tensor w =
      layer.weight_quant(layer.conv->weight).contiguous(torch::MemoryFormat::ChannelsLast);
  const torch::Tensor y = s.op == OpKind::kDepthwiseConv
                              ? depthwise_conv2d(x, w, s.stride)
                              : torch::conv2d(x, w, {}, s.stride, s.padding(), 1, s.groups());
  return layer.bn ? layer.bn(y) : y;
}

torch::Tensor StaticNetImpl::run_quantized_layer(StaticLayer& layer, const torch::Tensor& x) {
  const space::LayerSpec& s = layer.spec;
  if (s.op != OpKind::kConv && s.op != OpKind::kDepthwiseConv)
    return quantize_output(layer, run_layer(layer, x));
  return activate_and_quantize(conv_bn(layer, x), s.activation, layer.output_quant);
}

// The layer before its output quantizer: a block's last layer is quantised only after the residual add.
torch::Tensor StaticNetImpl::run_layer(StaticLayer& layer, const torch::Tensor& x) {
  const space::LayerSpec& s = layer.spec;
  switch (s.op) {
    case OpKind::kConv:
    case OpKind::kDepthwiseConv:
      return activate(conv_bn(layer, x), s.activation);
    case OpKind::kSqueezeExcite: {
      torch::Tensor g = layer.pool_quant(x.mean({2, 3}, /*keepdim=*/true));
      g = torch::relu(torch::conv2d(g, layer.weight_quant(layer.conv->weight), layer.conv->bias));
      g = torch::conv2d(layer.mid_quant(g), layer.expand_weight_quant(layer.se_expand->weight),
                        layer.se_expand->bias);
      return x * activate(g, s.activation);
    }
    case OpKind::kGlobalAvgPool:
      return x.mean({2, 3}, /*keepdim=*/true);
    case OpKind::kLinear:
      return torch::linear(x.flatten(1), layer.weight_quant(layer.linear->weight), layer.linear->bias);
  }
  return x;
}

torch::Tensor StaticNetImpl::quantize_output(StaticLayer& layer, const torch::Tensor& y) {
  return layer.output_quant ? layer.output_quant(y) : y;
}

torch::Tensor StaticNetImpl::run_block(StaticBlock& block, const torch::Tensor& x) {
  torch::Tensor y = x;
  const size_t n = block.layers.size();
  for (size_t i = 0; i + 1 < n; ++i) y = run_quantized_layer(block.layers[i], y);
  y = run_layer(block.layers.back(), y);
  if (block.spec.shortcut == space::Shortcut::kIdentity) y = y + x;
  if (block.spec.shortcut == space::Shortcut::kProjection) y = y + run_quantized_layer(*block.projection, x);
  return activate_and_quantize(y, block.spec.post_add_activation, block.layers.back().output_quant);
}

torch::Tensor StaticNetImpl::forward(const torch::Tensor& images) {
  torch::Tensor x = input_quant(resize_images(images, spec_.resolution));
  for (auto& block : blocks_) x = run_block(block, x);
  return x.flatten(1);
}

std::pair<size_t, size_t> StaticNetImpl::stage_blocks(const std::string& stage) const {
  std::optional<size_t> first;
  size_t last = 0;
  std::string names;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    if (blocks_[i].spec.stage == stage) {
      if (!first) first = i;
      last = i;
    }
    if (i == 0 || blocks_[i].spec.stage != blocks_[i - 1].spec.stage) names += " " + blocks_[i].spec.stage;
  }
  if (!first) fail("network {} has no stage '{}': its stages are{}", spec_.subnet, stage, names);
  return {*first, last};
}

std::pair<int, int> StaticNetImpl::stage_channels(const std::string& stage) const {
  const auto [first, last] = stage_blocks(stage);
  return {blocks_[first].spec.cin, blocks_[last].spec.cout};
}

std::pair<torch::Tensor, torch::Tensor> StaticNetImpl::stage_io(const torch::Tensor& images,
                                                                const std::string& stage) {
  const auto [first, last] = stage_blocks(stage);
  torch::Tensor x = input_quant(resize_images(images, spec_.resolution));
  for (size_t i = 0; i < first; ++i) x = run_block(blocks_[i], x);
  torch::Tensor input = x;
  for (size_t i = first; i <= last; ++i) x = run_block(blocks_[i], x);
  return {input, x};
}

}  // namespace qnas::nn
