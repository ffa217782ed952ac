#include "search/qt_score.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <limits>
#include <queue>
#include <thread>

#include "core/error.h"
#include "core/strings.h"

namespace qnas::search {
namespace {

// xoshiro256** seeded through splitmix64: ~1 ns a draw, which matters at 5000 spaces x 100k samples x 7
// draws.
class FastRng {
 public:
  explicit FastRng(std::uint64_t seed) {
    for (auto& word : state_) word = splitmix(seed);
  }
  std::uint64_t next() {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }
  // Lemire's multiply-shift: bias below 2^-32 for n <= 2^32, far under the Monte Carlo noise.
  std::uint32_t below(std::uint32_t n) {
    return static_cast<std::uint32_t>(((next() >> 32) * static_cast<std::uint64_t>(n)) >> 32);
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  std::uint64_t state_[4];
};

constexpr std::int64_t kChunk = 8192;

// What one chunk of samples contributes per limit: the count within, the loss sum within, the lowest losses.
struct LimitAccumulator {
  std::int64_t within = 0;
  double loss_sum = 0;
  std::priority_queue<float> lowest;  // max-heap of the `top` lowest losses
};

struct ChunkResult {
  std::vector<LimitAccumulator> limits;
  float min_latency = std::numeric_limits<float>::max();
  float max_latency = 0;
};

struct StageTables {
  std::vector<const LutTable*> tables;  // per stage
  double fixed_ms = 0;
};

ChunkResult run_chunk(const std::vector<StageTables>& per_resolution, const QtOptions& options,
                      std::uint64_t chunk_seed, std::int64_t count) {
  ChunkResult result;
  result.limits.resize(options.latency_limits_ms.size());
  FastRng rng(chunk_seed);
  const auto n_res = static_cast<std::uint32_t>(per_resolution.size());
  for (std::int64_t i = 0; i < count; ++i) {
    const StageTables& stages = per_resolution[rng.below(n_res)];
    double latency = stages.fixed_ms;
    double loss = 0;
    for (const LutTable* table : stages.tables) {
      const std::uint32_t row = rng.below(static_cast<std::uint32_t>(table->size()));
      latency += table->latency_ms[row];
      loss += table->loss[row];
    }
    result.min_latency = std::min(result.min_latency, static_cast<float>(latency));
    result.max_latency = std::max(result.max_latency, static_cast<float>(latency));
    for (size_t l = 0; l < options.latency_limits_ms.size(); ++l) {
      if (latency > options.latency_limits_ms[l]) continue;
      LimitAccumulator& acc = result.limits[l];
      ++acc.within;
      acc.loss_sum += loss;
      const auto value = static_cast<float>(loss);
      if (static_cast<int>(acc.lowest.size()) < options.top) {
        acc.lowest.push(value);
      } else if (value < acc.lowest.top()) {
        acc.lowest.pop();
        acc.lowest.push(value);
      }
    }
  }
  return result;
}

std::uint64_t space_seed(std::uint64_t seed, const std::string& space) {
  return seed * 0x9e3779b97f4a7c15ULL ^ std::hash<std::string>{}(space);
}

std::vector<StageTables> gather_tables(const BlockLutSet& luts, const space::SearchSpace& space,
                                       const QtOptions& options) {
  std::vector<StageTables> per_resolution;
  for (int resolution : luts.resolutions()) {
    StageTables stages;
    const auto fixed = options.fixed_latency_ms.find(resolution);
    stages.fixed_ms = fixed == options.fixed_latency_ms.end() ? 0.0 : fixed->second;
    for (size_t i = 0; i < space.block_choices().size(); ++i) {
      stages.tables.push_back(&luts.table(static_cast<int>(i) + 1, space.block_choices()[i],
                                          space.window_choices()[i], resolution));
    }
    per_resolution.push_back(std::move(stages));
  }
  return per_resolution;
}

}  // namespace

QtScore qt_score(const BlockLutSet& luts, const space::SearchSpace& space, const QtOptions& options) {
  if (options.latency_limits_ms.empty())
    fail("Q-T score: give at least one latency limit (--latency MS ...)");
  if (options.samples < 1 || options.top < 1) fail("Q-T score: samples and top must be positive");
  const auto per_resolution = gather_tables(luts, space, options);
  const std::string encoding = space.encode();
  const std::int64_t chunks = (options.samples + kChunk - 1) / kChunk;
  std::vector<ChunkResult> results(chunks);
  std::atomic<std::int64_t> next{0};
  auto worker = [&] {
    for (std::int64_t c = next++; c < chunks; c = next++) {
      const std::int64_t count = std::min(kChunk, options.samples - c * kChunk);
      results[c] = run_chunk(per_resolution, options, space_seed(options.seed, encoding) + c, count);
    }
  };
  const int threads = std::max<int>(
      1, std::min<std::int64_t>(chunks,
                                options.threads > 0 ? options.threads : std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& thread : pool) thread.join();

  QtScore score;
  score.space = encoding;
  score.min_latency_ms = std::numeric_limits<double>::max();
  for (const auto& r : results) {
    score.min_latency_ms = std::min<double>(score.min_latency_ms, r.min_latency);
    score.max_latency_ms = std::max<double>(score.max_latency_ms, r.max_latency);
  }
  for (size_t l = 0; l < options.latency_limits_ms.size(); ++l) {
    std::int64_t within = 0;
    double loss_sum = 0;
    std::vector<float> lowest;
    for (auto& r : results) {
      within += r.limits[l].within;
      loss_sum += r.limits[l].loss_sum;
      for (auto heap = r.limits[l].lowest; !heap.empty(); heap.pop()) lowest.push_back(heap.top());
    }
    // Sorting before summing makes the result independent of chunk order and thread count.
    std::sort(lowest.begin(), lowest.end());
    lowest.resize(std::min<size_t>(lowest.size(), options.top));
    QtLimitScore s;
    s.limit_ms = options.latency_limits_ms[l];
    s.p = static_cast<double>(within) / static_cast<double>(options.samples) + 1e-5;
    if (within == 0) {
      s.avg_loss = 1e5;
    } else if (options.form == QtForm::kTopK) {
      double sum = 0;
      for (float v : lowest) sum += v;
      s.avg_loss = sum / (static_cast<double>(lowest.size()) + 1e-5);
    } else {
      s.avg_loss = loss_sum / static_cast<double>(within);
    }
    s.latency_loss = std::max(1.0, std::pow(options.t / s.p, options.a));
    s.score = 1.0 / (s.latency_loss * s.avg_loss);
    score.score += s.score;
    score.limits.push_back(s);
  }
  return score;
}

std::map<int, double> parse_fixed_latency(const std::string& text, const std::vector<int>& resolutions) {
  std::map<int, double> out;
  auto number = [&](const std::string& s) -> double {
    const auto v = parse_number(s);
    if (!v || *v < 0) {
      fail(
          "--fixed-latency '{}': '{}' is not a non-negative number of ms (use 2.5 or "
          "160:1.9,192:2.4,224:3.0)",
          text, s);
    }
    return *v;
  };
  if (text.find(':') == std::string::npos) {
    const double v = number(text);
    for (int r : resolutions) out[r] = v;
    return out;
  }
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    const size_t colon = item.find(':');
    if (colon == std::string::npos) fail("--fixed-latency '{}': '{}' is not RESOLUTION:MS", text, item);
    out[static_cast<int>(number(item.substr(0, colon)))] = number(item.substr(colon + 1));
    start = comma + 1;
  }
  for (int r : resolutions) {
    if (!out.count(r)) fail("--fixed-latency '{}' gives no latency for resolution {}", text, r);
  }
  return out;
}

}  // namespace qnas::search
