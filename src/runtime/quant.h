#pragma once
// INT8 quantisation of a Program under the quantisation contract (core/quant_contract.h): one (scale, zero
// point, u8/s8) per tensor, and symmetric per-output-channel s8 weights. Post-training calibration gives u8
// for tensors known non-negative and s8 otherwise, both with zero point 0; a model trained with LSQ+ brings
// u8 tensors with its learned zero points (train/deploy). Both executors consume the same integers and
// parameters, so the reference result is what the oneDNN plan must reproduce.
#include <cstdint>
#include <vector>

#include "core/quant_contract.h"
#include "runtime/program.h"

namespace qnas::runtime {

struct TensorQuant {
  float scale = 1.0f;
  int zero_point = 0;
  bool is_unsigned = false;
  int qmin() const { return is_unsigned ? quant_contract::kU8Min : quant_contract::kS8Min; }
  int qmax() const { return is_unsigned ? quant_contract::kU8Max : quant_contract::kS8Max; }
  int quantize(float real) const { return quant_contract::quantize(real, scale, zero_point, qmin(), qmax()); }
  float dequantize(float code) const { return (code - static_cast<float>(zero_point)) * scale; }
  bool operator==(const TensorQuant& o) const {
    return scale == o.scale && zero_point == o.zero_point && is_unsigned == o.is_unsigned;
  }
  bool operator!=(const TensorQuant& o) const { return !(*this == o); }
};

struct StepQuant {
  std::vector<std::int8_t> weight, weight2;        // quantised weights, same layout as StepWeights
  std::vector<float> weight_scale, weight2_scale;  // per output channel
  // SE only: the pooled vector, and the squeezed vector after its relu (u8).
  TensorQuant pool;
  TensorQuant mid{1.0f, 0, true};
};

struct QuantParams {
  std::vector<TensorQuant> tensors;  // per Program tensor (logits: unused)
  std::vector<StepQuant> steps;      // per Program step
};

// Per-channel symmetric: scale = max|w| / 127, so nothing inside the range is clipped.
void quantize_per_channel(const std::vector<float>& weight, int out_channels, std::vector<std::int8_t>& q,
                          std::vector<float>& scales);

// Scales from observed per-tensor max |x| (max / 127 for s8, max / 255 for u8). Pooled and SE outputs take
// their input's scale: the engine computes them without requantising.
QuantParams make_quant_params(const Program& program, const Weights& weights,
                              const std::vector<float>& tensor_abs_max);

// Runs the FP32 reference over the calibration images and returns make_quant_params of the ranges seen.
QuantParams calibrate(const Program& program, const Weights& weights,
                      const std::vector<std::vector<float>>& images);

// Checks every scale is positive and finite and every zero point lies in its type's range, naming the first
// tensor that does not (parameters read from a trained model go through it before an engine sees them).
void validate(const QuantParams& quant, const Program& program);

// Round to nearest even and saturate, as the engine's conversion does.
inline int saturate_round(float value, int lo, int hi);

}  // namespace qnas::runtime

#include <cmath>

inline int qnas::runtime::saturate_round(float value, int lo, int hi) {
  const float r = std::nearbyint(value);
  if (r < static_cast<float>(lo)) return lo;
  if (r > static_cast<float>(hi)) return hi;
  return static_cast<int>(r);
}
