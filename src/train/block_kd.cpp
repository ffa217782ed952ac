#include "train/block_kd.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <numeric>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/strings.h"
#include "core/work_queue.h"
#include "data/loader.h"
#include "data/transform.h"
#include "quant/quantizers.h"
#include "train/schedule.h"
#include "train/trainer.h"

namespace qnas::train {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* kRunFormat = "qnas-block-kd-1";
constexpr std::uint64_t kSubStageStream = 31, kInitStream = 32, kOrderStream = 33;

// Every key of the config, visited once for both directions, so a key cannot be written but not read.
template <typename Config, typename Visit>
void visit_fields(Config& c, Visit&& visit) {
  visit("epochs", c.epochs);
  visit("qat_epochs", c.qat_epochs);
  visit("qat_bits", c.qat_bits);
  visit("batch_size", c.batch_size);
  visit("lr", c.lr);
  visit("qat_lr", c.qat_lr);
  visit("random_subnets", c.random_subnets);
  visit("train_limit", c.train_limit);
  visit("heldout", c.heldout);
  visit("lut_rows", c.lut_rows);
  visit("stale_seconds", c.stale_seconds);
  visit("seed", c.seed);
  visit("device", c.device);
}

// The settings that change what a block learns: a run directory must keep them (lut_rows and
// stale_seconds may change between workers and between block-kd and build-lut).
const char* const kTrainingKeys[] = {"epochs", "qat_epochs",     "qat_bits",    "batch_size", "lr",
                                     "qat_lr", "random_subnets", "train_limit", "heldout",    "seed"};

torch::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda") {
    if (!torch::cuda::is_available())
      fail(
          "--device cuda: this LibTorch has no CUDA device (build against a CUDA LibTorch or use --device "
          "cpu)");
    return torch::kCUDA;
  }
  fail("unknown device '{}': use cpu or cuda", name);
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

json BlockKdConfig::to_json() const {
  json j = json::object();
  visit_fields(*this, [&](const char* key, const auto& field) { j[key] = field; });
  return j;
}

BlockKdConfig BlockKdConfig::from_json(const json& j) {
  if (!j.is_object()) fail("a block-KD config must be a JSON object, got {}", j.type_name());
  BlockKdConfig c;
  const json known = c.to_json();
  for (const auto& [key, value] : j.items()) {
    if (!known.contains(key)) {
      std::string keys;
      for (const auto& [k, v] : known.items()) keys += " " + k;
      fail("unknown block-KD config key '{}': the keys are{}", key, keys);
    }
    if (value.type() != known[key].type() && !(value.is_number() && known[key].is_number()))
      fail("block-KD config key '{}' must be a {}, got {}", key, known[key].type_name(), value.type_name());
  }
  visit_fields(c, [&](const char* key, auto& field) {
    if (j.contains(key)) field = j[key].get<std::decay_t<decltype(field)>>();
  });
  c.validate();
  return c;
}

void BlockKdConfig::validate() const {
  if (epochs < 0 || qat_epochs < 0 || epochs + qat_epochs < 1)
    fail("block KD needs at least one epoch (epochs {}, qat_epochs {})", epochs, qat_epochs);
  quant::check_bits(qat_bits, "qat_bits");
  if (batch_size < 2) fail("batch_size must be at least 2 (batch norm), got {}", batch_size);
  if (lr <= 0 || qat_lr <= 0) fail("learning rates must be positive (lr {}, qat_lr {})", lr, qat_lr);
  if (random_subnets < 0) fail("random_subnets must be >= 0, got {}", random_subnets);
  if (train_limit < 0) fail("train_limit must be >= 0, got {}", train_limit);
  if (heldout < 2) fail("heldout must be at least 2 images, got {}", heldout);
  if (lut_rows < 1) fail("lut_rows must be at least 1, got {}", lut_rows);
  if (stale_seconds <= 0) fail("stale_seconds must be positive, got {}", stale_seconds);
  parse_device(device);
}

BlockKdConfig block_kd_preset(const std::string& name) {
  BlockKdConfig c;
  if (name == "tiny") {
    // About 10 s per block on one core: all 150 blocks of fmnistw in about 15 minutes with two workers.
    // Enough to rank block types roughly, not to distil them well (see docs/spaceevo-fmnist.md).
    c.epochs = 1;
    c.qat_epochs = 1;
    c.batch_size = 32;
    c.lr = 5e-3;
    c.qat_lr = 5e-4;
    c.train_limit = 512;
    c.heldout = 256;
    c.lut_rows = 40;
    return c;
  }
  if (name == "fmnist") {
    c.epochs = 4;
    c.qat_epochs = 1;
    c.batch_size = 128;
    c.train_limit = 0;
    c.heldout = 5000;
    c.lut_rows = 1000;
    return c;
  }
  fail("unknown block-KD preset '{}': use tiny (CPU, minutes) or fmnist (the full schedule)", name);
}

