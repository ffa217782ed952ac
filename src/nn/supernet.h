#pragma once
// The weight-sharing supernet of one SearchSpace (any hyperspace: onnxw, mobilew, fmnistw). Every block
// slot (stage, index up to the stage's largest depth) owns the weights of the largest block it can be; a
// subnet runs by slicing them (see dynamic_ops.h). Which layers run, with which shapes, comes from
// space::build_arch_spec, the same expansion the latency engine and the exporter use, so what is trained
// is exactly what is measured and exported.
#include <torch/torch.h>

#include "core/rng.h"
#include "nn/elastic_block.h"
#include "nn/mixed_precision.h"
#include "nn/network.h"
#include "nn/static_net.h"
#include "space/arch_spec.h"
#include "space/bit_assignment.h"
#include "space/search_space.h"

namespace qnas::nn {

class SupernetImpl : public NetworkImpl {
 public:
  explicit SupernetImpl(space::SearchSpace space);

  // Validates `subnet` against the space (a qnas::Error naming what is wrong) and makes it the active one.
  void set_active(const space::Subnet& subnet);
  // The same, with per-layer bits (QFA): each quantizer of the active layers switches to its bank entry for
  // its bits. Needs enable_bit_bank() over those bits (8 and 32 always work).
  void set_active(const space::Subnet& subnet, const space::BitAssignment& bits);
  // Gives every quantizer a scale per bit-width (quant::ScaleBankEntry): call before loading a checkpoint
  // trained with elastic bits, and before creating the optimizer.
  void enable_bit_bank(const std::vector<int>& bits);
  // The quantised layers of the active subnet (space::quant_layers order): the elastic weights they slice and
  // their quantizers.
  std::vector<QuantLayerHandles> active_quant_handles();
  const space::Subnet& active() const { return active_; }
  const space::ArchSpec& active_spec() const { return active_spec_; }
  const space::SearchSpace& space() const { return space_; }

  space::Subnet sample_max() const;
  space::Subnet sample_min() const;
  space::Subnet sample_random(Rng& rng) const;

  torch::Tensor forward(const torch::Tensor& images) override;

  // A standalone static network holding copies of the active subnet's weights, BN statistics and quantizer
  // state: its outputs equal this supernet's with that subnet active.
  StaticNet extract_active();
  // The inverse for weights: copies a trained static subnet of this space (weights, biases, batch norm) into
  // the slots it was cut from, so a supernet can start from a trained network (QFA starts from a trained
  // full-precision supernet). Quantizer ranges are not copied. Throws for a network of another space.
  void load_subnet_weights(StaticNetImpl& net);

  quant::LsqPlusActivation input_quant{nullptr};  // the normalised image

 private:
  ElasticBlock& slot(const space::BlockSpec& active);

  space::SearchSpace space_;
  std::vector<std::vector<ElasticBlock>> stages_;  // [stage][block index]
  space::Subnet active_;
  space::ArchSpec active_spec_;
};
TORCH_MODULE(Supernet);

}  // namespace qnas::nn
