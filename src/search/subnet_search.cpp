#include "search/subnet_search.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/strings.h"
#include "search/pareto.h"
#include "search/subnet_genome.h"
#include "space/arch_spec.h"
#include "space/sampling.h"

namespace qnas::search {
namespace {

using nlohmann::json;
using space::Subnet;

constexpr const char* kCheckpointFormat = "qnas-subnet-search-1";
// Draws of a child before one over the limit is repaired by shrinking it instead.
constexpr int kDrawAttempts = 64;
// Uniform draws (rejection sampling, what random search is) before a limit so tight that almost nothing fits
// falls back to repairing a draw; latency is a cheap LUT sum, so this costs milliseconds.
constexpr int kUniformDrawAttempts = 20000;

std::vector<Objectives> objectives_of(const std::vector<Candidate>& points) {
  std::vector<Objectives> o;
  for (const auto& p : points) o.push_back({p.accuracy, p.latency_ms});
  return o;
}

void validate(const space::SearchSpace& space, const SubnetObjectives& objectives, SubnetSearchOptions& o) {
  if (!objectives.accuracy || !objectives.latency_ms) fail("subnet search needs an accuracy and a latency");
  if (o.limits_ms.empty()) fail("subnet search needs at least one latency limit (--limits MS...)");
  for (double limit : o.limits_ms) {
    if (!(limit > 0)) fail("latency limit {} ms is not positive: give limits in milliseconds", limit);
  }
  std::sort(o.limits_ms.begin(), o.limits_ms.end());
  if (o.population < 4) fail("--population {} is too small: use at least 4", o.population);
  if (o.generations < 1) fail("--generations {} must be at least 1", o.generations);
  if (!(o.mutation >= 0 && o.mutation <= 1)) fail("--mutation {} is not a probability in [0, 1]", o.mutation);
  if (!(o.crossover >= 0 && o.crossover <= 1))
    fail("--crossover {} is not a probability in [0, 1]", o.crossover);
  if (!(o.parent_ratio > 0 && o.parent_ratio <= 1)) fail("parent ratio {} is outside (0, 1]", o.parent_ratio);
  if (o.evaluations < 0)
    fail("--evaluations {} is negative (0 means population x (generations + 1))", o.evaluations);
  o.evaluations = evaluation_budget(o);
  const Subnet smallest = space::min_subnet(space);
  const double floor_ms = objectives.latency_ms(smallest);
  if (o.limits_ms.front() < floor_ms) {
    fail(
        "latency limit {:.4f} ms is below the smallest subnet of {} ({}, {:.4f} ms predicted): no subnet "
        "fits; give limits of at least {:.4f} ms",
        o.limits_ms.front(), space.encode(), smallest.encode(), floor_ms, floor_ms);
  }
}

json identity_of(const space::SearchSpace& space, const SubnetSearchOptions& o) {
  json identity = {{"format", kCheckpointFormat},
                   {"space", space.encode()},
                   {"algorithm", to_string(o.algorithm)},
                   {"limits_ms", o.limits_ms},
                   {"population", o.population},
                   {"generations", o.generations},
                   {"mutation", o.mutation},
                   {"crossover", o.crossover},
                   {"parent_ratio", o.parent_ratio},
                   {"evaluations", o.evaluations},
                   {"seed", o.seed},
                   {"objectives", o.identity}};
  if (o.seed_extremes) identity["seed_extremes"] = true;  // absent in checkpoints from before the option
  return identity;
}

class Search {
 public:
  Search(const space::SearchSpace& space, const SubnetObjectives& objectives, const SubnetSearchOptions& o)
      : space_(space), objectives_(objectives), o_(o), rng_(o.seed ^ 0x5eed5ea7c4ull) {}

  SubnetSearchResult run() {
    result_.algorithm = o_.algorithm;
    if (!o_.checkpoint.empty() && std::filesystem::exists(o_.checkpoint)) restore();
    std::unique_ptr<ProgressLine> progress;
    if (o_.show_progress) {
      progress = std::make_unique<ProgressLine>(fmt::format("subnet search ({})", to_string(o_.algorithm)),
                                                o_.evaluations, "subnets");
      progress_ = progress.get();
    }
    while (phase_ < phases()) {
      run_phase();
      ++phase_;
      generation_ = 0;
      population_.clear();
      phase_start_ = static_cast<int>(evaluated_.size());
      save();
    }
    if (progress) progress->finish(best_text());
    result_.evaluated = evaluated_;
    result_.front = front_of(evaluated_);
    result_.best = best_per_limit(evaluated_, o_.limits_ms);
    return result_;
  }

