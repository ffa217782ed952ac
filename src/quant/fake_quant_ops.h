#pragma once
// The two fake-quant formulas every quantizer of qnas uses, each as one fused autograd op (one pass over the
// tensor forward, one backward that gives the gradients of x, scale and offset together) beside its plain
// LibTorch reference (a chain of elementwise ops that autograd differentiates). The reference is the
// definition; tests compare the fused ops with it, values and gradients.
//
//   affine:      y = round(clamp((x - offset) / scale, lo, hi)) * scale + offset        (LSQ, BatchQuant)
//   zero point:  y = (clamp(round(x / scale) + zero_point, 0, qmax) - zero_point) * scale      (LSQ+)
//
// Rounding is half to even with a straight-through gradient. scale / offset / zero_point hold one element
// (per tensor) or x.size(0) elements (per channel along dimension 0, as weights are quantised); their
// gradients come back in that shape, summed over the elements they scale. Nothing in the fused forward
// waits on the tensor's values (no .item()), so it never synchronises with the device.
#include <torch/torch.h>

namespace qnas::quant {

enum class Kernel { kFused, kReference };

// Which implementation the quantizer modules call; fused unless a test or benchmark asks otherwise.
void set_kernel(Kernel kernel);
Kernel kernel();

torch::Tensor fake_quant_affine(const torch::Tensor& x, const torch::Tensor& scale,
                                const torch::Tensor& offset, int lo, int hi);
torch::Tensor fake_quant_zero_point(const torch::Tensor& x, const torch::Tensor& scale,
                                    const torch::Tensor& zero_point, int qmax);

// The zero-point formula applied to clamp(x, clamp_lo, clamp_hi), in the same single pass: a ReLU
// ([0, inf)) or ReLU6 ([0, 6]) before an activation quantizer then costs no tensor of its own, forward or
// backward. The gradient of x is hardtanh's (zero where x <= clamp_lo or x >= clamp_hi); scale and zero
// point see the clamped values.
torch::Tensor fake_quant_zero_point_clamped(const torch::Tensor& x, const torch::Tensor& scale,
                                            const torch::Tensor& zero_point, int qmax, double clamp_lo,
                                            double clamp_hi);

// The plain-op definitions.
torch::Tensor reference_fake_quant_affine(const torch::Tensor& x, const torch::Tensor& scale,
                                          const torch::Tensor& offset, int lo, int hi);
torch::Tensor reference_fake_quant_zero_point(const torch::Tensor& x, const torch::Tensor& scale,
                                              const torch::Tensor& zero_point, int qmax);
// reference_fake_quant_zero_point(hardtanh(x, clamp_lo, clamp_hi), ...).
torch::Tensor reference_fake_quant_zero_point_clamped(const torch::Tensor& x, const torch::Tensor& scale,
                                                      const torch::Tensor& zero_point, int qmax,
                                                      double clamp_lo, double clamp_hi);

// round(x) forward, identity backward.
torch::Tensor round_pass(const torch::Tensor& x);
// x forward, gradient multiplied by `factor` backward.
torch::Tensor grad_scale(const torch::Tensor& x, double factor);

}  // namespace qnas::quant
