// QFA's search space (a subnet and per-layer bits) and its NSGA-II, on the real fmnistw spaces with a made-up
// accuracy: genes, keys, features and the front's invariants.
#include <gtest/gtest.h>

#include <set>

#include "search/accuracy_predictor.h"
#include "search/pareto.h"
#include "search/qfa_genome.h"
#include "search/qfa_search.h"
#include "space/sampling.h"
#include "test_util.h"

using namespace qnas;
using namespace qnas::search;

namespace {

const space::SearchSpace& test_space() {
  static const space::SearchSpace s = space::SearchSpace::parse("fmnistw-543210-111111");
  return s;
}

// More bits and more MACs help, with diminishing returns: a stand-in for a trained supernet.
// The search's cost in these tests: the network's BitOPs in millions.
double bitops_m(const QfaSpace& q, const QfaGenome& g) {
  return space::bitops(space::build_arch_spec(q.space(), g.subnet), q.assignment(g)) / 1e6;
}

double made_up_accuracy(const QfaSpace& q, const QfaGenome& g) {
  const auto spec = space::build_arch_spec(q.space(), g.subnet);
  const auto bits = q.assignment(g);
  double sum = 0;
  for (const auto& l : bits.layers) sum += std::log2(l.weight) + 0.5 * std::log2(l.activation);
  return 0.5 + 0.02 * sum / static_cast<double>(bits.layers.size()) + 0.01 * std::log(spec.macs() / 1e6 + 1);
}

}  // namespace

TEST(QfaGenome, EveryLayerOfEverySubnetHasAGeneAndTheFixedLayersStayAt8Bits) {
  const QfaSpace q(test_space(), {4, 2, 3});
  EXPECT_EQ(q.choices(), (std::vector<int>{2, 3, 4}));
  const std::set<std::string> keys(q.keys().begin(), q.keys().end());
  EXPECT_EQ(keys.size(), q.keys().size());
  Rng rng(1);
  for (int i = 0; i < 30; ++i) {
    const QfaGenome g = q.random(rng);
    const auto spec = space::build_arch_spec(q.space(), g.subnet);
    const auto layers = space::quant_layers(spec);
    const auto bits = q.assignment(g);
    ASSERT_EQ(bits.layers.size(), layers.size());
    bits.validate(spec);
    for (size_t l = 0; l < layers.size(); ++l) {
      EXPECT_TRUE(keys.count(bit_gene_key(spec, layers[l]))) << layers[l].name;
      if (fixed_at_8_bits(layers[l])) {
        EXPECT_EQ(bits.layers[l], (space::LayerBits{8, 8})) << layers[l].name;
      } else {
        EXPECT_LE(bits.layers[l].weight, 4);
        EXPECT_LE(bits.layers[l].activation, 4);
      }
    }
    EXPECT_TRUE(layers.front().first);
    EXPECT_TRUE(layers.back().classifier);
  }
}

TEST(QfaGenome, KeysRoundTripAndOnlyUsedGenesCount) {
  const QfaSpace q(test_space(), {2, 3, 4});
  Rng rng(2);
  for (int i = 0; i < 20; ++i) {
    const QfaGenome g = q.random(rng);
    const std::string key = q.key(g);
    EXPECT_EQ(q.key(q.parse_key(key)), key);
    EXPECT_EQ(q.key(q.genome_of(g.subnet, q.assignment(g))), key);
    EXPECT_EQ(q.key(q.mutate(g, 0.0, rng)), key);
    const QfaGenome child = q.crossover(g, q.mutate(g, 1.0, rng), rng);
    space::validate(child.subnet, q.space());
    q.assignment(child).validate(space::build_arch_spec(q.space(), child.subnet));
  }
  const QfaGenome g = q.random(rng);
  const std::string key = q.key(g);
  EXPECT_CONTAINS(qnas::testing::error_message([&] { q.parse_key(key.substr(0, key.size() - 2)); }),
                  "two per layer");
  EXPECT_CONTAINS(qnas::testing::error_message([&] { q.parse_key(g.subnet.encode()); }), "no ':'");
  std::string bad = key;
  bad.back() = 'x';
  EXPECT_CONTAINS(qnas::testing::error_message([&] { q.parse_key(bad); }), "not a bit-width digit");
}

