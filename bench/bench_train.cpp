// Training throughput of the supernet: one SGD step per iteration on a random Fashion-MNIST-shaped batch,
// reported as images/s (counter "img/s"). "Max" is the max subnet alone (the number the training report
// quotes); "Sandwich" is a full sandwich-rule step (max + min + k random with distillation).
//   build/bench/bench_train --benchmark_filter=Max --benchmark_min_time=5
//   QNAS_BENCH_DEVICE=cuda build/bench/bench_train      (with a CUDA LibTorch)
//   QNAS_BENCH_SPACE=fmnistw-000000-000000 build/bench/bench_train
#include <benchmark/benchmark.h>

#include <fmt/format.h>

#include <cstdlib>

#include "core/memory.h"
#include "core/rng.h"
#include "nn/supernet.h"
#include "quant/quantizers.h"
#include "train/losses.h"

using namespace qnas;

namespace {

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

torch::Device bench_device() {
  return env_or("QNAS_BENCH_DEVICE", "cpu") == "cuda" ? torch::kCUDA : torch::kCPU;
}

void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize();
}

// state.range(0): batch size; range(1): 32 (fp32) or 8 (LSQ+ fake-quant int8); range(2): random subnets
// per step (-1 = max subnet only).
void TrainStep(benchmark::State& state) {
  const torch::Device device = bench_device();
  torch::manual_seed(0);
  nn::Supernet net(space::SearchSpace::parse(env_or("QNAS_BENCH_SPACE", "fmnistw-151122-000000")));
  net->to(device);
  quant::set_bits(*net, static_cast<int>(state.range(1)));
  net->train();
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9).nesterov(true));
  const int64_t batch = state.range(0);
  const torch::Tensor images = torch::randn({batch, 1, 28, 28}).to(device);
  const torch::Tensor labels = torch::randint(0, 10, {batch}).to(torch::kLong).to(device);
  const int random = static_cast<int>(state.range(2));
  Rng rng(1);
  for (auto _ : state) {
    sgd.zero_grad();
    net->set_active(net->sample_max());
    const torch::Tensor logits = net->forward(images);
    train::label_smoothing_cross_entropy(logits, labels, 0.1).backward();
    if (random >= 0) {
      std::vector<space::Subnet> others = {net->sample_min()};
      for (int i = 0; i < random; ++i) others.push_back(net->sample_random(rng));
      for (const auto& s : others) {
        net->set_active(s);
        train::kl_distillation(net->forward(images), logits.detach()).backward();
      }
    }
    sgd.step();
    sync(device);
  }
  state.counters["img/s"] =
      benchmark::Counter(static_cast<double>(batch * state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(fmt::format("{} {}", net->space().encode(), device.str()));
}

BENCHMARK(TrainStep)
    ->Name("Max")
    ->Args({128, 32, -1})
    ->Args({128, 8, -1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(TrainStep)->Name("Sandwich")->Args({128, 32, 2})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  qnas::keep_freed_memory_for_reuse();  // as qnas itself does: the step times users see
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
