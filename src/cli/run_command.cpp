// `qnas run`: the CLI side of the pipeline (src/pipeline/run_pipeline.h): parse, then call it.
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/error.h"
#ifdef QNAS_HAVE_PIPELINE
#include "pipeline/run_config.h"
#include "pipeline/run_pipeline.h"
#endif

namespace qnas::cli {
namespace {

struct RunArgs {
  std::string data = "fashion-mnist", preset = "quick", run_dir, config_file, cache_dir, until,
              device = "cpu";
  std::vector<double> limits;
  int threads = 0;
  std::uint64_t seed = 0;
  bool dry_run = false;
};

#ifdef QNAS_HAVE_PIPELINE
void run(const RunArgs& a) {
  pipeline::RunOptions o;
  o.data = a.data;
  o.preset = a.preset;
  o.limits_ms = a.limits;
  o.run_dir = a.run_dir;
  o.config_file = a.config_file;
  o.cache_dir = a.cache_dir;
  o.until = a.until;
  o.threads = a.threads;
  o.device = a.device;
  o.seed = a.seed;
  if (a.device != "cpu" && a.device != "cuda") fail("unknown device '{}': use cpu or cuda", a.device);
  if (a.dry_run) {
    const auto config = pipeline::resolve_run_config(o);  // checks the preset and the config file
    std::printf("qnas run --preset %s: stages %s\n\n%s", a.preset.c_str(),
                fmt::format("{}", fmt::join(pipeline::stage_names(), " -> ")).c_str(),
                pipeline::presets_table().c_str());
    if (!a.config_file.empty())
      std::printf("\nwith %s applied:\n%s\n", a.config_file.c_str(), config.dump(2).c_str());
    return;
  }
  const auto summary = pipeline::run_pipeline(o);
  if (summary.contains("stopped_after")) return;
  const std::string dir = o.run_dir.empty() ? "runs/" + a.preset : a.run_dir;
  std::printf("qnas run: done. report: %s/report.md (and report.html), machine-readable: %s/summary.json\n",
              dir.c_str(), dir.c_str());
  for (const auto& row : summary.at("results").at("evolved")) {
    if (!row.value("found", false)) continue;
    std::printf("  limit %.3f ms: %s, test top-1 %.2f%% on the oneDNN INT8 engine, %s\n",
                row["limit_ms"].get<double>(), row["subnet"].get<std::string>().c_str(),
                100 * row["test_accuracy"]["onednn_int8"].get<double>(),
                row["model"].get<std::string>().c_str());
  }
}
#else
void run(const RunArgs&) {
  fail("this qnas was built without LibTorch, oneDNN or ONNX, which `qnas run` needs: run scripts/setup.sh");
}
#endif

}  // namespace

void add_run_command(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* cmd = app.add_subcommand(
      "run",
      "The whole pipeline: data -> this CPU's INT8 latency -> space search -> supernet -> subnet search -> "
      "INT8 model, report (resumable)");
  cmd->add_option("--data", a->data,
                  "fashion-mnist, cifar10 or a directory (Fashion-MNIST, CIFAR-10 binary, image folder)")
      ->capture_default_str();
  cmd->add_option("--preset", a->preset, "tiny (minutes), quick (under 30 min on 2 cores) or full")
      ->capture_default_str();
  cmd->add_option("--limits", a->limits,
                  "INT8 latency limits in ms (default: small/medium/large of the hyperspace on this CPU)");
  cmd->add_option("--run-dir", a->run_dir,
                  "where everything goes (default runs/<preset>); run again to resume");
  cmd->add_option("--config", a->config_file, "JSON file overriding preset keys (see --dry-run)");
  cmd->add_option("--cache-dir", a->cache_dir,
                  "latency LUT cache (default $QNAS_CACHE_DIR or ~/.cache/qnas)");
  cmd->add_option("--until", a->until, "stop after this stage");
  cmd->add_option("--threads", a->threads, "CPU threads for training (default: every core)");
  cmd->add_option("--device", a->device, "cpu or cuda")->capture_default_str();
  cmd->add_option("--seed", a->seed, "random seed")->capture_default_str();
  cmd->add_flag("--dry-run", a->dry_run, "print the stages and every preset's budgets, run nothing");
  cmd->callback([a] { run(*a); });
}

}  // namespace qnas::cli
