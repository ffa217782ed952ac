#include "space/arch_spec.h"

#include <cmath>

#include "core/error.h"

namespace qnas::space {
namespace {

// The kxk depthwise of an inverted residual: one conv, or for the K3 variants a stack of 3x3 depthwise convs
// with the same receptive field (official QDWConv2dK3: k5 = 2 stacked, k7 = 3 stacked; BN + act at the end).
void add_depthwise(std::vector<LayerSpec>& layers, const BlockType& type, int channels, int kernel,
                   int stride, int in_hw) {
  const bool stacked = type.kind == BlockKind::kMobileNetV2K3Res || type.kind == BlockKind::kMobileNetV3K3Res;
  if (!stacked) {
    layers.push_back(make_depthwise(channels, kernel, stride, in_hw, type.activation));
    return;
  }
  const int count = (kernel - 1) / 2;
  int hw = in_hw;
  for (int i = 0; i < count; ++i) {
    const bool last = i == count - 1;
    layers.push_back(
        make_depthwise(channels, 3, i == 0 ? stride : 1, hw, last ? type.activation : Activation::kNone));
    layers.back().batch_norm = last;
    hw = layers.back().out_hw;
  }
}

bool is_inverted_residual(BlockKind kind) {
  return kind == BlockKind::kMobileNetV2 || kind == BlockKind::kMobileNetV2Res ||
         kind == BlockKind::kMobileNetV3Res || kind == BlockKind::kMobileNetV2K3Res ||
         kind == BlockKind::kMobileNetV3K3Res;
}

// Fills layers, shortcut and projection of one block from the official block definitions
// (SpaceEvo/modules/modeling/blocks/{mobilenets,resnet,efficientnetv2,simple}_block.py).
void expand_block(BlockSpec& b) {
  const BlockType& t = *b.type;
  const Activation act = t.activation;
  const int hw = b.in_hw;
  const bool shapes_match = b.stride == 1 && b.cin == b.cout;
  bool always_residual = true;
  switch (t.kind) {
    case BlockKind::kFirstConv:
    case BlockKind::kFinalExpand:
      b.layers.push_back(make_conv(b.cin, b.cout, b.kernel, b.stride, hw, act));
      always_residual = false;
      break;
    case BlockKind::kFeatureMix: {
      b.layers.push_back(make_global_pool(b.cin, hw));
      b.layers.push_back(make_conv(b.cin, b.cout, 1, 1, 1, act));
      always_residual = false;
      break;
    }
    case BlockKind::kLogits: {
      b.layers.push_back(make_linear(b.cin, b.cout));
      always_residual = false;
      break;
    }
    case BlockKind::kMobileNetV1Dual:
      b.layers.push_back(make_depthwise(b.cin, b.kernel, b.stride, hw, act));
      b.layers.push_back(make_conv(b.cin, b.cout, 1, 1, b.layers.back().out_hw, act));
      b.layers.push_back(make_depthwise(b.cout, b.kernel, 1, b.layers.back().out_hw, act));
      b.layers.push_back(make_conv(b.cout, b.cout, 1, 1, b.layers.back().out_hw, act));
      break;
    case BlockKind::kResNet:
    case BlockKind::kResNetSE: {
      // Hidden width follows the block's output width (official _ResNetBaseBlock).
      const int hidden = make_divisible(b.cout * b.expand);
      b.layers.push_back(make_conv(b.cin, hidden, 1, 1, hw, act));
      b.layers.push_back(make_conv(hidden, hidden, b.kernel, b.stride, hw, act));
      // The SE squeeze width follows the block's input width (official QSE4Resnet, as in RegNet).
      if (t.kind == BlockKind::kResNetSE) {
        b.layers.push_back(make_squeeze_excite(hidden, make_divisible(b.cin / 4), b.layers.back().out_hw));
      }
      b.layers.push_back(make_conv(hidden, b.cout, 1, 1, b.layers.back().out_hw, Activation::kNone));
      b.post_add_activation = act;
      break;
    }
    case BlockKind::kFusedMBConvRes:
    case BlockKind::kFusedMBConvSERes: {
      const int hidden = make_divisible(b.cin * b.expand);
      b.layers.push_back(make_conv(b.cin, hidden, b.kernel, b.stride, hw, act));
      if (t.kind == BlockKind::kFusedMBConvSERes) {
        b.layers.push_back(make_squeeze_excite(hidden, make_divisible(b.cin / 4), b.layers.back().out_hw));
      }
      b.layers.push_back(make_conv(hidden, b.cout, 1, 1, b.layers.back().out_hw, Activation::kNone));
      break;
    }
    default: {
      if (!is_inverted_residual(t.kind)) fail("block type {} has no layer expansion", t.name);
      // Hidden width follows the block's input width (official _QInvertedResidual); no expand conv when the
      // hidden width equals the input width.
      const int hidden = make_divisible(b.cin * b.expand);
      if (hidden != b.cin) b.layers.push_back(make_conv(b.cin, hidden, 1, 1, hw, act));
      add_depthwise(b.layers, t, hidden, b.kernel, b.stride, hw);
      if (t.has_se()) {
        b.layers.push_back(make_squeeze_excite(hidden, make_divisible(hidden / 4), b.layers.back().out_hw));
      }
      b.layers.push_back(make_conv(hidden, b.cout, 1, 1, b.layers.back().out_hw, Activation::kNone));
      always_residual = t.kind != BlockKind::kMobileNetV2;
      break;
    }
  }
  b.out_hw = b.layers.back().out_hw;
  if (shapes_match && (always_residual || t.kind == BlockKind::kMobileNetV2)) {
    b.shortcut = Shortcut::kIdentity;
  } else if (always_residual) {
    b.shortcut = Shortcut::kProjection;
    b.projection = make_conv(b.cin, b.cout, 1, b.stride, hw, Activation::kNone);
  }
}

template <typename Metric>
std::vector<std::pair<std::string, std::int64_t>> per_stage(const std::vector<BlockSpec>& blocks,
                                                            Metric metric) {
  std::vector<std::pair<std::string, std::int64_t>> out;
  for (const auto& b : blocks) {
    if (out.empty() || out.back().first != b.stage) out.emplace_back(b.stage, 0);
    out.back().second += metric(b);
  }
  return out;
}

}  // namespace

LayerSpec make_conv(int cin, int cout, int kernel, int stride, int in_hw, Activation act) {
  LayerSpec layer;
  layer.op = OpKind::kConv;
  layer.cin = cin;
  layer.cout = cout;
  layer.kernel = kernel;
  layer.stride = stride;
  layer.in_hw = in_hw;
  layer.out_hw = conv_out_size(in_hw, kernel, stride);
  layer.activation = act;
  return layer;
}

LayerSpec make_depthwise(int channels, int kernel, int stride, int in_hw, Activation act) {
  LayerSpec layer = make_conv(channels, channels, kernel, stride, in_hw, act);
  layer.op = OpKind::kDepthwiseConv;
  return layer;
}

LayerSpec make_squeeze_excite(int channels, int mid, int hw) {
  LayerSpec layer;
  layer.op = OpKind::kSqueezeExcite;
  layer.cin = layer.cout = channels;
  layer.in_hw = layer.out_hw = hw;
  layer.se_mid = mid;
  layer.activation = Activation::kHsigmoid;
  return layer;
}

LayerSpec make_global_pool(int channels, int in_hw) {
  LayerSpec pool;
  pool.op = OpKind::kGlobalAvgPool;
  pool.cin = pool.cout = channels;
  pool.in_hw = in_hw;
  pool.out_hw = 1;
  return pool;
}

LayerSpec make_linear(int cin, int cout) {
  LayerSpec linear;
  linear.op = OpKind::kLinear;
  linear.cin = cin;
  linear.cout = cout;
  linear.in_hw = linear.out_hw = 1;
  return linear;
}

int make_divisible(double value, int divisor) {
  int rounded = std::max(divisor, static_cast<int>(value + divisor / 2.0) / divisor * divisor);
  if (rounded < 0.9 * value) rounded += divisor;
  return rounded;
}

int conv_out_size(int in, int kernel, int stride) {
  return (in + 2 * (kernel / 2) - kernel) / stride + 1;
}

std::int64_t LayerSpec::macs() const {
  const std::int64_t out_pixels = static_cast<std::int64_t>(out_hw) * out_hw;
  switch (op) {
    case OpKind::kConv:
    case OpKind::kDepthwiseConv:
      return static_cast<std::int64_t>(cin / groups()) * cout * kernel * kernel * out_pixels;
    case OpKind::kSqueezeExcite:
      return 2LL * cin * se_mid;
    case OpKind::kLinear:
      return static_cast<std::int64_t>(cin) * cout;
    case OpKind::kGlobalAvgPool:
      return 0;
  }
  return 0;
}

std::int64_t LayerSpec::params() const {
  switch (op) {
    case OpKind::kConv:
    case OpKind::kDepthwiseConv:
      return static_cast<std::int64_t>(cin / groups()) * cout * kernel * kernel +
             (batch_norm ? 2LL * cout : 0);
    case OpKind::kSqueezeExcite:
      return 2LL * cin * se_mid + se_mid + cin;
    case OpKind::kLinear:
      return static_cast<std::int64_t>(cin) * cout + cout;
    case OpKind::kGlobalAvgPool:
      return 0;
  }
  return 0;
}

std::int64_t BlockSpec::macs() const {
  std::int64_t total = projection ? projection->macs() : 0;
  for (const auto& layer : layers) total += layer.macs();
  return total;
}

std::int64_t BlockSpec::params() const {
  std::int64_t total = projection ? projection->params() : 0;
  for (const auto& layer : layers) total += layer.params();
  return total;
}

std::int64_t ArchSpec::macs() const {
  std::int64_t total = 0;
  for (const auto& b : blocks) total += b.macs();
  return total;
}

std::int64_t ArchSpec::params() const {
  std::int64_t total = 0;
  for (const auto& b : blocks) total += b.params();
  return total;
}

std::vector<std::pair<std::string, std::int64_t>> ArchSpec::macs_per_stage() const {
  return per_stage(blocks, [](const BlockSpec& b) { return b.macs(); });
}

std::vector<std::pair<std::string, std::int64_t>> ArchSpec::params_per_stage() const {
  return per_stage(blocks, [](const BlockSpec& b) { return b.params(); });
}

std::vector<BlockSpec> build_stage(const BlockType& type, const std::string& stage_name, int stage_index,
                                   int stride, int cin, int in_hw, const std::vector<BlockChoice>& choices) {
  std::vector<BlockSpec> blocks;
  for (size_t i = 0; i < choices.size(); ++i) {
    BlockSpec b;
    b.stage = stage_name;
    b.stage_index = stage_index;
    b.block_index = static_cast<int>(i);
    b.type = &type;
    b.cin = cin;
    b.cout = choices[i].width;
    b.kernel = choices[i].kernel;
    b.expand = choices[i].expand;
    b.stride = i == 0 ? stride : 1;
    b.in_hw = in_hw;
    expand_block(b);
    cin = b.cout;
    in_hw = b.out_hw;
    blocks.push_back(std::move(b));
  }
  return blocks;
}

ArchSpec build_arch_spec(const SearchSpace& space, const Subnet& subnet, int input_resolution) {
  validate(subnet, space);
  if (input_resolution < 0) fail("input resolution must be positive, got {}", input_resolution);
  const Hyperspace& hs = space.hyperspace();
  ArchSpec spec;
  spec.space = space.encode();
  spec.subnet = subnet.encode();
  spec.resolution = input_resolution > 0 ? input_resolution : subnet.resolution;
  spec.in_channels = hs.in_channels;
  spec.num_classes = hs.num_classes;
  int cin = hs.in_channels;
  int hw = spec.resolution;
  for (int s = 0; s < space.num_stages(); ++s) {
    const StageChoices& st = space.stage(s);
    std::vector<BlockChoice> choices;
    if (s < space.num_subnet_stages()) {
      choices = subnet.stages[s];
    } else {
      choices = {BlockChoice{st.block->kernels.front(), st.widths.front(), 0.0}};
    }
    auto blocks = build_stage(*st.block, st.name(), s, st.def->stride, cin, hw, choices);
    cin = blocks.back().cout;
    hw = blocks.back().out_hw;
    for (auto& b : blocks) spec.blocks.push_back(std::move(b));
  }
  return spec;
}

}  // namespace qnas::space
