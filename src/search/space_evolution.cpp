#include "search/space_evolution.h"

#include <algorithm>
#include <deque>
#include <unordered_set>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/rng.h"

namespace qnas::search {
namespace {

using nlohmann::json;
using space::SearchSpace;
namespace fs = std::filesystem;

struct Choices {
  std::vector<int> blocks, windows;
};

std::vector<int> window_counts(const space::Hyperspace& hs) {
  std::vector<int> counts;
  for (int i = 0; i < hs.num_choosable_stages(); ++i)
    counts.push_back(hs.stages[hs.choosable_stage_index(i)].num_windows());
  return counts;
}

// Everything a checkpoint must agree on before a run may continue from it.
json run_identity(const BlockLutSet& luts, const QtOptions& qt, const EvolutionOptions& options) {
  return {{"hyperspace", luts.hyperspace().name},
          {"lut_dir", fs::absolute(luts.dir()).lexically_normal().string()},
          {"latency_limits_ms", qt.latency_limits_ms},
          {"samples", qt.samples},
          {"top", qt.top},
          {"t", qt.t},
          {"a", qt.a},
          {"form", qt.form == QtForm::kTopK ? "topk" : "expectation"},
          {"fixed_latency_ms", qt.fixed_latency_ms},
          {"qt_seed", qt.seed},
          {"population", options.population},
          {"sample", options.sample},
          {"seed", options.seed}};
}

class Evolution {
 public:
  Evolution(const BlockLutSet& luts, const QtOptions& qt, const EvolutionOptions& options)
      : luts_(luts),
        qt_(qt),
        options_(options),
        rng_(options.seed),
        windows_(window_counts(luts.hyperspace())) {}

  EvolutionResult run() {
    if (options_.population < 2 || options_.sample < 1 || options_.sample > options_.population) {
      fail("space search: need population >= 2 and 1 <= sample <= population (got {} and {})",
           options_.population, options_.sample);
    }
    if (!options_.checkpoint.empty() && fs::exists(options_.checkpoint)) restore();
    ProgressLine progress("space search", options_.evaluations, "spaces",
                          options_.show_progress ? stderr : nullptr);
    progress_ = &progress;
    seed_population();
    int stalled = 0;
    while (size() < options_.evaluations && stalled <= 100000) {
      // Both children of a cycle are drawn before either is evaluated and wait in `pending_`, which the
      // checkpoint keeps: a run stopped between the two children resumes exactly where it was.
      if (pending_.empty()) {
        const Choices parent = pick_parent();
        pending_.push_back(mutate_block(parent));
        pending_.push_back(mutate_window(parent));
      }
      const Choices child = pending_.front();
      pending_.pop_front();
      const int before = size();
      try_child(child);
      // Every neighbour of every member already seen: the space of spaces is exhausted.
      stalled = size() == before ? stalled + 1 : 0;
    }
    save_checkpoint();
    progress.finish(
        fmt::format("best {:.4f}", result_.best_so_far.empty() ? 0.0 : result_.best_so_far.back()));
    return std::move(result_);
  }

 private:
  int size() const { return static_cast<int>(result_.history.size()); }

  void seed_population() {
    const int blocks = static_cast<int>(luts_.hyperspace().candidates.size());
    const int max_windows = *std::max_element(windows_.begin(), windows_.end());
    // The official initial population: each block type everywhere, at each window index (clamped per stage).
    for (int b = 0; b < blocks && population_.size() < static_cast<size_t>(options_.population); ++b) {
      for (int w = 0; w < max_windows && population_.size() < static_cast<size_t>(options_.population); ++w) {
        Choices c{std::vector<int>(windows_.size(), b), {}};
        for (int count : windows_) c.windows.push_back(std::min(w, count - 1));
        if (size() >= options_.evaluations) return;
        if (!seen_.count(SearchSpace(luts_.hyperspace(), c.blocks, c.windows).encode())) try_child(c);
      }
    }
    int attempts = 0;
    while (population_.size() < static_cast<size_t>(options_.population) && size() < options_.evaluations &&
           attempts++ < 1000000) {
      Choices c;
      for (int count : windows_) {
        c.blocks.push_back(static_cast<int>(rng_.below(blocks)));
        c.windows.push_back(static_cast<int>(rng_.below(count)));
      }
      try_child(c);
    }
  }

