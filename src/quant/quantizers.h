#pragma once
// Fake quantizers for quantization-aware training (LibTorch modules). Bit-width is a per-module setting
// (2, 3, 4, 8, or 32 = pass-through), so one model serves FP32, uniform INT8 and mixed precision:
//   - LsqPlusActivation: unsigned b-bit with a learnable scale and offset (LSQ+, Bhalgat et al. 2020);
//   - LsqWeight: symmetric b-bit, per tensor or per output channel (LSQ, Esser et al. 2020);
//   - BatchQuantActivation: the range comes from batch statistics (channel-averaged min and max, 0 included),
//     scaled by a learned softplus multiplier and shifted by a learned offset (BatchQuant, Bai et al. 2021);
//     statistics averaged over calibration batches serve inference.
// All use the straight-through estimator for rounding and LSQ's gradient scaling 1/sqrt(N * Qp), and the
// fused ops of fake_quant_ops.h. Whether a quantizer has been initialised is known on the host (the buffer
// only carries it through checkpoints), so a training step never waits on a device value.
#include <torch/torch.h>

#include <map>
#include <vector>

#include "quant/fake_quant_ops.h"

namespace qnas::quant {

constexpr int kFloatBits = 32;

// Rejects bit-widths other than 2, 3, 4, 8 and 32 with a message naming the module.
void check_bits(int bits, const char* what);

// QFA's "one quantizer per bit-width over the shared weights": a quantizer with a bank learns a scale (and an
// offset) of its own for each bit-width of the bank, and set_bits() switches to it. 8 bits is the quantizer's
// own "scale" (so an INT8 checkpoint and a banked one share it); 32 needs none. Without a bank one scale
// serves every bit-width, as before.
struct ScaleBankEntry {
  torch::Tensor scale, offset, initialized;  // offset: activations only
  bool known_initialized = false;
};

class BatchQuantActivationImpl : public torch::nn::Module {
 public:
  explicit BatchQuantActivationImpl(int bits = kFloatBits, double momentum = 0.1);
  torch::Tensor forward(const torch::Tensor& x);
  void set_bits(int bits);
  int bits() const { return bits_; }
  int qmax() const { return (1 << bits_) - 1; }
  // In calibration mode forward() quantises with the batch's own range (as in training) and accumulates the
  // ranges into the running statistics as a cumulative average: call reset_statistics(), run N batches (with
  // BN recalibration, so batch norm sees the quantised activations it will see), then leave calibration.
  void set_calibrating(bool on) { calibrating_ = on; }
  void reset_statistics();
  // The range used now: batch statistics in training and calibration, running statistics otherwise.
  std::pair<torch::Tensor, torch::Tensor> scale_and_offset(const torch::Tensor& x);
  // The inference range (running statistics), as the engine stores it: |scale| and an integer zero point.
  float inference_scale() const;
  int inference_zero_point() const;

  torch::Tensor multiplier_logit, offset_shift;  // learned
  torch::Tensor running_min, running_max, batches_seen;

