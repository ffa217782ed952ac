#include "nn/supernet.h"

#include <fmt/format.h>

#include "core/error.h"
#include "space/sampling.h"

namespace qnas::nn {

using space::OpKind;

namespace {

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
  // src.initialized(), not its "initialized" buffer: with a bit bank that buffer is the 8-bit one's.
  named_buffer(dst, "initialized").fill_(src.initialized());
}

// A BatchQuant source gives its calibrated inference range: the extracted network is a plain LSQ+ one
// whose fake-quant equals the source's in eval mode (both round the same integer zero point).
void copy_activation_quant(quant::LsqPlusActivationImpl& dst, quant::LsqPlusActivationImpl& src) {
  dst.set_bits(src.bits());
  if (src.uses_batch_range() && src.bits() != quant::kFloatBits) {
    dst.scale.fill_(src.effective_scale());
    dst.offset.fill_(-static_cast<float>(src.zero_point()) * src.effective_scale());
  } else {
    dst.scale.copy_(src.scale);
    dst.offset.copy_(src.offset);
  }
  named_buffer(dst, "initialized").fill_(src.initialized());
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
      break;
    case OpKind::kSqueezeExcite:
      copy_leading(dst.conv->weight, src.conv->weight);
      copy_leading(dst.conv->bias, src.se_reduce_bias);
      copy_leading(dst.se_expand->weight, src.se_expand->weight);
      copy_leading(dst.se_expand->bias, src.se_expand_bias);
      copy_weight_quant(*dst.weight_quant, *src.conv->weight_quant);
      copy_weight_quant(*dst.expand_weight_quant, *src.se_expand->weight_quant);
      copy_activation_quant(*dst.pool_quant, *src.pool_quant);
      copy_activation_quant(*dst.mid_quant, *src.mid_quant);
      break;
    case OpKind::kLinear:
      copy_leading(dst.linear->weight, src.linear->weight);
      copy_leading(dst.linear->bias, src.linear->bias);
      copy_weight_quant(*dst.weight_quant, *src.linear->weight_quant);
      break;
    case OpKind::kGlobalAvgPool:
      break;
  }
  if (dst.output_quant) copy_activation_quant(*dst.output_quant, *src.output_quant);
}

// The leading part of `big` <- small (a static subnet's weight into the slot it was cut from).
void copy_into_leading(torch::Tensor big, const torch::Tensor& small) {
  for (int64_t d = 0; d < small.dim(); ++d) big = big.narrow(d, 0, small.size(d));
  big.copy_(small);
}

// copy_layer's inverse for weights and batch norm; quantizer ranges are not carried (each bit-width of the
// supernet learns its own from the data).
void load_layer(ElasticLayer& dst, StaticLayer& src) {
  const space::LayerSpec& s = src.spec;
  switch (s.op) {
    case OpKind::kConv:
    case OpKind::kDepthwiseConv:
      dst.conv->set_active(s.cout, s.kernel);
      dst.conv->active_weight(s.cin).copy_(src.conv->weight);
      if (src.bn) {
        copy_into_leading(dst.bn->weight, src.bn->weight);
        copy_into_leading(dst.bn->bias, src.bn->bias);
        copy_into_leading(dst.bn->running_mean, src.bn->running_mean);
        copy_into_leading(dst.bn->running_var, src.bn->running_var);
      }
      break;
    case OpKind::kSqueezeExcite:
      copy_into_leading(dst.conv->weight, src.conv->weight);
      copy_into_leading(dst.se_reduce_bias, src.conv->bias);
      copy_into_leading(dst.se_expand->weight, src.se_expand->weight);
      copy_into_leading(dst.se_expand_bias, src.se_expand->bias);
      break;
    case OpKind::kLinear:
      copy_into_leading(dst.linear->weight, src.linear->weight);
      copy_into_leading(dst.linear->bias, src.linear->bias);
      break;
    case OpKind::kGlobalAvgPool:
      break;
  }
}

}  // namespace

SupernetImpl::SupernetImpl(space::SearchSpace space) : space_(std::move(space)) {
  input_quant = register_module("input_aq", quant::LsqPlusActivation());
  const space::ArchSpec max_spec = space::build_arch_spec(space_, space::max_subnet(space_));
  stages_.resize(static_cast<size_t>(space_.num_stages()));
  for (const auto& b : max_spec.blocks) {
    stages_[static_cast<size_t>(b.stage_index)].push_back(
        make_elastic_block(*this, b, fmt::format("{}_block{}", b.stage, b.block_index)));
  }
  set_active(space::max_subnet(space_));
}

