#pragma once
// The one quantisation contract every part of qnas follows: the trainer's fake quantizers, the reference
// executor, the oneDNN INT8 plan and the ONNX QDQ export (see docs/quantization-contract.md).
//
//   code = clamp(round_half_even(x / scale) + zero_point, qmin, qmax)      real = (code - zero_point) * scale
//
// Activations are u8 [0, 255] (trained with LSQ+: the learned offset becomes an integer zero point) or s8
// [-128, 127] (post-training calibration of a signed tensor, zero point 0). Weights are s8 per output
// channel, symmetric, in the narrow range [-127, 127], zero point 0. Plain arithmetic, no LibTorch or oneDNN,
// so the trainer (LibTorch) and the engines (oneDNN) include the same definitions.
#include <algorithm>
#include <cmath>

namespace qnas::quant_contract {

constexpr int kU8Min = 0, kU8Max = 255;
constexpr int kS8Min = -128, kS8Max = 127;
constexpr int kWeightMax = 127;  // weights use [-127, 127]: negating a code never overflows
constexpr float kMinScale = 1e-8f;

// Round half to even (the default floating-point rounding mode), as oneDNN's conversions and torch.round do.
inline float round_half_even(float x) {
  return std::nearbyint(x);
}

inline int quantize(float x, float scale, int zero_point, int qmin, int qmax) {
  const float code = round_half_even(x / scale) + static_cast<float>(zero_point);
  return static_cast<int>(std::min(std::max(code, static_cast<float>(qmin)), static_cast<float>(qmax)));
}

inline float dequantize(int code, float scale, int zero_point) {
  return static_cast<float>(code - zero_point) * scale;
}

// LSQ+ learns x ~ offset + scale * code with code in [0, 2^b - 1]; the engine needs an integer zero point, so
// the contract rounds -offset / scale to the nearest integer inside the code range (the trainer's forward
// pass uses this same rounded value, so training sees what the engine will compute).
inline int zero_point_from_offset(float offset, float scale, int qmax) {
  const float z = round_half_even(-offset / std::max(std::fabs(scale), kMinScale));
  return static_cast<int>(std::min(std::max(z, 0.0f), static_cast<float>(qmax)));
}

}  // namespace qnas::quant_contract
