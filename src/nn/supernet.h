#pragma once
// The weight-sharing supernet of one SearchSpace (any hyperspace: onnxw, mobilew, fmnistw). Every block
// slot (stage, index up to the stage's largest depth) owns the weights of the largest block it can be; a
// subnet runs by slicing them (see dynamic_ops.h). Which layers run, with which shapes, comes from
// space::build_arch_spec, the same expansion the latency engine and the exporter use, so what is trained
// is exactly what is measured and exported.
#include <torch/torch.h>

#include "core/rng.h"
#include "nn/dynamic_ops.h"
#include "nn/network.h"
#include "nn/static_net.h"
#include "space/arch_spec.h"
#include "space/search_space.h"

namespace qnas::nn {

// One slot of a block's main path: an elastic conv(+BN)(+act), an elastic SE, a pool or an elastic linear.
struct ElasticLayer {
  space::LayerSpec max;  // the largest layer this slot can be
  DynamicConv2d conv{nullptr};
  DynamicBatchNorm2d bn{nullptr};  // every conv slot has one: in K3 stacks the BN moves with the depth
  DynamicConv2d se_expand{nullptr};
  torch::Tensor se_reduce_bias, se_expand_bias;
  DynamicLinear linear{nullptr};
};

struct ElasticBlock {
  space::BlockSpec max;
  std::vector<ElasticLayer> layers;
  std::optional<ElasticLayer> projection;  // residual block types: used whenever the active shapes differ
};

class SupernetImpl : public NetworkImpl {
 public:
  explicit SupernetImpl(space::SearchSpace space);

  // Validates `subnet` against the space (a qnas::Error naming what is wrong) and makes it the active one.
  void set_active(const space::Subnet& subnet);
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

 private:
  ElasticLayer make_layer(const space::LayerSpec& max, const std::string& name);
  torch::Tensor run_layer(ElasticLayer& slot, const space::LayerSpec& active, const torch::Tensor& x);
  ElasticBlock& slot(const space::BlockSpec& active);
  // Matches each active layer to the slot layer it runs on (see supernet.cpp).
  std::vector<size_t> align(const ElasticBlock& slot, const space::BlockSpec& active) const;

  space::SearchSpace space_;
  std::vector<std::vector<ElasticBlock>> stages_;  // [stage][block index]
  space::Subnet active_;
  space::ArchSpec active_spec_;
};
TORCH_MODULE(Supernet);

}  // namespace qnas::nn
