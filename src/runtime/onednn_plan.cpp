#include "runtime/onednn_plan.h"

#include <omp.h>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include <cstring>
#include <oneapi/dnnl/dnnl.hpp>

#include "core/error.h"

namespace qnas::runtime {
namespace {

using dnnl::algorithm;
using dnnl::memory;
using dnnl::post_ops;
using dnnl::primitive_attr;
using dnnl::prop_kind;
using dt = memory::data_type;
using tag = memory::format_tag;

// Activations that commute with a positive scale (relu6 after scaling its bound): for these the output
// scale 1/s_out folds into the conv's output scales and no extra post-op is needed.
bool folds_into_scale(Activation a) {
  return a == Activation::kNone || a == Activation::kRelu || a == Activation::kRelu6;
}

// Appends act(x) * out_scale as eltwise post-ops; `domain` is the scale the input is already multiplied by
// (only relu6's bound depends on it).
void append_activation(post_ops& po, Activation a, float domain, float out_scale) {
  switch (a) {
    case Activation::kNone:
      if (out_scale != 1.0f) po.append_eltwise(1.0f, algorithm::eltwise_linear, out_scale, 0.0f);
      return;
    case Activation::kRelu:
      po.append_eltwise(out_scale, algorithm::eltwise_relu, 0.0f, 0.0f);
      return;
    case Activation::kRelu6:
      po.append_eltwise(out_scale, algorithm::eltwise_clip, 0.0f, 6.0f * domain);
      return;
    case Activation::kHswish:
      po.append_eltwise(out_scale, algorithm::eltwise_hardswish, 0.0f, 0.0f);
      return;
    case Activation::kSwish:
      po.append_eltwise(out_scale, algorithm::eltwise_swish, 1.0f, 0.0f);
      return;
    case Activation::kSigmoid:
      po.append_eltwise(out_scale, algorithm::eltwise_logistic, 0.0f, 0.0f);
      return;
    case Activation::kHsigmoid:
      po.append_eltwise(1.0f, algorithm::eltwise_linear, 1.0f / 6.0f, 0.5f);
      po.append_eltwise(out_scale, algorithm::eltwise_clip, 0.0f, 1.0f);
      return;
  }
}

// The engine's thread count for one call, and the caller's back afterwards: OpenMP's count is per process,
// and LibTorch trains on the same pool, so a plan built or timed between two training steps must not leave it
// at the plan's count (a 1-thread latency measurement once turned the rest of a 2-thread training run into a
// 1-thread one, with other float sums).
class ScopedOmpThreads {
 public:
  explicit ScopedOmpThreads(int threads) : saved_(omp_get_max_threads()) { omp_set_num_threads(threads); }
  ~ScopedOmpThreads() { omp_set_num_threads(saved_); }
  ScopedOmpThreads(const ScopedOmpThreads&) = delete;
  ScopedOmpThreads& operator=(const ScopedOmpThreads&) = delete;

 private:
  int saved_;
};

memory::desc with_data_type(const memory::desc& md, dt type) {
  dnnl_memory_desc_t raw = md.data;
  raw.data_type = static_cast<dnnl_data_type_t>(type);
  return memory::desc(raw);
}

}  // namespace

const char* to_string(Precision precision) {
  return precision == Precision::kInt8 ? "int8" : "fp32";
}

Precision parse_precision(const std::string& text) {
  if (text == "int8") return Precision::kInt8;
  if (text == "fp32") return Precision::kFp32;
  fail("unknown precision '{}': use int8 or fp32", text);
}

void apply_isa_policy() {
  static std::once_flag once;
  std::call_once(once, [] {
    // The user's own cap wins.
    if (std::getenv("ONEDNN_MAX_CPU_ISA") || std::getenv("DNNL_MAX_CPU_ISA")) return;
    // oneDNN 2.6 on AMX: its AMX int8 convs take no source zero point in brgconv, and the jit fallback that
    // does is 2.8x slower than avx512_core_vnni on our networks and corrupts the heap on some small shapes
    // (docs/subnet-search.md). VNNI is also a little faster with zero point 0 at these sizes.
    // LibTorch links the same libdnnl, and the cap only holds before its first kernel: kIsaPolicyApplied
    // below runs this at load time.
    if (dnnl_set_max_cpu_isa(dnnl_cpu_isa_avx512_core_vnni) != dnnl_success)
      std::fprintf(stderr, "qnas: note: oneDNN kernels were generated before the ISA cap; AMX stays on\n");
  });
}

// At load time, before LibTorch (which links the same libdnnl) generates any kernel.
const bool kIsaPolicyApplied = (apply_isa_policy(), true);

struct OnednnPlan::Impl {
  struct Exec {
    dnnl::primitive primitive;
    std::unordered_map<int, memory> args;
  };

  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  const Program& program;
  const Weights& weights;
  const QuantParams* quant;
  Precision precision;
  int threads;

