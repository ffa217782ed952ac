// `qnas run`: the end-to-end job on the built-in default (Fashion-MNIST from Debian). Today it runs the
// stages that exist: load and split the data, stream one augmented epoch through the loader, describe the
// default search space and its FLOPs landscape, and check the published SpaceEvo models. Every result goes to
// the run directory as JSON (machines) and text (people).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/format.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "data/fashion_mnist.h"
#include "data/split.h"
#include "space/arch_spec.h"
#include "space/published.h"
#include "space/sampling.h"
#ifdef QNAS_HAVE_TORCH
#include "data/loader.h"
#endif
#ifdef QNAS_HAVE_ONEDNN
#include "latency/profiling.h"
#endif

namespace qnas::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct RunArgs {
  std::string preset = "tiny";
  std::string data_dir = data::kFashionMnistDefaultDir;
  std::string space = "fmnistw-151122-000000";
  std::string run_dir;
  std::int64_t holdout = 10000;
  int subnets = 1000;
  std::uint64_t seed = 0;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

json describe_data(const RunArgs& args, std::string& text) {
  const auto start = std::chrono::steady_clock::now();
  const data::ImageDataset train = data::load_fashion_mnist(args.data_dir, "train");
  const data::ImageDataset test = data::load_fashion_mnist(args.data_dir, "test");
  const data::HoldoutSplit split = data::split_holdout(train.count, args.holdout, args.seed);
  const double load_seconds = seconds_since(start);

  std::vector<std::int64_t> per_class(train.num_classes(), 0);
  for (std::int64_t label : train.labels) ++per_class[label];
  double sum = 0;
  for (std::uint8_t p : train.pixels) sum += p;
  const double mean = sum / static_cast<double>(train.pixels.size()) / 255.0;

  json out = {{"source", train.source},
              {"train", split.train.size()},
              {"holdout", split.holdout.size()},
              {"test", test.count},
              {"shape", {train.channels, train.height, train.width}},
              {"classes", train.class_names},
              {"train_images_per_class", per_class},
              {"pixel_mean", mean},
              {"load_seconds", load_seconds}};
  text += fmt::format(
      "data: Fashion-MNIST from {}\n  {} train / {} held-out (seed {}) / {} test images, {}x{}x{}, "
      "{} classes, pixel mean {:.4f}, loaded in {:.2f} s\n",
      args.data_dir, split.train.size(), split.holdout.size(), args.seed, test.count, train.channels,
      train.height, train.width, train.num_classes(), mean, load_seconds);
#ifdef QNAS_HAVE_TORCH
  data::LoaderOptions options;
  options.batch_size = 256;
  options.augment = true;
  options.seed = args.seed;
  data::BatchLoader loader(train, split.train, options);
  ProgressLine progress("loader epoch", loader.num_batches(), "batches");
  const auto epoch_start = std::chrono::steady_clock::now();
  data::Batch batch;
  std::int64_t images = 0, batches = 0;
  double batch_mean = 0;
  while (loader.next(batch)) {
    images += batch.size();
    batch_mean += batch.images.mean().item<double>() * static_cast<double>(batch.size());
    progress.update(++batches);
  }
  progress.finish();
  const double epoch_seconds = seconds_since(epoch_start);
  out["loader"] = {{"batch_size", options.batch_size},
                   {"augment", true},
                   {"images", images},
                   {"seconds", epoch_seconds},
                   {"images_per_second", static_cast<double>(images) / epoch_seconds},
                   {"normalized_mean", batch_mean / static_cast<double>(images)}};
  text += fmt::format(
      "  loader: one augmented epoch of {} images in {:.2f} s ({:.0f} images/s), normalized mean "
      "{:+.4f}\n",
      images, epoch_seconds, images / epoch_seconds, batch_mean / images);
#endif
  return out;
}

json describe_space(const RunArgs& args, std::string& text) {
  const space::SearchSpace space = space::SearchSpace::parse(args.space);
  const auto max_spec = space::build_arch_spec(space, space::max_subnet(space));
  const auto min_spec = space::build_arch_spec(space, space::min_subnet(space));
  Rng rng(args.seed);
  std::vector<double> mflops;
  for (int i = 0; i < args.subnets; ++i) {
    mflops.push_back(space::build_arch_spec(space, space::sample_random(space, rng)).macs() / 1e6);
  }
  std::sort(mflops.begin(), mflops.end());
  auto quantile = [&](double q) {
    return mflops[static_cast<size_t>(q * static_cast<double>(mflops.size() - 1))];
  };
  text += fmt::format(
      "\nspace: {} ({:.3g} subnets)\n  max subnet {:.2f} MFLOPs {:.3f} Mparams: {}\n  min subnet "
      "{:.2f} MFLOPs {:.3f} Mparams: {}\n  {} random subnets: MFLOPs p10 {:.2f}, median {:.2f}, "
      "p90 {:.2f}\n",
      space.encode(), space.num_subnets(), max_spec.macs() / 1e6, max_spec.params() / 1e6, max_spec.subnet,
      min_spec.macs() / 1e6, min_spec.params() / 1e6, min_spec.subnet, args.subnets, quantile(0.1),
      quantile(0.5), quantile(0.9));
  return {{"encoding", space.encode()},
          {"num_subnets", space.num_subnets()},
          {"max_subnet",
           {{"encoding", max_spec.subnet},
            {"mflops", max_spec.macs() / 1e6},
            {"mparams", max_spec.params() / 1e6}}},
          {"min_subnet",
           {{"encoding", min_spec.subnet},
            {"mflops", min_spec.macs() / 1e6},
            {"mparams", min_spec.params() / 1e6}}},
          {"random_subnets",
           {{"count", args.subnets},
            {"seed", args.seed},
            {"mflops_p10", quantile(0.1)},
            {"mflops_median", quantile(0.5)},
            {"mflops_p90", quantile(0.9)}}}};
}

// Real FP32 and INT8 latency of the space's extremes on this CPU (oneDNN, batch 1, one thread).
json describe_latency(const RunArgs& args, std::string& text) {
#ifdef QNAS_HAVE_ONEDNN
  const space::SearchSpace space = space::SearchSpace::parse(args.space);
  json out = json::object();
  text += fmt::format("\nlatency on this CPU ({}, {}, isa {}, 1 thread, batch 1, median of 50 runs):\n",
                      runtime::cpu_model(), runtime::onednn_version(), runtime::onednn_isa());
  for (const auto& [name, subnet] : {std::pair{"max_subnet", space::max_subnet(space)},
                                     std::pair{"min_subnet", space::min_subnet(space)}}) {
    const auto spec = space::build_arch_spec(space, subnet);
    const auto fp32 = latency::time_arch(spec, runtime::Precision::kFp32, 1, {});
    const auto int8 = latency::time_arch(spec, runtime::Precision::kInt8, 1, {});
    text += fmt::format("  {}: FP32 {:.3f} ms, INT8 {:.3f} ms, INT8 speedup {:.2f}x\n", name,
                        fp32.timing.median_ms, int8.timing.median_ms,
                        fp32.timing.median_ms / int8.timing.median_ms);
    out[name] = {{"fp32", runtime::to_json(fp32.timing)}, {"int8", runtime::to_json(int8.timing)}};
  }
  out["machine"] = runtime::to_json(runtime::this_machine(1, "int8"));
  return out;
#else
  (void)args;
  text += "\nlatency: oneDNN not built in; install libdnnl-dev (scripts/setup.sh) for INT8 latency\n";
  return nullptr;
#endif
}

json describe_published(std::string& text) {
  json rows = json::array();
  Table table({"model", "resolution", "MFLOPs", "paper", "params (M)"});
  for (const auto& published : space::published_subnets()) {
    const auto spec = space::build_arch_spec(
        space::SearchSpace::parse(space::find_published_space(published.space_name).encoding),
        space::Subnet::parse(published.encoding));
    rows.push_back(
        {{"name", published.name}, {"mflops", spec.macs() / 1e6}, {"paper_mflops", published.paper_mflops}});
    table.add_row({published.name, std::to_string(spec.resolution), fmt::format("{:.1f}", spec.macs() / 1e6),
                   fmt::format("{:.0f}", published.paper_mflops),
                   fmt::format("{:.2f}", spec.params() / 1e6)});
  }
  text += "\npublished SpaceEvo models (ImageNet, as released):\n" + table.render();
  return rows;
}

void run(const RunArgs& args) {
  if (args.preset != "tiny" && args.preset != "fmnist") {
    fail("unknown preset '{}': use tiny (CPU, minutes) or fmnist", args.preset);
  }
  const fs::path run_dir = args.run_dir.empty() ? fs::path("runs") / args.preset : fs::path(args.run_dir);
  std::string text = fmt::format("qnas run --preset {} -> {}\n\n", args.preset, run_dir.string());
  json summary = {{"preset", args.preset}, {"seed", args.seed}};
  summary["data"] = describe_data(args, text);
  summary["space"] = describe_space(args, text);
  summary["latency"] = describe_latency(args, text);
  summary["published"] = describe_published(text);
  write_json_atomic(run_dir / "summary.json", summary);
  write_file_atomic(run_dir / "summary.txt", text);
  std::printf("%s\nwritten: %s/{summary.json,summary.txt}\n", text.c_str(), run_dir.string().c_str());
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* cmd = app.add_subcommand("run", "Run the qnas pipeline on the built-in default (Fashion-MNIST)");
  cmd->add_option("--preset", args->preset, "tiny (CPU, minutes) or fmnist")->capture_default_str();
  cmd->add_option("--data", args->data_dir, "Fashion-MNIST directory (IDX .gz files)")->capture_default_str();
  cmd->add_option("--space", args->space, "search space encoding")->capture_default_str();
  cmd->add_option("--run-dir", args->run_dir, "where results go (default runs/<preset>)");
  cmd->add_option("--holdout", args->holdout, "training images held out for search-time evaluation")
      ->capture_default_str();
  cmd->add_option("--subnets", args->subnets, "random subnets sampled to describe the space")
      ->check(CLI::Range(1, 10000000));
  cmd->add_option("--seed", args->seed, "random seed");
  cmd->callback([args] { run(*args); });
}

}  // namespace qnas::cli
