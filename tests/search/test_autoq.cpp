// AutoQ: the agent's networks against finite differences, the step features, the size target (it holds for
// every episode and every assignment it is applied to), determinism and resume by replay, and that the agent
// learns on a made-up accuracy.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "search/autoq.h"
#include "space/sampling.h"
#include "space/search_space.h"

namespace qnas::search {
namespace {

space::ArchSpec se_net() {
  const auto space = space::SearchSpace::parse("fmnistw-151122-000000");
  return space::build_arch_spec(space, space::min_subnet(space));
}

TEST(AutoqMlp, BackwardMatchesFiniteDifferences) {
  for (bool sigmoid : {true, false}) {
    Rng rng(7);
    Mlp mlp({4, 6, 5, 2}, sigmoid, rng, 0.5);
    const std::vector<double> x = {0.3, -0.7, 0.9, 0.1};
    const std::vector<double> g_out = {0.8, -1.3};
    const auto loss = [&](const Mlp& m, const std::vector<double>& in) {
      const auto y = m.forward(in);
      return g_out[0] * y[0] + g_out[1] * y[1];
    };
    std::vector<double> grads;
    const auto gx = mlp.backward(x, g_out, &grads);
    ASSERT_EQ(grads.size(), mlp.parameters().size());
    const double h = 1e-6;
    for (size_t i = 0; i < mlp.parameters().size(); ++i) {
      Mlp plus = mlp, minus = mlp;
      plus.parameters()[i] += h;
      minus.parameters()[i] -= h;
      EXPECT_NEAR(grads[i], (loss(plus, x) - loss(minus, x)) / (2 * h), 1e-6) << "parameter " << i;
    }
    for (size_t i = 0; i < x.size(); ++i) {
      auto xp = x, xm = x;
      xp[i] += h;
      xm[i] -= h;
      EXPECT_NEAR(gx[i], (loss(mlp, xp) - loss(mlp, xm)) / (2 * h), 1e-6) << "input " << i;
    }
  }
}

TEST(AutoqMlp, AdamFitsALinearTarget) {
  Rng rng(3);
  Mlp mlp({2, 16, 1}, false, rng, 0.1);
  Adam adam(mlp.parameters().size(), 1e-2);
  const auto target = [](double a, double b) { return 0.5 * a - 0.25 * b + 0.1; };
  double error = 0;
  for (int it = 0; it < 2000; ++it) {
    std::vector<double> grads(mlp.parameters().size(), 0.0);
    error = 0;
    for (double a : {0.0, 0.5, 1.0})
      for (double b : {0.0, 0.5, 1.0}) {
        const double d = mlp.forward({a, b})[0] - target(a, b);
        error += d * d / 9;
        mlp.backward({a, b}, {2 * d / 9}, &grads);
      }
    adam.step(mlp.parameters(), grads);
  }
  EXPECT_LT(error, 1e-4);
}

TEST(Autoq, StepsAreEveryFreeQuantiserTwiceWithScaledFeatures) {
  const auto spec = se_net();
  const auto layers = space::quant_layers(spec);
  const auto steps = autoq_steps(spec, true);
  size_t free = 0;
  for (const auto& q : layers) free += (q.first || q.classifier) ? 0 : 1;
  ASSERT_EQ(steps.size(), 2 * free);
  for (size_t t = 0; t < steps.size(); ++t) {
    EXPECT_EQ(steps[t].weight, t % 2 == 0);
    ASSERT_EQ(steps[t].features.size(), static_cast<size_t>(kAutoqFeatures - 1));
    for (double f : steps[t].features) {
      EXPECT_GE(f, 0.0);
      EXPECT_LE(f, 1.0);
    }
  }
  EXPECT_EQ(autoq_steps(spec, false).size(), 2 * layers.size());
}

TEST(Autoq, ActionsMapToBitsInEqualIntervals) {
  const std::vector<int> bits = {2, 4, 8};
  EXPECT_EQ(action_to_bits(0.0, bits), 2);
  EXPECT_EQ(action_to_bits(0.33, bits), 2);
  EXPECT_EQ(action_to_bits(0.34, bits), 4);
  EXPECT_EQ(action_to_bits(0.99, bits), 8);
  EXPECT_EQ(action_to_bits(1.0, bits), 8);
  for (int b : bits) EXPECT_EQ(action_to_bits(bits_to_action(b, bits), bits), b);
}

TEST(Autoq, TheSizeTargetHoldsForEveryAssignmentAndOnlyLowersWeights) {
  const auto spec = se_net();
  const auto layers = space::quant_layers(spec);
  const std::vector<int> choices = {2, 4, 8};
  Rng rng(11);
  for (double target : {0.1, 0.15, 0.2, 0.3}) {
    for (int trial = 0; trial < 40; ++trial) {
      auto bits = space::BitAssignment::uniform(spec, 8, 8);
      for (size_t i = 0; i < layers.size(); ++i)
        if (!layers[i].first && !layers[i].classifier)
          bits.layers[i] = {rng.pick(choices), rng.pick(choices)};
      const auto enforced = enforce_size_ratio(spec, bits, choices, target, true);
      EXPECT_LE(size_ratio(spec, enforced), target);
      for (size_t i = 0; i < layers.size(); ++i) {
        EXPECT_LE(enforced.layers[i].weight, bits.layers[i].weight);
        EXPECT_EQ(enforced.layers[i].activation, bits.layers[i].activation);
        if (layers[i].first || layers[i].classifier) {
          EXPECT_EQ(enforced.layers[i], bits.layers[i]);
        }
      }
      if (size_ratio(spec, bits) <= target) {
        EXPECT_EQ(enforced.layers, bits.layers);
      }
    }
  }
}

TEST(Autoq, ASizeTargetOutOfReachIsOneErrorNamingTheSmallestRatio) {
  const auto spec = se_net();
  try {
    enforce_size_ratio(spec, space::BitAssignment::uniform(spec, 8, 8), {4, 8}, 0.01, true);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no assignment of bits {4, 8} reaches size ratio 0.01"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("the smallest is 0."), std::string::npos) << e.what();
  }
  AutoqOptions o;
  o.size_ratio = 0.01;
  EXPECT_THROW(AutoqSearch(spec, o), Error);
  o.size_ratio = 0.15;
  o.bits = {5, 8};
  EXPECT_THROW(AutoqSearch(spec, o), Error);
}

// A made-up accuracy with the shape of a real one: every layer loses accuracy as its bits fall, in proportion
// to a sensitivity; activations matter more than weights.
double made_up_accuracy(const space::ArchSpec& spec, const space::BitAssignment& bits) {
  const auto layers = space::quant_layers(spec);
  double loss = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    const double sensitivity = 0.0005 * static_cast<double>(1 + (i * 7) % 5);
    loss += sensitivity * std::pow(2.0, -bits.layers[i].weight / 2.0) * 8;
    loss += 2 * sensitivity * std::pow(2.0, -bits.layers[i].activation / 2.0) * 8;
  }
  return 0.9 - loss;
}

AutoqOptions small_options() {
  AutoqOptions o;
  o.episodes = 40;
  o.warmup_episodes = 10;
  o.hidden = 24;
  o.batch = 32;
  o.delta_decay = 0.95;
  o.actor_lr = 1e-3;
  o.seed = 5;
  return o;
}

TEST(Autoq, EveryEpisodeMeetsTheSizeTargetAndTheAgentLearns) {
  const auto spec = se_net();
  AutoqSearch search(spec, small_options());
  while (!search.done()) search.record(made_up_accuracy(spec, search.propose()));
  const auto& episodes = search.episodes();
  ASSERT_EQ(episodes.size(), 40u);
  double warmup = 0, last = 0;
  for (size_t e = 0; e < episodes.size(); ++e) {
    EXPECT_LE(episodes[e].size_ratio, 0.15) << "episode " << e;
    EXPECT_NEAR(episodes[e].size_ratio, size_ratio(spec, episodes[e].assignment), 1e-12);
    EXPECT_EQ(episodes[e].explored, e < 10);
    if (e < 10) warmup += episodes[e].accuracy / 10;
    if (e >= 30) last += episodes[e].accuracy / 10;
  }
  // Random bits put a third of the activations at 2 bits; the agent learns to keep them high (measured: 0.46
  // in the warm-up, 0.74 in the last ten).
  EXPECT_GT(last, warmup + 0.1) << "warm-up mean " << warmup << ", last ten " << last;
  EXPECT_GE(search.best().accuracy, last);
  // Not just the untrained actor (its sigmoid starts near 0.5: 4 bits everywhere; 0.51 measured).
  auto fours = space::BitAssignment::uniform(spec, 4, 4);
  const auto layers = space::quant_layers(spec);
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i].first || layers[i].classifier) fours.layers[i] = {8, 8};
  const double untrained = made_up_accuracy(spec, enforce_size_ratio(spec, fours, {2, 4, 8}, 0.15, true));
  EXPECT_GT(last, untrained + 0.1) << "4 bits everywhere " << untrained << ", last ten " << last;
}