  std::vector<memory> tensors;  // each tensor's memory as its producer wrote it
  std::vector<Exec> execs;      // in order; execs[0] converts the user's input
  memory user_input;
  int reorders = 0;
  std::map<std::string, int> implementations;

  Impl(const Program& p, const Weights& w, const QuantParams* q, Precision prec, int t)
      : program(p), weights(w), quant(q), precision(prec), threads(t) {}

  bool int8() const { return precision == Precision::kInt8; }
  dt type_of(int tensor) const {
    if (!int8() || program.tensors[tensor].is_logits) return dt::f32;
    return type_of(quant->tensors[tensor]);
  }
  static dt type_of(const TensorQuant& q) { return q.is_unsigned ? dt::u8 : dt::s8; }
  float scale_of(int tensor) const { return int8() ? quant->tensors[tensor].scale : 1.0f; }
  int zero_point_of(int tensor) const { return int8() ? quant->tensors[tensor].zero_point : 0; }

  // Zero points go in as runtime arguments (the form oneDNN's x64 INT8 convolutions implement), and only when
  // non-zero, so zero-point-free tensors keep the plain kernels.
  void set_zero_point(primitive_attr& attr, std::vector<std::pair<int, int>>& values, int arg,
                      int zero_point) {
    if (zero_point == 0) return;
    attr.set_zero_points(arg, 0, {DNNL_RUNTIME_S32_VAL});
    values.emplace_back(arg, zero_point);
  }
  void bind_zero_points(Exec& exec, const std::vector<std::pair<int, int>>& values) {
    for (const auto& [arg, value] : values) {
      memory m(memory::desc({1}, dt::s32, tag::x), engine);
      *static_cast<std::int32_t*>(m.get_data_handle()) = value;
      exec.args[DNNL_ARG_ATTR_ZERO_POINTS | arg] = m;
    }
  }
  memory::dims dims_of(int tensor) const {
    const TensorInfo& info = program.tensors[tensor];
    if (info.is_logits) return {1, info.channels};
    return {1, info.channels, info.hw, info.hw};
  }
  memory::desc any_of(int tensor) const { return memory::desc(dims_of(tensor), type_of(tensor), tag::any); }

  template <typename PrimitiveDesc>
  void record(const PrimitiveDesc& pd) {
    implementations[pd.impl_info_str()]++;
  }

  // The tensor in the layout a consumer asked for: the producer's memory when it matches, otherwise a
  // reorder into a new buffer. The network input is created in whatever layout its first reader wants.
  memory input_as(int tensor, const memory::desc& wanted) {
    if (!tensors[tensor]) {
      if (tensor != program.input) fail("tensor {} is read before it is produced", tensor);
      tensors[tensor] = memory(wanted, engine);
      const memory::desc plain(dims_of(tensor), dt::f32, tag::nchw);
      user_input = memory(plain, engine);
      primitive_attr attr;
      std::vector<std::pair<int, int>> zero_points;
      if (int8()) {
        attr.set_output_scales(0, {1.0f / scale_of(tensor)});
        set_zero_point(attr, zero_points, DNNL_ARG_DST, zero_point_of(tensor));
      }
      dnnl::reorder::primitive_desc pd(engine, plain, engine, wanted, attr);
      Exec exec{dnnl::reorder(pd), {{DNNL_ARG_FROM, user_input}, {DNNL_ARG_TO, tensors[tensor]}}};
      bind_zero_points(exec, zero_points);
      execs.insert(execs.begin(), exec);
      return tensors[tensor];
    }
    if (tensors[tensor].get_desc() == wanted) return tensors[tensor];
    memory converted(wanted, engine);
    dnnl::reorder::primitive_desc pd(engine, tensors[tensor].get_desc(), engine, wanted);
    execs.push_back(Exec{dnnl::reorder(pd), {{DNNL_ARG_FROM, tensors[tensor]}, {DNNL_ARG_TO, converted}}});
    ++reorders;
    return converted;
  }