void SupernetImpl::set_active(const space::Subnet& subnet) {
  space::ArchSpec spec = space::build_arch_spec(space_, subnet);
  active_ = subnet;
  active_spec_ = std::move(spec);
}

void SupernetImpl::set_active(const space::Subnet& subnet, const space::BitAssignment& bits) {
  set_active(subnet);
  apply_bits(active_quant_handles(), bits, active_spec_, Scales::kAsTrained);
}

void SupernetImpl::enable_bit_bank(const std::vector<int>& bits) {
  quant::enable_bit_bank(*this, bits);
}

std::vector<QuantLayerHandles> SupernetImpl::active_quant_handles() {
  using space::QuantLayer;
  std::vector<std::vector<size_t>> matches;
  for (const auto& block : active_spec_.blocks) matches.push_back(align_layers(slot(block), block));
  std::vector<QuantLayerHandles> out;
  for (const QuantLayer& q : space::quant_layers(active_spec_)) {
    const auto b = static_cast<size_t>(q.block);
    ElasticBlock& s = slot(active_spec_.blocks[b]);
    const std::vector<size_t>& match = matches[b];
    // What the block reads: the previous block's output (its last active layer's quantizer) or the image's.
    quant::LsqPlusActivation block_input =
        b == 0 ? input_quant : slot(active_spec_.blocks[b - 1]).layers[matches[b - 1].back()].output_quant;
    QuantLayerHandles h;
    switch (q.part) {
      case QuantLayer::Part::kProjection:
        h.weight = s.projection->conv->weight;
        h.weight_quant = s.projection->conv->weight_quant;
        h.input_quant = block_input;
        break;
      case QuantLayer::Part::kMain: {
        ElasticLayer& l = s.layers.at(match.at(static_cast<size_t>(q.layer)));
        h.weight = l.linear ? l.linear->weight : l.conv->weight;
        h.weight_quant = l.linear ? l.linear->weight_quant : l.conv->weight_quant;
        h.input_quant =
            q.layer == 0 ? block_input : s.layers.at(match.at(static_cast<size_t>(q.layer) - 1)).output_quant;
        break;
      }
      case QuantLayer::Part::kSeReduce:
      case QuantLayer::Part::kSeExpand: {
        ElasticLayer& l = s.layers.at(match.at(static_cast<size_t>(q.layer)));
        const bool reduce = q.part == QuantLayer::Part::kSeReduce;
        h.weight = reduce ? l.conv->weight : l.se_expand->weight;
        h.weight_quant = reduce ? l.conv->weight_quant : l.se_expand->weight_quant;
        h.input_quant = reduce ? l.pool_quant : l.mid_quant;
        break;
      }
    }
    if (!h.weight.defined() || !h.weight_quant || !h.input_quant)
      fail("supernet {}: layer {} has no quantised weight or input", active_spec_.subnet, q.name);
    out.push_back(h);
  }
  return out;
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

torch::Tensor SupernetImpl::forward(const torch::Tensor& images) {
  torch::Tensor x = input_quant(resize_images(images, active_spec_.resolution));
  for (const auto& block : active_spec_.blocks) x = run_elastic_block(slot(block), block, x);
  return x.flatten(1);
}

void SupernetImpl::load_subnet_weights(StaticNetImpl& net) {
  if (net.spec().space != space_.encode())
    fail("network {} of space {} is not a subnet of supernet {}", net.spec().subnet, net.spec().space,
         space_.encode());
  const space::Subnet subnet = space::Subnet::parse(net.spec().subnet);
  space::validate(subnet, space_);
  torch::NoGradGuard no_grad;
  for (auto& block : net.blocks()) {
    ElasticBlock& s = slot(block.spec);
    const std::vector<size_t> match = align_layers(s, block.spec);
    for (size_t l = 0; l < block.layers.size(); ++l) load_layer(s.layers[match[l]], block.layers[l]);
    if (block.projection) load_layer(*s.projection, *block.projection);
  }
  set_active(active_);
}

StaticNet SupernetImpl::extract_active() {
  StaticNet net(active_spec_);
  torch::NoGradGuard no_grad;
  copy_activation_quant(*net->input_quant, *input_quant);
  for (auto& block : net->blocks()) {
    ElasticBlock& s = slot(block.spec);
    const std::vector<size_t> match = align_layers(s, block.spec);
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
