// Micro-benchmarks of the search-space model and the Q-T score.
//   build/bench/bench_search --benchmark_min_time=1
#include <filesystem>

#include <benchmark/benchmark.h>

#include "search/qt_score.h"
#include "space/arch_spec.h"
#include "space/sampling.h"

using namespace qnas;

static void BM_BuildArchSpecRandomSubnet(benchmark::State& state) {
  const auto space = space::SearchSpace::parse("onnxw-151122-023231");
  Rng rng(0);
  for (auto _ : state) {
    const auto spec = space::build_arch_spec(space, space::sample_random(space, rng));
    benchmark::DoNotOptimize(spec.macs());
  }
}
BENCHMARK(BM_BuildArchSpecRandomSubnet);

// One Q-T score of the published spaceevo@vnni space on the official onnxw LUTs (100k samples, 5 limits).
static void BM_QtScoreOfficialOnnxw(benchmark::State& state) {
  const std::filesystem::path dir = std::filesystem::path(QNAS_SHARED_DATA_DIR) / "spaceevo-lut" / "onnxw";
  if (!std::filesystem::exists(dir)) {
    state.SkipWithError("shared data absent: the official onnxw LUTs are needed");
    return;
  }
  const auto luts = search::BlockLutSet::load(dir, space::find_hyperspace("onnxw"));
  search::QtOptions options;
  options.latency_limits_ms = {8, 10, 15, 20, 25};
  options.threads = static_cast<int>(state.range(0));
  const auto space = space::SearchSpace::parse("onnxw-151122-023231");
  for (auto _ : state) benchmark::DoNotOptimize(search::qt_score(luts, space, options).score);
  state.SetItemsProcessed(state.iterations() * options.samples);
}
BENCHMARK(BM_QtScoreOfficialOnnxw)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
