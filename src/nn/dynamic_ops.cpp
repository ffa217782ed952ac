#include "nn/dynamic_ops.h"

#include <cmath>

#include "core/error.h"
#include "nn/depthwise_conv.h"
#include "quant/collectives.h"

namespace qnas::nn {
namespace {

// Training-mode batch norm over the batches of all ranks. Forward sends one message: each rank's count, sum
// and squared deviations from its own mean (two passes, in double), gathered and merged in rank order with
// Chan's formula, whose terms are all non-negative: no E[x^2] - E[x]^2 cancellation for a channel whose mean
// is large against its spread, and the same arithmetic on every rank. Backward all-reduces the sums of dy and
// dy * x_hat. Weight and bias get this rank's own sums, like every other parameter, and the trainer averages
// them with the rest.
class SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               torch::Tensor running_mean, torch::Tensor running_var, double momentum,
                               double eps) {
    const quant::Collectives& sync = *quant::collectives();
    const std::vector<int64_t> dims = {0, 2, 3};
    const std::vector<int64_t> shape = {1, x.size(1), 1, 1};
    const double local_n = static_cast<double>(x.numel() / std::max<int64_t>(x.size(1), 1));
    const torch::Tensor local_sum = x.sum(dims, false, torch::kDouble);
    const torch::Tensor local_mean_f = (local_sum / local_n).to(x.scalar_type());
    const torch::Tensor centred = x - local_mean_f.view(shape);
    // Deviations from the rounded local mean a: sum (x - m)^2 = sum (x - a)^2 - n (m - a)^2 with m exact.
    const torch::Tensor local_offset = local_sum / local_n - local_mean_f.to(torch::kDouble);
    const torch::Tensor local_m2 =
        (centred * centred).sum(dims, false, torch::kDouble) - local_n * local_offset * local_offset;
    const torch::Tensor mine =
        torch::cat({torch::full({1}, local_n, local_sum.options()), local_sum, local_m2});
    const torch::Tensor all = sync.gather(mine);  // [ranks, 1 + 2C]
    const int64_t c = x.size(1);
    const torch::Tensor counts = all.narrow(1, 0, 1), sums = all.narrow(1, 1, c),
                        m2s = all.narrow(1, 1 + c, c);
    const double n = counts.sum().item<double>();
    const torch::Tensor mean = sums.sum(0) / n;
    const torch::Tensor between = sums / counts - mean.unsqueeze(0);
    const torch::Tensor var = (m2s + counts * between * between).sum(0) / n;
    const torch::Tensor mean_f = mean.to(x.scalar_type());
    const torch::Tensor invstd_f = (var + eps).rsqrt().to(x.scalar_type());
    // y = (x - mean) * s + bias, computed from the already centred x: (x - a) * s + (bias - (mean - a) * s).
    const torch::Tensor scale = invstd_f * weight;
    const torch::Tensor shift = bias - (mean_f - local_mean_f) * scale;
    const torch::Tensor y = centred * scale.view(shape) + shift.view(shape);
    {
      torch::NoGradGuard no_grad;
      running_mean.mul_(1 - momentum).add_(mean_f * momentum);
      running_var.mul_(1 - momentum).add_(var.to(x.scalar_type()) * (momentum * n / std::max(n - 1, 1.0)));
    }
    ctx->save_for_backward({x, weight, mean_f, invstd_f});
    ctx->saved_data["n"] = n;
    ctx->saved_data["sync"] = reinterpret_cast<std::int64_t>(&sync);
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &weight = saved[1], &mean = saved[2], &invstd = saved[3];
    const auto& sync = *reinterpret_cast<const quant::Collectives*>(ctx->saved_data["sync"].toInt());
    const double n = ctx->saved_data["n"].toDouble();
    const std::vector<int64_t> dims = {0, 2, 3}, shape = {1, x.size(1), 1, 1};
    const torch::Tensor dy = grads[0];
    const torch::Tensor x_hat = (x - mean.view(shape)) * invstd.view(shape);
    const torch::Tensor sum_dy = dy.sum(dims), sum_dy_x_hat = (dy * x_hat).sum(dims);
    // Copies: the all-reduce works in place, and the weight and bias keep this rank's own sums (to() alone
    // would alias them in a double network).
    torch::Tensor global_dy = sum_dy.to(torch::kDouble, false, /*copy=*/true);
    torch::Tensor global_dy_x_hat = sum_dy_x_hat.to(torch::kDouble, false, /*copy=*/true);
    sync.sum({global_dy, global_dy_x_hat});
    const torch::Tensor mean_dy = (global_dy / n).to(x.scalar_type()).view(shape);
    const torch::Tensor mean_dy_x_hat = (global_dy_x_hat / n).to(x.scalar_type()).view(shape);
    const torch::Tensor dx = (dy - mean_dy - x_hat * mean_dy_x_hat) * (invstd * weight).view(shape);
    return {dx, sum_dy_x_hat, sum_dy, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

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
  if (depthwise_) return depthwise_conv2d(x, w, stride_);
  return torch::conv2d(x, w, {}, stride_, active_kernel_ / 2, 1, 1);
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
  if (is_training() && quant::collectives() && quant::collectives()->batch_norm && x.dim() == 4) {
    return SyncBatchNormFunction::apply(x, weight.narrow(0, 0, c), bias.narrow(0, 0, c), mean, var, m, eps);
  }
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
