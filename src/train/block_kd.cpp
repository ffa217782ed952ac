#include "train/block_kd.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <numeric>
#include <thread>

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
// Why cache at all: every block of a stage (25 of them) reads the same teacher input and output, so a cached
// stage runs the teacher up to it once instead of 25 times. What that saves end to end was not measured
// (docs/pipeline.md). 1 GiB holds a few thousand images' features at 28x28; a full-dataset schedule does not
// fit and recomputes per batch as before.
constexpr std::int64_t kMaxCachedFeatureBytes = std::int64_t{1} << 30;

// The settings that change what a block learns: a run directory must keep them (lut_rows and
// stale_seconds may change between workers and between block-kd and build-lut).
const char* const kTrainingKeys[] = {"epochs", "qat_epochs",     "qat_bits",    "batch_size", "lr",
                                     "qat_lr", "random_subnets", "train_limit", "heldout",    "seed"};

}  // namespace

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
  const CheckpointMeta meta = open_checkpoint(path, archive, "teacher checkpoint", "retrain the teacher");
  const std::string identity = meta.model;
  char space[128] = {}, subnet[1024] = {};
  int resolution = 0;
  if (identity.rfind("static ", 0) != 0 ||
      std::sscanf(identity.c_str(), "static %127s %1023s r%d", space, subnet, &resolution) != 3) {
    fail("{} holds '{}', not a static network: a teacher is trained with `qnas train --subnet`",
         path.string(), identity);
  }
  const TrainConfig& config = meta.config;
  const int epochs = config.epochs, qat_epochs = config.qat_epochs;
  const int done = meta.epochs_done;
  if (done < epochs + qat_epochs)
    fail("teacher {} has finished {} of {} epochs: run the same `qnas train` command again to finish it",
         path.string(), done, epochs + qat_epochs);
  Teacher t;
  t.identity = identity;
  t.checkpoint = path;
  t.bits = qat_epochs > 0 ? config.qat_bits : quant::kFloatBits;
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
  if (!meta.logs.empty() && !meta.logs.back().eval.empty()) t.accuracy = meta.logs.back().eval[0].accuracy;
  return t;
}

// ---------------------------------------------------------------------------------------------------------
// Block KD

json to_json(const BlockKdResult& r) {
  return {{"name", r.name},     {"epoch_nsr", r.epoch_nsr}, {"steps", r.steps}, {"seconds", r.seconds},
          {"device", r.device}, {"threads", r.threads},     {"host", r.host},   {"rank", r.rank}};
}

