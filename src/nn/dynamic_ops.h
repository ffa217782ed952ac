#pragma once
// Weight-sharing ("elastic") layers for the supernet. Each layer owns the weights of its largest
// configuration and runs a sub-configuration by slicing them:
//   - kernel: the centre k x k of the largest kernel;
//   - width / expand ratio: the leading output channels (and the leading input channels, taken from the
//   input);
//   - depthwise: groups follow the active channel count.
// Every layer can fake-quantise its weight through an LsqWeight (per output channel, leading scales for
// leading channels), FP32 (32 bits) until set. Activations are quantised by whoever produces them (see
// elastic_block.h), as the quantisation contract (core/quant_contract.h) asks.
#include <torch/torch.h>

#include "quant/quantizers.h"

namespace qnas::nn {

class DynamicConv2dImpl : public torch::nn::Module {
 public:
  DynamicConv2dImpl(int max_in, int max_out, int max_kernel, int stride, bool depthwise);
  // Active output channels and kernel; the input channel count is read from the input.
  void set_active(int out_channels, int kernel);
  torch::Tensor forward(const torch::Tensor& x);
  // The weight the active configuration uses (a view into the shared weight, before quantisation).
  torch::Tensor active_weight(int in_channels) const;

  int active_out() const { return active_out_; }
  int active_kernel() const { return active_kernel_; }
  int stride() const { return stride_; }
  bool depthwise() const { return depthwise_; }

  torch::Tensor weight;
  quant::LsqWeight weight_quant{nullptr};

 private:
  int max_in_, max_out_, max_kernel_, stride_;
  bool depthwise_;
  int active_out_, active_kernel_;
};
TORCH_MODULE(DynamicConv2d);

// Data-parallel training normalises over the global batch: while quant::set_collectives() is set on this
// thread, every training-mode DynamicBatchNorm2d all-reduces its per-channel sums, forward and backward
// (synchronised batch norm), so N ranks with B/N images each compute what one process computes with B.
// Batch norm over the leading channels of its largest width; running statistics of the inactive channels
// are left untouched.
class DynamicBatchNorm2dImpl : public torch::nn::Module {
 public:
  explicit DynamicBatchNorm2dImpl(int max_features, double momentum = 0.1, double eps = 1e-5);
  torch::Tensor forward(const torch::Tensor& x);
  // Forget running statistics (before BN recalibration of a subnet).
  void reset_running_stats();

  torch::Tensor weight, bias, running_mean, running_var;
  // Momentum < 0 means a cumulative average (what recalibration uses).
  double momentum;
  double eps;

 private:
  int max_features_;
  torch::Tensor batches_tracked_;
};
TORCH_MODULE(DynamicBatchNorm2d);

class DynamicLinearImpl : public torch::nn::Module {
 public:
  DynamicLinearImpl(int max_in, int max_out);
  void set_active(int out_features);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight, bias;
  quant::LsqWeight weight_quant{nullptr};

 private:
  int max_in_, max_out_, active_out_;
};
TORCH_MODULE(DynamicLinear);

}  // namespace qnas::nn
