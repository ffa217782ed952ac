#include "search/latency_aware.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace qnas::search {

PrecisionChoice choose_block_precision(const std::vector<BlockCosts>& blocks, double slack) {
  if (!(slack >= 0)) fail("the latency slack must be >= 0, got {}", slack);
  PrecisionChoice c;
  c.fp32.assign(blocks.size(), false);
  for (size_t b = 0; b < blocks.size(); ++b) {
    const auto& k = blocks[b];
    if (!(k.int8_ms >= 0) || !(k.fp32_ms >= 0) || !(k.sensitivity >= 0) || !std::isfinite(k.int8_ms) ||
        !std::isfinite(k.fp32_ms) || !std::isfinite(k.sensitivity))
      fail("block {} has invalid costs (INT8 {} ms, FP32 {} ms, sensitivity {})", b, k.int8_ms, k.fp32_ms,
           k.sensitivity);
    c.all_int8_ms += k.int8_ms;
  }
  const auto gain = [&](size_t b) { return blocks[b].fp32_ms - blocks[b].int8_ms; };  // what INT8 saves
  const auto free = [&](size_t b) { return gain(b) <= 0; };
  const auto price = [&](size_t b) { return blocks[b].sensitivity / std::max(gain(b), 1e-12); };
  std::vector<size_t> order(blocks.size());
  std::iota(order.begin(), order.end(), size_t{0});
  // Free blocks first (they only make the network faster), then the most sensitivity per millisecond.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (free(a) != free(b)) return free(a);
    return price(a) > price(b);
  });
  // The slack is over the fastest assignment (every free block FP32, the rest INT8), not over all-INT8: what
  // the free blocks save is not a budget to spend on FP32 elsewhere (an INT8 SE block 17x slower than FP32
  // would otherwise buy FP32 for the whole network).
  double fastest = c.all_int8_ms;
  for (size_t b = 0; b < blocks.size(); ++b)
    if (free(b)) fastest += gain(b);
  c.fastest_ms = fastest;
  c.predicted_ms = c.all_int8_ms;
  const double budget = fastest * (1 + slack);
  for (size_t b : order) {
    if (!free(b) && blocks[b].sensitivity <= 0) continue;  // slower in FP32 and nothing to gain in accuracy
    if (!free(b) && c.predicted_ms + gain(b) > budget * (1 + 1e-12)) continue;
    c.fp32[b] = true;
    c.predicted_ms += gain(b);
  }
  return c;
}

}  // namespace qnas::search
