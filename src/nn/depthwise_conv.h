#pragma once
// Depthwise convolution with this project's own backward for channels-last float tensors on the CPU.
// LibTorch 1.13's forward (oneDNN, NHWC) is fast, but its backward of a depthwise conv is not: measured on
// [128, 640, 7, 7] with a 5x5 kernel, 1.3 ms forward and 87 ms backward, a quarter of a training step of the
// default space. The backward here walks output positions and taps with the channel loop innermost
// (contiguous in NHWC, so it vectorises), one image per task; the weight gradient is summed per fixed group
// of images and the groups in order, so it does not depend on the thread count. Anything else (NCHW input,
// dilation, another device or dtype) runs torch::conv2d, and under create_graph (HAWQ's Hessian-vector
// products) the backward is LibTorch's differentiable convolution_backward.
#include <torch/torch.h>

namespace qnas::nn {

// x [N, C, H, W], weight [C, 1, K, K] (K odd), padding K / 2 on every side, no bias.
torch::Tensor depthwise_conv2d(const torch::Tensor& x, const torch::Tensor& weight, int stride);
// The same through torch::conv2d alone: the reference the tests compare with.
torch::Tensor reference_depthwise_conv2d(const torch::Tensor& x, const torch::Tensor& weight, int stride);

}  // namespace qnas::nn
