// `qnas train`: trains the supernet of a search space (sandwich rule, then LSQ+ QAT) or one static subnet on
// Fashion-MNIST, resumable from the run directory's checkpoint, and writes results.json / results.md.
#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/commands.h"
#include "cli/format.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/fashion_mnist.h"
#include "deploy/deploy.h"
#include "dist/process_group.h"
#include "nn/mixed_precision.h"
#include "nn/supernet.h"
#include "quant/quantizers.h"
#include "space/published.h"
#include "train/trainer.h"

namespace qnas::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct TrainArgs {
  // The fmnistw space with the fewest FLOPs (max subnet 22 MFLOPs): it trains at a few hundred images/s
  // on a 2-core CPU, where the run default fmnistw-151122-000000 (max 260 MFLOPs) manages about 30.
  std::string space = "fmnistw-000000-000000";
  std::string subnet;  // non-empty: plain training of this one subnet as a static network
  std::string preset = "tiny";
  std::string config_file;
  std::string data_dir = data::kFashionMnistDefaultDir;
  std::string run_dir;
  std::string device;
  std::string bits_from;          // a static subnet's per-layer QAT bits
  std::vector<int> elastic_bits;  // QFA: bits as an elastic dimension of the supernet
  std::string activation_quantizer;
  std::string init_from;  // a finished static run whose weights start the supernet
  int epochs = -1, qat_epochs = -1, threads = 0;
  std::int64_t seed = -1;
};

train::TrainConfig make_config(const TrainArgs& a) {
  json j = train::preset(a.preset).to_json();
  if (!a.config_file.empty()) {
    const json overrides = read_json_file(a.config_file);
    if (!overrides.is_object()) fail("{}: a training config must be a JSON object", a.config_file);
    for (const auto& [key, value] : overrides.items()) j[key] = value;
  }
  if (a.epochs >= 0) j["epochs"] = a.epochs;
  if (a.qat_epochs >= 0) j["qat_epochs"] = a.qat_epochs;
  if (a.seed >= 0) j["seed"] = a.seed;
  if (!a.device.empty()) j["device"] = a.device;
  if (!a.activation_quantizer.empty()) j["activation_quantizer"] = a.activation_quantizer;
  if (!a.elastic_bits.empty()) {
    j["elastic_bits"] = a.elastic_bits;
    // Below 4 bits QAT of a deep network diverges without clipping (train::TrainConfig::grad_clip).
    const bool low = std::any_of(a.elastic_bits.begin(), a.elastic_bits.end(), [](int b) { return b < 4; });
    if (low && j.value("grad_clip", 0.0) == 0.0) j["grad_clip"] = train::kLowBitGradClip;
  }
  return train::TrainConfig::from_json(j);
}

std::string results_table(const std::vector<train::EpochLog>& logs) {
  // The last evaluation of each phase, FP32 then INTb; subnet encodings are listed under the table.
  Table table({"subnet", "MFLOPs", "bits", "test accuracy"});
  std::vector<const train::EpochLog*> phase_ends;
  for (size_t i = 0; i < logs.size(); ++i) {
    if (i + 1 == logs.size() || logs[i + 1].bits != logs[i].bits) phase_ends.push_back(&logs[i]);
  }
  std::string encodings;
  for (const auto* log : phase_ends) {
    for (const auto& e : log->eval) {
      table.add_row({e.name, fmt::format("{:.2f}", e.mflops), std::to_string(e.bits),
                     fmt::format("{:.2f}%", 100 * e.accuracy)});
      if (log == phase_ends.front() && !e.subnet.empty())
        encodings += fmt::format("  {}: {}\n", e.name, e.subnet);
    }
  }
  return table.render() + (encodings.empty() ? "" : "\nsubnets:\n" + encodings);
}

