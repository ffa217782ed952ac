#pragma once
// INT8 quantisation of a Program: one scale per tensor (u8 for tensors known non-negative, s8 otherwise,
// zero point 0) and symmetric per-output-channel s8 weights. Both executors consume the same integers and
// scales, so the reference fake-quant result is what the oneDNN plan must reproduce.
#include <cstdint>
#include <vector>

#include "runtime/program.h"

namespace qnas::runtime {

struct TensorQuant {
  float scale = 1.0f;
  bool is_unsigned = false;
  int qmin() const { return is_unsigned ? 0 : -128; }
  int qmax() const { return is_unsigned ? 255 : 127; }
};

struct StepQuant {
  std::vector<std::int8_t> weight, weight2;        // quantised weights, same layout as StepWeights
  std::vector<float> weight_scale, weight2_scale;  // per output channel
  float mid_scale = 1.0f;                          // SE only: u8 scale of the squeezed vector after its relu
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
