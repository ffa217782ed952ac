#include "quant/fake_quant_ops.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/vector_clones.h"

namespace qnas::quant {

// 2^22. A variable the compiler cannot see as constant, on purpose: GCC 12 does not vectorise a clamp to
// constant bounds (it branches).
extern float round_limit;
float round_limit = 4194304.0f;

namespace {

std::atomic<Kernel> active_kernel{Kernel::kFused};

// Per-tensor sums are accumulated per chunk of this many elements and the chunks added in order, so a
// gradient does not depend on how many threads computed it.
constexpr std::int64_t kChunk = 16384;
constexpr int kLanes = 8;  // independent float accumulators, so the sums vectorise

// Round half to even for |v| <= 2^22 in the default rounding mode; adding and removing 1.5 * 2^23 is what
// SSE2 can vectorise (rintf is a library call below SSE4.1). Callers clamp v into that range first.
inline float round_small(float v) {
  constexpr float kMagic = 12582912.0f;
  return (v + kMagic) - kMagic;
}

// min(max(v, lo), hi) on values, and `&` rather than `&&` below: no branch, so the loops vectorise.
inline float clamp_to(float v, float lo, float hi) {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

// One element or one per leading-dimension channel: the value of channel c.
struct Param {
  const float* data;
  bool per_channel;
  float at(std::int64_t c) const { return data[per_channel ? c : 0]; }
};

// The tensor's elements as `channels` runs of `inner` contiguous floats (channels = 1 per tensor: then any
// dense layout, channels-last included, is used as it is).
struct Layout {
  std::int64_t channels = 1, inner = 0;

  std::int64_t chunks_per_channel() const { return std::max<std::int64_t>((inner + kChunk - 1) / kChunk, 1); }
  std::int64_t chunks() const { return channels * chunks_per_channel(); }
};

Layout layout_of(const torch::Tensor& x, bool per_channel) {
  if (!per_channel) return {1, x.numel()};
  return {x.size(0), x.size(0) ? x.numel() / x.size(0) : 0};
}

bool per_channel_param(const torch::Tensor& p, const torch::Tensor& x) {
  if (p.numel() == 1) return false;
  if (x.dim() == 0 || p.numel() != x.size(0)) {
    fail("fake quant: a parameter of {} elements fits neither per tensor (1) nor per channel ({})", p.numel(),
         x.dim() ? x.size(0) : 1);
  }
  return true;
}

torch::Tensor dense(const torch::Tensor& x, bool per_channel) {
  if (x.is_contiguous()) return x;
  if (!per_channel && x.is_contiguous(at::MemoryFormat::ChannelsLast)) return x;
  return x.contiguous();
}

// `g` in the element order of `like` (the gradient of a channels-last output may arrive in another layout).
torch::Tensor same_layout(const torch::Tensor& g, const torch::Tensor& like) {
  if (g.strides() == like.strides()) return g;
  return torch::empty_like(like).copy_(g);
}

// Runs body(channel, begin, end, slot) over chunks of at most kChunk elements, in parallel; `slot` indexes
// the chunk's partial sums.
template <typename Body>
void for_each_chunk(const Layout& layout, Body&& body) {
  const std::int64_t per_channel = layout.chunks_per_channel();
  at::parallel_for(0, layout.chunks(), 1, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t k = first; k < last; ++k) {
      const std::int64_t begin = (k % per_channel) * kChunk;
      body(k / per_channel, begin, std::min(begin + kChunk, layout.inner), k);
    }
  });
}

struct PartialSums {
  double scale = 0, offset = 0;
};

// Per-chunk sums to the parameter's shape: per channel (chunks of one channel added in order) or one total.
torch::Tensor reduce(const std::vector<PartialSums>& partial, double PartialSums::*field,
                     const torch::Tensor& param, bool per_channel, std::int64_t channels) {
  const std::int64_t chunks_per_channel = static_cast<std::int64_t>(partial.size()) / channels;
  torch::Tensor out = torch::empty({param.numel()}, torch::kFloat);
  float* o = out.data_ptr<float>();
  double total = 0;
  for (std::int64_t c = 0; c < channels; ++c) {
    double sum = 0;
    for (std::int64_t k = 0; k < chunks_per_channel; ++k) sum += partial[c * chunks_per_channel + k].*field;
    if (per_channel) o[c] = static_cast<float>(sum);
    total += sum;
  }
  if (!per_channel) o[0] = static_cast<float>(total);
  return out.reshape(param.sizes());
}

bool fused_applies(const torch::Tensor& x, std::initializer_list<torch::Tensor> params) {
  if (active_kernel.load() != Kernel::kFused || !x.is_cpu() || x.scalar_type() != torch::kFloat) return false;
  for (const auto& p : params) {
    if (!p.is_cpu() || p.scalar_type() != torch::kFloat) return false;
  }
  return true;
}

// Each element loop is cloned for AVX-512/AVX2 (core/vector_clones.h). The file is built with
// -ffp-contract=off, so every clone rounds exactly as the reference does.

// ---------------------------------------------------------------------------------------------------------
// The element loops, as plain functions over restrict pointers, kept out of line: GCC 12 vectorises them
// alone but not once inlined into the parallel loop.

QNAS_VECTOR_CLONES void affine_forward_kernel(const float* __restrict x, float* __restrict y, std::int64_t n,
                                              float s, float b, float lo, float hi) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float v = clamp_to((x[i] - b) / s, lo, hi);
    y[i] = round_small(v) * s + b;
  }
}

