#pragma once
// Aging (regularized) evolution over search spaces, as SpaceEvo's search_block_kd.py runs it: the population
// starts with the uniform spaces (one block type everywhere, window j everywhere) and random spaces; each
// cycle the best of `sample` random members is the parent and two children are made, one with a new block
// type at one random stage and one with a new width window at one random stage; every new child pushes out
// the oldest member. Spaces already evaluated are skipped (a history set, checked for real).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "search/qt_score.h"

namespace qnas::search {

struct EvolutionOptions {
  int population = 500;
  int sample = 125;
  int evaluations = 5000;
  std::uint64_t seed = 0;
  std::filesystem::path checkpoint;  // empty = no checkpoint; else resumed from when it exists
  int checkpoint_every = 250;        // evaluations between checkpoints
  bool show_progress = true;
};

struct EvolutionResult {
  std::vector<QtScore> history;     // in evaluation order
  std::vector<double> best_so_far;  // best score after each evaluation
  int skipped_duplicates = 0;
  bool resumed = false;
  std::vector<QtScore> top(size_t count) const;
};

EvolutionResult evolve_spaces(const BlockLutSet& luts, const QtOptions& qt, const EvolutionOptions& options);

// JSON forms shared by the checkpoint and the result file.
nlohmann::json to_json(const QtScore& score);
QtScore qt_score_from_json(const nlohmann::json& value);

}  // namespace qnas::search