 private:
  // Evolution and random search spend the budget limit by limit; NSGA-II has one population for all.
  int phases() const { return o_.algorithm == Algorithm::kNsga2 ? 1 : static_cast<int>(o_.limits_ms.size()); }
  int phase_budget() const {
    const int share = o_.evaluations / phases();
    return phase_ + 1 == phases() ? o_.evaluations - share * (phases() - 1) : share;
  }
  double phase_limit() const {
    return o_.algorithm == Algorithm::kNsga2 ? o_.limits_ms.back()
                                             : o_.limits_ms[static_cast<size_t>(phase_)];
  }
  bool budget_left() const { return static_cast<int>(evaluated_.size()) - phase_start_ < phase_budget(); }

  void run_phase() {
    const double limit = phase_limit();
    if (o_.algorithm == Algorithm::kRandom) {
      while (budget_left()) {
        for (int i = 0; i < o_.population && budget_left(); ++i) evaluate(draw_new(limit));
        ++generation_;
        ++result_.generations;
        save();
      }
      return;
    }
    if (population_.empty()) {
      if (o_.seed_extremes) seed_with_extremes(limit);
      while (static_cast<int>(population_.size()) < o_.population && budget_left())
        population_.push_back(evaluate(draw_new(limit)).subnet);
      save();
    }
    while (generation_ < o_.generations && budget_left()) {
      if (o_.algorithm == Algorithm::kEvolution) {
        evolve(limit);
      } else {
        nsga2_generation(limit);
      }
      ++generation_;
      ++result_.generations;
      save();
    }
  }

  // The sandwich rule trains the max and min subnets at every step: the best-trained members of a supernet
  // and the two ends of its latency range.
  void seed_with_extremes(double limit) {
    for (const Subnet& extreme : {space::max_subnet(space_), space::min_subnet(space_)}) {
      if (static_cast<int>(population_.size()) >= o_.population || !budget_left()) return;
      const std::string encoding = extreme.encode();
      if (!fits(extreme, limit) ||
          std::find(population_.begin(), population_.end(), encoding) != population_.end())
        continue;
      population_.push_back(evaluate(extreme).subnet);
    }
  }

  // --- evolution under one limit
  void evolve(double limit) {
    std::vector<std::string> ranked = population_;
    std::stable_sort(ranked.begin(), ranked.end(), [&](const std::string& a, const std::string& b) {
      return at(a).accuracy > at(b).accuracy;
    });
    const size_t parents = std::max<size_t>(
        1, std::min(ranked.size(), static_cast<size_t>(std::ceil(o_.parent_ratio * o_.population))));
    ranked.resize(parents);
    const int children = o_.population - static_cast<int>(parents);
    const int crossovers = static_cast<int>(std::lround(o_.crossover * children));
    std::unordered_set<std::string> taken(ranked.begin(), ranked.end());
    std::vector<std::string> next = ranked;
    for (int i = 0; i < children && budget_left(); ++i) {
      const bool cross = i >= children - crossovers && parents >= 2;
      Subnet child = make_child(limit, taken, [&] {
        if (!cross) return mutate(parse(rng_.pick(ranked)), space_, o_.mutation, rng_);
        const size_t a = rng_.below(parents);
        size_t b = rng_.below(parents - 1);
        if (b >= a) ++b;
        return crossover(parse(ranked[a]), parse(ranked[b]), space_, rng_);
      });
      next.push_back(evaluate(child).subnet);
      taken.insert(next.back());
    }
    population_ = std::move(next);
  }

  // --- NSGA-II: one generation under the largest limit
  struct Ranking {
    std::vector<int> rank;
    std::vector<double> crowding;
  };
  Ranking rank_population(const std::vector<std::string>& members) const {
    std::vector<Objectives> points;
    for (const auto& m : members) points.push_back({at(m).accuracy, at(m).latency_ms});
    Ranking r{std::vector<int>(members.size()), std::vector<double>(members.size())};
    const auto fronts = nondominated_fronts(points);
    for (size_t f = 0; f < fronts.size(); ++f) {
      const auto distance = crowding_distance(points, fronts[f]);
      for (size_t k = 0; k < fronts[f].size(); ++k) {
        r.rank[fronts[f][k]] = static_cast<int>(f);
        r.crowding[fronts[f][k]] = distance[k];
      }
    }
    return r;
  }

  const std::string& tournament(const Ranking& r) {
    const size_t a = rng_.below(population_.size()), b = rng_.below(population_.size());
    const bool a_wins = r.rank[a] != r.rank[b] ? r.rank[a] < r.rank[b] : r.crowding[a] >= r.crowding[b];
    return population_[a_wins ? a : b];
  }