  Choices pick_parent() {
    std::vector<size_t> order(population_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    // Partial Fisher-Yates: the first `sample` entries are a uniform sample without replacement.
    const size_t take = std::min<size_t>(options_.sample, order.size());
    for (size_t i = 0; i < take; ++i) std::swap(order[i], order[i + rng_.below(order.size() - i)]);
    size_t best = order[0];
    for (size_t i = 1; i < take; ++i) {
      if (result_.history[population_[order[i]]].score > result_.history[population_[best]].score)
        best = order[i];
    }
    const SearchSpace parent = SearchSpace::parse(result_.history[population_[best]].space);
    return Choices{parent.block_choices(), parent.window_choices()};
  }

  Choices mutate_block(Choices c) {
    const int blocks = static_cast<int>(luts_.hyperspace().candidates.size());
    const size_t stage = rng_.below(c.blocks.size());
    int value = c.blocks[stage];
    while (blocks > 1 && value == c.blocks[stage]) value = static_cast<int>(rng_.below(blocks));
    c.blocks[stage] = value;
    return c;
  }

  Choices mutate_window(Choices c) {
    const size_t stage = rng_.below(c.windows.size());
    int value = c.windows[stage];
    while (windows_[stage] > 1 && value == c.windows[stage])
      value = static_cast<int>(rng_.below(windows_[stage]));
    c.windows[stage] = value;
    return c;
  }

  void try_child(const Choices& c) {
    const SearchSpace space(luts_.hyperspace(), c.blocks, c.windows);
    const std::string encoding = space.encode();
    if (!seen_.insert(encoding).second) {
      ++result_.skipped_duplicates;
      return;
    }
    QtScore score = qt_score(luts_, space, qt_);
    const double best =
        std::max(result_.best_so_far.empty() ? score.score : result_.best_so_far.back(), score.score);
    result_.history.push_back(std::move(score));
    result_.best_so_far.push_back(best);
    population_.push_back(size() - 1);
    if (population_.size() > static_cast<size_t>(options_.population)) population_.pop_front();
    if (progress_) progress_->update(size(), fmt::format("best {:.4f}", best));
    if (!options_.checkpoint.empty() && size() % options_.checkpoint_every == 0) save_checkpoint();
  }

  void save_checkpoint() const {
    if (options_.checkpoint.empty()) return;
    json history = json::array();
    for (const auto& s : result_.history) history.push_back(to_json(s));
    json pending = json::array();
    for (const auto& c : pending_) pending.push_back({{"blocks", c.blocks}, {"windows", c.windows}});
    write_json_atomic(options_.checkpoint, {{"identity", run_identity(luts_, qt_, options_)},
                                            {"history", history},
                                            {"pending", pending},
                                            {"population", population_},
                                            {"skipped_duplicates", result_.skipped_duplicates},
                                            {"rng", rng_.state()}});
  }

  void restore() {
    const json saved = read_json_file(options_.checkpoint);
    const json identity = run_identity(luts_, qt_, options_);
    if (saved.value("identity", json()) != identity) {
      fail(
          "checkpoint {} belongs to another search (different LUTs, limits, seed or sizes); use another "
          "--out "
          "directory or delete it to start over",
          options_.checkpoint.string());
    }
    try {
      for (const auto& s : saved.at("history")) {
        result_.history.push_back(qt_score_from_json(s));
        const double score = result_.history.back().score;
        result_.best_so_far.push_back(
            result_.best_so_far.empty() ? score : std::max(result_.best_so_far.back(), score));
        seen_.insert(result_.history.back().space);
      }
      for (const auto& index : saved.at("population")) population_.push_back(index.get<int>());
      for (const auto& c : saved.at("pending")) {
        pending_.push_back({c.at("blocks").get<std::vector<int>>(), c.at("windows").get<std::vector<int>>()});
      }
      result_.skipped_duplicates = saved.at("skipped_duplicates").get<int>();
      rng_.restore(saved.at("rng").get<std::string>());
    } catch (const json::exception& e) {
      fail("checkpoint {} is corrupt ({}); delete it to start over", options_.checkpoint.string(), e.what());
    }
    result_.resumed = true;
  }

  const BlockLutSet& luts_;
  const QtOptions& qt_;
  const EvolutionOptions& options_;
  Rng rng_;
  std::vector<int> windows_;
  std::deque<int> population_;   // indices into history, oldest first
  std::deque<Choices> pending_;  // children drawn but not yet evaluated
  std::unordered_set<std::string> seen_;
  EvolutionResult result_;
  ProgressLine* progress_ = nullptr;
};

}  // namespace

std::vector<QtScore> EvolutionResult::top(size_t count) const {
  std::vector<QtScore> sorted = history;
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const QtScore& a, const QtScore& b) { return a.score > b.score; });
  sorted.resize(std::min(count, sorted.size()));
  return sorted;
}

EvolutionResult evolve_spaces(const BlockLutSet& luts, const QtOptions& qt, const EvolutionOptions& options) {
  return Evolution(luts, qt, options).run();
}

json to_json(const QtScore& score) {
  json limits = json::array();
  for (const auto& l : score.limits) {
    limits.push_back({{"limit_ms", l.limit_ms},
                      {"p", l.p},
                      {"avg_loss", l.avg_loss},
                      {"latency_loss", l.latency_loss},
                      {"score", l.score}});
  }
  return {{"space", score.space},
          {"score", score.score},
          {"min_latency_ms", score.min_latency_ms},
          {"max_latency_ms", score.max_latency_ms},
          {"limits", limits}};
}

QtScore qt_score_from_json(const json& value) {
  QtScore score;
  score.space = value.at("space").get<std::string>();
  score.score = value.at("score").get<double>();
  score.min_latency_ms = value.at("min_latency_ms").get<double>();
  score.max_latency_ms = value.at("max_latency_ms").get<double>();
  for (const auto& l : value.at("limits")) {
    score.limits.push_back({l.at("limit_ms").get<double>(), l.at("p").get<double>(),
                            l.at("avg_loss").get<double>(), l.at("latency_loss").get<double>(),
                            l.at("score").get<double>()});
  }
  return score;
}

}  // namespace qnas::search