void run_train(const TrainArgs& a) {
  const train::TrainConfig config = make_config(a);
  // LibTorch as Debian builds it starts with one intra-op thread: use every core unless told otherwise.
  torch::set_num_threads(a.threads > 0 ? a.threads
                                       : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  const fs::path run_dir = a.run_dir.empty() ? fs::path("runs") / ("train-" + a.preset) : fs::path(a.run_dir);
  const data::ImageDataset train_set = data::load_fashion_mnist(a.data_dir, "train");
  const data::ImageDataset test_set = data::load_fashion_mnist(a.data_dir, "test");
  const space::SearchSpace space = space::parse_space_or_published(a.space);
  if (space.hyperspace().in_channels != train_set.channels ||
      space.hyperspace().num_classes != train_set.num_classes()) {
    fail("space {} takes {}-channel images and {} classes, Fashion-MNIST has {} and {}: use a fmnistw space",
         space.encode(), space.hyperspace().in_channels, space.hyperspace().num_classes, train_set.channels,
         train_set.num_classes());
  }
  torch::manual_seed(config.seed);  // the initial weights
  std::shared_ptr<nn::NetworkImpl> model;
  if (a.subnet.empty()) {
    model = std::make_shared<nn::SupernetImpl>(space);
  } else {
    model =
        std::make_shared<nn::StaticNetImpl>(space::build_arch_spec(space, space::Subnet::parse(a.subnet)));
  }
  std::fprintf(stderr, "qnas train: %s %s, preset %s, %d fp32 + %d int%d epochs, %d threads, run dir %s\n",
               a.subnet.empty() ? "supernet" : "static subnet of", space.encode().c_str(), a.preset.c_str(),
               config.epochs, config.qat_epochs, config.qat_bits, torch::get_num_threads(), run_dir.c_str());
  // Launched by scripts/launch-local.sh, torchrun or srun: data parallel over the ranks of the environment.
  const dist::Launch launch = dist::launch_from_environment();
  std::unique_ptr<dist::ProcessGroup> group;
  if (launch.distributed()) {
    std::fprintf(stderr, "qnas train: rank %d of %d, rendezvous at %s:%d\n", launch.rank, launch.world_size,
                 launch.master_addr.c_str(), launch.master_port);
    group = std::make_unique<dist::ProcessGroup>(launch);
  }
  if (!a.init_from.empty()) {
    auto* supernet = dynamic_cast<nn::SupernetImpl*>(model.get());
    if (!supernet) fail("--init-from starts a supernet from a trained subnet: leave out --subnet");
    deploy::TrainedRun init = deploy::load_run(a.init_from);
    if (!init.net)
      fail("--init-from {}: a supernet run; give a finished `qnas train --subnet` run of a subnet of {}",
           a.init_from, space.encode());
    supernet->load_subnet_weights(*init.net);
    std::fprintf(stderr, "qnas train: supernet starts from the weights of %s (%s)\n", a.init_from.c_str(),
                 init.net->spec().subnet.c_str());
  }
  train::Trainer trainer(config, model, train_set, test_set, run_dir);
  trainer.set_process_group(group.get());
  if (!a.bits_from.empty()) {
    if (a.subnet.empty())
      fail(
          "--bits-from assigns bits to the layers of one network: give --subnet (a supernet has no fixed "
          "layers)");
    if (config.qat_epochs < 1)
      fail("--bits-from sets the bits of the QAT epochs: give --qat-epochs 1 or more");
    auto net = std::static_pointer_cast<nn::StaticNetImpl>(model);
    const space::BitAssignment bits = nn::read_bit_assignment(a.bits_from, net->spec());
    // The QAT phase starts every quantizer in its own bits; their ranges are learned in them.
    trainer.set_bits_policy([net, bits](int phase_bits) {
      quant::set_bits(*net, phase_bits == quant::kFloatBits ? quant::kFloatBits : 8);
      if (phase_bits != quant::kFloatBits) nn::apply_bits(*net, bits, nn::Scales::kAsTrained);
    });
    trainer.set_bit_assignment(bits.to_json(net->spec()));
  }
  const auto logs = trainer.run();
  if (launch.rank != 0) return;  // rank 0 writes the results
  std::string table = results_table(logs);
  json results = {{"space", space.encode()},
                  {"subnet", a.subnet},
                  {"config", config.to_json()},
                  {"threads", torch::get_num_threads()},
                  {"epochs", json::array()}};
  for (const auto& l : logs) results["epochs"].push_back(train::to_json(l));
  write_json_atomic(run_dir / "results.json", results);
  write_file_atomic(run_dir / "results.md", fmt::format("# qnas train {}\n\n{}", space.encode(), table));
  std::printf("%s\nwritten: %s/{results.json,results.md,log.json,checkpoint.pt}\n", table.c_str(),
              run_dir.string().c_str());
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand(
      "train", "Train a search space's supernet (sandwich rule + LSQ+ QAT) or one subnet on Fashion-MNIST");
  cmd->add_option("--space", a->space, "search space encoding or published name")->capture_default_str();
  cmd->add_option("--subnet", a->subnet, "train only this subnet, as a plain static network");
  cmd->add_option("--preset", a->preset, "tiny (CPU, minutes) or fmnist (full schedule)")
      ->capture_default_str();
  cmd->add_option("--config", a->config_file, "JSON file overriding preset keys (see results.json 'config')");
  cmd->add_option("--epochs", a->epochs, "FP32 epochs (overrides the preset)");
  cmd->add_option("--qat-epochs", a->qat_epochs, "LSQ+ QAT epochs after them (overrides the preset)");
  cmd->add_option("--seed", a->seed, "random seed (overrides the preset)");
  cmd->add_option("--device", a->device, "cpu or cuda");
  cmd->add_option(
      "--elastic-bits", a->elastic_bits,
      "QFA: the supernet's QAT epochs train per-layer weight and activation bits from these (e.g. 2 3 "
      "4); search it with `qnas subnet-search --objective bitops`");
  cmd->add_option(
      "--activation-quantizer", a->activation_quantizer,
      "lsq+ (learned range) or batchquant (QFA's BatchQuant: the batch's range, scaled by learned "
      "parameters; calibrated with BN at evaluation and deployed as that fixed range)");
  cmd->add_option("--init-from", a->init_from,
                  "a finished `qnas train --subnet` run of this space: the supernet starts from its weights "
                  "(a resumed run starts from its checkpoint)");
  cmd->add_option("--bits-from", a->bits_from,
                  "with --subnet: QAT in these per-layer bits (assignment.json of `qnas mixed-precision`, or "
                  "its directory)");
  cmd->add_option("--threads", a->threads, "CPU threads (default: LibTorch's choice)");
  cmd->add_option("--data", a->data_dir, "Fashion-MNIST directory (IDX .gz files)")->capture_default_str();
  cmd->add_option("--run-dir", a->run_dir,
                  "checkpoints and results (default runs/train-<preset>); an existing "
                  "checkpoint there is resumed");
  cmd->callback([a] { run_train(*a); });
}

}  // namespace qnas::cli
