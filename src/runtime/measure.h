#pragma once
// The latency measurement protocol: batch 1, a fixed thread count, warm-up runs, then at least 50 timed runs;
// median, p90 and coefficient of variation. Every result carries the machine identity it was taken on, and a
// profile refuses to be mixed with one from another (cpu, engine, threads, precision).
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qnas::runtime {

struct MeasureOptions {
  int warmup = 10;
  int runs = 50;
  // Keep timing past `runs` until this much time was spent, so sub-millisecond ops get enough samples.
  double min_seconds = 0.0;
};

struct Timing {
  double median_ms = 0;
  double p90_ms = 0;
  double min_ms = 0;
  double p10_ms = 0;
  double mean_ms = 0;
  double cv = 0;  // standard deviation / mean
  int runs = 0;
};

Timing measure(const std::function<void()>& run_once, const MeasureOptions& options = {});
Timing summarize(std::vector<double> samples_ms);

// What a latency number is only valid for.
struct ProfileKey {
  std::string cpu;     // /proc/cpuinfo model name
  std::string engine;  // "oneDNN 2.6.3"
  std::string isa;     // what oneDNN dispatched, e.g. avx512_core_vnni
  int threads = 1;
  std::string precision;  // int8 | fp32
  // How INT8 activations are quantised, which decides the kernels oneDNN picks: "symmetric" (calibration:
  // signed tensors s8, every zero point 0) or "asymmetric" (what LSQ+ training deploys: signed tensors u8
  // with a zero point). On AMX CPUs oneDNN 2.6's brgconv takes no source zero point, and the fallback
  // kernels cost 2-3x (docs/subnet-search.md).
  std::string activations = "symmetric";

  bool operator==(const ProfileKey& other) const;
  std::string describe() const;
};

ProfileKey this_machine(int threads, const std::string& precision,
                        const std::string& activations = "symmetric");
// Fails naming both keys when a profile was taken elsewhere or under other settings.
void require_same_profile(const ProfileKey& expected, const ProfileKey& found, const std::string& what);

std::string cpu_model();

nlohmann::json to_json(const Timing& t);
nlohmann::json to_json(const ProfileKey& k);
ProfileKey profile_key_from_json(const nlohmann::json& j, const std::string& what);

}  // namespace qnas::runtime