BlockKd::BlockKd(BlockKdConfig config, Teacher teacher, const data::ImageDataset& train, fs::path run_dir)
    : config_(std::move(config)),
      teacher_(std::move(teacher)),
      train_(train),
      run_dir_(std::move(run_dir)),
      device_(parse_device(config_.device)),
      max_cached_feature_bytes_(kMaxCachedFeatureBytes) {
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
    require_writable_directory(run_dir_, "--run-dir");
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

const std::pair<torch::Tensor, torch::Tensor>* BlockKd::cached_teacher_io(const std::string& stage,
                                                                          std::int64_t count) {
  if (stage == cached_stage_ && count == cached_count_) return &cached_io_;
  const auto [in_channels, out_channels] = teacher_.net->stage_channels(stage);
  // An upper bound: a stage never has more pixels than the input image.
  const std::int64_t pixels = std::int64_t{train_.height} * train_.width;
  if (count * (in_channels + out_channels) * pixels * 4 > max_cached_feature_bytes_) return nullptr;
  cached_stage_.clear();
  cached_io_ = {};
  std::vector<torch::Tensor> ins, outs;
  for (std::int64_t begin = 0; begin < count; begin += config_.batch_size) {
    auto [in, out] = teacher_io(stage, begin, std::min(count, begin + config_.batch_size));
    ins.push_back(std::move(in));
    outs.push_back(std::move(out));
  }
  cached_io_ = {torch::cat(ins), torch::cat(outs)};
  cached_stage_ = stage;
  cached_count_ = count;
  return &cached_io_;
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

  const auto* cached = cached_teacher_io(block.stage_name, train_count);

  BlockKdResult result;
  result.name = block.name();
  result.device = config_.device;
  result.threads = torch::get_num_threads();
  result.host = host_name();
  result.rank = group_ ? group_->rank() : 0;
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
      if (cached != nullptr) {
        const torch::Tensor rows = batch.indices.to(device_);
        tin = cached->first.index_select(0, rows);
        tout = cached->second.index_select(0, rows);
      } else {
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
  torch::serialize::OutputArchive archive;
  student->save(archive);
  save_archive(archive, block_dir() / (block.name() + ".pt"));
  // The log last: its existence marks the block done.
  write_json_atomic(block_dir() / (block.name() + ".json"), to_json(result));
  return result;
}

namespace {

std::string slot_key(const char* what, size_t index) {
  return fmt::format("block-kd/{}/{}", what, index);
}

std::string heartbeat_key(int rank) {
  return fmt::format("block-kd/heartbeat/{}", rank);
}

}  // namespace

std::vector<BlockKdResult> BlockKd::run_over_group(const std::vector<space::StageSpace>& blocks) {
  dist::ProcessGroup& group = *group_;
  // Rank 0's directory is the one of record: the blocks done there are not handed out again.
  if (group.rank() == 0) {
    std::string left;
    for (const auto& b : blocks)
      if (!is_done(b)) left += b.name() + "\n";
    group.set("block-kd/pending", left);
  }
  std::vector<const space::StageSpace*> pending;
  for (const std::string& name : split(group.get("block-kd/pending"), '\n')) {
    if (name.empty()) continue;
    const auto it =
        std::find_if(blocks.begin(), blocks.end(), [&](const auto& b) { return b.name() == name; });
    if (it == blocks.end())
      fail(
          "rank {}: rank 0 hands out block {}, which this rank was not given: start every rank with the same "
          "--blocks",
          group.rank(), name);
    pending.push_back(&*it);
  }
  std::fprintf(stderr, "block KD: rank %d of %d, %zu of %zu blocks left in rank 0's run dir\n", group.rank(),
               group.world_size(), pending.size(), blocks.size());
  std::vector<BlockKdResult> trained;
  std::vector<bool> trained_here(pending.size(), false);
  const auto beat = [&] { group.add(heartbeat_key(group.rank()), 1); };
  for (;;) {
    const auto index = static_cast<size_t>(group.add("block-kd/next", 1) - 1);
    if (index >= pending.size()) break;
    group.set(slot_key("owner", index), std::to_string(group.rank()));
    beat();
    const space::StageSpace& block = *pending[index];
    trained.push_back(train_block(block, beat));
    trained_here[index] = true;
    if (group.rank() != 0) {  // the log last, as on disk: rank 0 takes a block once its log is there
      group.set(slot_key("weights", index), read_text_file(block_dir() / (block.name() + ".pt")));
      group.set(slot_key("log", index), read_text_file(block_dir() / (block.name() + ".json")));
    }
    std::fprintf(stderr, "block KD: rank %d trained %s in %.1f s (nsr max %.4f)\n", group.rank(),
                 block.name().c_str(), trained.back().seconds, trained.back().epoch_nsr.back());
  }
  if (group.rank() == 0) receive_blocks(pending, trained_here);
  return trained;
}

void BlockKd::receive_blocks(const std::vector<const space::StageSpace*>& pending,
                             const std::vector<bool>& trained_here) {
  using Clock = std::chrono::steady_clock;
  dist::ProcessGroup& group = *group_;
  struct Heartbeat {
    std::int64_t count = -1;
    Clock::time_point changed;
  };
  std::map<int, Heartbeat> heartbeats;
  size_t done = static_cast<size_t>(std::count(trained_here.begin(), trained_here.end(), true));
  for (size_t index = 0; index < pending.size(); ++index) {
    if (trained_here[index]) continue;
    const std::string& name = pending[index]->name();
    while (!group.has(slot_key("log", index))) {
      // A rank that died or hangs stops sending heartbeats; the job must end, not wait for it forever.
      const bool claimed = group.has(slot_key("owner", index));
      const int owner = claimed ? std::stoi(group.get(slot_key("owner", index))) : -1;
      Heartbeat& h = heartbeats[owner];
      const std::int64_t count = claimed ? group.add(heartbeat_key(owner), 0) : 0;
      if (h.count < 0 || count != h.count) h = {count, Clock::now()};
      const double silent = std::chrono::duration<double>(Clock::now() - h.changed).count();
      if (silent > config_.stale_seconds) {
        fail(
            "block KD: {} holds block {} but sent no heartbeat for {:.0f} s (stale_seconds): it stopped or "
            "hangs. The {} blocks finished so far are kept in {}; start the job again to train the rest",
            claimed ? fmt::format("rank {}", owner) : std::string("no rank"), name, silent, done,
            block_dir().string());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    write_file_atomic(block_dir() / (name + ".pt"), group.get(slot_key("weights", index)));
    write_file_atomic(block_dir() / (name + ".json"), group.get(slot_key("log", index)));
    ++done;
    std::fprintf(stderr, "block KD: received %s from another rank, %zu of %zu blocks done\n", name.c_str(),
                 done, pending.size());
  }
}

std::vector<BlockKdResult> BlockKd::run(const std::vector<space::StageSpace>& blocks) {
  if (group_ && group_->world_size() > 1) return run_over_group(blocks);
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
