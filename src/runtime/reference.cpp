#include "runtime/reference.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace qnas::runtime {

float apply_activation(space::Activation activation, float x) {
  switch (activation) {
    case Activation::kNone:
      return x;
    case Activation::kRelu:
      return std::max(x, 0.0f);
    case Activation::kRelu6:
      return std::min(std::max(x, 0.0f), 6.0f);
    case Activation::kHswish:
      return x * std::min(std::max(x + 3.0f, 0.0f), 6.0f) / 6.0f;
    case Activation::kSwish:
      return x / (1.0f + std::exp(-x));
    case Activation::kHsigmoid:
      return std::min(std::max(x / 6.0f + 0.5f, 0.0f), 1.0f);
    case Activation::kSigmoid:
      return 1.0f / (1.0f + std::exp(-x));
  }
  return x;
}

ReferenceExecutor::ReferenceExecutor(const Program& program, const Weights& weights, const QuantParams* quant)
    : program_(program), weights_(weights), quant_(quant) {
  if (weights.steps.size() != program.steps.size()) {
    fail("weights have {} steps but the program has {}", weights.steps.size(), program.steps.size());
  }
  if (quant &&
      (quant->steps.size() != program.steps.size() || quant->tensors.size() != program.tensors.size())) {
    fail("quantisation parameters do not belong to this program");
  }
}