  // Copies plain-layout data into a oneDNN-owned buffer and reorders it into `wanted` once, now.
  memory constant(const void* data, const memory::desc& plain, const memory::desc& wanted) {
    memory user(plain, engine);
    std::memcpy(user.get_data_handle(), data, plain.get_size());
    if (plain == wanted) return user;
    memory out(wanted, engine);
    dnnl::reorder(user, out).execute(stream, user, out);
    stream.wait();
    return out;
  }

  memory weight_memory(const memory::dims& dims, tag plain_tag, const float* f32, const std::int8_t* s8,
                       const memory::desc& wanted) {
    const memory::desc plain(dims, int8() ? dt::s8 : dt::f32, plain_tag);
    return constant(int8() ? static_cast<const void*>(s8) : static_cast<const void*>(f32), plain, wanted);
  }

  memory bias_memory(const std::vector<float>& bias, const std::vector<float>& multiplier) {
    std::vector<float> values(bias);
    if (!multiplier.empty()) {
      for (size_t c = 0; c < values.size(); ++c) values[c] /= multiplier[c];
    }
    const memory::desc md({static_cast<memory::dim>(values.size())}, dt::f32, tag::x);
    return constant(values.data(), md, md);
  }

  // One conv (dense or depthwise) with everything after it fused: own activation, residual sum, post-add
  // activation, requantisation. `src_tensor` and `dst` may be overridden for the convs inside an SE.
  struct ConvArgs {
    ConvArgs(int cin_, int cout_, int kernel_, int stride_, int in_hw_, int out_hw_, bool depthwise_)
        : cin(cin_),
          cout(cout_),
          kernel(kernel_),
          stride(stride_),
          in_hw(in_hw_),
          out_hw(out_hw_),
          depthwise(depthwise_) {}
    int cin, cout, kernel, stride, in_hw, out_hw;
    bool depthwise;
    Activation act = Activation::kNone;
    Activation post_add = Activation::kNone;
    const std::vector<float>* weight = nullptr;
    const std::vector<std::int8_t>* qweight = nullptr;
    const std::vector<float>* bias = nullptr;
    std::vector<float> in_scale_times_wscale;  // INT8: s_in * s_w[c]
    float out_scale = 1.0f;                    // INT8: s_out (1 for an f32 output)
    int in_zero_point = 0, out_zero_point = 0;
    int residual = -1;
    float residual_scale = 1.0f;
    int residual_zero_point = 0;
  };

  memory conv(const ConvArgs& a, const memory& src_hint, memory::desc src_md, memory::desc dst_md,
              int src_tensor, memory* dst_memory) {
    const memory::dims wdims = a.depthwise ? memory::dims{a.cout, 1, 1, a.kernel, a.kernel}
                                           : memory::dims{a.cout, a.cin, a.kernel, a.kernel};
    const memory::desc w_any(wdims, int8() ? dt::s8 : dt::f32, tag::any);
    const memory::desc b_md({a.cout}, dt::f32, tag::x);
    const int pad = a.kernel / 2;
    const memory::dim pr = (a.out_hw - 1) * a.stride + a.kernel - a.in_hw - pad;  // right/bottom padding
    dnnl::convolution_forward::desc desc(prop_kind::forward_inference, algorithm::convolution_direct, src_md,
                                         w_any, b_md, dst_md, {a.stride, a.stride}, {pad, pad}, {pr, pr});
    primitive_attr attr;
    post_ops po;
    std::vector<std::pair<int, int>> zero_points;
    const bool fold = !int8() || (folds_into_scale(a.act) && folds_into_scale(a.post_add));
    const float domain = int8() && fold ? 1.0f / a.out_scale : 1.0f;
    if (int8()) {
      std::vector<float> scales = a.in_scale_times_wscale;
      for (auto& s : scales) s *= domain;
      attr.set_output_scales(1 << 1, scales);
      set_zero_point(attr, zero_points, DNNL_ARG_SRC, a.in_zero_point);
      set_zero_point(attr, zero_points, DNNL_ARG_DST, a.out_zero_point);
    }
    append_activation(po, a.act, domain, 1.0f);
    if (a.residual >= 0) {
      po.append_sum(a.residual_scale * domain, a.residual_zero_point,
                    int8() ? type_of(a.residual) : dt::undef);
    }
    // The final requantisation rides on the last activation (or a linear op when there is none).
    const float out_multiplier = fold ? 1.0f : 1.0f / a.out_scale;
    append_activation(po, a.post_add, domain, out_multiplier);
    attr.set_post_ops(po);
    dnnl::convolution_forward::primitive_desc pd(desc, attr, engine);
    record(pd);
    memory src = src_tensor >= 0 ? input_as(src_tensor, pd.src_desc()) : src_hint;
    if (src_tensor < 0 && src.get_desc() != pd.src_desc()) fail("internal: SE input layout mismatch");
    const memory weights_mem = weight_memory(wdims, a.depthwise ? tag::goihw : tag::oihw, a.weight->data(),
                                             int8() ? a.qweight->data() : nullptr, pd.weights_desc());
    const memory bias_mem = bias_memory(*a.bias, int8() ? a.in_scale_times_wscale : std::vector<float>{});
    memory dst = dst_memory && *dst_memory ? *dst_memory : memory(pd.dst_desc(), engine);
    Exec exec{dnnl::convolution_forward(pd),
              {{DNNL_ARG_SRC, src},
               {DNNL_ARG_WEIGHTS, weights_mem},
               {DNNL_ARG_BIAS, bias_mem},
               {DNNL_ARG_DST, dst}}};
    bind_zero_points(exec, zero_points);
    execs.push_back(exec);
    return dst;
  }

