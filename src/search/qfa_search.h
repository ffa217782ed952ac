#pragma once
// QFA's search: NSGA-II over architecture and bits together (search/qfa_genome.h) on two objectives,
// accuracy (from the supernet or a predictor of it) up and a cost (BitOPs or model size) down. Binary
// tournaments on (front rank, crowding distance), uniform crossover and per-gene mutation, survival of the
// parents and children by non-dominated sorting. Deterministic in the seed. Torch-free.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "search/qfa_genome.h"

namespace qnas::search {

struct QfaSearchOptions {
  int population = 100;
  int generations = 40;
  double mutation = 0.1;   // probability that a gene is redrawn
  double crossover = 0.9;  // probability that a child comes from two parents
  std::uint64_t seed = 0;
  // Networks the first population starts with, before the random ones (the job gives the uniform-bit
  // networks, so the front is searched from the baselines it must beat, as OFA seeds its evolution).
  std::vector<QfaGenome> initial;
  // Called after every generation with (generations done, of how many).
  std::function<void(int, int)> on_generation;
};

struct QfaCandidate {
  std::string key;  // QfaSpace::key
  double accuracy = 0;
  double cost = 0;
};

struct QfaSearchResult {
  std::vector<QfaCandidate> evaluated;  // distinct networks, in evaluation order
  std::vector<QfaCandidate> front;      // non-dominated among `evaluated`, by ascending cost
};

// Throws qnas::Error for a population under 4, negative generations or probabilities outside [0, 1].
QfaSearchResult nsga2_qfa(const QfaSpace& space, const std::function<double(const QfaGenome&)>& accuracy,
                          const std::function<double(const QfaGenome&)>& cost,
                          const QfaSearchOptions& options);

}  // namespace qnas::search
