// `qnas run --preset tiny` killed with SIGKILL twice at seeded random points, then once inside the block-LUT
// build, and started again each time ends with the same results as an uninterrupted run, and never redoes a
// stage that had finished.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/fs.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("qnas_test_run_" + std::to_string(getpid()) + "_" + name);
  fs::remove_all(dir);
  return dir;
}

pid_t start(const std::vector<std::string>& args, const fs::path& log) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  EXPECT_EQ(rc, 0) << "cannot start " << argv[0];
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Starts `args`, polls `ready` every `poll` until it holds, waits `delay_seconds` more and kills the run with
// SIGKILL. False when the run ended on its own before the kill.
bool start_and_kill_when(const std::vector<std::string>& args, const fs::path& log,
                         const std::function<bool()>& ready, std::chrono::milliseconds poll,
                         double delay_seconds) {
  const pid_t pid = start(args, log);
  int status = 0;
  while (!ready()) {
    std::this_thread::sleep_for(poll);
    if (waitpid(pid, &status, WNOHANG) == pid) return false;
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(delay_seconds));
  ::kill(pid, SIGKILL);
  return wait_exit(pid) == 128 + SIGKILL;
}

std::vector<std::string> finished_stages(const fs::path& run_dir) {
  std::vector<std::string> names;
  if (!fs::exists(run_dir / "pipeline.json")) return names;
  // Kept in a variable: a range-for over items() of a temporary would iterate a destroyed object.
  const json state = qnas::read_json_file(run_dir / "pipeline.json");
  for (const auto& [name, v] : state.at("stages").items()) names.push_back(name);
  return names;
}

// The reproducible part of a run's summary, without the file paths that name the run directory.
json results_of(const fs::path& run_dir) {
  json r = qnas::read_json_file(run_dir / "summary.json").at("results");
  for (const char* side : {"evolved", "baseline"})
    for (auto& row : r[side]) row.erase("model");
  return r;
}

TEST(RunPipeline, KilledThreeTimesItResumesToTheSameResultsWithoutRedoingFinishedStages) {
  const fs::path cache = scratch("cache"), reference = scratch("reference"), killed = scratch("killed");
  auto command = [&](const fs::path& dir) {
    // One thread: CTest runs another case beside this one on a 2-core CI machine, and two OpenMP pools of two
    // threads each on two cores crawl (the suite's first run of this test took 17 minutes that way).
    return std::vector<std::string>{QNAS_BINARY, "run",       "--preset",   "tiny",        "--threads",
                                    "1",         "--run-dir", dir.string(), "--cache-dir", cache.string()};
  };
  // The reference also fills the latency cache, so both runs time nothing the other did not.
  ASSERT_EQ(wait_exit(start(command(reference), scratch("reference.log"))), 0)
      << read_text(scratch("reference.log"));
  {
    // The tiny preset's "flops" budget: the baseline's shorter QAT epoch shrinks with its FP32 epochs.
    const json stages = qnas::read_json_file(reference / "pipeline.json").at("stages");
    const json& evolved = stages.at("supernet").at("result");
    const json& baseline = stages.at("baseline-supernet").at("result");
    const double ratio = baseline.at("train_images").get<double>() / evolved.at("train_images").get<double>();
    ASSERT_LT(evolved.at("qat_train_images").get<double>(), evolved.at("train_images").get<double>());
    EXPECT_NEAR(baseline.at("qat_train_images").get<double>(),
                std::max(32.0, evolved.at("qat_train_images").get<double>() * ratio), 1.0);
  }

  // Each start is killed at a seeded random moment 0-3 s after one more stage has finished, so every kill
  // lands inside a stage and every start gets further than the one before.
  const fs::path log = scratch("killed.log");
  std::mt19937 rng(20261202);
  std::uniform_real_distribution<double> delay(0.0, 3.0);
  std::vector<std::string> done_before_last_start;
  for (int kill = 0; kill < 2; ++kill) {
    const size_t done = finished_stages(killed).size();
    auto one_more_stage_done = [&] {
      return finished_stages(killed).size() > done + static_cast<size_t>(kill == 0);
    };
    ASSERT_TRUE(start_and_kill_when(command(killed), log, one_more_stage_done, std::chrono::milliseconds(100),
                                    delay(rng)))
        << "the run ended before it was killed: lengthen the tiny preset\n"
        << read_text(log);
  }
  // A third kill lands inside the block-LUT build once it has written a file: the builder must keep the files
  // written before a SIGKILL and build only the rest (issue 16's build-lut kill test, through the real CLI).
  const fs::path lut_dir = killed / "block-lut" / "lut";
  auto lut_files = [&] {
    std::size_t n = 0;
    if (fs::exists(lut_dir))
      for (const auto& e : fs::directory_iterator(lut_dir)) n += e.path().extension() == ".csv";
    return n;
  };
  ASSERT_TRUE(start_and_kill_when(
      command(killed), log, [&] { return lut_files() > 0; }, std::chrono::milliseconds(20), 0.0))
      << "the run ended before the block-LUT build was killed:\n"
      << read_text(log);
  const std::size_t files_before_kill = lut_files();
  done_before_last_start = finished_stages(killed);
  ASSERT_EQ(std::count(done_before_last_start.begin(), done_before_last_start.end(), "block-lut"), 0)
      << "the block-LUT build finished before the kill";
  std::ofstream(log, std::ios::app) << "\n=== final start ===\n";
  ASSERT_EQ(wait_exit(start(command(killed), log)), 0) << read_text(log);

  const std::string text = read_text(log);
  const std::string last = text.substr(text.rfind("=== final start ==="));
  for (const auto& stage : done_before_last_start) {
    EXPECT_NE(last.find(" " + stage + ": done earlier"), std::string::npos) << stage << " was redone:\n"
                                                                            << last;
  }
  EXPECT_FALSE(done_before_last_start.empty()) << "every kill came before the first stage finished";
  EXPECT_EQ(results_of(killed), results_of(reference));
  {
    const json state = qnas::read_json_file(killed / "pipeline.json");
    const json& block_lut = state.at("stages").at("block-lut").at("result");
    EXPECT_GE(block_lut.at("files_kept").get<std::size_t>(), files_before_kill);
    EXPECT_GT(block_lut.at("files_kept").get<std::size_t>(), 0u);
    EXPECT_EQ(block_lut.at("files"), qnas::read_json_file(reference / "pipeline.json")
                                         .at("stages")
                                         .at("block-lut")
                                         .at("result")
                                         .at("files"));
  }
  for (const char* f : {"report.md", "report.html", "summary.json", "report-front.svg"})
    EXPECT_TRUE(fs::exists(killed / f)) << f;
  fs::remove_all(cache);
  fs::remove_all(reference);
  fs::remove_all(killed);
}

}  // namespace
