// HAWQ-v2 bit assignment: the candidate count, the monotone order, the chosen candidate against brute force
// over every assignment, a ratio no assignment meets, and the size target (AutoQ's) with inputs kept at 8
// bits.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <set>

#include "core/error.h"
#include "search/hawq.h"
#include "space/sampling.h"
#include "space/search_space.h"

namespace qnas::search {
namespace {

std::uint64_t choose(std::uint64_t n, std::uint64_t k) {
  double r = 1;
  for (std::uint64_t i = 1; i <= k; ++i) r = r * static_cast<double>(n - k + i) / static_cast<double>(i);
  return static_cast<std::uint64_t>(std::llround(r));
}

TEST(Hawq, EnumerationCountMatchesTheFormulaAndTheSequencesAreMonotoneAndDistinct) {
  for (int length : {1, 2, 5, 9}) {
    for (int m : {1, 2, 3, 5}) {
      std::set<std::vector<int>> seen;
      for_each_monotone_sequence(length, m, [&](const std::vector<int>& s) {
        EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
        EXPECT_GE(s.front(), 0);
        EXPECT_LT(s.back(), m);
        seen.insert(s);
        return true;
      });
      std::uint64_t formula = 0;  // sum_j C(m, j) * C(L-1, j-1)
      for (int j = 1; j <= std::min(length, m); ++j) formula += choose(m, j) * choose(length - 1, j - 1);
      EXPECT_EQ(seen.size(), formula) << length << " layers, " << m << " bit-widths";
      EXPECT_EQ(count_monotone_sequences(length, m), formula);
      EXPECT_EQ(formula, choose(length + m - 1, m - 1));
    }
  }
  EXPECT_EQ(count_monotone_sequences(40, 4), choose(43, 3));
}

space::ArchSpec net() {
  const auto space = space::SearchSpace::parse("fmnistw-151122-000000");
  return space::build_arch_spec(space, space::min_subnet(space));
}

// Traces and perturbations made up but shaped like real ones: perturbation falls 4x per extra bit.
std::vector<HawqLayerInput> inputs(const space::ArchSpec& spec, const std::vector<int>& bits) {
  std::vector<HawqLayerInput> in;
  const auto ql = space::quant_layers(spec);
  for (size_t i = 0; i < ql.size(); ++i) {
    HawqLayerInput l;
    l.trace = 1.0 + static_cast<double>((i * 7919) % 13);
    for (int b : bits) l.perturbation.push_back(static_cast<double>(ql[i].weights) * std::pow(4.0, -b));
    in.push_back(l);
  }
  return in;
}

// Brute force over the monotone candidates along `order`: the k least sensitive layers at bits[0], the rest
// at bits[1] (inputs at their weight's bits, or at 8), the lowest metric among those `feasible` accepts.
double best_monotone_metric(const space::ArchSpec& spec, const std::vector<int>& order,
                            const std::vector<HawqLayerInput>& in, const std::vector<int>& bits,
                            bool inputs_at_8,
                            const std::function<bool(const space::BitAssignment&)>& feasible) {
  double best = 1e300;
  for (size_t k = 0; k <= order.size(); ++k) {
    auto a = space::BitAssignment::uniform(spec, 8, 8);
    double metric = 0;
    for (size_t j = 0; j < order.size(); ++j) {
      const auto i = static_cast<size_t>(order[j]);
      const size_t choice = j < k ? 0 : 1;
      a.layers[i] = {bits[choice], inputs_at_8 ? 8 : bits[choice]};
      metric += in[i].trace * in[i].perturbation[choice];
    }
    if (feasible(a)) best = std::min(best, metric);
  }
  return best;
}

TEST(Hawq, ChoosesTheLowestMetricMonotoneCandidateThatMeetsTheRatio) {
  const auto spec = net();
  HawqOptions o;
  o.bits = {4, 8};
  o.compression_ratio = 1.5;
  const auto in = inputs(spec, o.bits);
  const HawqResult r = hawq_assign(spec, in, o);
  const auto ql = space::quant_layers(spec);
  EXPECT_GE(r.compression_ratio, 1.5);
  EXPECT_NEAR(r.compression_ratio, space::compression_ratio(spec, r.assignment), 1e-9);
  EXPECT_EQ(r.candidates, count_monotone_sequences(static_cast<int>(ql.size()) - 2, 2));
  // Stem and classifier stay at 8; along the trace order the bits never decrease.
  for (size_t i = 0; i < ql.size(); ++i)
    if (ql[i].first || ql[i].classifier) {
      EXPECT_EQ(r.assignment.layers[i].weight, 8) << ql[i].name;
    }
  int previous = 0;
  for (int i : r.trace_order) {
    const int b = r.assignment.layers[static_cast<size_t>(i)].weight;
    EXPECT_GE(b, previous);
    EXPECT_EQ(r.assignment.layers[static_cast<size_t>(i)].activation, b) << "inputs follow the weights";
    previous = b;
  }
  // Brute force over the monotone candidates: the k least sensitive layers at 4 bits, the rest at 8.
  const double best = best_monotone_metric(spec, r.trace_order, in, o.bits, false, [&](const auto& a) {
    return space::compression_ratio(spec, a) >= 1.5;
  });
  EXPECT_DOUBLE_EQ(r.metric, best);
}

TEST(Hawq, ARatioNoAssignmentMeetsIsOneClearError) {
  const auto spec = net();
  HawqOptions o;
  o.bits = {4, 8};
  o.compression_ratio = 10;
  try {
    hawq_assign(spec, inputs(spec, o.bits), o);
    FAIL() << "ratio 10 met with 4-bit layers";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no assignment of bits {4, 8} reaches compression ratio 10"),
              std::string::npos)
        << e.what();
  }
  o.bits = {8, 4};
  o.compression_ratio = 1.2;
  EXPECT_THROW(hawq_assign(spec, inputs(spec, {4, 8}), o), Error);
  o.bits = {5, 8};
  EXPECT_THROW(hawq_assign(spec, inputs(spec, {4, 8}), o), Error);
}

double size_of(const space::ArchSpec& spec, const space::BitAssignment& a) {
  return static_cast<double>(space::model_size_bits(spec, a)) /
         static_cast<double>(space::fp32_size_bits(spec));
}

TEST(Hawq, ASizeTargetWithEightBitInputsChoosesTheLowestMetricCandidateOfThatSize) {
  const auto spec = net();
  const auto ql = space::quant_layers(spec);
  // Halfway between uniform 8 and every free layer at 4 bits.
  auto low = space::BitAssignment::uniform(spec, 4, 8);
  for (size_t i = 0; i < ql.size(); ++i)
    if (ql[i].first || ql[i].classifier) low.layers[i] = {8, 8};
  const double target = (size_of(spec, space::BitAssignment::uniform(spec, 8, 8)) + size_of(spec, low)) / 2;
  HawqOptions o;
  o.bits = {4, 8};
  o.size_ratio = target;
  o.compression_ratio = 99;  // ignored under a size target
  o.activation_bits = 8;
  const auto in = inputs(spec, o.bits);
  const HawqResult r = hawq_assign(spec, in, o);
  EXPECT_LE(r.size_ratio, target);
  EXPECT_DOUBLE_EQ(r.size_ratio, size_of(spec, r.assignment));
  // Inputs stay at 8 bits, so NNCF's bit complexity sees no gain at all.
  for (const auto& l : r.assignment.layers) EXPECT_EQ(l.activation, 8);
  EXPECT_DOUBLE_EQ(r.compression_ratio, 1.0);
  int lowered = 0;
  for (const auto& l : r.assignment.layers) lowered += l.weight == 4;
  EXPECT_GT(lowered, 0);
  EXPECT_LT(lowered, static_cast<int>(ql.size()) - 2);
  // Brute force over the monotone candidates under the size target.
  const double best = best_monotone_metric(spec, r.trace_order, in, o.bits, true,
                                           [&](const auto& a) { return size_of(spec, a) <= target; });
  EXPECT_DOUBLE_EQ(r.metric, best);
}

TEST(Hawq, ASizeNoAssignmentMeetsIsOneClearError) {
  const auto spec = net();
  HawqOptions o;
  o.bits = {4, 8};
  o.size_ratio = 0.01;
  o.activation_bits = 8;
  try {
    hawq_assign(spec, inputs(spec, o.bits), o);
    FAIL() << "size ratio 0.01 met with 4-bit weights";
  } catch (const Error& e) {
    EXPECT_NE(
        std::string(e.what()).find("no assignment of bits {4, 8} reaches size ratio 0.01: the smallest"),
        std::string::npos)
        << e.what();
  }
  o.size_ratio = 1.5;
  EXPECT_THROW(hawq_assign(spec, inputs(spec, o.bits), o), Error);
}

}  // namespace
}  // namespace qnas::search
