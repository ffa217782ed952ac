// `qnas run`'s budgets as data and its run state: presets, overrides, the stage fingerprints that decide what
// a rerun keeps, and the run directories it refuses.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/fs.h"
#include "pipeline/run_config.h"
#include "pipeline/run_state.h"
#include "test_util.h"

namespace qnas::pipeline {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using qnas::testing::error_message;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("qnas_test_pipeline_" + name);
  fs::remove_all(dir);
  return dir;
}

TEST(RunConfig, EveryPresetHasTheSameKeysAndValidates) {
  const json quick = preset_config("quick");
  for (const auto& name : preset_names()) {
    const json c = preset_config(name);
    validate_config(c);
    ASSERT_EQ(c.size(), quick.size()) << name;
    for (const auto& [key, value] : quick.items()) {
      ASSERT_TRUE(c.contains(key)) << name << " lacks " << key;
      if (value.is_object()) {
        EXPECT_EQ(c[key].size(), value.size()) << name << "." << key;
      }
    }
  }
  EXPECT_CONTAINS(error_message([] { preset_config("huge"); }), "unknown preset 'huge'");
}

TEST(RunConfig, OverridesMergeKeyByKeyAndBadOnesNameThePath) {
  const json base = preset_config("tiny");
  const json merged =
      merge_config(base, json::parse(R"({"supernet": {"epochs": 3}, "finish": {"ort": false}})"), "f.json");
  EXPECT_EQ(merged["supernet"]["epochs"], 3);
  EXPECT_EQ(merged["supernet"]["lr"], base["supernet"]["lr"]);
  EXPECT_EQ(merged["finish"]["ort"], false);
  EXPECT_CONTAINS(
      error_message([&] { merge_config(base, json::parse(R"({"supernet": {"epochz": 3}})"), "f.json"); }),
      "unknown pipeline config key 'supernet.epochz'");
  EXPECT_CONTAINS(error_message([&] { merge_config(base, json::parse(R"({"teacher": 3})"), "f.json"); }),
                  "'teacher' must be an object");
  EXPECT_CONTAINS(
      error_message([&] { merge_config(base, json::parse(R"({"finish": {"ort": "yes"}})"), "f.json"); }),
      "'finish.ort' must be a boolean");
  EXPECT_CONTAINS(
      error_message([&] { merge_config(base, json::parse(R"({"supernet": {"batch_size": 1}})"), "f.json"); }),
      "batch_size must be at least 2");
  EXPECT_CONTAINS(error_message([&] {
                    merge_config(base, json::parse(R"({"latency": {"limit_quantiles": [1.5]}})"), "f.json");
                  }),
                  "1.5 is not in (0, 1]");
  EXPECT_CONTAINS(error_message([&] { merge_config(base, json::parse("[1]"), "f.json"); }),
                  "must be a JSON object");
}

TEST(RunConfig, TheTableListsEveryPresetSideBySide) {
  const std::string table = presets_table();
  EXPECT_CONTAINS(table, "| setting | tiny | quick | full |");
  EXPECT_CONTAINS(table, "| supernet.epochs |");
  EXPECT_CONTAINS(table, "| latency.limit_quantiles |");
}

TEST(RunState, AStageIsKeptOnlyWhileItsFingerprintHolds) {
  const fs::path dir = fresh_dir("state");
  {
    RunState s = RunState::open(dir);
    fs::create_directories(dir);
    const std::string fp = RunState::fingerprint({{"epochs", 1}}, {"abc"});
    EXPECT_FALSE(s.is_complete("teacher", fp));
    s.complete("teacher", fp, {{"epochs", 1}}, {{"accuracy", 0.5}}, 3.0);
  }
  const RunState s = RunState::open(dir);
  EXPECT_TRUE(s.is_complete("teacher", RunState::fingerprint({{"epochs", 1}}, {"abc"})));
  EXPECT_FALSE(s.is_complete("teacher", RunState::fingerprint({{"epochs", 2}}, {"abc"})));
  EXPECT_FALSE(
      s.is_complete("teacher", RunState::fingerprint({{"epochs", 1}}, {"abd"})));  // an input changed
  EXPECT_EQ(s.result("teacher")["accuracy"], 0.5);
  EXPECT_DOUBLE_EQ(s.seconds("teacher"), 3.0);
  EXPECT_EQ(s.changes("teacher", {{"epochs", 2}}), std::vector<std::string>{"epochs: 1 -> 2"});
  EXPECT_CONTAINS(error_message([&] { s.result("supernet"); }), "stage supernet has not finished");
}

TEST(RunState, ADirectoryOfAnotherKindIsRefusedAndLeftAlone) {
  const fs::path train = fresh_dir("train_run");
  fs::create_directories(train);
  std::ofstream(train / "checkpoint.pt") << "x";
  EXPECT_CONTAINS(error_message([&] { RunState::open(train); }), "holds a `qnas train` run");
  EXPECT_TRUE(fs::exists(train / "checkpoint.pt"));

  const fs::path foreign = fresh_dir("foreign_state");
  fs::create_directories(foreign);
  write_json_atomic(foreign / "pipeline.json", {{"format", "other-1"}, {"stages", json::object()}});
  EXPECT_CONTAINS(error_message([&] { RunState::open(foreign); }), "is not a qnas-run-1 state file");

  const fs::path corrupt = fresh_dir("corrupt_state");
  fs::create_directories(corrupt);
  std::ofstream(corrupt / "pipeline.json") << "{\"format\": \"qnas-run-1\", ";
  EXPECT_CONTAINS(error_message([&] { RunState::open(corrupt); }), "is unreadable");

  const fs::path file = fresh_dir("a_file");
  std::ofstream(file) << "x";
  EXPECT_CONTAINS(error_message([&] { RunState::open(file); }), "is a file");
}

}  // namespace
}  // namespace qnas::pipeline
