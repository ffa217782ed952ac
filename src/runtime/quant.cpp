#include "runtime/quant.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "runtime/reference.h"

namespace qnas::runtime {
namespace {

float abs_max(const std::vector<float>& v) {
  float m = 0;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

TensorQuant tensor_quant(float range, bool is_unsigned) {
  TensorQuant q;
  q.is_unsigned = is_unsigned;
  // An all-zero tensor still needs a positive scale.
  q.scale = std::max(range, 1e-8f) / static_cast<float>(is_unsigned ? 255 : 127);
  return q;
}

}  // namespace

void quantize_per_channel(const std::vector<float>& weight, int out_channels, std::vector<std::int8_t>& q,
                          std::vector<float>& scales) {
  if (out_channels <= 0 || weight.size() % static_cast<size_t>(out_channels) != 0) {
    fail("{} weights cannot be split into {} output channels", weight.size(), out_channels);
  }
  const size_t per = weight.size() / static_cast<size_t>(out_channels);
  q.resize(weight.size());
  scales.resize(static_cast<size_t>(out_channels));
  for (int c = 0; c < out_channels; ++c) {
    float m = 0;
    for (size_t i = 0; i < per; ++i) m = std::max(m, std::fabs(weight[c * per + i]));
    scales[c] = std::max(m, 1e-12f) / 127.0f;
    const float inv = 1.0f / scales[c];
    for (size_t i = 0; i < per; ++i) {
      q[c * per + i] = static_cast<std::int8_t>(saturate_round(weight[c * per + i] * inv, -127, 127));
    }
  }
}

QuantParams make_quant_params(const Program& program, const Weights& weights,
                              const std::vector<float>& tensor_abs_max) {
  if (tensor_abs_max.size() != program.tensors.size()) fail("calibration ranges do not match the program");
  QuantParams qp;
  qp.tensors.resize(program.tensors.size());
  for (size_t t = 0; t < program.tensors.size(); ++t) {
    qp.tensors[t] = tensor_quant(tensor_abs_max[t], program.tensors[t].non_negative);
  }
  qp.steps.resize(program.steps.size());
  for (size_t i = 0; i < program.steps.size(); ++i) {
    const Step& s = program.steps[i];
    const StepWeights& w = weights.steps[i];
    StepQuant& sq = qp.steps[i];
    if (s.layer.op == OpKind::kGlobalAvgPool || s.layer.op == OpKind::kSqueezeExcite) {
      qp.tensors[s.output] = qp.tensors[s.input];
      sq.pool = qp.tensors[s.input];
    }
    if (s.layer.op == OpKind::kGlobalAvgPool) continue;
    if (s.layer.op == OpKind::kSqueezeExcite) {
      quantize_per_channel(w.weight, s.layer.se_mid, sq.weight, sq.weight_scale);
      quantize_per_channel(w.weight2, s.layer.cin, sq.weight2, sq.weight2_scale);
      continue;
    }
    quantize_per_channel(w.weight, s.layer.cout, sq.weight, sq.weight_scale);
  }
  return qp;
}

// The SE's squeezed vector is internal to its step, so its range is computed from the SE's observed input.
static float se_squeeze_range(const Step& s, const StepWeights& w, const std::vector<float>& x) {
  const LayerSpec& l = s.layer;
  const size_t plane = static_cast<size_t>(l.in_hw) * l.in_hw;
  std::vector<double> mean(static_cast<size_t>(l.cin), 0.0);
  for (int c = 0; c < l.cin; ++c) {
    for (size_t p = 0; p < plane; ++p) mean[c] += x[c * plane + p];
    mean[c] /= static_cast<double>(plane);
  }
  float range = 0;
  for (int m = 0; m < l.se_mid; ++m) {
    double acc = w.bias[m];
    for (int c = 0; c < l.cin; ++c) acc += w.weight[static_cast<size_t>(m) * l.cin + c] * mean[c];
    range = std::max(range, static_cast<float>(acc));
  }
  return range;
}

QuantParams calibrate(const Program& program, const Weights& weights,
                      const std::vector<std::vector<float>>& images) {
  if (images.empty()) fail("calibration needs at least one image");
  std::vector<float> ranges(program.tensors.size(), 0.0f);
  std::vector<float> se_ranges(program.steps.size(), 0.0f);
  std::vector<std::vector<int>> se_readers(program.tensors.size());
  for (size_t i = 0; i < program.steps.size(); ++i) {
    if (program.steps[i].layer.op == OpKind::kSqueezeExcite) {
      se_readers[program.steps[i].input].push_back(static_cast<int>(i));
    }
  }
  ReferenceExecutor fp32(program, weights);
  fp32.set_observer([&](int tensor, const std::vector<float>& v) {
    ranges[tensor] = std::max(ranges[tensor], abs_max(v));
    for (int i : se_readers[tensor]) {
      se_ranges[i] = std::max(se_ranges[i], se_squeeze_range(program.steps[i], weights.steps[i], v));
    }
  });
  for (const auto& image : images) fp32.run(image);
  QuantParams qp = make_quant_params(program, weights, ranges);
  for (size_t i = 0; i < program.steps.size(); ++i) {
    if (program.steps[i].layer.op == OpKind::kSqueezeExcite) {
      qp.steps[i].mid = TensorQuant{std::max(se_ranges[i], 1e-8f) / 255.0f, 0, true};
    }
  }
  return qp;
}

namespace {
void check_tensor_quant(const TensorQuant& q, const std::string& what) {
  if (!(q.scale > 0.0f) || !std::isfinite(q.scale))
    fail("{} has scale {}: quantisation scales must be positive and finite", what, q.scale);
  if (q.zero_point < q.qmin() || q.zero_point > q.qmax()) {
    fail("{} has zero point {} outside its {} range [{}, {}]", what, q.zero_point,
         q.is_unsigned ? "u8" : "s8", q.qmin(), q.qmax());
  }
}
}  // namespace

void validate(const QuantParams& quant, const Program& program) {
  if (quant.tensors.size() != program.tensors.size() || quant.steps.size() != program.steps.size())
    fail("quantisation parameters do not belong to this program");
  for (size_t t = 0; t < program.tensors.size(); ++t) {
    if (!program.tensors[t].is_logits) check_tensor_quant(quant.tensors[t], fmt::format("tensor {}", t));
  }
  for (size_t i = 0; i < program.steps.size(); ++i) {
    const StepQuant& q = quant.steps[i];
    if (program.steps[i].layer.op == OpKind::kSqueezeExcite) {
      check_tensor_quant(q.pool, fmt::format("step {} (SE pool)", i));
      check_tensor_quant(q.mid, fmt::format("step {} (SE mid)", i));
    }
    for (const auto* scales : {&q.weight_scale, &q.weight2_scale}) {
      for (float w : *scales) {
        if (!(w > 0.0f) || !std::isfinite(w)) fail("step {} has weight scale {}: it must be positive", i, w);
      }
    }
  }
}

}  // namespace qnas::runtime
