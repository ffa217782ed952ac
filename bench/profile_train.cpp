// Where a training step's time goes: runs a few supernet training steps under LibTorch's profiler and prints
// the operators by self time (time not spent in a nested operator), with call counts and their share.
//   build/bench/profile_train [max|int8|sandwich] [space] [steps]
//   e.g. OMP_NUM_THREADS=2 build/bench/profile_train sandwich fmnistw-151122-000000 3
//   QNAS_PROFILE_SHAPES=1 ...   one row per convolution shape
// The first step is a warm-up and is not profiled.
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "core/memory.h"
#include "core/rng.h"
#include "nn/supernet.h"
#include "quant/quantizers.h"
#include "train/losses.h"

using namespace qnas;
namespace prof = torch::autograd::profiler;

namespace {

struct OpTime {
  double self_us = 0, total_us = 0;
  long calls = 0;
};

// Pairs each thread's push/pop events with a stack; a parent's self time excludes its children's time.
// With `by_shape`, convolutions are keyed by their input and weight shapes too (which conv costs what).
std::string key_of(const prof::LegacyEvent& e, bool by_shape) {
  std::string key = e.name();
  if (!by_shape || key.find("conv") == std::string::npos) return key;
  const auto shapes = e.shapes();
  for (size_t i = 0; i < std::min<size_t>(shapes.size(), 3); ++i) key += fmt::format(" {}", shapes[i]);
  return key;
}

std::map<std::string, OpTime> aggregate(const prof::thread_event_lists& lists, bool by_shape) {
  std::map<std::string, OpTime> ops;
  for (const auto& events : lists) {
    struct Open {
      const prof::LegacyEvent* event;
      double children_us;
    };
    std::vector<Open> stack;
    for (const auto& e : events) {
      if (e.kind() == prof::EventKind::PushRange) {
        stack.push_back({&e, 0.0});
      } else if (e.kind() == prof::EventKind::PopRange && !stack.empty()) {
        const Open open = stack.back();
        stack.pop_back();
        const double total = open.event->cpuElapsedUs(e);
        OpTime& op = ops[key_of(*open.event, by_shape)];
        op.total_us += total;
        op.self_us += total - open.children_us;
        op.calls += 1;
        if (!stack.empty()) stack.back().children_us += total;
      }
    }
  }
  return ops;
}

}  // namespace

int main(int argc, char** argv) {
  qnas::keep_freed_memory_for_reuse();
  const std::string mode = argc > 1 ? argv[1] : "sandwich";
  const std::string space = argc > 2 ? argv[2] : "fmnistw-151122-000000";
  const int steps = argc > 3 ? std::stoi(argv[3]) : 2;
  torch::manual_seed(0);
  nn::Supernet net(space::SearchSpace::parse(space));
  quant::set_bits(*net, mode == "int8" ? 8 : 32);
  net->train();
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9).nesterov(true));
  const torch::Tensor images = torch::randn({128, 1, 28, 28});
  const torch::Tensor labels = torch::randint(0, 10, {128}).to(torch::kLong);
  Rng rng(1);
  auto step = [&] {
    sgd.zero_grad();
    net->set_active(net->sample_max());
    const torch::Tensor logits = net->forward(images);
    train::label_smoothing_cross_entropy(logits, labels, 0.1).backward();
    if (mode == "sandwich") {
      std::vector<space::Subnet> others = {net->sample_min(), net->sample_random(rng),
                                           net->sample_random(rng)};
      for (const auto& s : others) {
        net->set_active(s);
        train::kl_distillation(net->forward(images), logits.detach()).backward();
      }
    }
    sgd.step();
  };
  step();
  const auto start = std::chrono::steady_clock::now();
  const char* shapes_env = std::getenv("QNAS_PROFILE_SHAPES");
  const bool by_shape = shapes_env && std::string(shapes_env) == "1";
  prof::enableProfilerLegacy(
      torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU, by_shape));
  for (int i = 0; i < steps; ++i) step();
  const auto ops = aggregate(prof::disableProfilerLegacy(), by_shape);
  const double wall_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();

  std::vector<std::pair<std::string, OpTime>> sorted(ops.begin(), ops.end());
  std::sort(sorted.begin(), sorted.end(),
            [](auto& a, auto& b) { return a.second.self_us > b.second.self_us; });
  fmt::print("{} step of {}: {:.1f} ms per step (profiled), {} threads\n", mode, space, wall_us / steps / 1e3,
             torch::get_num_threads());
  fmt::print("{:<52} {:>10} {:>7} {:>10} {:>8}\n", "operator", "self ms", "share", "total ms", "calls");
  double self_sum = 0;
  for (const auto& [name, t] : sorted) self_sum += t.self_us;
  for (size_t i = 0; i < std::min<size_t>(sorted.size(), 30); ++i) {
    const auto& [name, t] = sorted[i];
    fmt::print("{:<52} {:>10.2f} {:>6.1f}% {:>10.2f} {:>8}\n", name.substr(0, by_shape ? 90 : 52),
               t.self_us / steps / 1e3, 100.0 * t.self_us / self_sum, t.total_us / steps / 1e3,
               t.calls / steps);
  }
  return 0;
}
