#include "search/qfa_search.h"

#include <algorithm>
#include <numeric>
#include <unordered_map>

#include "core/error.h"
#include "search/pareto.h"

namespace qnas::search {
namespace {

// How often a child that repeats a network already seen is drawn again before it is accepted as it is.
constexpr int kRedraws = 8;

struct Member {
  QfaGenome genome;
  std::string key;
  Objectives objectives;
};

class Nsga2 {
 public:
  Nsga2(const QfaSpace& space, const std::function<double(const QfaGenome&)>& accuracy,
        const std::function<double(const QfaGenome&)>& cost, const QfaSearchOptions& o)
      : space_(space), accuracy_(accuracy), cost_(cost), o_(o), rng_(o.seed) {}

  QfaSearchResult run() {
    std::vector<Member> population;
    for (const auto& g : o_.initial) {
      if (static_cast<int>(population.size()) < o_.population && !seen(g)) population.push_back(evaluate(g));
    }
    for (int tries = 0; static_cast<int>(population.size()) < o_.population && tries < 50 * o_.population;
         ++tries) {
      QfaGenome g = space_.random(rng_);
      if (!seen(g)) population.push_back(evaluate(std::move(g)));
    }
    for (int generation = 0; generation < o_.generations; ++generation) {
      std::vector<Member> next = population;
      rank(population);
      for (size_t i = 0; i < population.size(); ++i) next.push_back(evaluate(child(population)));
      population = survivors(std::move(next));
      if (o_.on_generation) o_.on_generation(generation + 1, o_.generations);
    }
    QfaSearchResult result;
    result.evaluated = evaluated_;
    std::vector<Objectives> points;
    for (const auto& c : evaluated_) points.push_back({c.accuracy, c.cost});
    for (size_t i : pareto_front(points)) result.front.push_back(evaluated_[i]);
    return result;
  }

 private:
  bool seen(const QfaGenome& g) { return cache_.count(space_.key(g)) > 0; }

  Member evaluate(QfaGenome g) {
    Member m;
    m.key = space_.key(g);
    const auto it = cache_.find(m.key);
    if (it != cache_.end()) {
      m.objectives = {evaluated_[it->second].accuracy, evaluated_[it->second].cost};
    } else {
      m.objectives = {accuracy_(g), cost_(g)};
      cache_[m.key] = evaluated_.size();
      evaluated_.push_back({m.key, m.objectives.accuracy, m.objectives.cost});
    }
    m.genome = std::move(g);
    return m;
  }

  // Front rank and crowding distance of every member, for the tournaments.
  void rank(const std::vector<Member>& population) {
    std::vector<Objectives> points;
    for (const auto& m : population) points.push_back(m.objectives);
    rank_.assign(population.size(), 0);
    crowding_.assign(population.size(), 0.0);
    const auto fronts = nondominated_fronts(points);
    for (size_t f = 0; f < fronts.size(); ++f) {
      const auto distance = crowding_distance(points, fronts[f]);
      for (size_t i = 0; i < fronts[f].size(); ++i) {
        rank_[fronts[f][i]] = static_cast<int>(f);
        crowding_[fronts[f][i]] = distance[i];
      }
    }
  }

  const QfaGenome& tournament(const std::vector<Member>& population) {
    const size_t a = rng_.below(population.size()), b = rng_.below(population.size());
    if (rank_[a] != rank_[b]) return population[rank_[a] < rank_[b] ? a : b].genome;
    return population[crowding_[a] >= crowding_[b] ? a : b].genome;
  }

  QfaGenome child(const std::vector<Member>& population) {
    QfaGenome g;
    for (int attempt = 0; attempt <= kRedraws; ++attempt) {
      const QfaGenome& first = tournament(population);
      g = rng_.uniform() < o_.crossover ? space_.crossover(first, tournament(population), rng_) : first;
      g = space_.mutate(g, o_.mutation, rng_);
      if (!seen(g)) break;
    }
    return g;
  }

  // NSGA-II survival: whole fronts while they fit, then the most crowded-apart of the next one. Duplicates
  // (a child equal to a parent) survive once.
  std::vector<Member> survivors(std::vector<Member> merged) {
    std::vector<Member> unique;
    std::unordered_map<std::string, bool> kept;
    for (auto& m : merged) {
      if (kept.emplace(m.key, true).second) unique.push_back(std::move(m));
    }
    std::vector<Objectives> points;
    for (const auto& m : unique) points.push_back(m.objectives);
    std::vector<Member> out;
    for (const auto& front : nondominated_fronts(points)) {
      if (out.size() + front.size() <= static_cast<size_t>(o_.population)) {
        for (size_t i : front) out.push_back(unique[i]);
        continue;
      }
      const auto distance = crowding_distance(points, front);
      std::vector<size_t> order(front.size());
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return distance[a] > distance[b]; });
      for (size_t i = 0; out.size() < static_cast<size_t>(o_.population); ++i)
        out.push_back(unique[front[order[i]]]);
      break;
    }
    return out;
  }

  const QfaSpace& space_;
  const std::function<double(const QfaGenome&)>& accuracy_;
  const std::function<double(const QfaGenome&)>& cost_;
  QfaSearchOptions o_;
  Rng rng_;
  std::unordered_map<std::string, size_t> cache_;
  std::vector<QfaCandidate> evaluated_;
  std::vector<int> rank_;
  std::vector<double> crowding_;
};

}  // namespace

QfaSearchResult nsga2_qfa(const QfaSpace& space, const std::function<double(const QfaGenome&)>& accuracy,
                          const std::function<double(const QfaGenome&)>& cost,
                          const QfaSearchOptions& options) {
  if (options.population < 4) fail("QFA search: population must be at least 4, got {}", options.population);
  if (options.generations < 0) fail("QFA search: generations must be >= 0, got {}", options.generations);
  if (options.mutation < 0 || options.mutation > 1 || options.crossover < 0 || options.crossover > 1)
    fail("QFA search: mutation ({}) and crossover ({}) are probabilities in [0, 1]", options.mutation,
         options.crossover);
  return Nsga2(space, accuracy, cost, options).run();
}

}  // namespace qnas::search