TEST(Autoq, TheSameSeedGivesTheSameSearchAndAResumedSearchReplaysIt) {
  const auto spec = se_net();
  AutoqOptions o = small_options();
  o.episodes = 16;
  o.warmup_episodes = 4;
  AutoqSearch whole(spec, o);
  while (!whole.done()) whole.record(made_up_accuracy(spec, whole.propose()));
  // Interrupted after 9 episodes, then resumed from the recorded accuracies.
  std::vector<double> accuracies;
  std::vector<space::BitAssignment> assignments;
  for (int e = 0; e < 9; ++e) {
    accuracies.push_back(whole.episodes()[static_cast<size_t>(e)].accuracy);
    assignments.push_back(whole.episodes()[static_cast<size_t>(e)].assignment);
  }
  AutoqSearch resumed(spec, o);
  EXPECT_EQ(resumed.replay(accuracies, assignments), 9);
  while (!resumed.done()) resumed.record(made_up_accuracy(spec, resumed.propose()));
  for (size_t e = 0; e < whole.episodes().size(); ++e) {
    EXPECT_EQ(resumed.episodes()[e].assignment.layers, whole.episodes()[e].assignment.layers) << e;
    EXPECT_EQ(resumed.episodes()[e].accuracy, whole.episodes()[e].accuracy) << e;
  }
  // A record that does not match (another seed's search) is not replayed.
  o.seed = 99;
  AutoqSearch other(spec, o);
  EXPECT_EQ(other.replay(accuracies, assignments), 0);
}

}  // namespace
}  // namespace qnas::search
