#pragma once
// The search for the best subnets of a trained supernet under INT8 latency limits (the second half of
// SpaceEvo and of QFA). Three algorithms share one evaluation budget, so a report compares them fairly:
//  - evolution (OFA / AttentiveNAS): per limit, a population of subnets within the limit; the best
//    `parent_ratio` are parents; children by mutation and crossover; a child over the limit is drawn again
//    and, after a few misses, repaired by shrinking it gene by gene;
//  - nsga2 (QFA): one population under the largest limit, binary tournaments on (front rank, crowding),
//    crossover and mutation, survival by non-dominated sorting on (accuracy, latency): one run, the whole
//    front;
//  - random: per limit, subnets drawn uniformly and kept when within the limit: the baseline.
// The budget counts distinct subnets whose accuracy was asked for (`evaluations`). Accuracy is expensive
// and cached by encoding; latency is a cheap model (the block latency LUT). A checkpoint after every
// generation holds everything the next one needs, so a killed search resumes to the same result.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/rng.h"
#include "space/subnet.h"

namespace qnas::search {

enum class Algorithm { kEvolution, kNsga2, kRandom };
// Throws qnas::Error naming the known algorithms.
Algorithm parse_algorithm(const std::string& name);
const char* to_string(Algorithm algorithm);

struct SubnetSearchOptions {
  Algorithm algorithm = Algorithm::kEvolution;
  std::vector<double> limits_ms;  // ascending after validation
  int population = 64;
  int generations = 20;
  double mutation = 0.1;       // probability that a gene is redrawn
  double crossover = 0.5;      // evolution: share of children made by crossover; nsga2: crossover probability
  double parent_ratio = 0.25;  // evolution: the best share of the population that breeds
  int evaluations = 0;         // budget of distinct accuracy evaluations (0: population x (generations + 1))
  std::uint64_t seed = 0;
  // Evolution and nsga2: the first population starts with the max and min subnets that fit the limit (the
  // sandwich rule's best-trained members); random search stays random.
  bool seed_extremes = false;
  std::filesystem::path checkpoint;  // empty: none; else resumed from when it exists
  nlohmann::json identity;           // what accuracy and latency mean; a checkpoint of another is refused
  bool show_progress = true;
  std::int64_t interrupt_after_evaluations = -1;  // test hook: throw SearchInterrupted (a kill)
};

// What the search asks of the world.
struct SubnetObjectives {
  std::function<double(const space::Subnet&)> accuracy;    // expensive; called once per distinct subnet
  std::function<double(const space::Subnet&)> latency_ms;  // cheap, deterministic
};

struct Candidate {
  std::string subnet;  // encoding
  double accuracy = 0;
  double latency_ms = 0;
  double mflops = 0;
};

struct LimitBest {
  double limit_ms = 0;
  bool found = false;
  Candidate best;
};

struct SubnetSearchResult {
  Algorithm algorithm = Algorithm::kEvolution;
  std::vector<Candidate> evaluated;  // distinct subnets, in evaluation order
  std::vector<Candidate> front;      // non-dominated among `evaluated`, by ascending latency
  std::vector<LimitBest> best;       // per limit: the most accurate evaluated subnet within it
  int generations = 0;               // generations completed (of every limit, for evolution)
  bool resumed = false;
};

class SearchInterrupted : public std::runtime_error {
 public:
  SearchInterrupted() : std::runtime_error("subnet search interrupted") {}
};

// The budget of distinct evaluations: `evaluations`, or population x (generations + 1) when it is 0.
inline int evaluation_budget(const SubnetSearchOptions& o) {
  return o.evaluations > 0 ? o.evaluations : o.population * (o.generations + 1);
}

// Validates the options (a qnas::Error names the bad one, including a limit below the smallest subnet's
// latency) and runs the search.
SubnetSearchResult search_subnets(const space::SearchSpace& space, const SubnetObjectives& objectives,
                                  SubnetSearchOptions options);

// A subnet drawn uniformly at random among those whose latency is within `limit_ms` (rejection sampling;
// where almost nothing fits, a draw shrunk gene by gene until it does).
space::Subnet random_subnet_within(const space::SearchSpace& space,
                                   const std::function<double(const space::Subnet&)>& latency_ms,
                                   double limit_ms, Rng& rng);

// The best evaluated subnet within each limit, and the front, of any list of evaluated candidates.
std::vector<LimitBest> best_per_limit(const std::vector<Candidate>& evaluated,
                                      const std::vector<double>& limits_ms);
std::vector<Candidate> front_of(const std::vector<Candidate>& evaluated);

nlohmann::json to_json(const Candidate& c);
Candidate candidate_from_json(const nlohmann::json& j);

}  // namespace qnas::search