// `act_lo`/`act_hi`: the ReLU / ReLU6 clamp applied first (+-infinity: none; a finite value stays itself).
QNAS_VECTOR_CLONES void zero_point_forward_kernel(const float* __restrict x, float* __restrict y,
                                                  std::int64_t n, float s, float z, float lo, float hi,
                                                  float limit, float act_lo, float act_hi) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float u = clamp_to(clamp_to(x[i], act_lo, act_hi) / s, -limit, limit);
    const float code = clamp_to(round_small(u) + z, lo, hi);
    y[i] = (code - z) * s;
  }
}

// The backward element loops, one block of at most kBlock elements at a time: the gradient of x, and each
// element's two terms of the scale and offset gradients in ta and tb. Plain restrict-pointer functions for
// the same reason as the forward loops (a formula's member function inlined into the block loop stayed
// scalar: "control flow in loop").

// affine: scale through the product (g * round) and the quotient (-gx * v); offset through the sum (g) and
// the difference (-gx).
QNAS_VECTOR_CLONES void affine_backward_block(const float* __restrict x, const float* __restrict g,
                                              float* __restrict gx, float* __restrict ta,
                                              float* __restrict tb, int m, float s, float b, float lo,
                                              float hi) {
  for (int j = 0; j < m; ++j) {
    const float gj = g[j];
    const float v = (x[j] - b) / s;
    const bool inside = (v >= lo) & (v <= hi);
    const float r = round_small(clamp_to(v, lo, hi));
    // g - gx as a select, computed before the stores: written otherwise, GCC 12 leaves this loop scalar.
    const float gxj = inside ? gj : 0.0f, outside = inside ? 0.0f : gj;
    gx[j] = gxj;
    ta[j] = gj * r - gxj * v;
    tb[j] = outside;
  }
}

// zero point: scale through the product (g * (code - z)) and the quotient (-ga * u); zero point through the
// sum (ga * s) and the difference (-g * s), where ga is the gradient of the clamped a. The gradient of x is
// ga where the clamp passes x (hardtanh's: strictly inside (act_lo, act_hi)).
QNAS_VECTOR_CLONES void zero_point_backward_block(const float* __restrict x, const float* __restrict g,
                                                  float* __restrict gx, float* __restrict ta,
                                                  float* __restrict tb, int m, float s, float z, float lo,
                                                  float hi, float limit, float act_lo, float act_hi) {
  for (int j = 0; j < m; ++j) {
    const float xj = x[j], gj = g[j];
    const bool passes = (xj > act_lo) & (xj < act_hi);
    const float u = clamp_to(xj, act_lo, act_hi) / s;
    const float t = round_small(clamp_to(u, -limit, limit)) + z;
    const bool inside = (t >= lo) & (t <= hi);
    const float code = clamp_to(t, lo, hi);
    const float ga = inside ? gj : 0.0f;
    gx[j] = passes ? ga : 0.0f;
    ta[j] = gj * (code - z) - ga * u;
    tb[j] = (ga - gj) * s;
  }
}

constexpr int kBlock = 256;

