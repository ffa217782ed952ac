#include "runtime/measure.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>

#include "core/error.h"
#include "runtime/onednn_plan.h"

namespace qnas::runtime {

Timing summarize(std::vector<double> samples) {
  Timing t;
  if (samples.empty()) return t;
  std::sort(samples.begin(), samples.end());
  const size_t n = samples.size();
  t.runs = static_cast<int>(n);
  t.median_ms = n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
  t.min_ms = samples.front();
  t.p10_ms = samples[static_cast<size_t>(0.1 * static_cast<double>(n - 1))];
  t.p90_ms = samples[std::min(n - 1, static_cast<size_t>(std::ceil(0.9 * static_cast<double>(n))) - 1)];
  double sum = 0;
  for (double s : samples) sum += s;
  t.mean_ms = sum / static_cast<double>(n);
  double var = 0;
  for (double s : samples) var += (s - t.mean_ms) * (s - t.mean_ms);
  t.cv = n > 1 && t.mean_ms > 0 ? std::sqrt(var / static_cast<double>(n - 1)) / t.mean_ms : 0.0;
  return t;
}

Timing measure(const std::function<void()>& run_once, const MeasureOptions& options) {
  if (options.runs < 1) fail("a measurement needs at least one timed run, got {}", options.runs);
  for (int i = 0; i < options.warmup; ++i) run_once();
  std::vector<double> samples;
  samples.reserve(static_cast<size_t>(options.runs));
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  while (static_cast<int>(samples.size()) < options.runs ||
         std::chrono::duration<double>(clock::now() - start).count() < options.min_seconds) {
    const auto t0 = clock::now();
    run_once();
    samples.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
    if (samples.size() > 100000) break;
  }
  return summarize(std::move(samples));
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown cpu";
}

bool ProfileKey::operator==(const ProfileKey& o) const {
  return cpu == o.cpu && engine == o.engine && isa == o.isa && threads == o.threads &&
         precision == o.precision && activations == o.activations;
}

std::string ProfileKey::describe() const {
  return fmt::format("{} / {} ({}) / {} thread{} / {}{}", cpu, engine, isa, threads, threads == 1 ? "" : "s",
                     precision, activations == "symmetric" ? "" : " (" + activations + " activations)");
}

ProfileKey this_machine(int threads, const std::string& precision, const std::string& activations) {
  if (activations != "symmetric" && activations != "asymmetric")
    fail("unknown activation quantisation '{}': use symmetric or asymmetric", activations);
  return ProfileKey{cpu_model(), onednn_version(), onednn_isa(), threads, precision, activations};
}

void require_same_profile(const ProfileKey& expected, const ProfileKey& found, const std::string& what) {
  if (expected == found) return;
  fail(
      "{} was measured on [{}] but this run is [{}]: latencies from different machines or settings cannot be "
      "mixed; profile again here (or pass the matching --threads/--precision)",
      what, found.describe(), expected.describe());
}

nlohmann::json to_json(const Timing& t) {
  return {{"median_ms", t.median_ms}, {"p90_ms", t.p90_ms}, {"min_ms", t.min_ms}, {"p10_ms", t.p10_ms},
          {"mean_ms", t.mean_ms},     {"cv", t.cv},         {"runs", t.runs}};
}

nlohmann::json to_json(const ProfileKey& k) {
  return {{"cpu", k.cpu},         {"engine", k.engine},       {"isa", k.isa},
          {"threads", k.threads}, {"precision", k.precision}, {"activations", k.activations}};
}

ProfileKey profile_key_from_json(const nlohmann::json& j, const std::string& what) {
  try {
    return ProfileKey{j.at("cpu").get<std::string>(), j.at("engine").get<std::string>(),
                      j.at("isa").get<std::string>(), j.at("threads").get<int>(),
                      j.at("precision").get<std::string>(),
                      // Profiles written before zero points were measured used symmetric activations.
                      j.value("activations", std::string("symmetric"))};
  } catch (const nlohmann::json::exception& e) {
    fail("{} has no valid machine key (cpu, engine, isa, threads, precision): {}", what, e.what());
  }
}

}  // namespace qnas::runtime
