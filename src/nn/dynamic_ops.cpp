#include "nn/dynamic_ops.h"

#include <cmath>

#include "core/error.h"

namespace qnas::nn {

DynamicConv2dImpl::DynamicConv2dImpl(int max_in, int max_out, int max_kernel, int stride, bool depthwise)
    : max_in_(max_in),
      max_out_(max_out),
      max_kernel_(max_kernel),
      stride_(stride),
      depthwise_(depthwise),
      active_out_(max_out),
      active_kernel_(max_kernel) {
  if (max_kernel % 2 == 0) fail("elastic conv kernel must be odd, got {}", max_kernel);
  if (depthwise && max_in != max_out)
    fail("a depthwise conv needs equal in/out channels, got {} and {}", max_in, max_out);
  const int in_per_group = depthwise ? 1 : max_in;
  weight = register_parameter("weight", torch::empty({max_out, in_per_group, max_kernel, max_kernel}));
  torch::nn::init::kaiming_normal_(weight, 0.0, torch::kFanOut, torch::kReLU);
  weight_quant = register_module("weight_quant", quant::LsqWeight(max_out, /*per_channel=*/true));
}

void DynamicConv2dImpl::set_active(int out_channels, int kernel) {
  if (out_channels < 1 || out_channels > max_out_) {
    fail("elastic conv: {} output channels requested, the layer has at most {}", out_channels, max_out_);
  }
  if (kernel < 1 || kernel > max_kernel_ || kernel % 2 == 0) {
    fail("elastic conv: kernel {} requested, the layer supports odd kernels up to {}", kernel, max_kernel_);
  }
  active_out_ = out_channels;
  active_kernel_ = kernel;
}

torch::Tensor DynamicConv2dImpl::active_weight(int in_channels) const {
  const int out = depthwise_ ? in_channels : active_out_;
  const int start = (max_kernel_ - active_kernel_) / 2;
  torch::Tensor w = weight.narrow(0, 0, out);
  if (!depthwise_) w = w.narrow(1, 0, in_channels);
  return w.narrow(2, start, active_kernel_).narrow(3, start, active_kernel_);
}

torch::Tensor DynamicConv2dImpl::forward(const torch::Tensor& x) {
  const int in = static_cast<int>(x.size(1));
  if (in > max_in_) fail("elastic conv: input has {} channels, the layer takes at most {}", in, max_in_);
  // Channels-last weights make LibTorch's CPU convolutions run in NHWC (oneDNN), several times faster than
  // its NCHW path for depthwise and small convs, backward above all.
  torch::Tensor w = weight_quant->forward(active_weight(in)).contiguous(torch::MemoryFormat::ChannelsLast);
  return torch::conv2d(x, w, {}, stride_, active_kernel_ / 2, 1, depthwise_ ? in : 1);
}

DynamicBatchNorm2dImpl::DynamicBatchNorm2dImpl(int max_features, double momentum_, double eps_)
    : momentum(momentum_), eps(eps_), max_features_(max_features) {
  weight = register_parameter("weight", torch::ones({max_features}));
  bias = register_parameter("bias", torch::zeros({max_features}));
  running_mean = register_buffer("running_mean", torch::zeros({max_features}));
  running_var = register_buffer("running_var", torch::ones({max_features}));
  batches_tracked_ = register_buffer("batches_tracked", torch::zeros({1}));
}

void DynamicBatchNorm2dImpl::reset_running_stats() {
  torch::NoGradGuard no_grad;
  running_mean.zero_();
  running_var.fill_(1.0);
  batches_tracked_.zero_();
}

torch::Tensor DynamicBatchNorm2dImpl::forward(const torch::Tensor& x) {
  const int c = static_cast<int>(x.size(1));
  if (c > max_features_)
    fail("elastic batch norm: input has {} channels, the layer has {}", c, max_features_);
  double m = momentum;
  if (is_training() && momentum < 0) {
    // Cumulative average: after N batches the running statistics are the mean of the N batch statistics.
    const double n = batches_tracked_.item<double>();
    m = 1.0 / (n + 1.0);
  }
  if (is_training()) batches_tracked_.add_(1);
  // narrow() gives views, so the update lands in the leading channels of the shared buffers.
  torch::Tensor mean = running_mean.narrow(0, 0, c), var = running_var.narrow(0, 0, c);
  return torch::batch_norm(x, weight.narrow(0, 0, c), bias.narrow(0, 0, c), mean, var, is_training(), m, eps,
                           /*cudnn_enabled=*/true);
}

DynamicLinearImpl::DynamicLinearImpl(int max_in, int max_out)
    : max_in_(max_in), max_out_(max_out), active_out_(max_out) {
  weight = register_parameter("weight", torch::empty({max_out, max_in}));
  bias = register_parameter("bias", torch::zeros({max_out}));
  torch::nn::init::normal_(weight, 0.0, 0.01);
  weight_quant = register_module("weight_quant", quant::LsqWeight(max_out, true));
}

void DynamicLinearImpl::set_active(int out_features) {
  if (out_features < 1 || out_features > max_out_) {
    fail("elastic linear: {} outputs requested, the layer has at most {}", out_features, max_out_);
  }
  active_out_ = out_features;
}

torch::Tensor DynamicLinearImpl::forward(const torch::Tensor& x) {
  const int in = static_cast<int>(x.size(1));
  if (in > max_in_) fail("elastic linear: input has {} features, the layer takes at most {}", in, max_in_);
  const torch::Tensor w = weight_quant->forward(weight.narrow(0, 0, active_out_).narrow(1, 0, in));
  return torch::linear(x, w, bias.narrow(0, 0, active_out_));
}

}  // namespace qnas::nn