torch::Tensor nsr_loss(const torch::Tensor& student, const torch::Tensor& teacher) {
  if (student.sizes() != teacher.sizes())
    fail("NSR loss: student output {} and teacher output {} differ in shape", fmt::join(student.sizes(), "x"),
         fmt::join(teacher.sizes(), "x"));
  const torch::Tensor t = teacher.flatten(2), s = student.flatten(2);
  const torch::Tensor var = t.var(2, /*unbiased=*/false);  // [N, C]
  const torch::Tensor floor = 1e-3 * var.mean(1, /*keepdim=*/true) + 1e-12;
  const torch::Tensor mse = (t - s).pow(2).mean(2);
  return (mse / torch::max(var, floor)).mean();
}

// ---------------------------------------------------------------------------------------------------------
// Teacher

Teacher load_teacher(const fs::path& where) {
  const fs::path path = fs::is_directory(where) ? where / "checkpoint.pt" : where;
  if (!fs::exists(path))
    fail(
        "teacher checkpoint {} does not exist: train one with `qnas train --subnet ...` (see "
        "docs/spaceevo-fmnist.md)",
        path.string());
  torch::serialize::InputArchive archive;
  const json meta = open_checkpoint(path, archive, "teacher checkpoint", "retrain the teacher");
  const std::string identity = meta.at("model");
  char space[128] = {}, subnet[1024] = {};
  int resolution = 0;
  if (identity.rfind("static ", 0) != 0 ||
      std::sscanf(identity.c_str(), "static %127s %1023s r%d", space, subnet, &resolution) != 3) {
    fail("{} holds '{}', not a static network: a teacher is trained with `qnas train --subnet`",
         path.string(), identity);
  }
  const json config = meta.at("config");
  const int epochs = config.at("epochs"), qat_epochs = config.at("qat_epochs");
  const int done = meta.at("epochs_done");
  if (done < epochs + qat_epochs)
    fail("teacher {} has finished {} of {} epochs: run the same `qnas train` command again to finish it",
         path.string(), done, epochs + qat_epochs);
  Teacher t;
  t.identity = identity;
  t.checkpoint = path;
  t.bits = qat_epochs > 0 ? config.at("qat_bits").get<int>() : quant::kFloatBits;
  const auto sp = space::SearchSpace::parse(space);
  t.net = nn::StaticNet(space::build_arch_spec(sp, space::Subnet::parse(subnet), resolution));
  try {
    torch::serialize::InputArchive model;
    archive.read("model", model);
    t.net->load(model);
  } catch (const std::exception& e) {
    fail("teacher checkpoint {} does not fit its own network ({})", path.string(), first_line(e.what()));
  }
  quant::set_bits(*t.net, t.bits);
  t.net->eval();
  const auto& logs = meta.at("logs");
  if (!logs.empty() && !logs.back().at("eval").empty()) t.accuracy = logs.back().at("eval")[0].at("accuracy");
  return t;
}

// ---------------------------------------------------------------------------------------------------------
// Block KD

json to_json(const BlockKdResult& r) {
  return {{"name", r.name},     {"epoch_nsr", r.epoch_nsr}, {"steps", r.steps}, {"seconds", r.seconds},
          {"device", r.device}, {"threads", r.threads},     {"host", r.host}};
}