  std::vector<float> multipliers(float in_scale, const std::vector<float>& weight_scales) const {
    std::vector<float> m(weight_scales);
    for (auto& s : m) s *= in_scale;
    return m;
  }

  void add_conv(size_t i) {
    const Step& s = program.steps[i];
    const LayerSpec& l = s.layer;
    ConvArgs a(l.cin, l.cout, l.kernel, l.stride, l.in_hw, l.out_hw, l.op == OpKind::kDepthwiseConv);
    a.act = l.activation;
    a.post_add = s.post_add;
    a.weight = &weights.steps[i].weight;
    a.bias = &weights.steps[i].bias;
    if (int8()) {
      a.qweight = &quant->steps[i].weight;
      a.in_scale_times_wscale = multipliers(scale_of(s.input), quant->steps[i].weight_scale);
      a.out_scale = scale_of(s.output);
      a.in_zero_point = zero_point_of(s.input);
      a.out_zero_point = zero_point_of(s.output);
    }
    memory::desc dst_md = any_of(s.output);
    memory dst;
    if (s.residual >= 0) {
      // The sum post-op accumulates into dst, so dst is the residual's buffer itself (it is dead after the
      // add), read through the output's data type.
      a.residual = s.residual;
      a.residual_scale = scale_of(s.residual);
      a.residual_zero_point = zero_point_of(s.residual);
      dst_md = with_data_type(tensors[s.residual].get_desc(), type_of(s.output));
      dst = memory(dst_md, engine, tensors[s.residual].get_data_handle());
    }
    tensors[s.output] = conv(a, memory(), any_of(s.input), dst_md, s.input, &dst);
  }

