#pragma once
// Timing whole networks and single ops on this machine with the oneDNN engine and the measurement protocol.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/measure.h"
#include "runtime/onednn_plan.h"
#include "runtime/program.h"
#include "space/arch_spec.h"

namespace qnas::latency {

using runtime::MeasureOptions;
using runtime::Precision;
using runtime::Timing;

struct PlanTiming {
  Timing timing;
  int reorders = 0;
  std::map<std::string, int> implementations;
};

// Random weights, fixed quantisation scales (timing does not depend on the values), one plan, the protocol.
// `include_input_conversion` false times what the program costs inside a network (a block reading an
// engine-layout tensor), true what a deployment pays from a float image.
// `asymmetric` times the kernels a LSQ+-trained network deploys with: its signed tensors u8 with a zero
// point.
PlanTiming time_program(const runtime::Program& program, Precision precision, int threads,
                        const MeasureOptions& options, bool include_input_conversion = true,
                        std::uint64_t seed = 1, bool asymmetric = false);
PlanTiming time_arch(const space::ArchSpec& spec, Precision precision, int threads,
                     const MeasureOptions& options, bool asymmetric = false);

// A network with one precision per block, run as it would be deployed on this engine: consecutive blocks of
// one precision form a segment compiled into one plan, and each segment reads its input as floats, so a
// precision boundary pays a real conversion (the segment's input reorder and quantisation; the previous
// segment's output stays in its engine layout, so one conversion per boundary is timed, not two). With every
// block in one precision this is time_arch.
PlanTiming time_mixed(const space::ArchSpec& spec, const std::vector<Precision>& block_precision, int threads,
                      const MeasureOptions& options, bool asymmetric = false);

// Quantisation parameters good enough to time a plan with: every tensor at one scale, weights per channel;
// with `asymmetric`, the tensors that can be negative are u8 with zero point 128 (LSQ+'s deployment: its
// learned offset gives exactly those tensors a zero point, the non-negative ones keep 0).
runtime::QuantParams timing_quant(const runtime::Program& program, const runtime::Weights& weights,
                                  bool asymmetric = false);

// The paper's operator table (SpaceEvo Observation 2): INT8 speedup over FP32 of each operator type, summed
// over the layers of MobileNetV3-Large at 224 where that operator occurs.
struct OpRow {
  std::string op;
  int layers = 0;
  double fp32_ms = 0, int8_ms = 0;
  double paper_intel = 0, paper_pixel4 = 0;  // the paper's speedups (ONNX Runtime on VNNI, TFLite on Pixel 4)
  std::string note;
  double speedup() const { return int8_ms > 0 ? fp32_ms / int8_ms : 0; }
};
std::vector<OpRow> profile_ops(int threads, const MeasureOptions& options, int resolution = 224);

// The paper's Table 1 INT8 latency and speedup for the models it reports (0 when it has none).
struct PaperLatency {
  double int8_ms = 0;
  double speedup = 0;
  std::string device;
};
PaperLatency paper_latency(const std::string& model);

}  // namespace qnas::latency