BlockKd::BlockKd(BlockKdConfig config, Teacher teacher, const data::ImageDataset& train, fs::path run_dir)
    : config_(std::move(config)),
      teacher_(std::move(teacher)),
      train_(train),
      run_dir_(std::move(run_dir)),
      device_(parse_device(config_.device)) {
  config_.validate();
  const auto& spec = teacher_.net->spec();
  hyperspace_ = &space::SearchSpace::parse(spec.space).hyperspace();
  resolution_ = spec.resolution;
  const auto& allowed = hyperspace_->block_kd_resolutions;
  if (std::find(allowed.begin(), allowed.end(), resolution_) == allowed.end())
    fail(
        "the teacher runs at {}x{}, but {} block LUTs are measured at {}: train the teacher with _r{} in its "
        "subnet",
        resolution_, resolution_, hyperspace_->name, fmt::join(allowed, " or "), allowed.front());
  if (train_.channels != hyperspace_->in_channels)
    fail("the teacher takes {}-channel images, the training set {} has {}", hyperspace_->in_channels,
         train_.source, train_.channels);
  if (config_.heldout >= train_.count)
    fail("heldout {} leaves no training images of the {} in {}", config_.heldout, train_.count,
         train_.source);
  if (config_.train_limit > train_.count - config_.heldout)
    fail("train_limit {} overlaps the {} held-out images (the training set has {}): lower one of them",
         config_.train_limit, config_.heldout, train_.count);
  teacher_.net->to(device_);

  const json identity = {{"format", kRunFormat},          {"teacher", teacher_.identity},
                         {"teacher_bits", teacher_.bits}, {"hyperspace", hyperspace_->name},
                         {"resolution", resolution_},     {"config", config_.to_json()}};
  const fs::path config_path = run_dir_ / "config.json";
  if (!fs::exists(config_path)) {
    fs::create_directories(run_dir_);
    write_json_atomic(config_path, identity);
    return;
  }
  const json saved = read_json_file(config_path);
  if (saved.value("format", "") != kRunFormat)
    fail("{} is not a block-KD run directory: choose another --run-dir", run_dir_.string());
  for (const char* key : {"teacher", "teacher_bits", "hyperspace", "resolution"}) {
    if (saved.value(key, json()) != identity[key])
      fail("{} was made with {} = {}, this run has {}: choose another --run-dir", config_path.string(), key,
           saved.value(key, json()).dump(), identity[key].dump());
  }
  for (const char* key : kTrainingKeys) {
    const json was = saved.at("config").value(key, json()), now = identity["config"][key];
    if (was != now)
      fail(
          "{} was made with {} = {}, this run has {}: blocks of one run must share their settings (or choose "
          "another --run-dir)",
          config_path.string(), key, was.dump(), now.dump());
  }
}

std::vector<space::StageSpace> BlockKd::blocks(const std::vector<std::string>& names) const {
  if (names.empty()) return space::all_stage_spaces(*hyperspace_, resolution_);
  std::vector<space::StageSpace> picked;
  for (const auto& n : names) picked.push_back(space::parse_stage_space(*hyperspace_, n, resolution_));
  return picked;
}

bool BlockKd::is_done(const space::StageSpace& block) const {
  return fs::exists(block_dir() / (block.name() + ".json"));
}

std::pair<std::int64_t, std::int64_t> BlockKd::heldout_range() const {
  return {train_.count - config_.heldout, train_.count};
}

torch::Tensor BlockKd::images(const std::vector<std::int64_t>& indices) const {
  data::LoaderOptions options;
  options.batch_size = static_cast<std::int64_t>(indices.size());
  options.shuffle = false;
  data::BatchLoader loader(train_, indices, options);
  data::Batch batch;
  loader.next(batch);
  return batch.images.to(device_);
}

std::pair<torch::Tensor, torch::Tensor> BlockKd::teacher_io(const std::string& stage, std::int64_t begin,
                                                            std::int64_t end) {
  std::vector<std::int64_t> indices(static_cast<size_t>(end - begin));
  std::iota(indices.begin(), indices.end(), begin);
  torch::NoGradGuard no_grad;
  return teacher_.net->stage_io(images(indices), stage);
}

nn::StageStudent BlockKd::make_student(const space::StageSpace& block) const {
  const auto [in, out] = teacher_.net->stage_channels(block.stage_name);
  torch::manual_seed(data::derive_seed(config_.seed, kInitStream, stable_hash(block.name())));
  nn::StageStudent student(block, in, out);
  student->to(device_);
  return student;
}

nn::StageStudent BlockKd::load_student(const space::StageSpace& block) const {
  const fs::path path = block_dir() / (block.name() + ".pt");
  if (!is_done(block) || !fs::exists(path))
    fail("block {} is not trained yet in {}: run `qnas block-kd` on that directory first", block.name(),
         run_dir_.string());
  nn::StageStudent student = make_student(block);
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path.string(), device_);
    student->load(archive);
  } catch (const std::exception& e) {
    fail("{} is unreadable ({}): delete it and {}.json to train the block again", path.string(),
         first_line(e.what()), block.name());
  }
  quant::set_bits(*student, config_.qat_epochs > 0 ? config_.qat_bits : quant::kFloatBits);
  return student;
}

