// `qnas block-kd` and `qnas build-lut`: SpaceEvo's block-wise distillation of every (stage, block type, width
// window) of a hyperspace from a teacher, and the block LUTs (official CSV format) built from the result.
#include <fmt/format.h>
#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/commands.h"
#include "cli/format.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/fashion_mnist.h"
#include "dist/process_group.h"
#include "train/block_kd.h"
#include "train/block_lut_builder.h"

namespace qnas::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct BlockKdArgs {
  std::string teacher, preset = "tiny", config_file, run_dir, device;
  std::string data_dir = data::kFashionMnistDefaultDir;
  std::vector<std::string> blocks;
  int threads = 0;
};

struct BuildLutArgs {
  std::string run_dir, out_dir, latency_lut;
  std::string data_dir = data::kFashionMnistDefaultDir;
  std::vector<std::string> blocks;
  int rows = 0, threads = 0, latency_threads = 1, runs = 50, warmup = 10;
  std::int64_t eval_images = 0;
};

void use_threads(int threads) {
  // Debian's LibTorch starts with one intra-op thread: use every core unless told otherwise.
  torch::set_num_threads(threads > 0 ? threads
                                     : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
}

train::BlockKdConfig make_config(const BlockKdArgs& a) {
  json j = train::block_kd_preset(a.preset).to_json();
  if (!a.config_file.empty()) {
    const json overrides = read_json_file(a.config_file);
    if (!overrides.is_object()) fail("{}: a block-KD config must be a JSON object", a.config_file);
    for (const auto& [key, value] : overrides.items()) j[key] = value;
  }
  if (!a.device.empty()) j["device"] = a.device;
  return train::BlockKdConfig::from_json(j);
}

void run_block_kd(const BlockKdArgs& a) {
  const train::BlockKdConfig config = make_config(a);
  use_threads(a.threads);
  const fs::path run_dir =
      a.run_dir.empty() ? fs::path("runs") / ("block-kd-" + a.preset) : fs::path(a.run_dir);
  train::Teacher teacher = train::load_teacher(a.teacher);
  std::fprintf(stderr, "qnas block-kd: teacher %s (int%d, test accuracy %.2f%%), preset %s, %d threads\n",
               teacher.identity.c_str(), teacher.bits, 100 * teacher.accuracy, a.preset.c_str(),
               torch::get_num_threads());
  const data::ImageDataset train_set = data::load_fashion_mnist(a.data_dir, "train");
  train::BlockKd kd(config, std::move(teacher), train_set, run_dir);
  const dist::Launch launch = dist::launch_from_environment();
  std::unique_ptr<dist::ProcessGroup> group;
  if (launch.distributed()) {
    group = std::make_unique<dist::ProcessGroup>(launch);
    kd.set_process_group(group.get());
  }
  {
    json meta = read_json_file(run_dir / "config.json");
    meta["teacher_checkpoint"] = fs::absolute(a.teacher).string();
    write_json_atomic(run_dir / "config.json", meta);
  }
  const auto blocks = kd.blocks(a.blocks);
  const auto trained = kd.run(blocks);
  Table table({"block", "steps", "seconds", "NSR fp32", "NSR int8"});
  for (const auto& r : trained) {
    const double fp32 = config.epochs > 0 ? r.epoch_nsr[static_cast<size_t>(config.epochs - 1)] : 0;
    table.add_row({r.name, std::to_string(r.steps), fmt::format("{:.1f}", r.seconds),
                   fmt::format("{:.4f}", fp32),
                   config.qat_epochs > 0 ? fmt::format("{:.4f}", r.epoch_nsr.back()) : "-"});
  }
  size_t done = 0;
  for (const auto& b : blocks) done += kd.is_done(b) ? 1 : 0;
  if (group && group->rank() != 0) {  // its blocks went to rank 0's run directory
    std::printf("%s\n%zu blocks trained by rank %d and sent to rank 0\n", table.render().c_str(),
                trained.size(), group->rank());
    return;
  }
  std::printf("%s\n%zu blocks trained by this worker; %zu of %zu done in %s\n", table.render().c_str(),
              trained.size(), done, blocks.size(), run_dir.string().c_str());
  if (done < blocks.size())
    std::printf("other workers hold %zu blocks: run this command again when they finish or die\n",
                blocks.size() - done);
}

void run_build_lut(const BuildLutArgs& a) {
  use_threads(a.threads);
  const fs::path run_dir(a.run_dir);
  const fs::path config_path = run_dir / "config.json";
  if (!fs::exists(config_path))
    fail("{} has no config.json: it is not a block-KD run directory (run `qnas block-kd` first)",
         run_dir.string());
  const json meta = read_json_file(config_path);
  if (!meta.contains("teacher_checkpoint") || !meta.contains("config"))
    fail("{} lacks teacher_checkpoint or config: run `qnas block-kd` on this directory again",
         config_path.string());
  const train::BlockKdConfig config = train::BlockKdConfig::from_json(meta.at("config"));
  const data::ImageDataset train_set = data::load_fashion_mnist(a.data_dir, "train");
  train::BlockKd kd(config, train::load_teacher(meta.at("teacher_checkpoint").get<std::string>()), train_set,
                    run_dir);

  const runtime::ProfileKey key = runtime::this_machine(a.latency_threads, "int8");
  const fs::path lut_path =
      a.latency_lut.empty()
          ? run_dir / fmt::format("latency-lut-{}-int8-t{}.json", kd.hyperspace().name, a.latency_threads)
          : fs::path(a.latency_lut);
  latency::LatencyLut lut =
      fs::exists(lut_path) ? latency::LatencyLut::load(lut_path.string(), key) : latency::LatencyLut(key);
  train::LutBuildOptions options;
  options.rows = a.rows > 0 ? a.rows : config.lut_rows;
  options.seed = config.seed;
  options.eval_images = a.eval_images;
  options.measure.runs = a.runs;
  options.measure.warmup = a.warmup;
  train::BlockLutBuilder builder(kd, lut, lut_path, options);
  const fs::path out_dir = a.out_dir.empty() ? run_dir / "lut" : fs::path(a.out_dir);
  require_writable_directory(out_dir, "--out");
  const auto summary = builder.build(kd.blocks(a.blocks), out_dir);
  std::string fixed;
  for (const auto& [r, ms] : summary.fixed_latency_ms)
    fixed += fmt::format("{}{}:{:.4f}", fixed.empty() ? "" : ",", r, ms);
  std::printf(
      "block LUTs in %s: %d files written, %d kept, %d rows each; %zu blocks measured into %s; fixed stages "
      "%s ms "
      "(fixed_latency.json); %.1f s\nnext: qnas space-search --lut %s --hyperspace %s --latency ...\n",
      out_dir.c_str(), summary.files_written, summary.files_kept, options.rows, summary.blocks_measured,
      lut_path.c_str(), fixed.c_str(), summary.seconds, out_dir.c_str(), kd.hyperspace().name.c_str());
}

}  // namespace

