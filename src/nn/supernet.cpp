#include "nn/supernet.h"

#include <fmt/format.h>

#include "core/error.h"
#include "space/sampling.h"

namespace qnas::nn {

using space::BlockKind;
using space::OpKind;

namespace {

// Block types whose residual needs a 1x1 projection whenever a subnet's shapes differ across the block.
bool can_project(BlockKind kind) {
  return kind != BlockKind::kFirstConv && kind != BlockKind::kFinalExpand && kind != BlockKind::kFeatureMix &&
         kind != BlockKind::kLogits && kind != BlockKind::kMobileNetV2;
}

// dst <- the leading part of src along every dimension (elastic width keeps the leading channels).
void copy_leading(torch::Tensor dst, const torch::Tensor& src) {
  torch::Tensor s = src;
  for (int64_t d = 0; d < dst.dim(); ++d) s = s.narrow(d, 0, dst.size(d));
  dst.copy_(s);
}

torch::Tensor named_buffer(torch::nn::Module& m, const std::string& name) {
  return m.named_buffers(/*recurse=*/false)[name];
}

void copy_weight_quant(quant::LsqWeightImpl& dst, quant::LsqWeightImpl& src) {
  dst.set_bits(src.bits());
  copy_leading(dst.scale, src.scale);
  named_buffer(dst, "initialized").copy_(named_buffer(src, "initialized"));
}

void copy_input_quant(quant::LsqPlusActivationImpl& dst, quant::LsqPlusActivationImpl& src) {
  dst.set_bits(src.bits());
  dst.scale.copy_(src.scale);
  dst.offset.copy_(src.offset);
  named_buffer(dst, "initialized").copy_(named_buffer(src, "initialized"));
}

void copy_layer(StaticLayer& dst, ElasticLayer& src) {
  const space::LayerSpec& s = dst.spec;
  switch (s.op) {
    case OpKind::kConv:
    case OpKind::kDepthwiseConv:
      src.conv->set_active(s.cout, s.kernel);
      dst.conv->weight.copy_(src.conv->active_weight(s.cin));
      if (dst.bn) {
        copy_leading(dst.bn->weight, src.bn->weight);
        copy_leading(dst.bn->bias, src.bn->bias);
        copy_leading(dst.bn->running_mean, src.bn->running_mean);
        copy_leading(dst.bn->running_var, src.bn->running_var);
        dst.bn->options.eps(src.bn->eps);
      }
      copy_weight_quant(*dst.weight_quant, *src.conv->weight_quant);
      copy_input_quant(*dst.input_quant, *src.conv->input_quant);
      break;
    case OpKind::kSqueezeExcite:
      copy_leading(dst.conv->weight, src.conv->weight);
      copy_leading(dst.conv->bias, src.se_reduce_bias);
      copy_leading(dst.se_expand->weight, src.se_expand->weight);
      copy_leading(dst.se_expand->bias, src.se_expand_bias);
      copy_weight_quant(*dst.weight_quant, *src.conv->weight_quant);
      copy_input_quant(*dst.input_quant, *src.conv->input_quant);
      copy_weight_quant(*dst.expand_weight_quant, *src.se_expand->weight_quant);
      copy_input_quant(*dst.expand_input_quant, *src.se_expand->input_quant);
      break;
    case OpKind::kLinear:
      copy_leading(dst.linear->weight, src.linear->weight);
      copy_leading(dst.linear->bias, src.linear->bias);
      copy_weight_quant(*dst.weight_quant, *src.linear->weight_quant);
      copy_input_quant(*dst.input_quant, *src.linear->input_quant);
      break;
    case OpKind::kGlobalAvgPool:
      break;
  }
}

}  // namespace

SupernetImpl::SupernetImpl(space::SearchSpace space) : space_(std::move(space)) {
  const space::ArchSpec max_spec = space::build_arch_spec(space_, space::max_subnet(space_));
  stages_.resize(static_cast<size_t>(space_.num_stages()));
  for (const auto& b : max_spec.blocks) {
    ElasticBlock block{b, {}, std::nullopt};
    const std::string prefix = fmt::format("{}_block{}", b.stage, b.block_index);
    for (size_t l = 0; l < b.layers.size(); ++l) {
      block.layers.push_back(make_layer(b.layers[l], fmt::format("{}_layer{}", prefix, l)));
    }
    if (can_project(b.type->kind)) {
      block.projection = make_layer(
          space::make_conv(b.cin, b.cout, 1, b.stride, b.in_hw, space::Activation::kNone), prefix + "_proj");
    }
    stages_[static_cast<size_t>(b.stage_index)].push_back(std::move(block));
  }
  set_active(space::max_subnet(space_));
}

ElasticLayer SupernetImpl::make_layer(const space::LayerSpec& max, const std::string& name) {
  ElasticLayer layer;
  layer.max = max;
  switch (max.op) {
    case OpKind::kConv:
    case OpKind::kDepthwiseConv:
      layer.conv = register_module(name + "_conv", DynamicConv2d(max.cin, max.cout, max.kernel, max.stride,
                                                                 max.op == OpKind::kDepthwiseConv));
      layer.bn = register_module(name + "_bn", DynamicBatchNorm2d(max.cout));
      break;
    case OpKind::kSqueezeExcite:
      layer.conv = register_module(name + "_reduce", DynamicConv2d(max.cin, max.se_mid, 1, 1, false));
      layer.se_expand = register_module(name + "_expand", DynamicConv2d(max.se_mid, max.cout, 1, 1, false));
      layer.se_reduce_bias = register_parameter(name + "_reduce_bias", torch::zeros({max.se_mid}));
      layer.se_expand_bias = register_parameter(name + "_expand_bias", torch::zeros({max.cout}));
      break;
    case OpKind::kLinear:
      layer.linear = register_module(name + "_linear", DynamicLinear(max.cin, max.cout));
      break;
    case OpKind::kGlobalAvgPool:
      break;
  }
  return layer;
}

void SupernetImpl::set_active(const space::Subnet& subnet) {
  space::ArchSpec spec = space::build_arch_spec(space_, subnet);
  active_ = subnet;
  active_spec_ = std::move(spec);
}

space::Subnet SupernetImpl::sample_max() const {
  return space::max_subnet(space_);
}
space::Subnet SupernetImpl::sample_min() const {
  return space::min_subnet(space_);
}
space::Subnet SupernetImpl::sample_random(Rng& rng) const {
  return space::sample_random(space_, rng);
}

ElasticBlock& SupernetImpl::slot(const space::BlockSpec& active) {
  return stages_.at(static_cast<size_t>(active.stage_index)).at(static_cast<size_t>(active.block_index));
}

// Active layers map onto slot layers in order, skipping slot layers of another kind. That covers every
// way a smaller block differs from the largest one: an inverted residual without its expand conv (hidden
// width == input width), and a K3 stack with fewer 3x3 depthwise convs (the leading ones run).
std::vector<size_t> SupernetImpl::align(const ElasticBlock& slot, const space::BlockSpec& active) const {
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

torch::Tensor SupernetImpl::run_layer(ElasticLayer& slot, const space::LayerSpec& active,
                                      const torch::Tensor& x) {
  switch (active.op) {
    case OpKind::kConv:
    case OpKind::kDepthwiseConv: {
      slot.conv->set_active(active.cout, active.kernel);
      torch::Tensor y = slot.conv(x);
      if (active.batch_norm) y = slot.bn(y);
      return activate(y, active.activation);
    }
    case OpKind::kSqueezeExcite: {
      const int64_t channels = x.size(1), mid = active.se_mid;
      slot.conv->set_active(static_cast<int>(mid), 1);
      slot.se_expand->set_active(static_cast<int>(channels), 1);
      torch::Tensor g = x.mean({2, 3}, /*keepdim=*/true);
      g = torch::relu(slot.conv(g) + slot.se_reduce_bias.narrow(0, 0, mid).view({1, mid, 1, 1}));
      g = slot.se_expand(g) + slot.se_expand_bias.narrow(0, 0, channels).view({1, channels, 1, 1});
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

torch::Tensor SupernetImpl::forward(const torch::Tensor& images) {
  torch::Tensor x = resize_images(images, active_spec_.resolution);
  for (const auto& block : active_spec_.blocks) {
    ElasticBlock& s = slot(block);
    const std::vector<size_t> match = align(s, block);
    torch::Tensor y = x;
    for (size_t l = 0; l < block.layers.size(); ++l) y = run_layer(s.layers[match[l]], block.layers[l], y);
    if (block.shortcut == space::Shortcut::kIdentity) y = y + x;
    if (block.shortcut == space::Shortcut::kProjection)
      y = y + run_layer(*s.projection, *block.projection, x);
    x = activate(y, block.post_add_activation);
  }
  return x.flatten(1);
}

StaticNet SupernetImpl::extract_active() {
  StaticNet net(active_spec_);
  torch::NoGradGuard no_grad;
  for (auto& block : net->blocks()) {
    ElasticBlock& s = slot(block.spec);
    const std::vector<size_t> match = align(s, block.spec);
    for (size_t l = 0; l < block.layers.size(); ++l) copy_layer(block.layers[l], s.layers[match[l]]);
    if (block.projection) copy_layer(*block.projection, *s.projection);
  }
  net->to(parameters().front().device());
  if (is_training()) {
    net->train();
  } else {
    net->eval();
  }
  return net;
}

}  // namespace qnas::nn
