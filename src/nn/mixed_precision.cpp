#include "nn/mixed_precision.h"

#include <map>

#include "core/error.h"
#include "core/fs.h"

namespace qnas::nn {

using space::QuantLayer;

namespace {

// An input below this many bits starts again from LSQ's initialisation rather than its trained range.
constexpr int kReinitialisedInputBelow = 4;

// Another bit-width over the same trained range: an initialised quantizer's scale is stretched so that
// scale * Qp stays where it was (LSQ+ keeps its offset). kFitLowerBits fits a weight going below its
// trained bits to its trained fake-quant instead.
void set_weight_bits(quant::LsqWeightImpl& q, const torch::Tensor& weight, int bits, Scales scales) {
  const bool trained = q.bits() != quant::kFloatBits && bits != quant::kFloatBits && q.initialized();
  if (trained && scales == Scales::kFitLowerBits && bits < q.bits()) {
    // The target is the weight the network was trained to compute with: its trained-bits fake-quant. Past
    // the trained range a float weight is clipped, and QAT let it drift there; fitting the float weights
    // instead widens the range to those outliers (measured: a QFA max subnet at 4 bits fell from 40% to
    // chance).
    torch::Tensor trained_weight;
    {
      torch::NoGradGuard no_grad;
      const bool training = q.is_training();
      q.eval();
      trained_weight = q.forward(weight).detach();
      q.train(training);
    }
    q.set_bits(bits);
    q.fit_scale(trained_weight);
    return;
  }
  if (trained && scales != Scales::kAsTrained) {
    torch::NoGradGuard no_grad;
    q.scale.mul_(static_cast<double>(q.qmax()) / static_cast<double>((1 << (bits - 1)) - 1));
  }
  q.set_bits(bits);
}

void set_input_bits(quant::LsqPlusActivationImpl& q, int bits, Scales scales) {
  const bool trained = q.bits() != quant::kFloatBits && bits != quant::kFloatBits && q.initialized();
  if (trained && scales == Scales::kFitLowerBits && bits < q.bits() && bits < kReinitialisedInputBelow) {
    q.set_bits(bits);
    q.forget_range();
    return;
  }
  if (trained && scales != Scales::kAsTrained) {
    torch::NoGradGuard no_grad;
    q.scale.mul_(static_cast<double>(q.qmax()) / static_cast<double>((1 << bits) - 1));
  }
  q.set_bits(bits);
}

}  // namespace

std::vector<QuantLayerHandles> quant_layer_handles(StaticNetImpl& net) {
  const auto layers = space::quant_layers(net.spec());
  auto& blocks = net.blocks();
  std::vector<QuantLayerHandles> out;
  for (const QuantLayer& q : layers) {
    StaticBlock& block = blocks.at(static_cast<size_t>(q.block));
    // What the block reads: the previous block's output (its last layer's quantizer) or the image's.
    quant::LsqPlusActivation block_input =
        q.block == 0 ? net.input_quant : blocks[static_cast<size_t>(q.block) - 1].layers.back().output_quant;
    QuantLayerHandles h;
    switch (q.part) {
      case QuantLayer::Part::kProjection:
        h.weight = block.projection->conv->weight;
        h.weight_quant = block.projection->weight_quant;
        h.input_quant = block_input;
        break;
      case QuantLayer::Part::kMain: {
        StaticLayer& l = block.layers.at(static_cast<size_t>(q.layer));
        h.weight = l.linear ? l.linear->weight : l.conv->weight;
        h.weight_quant = l.weight_quant;
        h.input_quant =
            q.layer == 0 ? block_input : block.layers[static_cast<size_t>(q.layer) - 1].output_quant;
        break;
      }
      case QuantLayer::Part::kSeReduce:
      case QuantLayer::Part::kSeExpand: {
        StaticLayer& l = block.layers.at(static_cast<size_t>(q.layer));
        const bool reduce = q.part == QuantLayer::Part::kSeReduce;
        h.weight = reduce ? l.conv->weight : l.se_expand->weight;
        h.weight_quant = reduce ? l.weight_quant : l.expand_weight_quant;
        h.input_quant = reduce ? l.pool_quant : l.mid_quant;
        break;
      }
    }
    if (!h.weight.defined() || !h.weight_quant || !h.input_quant)
      fail("network {}: layer {} has no quantised weight or input", net.spec().subnet, q.name);
    out.push_back(h);
  }
  return out;
}

void apply_bits(StaticNetImpl& net, const space::BitAssignment& bits, Scales scales) {
  apply_bits(quant_layer_handles(net), bits, net.spec(), scales);
}

void apply_bits(std::vector<QuantLayerHandles> handles, const space::BitAssignment& bits,
                const space::ArchSpec& spec, Scales scales) {
  bits.validate(spec);
  if (!bits.subnet.empty() && bits.subnet != spec.subnet)
    fail("bit assignment for subnet {} applied to network {}", bits.subnet, spec.subnet);
  std::map<quant::LsqPlusActivationImpl*, std::pair<quant::LsqPlusActivation, int>> inputs;
  for (size_t i = 0; i < handles.size(); ++i) {
    set_weight_bits(*handles[i].weight_quant, handles[i].weight, bits.layers[i].weight, scales);
    auto [it, inserted] =
        inputs.try_emplace(handles[i].input_quant.get(), handles[i].input_quant, bits.layers[i].activation);
    if (!inserted) it->second.second = std::max(it->second.second, bits.layers[i].activation);
  }
  for (auto& [ptr, q] : inputs) set_input_bits(*q.first, q.second, scales);
}

space::BitAssignment read_bit_assignment(const std::filesystem::path& path, const space::ArchSpec& spec) {
  const std::filesystem::path file = std::filesystem::is_directory(path) ? path / "assignment.json" : path;
  if (!std::filesystem::exists(file))
    fail(
        "bit assignment {} does not exist: pass the assignment.json that `qnas mixed-precision` wrote (or "
        "its "
        "directory)",
        file.string());
  return space::BitAssignment::from_json(read_json_file(file), spec, file.string());
}

}  // namespace qnas::nn