  // Average pooling; with INT8 parameters that differ between input and output, the codes are requantised by
  // a linear post-op (alpha * mean + beta), as the reference does.
  memory global_pool(int tensor, int hw, memory::desc dst_md, const TensorQuant* from = nullptr,
                     const TensorQuant* to = nullptr) {
    // A pool that reads the plan's input (a head block profiled alone) takes the layout convs produce.
    const memory src = tensors[tensor] ? tensors[tensor]
                                       : input_as(tensor, memory::desc(dims_of(tensor), type_of(tensor),
                                                                       int8() ? tag::nhwc : tag::nChw16c));
    dnnl::pooling_forward::desc desc(prop_kind::forward_inference, algorithm::pooling_avg_exclude_padding,
                                     src.get_desc(), dst_md, {hw, hw}, {hw, hw}, {0, 0}, {0, 0});
    primitive_attr attr;
    float alpha = 1.0f, beta = 0.0f;
    if (from && to && *from != *to) {
      post_ops po;
      alpha = from->scale / to->scale;
      beta = static_cast<float>(to->zero_point) - static_cast<float>(from->zero_point) * alpha;
      po.append_eltwise(1.0f, algorithm::eltwise_linear, alpha, beta);
      attr.set_post_ops(po);
    }
    try {
      dnnl::pooling_forward::primitive_desc pd(desc, attr, engine);
      record(pd);
      memory dst(pd.dst_desc(), engine);
      execs.push_back(Exec{dnnl::pooling_forward(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}}});
      return dst;
    } catch (const dnnl::error&) {
    }
    // oneDNN 2.6 pools int8 only into the source's own type (u8 -> u8, s8 -> s8): a pool whose output type
    // differs (u8 with a zero point in, s8 out) goes through f32. The codes as floats are pooled, requantised
    // there (the same affine map the post-op applies) and reordered to the output's type (round to nearest
    // even, saturate), so the result equals the fused path's.
    const memory::desc src_f32_md(src.get_desc().dims(), dt::f32, tag::nhwc);
    memory src_f32(src_f32_md, engine);
    dnnl::reorder::primitive_desc to_f32(engine, src.get_desc(), engine, src_f32_md);
    execs.push_back(Exec{dnnl::reorder(to_f32), {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, src_f32}}});
    const memory::desc f32_md(dst_md.dims(), dt::f32, tag::any);
    dnnl::pooling_forward::desc plain(prop_kind::forward_inference, algorithm::pooling_avg_exclude_padding,
                                      src_f32_md, f32_md, {hw, hw}, {hw, hw}, {0, 0}, {0, 0});
    dnnl::pooling_forward::primitive_desc pd(plain, engine);
    record(pd);
    memory pooled(pd.dst_desc(), engine);
    execs.push_back(Exec{dnnl::pooling_forward(pd), {{DNNL_ARG_SRC, src_f32}, {DNNL_ARG_DST, pooled}}});
    dnnl::eltwise_forward::desc linear(prop_kind::forward_inference, algorithm::eltwise_linear,
                                       pooled.get_desc(), alpha, beta);
    dnnl::eltwise_forward::primitive_desc linear_pd(linear, engine);
    record(linear_pd);
    execs.push_back(Exec{dnnl::eltwise_forward(linear_pd), {{DNNL_ARG_SRC, pooled}, {DNNL_ARG_DST, pooled}}});
    memory dst(with_data_type(pooled.get_desc(), dst_md.data_type()), engine);
    dnnl::reorder::primitive_desc reorder_pd(engine, pooled.get_desc(), engine, dst.get_desc());
    execs.push_back(Exec{dnnl::reorder(reorder_pd), {{DNNL_ARG_FROM, pooled}, {DNNL_ARG_TO, dst}}});
    return dst;
  }

  void add_global_pool(size_t i) {
    const Step& s = program.steps[i];
    tensors[s.output] = int8() ? global_pool(s.input, s.layer.in_hw, any_of(s.output),
                                             &quant->tensors[s.input], &quant->tensors[s.output])
                               : global_pool(s.input, s.layer.in_hw, any_of(s.output));
  }

  void add_squeeze_excite(size_t i) {
    const Step& s = program.steps[i];
    const LayerSpec& l = s.layer;
    const StepWeights& w = weights.steps[i];
    const TensorQuant* pool_q = int8() ? &quant->steps[i].pool : nullptr;
    const memory pooled =
        int8() ? global_pool(s.input, l.in_hw, memory::desc({1, l.cin, 1, 1}, type_of(*pool_q), tag::any),
                             &quant->tensors[s.input], pool_q)
               : global_pool(s.input, l.in_hw, memory::desc({1, l.cin, 1, 1}, dt::f32, tag::any));
    ConvArgs squeeze(l.cin, l.se_mid, 1, 1, 1, 1, false);
    squeeze.act = Activation::kRelu;
    squeeze.weight = &w.weight;
    squeeze.bias = &w.bias;
    ConvArgs excite(l.se_mid, l.cin, 1, 1, 1, 1, false);
    excite.act = Activation::kHsigmoid;
    excite.weight = &w.weight2;
    excite.bias = &w.bias2;
    float shift_zero = 0.0f, shift_slope = 0.0f, rescale = 1.0f;
    if (int8()) {
      const StepQuant& q = quant->steps[i];
      const TensorQuant &in = quant->tensors[s.input], &out = quant->tensors[s.output];
      squeeze.qweight = &q.weight;
      squeeze.in_scale_times_wscale = multipliers(q.pool.scale, q.weight_scale);
      squeeze.in_zero_point = q.pool.zero_point;
      squeeze.out_scale = q.mid.scale;
      squeeze.out_zero_point = q.mid.zero_point;
      excite.qweight = &q.weight2;
      excite.in_scale_times_wscale = multipliers(q.mid.scale, q.weight2_scale);
      excite.in_zero_point = q.mid.zero_point;
      // (codes * r) * gate + shift with r = s_x / s_out (the binary's src0 scale) and shift = z_out - z_x * r
      // * gate is the product x * gate on the output's grid.
      rescale = in.scale / out.scale;
      shift_zero = static_cast<float>(out.zero_point);
      shift_slope = -static_cast<float>(in.zero_point) * rescale;
    }
    memory none;
    const memory mid =
        conv(squeeze, pooled, pooled.get_desc(),
             memory::desc({1, l.se_mid, 1, 1}, int8() ? type_of(quant->steps[i].mid) : dt::f32, tag::any), -1,
             &none);
    const memory::desc mid_md = mid.get_desc();
    // With a shift the gate stays plain: a per-channel binary post-op operand in a padded blocked layout
    // (channels not a multiple of the block) was read wrongly by oneDNN 2.6 here.
    const bool shifted = shift_zero != 0.0f || shift_slope != 0.0f;
    const memory gate =
        conv(excite, mid, mid_md, memory::desc({1, l.cin, 1, 1}, dt::f32, shifted ? tag::nchw : tag::any), -1,
             &none);
    const memory x = tensors[s.input];
    const memory::desc dst_md = with_data_type(x.get_desc(), type_of(s.output));
    primitive_attr attr;
    if (rescale != 1.0f) attr.set_scales(DNNL_ARG_SRC_0, 0, {rescale});
    if (!shifted) {
      tensors[s.output] = binary(algorithm::binary_mul, x, gate, dst_md, attr);
      return;
    }
    // With zero points: the product goes to f32, then the per-channel shift z_out - z_x * r * gate is added.
    // Two plain binaries, because oneDNN 2.6 misread a per-channel binary post-op here at small spatial
    // sizes.
    memory shift(gate.get_desc(), engine);
    dnnl::eltwise_forward::desc shift_desc(prop_kind::forward_inference, algorithm::eltwise_linear,
                                           gate.get_desc(), shift_slope, shift_zero);
    dnnl::eltwise_forward::primitive_desc shift_pd(shift_desc, engine);
    record(shift_pd);
    execs.push_back(Exec{dnnl::eltwise_forward(shift_pd), {{DNNL_ARG_SRC, gate}, {DNNL_ARG_DST, shift}}});
    const memory product =
        binary(algorithm::binary_mul, x, gate, with_data_type(x.get_desc(), dt::f32), attr);
    tensors[s.output] = binary(algorithm::binary_add, product, shift, dst_md, primitive_attr());
  }

  memory binary(algorithm alg, const memory& a, const memory& b, const memory::desc& dst_md,
                const primitive_attr& attr) {
    dnnl::binary::desc desc(alg, a.get_desc(), b.get_desc(), dst_md);
    dnnl::binary::primitive_desc pd(desc, attr, engine);
    record(pd);
    memory dst(pd.dst_desc(), engine);
    execs.push_back(Exec{dnnl::binary(pd), {{DNNL_ARG_SRC_0, a}, {DNNL_ARG_SRC_1, b}, {DNNL_ARG_DST, dst}}});
    return dst;
  }

  void add_linear(size_t i) {
    const Step& s = program.steps[i];
    const LayerSpec& l = s.layer;
    const memory::desc src_md(dims_of(s.input), type_of(s.input), tag::any);
    const memory::dims wdims{l.cout, l.cin, 1, 1};
    const memory::desc w_any(wdims, int8() ? dt::s8 : dt::f32, tag::any);
    const memory::desc b_md({l.cout}, dt::f32, tag::x);
    const memory::desc dst_md({1, l.cout}, dt::f32, tag::nc);
    dnnl::inner_product_forward::desc desc(prop_kind::forward_inference, src_md, w_any, b_md, dst_md);
    primitive_attr attr;
    std::vector<float> m;
    if (int8()) {
      m = multipliers(scale_of(s.input), quant->steps[i].weight_scale);
      attr.set_output_scales(1 << 1, m);
    }
    dnnl::inner_product_forward::primitive_desc pd(desc, attr, engine);
    record(pd);
    const memory src = input_as(s.input, pd.src_desc());
    const memory weights_mem =
        weight_memory(wdims, tag::oihw, weights.steps[i].weight.data(),
                      int8() ? quant->steps[i].weight.data() : nullptr, pd.weights_desc());
    std::vector<float> bias = weights.steps[i].bias;
    if (int8() && zero_point_of(s.input) != 0) {
      // No padding in a fully connected layer, so the input's zero point folds exactly into the bias:
      // sum_i (x_i - z) w_oi = sum_i x_i w_oi - z sum_i w_oi.
      const auto& codes = quant->steps[i].weight;
      for (int o = 0; o < l.cout; ++o) {
        std::int64_t sum = 0;
        for (int k = 0; k < l.cin; ++k) sum += codes[static_cast<size_t>(o) * l.cin + k];
        bias[o] -= m[o] * static_cast<float>(zero_point_of(s.input)) * static_cast<float>(sum);
      }
    }
    const memory bias_mem = bias_memory(bias, m);
    memory dst(pd.dst_desc(), engine);
    execs.push_back(Exec{dnnl::inner_product_forward(pd),
                         {{DNNL_ARG_SRC, src},
                          {DNNL_ARG_WEIGHTS, weights_mem},
                          {DNNL_ARG_BIAS, bias_mem},
                          {DNNL_ARG_DST, dst}}});
    tensors[s.output] = dst;
  }

  size_t building = 0;  // the step being built, for the error message

  void build() {
    tensors.resize(program.tensors.size());
    for (size_t i = 0; i < program.steps.size(); ++i) {
      building = i;
      switch (program.steps[i].layer.op) {
        case OpKind::kConv:
        case OpKind::kDepthwiseConv:
          add_conv(i);
          break;
        case OpKind::kSqueezeExcite:
          add_squeeze_excite(i);
          break;
        case OpKind::kGlobalAvgPool:
          add_global_pool(i);
          break;
        case OpKind::kLinear:
          add_linear(i);
          break;
      }
    }
  }

  void execute(bool include_input_conversion = true) {
    const ScopedOmpThreads scoped(threads);
    for (size_t i = include_input_conversion ? 0 : 1; i < execs.size(); ++i) {
      execs[i].primitive.execute(stream, execs[i].args);
    }
    stream.wait();
  }
};

