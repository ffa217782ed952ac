// The fake-quant ops, fused against reference, forward and forward + backward, on an activation-sized tensor
// (LSQ+ per tensor) and a weight (LSQ per channel). Counter "GB/s": tensor bytes read per second.
//   OMP_NUM_THREADS=2 build/bench/bench_quant
#include <benchmark/benchmark.h>

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

}  // namespace

BENCHMARK_MAIN();