  void nsga2_generation(double limit) {
    const Ranking ranking = rank_population(population_);
    std::unordered_set<std::string> taken(population_.begin(), population_.end());
    std::vector<std::string> combined = population_;
    for (int i = 0; i < o_.population && budget_left(); ++i) {
      Subnet child = make_child(limit, taken, [&] {
        Subnet c = parse(tournament(ranking));
        if (rng_.uniform() < o_.crossover) c = crossover(c, parse(tournament(ranking)), space_, rng_);
        return mutate(c, space_, o_.mutation, rng_);
      });
      const std::string encoding = evaluate(child).subnet;
      if (taken.insert(encoding).second) combined.push_back(encoding);
    }
    // Survival: whole fronts while they fit, then the last front's least crowded members.
    const Ranking all = rank_population(combined);
    std::vector<size_t> order(combined.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return all.rank[a] != all.rank[b] ? all.rank[a] < all.rank[b] : all.crowding[a] > all.crowding[b];
    });
    order.resize(std::min(order.size(), static_cast<size_t>(o_.population)));
    std::vector<std::string> next;
    for (size_t i : order) next.push_back(combined[i]);
    population_ = std::move(next);
  }

  // --- drawing subnets within a limit
  bool fits(const Subnet& s, double limit) { return latency(s) <= limit; }

  Subnet draw_within(double limit) {
    return random_subnet_within(
        space_, [&](const Subnet& s) { return latency(s); }, limit, rng_);
  }

  // A subnet within the limit that this search has not evaluated yet (when one is found in a few draws).
  Subnet draw_new(double limit) {
    Subnet s = draw_within(limit);
    for (int attempt = 0; attempt < kDrawAttempts && index_.count(s.encode()); ++attempt)
      s = draw_within(limit);
    return s;
  }

  template <typename Make>
  Subnet make_child(double limit, const std::unordered_set<std::string>& taken, Make make) {
    Subnet child;
    for (int attempt = 0; attempt < kDrawAttempts; ++attempt) {
      child = make();
      if (fits(child, limit) && !taken.count(child.encode())) return child;
    }
    repair(child, space_, rng_, [&](const Subnet& x) { return fits(x, limit); });
    return child;
  }

  // --- evaluation, cached by encoding
  const Candidate& evaluate(const Subnet& s) {
    const std::string encoding = s.encode();
    if (auto it = index_.find(encoding); it != index_.end()) return evaluated_[it->second];
    if (o_.interrupt_after_evaluations >= 0 && evaluations_this_process_ >= o_.interrupt_after_evaluations)
      throw SearchInterrupted();
    Candidate c;
    c.subnet = encoding;
    c.accuracy = objectives_.accuracy(s);
    c.latency_ms = latency(s);
    c.mflops = static_cast<double>(space::build_arch_spec(space_, s).macs()) / 1e6;
    ++evaluations_this_process_;
    index_[encoding] = evaluated_.size();
    evaluated_.push_back(c);
    if (progress_) progress_->update(static_cast<std::int64_t>(evaluated_.size()), best_text());
    return evaluated_.back();
  }

  double latency(const Subnet& s) {
    const std::string encoding = s.encode();
    auto it = latency_cache_.find(encoding);
    if (it == latency_cache_.end()) it = latency_cache_.emplace(encoding, objectives_.latency_ms(s)).first;
    return it->second;
  }

  const Candidate& at(const std::string& encoding) const { return evaluated_[index_.at(encoding)]; }
  static Subnet parse(const std::string& encoding) { return Subnet::parse(encoding); }

  std::string best_text() const {
    std::string text;
    for (const auto& b : best_per_limit(evaluated_, o_.limits_ms)) {
      if (!text.empty()) text += " ";
      text += b.found ? fmt::format("{:.2f}%@{}ms", 100 * b.best.accuracy, b.limit_ms)
                      : fmt::format("-@{}ms", b.limit_ms);
    }
    return text;
  }

  // --- checkpoint
  void save() const {
    if (o_.checkpoint.empty()) return;
    json evaluated = json::array();
    for (const auto& c : evaluated_) evaluated.push_back(to_json(c));
    write_json_atomic(o_.checkpoint, {{"identity", identity_of(space_, o_)},
                                      {"phase", phase_},
                                      {"generation", generation_},
                                      {"generations_total", result_.generations},
                                      {"phase_start", phase_start_},
                                      {"population", population_},
                                      {"rng", rng_.state()},
                                      {"evaluated", evaluated}});
  }