BlockKdResult BlockKd::train_block(const space::StageSpace& block, const std::function<void()>& on_step) {
  const auto start = std::chrono::steady_clock::now();
  nn::StageStudent student = make_student(block);
  auto optimizer = torch::optim::Adam(student->parameters(), torch::optim::AdamOptions(config_.lr));
  const std::int64_t train_count =
      config_.train_limit > 0 ? config_.train_limit : train_.count - config_.heldout;
  std::vector<std::int64_t> indices(static_cast<size_t>(train_count));
  std::iota(indices.begin(), indices.end(), 0);
  data::LoaderOptions options;
  options.batch_size = config_.batch_size;
  options.drop_last = true;
  options.seed = data::derive_seed(config_.seed, kOrderStream, 0);
  data::BatchLoader loader(train_, indices, options);
  const std::int64_t batches = loader.num_batches();
  if (batches < 1) fail("{} training images make no batch of {}", train_count, config_.batch_size);

  BlockKdResult result;
  result.name = block.name();
  result.device = config_.device;
  result.threads = torch::get_num_threads();
  result.host = host_name();
  const int total = config_.epochs + config_.qat_epochs;
  ProgressLine progress(block.name(), total * batches, "steps");
  for (int epoch = 0; epoch < total; ++epoch) {
    const bool qat = epoch >= config_.epochs;
    quant::set_bits(*student, qat ? config_.qat_bits : quant::kFloatBits);
    student->train();
    const double lr0 = qat ? config_.qat_lr : config_.lr;
    const int phase_epochs = qat ? config_.qat_epochs : config_.epochs;
    const int phase_epoch = qat ? epoch - config_.epochs : epoch;
    const CosineSchedule schedule{lr0, 0.0, 0, phase_epochs * batches};
    loader.reset(epoch);
    data::Batch batch;
    double nsr_sum = 0;
    std::int64_t b = 0;
    while (loader.next(batch)) {
      const std::int64_t step = phase_epoch * batches + b;
      for (auto& group : optimizer.param_groups())
        static_cast<torch::optim::AdamOptions&>(group.options()).lr(schedule.at(step));
      torch::Tensor tin, tout;
      {
        torch::NoGradGuard no_grad;
        std::tie(tin, tout) = teacher_.net->stage_io(batch.images.to(device_), block.stage_name);
      }
      for (auto& p : student->parameters()) p.mutable_grad() = torch::Tensor();
      Rng rng(data::derive_seed(config_.seed ^ stable_hash(block.name()), kSubStageStream,
                                static_cast<std::uint64_t>(epoch * batches + b)));
      std::vector<space::SubStage> subs = {space::max_sub_stage(block), space::min_sub_stage(block)};
      for (int i = 0; i < config_.random_subnets; ++i) subs.push_back(space::sample_sub_stage(block, rng));
      for (size_t i = 0; i < subs.size(); ++i) {
        const torch::Tensor loss = nsr_loss(student->forward(tin, subs[i]), tout);
        loss.backward();
        if (i == 0) nsr_sum += loss.item<double>();
      }
      optimizer.step();
      ++b;
      ++result.steps;
      if (on_step) on_step();
      progress.update(
          epoch * batches + b,
          fmt::format("{} nsr(max) {:.4f}", qat ? "int" + std::to_string(config_.qat_bits) : "fp32",
                      nsr_sum / static_cast<double>(b)));
      if (interrupt_after_ >= 0 && result.steps >= interrupt_after_) {
        interrupt_after_ = -1;
        throw TrainingInterrupted();
      }
    }
    result.epoch_nsr.push_back(nsr_sum / static_cast<double>(std::max<std::int64_t>(1, b)));
  }
  progress.finish();
  result.seconds = seconds_since(start);
  fs::create_directories(block_dir());
  torch::serialize::OutputArchive archive;
  student->save(archive);
  const fs::path weights = block_dir() / (block.name() + ".pt");
  const fs::path tmp = weights.string() + ".tmp";
  archive.save_to(tmp.string());
  fs::rename(tmp, weights);
  // The log last: its existence marks the block done.
  write_json_atomic(block_dir() / (block.name() + ".json"), to_json(result));
  return result;
}

std::vector<BlockKdResult> BlockKd::run(const std::vector<space::StageSpace>& blocks) {
  WorkQueue queue(block_dir(), config_.stale_seconds);
  std::vector<BlockKdResult> trained;
  size_t done = 0;
  for (const auto& b : blocks) done += is_done(b) ? 1 : 0;
  std::fprintf(stderr, "block KD: %zu blocks, %zu done already, run dir %s\n", blocks.size(), done,
               run_dir_.c_str());
  for (const auto& block : blocks) {
    if (is_done(block) || !queue.claim(block.name())) continue;
    if (is_done(block)) {  // finished by another worker between the check and the claim
      queue.release(block.name());
      continue;
    }
    try {
      trained.push_back(train_block(block, [&] { queue.heartbeat(block.name()); }));
    } catch (...) {
      queue.release(block.name());
      throw;
    }
    queue.release(block.name());
    ++done;
    std::fprintf(stderr, "block KD: %s done in %.1f s (nsr max %.4f), %zu of %zu blocks done\n",
                 block.name().c_str(), trained.back().seconds, trained.back().epoch_nsr.back(), done,
                 blocks.size());
  }
  return trained;
}

}  // namespace qnas::train
