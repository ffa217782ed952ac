#include "search/hawq.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include <fmt/format.h>

#include "core/error.h"

namespace qnas::search {

using nlohmann::json;

namespace {

std::uint64_t binomial(std::uint64_t n, std::uint64_t k) {
  if (k > n) return 0;
  k = std::min(k, n - k);
  std::uint64_t r = 1;
  for (std::uint64_t i = 1; i <= k; ++i) r = r * (n - k + i) / i;  // exact: r * (n-k+i) is divisible by i
  return r;
}

}  // namespace

std::uint64_t count_monotone_sequences(int length, int choices) {
  if (length <= 0 || choices <= 0) return length == 0 ? 1 : 0;
  std::uint64_t total = 0;
  for (int j = 1; j <= std::min(length, choices); ++j)
    total += binomial(static_cast<std::uint64_t>(choices), static_cast<std::uint64_t>(j)) *
             binomial(static_cast<std::uint64_t>(length - 1), static_cast<std::uint64_t>(j - 1));
  return total;
}

void for_each_monotone_sequence(int length, int choices,
                                const std::function<bool(const std::vector<int>&)>& visit) {
  if (length <= 0 || choices <= 0) return;
  std::vector<int> s(static_cast<size_t>(length), 0);
  while (true) {
    if (!visit(s)) return;
    int i = length - 1;
    while (i >= 0 && s[static_cast<size_t>(i)] == choices - 1) --i;
    if (i < 0) return;
    const int v = s[static_cast<size_t>(i)] + 1;
    std::fill(s.begin() + i, s.end(), v);
  }
}

json HawqResult::to_json(const space::ArchSpec& spec) const {
  const auto ql = space::quant_layers(spec);
  json order = json::array();
  for (int i : trace_order) order.push_back(ql[static_cast<size_t>(i)].name);
  return {{"method", "hawq"},
          {"metric", metric},
          {"compression_ratio", compression_ratio},
          {"size_ratio", size_ratio},
          {"candidates", candidates},
          {"feasible", feasible},
          {"trace_order", order},
          {"assignment", assignment.to_json(spec)}};
}

HawqResult hawq_assign(const space::ArchSpec& spec, const std::vector<HawqLayerInput>& layers,
                       const HawqOptions& options) {
  const auto ql = space::quant_layers(spec);
  if (layers.size() != ql.size())
    fail("HAWQ got {} layer traces for network {} with {} quantised layers", layers.size(), spec.subnet,
         ql.size());
  if (options.bits.empty()) fail("HAWQ needs at least one bit-width to choose from (--bits)");
  std::vector<int> bits = options.bits;
  for (int b : bits) space::check_bits(b, "--bits");
  if (!std::is_sorted(bits.begin(), bits.end()) || std::adjacent_find(bits.begin(), bits.end()) != bits.end())
    fail("--bits must be distinct and increasing, got {}", fmt::join(bits, " "));
  if (options.activation_bits != 0) space::check_bits(options.activation_bits, "activation bits");
  const auto input_bits = [&](int w) { return options.activation_bits == 0 ? w : options.activation_bits; };
  const bool size_target = options.size_ratio > 0;
  if (size_target ? options.size_ratio > 1 : !(options.compression_ratio > 0))
    fail(size_target ? "the size ratio is model size / FP32 model size, in (0, 1]: got {}"
                     : "the compression ratio must be positive, got {}",
         size_target ? options.size_ratio : options.compression_ratio);
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i].perturbation.size() != bits.size())
      fail("HAWQ: layer {} has {} perturbations for {} bit-widths", ql[i].name, layers[i].perturbation.size(),
           bits.size());

  HawqResult result;
  result.assignment = space::BitAssignment::uniform(spec, 8, input_bits(8));
  std::vector<int> free;
  // Both costs are sums over layers: a candidate's cost is the fixed layers' plus each free layer's at its
  // bits. Bit complexity counts MACs * max(b_w, b_a); size counts the weights at their bits, and the rest of
  // the model (BN, biases: 32 bits) is a constant.
  const auto layer_cost = [&](size_t i, int w) {
    return size_target ? static_cast<double>(ql[i].weights) * w
                       : static_cast<double>(ql[i].macs) * std::max(w, input_bits(w));
  };
  const auto all_8 = space::BitAssignment::uniform(spec, 8, 8);
  double fixed_cost = 0;
  if (size_target) {
    fixed_cost = static_cast<double>(space::model_size_bits(spec, all_8));
    for (const auto& l : ql) fixed_cost -= 8.0 * static_cast<double>(l.weights);
  }
  for (size_t i = 0; i < ql.size(); ++i) {
    if (options.keep_first_and_last && (ql[i].first || ql[i].classifier))
      fixed_cost += layer_cost(i, 8);
    else
      free.push_back(static_cast<int>(i));
  }
  // Least sensitive first; ties keep network order so the result does not depend on the sort.
  std::stable_sort(free.begin(), free.end(), [&](int a, int b) {
    return layers[static_cast<size_t>(a)].trace < layers[static_cast<size_t>(b)].trace;
  });
  result.trace_order = free;
  const double int8_complexity = space::bit_complexity(spec, all_8);
  const double fp32_size = static_cast<double>(space::fp32_size_bits(spec));
  // The target as "cost at most": compression ratio r means complexity <= INT8 / r. A relative tolerance lets
  // a cost equal to the target up to rounding meet it.
  const double budget =
      size_target ? options.size_ratio * fp32_size : int8_complexity / options.compression_ratio;
  const auto meets = [&](double cost) { return cost <= budget * (1 + 1e-12); };

  double best_metric = std::numeric_limits<double>::infinity();
  std::vector<int> best;
  double lowest_cost = std::numeric_limits<double>::infinity();
  for_each_monotone_sequence(static_cast<int>(free.size()), static_cast<int>(bits.size()),
                             [&](const std::vector<int>& s) {
                               ++result.candidates;
                               double cost = fixed_cost, metric = 0;
                               for (size_t k = 0; k < free.size(); ++k) {
                                 const auto i = static_cast<size_t>(free[k]);
                                 const auto choice = static_cast<size_t>(s[k]);
                                 cost += layer_cost(i, bits[choice]);
                                 metric += layers[i].trace * layers[i].perturbation[choice];
                               }
                               lowest_cost = std::min(lowest_cost, cost);
                               if (!meets(cost)) return true;
                               ++result.feasible;
                               if (metric < best_metric) {
                                 best_metric = metric;
                                 best = s;
                               }
                               return true;
                             });
  if (free.empty()) {
    if (!meets(fixed_cost))
      fail("network {} has no layer HAWQ may change, so it cannot reach {} {}", spec.subnet,
           size_target ? "size ratio" : "compression ratio",
           size_target ? options.size_ratio : options.compression_ratio);
  } else if (best.empty()) {
    if (size_target)
      fail(
          "no assignment of bits {{{}}} reaches size ratio {}: the smallest these bits give is {:.3f} (every "
          "free layer at {} bits; the stem and the classifier stay at 8); raise --size-ratio or allow fewer "
          "bits",
          fmt::join(bits, ", "), options.size_ratio, lowest_cost / fp32_size, bits.front());
    fail(
        "no assignment of bits {{{}}} reaches compression ratio {}: the most these bits give is {:.3f} "
        "(every "
        "free layer at {} bits); lower --compression-ratio or allow fewer bits",
        fmt::join(bits, ", "), options.compression_ratio, int8_complexity / lowest_cost, bits.front());
  }
  for (size_t k = 0; k < free.size(); ++k) {
    const int w = bits[static_cast<size_t>(best[k])];
    result.assignment.layers[static_cast<size_t>(free[k])] = {w, input_bits(w)};
  }
  result.metric = free.empty() ? 0 : best_metric;
  result.compression_ratio = space::compression_ratio(spec, result.assignment);
  result.size_ratio = static_cast<double>(space::model_size_bits(spec, result.assignment)) / fp32_size;
  return result;
}

}  // namespace qnas::search
