#pragma once
// ArchSpec: the static network a subnet denotes, as a list of blocks made of concrete layers with shapes.
// The trainer, the latency engine and the exporter all consume it, and FLOPs/params are counted from it,
// so there is exactly one place that knows how a block type expands into layers.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "space/subnet.h"

namespace qnas::space {

enum class OpKind {
  kConv,           // dense conv + BN (+ act): groups == 1
  kDepthwiseConv,  // depthwise conv + BN (+ act): groups == channels
  kSqueezeExcite,  // global pool -> 1x1 conv (bias) + relu -> 1x1 conv (bias) + hsigmoid -> multiply
  kGlobalAvgPool,  // mean over H and W
  kLinear,         // fully connected with bias
};

struct LayerSpec {
  OpKind op = OpKind::kConv;
  int cin = 0;
  int cout = 0;
  int kernel = 1;
  int stride = 1;
  int in_hw = 0;  // square feature maps throughout
  int out_hw = 0;
  Activation activation = Activation::kNone;
  int se_mid = 0;          // squeeze width of an SE layer
  bool batch_norm = true;  // false inside a K3 stack: one BN follows the whole stack

  int groups() const { return op == OpKind::kDepthwiseConv ? cin : 1; }
  int padding() const { return kernel / 2; }
  // Multiply-adds, counted as the official flops_counter does (convs and linears only; BN, activations,
  // pooling and residual adds are free).
  std::int64_t macs() const;
  // Learnable parameters: weights, BN scale/shift (2 per channel) after a conv, biases of SE and linear.
  std::int64_t params() const;
};

enum class Shortcut { kNone, kIdentity, kProjection };

struct BlockSpec {
  std::string stage;  // stage name, e.g. "stage3"
  int stage_index = 0;
  int block_index = 0;  // index within the stage
  const BlockType* type = nullptr;
  int cin = 0, cout = 0, kernel = 0, stride = 1, in_hw = 0, out_hw = 0;
  double expand = 0;
  std::vector<LayerSpec> layers;  // the main path, in order
  Shortcut shortcut = Shortcut::kNone;
  std::optional<LayerSpec> projection;                 // 1x1 conv + BN on the shortcut when shapes change
  Activation post_add_activation = Activation::kNone;  // ResNet blocks activate after the add

  std::int64_t macs() const;
  std::int64_t params() const;
};

struct ArchSpec {
  std::string space;   // SearchSpace encoding
  std::string subnet;  // Subnet encoding
  int resolution = 0;
  int in_channels = 0;
  int num_classes = 0;
  std::vector<BlockSpec> blocks;

  std::int64_t macs() const;
  std::int64_t params() const;
  // Per stage name, in network order.
  std::vector<std::pair<std::string, std::int64_t>> macs_per_stage() const;
  std::vector<std::pair<std::string, std::int64_t>> params_per_stage() const;
};

// Layer constructors shared by the block expansion and the hand-written baselines.
LayerSpec make_conv(int cin, int cout, int kernel, int stride, int in_hw, Activation act);
LayerSpec make_depthwise(int channels, int kernel, int stride, int in_hw, Activation act);
LayerSpec make_squeeze_excite(int channels, int mid, int hw);
LayerSpec make_global_pool(int channels, int in_hw);
LayerSpec make_linear(int cin, int cout);

// Official make_divisible(v, 8): round to the nearest multiple of 8, never below 8, never more than 10% down.
int make_divisible(double value, int divisor = 8);
// Output size of a conv with padding k/2.
int conv_out_size(int in, int kernel, int stride);

// Concrete blocks of one stage for a given input (what a block-KD LUT row measures).
std::vector<BlockSpec> build_stage(const BlockType& type, const std::string& stage_name, int stage_index,
                                   int stride, int cin, int in_hw, const std::vector<BlockChoice>& choices);

// The whole static network; validates the subnet against the space first. A non-zero `input_resolution`
// builds the same network for another input size (latency probes and fast tests at reduced resolution).
ArchSpec build_arch_spec(const SearchSpace& space, const Subnet& subnet, int input_resolution = 0);

}  // namespace qnas::space
