#pragma once
// A bit assignment (space/bit_assignment.h) on a static network: which LibTorch tensors and quantizers each
// quantised layer of the ArchSpec is, and setting them. A layer's input bits go to the quantizer of the
// tensor it reads, which its producer owns (core/quant_contract.h); a tensor read by several layers (a block
// input read by the first conv and the shortcut projection) takes the highest bits any reader asks for.
#include <vector>

#include "nn/static_net.h"
#include "space/bit_assignment.h"

namespace qnas::nn {

struct QuantLayerHandles {
  torch::Tensor weight;  // the float weight (a parameter of the network)
  quant::LsqWeight weight_quant{nullptr};
  quant::LsqPlusActivation input_quant{nullptr};  // the quantizer of the tensor the layer reads
};

// One entry per space::quant_layers(net.spec()) entry, in that order.
std::vector<QuantLayerHandles> quant_layer_handles(StaticNetImpl& net);

// Sets every weight and input quantizer the assignment names, keeping each trained quantizer's range
// (scale * Qp stays where training put it). Throws when the assignment is for another network.
void apply_bits(StaticNetImpl& net, const space::BitAssignment& bits);

}  // namespace qnas::nn
