#include "runtime/program.h"

#include <cmath>

#include "core/error.h"
#include "core/rng.h"

namespace qnas::runtime {
namespace {

class Lowering {
 public:
  explicit Lowering(Program& program) : p_(program) {}

  int add_tensor(int channels, int hw, bool non_negative) {
    p_.tensors.push_back(TensorInfo{channels, hw, non_negative, false});
    return static_cast<int>(p_.tensors.size()) - 1;
  }

  // Appends one block's steps reading tensor `x`; returns the block's output tensor.
  int block(const space::BlockSpec& b, int block_index, int x) {
    int residual = -1;
    if (b.shortcut == space::Shortcut::kIdentity) residual = x;
    if (b.shortcut == space::Shortcut::kProjection) {
      if (!b.projection)
        fail("block {} of {} has a projection shortcut without a projection layer", b.block_index, b.stage);
      residual = step(*b.projection, x, -1, Activation::kNone, block_index);
    }
    int current = x;
    for (size_t i = 0; i < b.layers.size(); ++i) {
      const bool last = i + 1 == b.layers.size();
      const LayerSpec& layer = b.layers[i];
      if (last && residual >= 0 && layer.op != OpKind::kConv && layer.op != OpKind::kDepthwiseConv) {
        fail("block {} of {}: a residual add must follow a conv, not a {}", b.block_index, b.stage,
             static_cast<int>(layer.op));
      }
      current = step(layer, current, last ? residual : -1, last ? b.post_add_activation : Activation::kNone,
                     block_index);
    }
    return current;
  }

 private:
  int step(const LayerSpec& layer, int input, int residual, Activation post_add, int block_index) {
    const TensorInfo in = p_.tensors.at(input);
    if (in.channels != layer.cin || in.hw != layer.in_hw) {
      fail("layer expects {}x{}x{} but its input is {}x{}x{}", layer.cin, layer.in_hw, layer.in_hw,
           in.channels, in.hw, in.hw);
    }
    Step s;
    s.layer = layer;
    s.input = input;
    s.residual = residual;
    s.post_add = post_add;
    s.block = block_index;
    s.has_bias = layer.batch_norm || layer.op == OpKind::kLinear || layer.op == OpKind::kSqueezeExcite;
    bool non_negative = false;
    switch (layer.op) {
      case OpKind::kConv:
      case OpKind::kDepthwiseConv:
        non_negative = residual >= 0 ? is_non_negative(post_add)
                                     : is_non_negative(layer.activation) || is_non_negative(post_add);
        break;
      case OpKind::kSqueezeExcite:  // x * gate with gate in [0, 1] keeps x's sign and range
      case OpKind::kGlobalAvgPool:
        non_negative = in.non_negative;
        break;
      case OpKind::kLinear:
        break;
    }
    s.output = add_tensor(layer.cout, layer.out_hw, non_negative);
    if (layer.op == OpKind::kLinear) p_.tensors[s.output].is_logits = true;
    p_.steps.push_back(s);
    return s.output;
  }

  Program& p_;
};

float he_std(const LayerSpec& layer) {
  const int fan_in = layer.op == OpKind::kDepthwiseConv ? layer.kernel * layer.kernel
                     : layer.op == OpKind::kLinear      ? layer.cin
                                                        : layer.cin * layer.kernel * layer.kernel;
  return std::sqrt(2.0f / static_cast<float>(fan_in));
}

// Box-Muller on the portable generator, so weights are the same on every platform.
float normal(Rng& rng) {
  const double u1 = 1.0 - rng.uniform();
  const double u2 = rng.uniform();
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
}

// Draws one value of standard deviation 1.
using Sampler = float (*)(Rng&);

float uniform_unit_variance(Rng& rng) {
  return static_cast<float>(std::sqrt(3.0) * (2.0 * rng.uniform() - 1.0));
}

void fill(std::vector<float>& v, std::int64_t n, float stddev, Rng& rng, Sampler sample) {
  v.resize(static_cast<size_t>(n));
  for (auto& x : v) x = stddev * sample(rng);
}

Weights make_weights(const Program& program, std::uint64_t seed, Sampler sample) {
  Rng rng(seed);
  Weights w;
  w.steps.resize(program.steps.size());
  for (size_t i = 0; i < program.steps.size(); ++i) {
    const Step& s = program.steps[i];
    StepWeights& sw = w.steps[i];
    const LayerSpec& l = s.layer;
    if (l.op == OpKind::kGlobalAvgPool) continue;
    if (l.op == OpKind::kSqueezeExcite) {
      fill(sw.weight, weight_count(l), std::sqrt(2.0f / l.cin), rng, sample);
      fill(sw.bias, l.se_mid, 0.1f, rng, sample);
      fill(sw.weight2, weight_count(l), std::sqrt(1.0f / l.se_mid), rng, sample);
      fill(sw.bias2, l.cin, 0.5f, rng, sample);
      continue;
    }
    // A branch that is added to a residual starts small, as zero-init-last-BN training leaves it.
    const float damp = s.residual >= 0 ? 0.2f : 1.0f;
    fill(sw.weight, weight_count(l), damp * he_std(l), rng, sample);
    if (s.has_bias) {
      fill(sw.bias, l.cout, 0.1f, rng, sample);
    } else {
      sw.bias.assign(static_cast<size_t>(l.cout), 0.0f);
    }
  }
  return w;
}

}  // namespace

bool is_non_negative(Activation activation) {
  return activation == Activation::kRelu || activation == Activation::kRelu6 ||
         activation == Activation::kSigmoid || activation == Activation::kHsigmoid;
}

Program lower(const space::ArchSpec& spec) {
  Program p;
  p.in_channels = spec.in_channels;
  p.resolution = spec.resolution;
  Lowering lowering(p);
  p.input = lowering.add_tensor(spec.in_channels, spec.resolution, false);
  int x = p.input;
  for (size_t i = 0; i < spec.blocks.size(); ++i) x = lowering.block(spec.blocks[i], static_cast<int>(i), x);
  p.output = x;
  return p;
}

Program lower_block(const space::BlockSpec& block) {
  Program p;
  p.in_channels = block.cin;
  p.resolution = block.in_hw;
  Lowering lowering(p);
  // A block's input is non-negative unless it is the network input; for timing the sign does not matter.
  p.input = lowering.add_tensor(block.cin, block.in_hw, false);
  p.output = lowering.block(block, 0, p.input);
  return p;
}

std::int64_t weight_count(const LayerSpec& layer) {
  switch (layer.op) {
    case OpKind::kConv:
      return static_cast<std::int64_t>(layer.cout) * layer.cin * layer.kernel * layer.kernel;
    case OpKind::kDepthwiseConv:
      return static_cast<std::int64_t>(layer.cout) * layer.kernel * layer.kernel;
    case OpKind::kLinear:
      return static_cast<std::int64_t>(layer.cout) * layer.cin;
    case OpKind::kSqueezeExcite:
      return static_cast<std::int64_t>(layer.se_mid) * layer.cin;
    case OpKind::kGlobalAvgPool:
      return 0;
  }
  return 0;
}

Weights random_weights(const Program& program, std::uint64_t seed) {
  return make_weights(program, seed, normal);
}

Weights timing_weights(const Program& program, std::uint64_t seed) {
  return make_weights(program, seed, uniform_unit_variance);
}

}  // namespace qnas::runtime
