#include "train/limit_eval.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "core/rng.h"
#include "data/transform.h"
#include "space/sampling.h"

namespace qnas::train {

namespace {
constexpr std::uint64_t kLimitStream = 51;
}

nlohmann::json to_json(const LimitResult& r) {
  return {{"limit_ms", r.limit_ms},     {"within", r.within}, {"subnet", r.subnet},
          {"latency_ms", r.latency_ms}, {"mflops", r.mflops}, {"accuracy", r.accuracy}};
}

std::vector<LimitResult> best_under_limits(Trainer& trainer, nn::SupernetImpl& supernet,
                                           latency::LatencyLut& lut, const std::filesystem::path& lut_path,
                                           const LimitEvalOptions& options) {
  if (options.draws < 1 || options.evaluate < 1)
    fail("limit evaluation needs at least one draw and one evaluation");
  // One set of draws serves every limit.
  Rng rng(data::derive_seed(options.seed, kLimitStream, 0));
  std::vector<space::ArchSpec> specs;
  for (int i = 0; i < options.draws; ++i)
    specs.push_back(space::build_arch_spec(supernet.space(), space::sample_random(supernet.space(), rng)));
  if (lut.fill(latency::distinct_blocks(specs), options.measure) > 0) lut.save(lut_path.string());
  std::vector<double> latency;
  for (const auto& s : specs) latency.push_back(lut.predict(s));

  std::vector<LimitResult> results;
  for (const double limit : options.limits_ms) {
    LimitResult r;
    r.limit_ms = limit;
    r.accuracy = -1;
    std::vector<size_t> fits;
    for (size_t i = 0; i < specs.size(); ++i)
      if (latency[i] <= limit) fits.push_back(i);
    r.within = static_cast<int>(fits.size());
    std::sort(fits.begin(), fits.end(),
              [&](size_t a, size_t b) { return specs[a].macs() > specs[b].macs(); });
    fits.resize(std::min(fits.size(), static_cast<size_t>(options.evaluate)));
    std::vector<std::pair<std::string, space::Subnet>> named;
    for (size_t i : fits) named.emplace_back(fmt::format("draw{}", i), space::Subnet::parse(specs[i].subnet));
    const auto accuracies = named.empty() ? std::vector<SubnetAccuracy>{} : trainer.evaluate(named);
    for (size_t k = 0; k < accuracies.size(); ++k) {
      if (accuracies[k].accuracy > r.accuracy) {
        r.accuracy = accuracies[k].accuracy;
        r.subnet = specs[fits[k]].subnet;
        r.latency_ms = latency[fits[k]];
        r.mflops = static_cast<double>(specs[fits[k]].macs()) / 1e6;
      }
    }
    results.push_back(r);
  }
  return results;
}

}  // namespace qnas::train
