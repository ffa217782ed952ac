#include "search/space_evolution.h"

#include <set>

#include <gtest/gtest.h>

#include "core/error.h"
#include "core/fs.h"
#include "lut_fixture.h"

using namespace qnas::search;
namespace fs = std::filesystem;

namespace {
// Loss falls with the block index and rises with the window, latency rises with the window: a landscape whose
// best space under a loose limit is block 5 everywhere at window 0.
BlockLutSet block_landscape() {
  static const auto dir =
      qnas::testing::write_fmnistw_luts("landscape", [](int stage, int block, int window) {
        std::vector<std::string> rows;
        for (int r = 0; r < 8; ++r) {
          const double loss = 1.0 - 0.1 * block + 0.05 * window + 0.01 * ((r + stage) % 3);
          rows.push_back(std::to_string(loss) + ",1,0.1," + std::to_string(1.0 + 0.5 * window + 0.1 * r));
        }
        return rows;
      });
  return BlockLutSet::load(dir, qnas::space::find_hyperspace("fmnistw"));
}

QtOptions small_qt() {
  QtOptions qt;
  qt.samples = 2000;
  qt.top = 10;
  qt.latency_limits_ms = {12.0};
  qt.seed = 1;
  return qt;
}
}  // namespace

TEST(SpaceEvolution, FindsTheBestSpaceAndNeverRepeatsOne) {
  const BlockLutSet luts = block_landscape();
  EvolutionOptions options;
  options.population = 40;
  options.sample = 10;
  options.evaluations = 400;
  options.seed = 5;
  options.show_progress = false;
  const EvolutionResult result = evolve_spaces(luts, small_qt(), options);
  ASSERT_EQ(result.history.size(), 400u);
  std::set<std::string> distinct;
  for (const auto& s : result.history) distinct.insert(s.space);
  EXPECT_EQ(distinct.size(), 400u);
  EXPECT_EQ(result.top(1)[0].space, "fmnistw-555555-000000");
  for (size_t i = 1; i < result.best_so_far.size(); ++i)
    EXPECT_GE(result.best_so_far[i], result.best_so_far[i - 1]);
  // The uniform spaces come first, as in the official initial population.
  EXPECT_EQ(result.history[0].space, "fmnistw-000000-000000");
}

TEST(SpaceEvolution, ResumeFromCheckpointEqualsAnUninterruptedRun) {
  const BlockLutSet luts = block_landscape();
  const QtOptions qt = small_qt();
  EvolutionOptions options;
  options.population = 30;
  options.sample = 8;
  options.seed = 9;
  options.show_progress = false;
  options.checkpoint_every = 50;

  const fs::path whole_dir = fs::temp_directory_path() / "qnas_test_evo_whole";
  const fs::path parts_dir = fs::temp_directory_path() / "qnas_test_evo_parts";
  fs::remove_all(whole_dir);
  fs::remove_all(parts_dir);

  options.evaluations = 300;
  options.checkpoint = whole_dir / "checkpoint.json";
  const EvolutionResult whole = evolve_spaces(luts, qt, options);

  // "Kill" after 150 evaluations (the checkpoint is what a killed run leaves), then resume to 300.
  options.checkpoint = parts_dir / "checkpoint.json";
  options.evaluations = 150;
  evolve_spaces(luts, qt, options);
  options.evaluations = 300;
  const EvolutionResult resumed = evolve_spaces(luts, qt, options);
  EXPECT_TRUE(resumed.resumed);
  ASSERT_EQ(resumed.history.size(), whole.history.size());
  for (size_t i = 0; i < whole.history.size(); ++i) {
    EXPECT_EQ(resumed.history[i].space, whole.history[i].space) << i;
    EXPECT_EQ(resumed.history[i].score, whole.history[i].score) << i;
  }
}

TEST(SpaceEvolution, RefusesACheckpointOfAnotherSearch) {
  const BlockLutSet luts = block_landscape();
  EvolutionOptions options;
  options.population = 10;
  options.sample = 3;
  options.evaluations = 20;
  options.show_progress = false;
  options.checkpoint = fs::temp_directory_path() / "qnas_test_evo_other" / "checkpoint.json";
  fs::remove_all(options.checkpoint.parent_path());
  evolve_spaces(luts, small_qt(), options);
  QtOptions other = small_qt();
  other.latency_limits_ms = {20.0};
  try {
    evolve_spaces(luts, other, options);
    FAIL();
  } catch (const qnas::Error& e) {
    EXPECT_NE(std::string(e.what()).find("belongs to another search"), std::string::npos);
  }
  qnas::write_file_atomic(options.checkpoint, "{\"identity\": 1");
  EXPECT_THROW(evolve_spaces(luts, small_qt(), options), qnas::Error);
}