TEST(QfaGenome, FeaturesAreOneHotPerUsedLayer) {
  const QfaSpace q(test_space(), {2, 4});
  Rng rng(3);
  const size_t length = q.features(q.random(rng)).size();
  const size_t arch = one_hot(space::max_subnet(q.space()), q.space()).size();
  EXPECT_EQ(length, arch + q.keys().size() * 4);
  for (int i = 0; i < 10; ++i) {
    const QfaGenome g = q.random(rng);
    const auto f = q.features(g);
    ASSERT_EQ(f.size(), length);
    double bit_ones = 0;
    for (size_t k = arch; k < f.size(); ++k) bit_ones += f[k];
    int lowered = 0;
    for (const auto& l : space::quant_layers(space::build_arch_spec(q.space(), g.subnet)))
      lowered += fixed_at_8_bits(l) ? 0 : 1;
    EXPECT_EQ(bit_ones, 2.0 * lowered);  // a weight and an activation choice per layer QFA may lower
  }
}

TEST(QfaGenome, BadChoicesAreRefused) {
  EXPECT_CONTAINS(qnas::testing::error_message([] { check_elastic_bits({}, "x"); }), "at least one");
  EXPECT_CONTAINS(qnas::testing::error_message([] { check_elastic_bits({2, 5}, "x"); }), "5 bits cannot");
  EXPECT_CONTAINS(qnas::testing::error_message([] { check_elastic_bits({4, 4}, "x"); }), "listed twice");
}

TEST(QfaSearch, FrontIsNonDominatedSortedAndSeeded) {
  const QfaSpace q(test_space(), {2, 3, 4});
  auto accuracy = [&](const QfaGenome& g) { return made_up_accuracy(q, g); };
  auto cost = [&](const QfaGenome& g) { return bitops_m(q, g); };
  QfaSearchOptions o;
  o.population = 16;
  o.generations = 6;
  o.seed = 5;
  const QfaSearchResult a = nsga2_qfa(q, accuracy, cost, o);
  const QfaSearchResult b = nsga2_qfa(q, accuracy, cost, o);
  ASSERT_GE(a.front.size(), 2u);
  EXPECT_GT(a.evaluated.size(), 16u);
  ASSERT_EQ(a.front.size(), b.front.size());
  for (size_t i = 0; i < a.front.size(); ++i) EXPECT_EQ(a.front[i].key, b.front[i].key);
  std::set<std::string> distinct;
  for (const auto& c : a.evaluated) distinct.insert(c.key);
  EXPECT_EQ(distinct.size(), a.evaluated.size());
  for (size_t i = 0; i < a.front.size(); ++i) {
    if (i > 0) {
      EXPECT_GT(a.front[i].cost, a.front[i - 1].cost);
      EXPECT_GT(a.front[i].accuracy, a.front[i - 1].accuracy);
    }
    for (const auto& c : a.evaluated)
      EXPECT_FALSE(dominates({c.accuracy, c.cost}, {a.front[i].accuracy, a.front[i].cost})) << c.key;
  }
  // Evolution improves on its random start: the best accuracy at or below the median cost rises.
  QfaSearchOptions start = o;
  start.generations = 0;
  const QfaSearchResult initial = nsga2_qfa(q, accuracy, cost, start);
  EXPECT_GE(a.front.back().accuracy, initial.front.back().accuracy);
  o.population = 2;
  EXPECT_CONTAINS(qnas::testing::error_message([&] { nsga2_qfa(q, accuracy, cost, o); }), "at least 4");
}

// The job seeds the first population with the uniform-bit networks: they are evaluated first, in order, and a
// seed the random start would almost never draw (the one network scoring 1) ends on the front.
TEST(QfaSearch, InitialNetworksStartThePopulationAndReachTheFront) {
  const QfaSpace q(test_space(), {2, 3, 4});
  const space::Subnet max = space::max_subnet(q.space()), min = space::min_subnet(q.space());
  const QfaGenome best = q.genome_of(max, qfa_uniform(space::build_arch_spec(q.space(), max), 4));
  const QfaGenome small = q.genome_of(min, qfa_uniform(space::build_arch_spec(q.space(), min), 2));
  auto accuracy = [&](const QfaGenome& g) {
    return q.key(g) == q.key(best) ? 1.0 : 0.5 * made_up_accuracy(q, g);
  };
  auto cost = [&](const QfaGenome& g) { return bitops_m(q, g); };
  QfaSearchOptions o;
  o.population = 8;
  o.generations = 3;
  o.seed = 2;
  o.initial = {best, small, best};  // a repeat is taken once
  const QfaSearchResult r = nsga2_qfa(q, accuracy, cost, o);
  ASSERT_GE(r.evaluated.size(), 2u);
  EXPECT_EQ(r.evaluated[0].key, q.key(best));
  EXPECT_EQ(r.evaluated[1].key, q.key(small));
  EXPECT_NE(r.evaluated[2].key, q.key(best));
  bool on_front = false;
  for (const auto& c : r.front) on_front |= c.key == q.key(best);
  EXPECT_TRUE(on_front);
}
