#include "nn/depthwise_conv.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/vector_clones.h"

namespace qnas::nn {
namespace {

struct Geometry {
  std::int64_t channels, height, width, out_height, out_width;
  int kernel, stride, padding;
};

// One image, NHWC: grad_in += grad_out (*) weight (scattered back through every tap), and
// grad_weight[tap] += grad_out * in over this image. `taps` is the weight as [K * K, C].
QNAS_VECTOR_CLONES void backward_image(const float* __restrict grad_out, const float* __restrict in,
                                       const float* __restrict taps, float* __restrict grad_in,
                                       float* __restrict grad_taps, const Geometry& g) {
  const std::int64_t c_count = g.channels;
  for (std::int64_t oh = 0; oh < g.out_height; ++oh) {
    for (std::int64_t ow = 0; ow < g.out_width; ++ow) {
      const float* go = grad_out + (oh * g.out_width + ow) * c_count;
      for (int kh = 0; kh < g.kernel; ++kh) {
        const std::int64_t ih = oh * g.stride - g.padding + kh;
        if (ih < 0 || ih >= g.height) continue;
        for (int kw = 0; kw < g.kernel; ++kw) {
          const std::int64_t iw = ow * g.stride - g.padding + kw;
          if (iw < 0 || iw >= g.width) continue;
          const std::int64_t tap = kh * g.kernel + kw, at = (ih * g.width + iw) * c_count;
          const float* w = taps + tap * c_count;
          const float* x = in + at;
          float* gi = grad_in + at;
          float* gw = grad_taps + tap * c_count;
          for (std::int64_t c = 0; c < c_count; ++c) {
            gi[c] += go[c] * w[c];
            gw[c] += go[c] * x[c];
          }
        }
      }
    }
  }
}

constexpr std::int64_t kImagesPerGroup = 4;  // the weight gradient's partial sums: per group, fixed

// Both gradients of a channels-last depthwise conv; either may be skipped.
std::pair<torch::Tensor, torch::Tensor> depthwise_backward(const torch::Tensor& grad_out,
                                                           const torch::Tensor& x,
                                                           const torch::Tensor& weight, int stride,
                                                           bool want_input, bool want_weight) {
  const torch::Tensor go = grad_out.contiguous(at::MemoryFormat::ChannelsLast);
  const Geometry g{x.size(1),  x.size(2),
                   x.size(3),  go.size(2),
                   go.size(3), static_cast<int>(weight.size(2)),
                   stride,     static_cast<int>(weight.size(2) / 2)};
  const std::int64_t batch = x.size(0), taps_size = g.kernel * g.kernel * g.channels;
  const torch::Tensor taps = weight.reshape({g.channels, g.kernel * g.kernel}).t().contiguous();
  // The input gradient is always computed (it costs the same pass); unwanted, it is dropped.
  torch::Tensor grad_in = torch::zeros_like(x, at::MemoryFormat::ChannelsLast);
  const std::int64_t groups = (batch + kImagesPerGroup - 1) / kImagesPerGroup;
  torch::Tensor partial = torch::zeros({std::max<std::int64_t>(groups, 1), taps_size});
  const float *gop = go.data_ptr<float>(), *xp = x.data_ptr<float>(), *tp = taps.data_ptr<float>();
  float *gip = grad_in.data_ptr<float>(), *pp = partial.data_ptr<float>();
  const std::int64_t in_image = g.height * g.width * g.channels,
                     out_image = g.out_height * g.out_width * g.channels;
  at::parallel_for(0, groups, 1, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t group = first; group < last; ++group) {
      const std::int64_t end = std::min(batch, (group + 1) * kImagesPerGroup);
      for (std::int64_t n = group * kImagesPerGroup; n < end; ++n)
        backward_image(gop + n * out_image, xp + n * in_image, tp, gip + n * in_image, pp + group * taps_size,
                       g);
    }
  });
  torch::Tensor grad_weight;
  if (want_weight)
    grad_weight = partial.sum(0).view({g.kernel * g.kernel, g.channels}).t().reshape(weight.sizes());
  return {want_input ? grad_in : torch::Tensor(), grad_weight};
}

bool own_backward_applies(const torch::Tensor& x, const torch::Tensor& weight) {
  return x.is_cpu() && weight.is_cpu() && x.scalar_type() == torch::kFloat &&
         weight.scalar_type() == torch::kFloat && x.dim() == 4 &&
         x.is_contiguous(at::MemoryFormat::ChannelsLast) && weight.size(1) == 1 &&
         weight.size(0) == x.size(1) && weight.size(2) == weight.size(3) && weight.size(2) % 2 == 1;
}

class DepthwiseConvFunction : public torch::autograd::Function<DepthwiseConvFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, int64_t stride) {
    ctx->save_for_backward({x, weight});
    ctx->saved_data["stride"] = stride;
    return reference_depthwise_conv2d(x, weight, static_cast<int>(stride));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &weight = saved[1];
    const int stride = static_cast<int>(ctx->saved_data["stride"].toInt());
    const bool want_input = ctx->needs_input_grad(0), want_weight = ctx->needs_input_grad(1);
    if (torch::GradMode::is_enabled()) {  // create_graph: the gradients must be differentiable themselves
      const int64_t pad = weight.size(2) / 2;
      auto [gi, gw, gb] =
          at::convolution_backward(grads[0], x, weight, c10::nullopt, {stride, stride}, {pad, pad}, {1, 1},
                                   false, {0, 0}, x.size(1), {want_input, want_weight, false});
      return {gi, gw, torch::Tensor()};
    }
    auto [gi, gw] = depthwise_backward(grads[0], x, weight, stride, want_input, want_weight);
    return {gi, gw, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor reference_depthwise_conv2d(const torch::Tensor& x, const torch::Tensor& weight, int stride) {
  return torch::conv2d(x, weight, {}, stride, weight.size(2) / 2, 1, x.size(1));
}

torch::Tensor depthwise_conv2d(const torch::Tensor& x, const torch::Tensor& weight, int stride) {
  if (!own_backward_applies(x, weight)) return reference_depthwise_conv2d(x, weight, stride);
  return DepthwiseConvFunction::apply(x, weight, stride);
}

}  // namespace qnas::nn