void add_block_kd_commands(CLI::App& app) {
  auto a = std::make_shared<BlockKdArgs>();
  CLI::App* cmd = app.add_subcommand(
      "block-kd",
      "Block-wise distillation of every (stage, block type, width window) from a teacher (SpaceEvo)");
  cmd->add_option("--teacher", a->teacher,
                  "run directory or checkpoint.pt of a `qnas train --subnet` teacher")
      ->required();
  cmd->add_option("--preset", a->preset, "tiny (CPU, minutes) or fmnist (full schedule)")
      ->capture_default_str();
  cmd->add_option("--config", a->config_file,
                  "JSON file overriding preset keys (see config.json in the run dir)");
  cmd->add_option("--blocks", a->blocks,
                  "only these blocks, e.g. stage3_1_0 (default: all of the hyperspace)");
  cmd->add_option(
      "--run-dir", a->run_dir,
      "shared run directory (default runs/block-kd-<preset>); any number of workers may take blocks "
      "from it, finished blocks are kept. Under torchrun/srun/scripts/launch-local.sh (WORLD_SIZE > 1) "
      "the ranks claim blocks through rank 0's store and rank 0's directory receives every block");
  cmd->add_option("--device", a->device, "cpu or cuda");
  cmd->add_option("--threads", a->threads, "CPU threads (default: all cores)");
  cmd->add_option("--data", a->data_dir, "Fashion-MNIST directory (IDX .gz files)")->capture_default_str();
  cmd->callback([a] { run_block_kd(*a); });

  auto b = std::make_shared<BuildLutArgs>();
  CLI::App* lut = app.add_subcommand(
      "build-lut",
      "Block LUTs (official SpaceEvo CSV) from a block-KD run: NSR loss, FLOPs, params, INT8 latency");
  lut->add_option("--run-dir", b->run_dir, "the block-KD run directory")->required();
  lut->add_option("--out", b->out_dir, "LUT directory (default <run-dir>/lut); files already there are kept");
  lut->add_option("--rows", b->rows, "sampled sub-stages per block (default: the run's lut_rows)");
  lut->add_option("--blocks", b->blocks, "only these blocks (default: all)");
  lut->add_option("--eval-images", b->eval_images,
                  "held-out images that measure each row's NSR loss (default: all the run holds out)");
  lut->add_option(
      "--latency-lut", b->latency_lut,
      "block latency LUT to reuse and extend (default <run-dir>/latency-lut-<hyperspace>-int8-t<N>.json)");
  lut->add_option("--latency-threads", b->latency_threads, "threads the INT8 latency is measured with")
      ->capture_default_str();
  lut->add_option("--runs", b->runs, "timed runs per block measurement")->capture_default_str();
  lut->add_option("--warmup", b->warmup, "untimed runs first")->capture_default_str();
  lut->add_option("--threads", b->threads, "CPU threads for the NSR evaluation (default: all cores)");
  lut->add_option("--data", b->data_dir, "Fashion-MNIST directory (IDX .gz files)")->capture_default_str();
  lut->callback([b] { run_build_lut(*b); });
}

}  // namespace qnas::cli
