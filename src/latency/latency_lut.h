#pragma once
// The block-level latency LUT: the INT8 (or FP32) latency of each concrete block (type, k, e, cin, cout,
// stride, input size) measured once on this machine and cached in a profile file tied to
// (cpu, engine, isa, threads, precision). A network's latency is predicted as the sum of its blocks,
// corrected by a linear fit against a few measured networks (what fusing and caching across block
// boundaries change).
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "latency/profiling.h"
#include "space/search_space.h"

namespace qnas::latency {

struct LutEntry {
  double median_ms = 0;
  double p90_ms = 0;
  double cv = 0;
  double min_ms = 0;  // 0 in files written before it was recorded: the median stands in
};

// Which per-entry statistic a prediction sums. The protocol's number is the median; the minimum of the timed
// runs is steadier on a VM whose speed drifts (see docs/int8-latency.md).
enum class Statistic { kMedian, kMin };
Statistic parse_statistic(const std::string& text);
const char* to_string(Statistic statistic);
double pick(const runtime::Timing& timing, Statistic statistic);

class LatencyLut {
 public:
  explicit LatencyLut(runtime::ProfileKey key) : key_(std::move(key)) {}

  // Fails on a missing or corrupt file, and when the file was profiled under another key.
  static LatencyLut load(const std::string& path, const runtime::ProfileKey& expected);
  void save(const std::string& path) const;  // atomic

  static std::string block_key(const space::BlockSpec& block);
  const runtime::ProfileKey& key() const { return key_; }
  // Changing the statistic drops a correction fitted for the other one.
  void set_statistic(Statistic statistic);
  Statistic statistic() const { return statistic_; }
  std::size_t size() const { return entries_.size(); }
  const LutEntry* find(const space::BlockSpec& block) const;
  void put(const space::BlockSpec& block, const LutEntry& entry) { entries_[block_key(block)] = entry; }

  // Measures every block not in the table yet (each distinct block once); returns how many were measured.
  // `progress` is called with (done, total) over the blocks missing.
  std::size_t fill(const std::vector<space::BlockSpec>& blocks, const MeasureOptions& options,
                   const std::function<void(std::size_t, std::size_t)>& progress = {});

  // Sum of block entries; fails naming the first block missing.
  double block_sum(const space::ArchSpec& spec) const;
  // Per-stage sums of block entries, in network order.
  std::vector<std::pair<std::string, double>> stage_sums(const space::ArchSpec& spec) const;
  // The corrected prediction: sum over stages of slope(stage) * stage sum, plus the intercept.
  double predict(const space::ArchSpec& spec) const;
  // Fits the correction on measured networks: a per-stage slope (a block alone runs with its weights hot
  // in cache, inside a network they arrive cold, and how much that costs depends on the stage's weight
  // size), ridge-regularised towards one global slope so stages seen rarely stay sane.
  void fit_correction(const std::vector<space::ArchSpec>& specs, const std::vector<double>& measured_ms);
  double slope(const std::string& stage) const;
  // Whether fit_correction ran (a fresh LUT predicts the plain block sum).
  bool has_correction() const { return !stage_slopes_.empty(); }
  double global_slope() const { return slope_; }
  double intercept() const { return intercept_; }

 private:
  double value(const LutEntry& e) const;

  runtime::ProfileKey key_;
  Statistic statistic_ = Statistic::kMedian;
  std::map<std::string, LutEntry> entries_;
  double slope_ = 1.0, intercept_ = 0.0;
  std::map<std::string, double> stage_slopes_;
};

// Fills `lut` with the blocks it lacks and saves it to `path`, every 200 blocks too, so a killed run keeps
// what it measured; a progress line appears only when there is something to measure. Returns how many were
// measured.
std::size_t fill_and_save(LatencyLut& lut, const std::vector<space::BlockSpec>& blocks,
                          const MeasureOptions& options, const std::string& path);

// Every distinct block the space's subnets can contain at the given resolutions (what `latency-lut build`
// profiles), fixed stages included.
std::vector<space::BlockSpec> enumerate_blocks(const space::SearchSpace& space,
                                               const std::vector<int>& resolutions);

// The distinct blocks of a set of networks.
std::vector<space::BlockSpec> distinct_blocks(const std::vector<space::ArchSpec>& specs);

// Times one block as it runs inside a network (the first conv block includes the image conversion).
LutEntry measure_block(const space::BlockSpec& block, const runtime::ProfileKey& key,
                       const MeasureOptions& options);

}  // namespace qnas::latency