std::vector<float> ReferenceExecutor::real(const Values& v) const {
  std::vector<float> out(v.data.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = v.real(i);
  return out;
}

ReferenceExecutor::Values ReferenceExecutor::stored(const TensorQuant* quant,
                                                    std::vector<float>& reals) const {
  Values out;
  out.data = std::move(reals);
  if (quant) {
    for (auto& x : out.data) x = static_cast<float>(quant->quantize(x));
    out.quant = *quant;
    out.codes = true;
  }
  return out;
}

// In INT8 mode turns the real values into the tensor's integer codes; logits stay real.
void ReferenceExecutor::store(int tensor, std::vector<float>& values, Values& out) const {
  const bool quantised = quant_ && !program_.tensors[tensor].is_logits;
  out = stored(quantised ? &quant_->tensors[tensor] : nullptr, values);
}

// Sum over codes minus the input's zero point: the integer accumulation of the contract.
static double accumulate_code(const std::vector<float>& x, size_t i, int zero_point) {
  return static_cast<double>(x[i]) - zero_point;
}

ReferenceExecutor::Values ReferenceExecutor::conv(const Step& step, const StepWeights& w, const StepQuant* q,
                                                  const Values& x, const Values* residual) const {
  const LayerSpec& l = step.layer;
  const int groups = l.groups();
  const int cin_per_group = l.cin / groups, cout_per_group = l.cout / groups;
  const int k = l.kernel, pad = l.padding(), in = l.in_hw, out = l.out_hw;
  const int zx = q ? x.quant.zero_point : 0;
  std::vector<float> result(static_cast<size_t>(l.cout) * out * out);
  for (int oc = 0; oc < l.cout; ++oc) {
    const int g = oc / cout_per_group;
    const float multiplier = q ? x.quant.scale * q->weight_scale[oc] : 1.0f;
    const float bias = q ? w.bias[oc] / multiplier : w.bias[oc];
    for (int oy = 0; oy < out; ++oy) {
      for (int ox = 0; ox < out; ++ox) {
        double acc = 0;
        for (int ic = 0; ic < cin_per_group; ++ic) {
          const int channel = g * cin_per_group + ic;
          for (int ky = 0; ky < k; ++ky) {
            const int iy = oy * l.stride - pad + ky;
            if (iy < 0 || iy >= in) continue;  // padding holds real zero: code == zero point
            for (int kx = 0; kx < k; ++kx) {
              const int ix = ox * l.stride - pad + kx;
              if (ix < 0 || ix >= in) continue;
              const size_t wi = ((static_cast<size_t>(oc) * cin_per_group + ic) * k + ky) * k + kx;
              const float wv = q ? static_cast<float>(q->weight[wi]) : w.weight[wi];
              acc += accumulate_code(x.data, (static_cast<size_t>(channel) * in + iy) * in + ix, zx) * wv;
            }
          }
        }
        float v = (static_cast<float>(acc) + bias) * multiplier;
        v = apply_activation(l.activation, v);
        const size_t oi = (static_cast<size_t>(oc) * out + oy) * out + ox;
        if (residual) v += residual->real(oi);
        result[oi] = apply_activation(step.post_add, v);
      }
    }
  }
  Values y;
  store(step.output, result, y);
  return y;
}

ReferenceExecutor::Values ReferenceExecutor::pooled(const Values& x, int channels, int hw,
                                                    const TensorQuant* to) const {
  const size_t plane = static_cast<size_t>(hw) * hw;
  Values y;
  y.data.resize(static_cast<size_t>(channels));
  for (int c = 0; c < channels; ++c) {
    double sum = 0;
    for (size_t i = 0; i < plane; ++i) sum += x.data[c * plane + i];
    const float mean = static_cast<float>(sum / static_cast<double>(plane));
    if (!to) {
      y.data[c] = mean;
      continue;
    }
    // Pooled codes stay on the input's grid when the output shares its parameters; otherwise they are
    // requantised by one multiply-add (the oneDNN plan's linear post-op): alpha * mean + beta.
    const float alpha = x.quant.scale / to->scale;
    const float beta = static_cast<float>(to->zero_point) - static_cast<float>(x.quant.zero_point) * alpha;
    const float code = *to == x.quant ? mean : alpha * mean + beta;
    y.data[c] = static_cast<float>(saturate_round(code, to->qmin(), to->qmax()));
  }
  if (to) {
    y.quant = *to;
    y.codes = true;
  }
  return y;
}

ReferenceExecutor::Values ReferenceExecutor::global_pool(const Step& step, const Values& x) const {
  return pooled(x, step.layer.cin, step.layer.in_hw, quant_ ? &quant_->tensors[step.output] : nullptr);
}

ReferenceExecutor::Values ReferenceExecutor::squeeze_excite(const Step& step, const StepWeights& w,
                                                            const StepQuant* q, const Values& x) const {
  const LayerSpec& l = step.layer;
  const Values p = pooled(x, l.cin, l.in_hw, q ? &q->pool : nullptr);
  // Squeeze: 1x1 conv + relu, requantised to u8 with the SE's own mid parameters.
  std::vector<float> mid(static_cast<size_t>(l.se_mid));
  for (int m = 0; m < l.se_mid; ++m) {
    double acc = 0;
    for (int c = 0; c < l.cin; ++c) {
      const size_t wi = static_cast<size_t>(m) * l.cin + c;
      acc += accumulate_code(p.data, c, q ? p.quant.zero_point : 0) *
             (q ? static_cast<float>(q->weight[wi]) : w.weight[wi]);
    }
    const float multiplier = q ? p.quant.scale * q->weight_scale[m] : 1.0f;
    const float bias = q ? w.bias[m] / multiplier : w.bias[m];
    const float v = std::max((static_cast<float>(acc) + bias) * multiplier, 0.0f);
    mid[m] = q ? static_cast<float>(q->mid.quantize(v)) : v;
  }
  // Excite: 1x1 conv + hsigmoid gives a real gate in [0, 1]. The product is requantised to the output's
  // parameters as the oneDNN plan does it: (codes * r) * gate + (z_out - z_x * r * gate), r = s_x / s_out.
  Values y;
  y.data.resize(x.data.size());
  const size_t plane = static_cast<size_t>(l.in_hw) * l.in_hw;
  const TensorQuant* out_q = quant_ ? &quant_->tensors[step.output] : nullptr;
  for (int c = 0; c < l.cin; ++c) {
    double acc = 0;
    for (int m = 0; m < l.se_mid; ++m) {
      const size_t wi = static_cast<size_t>(c) * l.se_mid + m;
      acc += accumulate_code(mid, static_cast<size_t>(m), q ? q->mid.zero_point : 0) *
             (q ? static_cast<float>(q->weight2[wi]) : w.weight2[wi]);
    }
    const float multiplier = q ? q->mid.scale * q->weight2_scale[c] : 1.0f;
    const float bias = q ? w.bias2[c] / multiplier : w.bias2[c];
    const float gate = apply_activation(Activation::kHsigmoid, (static_cast<float>(acc) + bias) * multiplier);
    if (!out_q) {
      for (size_t i = 0; i < plane; ++i) y.data[c * plane + i] = x.data[c * plane + i] * gate;
      continue;
    }
    // Same float operations in the same order as the plan, so rounding ties break the same way.
    const float r = x.quant.scale / out_q->scale;
    const float shift =
        (-static_cast<float>(x.quant.zero_point) * r) * gate + static_cast<float>(out_q->zero_point);
    for (size_t i = 0; i < plane; ++i) {
      const float product = (x.data[c * plane + i] * r) * gate;
      y.data[c * plane + i] =
          static_cast<float>(saturate_round(product + shift, out_q->qmin(), out_q->qmax()));
    }
  }
  if (out_q) {
    y.quant = *out_q;
    y.codes = true;
  }
  return y;
}

ReferenceExecutor::Values ReferenceExecutor::linear(const Step& step, const StepWeights& w,
                                                    const StepQuant* q, const Values& x) const {
  const LayerSpec& l = step.layer;
  std::vector<float> result(static_cast<size_t>(l.cout));
  for (int o = 0; o < l.cout; ++o) {
    double acc = 0;
    for (int i = 0; i < l.cin; ++i) {
      const size_t wi = static_cast<size_t>(o) * l.cin + i;
      acc += accumulate_code(x.data, static_cast<size_t>(i), q ? x.quant.zero_point : 0) *
             (q ? static_cast<float>(q->weight[wi]) : w.weight[wi]);
    }
    const float multiplier = q ? x.quant.scale * q->weight_scale[o] : 1.0f;
    const float bias = q ? w.bias[o] / multiplier : w.bias[o];
    result[o] = (static_cast<float>(acc) + bias) * multiplier;
  }
  Values y;
  store(step.output, result, y);
  return y;
}

std::vector<float> ReferenceExecutor::run(const std::vector<float>& image) {
  const TensorInfo& in = program_.tensors[program_.input];
  const size_t expected = static_cast<size_t>(in.channels) * in.hw * in.hw;
  if (image.size() != expected) {
    fail("input has {} values but the network takes {}x{}x{} = {}", image.size(), in.channels, in.hw, in.hw,
         expected);
  }
  std::vector<Values> tensors(program_.tensors.size());
  std::vector<float> input = image;
  store(program_.input, input, tensors[program_.input]);
  if (observer_) observer_(program_.input, real(tensors[program_.input]));
  for (size_t i = 0; i < program_.steps.size(); ++i) {
    const Step& step = program_.steps[i];
    const StepWeights& w = weights_.steps[i];
    const StepQuant* q = quant_ ? &quant_->steps[i] : nullptr;
    const Values& x = tensors[step.input];
    switch (step.layer.op) {
      case OpKind::kConv:
      case OpKind::kDepthwiseConv:
        tensors[step.output] = conv(step, w, q, x, step.residual >= 0 ? &tensors[step.residual] : nullptr);
        break;
      case OpKind::kSqueezeExcite:
        tensors[step.output] = squeeze_excite(step, w, q, x);
        break;
      case OpKind::kGlobalAvgPool:
        tensors[step.output] = global_pool(step, x);
        break;
      case OpKind::kLinear:
        tensors[step.output] = linear(step, w, q, x);
        break;
    }
    if (observer_) observer_(step.output, real(tensors[step.output]));
  }
  return real(tensors[program_.output]);
}

}  // namespace qnas::runtime
