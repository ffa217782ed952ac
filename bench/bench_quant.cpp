// The fake-quant ops, fused against reference, forward and forward + backward, on an activation-sized tensor
// (LSQ+ per tensor) and a weight (LSQ per channel); then a ReLU6 before the activation quantizer, as
// hardtanh and the fused op or fused into it. Counter "GB/s": tensor bytes read per second.
//   OMP_NUM_THREADS=2 build/bench/bench_quant
#include <benchmark/benchmark.h>

#include "core/memory.h"
#include "quant/fake_quant_ops.h"

using namespace qnas::quant;

namespace {

// range(0): 0 = reference, 1 = fused; range(1): 0 = forward only, 1 = forward + backward;
// range(2): 0 = activation [128, 96, 28, 28] (zero point), 1 = weight [512, 128, 3, 3] per channel (affine).
void FakeQuant(benchmark::State& state) {
  set_kernel(state.range(0) ? Kernel::kFused : Kernel::kReference);
  const bool backward = state.range(1) != 0, weight = state.range(2) != 0;
  torch::manual_seed(0);
  // Activations arrive channels-last, as the supernet's convolutions produce them.
  const torch::Tensor x0 = weight
                               ? torch::randn({512, 128, 3, 3})
                               : torch::randn({128, 96, 28, 28}).contiguous(at::MemoryFormat::ChannelsLast);
  const torch::Tensor x = x0.clone(at::MemoryFormat::Preserve).requires_grad_(backward);
  const torch::Tensor s = torch::full({weight ? 512 : 1}, 0.02f).requires_grad_(backward);
  const torch::Tensor b = torch::full({1}, weight ? 0.0f : 100.0f).requires_grad_(backward);
  const torch::Tensor g = torch::ones_like(x0);
  for (auto _ : state) {
    const torch::Tensor y =
        weight ? fake_quant_affine(x, s, b, -127, 127) : fake_quant_zero_point(x, s, b, 255);
    if (backward) y.backward(g);
    benchmark::DoNotOptimize(y.data_ptr<float>());
  }
  set_kernel(Kernel::kFused);
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(x0.numel() * 4 * state.iterations()) / 1e9,
                                              benchmark::Counter::kIsRate);
}

BENCHMARK(FakeQuant)
    ->ArgNames({"fused", "backward", "weight"})
    ->ArgsProduct({{0, 1}, {0, 1}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// range(0): 0 = hardtanh(0, 6) then the fused op, 1 = fake_quant_zero_point_clamped; range(1) as above.
void ReluSixThenFakeQuant(benchmark::State& state) {
  const bool in_one_pass = state.range(0) != 0, backward = state.range(1) != 0;
  torch::manual_seed(0);
  const torch::Tensor x0 = (torch::randn({128, 96, 28, 28}) * 3).contiguous(at::MemoryFormat::ChannelsLast);
  const torch::Tensor x = x0.clone(at::MemoryFormat::Preserve).requires_grad_(backward);
  const torch::Tensor s = torch::full({1}, 0.02f).requires_grad_(backward);
  const torch::Tensor z = torch::full({1}, 0.0f).requires_grad_(backward);
  const torch::Tensor g = torch::ones_like(x0);
  for (auto _ : state) {
    const torch::Tensor y = in_one_pass ? fake_quant_zero_point_clamped(x, s, z, 255, 0.0, 6.0)
                                        : fake_quant_zero_point(torch::hardtanh(x, 0.0, 6.0), s, z, 255);
    if (backward) y.backward(g);
    benchmark::DoNotOptimize(y.data_ptr<float>());
  }
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(x0.numel() * 4 * state.iterations()) / 1e9,
                                              benchmark::Counter::kIsRate);
}

BENCHMARK(ReluSixThenFakeQuant)
    ->ArgNames({"one_pass", "backward"})
    ->ArgsProduct({{0, 1}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  qnas::keep_freed_memory_for_reuse();  // as qnas itself does: no page faults on every fresh output
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