 private:
  std::pair<torch::Tensor, torch::Tensor> scale_and_offset_of(const torch::Tensor& lo,
                                                              const torch::Tensor& hi) const;
  // |scale| (at least the contract's minimum) and offset of the running statistics, as host values.
  std::pair<float, float> inference_scale_and_offset() const;
  int bits_;
  double momentum_;
  bool calibrating_ = false;
};
TORCH_MODULE(BatchQuantActivation);

class LsqPlusActivationImpl : public torch::nn::Module {
 public:
  explicit LsqPlusActivationImpl(int bits = kFloatBits);
  torch::Tensor forward(const torch::Tensor& x);
  // forward(hardtanh(x, lo, hi)): the ReLU ([0, inf)) or ReLU6 ([0, 6]) that produces this quantizer's input,
  // fused into its pass where the fused kernel runs (fake_quant_zero_point_clamped).
  torch::Tensor forward_clamped(const torch::Tensor& x, double lo, double hi);
  void set_bits(int bits);
  int bits() const { return bits_; }
  int qmax() const { return (1 << bits_) - 1; }
  // Min-max initialisation happens on the first quantised batch: scale = (max - min) / Qp, offset = min.
  bool initialized() const;
  // The next quantised batch initialises the range again (min-max; below 4 bits capped at LSQ's
  // 2<|x - min|>/sqrt(Qp)): for an input moved to so few bits that its trained range leaves 1 or 3 levels.
  void forget_range();
  // What the engine stores (core/quant_contract.h): |scale| and the offset rounded to an integer zero point.
  float effective_scale() const;
  int zero_point() const;
  // Registers a scale and offset per bit-width in `bits` (other than 8 and 32); see ScaleBankEntry.
  void enable_bit_bank(const std::vector<int>& bits);
  bool has_bit_bank() const { return !bank_.empty(); }
  // QFA's BatchQuant in place of LSQ+ (`activation_quantizer: batchquant`): forward() delegates to
  // `batch_range`, and effective_scale() / zero_point() give its calibrated inference range, so every owner
  // of an activation quantizer (supernet, static network, deploy, export) serves both without a second type.
  // Call before a checkpoint is loaded (its parameters are the checkpoint's) and before a bit bank: the range
  // follows the batch at every bit-width, so a bank is not needed.
  void use_batch_range();
  bool uses_batch_range() const { return !batch_range.is_empty(); }

  torch::Tensor scale, offset;  // of the current bit-width (LSQ+ mode)
  BatchQuantActivation batch_range{nullptr};

 private:
  void switch_bank(int bits);
  // Min-max initialisation on the first quantised batch (`activated`: the values the quantizer sees), then
  // the scale with LSQ's gradient factor in training and the integer zero point the engine stores.
  std::pair<torch::Tensor, torch::Tensor> scale_and_zero_point(const torch::Tensor& activated);
  int bits_;
  torch::Tensor initialized_;
  mutable bool known_initialized_ = false;  // host copy: once true it stays true
  std::map<int, ScaleBankEntry> bank_;      // by bit-width, 8 included once enabled
  int bank_bits_ = 8;                       // whose entry `scale` and `offset` are now
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
  // Registers a scale per bit-width in `bits` (other than 8 and 32); see ScaleBankEntry.
  void enable_bit_bank(const std::vector<int>& bits);
  bool has_bit_bank() const { return !bank_.empty(); }
  // Sets the scale (per channel when per-channel) that minimises the squared rounding error of `w` at the
  // current bits, searched over fractions of max|w| / Qp, and marks the quantizer initialised. For a weight
  // moved to fewer bits, `w` being what it computed with at its trained bits (nn::Scales::kFitLowerBits).
  void fit_scale(const torch::Tensor& w);

  torch::Tensor scale;  // [out_channels] or [1], of the current bit-width

 private:
  void switch_bank(int bits);
  bool per_channel_;
  int bits_;
  torch::Tensor initialized_;
  mutable bool known_initialized_ = false;
  std::map<int, ScaleBankEntry> bank_;
  int bank_bits_ = 8;
};
TORCH_MODULE(LsqWeight);

// Puts every quantizer under `module` into b-bit mode (32 = FP32).
void set_bits(torch::nn::Module& module, int bits);
// Gives every LSQ weight and LSQ+ activation quantizer under `module` a bank over `bits` (QFA supernets).
void enable_bit_bank(torch::nn::Module& module, const std::vector<int>& bits);
// Counts the quantizers under `module` (for reports and tests); an LSQ+ quantizer in BatchQuant mode is one.
int count_quantizers(torch::nn::Module& module);

// Puts every LSQ+ activation quantizer under `module` into BatchQuant mode (use_batch_range).
void use_batch_range(torch::nn::Module& module);
// BatchQuant calibration on or off for every BatchQuant quantizer under `module`; turning it on resets their
// statistics. Returns how many there are.
int set_batch_range_calibration(torch::nn::Module& module, bool on);

}  // namespace qnas::quant