  void restore() {
    const json saved = read_json_file(o_.checkpoint);
    if (!saved.is_object() || saved.value("identity", json()) != identity_of(space_, o_)) {
      fail(
          "checkpoint {} belongs to another subnet search (other space, algorithm, limits, sizes, seed, "
          "evaluator or latency LUT): use another --out directory, or delete it to start over",
          o_.checkpoint.string());
    }
    try {
      phase_ = saved.at("phase").get<int>();
      generation_ = saved.at("generation").get<int>();
      result_.generations = saved.at("generations_total").get<int>();
      phase_start_ = saved.at("phase_start").get<int>();
      population_ = saved.at("population").get<std::vector<std::string>>();
      rng_.restore(saved.at("rng").get<std::string>());
      for (const auto& c : saved.at("evaluated")) {
        index_[c.at("subnet").get<std::string>()] = evaluated_.size();
        evaluated_.push_back(candidate_from_json(c));
      }
      for (const auto& p : population_) {
        if (!index_.count(p)) fail("population member {} was never evaluated", p);
      }
    } catch (const std::exception& e) {
      fail("checkpoint {} is corrupt ({}): delete it to start over", o_.checkpoint.string(),
           first_line(e.what()));
    }
    result_.resumed = true;
  }

  const space::SearchSpace& space_;
  const SubnetObjectives& objectives_;
  const SubnetSearchOptions& o_;
  Rng rng_;
  std::vector<Candidate> evaluated_;
  std::unordered_map<std::string, size_t> index_;
  std::unordered_map<std::string, double> latency_cache_;
  std::vector<std::string> population_;  // encodings; empty: the phase's population is not drawn yet
  int phase_ = 0, generation_ = 0, phase_start_ = 0;
  std::int64_t evaluations_this_process_ = 0;
  SubnetSearchResult result_;
  ProgressLine* progress_ = nullptr;
};

}  // namespace

Algorithm parse_algorithm(const std::string& name) {
  if (name == "evolution") return Algorithm::kEvolution;
  if (name == "nsga2") return Algorithm::kNsga2;
  if (name == "random") return Algorithm::kRandom;
  fail("unknown search algorithm '{}': use evolution, nsga2 or random", name);
}

const char* to_string(Algorithm algorithm) {
  switch (algorithm) {
    case Algorithm::kEvolution:
      return "evolution";
    case Algorithm::kNsga2:
      return "nsga2";
    case Algorithm::kRandom:
      return "random";
  }
  return "?";
}

SubnetSearchResult search_subnets(const space::SearchSpace& space, const SubnetObjectives& objectives,
                                  SubnetSearchOptions options) {
  validate(space, objectives, options);
  return Search(space, objectives, options).run();
}

Subnet random_subnet_within(const space::SearchSpace& space,
                            const std::function<double(const Subnet&)>& latency_ms, double limit_ms,
                            Rng& rng) {
  for (int attempt = 0; attempt < kUniformDrawAttempts; ++attempt) {
    Subnet s = space::sample_random(space, rng);
    if (latency_ms(s) <= limit_ms) return s;
  }
  Subnet s = space::sample_random(space, rng);
  if (!repair(s, space, rng, [&](const Subnet& x) { return latency_ms(x) <= limit_ms; }))
    fail("no subnet of {} fits {} ms", space.encode(), limit_ms);
  return s;
}

std::vector<LimitBest> best_per_limit(const std::vector<Candidate>& evaluated,
                                      const std::vector<double>& limits_ms) {
  std::vector<LimitBest> best;
  for (double limit : limits_ms) {
    LimitBest b;
    b.limit_ms = limit;
    for (const auto& c : evaluated) {
      if (c.latency_ms <= limit && (!b.found || c.accuracy > b.best.accuracy)) {
        b.best = c;
        b.found = true;
      }
    }
    best.push_back(b);
  }
  return best;
}

std::vector<Candidate> front_of(const std::vector<Candidate>& evaluated) {
  std::vector<Candidate> front;
  for (size_t i : pareto_front(objectives_of(evaluated))) front.push_back(evaluated[i]);
  return front;
}

json to_json(const Candidate& c) {
  return {{"subnet", c.subnet}, {"accuracy", c.accuracy}, {"latency_ms", c.latency_ms}, {"mflops", c.mflops}};
}

Candidate candidate_from_json(const json& j) {
  Candidate c;
  c.subnet = j.at("subnet").get<std::string>();
  c.accuracy = j.at("accuracy").get<double>();
  c.latency_ms = j.at("latency_ms").get<double>();
  c.mflops = j.at("mflops").get<double>();
  return c;
}

}  // namespace qnas::search
