#include "latency/profiling.h"

#include <memory>

#include "core/error.h"
#include "runtime/quant.h"
#include "space/baselines.h"

namespace qnas::latency {

using runtime::OpKind;
using runtime::Program;

runtime::QuantParams timing_quant(const Program& program, const runtime::Weights& weights, bool asymmetric) {
  runtime::QuantParams q =
      runtime::make_quant_params(program, weights, std::vector<float>(program.tensors.size(), 4.0f));
  for (auto& s : q.steps) s.mid = runtime::TensorQuant{4.0f / 255.0f, 0, true};
  if (asymmetric) {
    for (size_t i = 0; i < q.tensors.size(); ++i) {
      const auto& t = program.tensors[i];
      if (!t.non_negative && !t.is_logits) q.tensors[i] = runtime::TensorQuant{8.0f / 255.0f, 128, true};
    }
  }
  return q;
}

PlanTiming time_program(const Program& program, Precision precision, int threads,
                        const MeasureOptions& options, bool include_input_conversion, std::uint64_t seed,
                        bool asymmetric) {
  const runtime::Weights weights = runtime::timing_weights(program, seed);
  const runtime::QuantParams quant = timing_quant(program, weights, asymmetric);
  runtime::OnednnPlan plan(program, weights, precision, threads, &quant);
  std::vector<float> input(static_cast<size_t>(program.in_channels) * program.resolution * program.resolution,
                           0.5f);
  plan.run(input);
  PlanTiming t;
  t.timing = runtime::measure([&] { plan.execute(include_input_conversion); }, options);
  t.reorders = plan.reorder_count();
  t.implementations = plan.implementations();
  return t;
}

PlanTiming time_arch(const space::ArchSpec& spec, Precision precision, int threads,
                     const MeasureOptions& options, bool asymmetric) {
  return time_program(runtime::lower(spec), precision, threads, options, true, 1, asymmetric);
}

PlanTiming time_mixed(const space::ArchSpec& spec, const std::vector<Precision>& block_precision, int threads,
                      const MeasureOptions& options, bool asymmetric) {
  if (block_precision.size() != spec.blocks.size())
    fail("mixed precision timing: {} precisions for {} blocks of {}", block_precision.size(),
         spec.blocks.size(), spec.subnet);
  struct Segment {
    runtime::Program program;
    runtime::Weights weights;
    runtime::QuantParams quant;
    std::unique_ptr<runtime::OnednnPlan> plan;
  };
  std::vector<std::unique_ptr<Segment>> segments;
  for (size_t first = 0; first < spec.blocks.size();) {
    size_t last = first;
    while (last + 1 < spec.blocks.size() && block_precision[last + 1] == block_precision[first]) ++last;
    space::ArchSpec part = spec;
    part.blocks.assign(spec.blocks.begin() + static_cast<std::ptrdiff_t>(first),
                       spec.blocks.begin() + static_cast<std::ptrdiff_t>(last) + 1);
    part.in_channels = part.blocks.front().cin;
    part.resolution = part.blocks.front().in_hw;
    auto seg = std::make_unique<Segment>();
    seg->program = runtime::lower(part);
    seg->weights = runtime::timing_weights(seg->program, 1 + first);
    seg->quant = timing_quant(seg->program, seg->weights, asymmetric);
    seg->plan = std::make_unique<runtime::OnednnPlan>(seg->program, seg->weights, block_precision[first],
                                                      threads, &seg->quant);
    seg->plan->run(
        std::vector<float>(static_cast<size_t>(part.in_channels) * part.resolution * part.resolution, 0.5f));
    segments.push_back(std::move(seg));
    first = last + 1;
  }
  PlanTiming t;
  t.timing = runtime::measure(
      [&] {
        for (auto& seg : segments) seg->plan->execute(true);
      },
      options);
  for (const auto& seg : segments) {
    t.reorders += seg->plan->reorder_count();
    for (const auto& [name, count] : seg->plan->implementations()) t.implementations[name] += count;
  }
  return t;
}

namespace {

// A program holding one layer of a network (its input shaped as in the network).
Program single_layer(const space::LayerSpec& layer, bool input_non_negative) {
  Program p;
  p.in_channels = layer.cin;
  p.resolution = layer.in_hw;
  p.tensors.push_back({layer.cin, layer.in_hw, input_non_negative, false});
  runtime::Step step;
  step.layer = layer;
  step.input = 0;
  step.output = 1;
  p.tensors.push_back({layer.cout, layer.out_hw, runtime::is_non_negative(layer.activation), false});
  p.steps.push_back(step);
  p.output = 1;
  return p;
}

}  // namespace

std::vector<OpRow> profile_ops(int threads, const MeasureOptions& options, int resolution) {
  const space::ArchSpec net = space::mobilenet_v3_large(resolution);
  OpRow conv{"Conv", 0, 0, 0, 2.6, 2.5, "dense convs incl. 1x1, BN folded, activation not included"};
  OpRow dw{"DWConv", 0, 0, 0, 1.2, 2.0, "depthwise convs, BN folded, activation not included"};
  OpRow se{"SE", 0, 0, 0, 0.7, 1.4, "pool + 1x1 relu + 1x1 hsigmoid + multiply"};
  OpRow hswish{
      "Hardswish", 0, 0, 0, 0.7, 0.5, "standalone (unfused) on every tensor MobileNetV3 applies it to"};
  OpRow swish{"Swish", 0, 0, 0, 0.8, 2.1, "standalone, on the same tensors as Hardswish"};
  auto add = [&](OpRow& row, const auto& time_one) {
    row.layers++;
    row.fp32_ms += time_one(Precision::kFp32);
    row.int8_ms += time_one(Precision::kInt8);
  };
  for (const auto& block : net.blocks) {
    bool non_negative = true;
    for (const auto& layer : block.layers) {
      auto layer_time = [&](Precision precision) {
        space::LayerSpec bare = layer;
        bare.activation = space::Activation::kNone;
        return time_program(single_layer(bare, non_negative), precision, threads, options, false)
            .timing.median_ms;
      };
      if (layer.op == OpKind::kConv) add(conv, layer_time);
      if (layer.op == OpKind::kDepthwiseConv) add(dw, layer_time);
      if (layer.op == OpKind::kSqueezeExcite) add(se, layer_time);
      if (layer.activation == space::Activation::kHswish) {
        for (auto* row : {&hswish, &swish}) {
          const auto act = row == &hswish ? space::Activation::kHswish : space::Activation::kSwish;
          add(*row, [&](Precision precision) {
            return runtime::measure(
                       runtime::standalone_activation(act, layer.cout, layer.out_hw, precision, threads),
                       options)
                .median_ms;
          });
        }
      }
      non_negative = runtime::is_non_negative(layer.activation);
    }
  }
  return {conv, dw, se, hswish, swish};
}

PaperLatency paper_latency(const std::string& model) {
  // SpaceEvo Table 1: (a) Intel VNNI CPU with ONNX Runtime, (b) Pixel 4 with TFLite.
  static const std::map<std::string, PaperLatency> table = {
      {"SEQnet@vnni-A0", {4.4, 2.0, "vnni"}},      {"SEQnet@vnni-A1", {8.8, 2.4, "vnni"}},
      {"SEQnet@vnni-A2", {14.1, 2.4, "vnni"}},     {"SEQnet@vnni-A3", {18.9, 2.6, "vnni"}},
      {"SEQnet@vnni-A4", {24.4, 2.4, "vnni"}},     {"SEQnet@pixel4-A0", {5.9, 2.1, "pixel4"}},
      {"SEQnet@pixel4-A1", {14.7, 2.2, "pixel4"}}, {"SEQnet@pixel4-A2", {19.4, 2.3, "pixel4"}},
      {"SEQnet@pixel4-A3", {30.8, 2.1, "pixel4"}}, {"SEQnet@pixel4-A4", {35.5, 2.2, "pixel4"}},
      {"mobilenet_v3_small", {4.4, 1.1, "vnni"}},  {"mobilenet_v2", {7.3, 2.2, "vnni"}},
      {"mobilenet_v3_large", {10.3, 1.5, "vnni"}},
  };
  const auto it = table.find(model);
  return it == table.end() ? PaperLatency{} : it->second;
}

}  // namespace qnas::latency
