#pragma once
// The plain reference executor: loops over NCHW floats, one function per op, no tricks. In FP32 mode it is
// the ground truth for the oneDNN FP32 plan; with QuantParams it computes exactly the integer arithmetic the
// INT8 plan is specified to perform (integer accumulation over code minus zero point, float requantisation,
// round-to-nearest-even), as the quantisation contract (core/quant_contract.h) defines it.
#include <functional>
#include <vector>

#include "runtime/program.h"
#include "runtime/quant.h"

namespace qnas::runtime {

class ReferenceExecutor {
 public:
  // `quant` null = FP32. The program, weights and quant must outlive the executor.
  ReferenceExecutor(const Program& program, const Weights& weights, const QuantParams* quant = nullptr);

  // image: in_channels x resolution x resolution, NCHW. Returns the output tensor (logits for a network).
  std::vector<float> run(const std::vector<float>& image);

  // Called with (tensor id, real values) for every tensor produced, input included.
  using Observer = std::function<void(int, const std::vector<float>&)>;
  void set_observer(Observer observer) { observer_ = std::move(observer); }

 private:
  // A tensor's values: real numbers in FP32 mode, integer codes (stored as float) with their scale and zero
  // point in INT8 mode.
  struct Values {
    std::vector<float> data;
    TensorQuant quant;
    bool codes = false;
    float real(size_t i) const { return codes ? quant.dequantize(data[i]) : data[i]; }
  };
  // Mean over H x W per channel of x, stored with `to` (INT8) or as reals (FP32).
  Values pooled(const Values& x, int channels, int hw, const TensorQuant* to) const;
  Values conv(const Step& step, const StepWeights& w, const StepQuant* q, const Values& x,
              const Values* residual) const;
  Values squeeze_excite(const Step& step, const StepWeights& w, const StepQuant* q, const Values& x) const;
  Values global_pool(const Step& step, const Values& x) const;
  Values linear(const Step& step, const StepWeights& w, const StepQuant* q, const Values& x) const;
  void store(int tensor, std::vector<float>& real_or_code, Values& out) const;
  Values stored(const TensorQuant* quant, std::vector<float>& reals) const;
  std::vector<float> real(const Values& v) const;

  const Program& program_;
  const Weights& weights_;
  const QuantParams* quant_;
  Observer observer_;
};

float apply_activation(space::Activation activation, float x);

}  // namespace qnas::runtime
