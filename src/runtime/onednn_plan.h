#pragma once
// A Program compiled into a oneDNN execution plan, FP32 or INT8. Follows the create -> setup -> run
// lifecycle: the constructor creates every primitive once (layouts chosen by oneDNN via format `any`,
// weights reordered once, activations and residual adds fused as post-ops); run() only executes.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/program.h"
#include "runtime/quant.h"

namespace qnas::runtime {

enum class Precision { kFp32, kInt8 };
const char* to_string(Precision precision);
Precision parse_precision(const std::string& text);

class OnednnPlan {
 public:
  // INT8 needs `quant` (from calibrate); FP32 ignores it. `threads` fixes the OpenMP thread count used by
  // both creation and execution.
  OnednnPlan(const Program& program, const Weights& weights, Precision precision, int threads,
             const QuantParams* quant = nullptr);
  ~OnednnPlan();
  OnednnPlan(const OnednnPlan&) = delete;
  OnednnPlan& operator=(const OnednnPlan&) = delete;

  // image: C x H x W floats (NCHW). Returns the output tensor as floats (logits, or a block's output).
  std::vector<float> run(const std::vector<float>& image);
  // Executes once on whatever input is loaded (what the latency protocol times). Without the input
  // conversion it times a block as it runs inside a network, reading a tensor already in engine layout.
  void execute(bool include_input_conversion = true);

  Precision precision() const;
  int threads() const;
  // Layout conversions inserted between primitives (the input conversion not counted).
  int reorder_count() const;
  // Implementation name -> how many primitives use it, e.g. "jit_int8:avx512_core_vnni" -> 31.
  std::map<std::string, int> implementations() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The CPU ISA oneDNN dispatches on this machine, e.g. "avx512_core_vnni".
// Caps oneDNN at avx512_core_vnni once per process, before any kernel is generated, unless
// ONEDNN_MAX_CPU_ISA is set (see the .cpp for the measured reason). Every entry point here calls it.
void apply_isa_policy();

std::string onednn_isa();
// "oneDNN 2.6.3".
std::string onednn_version();
// Whether INT8 convolutions run on VNNI instructions here (false = the slower pre-VNNI int8 path).
bool has_vnni();

}  // namespace qnas::runtime

namespace qnas::runtime {
// A standalone activation over a channels x hw x hw tensor (what an engine runs when it cannot fuse the
// activation into the preceding conv); INT8 runs it on s8 codes in and out. Returns the run-once function
// and keeps its primitive alive inside the closure.
std::function<void()> standalone_activation(Activation activation, int channels, int hw, Precision precision,
                                            int threads);
}  // namespace qnas::runtime