// Blocks of kBlock elements: the formula's block loop, then its terms added into kLanes float lanes (32
// terms each), and the lanes into double sums.
template <typename Formula>
PartialSums backward_chunk(const Formula& formula, const float* x, const float* g, float* gx, std::int64_t n,
                           float s, float b) {
  PartialSums sums;
  float ta[kBlock], tb[kBlock];
  for (std::int64_t begin = 0; begin < n; begin += kBlock) {
    const int m = static_cast<int>(std::min<std::int64_t>(n - begin, kBlock));
    formula.backward_block(x + begin, g + begin, gx + begin, ta, tb, m, s, b);
    for (int j = m; j < kBlock; ++j) ta[j] = tb[j] = 0.0f;
    float lane_a[kLanes] = {}, lane_b[kLanes] = {};
    for (int j = 0; j < kBlock; j += kLanes) {
      for (int l = 0; l < kLanes; ++l) {
        lane_a[l] += ta[j + l];
        lane_b[l] += tb[j + l];
      }
    }
    for (int l = 0; l < kLanes; ++l) {
      sums.scale += lane_a[l];
      sums.offset += lane_b[l];
    }
  }
  return sums;
}

// The two formulas, each with its code range [lo, hi]. Backward terms are the reference's with (g * s) / s
// simplified to g: one division per element, the one that decides (exactly as the forward did) whether the
// element was clipped.

// affine: y = round(clamp((x - b) / s, lo, hi)) * s + b
struct Affine {
  float lo, hi;
  float act_lo = 0, act_hi = 0;  // unused: no activation is fused into the affine formula

  void forward(const float* x, float* y, std::int64_t n, float s, float b) const {
    affine_forward_kernel(x, y, n, s, b, lo, hi);
  }
  void backward_block(const float* x, const float* g, float* gx, float* ta, float* tb, int m, float s,
                      float b) const {
    affine_backward_block(x, g, gx, ta, tb, m, s, b, lo, hi);
  }
};

// zero point: y = (clamp(round(a / s) + z, lo, hi) - z) * s, with [lo, hi] = [0, qmax] and
// a = clamp(x, act_lo, act_hi): the ReLU or ReLU6 before an activation quantizer, in the same pass
// (act_lo = -inf, act_hi = +inf: a = x).
struct ZeroPoint {
  float lo, hi;
  float act_lo = -std::numeric_limits<float>::infinity(), act_hi = std::numeric_limits<float>::infinity();
  float limit = round_limit;

  void forward(const float* x, float* y, std::int64_t n, float s, float z) const {
    zero_point_forward_kernel(x, y, n, s, z, lo, hi, limit, act_lo, act_hi);
  }
  void backward_block(const float* x, const float* g, float* gx, float* ta, float* tb, int m, float s,
                      float z) const {
    zero_point_backward_block(x, g, gx, ta, tb, m, s, z, lo, hi, limit, act_lo, act_hi);
  }
};

// One autograd function per formula: `offset` is the affine offset or the zero point.
template <typename Formula>
class FakeQuantFunction : public torch::autograd::Function<FakeQuantFunction<Formula>> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input,
                               const torch::Tensor& scale, const torch::Tensor& offset, int64_t lo,
                               int64_t hi, double act_lo, double act_hi) {
    const bool pc_s = per_channel_param(scale, input), pc_b = per_channel_param(offset, input);
    const torch::Tensor x = dense(input, pc_s || pc_b);
    const torch::Tensor s = scale.contiguous(), b = offset.contiguous();
    torch::Tensor y = torch::empty_like(x);
    const Layout layout = layout_of(x, pc_s || pc_b);
    const Param ps{s.data_ptr<float>(), pc_s}, pb{b.data_ptr<float>(), pc_b};
    const float* xp = x.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    const Formula formula{static_cast<float>(lo), static_cast<float>(hi), static_cast<float>(act_lo),
                          static_cast<float>(act_hi)};
    for_each_chunk(layout, [&](std::int64_t c, std::int64_t begin, std::int64_t end, std::int64_t) {
      const std::int64_t at = c * layout.inner + begin;
      formula.forward(xp + at, yp + at, end - begin, ps.at(c), pb.at(c));
    });
    ctx->save_for_backward({x, s, b});
    ctx->saved_data["lo"] = lo;
    ctx->saved_data["hi"] = hi;
    ctx->saved_data["act_lo"] = act_lo;
    ctx->saved_data["act_hi"] = act_hi;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &s = saved[1], &b = saved[2];
    const Formula formula{static_cast<float>(ctx->saved_data["lo"].toInt()),
                          static_cast<float>(ctx->saved_data["hi"].toInt()),
                          static_cast<float>(ctx->saved_data["act_lo"].toDouble()),
                          static_cast<float>(ctx->saved_data["act_hi"].toDouble())};
    const bool pc_s = per_channel_param(s, x), pc_b = per_channel_param(b, x);
    const torch::Tensor g = same_layout(grads[0], x);
    torch::Tensor gx = torch::empty_like(x);
    const Layout layout = layout_of(x, pc_s || pc_b);
    const Param ps{s.data_ptr<float>(), pc_s}, pb{b.data_ptr<float>(), pc_b};
    const float *xp = x.data_ptr<float>(), *gp = g.data_ptr<float>();
    float* gxp = gx.data_ptr<float>();
    std::vector<PartialSums> partial(static_cast<size_t>(layout.chunks()));
    for_each_chunk(layout, [&](std::int64_t c, std::int64_t begin, std::int64_t end, std::int64_t slot) {
      const std::int64_t at = c * layout.inner + begin;
      partial[static_cast<size_t>(slot)] =
          backward_chunk(formula, xp + at, gp + at, gxp + at, end - begin, ps.at(c), pb.at(c));
    });
    return {gx,
            reduce(partial, &PartialSums::scale, s, pc_s, layout.channels),
            reduce(partial, &PartialSums::offset, b, pc_b, layout.channels),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor()};
  }
};

