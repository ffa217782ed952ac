// `qnas subnet-search`: the best subnets of a trained supernet under INT8 latency limits (evolution, NSGA-II
// or random search), held-out accuracy from the supernet or a predictor, latency from this CPU's block LUT;
// the front measured on the oneDNN INT8 engine and the best per limit on the test set
// (pipeline/subnet_search_job.h).
#include <fmt/format.h>
#include <torch/torch.h>

#include <thread>

#include "cli/deploy.h"
#include "core/error.h"
#include "pipeline/subnet_search_job.h"

namespace qnas::cli {
namespace {

struct SubnetSearchArgs {
  pipeline::SubnetSearchJobOptions job;
  std::string algorithm = "evolution", run_dir, latency_lut, out_dir;
  std::int64_t seed = 0;
  int torch_threads = 0;
  bool no_baseline = false, json_output = false;
};

void run(SubnetSearchArgs& a) {
  if (a.run_dir.empty()) fail("--run-dir is required: a finished `qnas train` supernet run");
  a.job.search.algorithm = search::parse_algorithm(a.algorithm);
  a.job.search.seed = static_cast<std::uint64_t>(a.seed);
  a.job.run_dir = a.run_dir;
  a.job.latency_lut = a.latency_lut;
  a.job.out_dir = a.out_dir;
  a.job.random_baseline = !a.no_baseline;
  torch::set_num_threads(a.torch_threads > 0
                             ? a.torch_threads
                             : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  const auto result = pipeline::run_subnet_search_job(a.job);
  if (a.json_output) {
    std::printf("%s\n", nlohmann::json{{"front", result.front}, {"best", result.best}}.dump(2).c_str());
  } else {
    std::printf("%s\nwritten: %s/{front.json,best.json,front.svg,search.md}\n", result.report.c_str(),
                result.out_dir.c_str());
  }
}

}  // namespace

void add_subnet_search_command(CLI::App& app) {
  auto a = std::make_shared<SubnetSearchArgs>();
  auto& o = a->job;
  auto* cmd = app.add_subcommand(
      "subnet-search",
      "Best subnets of a trained supernet under INT8 latency limits: evolution, NSGA-II or random search");
  cmd->add_option("--run-dir", a->run_dir,
                  "a finished `qnas train` supernet run (trained with held-out images)")
      ->required();
  cmd->add_option("--latency-lut", a->latency_lut,
                  "block latency LUT of this CPU (created, filled and its correction fitted when needed)")
      ->required();
  cmd->add_option("--limits", o.search.limits_ms, "INT8 latency limits in ms")->required();
  cmd->add_option("--algorithm", a->algorithm, "evolution | nsga2 | random")->capture_default_str();
  cmd->add_option("--population", o.search.population, "population size")->capture_default_str();
  cmd->add_option("--generations", o.search.generations, "generations at most")->capture_default_str();
  cmd->add_option("--mutation", o.search.mutation, "probability that a gene is redrawn")
      ->capture_default_str();
  cmd->add_option("--crossover", o.search.crossover,
                  "evolution: share of children by crossover; nsga2: crossover probability")
      ->capture_default_str();
  cmd->add_option("--evaluations", o.search.evaluations,
                  "budget of distinct subnets evaluated, the same for the random baseline (0: population x "
                  "(generations + 1))")
      ->capture_default_str();
  cmd->add_option("--seed", a->seed, "random seed")->capture_default_str();
  cmd->add_option("--evaluator", o.evaluator,
                  "supernet (held-out accuracy) | predictor (ridge on the one-hot encoding, fitted on "
                  "supernet evaluations)")
      ->capture_default_str();
  cmd->add_option("--heldout-images", o.heldout_images, "held-out training images per evaluation (0: all)")
      ->capture_default_str();
  cmd->add_option("--test-images", o.test_images, "test images for the final subnets (0: all)")
      ->capture_default_str();
  cmd->add_option("--predictor-train", o.predictor_train, "subnets the predictor is fitted on")
      ->capture_default_str();
  cmd->add_option("--predictor-test", o.predictor_test, "subnets its Kendall tau and RMSE are measured on")
      ->capture_default_str();
  cmd->add_option("--calibration-nets", o.calibration_networks,
                  "networks measured to fit the LUT correction when the LUT has none")
      ->capture_default_str();
  cmd->add_flag("--no-baseline", a->no_baseline, "skip the random search at the same budget");
  cmd->add_option("--threads", o.threads, "threads of the INT8 engine (LUT and measurements)")
      ->capture_default_str();
  cmd->add_option("--torch-threads", a->torch_threads,
                  "LibTorch threads for evaluations (default: all cores)");
  cmd->add_option("--runs", o.measure.runs, "timed runs per latency measurement")->capture_default_str();
  cmd->add_option("--statistic", o.statistic,
                  "min or median of the timed runs, for the LUT, its correction and the measured front")
      ->capture_default_str();
  cmd->add_option("--data-dir", o.data_dir, "Fashion-MNIST directory")->capture_default_str();
  cmd->add_option("--out", a->out_dir, "results and checkpoints (default RUN_DIR/subnet-search)");
  cmd->add_flag("--json", a->json_output, "print front.json and best.json");
  cmd->callback([a] { run(*a); });
}

}  // namespace qnas::cli
