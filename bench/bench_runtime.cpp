// Micro-benchmarks of the inference engine: one MobileNetV3-Large inference per iteration in FP32 and INT8
// (oneDNN plan, batch 1, one thread), plan creation, and the plain reference executor for scale.
//   build/bench/bench_runtime --benchmark_min_time=1
// The measurement protocol with machine identity (median/p90/cv) is `qnas profile models`; these are for
// spotting regressions in the engine itself.
#include <benchmark/benchmark.h>

#include "latency/profiling.h"
#include "runtime/onednn_plan.h"
#include "runtime/reference.h"
#include "space/baselines.h"

using namespace qnas;

namespace {

struct Net {
  runtime::Program program;
  runtime::Weights weights;
  runtime::QuantParams quant;
  explicit Net(int resolution) {
    program = runtime::lower(space::mobilenet_v3_large(resolution));
    weights = runtime::random_weights(program, 1);
    quant = latency::timing_quant(program, weights);
  }
  std::vector<float> image() const {
    return std::vector<float>(static_cast<size_t>(3) * program.resolution * program.resolution, 0.5f);
  }
};

void BM_MobileNetV3LargeInference(benchmark::State& state) {
  const auto precision = state.range(0) ? runtime::Precision::kInt8 : runtime::Precision::kFp32;
  const Net net(224);
  runtime::OnednnPlan plan(net.program, net.weights, precision, 1, &net.quant);
  plan.run(net.image());
  for (auto _ : state) plan.execute();
  state.SetLabel(runtime::to_string(precision));
}
BENCHMARK(BM_MobileNetV3LargeInference)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

void BM_PlanCreation(benchmark::State& state) {
  const Net net(224);
  for (auto _ : state) {
    runtime::OnednnPlan plan(net.program, net.weights, runtime::Precision::kInt8, 1, &net.quant);
    benchmark::DoNotOptimize(plan.reorder_count());
  }
}
BENCHMARK(BM_PlanCreation)->Unit(benchmark::kMillisecond);

void BM_ReferenceExecutorFp32(benchmark::State& state) {
  const Net net(64);
  runtime::ReferenceExecutor reference(net.program, net.weights);
  const auto image = net.image();
  for (auto _ : state) benchmark::DoNotOptimize(reference.run(image));
}
BENCHMARK(BM_ReferenceExecutorFp32)->Unit(benchmark::kMillisecond);

}  // namespace
BENCHMARK_MAIN();