// A per-channel parameter broadcast against x (shape [C, 1, 1, ...]); a per-tensor one as it is.
torch::Tensor broadcastable(const torch::Tensor& p, const torch::Tensor& x) {
  if (!per_channel_param(p, x)) return p.reshape({});
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[0] = x.size(0);
  return p.reshape(shape);
}

}  // namespace

void set_kernel(Kernel kernel) {
  active_kernel.store(kernel);
}

Kernel kernel() {
  return active_kernel.load();
}

torch::Tensor round_pass(const torch::Tensor& x) {
  return (x.round() - x).detach() + x;
}

torch::Tensor grad_scale(const torch::Tensor& x, double factor) {
  const torch::Tensor scaled = x * factor;
  return (x - scaled).detach() + scaled;
}

torch::Tensor reference_fake_quant_affine(const torch::Tensor& x, const torch::Tensor& scale,
                                          const torch::Tensor& offset, int lo, int hi) {
  const torch::Tensor s = broadcastable(scale, x), b = broadcastable(offset, x);
  const torch::Tensor v = torch::clamp((x - b) / s, lo, hi);
  return round_pass(v) * s + b;
}

torch::Tensor reference_fake_quant_zero_point(const torch::Tensor& x, const torch::Tensor& scale,
                                              const torch::Tensor& zero_point, int qmax) {
  const torch::Tensor s = broadcastable(scale, x), z = broadcastable(zero_point, x);
  const torch::Tensor code = torch::clamp(round_pass(x / s) + z, 0, qmax);
  return (code - z) * s;
}

torch::Tensor fake_quant_affine(const torch::Tensor& x, const torch::Tensor& scale,
                                const torch::Tensor& offset, int lo, int hi) {
  if (!fused_applies(x, {scale, offset})) return reference_fake_quant_affine(x, scale, offset, lo, hi);
  return FakeQuantFunction<Affine>::apply(x, scale, offset, lo, hi, 0.0, 0.0);
}

torch::Tensor fake_quant_zero_point(const torch::Tensor& x, const torch::Tensor& scale,
                                    const torch::Tensor& zero_point, int qmax) {
  if (!fused_applies(x, {scale, zero_point}))
    return reference_fake_quant_zero_point(x, scale, zero_point, qmax);
  constexpr double kInf = std::numeric_limits<double>::infinity();
  return FakeQuantFunction<ZeroPoint>::apply(x, scale, zero_point, 0, qmax, -kInf, kInf);
}

torch::Tensor reference_fake_quant_zero_point_clamped(const torch::Tensor& x, const torch::Tensor& scale,
                                                      const torch::Tensor& zero_point, int qmax,
                                                      double clamp_lo, double clamp_hi) {
  return reference_fake_quant_zero_point(torch::hardtanh(x, clamp_lo, clamp_hi), scale, zero_point, qmax);
}

torch::Tensor fake_quant_zero_point_clamped(const torch::Tensor& x, const torch::Tensor& scale,
                                            const torch::Tensor& zero_point, int qmax, double clamp_lo,
                                            double clamp_hi) {
  if (!(clamp_lo < clamp_hi)) fail("fake quant: clamp range [{}, {}] is empty", clamp_lo, clamp_hi);
  if (!fused_applies(x, {scale, zero_point}))
    return reference_fake_quant_zero_point_clamped(x, scale, zero_point, qmax, clamp_lo, clamp_hi);
  return FakeQuantFunction<ZeroPoint>::apply(x, scale, zero_point, 0, qmax, clamp_lo, clamp_hi);
}

}  // namespace qnas::quant
