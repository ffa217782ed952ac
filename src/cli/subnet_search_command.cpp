// `qnas subnet-search`: the best subnets of a trained supernet under INT8 latency limits (evolution, NSGA-II
// or random search), held-out accuracy from the supernet or a predictor, latency from this CPU's block LUT;
// the front measured on the oneDNN INT8 engine and the best per limit on the test set
// (pipeline/subnet_search_job.h).
#include <fmt/format.h>
#include <torch/torch.h>

#include <thread>

#include "cli/deploy.h"
#include "core/error.h"
#include "pipeline/qfa_search_job.h"
#include "pipeline/subnet_search_job.h"

namespace qnas::cli {
namespace {

struct SubnetSearchArgs {
  pipeline::SubnetSearchJobOptions job;
  std::string algorithm = "evolution", run_dir, latency_lut, out_dir, objective = "latency";
  int front_test = 8;
  std::int64_t seed = 0;
  int torch_threads = 0;
  bool no_baseline = false, json_output = false;
};

void run_qfa(SubnetSearchArgs& a) {
  pipeline::QfaSearchJobOptions o;
  o.run_dir = a.run_dir;
  o.out_dir = a.out_dir;
  o.data_dir = a.job.data_dir;
  o.objective = a.objective;
  o.search.population = a.job.search.population;
  o.search.generations = a.job.search.generations;
  o.search.mutation = a.job.search.mutation;
  o.search.crossover = a.job.search.crossover;
  o.search.seed = static_cast<std::uint64_t>(a.seed);
  o.predictor_train = a.job.predictor_train;
  o.predictor_test = a.job.predictor_test;
  o.heldout_images = a.job.heldout_images;
  o.test_images = a.job.test_images;
  o.front_test = a.front_test;
  const auto result = pipeline::run_qfa_search_job(o);
  if (a.json_output) {
    std::printf("%s\n", result.front.dump(2).c_str());
  } else {
    std::printf("%s\nwritten: %s/{front.json,front.csv,front.svg,search.md,assignments/}\n",
                result.report.c_str(), result.out_dir.c_str());
  }
}

void run(SubnetSearchArgs& a) {
  if (a.run_dir.empty()) fail("--run-dir is required: a finished `qnas train` supernet run");
  torch::set_num_threads(a.torch_threads > 0
                             ? a.torch_threads
                             : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  if (a.objective == "bitops" || a.objective == "size") return run_qfa(a);
  if (a.objective != "latency")
    fail(
        "unknown --objective '{}': use latency (INT8 latency limits), bitops or size (QFA, architecture and "
        "bits)",
        a.objective);
  if (a.latency_lut.empty() || a.job.search.limits_ms.empty())
    fail("--objective latency needs --latency-lut FILE and --limits MS...");
  a.job.search.algorithm = search::parse_algorithm(a.algorithm);
  a.job.search.seed = static_cast<std::uint64_t>(a.seed);
  a.job.run_dir = a.run_dir;
  a.job.latency_lut = a.latency_lut;
  a.job.out_dir = a.out_dir;
  a.job.random_baseline = !a.no_baseline;
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
  auto* cmd = app.add_subcommand("subnet-search",
                                 "Best subnets of a trained supernet under INT8 latency limits (evolution, "
                                 "NSGA-II or random search), or "
                                 "QFA's NSGA-II over architecture and bits by BitOPs or model size");
  cmd->add_option("--run-dir", a->run_dir,
                  "a finished `qnas train` supernet run (trained with held-out images)")
      ->required();
  cmd->add_option(
         "--objective", a->objective,
         "latency (INT8 latency limits) | bitops | size (QFA: a supernet trained with --elastic-bits)")
      ->capture_default_str();
  cmd->add_option(
      "--latency-lut", a->latency_lut,
      "latency: block latency LUT of this CPU (created, filled and its correction fitted when needed)");
  cmd->add_option("--limits", o.search.limits_ms, "latency: INT8 latency limits in ms");
  cmd->add_option("--front-test", a->front_test, "bitops/size: front networks measured on the test set")
      ->capture_default_str();
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
  cmd->add_flag(
      "--seed-extremes", o.search.seed_extremes,
      "evolution/nsga2: start the first population with the max and min subnets that fit (as `qnas "
      "run` does); --objective bitops/size always starts from the max and min subnets at each uniform "
      "bit-width");
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