OnednnPlan::OnednnPlan(const Program& program, const Weights& weights, Precision precision, int threads,
                       const QuantParams* quant) {
  apply_isa_policy();
  if (threads < 1) fail("thread count must be at least 1, got {}", threads);
  if (precision == Precision::kInt8 && !quant)
    fail("an INT8 plan needs quantisation parameters (calibrate first)");
  if (weights.steps.size() != program.steps.size()) fail("weights do not belong to this program");
  const ScopedOmpThreads scoped(threads);
  impl_ = std::make_unique<Impl>(program, weights, quant, precision, threads);
  try {
    impl_->build();
  } catch (const dnnl::error& e) {
    const auto& step = program.steps[impl_->building];
    fail(
        "oneDNN cannot build a {} plan for this network: step {} (op {}, {}->{} channels, kernel {}, {}x{}): "
        "{} "
        "(status {})",
        to_string(precision), impl_->building, static_cast<int>(step.layer.op), step.layer.cin,
        step.layer.cout, step.layer.kernel, step.layer.in_hw, step.layer.in_hw, e.what(),
        static_cast<int>(e.status));
  }
}

OnednnPlan::~OnednnPlan() = default;

std::vector<float> OnednnPlan::run(const std::vector<float>& image) {
  // The output reorder below runs on the pool too: at the process's count it left a second thread spinning
  // after every latency-LUT block timed with one thread (a third of the CPU of `latency-lut build --threads
  // 1`).
  const ScopedOmpThreads scoped(impl_->threads);
  const memory::desc& in = impl_->user_input.get_desc();
  if (image.size() * sizeof(float) != in.get_size()) {
    fail("input has {} values but the plan takes {}", image.size(), in.get_size() / sizeof(float));
  }
  std::memcpy(impl_->user_input.get_data_handle(), image.data(), in.get_size());
  impl_->execute();
  // Convert the output to plain real floats.
  const int out = impl_->program.output;
  memory& result = impl_->tensors[out];
  memory::dims dims = impl_->dims_of(out);
  const memory::desc plain(dims, dt::f32, dims.size() == 2 ? tag::nc : tag::nchw);
  memory converted(plain, impl_->engine);
  dnnl::reorder(result, converted).execute(impl_->stream, result, converted);
  impl_->stream.wait();
  const float* p = static_cast<const float*>(converted.get_data_handle());
  std::vector<float> values(p, p + plain.get_size() / sizeof(float));
  // Codes are dequantised here rather than by the reorder: oneDNN 2.6's reorder dropped a source zero point
  // for some layouts, and this runs once per call on the output alone.
  if (impl_->int8() && !impl_->program.tensors[out].is_logits) {
    const TensorQuant& q = impl_->quant->tensors[out];
    for (auto& v : values) v = q.dequantize(v);
  }
  return values;
}

