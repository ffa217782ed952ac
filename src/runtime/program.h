#pragma once
// The network an ArchSpec denotes, lowered to a flat list of steps over numbered tensors. Both executors
// (the plain reference and the oneDNN plan) interpret this one list, and calibration and quantisation are
// keyed by its tensor ids, so "what runs" is decided once.
#include <cstdint>
#include <vector>

#include "space/arch_spec.h"

namespace qnas::runtime {

using space::Activation;
using space::LayerSpec;
using space::OpKind;

struct TensorInfo {
  int channels = 0;
  int hw = 0;  // 1 for pooled / linear outputs
  // Known to be >= 0 (after relu, relu6, sigmoid, hsigmoid, or derived from such a tensor): stored as u8
  // in INT8, otherwise s8.
  bool non_negative = false;
  bool is_logits = false;  // the classifier output stays f32
};

struct Step {
  LayerSpec layer;  // op, shapes, own activation (applied before a residual add)
  int input = -1;   // tensor ids
  int output = -1;
  int residual = -1;  // added after the layer's activation (fused as a sum post-op), or -1
  Activation post_add = Activation::kNone;  // activation after the residual add (ResNet blocks)
  int block = -1;                           // index into ArchSpec::blocks
  bool has_bias = true;  // false for a depthwise conv inside a K3 stack (one BN after the stack)
};

struct Program {
  std::vector<TensorInfo> tensors;
  std::vector<Step> steps;
  int input = 0;
  int output = -1;
  int in_channels = 0;
  int resolution = 0;
};

Program lower(const space::ArchSpec& spec);
// A program of one block alone (what a block latency LUT entry measures), input and output quantised.
Program lower_block(const space::BlockSpec& block);

bool is_non_negative(Activation activation);

// Weights of one step in plain layouts: conv/depthwise OIHW (depthwise O×1×k×k), linear O×I; SE holds its
// two 1x1 convs as (weight, bias) and (weight2, bias2). BN is already folded into weight and bias.
struct StepWeights {
  std::vector<float> weight, bias;
  std::vector<float> weight2, bias2;
};

struct Weights {
  std::vector<StepWeights> steps;  // parallel to Program::steps
};

// He-scaled random weights (residual branches damped so deep random nets keep a sane activation range):
// what the engine-agreement tests and untrained exports run on.
Weights random_weights(const Program& program, std::uint64_t seed);

// The same shapes and variances drawn uniformly: what latency profiling times. The kernels' time does not
// depend on the values, and Box-Muller's log and cos were a third of a block's measurement.
Weights timing_weights(const Program& program, std::uint64_t seed);

// Element counts the executors expect for a step's weight tensors.
std::int64_t weight_count(const LayerSpec& layer);

}  // namespace qnas::runtime
