#pragma once
// A bit assignment (space/bit_assignment.h) on a static network: which LibTorch tensors and quantizers each
// quantised layer of the ArchSpec is, and setting them. A layer's input bits go to the quantizer of the
// tensor it reads, which its producer owns (core/quant_contract.h); a tensor read by several layers (a block
// input read by the first conv and the shortcut projection) takes the highest bits any reader asks for.
#include <filesystem>
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

// How the scales of an initialised quantizer follow a new bit-width.
enum class Scales {
  kKeepRange,  // a network trained in other bits: scale * Qp stays where training put it
  kAsTrained,  // a network trained (or fine-tuned) in these bits: its scales are already theirs
  // A network trained in other bits, to be used or fine-tuned in these: a weight moved to fewer bits gets
  // the scale closest to the weight it computed with (LsqWeightImpl::fit_scale against its trained
  // fake-quant), an input moved below 4 bits forgets its range and takes LSQ's initialisation from the next
  // batch (LsqPlusActivationImpl::forget_range), the others keep their range as kKeepRange. Measured on the
  // QFA max subnet at 4 bits: the kept weight range gave 40% before any fine-tune, the fitted one 71%; at 2
  // bits a kept input range leaves 3 levels over the 8-bit range and the network at chance.
  kFitLowerBits,
};

// Sets every weight and input quantizer the assignment names. Throws when the assignment is for another
// network.
void apply_bits(StaticNetImpl& net, const space::BitAssignment& bits, Scales scales = Scales::kKeepRange);
// The same on handles of `spec`'s layers (a static network's or a supernet's active subnet's).
void apply_bits(std::vector<QuantLayerHandles> handles, const space::BitAssignment& bits,
                const space::ArchSpec& spec, Scales scales);

// Reads a bit assignment for `spec` from a file or from a directory holding assignment.json (what `qnas
// mixed-precision` writes). One qnas::Error naming the file for a missing, malformed or foreign one.
space::BitAssignment read_bit_assignment(const std::filesystem::path& path, const space::ArchSpec& spec);

}  // namespace qnas::nn