void OnednnPlan::execute(bool include_input_conversion) {
  impl_->execute(include_input_conversion);
}
Precision OnednnPlan::precision() const {
  return impl_->precision;
}
int OnednnPlan::threads() const {
  return impl_->threads;
}
int OnednnPlan::reorder_count() const {
  return impl_->reorders;
}
std::map<std::string, int> OnednnPlan::implementations() const {
  return impl_->implementations;
}

std::string onednn_isa() {
  apply_isa_policy();
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41:
      return "sse41";
    case dnnl::cpu_isa::avx:
      return "avx";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    default:
      return "other";
  }
}

std::string onednn_version() {
  const dnnl_version_t* v = dnnl_version();
  return fmt::format("oneDNN {}.{}.{}", v->major, v->minor, v->patch);
}

bool has_vnni() {
  // The CPU does not change while we run; probe once.
  static const bool vnni = [] {
    apply_isa_policy();
    // Ask for a small INT8 conv and look at the kernel oneDNN picks.
    dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    const memory::desc src({1, 32, 8, 8}, dt::u8, tag::any), wei({32, 32, 1, 1}, dt::s8, tag::any),
        dst({1, 32, 8, 8}, dt::u8, tag::any);
    dnnl::convolution_forward::desc desc(prop_kind::forward_inference, algorithm::convolution_direct, src,
                                         wei, dst, {1, 1}, {0, 0}, {0, 0});
    dnnl::convolution_forward::primitive_desc pd(desc, engine);
    return std::string(pd.impl_info_str()).find("vnni") != std::string::npos;
  }();
  return vnni;
}

}  // namespace qnas::runtime

