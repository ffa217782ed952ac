#pragma once
// Fake quantizers for quantization-aware training (LibTorch modules). Bit-width is a per-module setting
// (2, 3, 4, 8, or 32 = pass-through), so one model serves FP32, uniform INT8 and mixed precision:
//   - LsqPlusActivation: unsigned b-bit with a learnable scale and offset (LSQ+, Bhalgat et al. 2020);
//   - LsqWeight: symmetric b-bit, per tensor or per output channel (LSQ, Esser et al. 2020);
//   - BatchQuantActivation: the range comes from batch statistics, scaled by a learned softplus multiplier
//     and shifted by a learned offset (BatchQuant, Bai et al. 2021); running statistics serve inference.
// All use the straight-through estimator for rounding and LSQ's gradient scaling 1/sqrt(N * Qp), and the
// fused ops of fake_quant_ops.h. Whether a quantizer has been initialised is known on the host (the buffer
// only carries it through checkpoints), so a training step never waits on a device value.
#include <torch/torch.h>

#include "quant/fake_quant_ops.h"

namespace qnas::quant {

constexpr int kFloatBits = 32;

// Rejects bit-widths other than 2, 3, 4, 8 and 32 with a message naming the module.
void check_bits(int bits, const char* what);

class LsqPlusActivationImpl : public torch::nn::Module {
 public:
  explicit LsqPlusActivationImpl(int bits = kFloatBits);
  torch::Tensor forward(const torch::Tensor& x);
  void set_bits(int bits);
  int bits() const { return bits_; }
  int qmax() const { return (1 << bits_) - 1; }
  // Min-max initialisation happens on the first quantised batch: scale = (max - min) / Qp, offset = min.
  bool initialized() const;
  // What the engine stores (core/quant_contract.h): |scale| and the offset rounded to an integer zero point.
  float effective_scale() const;
  int zero_point() const;

  torch::Tensor scale, offset;

 private:
  int bits_;
  torch::Tensor initialized_;
  mutable bool known_initialized_ = false;  // host copy: once true it stays true
};
TORCH_MODULE(LsqPlusActivation);

class LsqWeightImpl : public torch::nn::Module {
 public:
  LsqWeightImpl(int out_channels, bool per_channel, int bits = kFloatBits);
  torch::Tensor forward(const torch::Tensor& w);
  void set_bits(int bits);
  int bits() const { return bits_; }
  // Narrow symmetric range [-Qp, Qp], Qp = 2^(b-1) - 1, as the INT8 runtime's s8 weights use.
  int qmax() const { return (1 << (bits_ - 1)) - 1; }
  bool initialized() const;

  torch::Tensor scale;  // [out_channels] or [1]

 private:
  bool per_channel_;
  int bits_;
  torch::Tensor initialized_;
  mutable bool known_initialized_ = false;
};
TORCH_MODULE(LsqWeight);

class BatchQuantActivationImpl : public torch::nn::Module {
 public:
  explicit BatchQuantActivationImpl(int bits = kFloatBits, double momentum = 0.1);
  torch::Tensor forward(const torch::Tensor& x);
  void set_bits(int bits);
  int bits() const { return bits_; }
  int qmax() const { return (1 << bits_) - 1; }
  // In calibration mode forward() only accumulates running statistics (cumulative average) and returns x
  // unquantised: call reset_statistics(), run N batches, then leave calibration.
  void set_calibrating(bool on) { calibrating_ = on; }
  void reset_statistics();
  // The range used now: batch statistics in training, running statistics otherwise.
  std::pair<torch::Tensor, torch::Tensor> scale_and_offset(const torch::Tensor& x);

  torch::Tensor multiplier_logit, offset_shift;  // learned
  torch::Tensor running_min, running_max, batches_seen;

 private:
  int bits_;
  double momentum_;
  bool calibrating_ = false;
};
TORCH_MODULE(BatchQuantActivation);

// Puts every quantizer under `module` into b-bit mode (32 = FP32).
void set_bits(torch::nn::Module& module, int bits);
// Counts the quantizers under `module` (for reports and tests).
int count_quantizers(torch::nn::Module& module);

}  // namespace qnas::quant
