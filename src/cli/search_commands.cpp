// `qnas space-search`: SpaceEvo's search for the search space, on block LUTs (official or our own).
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/format.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/stats.h"
#include "search/space_evolution.h"
#include "space/published.h"

namespace qnas::cli {
namespace {

using namespace qnas::search;
using nlohmann::json;
namespace fs = std::filesystem;

struct SpaceSearchArgs {
  std::string lut_dir, hyperspace, out_dir, fixed_latency, form = "topk";
  std::vector<double> limits;
  std::vector<std::string> score_only, rank_runs;
  int population = 500, sample = 125, evaluations = 5000, top = 50, threads = 0;
  std::int64_t samples = 100000;
  double t = 0.1, a = 0.01;
  std::uint64_t seed = 0;
  bool json = false;
};

// What `qnas build-lut` measured for the stages its LUTs leave out, as "RES:MS,...", or "0" without it
// (the official LUTs: there the number is an input).
std::string recorded_fixed_latency(const std::string& lut_dir) {
  const fs::path file = fs::path(lut_dir) / "fixed_latency.json";
  if (!fs::exists(file)) return "0";
  const json j = read_json_file(file);
  std::string text;
  for (const auto& [res, ms] : j.items()) {
    if (!ms.is_number()) fail("{}: the latency for resolution {} must be a number of ms", file.string(), res);
    text += fmt::format("{}{}:{}", text.empty() ? "" : ",", res, ms.get<double>());
  }
  return text.empty() ? "0" : text;
}

QtOptions qt_options(const SpaceSearchArgs& args, const BlockLutSet& luts) {
  QtOptions qt;
  qt.latency_limits_ms = args.limits;
  qt.samples = args.samples;
  qt.top = args.top;
  qt.t = args.t;
  qt.a = args.a;
  qt.form = args.form == "expectation" ? QtForm::kExpectation : QtForm::kTopK;
  qt.fixed_latency_ms = parse_fixed_latency(
      args.fixed_latency.empty() ? recorded_fixed_latency(args.lut_dir) : args.fixed_latency,
      luts.resolutions());
  qt.seed = args.seed;
  qt.threads = args.threads;
  return qt;
}

Table score_table(const std::vector<QtScore>& scores) {
  std::vector<std::string> header = {"space", "Q-T score"};
  if (!scores.empty()) {
    for (const auto& l : scores.front().limits) header.push_back(fmt::format("p/loss@{:.4g}ms", l.limit_ms));
  }
  header.push_back("latency range (ms)");
  Table table(header);
  for (const auto& s : scores) {
    std::vector<std::string> row = {s.space, fmt::format("{:.4f}", s.score)};
    for (const auto& l : s.limits) row.push_back(fmt::format("{:.3f}/{:.3f}", l.p, l.avg_loss));
    row.push_back(fmt::format("{:.2f}-{:.2f}", s.min_latency_ms, s.max_latency_ms));
    table.add_row(row);
  }
  return table;
}

void score_spaces(const SpaceSearchArgs& args, const BlockLutSet& luts, const QtOptions& qt) {
  std::vector<QtScore> scores;
  for (const auto& text : args.score_only)
    scores.push_back(qt_score(luts, space::parse_space_or_published(text), qt));
  if (args.json) {
    json out = json::array();
    for (const auto& s : scores) out.push_back(to_json(s));
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("%s", score_table(scores).render().c_str());
  }
}

// The subnet search of a trained supernet: DIR/best.json, or DIR/subnet-search/best.json for a run directory.
json read_best(const std::string& dir) {
  fs::path file = fs::path(dir) / "best.json";
  if (!fs::exists(file)) file = fs::path(dir) / "subnet-search" / "best.json";
  if (!fs::exists(file)) {
    fail(
        "{} has no subnet search: run `qnas subnet-search --run-dir {} --latency-lut ... --limits ...` on it "
        "first",
        dir, dir);
  }
  return read_json_file(file);
}

// The mean accuracy of a search's best subnets over its limits: test fake-quant when the search measured it,
// else held-out; -1 when no limit has a subnet.
double mean_best_accuracy(const json& best) {
  double sum = 0;
  int counted = 0;
  const std::string algorithm = best.value("algorithm", std::string());
  for (const auto& row : best.value("best", json::array())) {
    if (!row.value("found", false) || !row.contains(algorithm)) continue;
    const json& b = row.at(algorithm);
    sum += b.value("test_accuracy_fakequant", b.value("heldout_accuracy", 0.0));
    ++counted;
  }
  return counted ? sum / counted : -1.0;
}

// Does the Q-T score rank spaces as their trained supernets do? Each directory holds a subnet search of a
// trained supernet: its space and the mean INT8 accuracy of its best subnets under the limits.
void rank_runs(const SpaceSearchArgs& args, const BlockLutSet& luts, const QtOptions& qt) {
  if (args.rank_runs.size() < 2) fail("--rank-runs needs at least two run directories");
  std::vector<double> scores, accuracies;
  Table table({"space", "Q-T score", "mean best INT8 accuracy", "run"});
  json rows = json::array();
  for (const auto& dir : args.rank_runs) {
    const json best = read_best(dir);
    const double accuracy = mean_best_accuracy(best);
    if (accuracy < 0)
      fail("the subnet search of {} found no subnet within any limit: search it with larger --limits", dir);
    const std::string space = best.at("space");
    const QtScore score = qt_score(luts, space::parse_space_or_published(space), qt);
    scores.push_back(score.score);
    accuracies.push_back(accuracy);
    table.add_row(
        {space, fmt::format("{:.4f}", score.score), fmt::format("{:.2f}%", 100 * accuracies.back()), dir});
    rows.push_back({{"space", space},
                    {"qt_score", score.score},
                    {"mean_best_accuracy", accuracies.back()},
                    {"run", dir},
                    {"limits_ms", best.value("limits_ms", json::array())}});
  }
  const double tau = kendall_tau(scores, accuracies);
  if (args.json) {
    std::printf("%s\n", json{{"kendall_tau", tau}, {"spaces", rows}}.dump(2).c_str());
  } else {
    std::printf("%sKendall tau (Q-T score vs mean best INT8 accuracy): %.3f over %zu spaces\n",
                table.render().c_str(), tau, scores.size());
  }
}

void write_history_csv(const fs::path& path, const EvolutionResult& result) {
  std::string csv = "evaluation,space,score,best_so_far\n";
  for (size_t i = 0; i < result.history.size(); ++i) {
    csv += fmt::format("{},{},{:.6f},{:.6f}\n", i + 1, result.history[i].space, result.history[i].score,
                       result.best_so_far[i]);
  }
  write_file_atomic(path, csv);
}

void run_search(const SpaceSearchArgs& args, const BlockLutSet& luts, const QtOptions& qt) {
  const fs::path out = args.out_dir.empty() ? fs::path("runs") / "space-search" / luts.hyperspace().name
                                            : fs::path(args.out_dir);
  EvolutionOptions options;
  options.population = args.population;
  options.sample = args.sample;
  options.evaluations = args.evaluations;
  options.seed = args.seed;
  options.checkpoint = out / "checkpoint.json";
  require_writable_directory(out, "--out");
  const auto start = std::chrono::steady_clock::now();
  const EvolutionResult result = evolve_spaces(luts, qt, options);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const auto best = result.top(10);
  json top = json::array();
  for (const auto& s : best) top.push_back(to_json(s));
  const json summary = {
      {"hyperspace", luts.hyperspace().name},
      {"lut_dir", luts.dir().string()},
      {"latency_limits_ms", args.limits},
      {"fixed_latency_ms", qt.fixed_latency_ms},
      {"samples_per_space", args.samples},
      {"population", args.population},
      {"sample", args.sample},
      {"evaluations", result.history.size()},
      {"skipped_duplicates", result.skipped_duplicates},
      {"seed", args.seed},
      {"threads", args.threads > 0 ? args.threads : static_cast<int>(std::thread::hardware_concurrency())},
      {"resumed", result.resumed},
      {"wall_seconds_this_run", wall},
      {"best", top}};
  write_json_atomic(out / "result.json", summary);
  write_history_csv(out / "history.csv", result);
  const std::string table = score_table(best).render();
  write_file_atomic(out / "result.txt", table);
  if (args.json) {
    std::printf("%s\n", summary.dump(2).c_str());
  } else {
    std::printf(
        "best spaces of %zu evaluated (%d duplicates skipped) in %.1f s%s:\n%s\nwritten: %s/{result.json,"
        "result.txt,history.csv}\n",
        result.history.size(), result.skipped_duplicates, wall, result.resumed ? " (resumed)" : "",
        table.c_str(), out.string().c_str());
  }
}

}  // namespace

void add_search_commands(CLI::App& app) {
  auto args = std::make_shared<SpaceSearchArgs>();
  CLI::App* cmd = app.add_subcommand(
      "space-search",
      "Search for the search space (SpaceEvo aging evolution on the Q-T score of block LUTs)");
  cmd->add_option("--lut", args->lut_dir, "directory of block LUT CSVs (stage{i}_{block}_{window}.csv)")
      ->required();
  cmd->add_option("--hyperspace", args->hyperspace, "hyperspace the LUTs belong to (onnxw, mobilew, fmnistw)")
      ->required();
  cmd->add_option("--latency", args->limits, "latency limits in ms (one or more)")
      ->required()
      ->expected(1, -1);
  cmd->add_option("--score", args->score_only,
                  "score these spaces (encodings or published names) instead of searching")
      ->expected(1, -1);
  cmd->add_option(
         "--rank-runs", args->rank_runs,
         "instead of searching: Kendall tau between the Q-T score and the trained quality of these "
         "directories holding a `qnas subnet-search` (its best.json, or RUN/subnet-search/best.json)")
      ->expected(2, -1);
  cmd->add_option("--population", args->population, "population size")->check(CLI::Range(2, 1000000));
  cmd->add_option("--sample", args->sample, "members sampled to choose a parent")
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--evaluations", args->evaluations, "spaces to evaluate in total")
      ->check(CLI::Range(1, 10000000));
  cmd->add_option("--samples", args->samples, "subnets sampled per space for the Q-T score")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{100000000}));
  cmd->add_option("--top", args->top, "lowest-loss samples averaged per limit")
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--t", args->t, "latency-loss t (official 0.1)");
  cmd->add_option("--a", args->a, "latency-loss exponent a (official 0.01)");
  cmd->add_option("--form", args->form, "topk (official) or expectation (the paper's E[.|LAT<=T])")
      ->check(CLI::IsMember({"topk", "expectation"}));
  cmd->add_option("--fixed-latency", args->fixed_latency,
                  "latency in ms of the stages the LUTs leave out (first_conv, stage0, heads): one number or "
                  "RES:MS,... per resolution (default: the LUT directory's fixed_latency.json that build-lut "
                  "writes, else 0; the official LUTs need it given)");
  cmd->add_option("--seed", args->seed, "random seed (the whole search is deterministic for a seed)");
  cmd->add_option("--threads", args->threads, "threads for the Q-T sampling (0 = all cores)");
  cmd->add_option("--out", args->out_dir,
                  "output directory (default runs/space-search/<hyperspace>); a checkpoint "
                  "there is resumed");
  cmd->add_flag("--json", args->json, "print JSON");
  cmd->callback([args] {
    const BlockLutSet luts = BlockLutSet::load(args->lut_dir, space::find_hyperspace(args->hyperspace));
    const QtOptions qt = qt_options(*args, luts);
    if (!args->rank_runs.empty()) {
      rank_runs(*args, luts, qt);
    } else if (!args->score_only.empty()) {
      score_spaces(*args, luts, qt);
    } else {
      run_search(*args, luts, qt);
    }
  });
}

}  // namespace qnas::cli