namespace qnas::runtime {

std::function<void()> standalone_activation(Activation activation, int channels, int hw, Precision precision,
                                            int threads) {
  apply_isa_policy();
  const ScopedOmpThreads scoped(threads);
  auto engine = std::make_shared<dnnl::engine>(dnnl::engine::kind::cpu, 0);
  auto stream = std::make_shared<dnnl::stream>(*engine);
  const bool int8 = precision == Precision::kInt8;
  const memory::desc md({1, channels, hw, hw}, int8 ? dt::s8 : dt::f32, int8 ? tag::nhwc : tag::nChw16c);
  algorithm alg = algorithm::eltwise_relu;
  float alpha = 0.0f;
  switch (activation) {
    case Activation::kHswish:
      alg = algorithm::eltwise_hardswish;
      break;
    case Activation::kSwish:
      alg = algorithm::eltwise_swish;
      alpha = 1.0f;
      break;
    case Activation::kSigmoid:
      alg = algorithm::eltwise_logistic;
      break;
    case Activation::kRelu:
      break;
    default:
      fail("no standalone benchmark for activation {}", space::to_string(activation));
  }
  const memory::desc f32_md({1, channels, hw, hw}, dt::f32, int8 ? tag::nhwc : tag::nChw16c);
  dnnl::eltwise_forward::desc desc(prop_kind::forward_inference, alg, f32_md, alpha, 0.0f);
  auto eltwise =
      std::make_shared<dnnl::eltwise_forward>(dnnl::eltwise_forward::primitive_desc(desc, *engine));
  auto a = std::make_shared<memory>(f32_md, *engine);
  auto b = std::make_shared<memory>(f32_md, *engine);
  std::memset(a->get_data_handle(), 0, f32_md.get_size());
  if (!int8) {
    return [=] {
      const ScopedOmpThreads scoped(threads);
      eltwise->execute(*stream, {{DNNL_ARG_SRC, *a}, {DNNL_ARG_DST, *b}});
      stream->wait();
    };
  }
  // oneDNN has no s8 hardswish/swish kernel, so an unfused INT8 activation is what ONNX Runtime does for it:
  // dequantize to f32, apply, quantize back.
  auto codes_in = std::make_shared<memory>(md, *engine);
  auto codes_out = std::make_shared<memory>(md, *engine);
  std::memset(codes_in->get_data_handle(), 0, md.get_size());
  primitive_attr dequant_attr, quant_attr;
  dequant_attr.set_output_scales(0, {0.05f});
  quant_attr.set_output_scales(0, {20.0f});
  auto dequant = std::make_shared<dnnl::reorder>(
      dnnl::reorder::primitive_desc(*engine, md, *engine, f32_md, dequant_attr));
  auto quant = std::make_shared<dnnl::reorder>(
      dnnl::reorder::primitive_desc(*engine, f32_md, *engine, md, quant_attr));
  return [=] {
    const ScopedOmpThreads scoped(threads);
    dequant->execute(*stream, *codes_in, *a);
    eltwise->execute(*stream, {{DNNL_ARG_SRC, *a}, {DNNL_ARG_DST, *b}});
    quant->execute(*stream, *b, *codes_out);
    stream->wait();
  };
}

}  // namespace qnas::runtime
