#include "train/trainer.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/strings.h"
#include "data/loader.h"
#include "data/transform.h"
#include "nn/supernet.h"
#include "quant/quantizers.h"
#include "search/qfa_genome.h"
#include "train/schedule.h"

namespace qnas::train {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Streams of derive_seed(seed, stream, index), so no two kinds of draws share one.
constexpr std::uint64_t kSubnetStream = 17, kEvalSubnetStream = 18, kCalibrationStream = 19;

std::vector<std::int64_t> first_n(std::int64_t count, std::int64_t limit) {
  std::vector<std::int64_t> indices(static_cast<size_t>(limit > 0 ? std::min(limit, count) : count));
  std::iota(indices.begin(), indices.end(), 0);
  return indices;
}

// Images go to the network's precision (float32, or float64 where a test needs exact arithmetic).
torch::Dtype parameter_dtype(torch::nn::Module& model) {
  const auto parameters = model.parameters();
  return parameters.empty() ? torch::kFloat : parameters.front().scalar_type();
}

nn::SupernetImpl* as_supernet(nn::NetworkImpl* model) {
  return dynamic_cast<nn::SupernetImpl*>(model);
}

}  // namespace

torch::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda") {
    if (!torch::cuda::is_available()) {
      fail(
          "--device cuda: this LibTorch has no CUDA device (build against a CUDA LibTorch, e.g. the one in "
          "a PyTorch install, or use --device cpu)");
    }
    return torch::kCUDA;
  }
  fail("unknown device '{}': use cpu or cuda", name);
}

// ---------------------------------------------------------------------------------------------------------
// Checkpoints

void save_archive(torch::serialize::OutputArchive& archive, const fs::path& path) {
  std::ostringstream bytes;
  archive.save_to(bytes);
  write_file_atomic(path, bytes.str());
}

CheckpointMeta open_checkpoint(const fs::path& path, torch::serialize::InputArchive& archive,
                               const std::string& what, const std::string& fix, const torch::Device& device) {
  std::string text;
  try {
    archive.load_from(path.string(), device);
    c10::IValue meta;
    archive.read("meta", meta);
    text = meta.toStringRef();
  } catch (const std::exception& e) {
    fail("{} {} is unreadable ({}): {}", what, path.string(), first_line(e.what()), fix);
  }
  return parse_checkpoint_meta(text, what, path.string(), fix);
}

double recalibrated_accuracy(nn::NetworkImpl& model, data::BatchLoader& calibration, int bn_batches,
                             data::BatchLoader& eval, const torch::Device& device) {
  const torch::Dtype dtype = parameter_dtype(model);
  calibration.reset(0);
  data::Batch batch;
  nn::recalibrate_batch_norm(
      model,
      [&](torch::Tensor& images) {
        if (!calibration.next(batch)) return false;
        images = batch.images.to(device, dtype);
        return true;
      },
      bn_batches);
  torch::NoGradGuard no_grad;
  std::int64_t correct = 0, seen = 0;
  eval.reset(0);
  while (eval.next(batch)) {
    const torch::Tensor logits = model.forward(batch.images.to(device, dtype));
    correct += logits.argmax(1).eq(batch.labels.to(device)).sum().item<std::int64_t>();
    seen += batch.size();
  }
  return seen ? static_cast<double>(correct) / static_cast<double>(seen) : 0.0;
}

void add_configured_quantizer_parameters(const TrainConfig& config, nn::NetworkImpl& model) {
  // BatchQuant first: an activation quantizer in BatchQuant mode takes no bit bank.
  if (config.activation_quantizer == "batchquant") quant::use_batch_range(model);
  if (config.elastic_bits.empty()) return;
  nn::SupernetImpl* supernet = as_supernet(&model);
  if (!supernet)
    fail("elastic_bits needs a supernet: a static network trains one bit assignment (--bits-from)");
  supernet->enable_bit_bank(config.elastic_bits);
}

data::LoaderOptions bn_calibration_options(const TrainConfig& config) {
  data::LoaderOptions options;
  options.batch_size = config.batch_size;
  options.seed = data::derive_seed(config.seed, kCalibrationStream, 0);
  return options;
}

// ---------------------------------------------------------------------------------------------------------
// Trainer

Trainer::Trainer(TrainConfig config, std::shared_ptr<nn::NetworkImpl> model, const data::ImageDataset& train,
                 const data::ImageDataset& test, fs::path run_dir)
    : config_(std::move(config)),
      model_(std::move(model)),
      train_(train),
      test_(test),
      run_dir_(std::move(run_dir)),
      device_(parse_device(config_.device)) {
  config_.validate();
  distillation_ = parse_distillation(config_.distillation);
  if (train_.count == 0 || test_.count == 0) fail("training needs non-empty training and test sets");
  // Before the optimizer collects the parameters and a checkpoint is loaded: these are both's.
  add_configured_quantizer_parameters(config_, *model_);
  model_->to(device_);
  // Weight decay on conv and linear weights only: not on BN, biases or quantizer scales.
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& p : model_->named_parameters()) {
    const bool is_weight = p.value().dim() > 1;
    (is_weight ? decay : no_decay).push_back(p.value());
  }
  const auto options = torch::optim::SGDOptions(config_.lr).momentum(config_.momentum).nesterov(true);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::SGDOptions>(
                                 torch::optim::SGDOptions(options).weight_decay(config_.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::SGDOptions>(
                                    torch::optim::SGDOptions(options).weight_decay(0)));
  optimizer_ = std::make_unique<torch::optim::SGD>(groups, options);
}

std::string Trainer::model_identity() const {
  if (auto* supernet = as_supernet(model_.get())) return "supernet " + supernet->space().encode();
  if (auto* net = dynamic_cast<nn::StaticNetImpl*>(model_.get())) {
    return fmt::format("static {} {} r{}", net->spec().space, net->spec().subnet, net->spec().resolution);
  }
  return "network";
}

bool Trainer::elastic_bits_now() const {
  return !config_.elastic_bits.empty() && bits_ != quant::kFloatBits;
}

void Trainer::activate(nn::SupernetImpl& supernet, const space::Subnet& subnet, const std::string& role,
                       Rng& rng, std::string* bits_code) {
  if (!elastic_bits_now()) {
    supernet.set_active(subnet);
    return;
  }
  const space::ArchSpec spec = space::build_arch_spec(supernet.space(), subnet);
  const auto& choices = config_.elastic_bits;  // ascending (validated)
  const space::BitAssignment bits = role == "max"   ? search::qfa_uniform(spec, choices.back())
                                    : role == "min" ? search::qfa_uniform(spec, choices.front())
                                                    : search::qfa_random(spec, choices, rng);
  supernet.set_active(subnet, bits);
  if (bits_code) {
    bits_code->clear();
    for (const auto& l : bits.layers) *bits_code += std::to_string(l.weight) + std::to_string(l.activation);
  }
}

// QAT reads a prefix of the FP32 phase's images, never more: images outside train_limit may be held out.
std::int64_t Trainer::phase_images(bool qat) const {
  std::int64_t images = config_.train_limit > 0 ? std::min(config_.train_limit, train_.count) : train_.count;
  if (qat && config_.qat_train_limit > 0) images = std::min(images, config_.qat_train_limit);
  return images;
}

std::int64_t Trainer::batches_per_epoch(bool qat) const {
  return std::max<std::int64_t>(1, phase_images(qat) / config_.batch_size);
}

double Trainer::lr_at(int epoch, std::int64_t step_in_epoch) const {
  CosineSchedule s;
  if (epoch < config_.epochs) {
    const std::int64_t batches = batches_per_epoch(false);
    s = {config_.lr, config_.lr * config_.final_lr_fraction,
         static_cast<std::int64_t>(config_.warmup_epochs * static_cast<double>(batches)),
         config_.epochs * batches};
    return s.at(epoch * batches + step_in_epoch);
  }
  const std::int64_t batches = batches_per_epoch(true);
  s = {config_.qat_lr, config_.qat_lr * config_.final_lr_fraction, 0, config_.qat_epochs * batches};
  return s.at((epoch - config_.epochs) * batches + step_in_epoch);
}

void Trainer::set_bits(int bits) {
  if (bits_policy_)
    bits_policy_(bits);
  else
    quant::set_bits(*model_, bits);
  bits_ = bits;
}

void Trainer::set_lr(double lr) {
  for (auto& group : optimizer_->param_groups())
    static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
}

void Trainer::set_process_group(dist::ProcessGroup* group) {
  group_ = group && group->world_size() > 1 ? group : nullptr;
  if (!group_) return;
  if (config_.batch_size % group_->world_size() != 0) {
    fail("batch_size {} does not split over {} ranks: use a multiple of WORLD_SIZE", config_.batch_size,
         group_->world_size());
  }
  collectives_.sum = [group = group_](const std::vector<torch::Tensor>& t) { group->allreduce_sum(t); };
  collectives_.max = [group = group_](torch::Tensor& t) { group->allreduce_max(t); };
  collectives_.gather = [group = group_](const torch::Tensor& t) { return group->all_gather(t); };
  collectives_.batch_norm = config_.sync_batch_norm;
  reducer_ = std::make_unique<dist::GradientReducer>(*group_, model_->parameters());
}

namespace {

// Sets the layers' collectives for one training step and clears them after it, however it ends.
class CollectivesScope {
 public:
  explicit CollectivesScope(const quant::Collectives* c) { quant::set_collectives(c); }
  ~CollectivesScope() { quant::set_collectives(nullptr); }
};

}  // namespace

Trainer::StepLosses Trainer::step(const torch::Tensor& global_images, const torch::Tensor& global_labels,
                                  std::int64_t global_step) {
  StepLosses out;
  // Each rank takes its contiguous slice of the global batch: disjoint samples, the same subnets.
  torch::Tensor images = global_images, labels = global_labels;
  if (group_) {
    const std::int64_t share = global_images.size(0) / group_->world_size();
    images = global_images.narrow(0, share * group_->rank(), share);
    labels = global_labels.narrow(0, share * group_->rank(), share);
  }
  const CollectivesScope scope(group_ ? &collectives_ : nullptr);
  // Gradients are dropped, not zeroed (PyTorch 2's set_to_none): a weight no subnet of this step used then
  // gets no momentum or decay update, as in PyTorch 2, whatever LibTorch this builds against; and a
  // resumed run, whose weights start without gradients, takes the same steps as an uninterrupted one.
  for (auto& p : model_->parameters()) p.mutable_grad() = torch::Tensor();
  nn::SupernetImpl* supernet = as_supernet(model_.get());
  Rng rng(data::derive_seed(config_.seed, kSubnetStream, static_cast<std::uint64_t>(global_step)));
  if (supernet) activate(*supernet, supernet->sample_max(), "max", rng);
  const torch::Tensor logits = model_->forward(images);
  const torch::Tensor loss = label_smoothing_cross_entropy(logits, labels, config_.label_smoothing);
  out.loss = loss.item<double>();
  out.correct = logits.argmax(1).eq(labels).sum().item<std::int64_t>();
  if (!supernet && teacher_) {
    torch::Tensor teacher;
    {
      torch::NoGradGuard no_grad;
      teacher = teacher_(images).detach();
    }
    double value = 0;
    const torch::Tensor kd = distillation_loss(logits, teacher, labels, &value);
    out.distill = value;
    backward(kd, /*last=*/true, out);
  } else if (!supernet) {
    backward(loss, /*last=*/true, out);
  } else {
    backward(loss, /*last=*/false, out);
    // The sandwich rule: the smallest subnet and k random ones learn from the largest one's predictions.
    const torch::Tensor teacher = logits.detach();
    std::vector<space::Subnet> others = {supernet->sample_min()};
    for (int i = 0; i < config_.random_subnets; ++i) others.push_back(supernet->sample_random(rng));
    for (size_t i = 0; i < others.size(); ++i) {
      activate(*supernet, others[i], i == 0 ? "min" : "random", rng);
      const torch::Tensor student = model_->forward(images);
      double value = 0;
      const torch::Tensor kd = distillation_loss(student, teacher, labels, &value);
      out.distill += value / static_cast<double>(others.size());
      backward(kd, /*last=*/i + 1 == others.size(), out);
    }
    activate(*supernet, supernet->sample_max(), "max", rng);
  }
  if (config_.grad_clip > 0) torch::nn::utils::clip_grad_norm_(model_->parameters(), config_.grad_clip);
  optimizer_->step();
  return out;
}

void Trainer::set_teacher(Teacher teacher) {
  if (as_supernet(model_.get()))
    fail("a supernet distils in place from its max subnet: a teacher applies to a static network only");
  teacher_ = std::move(teacher);
}

torch::Tensor Trainer::distillation_loss(const torch::Tensor& student, const torch::Tensor& teacher,
                                         const torch::Tensor& labels, double* value) const {
  torch::Tensor kd;
  switch (distillation_) {
    case Distillation::kKl:
      kd = kl_distillation(student, teacher);
      *value = kd.item<double>();
      break;
    case Distillation::kAlpha:
      kd = adaptive_alpha_distillation(student, teacher, config_.alpha, value);
      break;
    case Distillation::kNone:
      kd = label_smoothing_cross_entropy(student, labels, config_.label_smoothing);
      *value = kd.item<double>();
      break;
  }
  return kd;
}

void Trainer::backward(const torch::Tensor& loss, bool last, StepLosses& out) {
  if (!group_ || !last) {
    loss.backward();
    return;
  }
  // The step's last backward: gradients are averaged over the ranks bucket by bucket while it runs, and this
  // step's loss, distillation and correct count are summed alongside.
  torch::Tensor stats = torch::tensor({out.loss, out.distill, static_cast<double>(out.correct)},
                                      torch::TensorOptions().dtype(torch::kDouble).device(device_));
  reducer_->prepare(loss, stats);
  loss.backward();
  reducer_->finish();
  out.loss = stats[0].item<double>() / group_->world_size();
  out.distill = stats[1].item<double>() / group_->world_size();
  out.correct = static_cast<std::int64_t>(std::llround(stats[2].item<double>()));
}

EpochLog Trainer::train_epoch(int epoch) {
  const int bits = bits_of(epoch);
  set_bits(bits);
  model_->train();
  data::LoaderOptions options;
  options.batch_size = config_.batch_size;
  options.drop_last = true;  // every step sees a full batch: BN statistics and the schedule stay regular
  options.augment = config_.augment;
  options.seed = config_.seed;
  data::BatchLoader loader(train_, first_n(train_.count, phase_images(epoch >= config_.epochs)), options);
  loader.reset(epoch);
  const std::int64_t batches = loader.num_batches();
  const int total_epochs = config_.epochs + config_.qat_epochs;
  ProgressLine progress(fmt::format("epoch {}/{} ({})", epoch + 1, total_epochs,
                                    bits == 32 ? "fp32" : "int" + std::to_string(bits)),
                        batches, "batches", is_writer() ? stderr : nullptr);
  EpochLog log;
  log.epoch = epoch;
  log.bits = bits;
  log.lr_start = lr_at(epoch, 0);
  const auto start = std::chrono::steady_clock::now();
  double step_seconds = 0;
  std::int64_t seen = 0, correct = 0, b = 0;
  const torch::Dtype dtype = parameter_dtype(*model_);
  data::Batch batch;
  while (loader.next(batch)) {
    set_lr(lr_at(epoch, b));
    const auto step_start = std::chrono::steady_clock::now();
    const StepLosses l = step(batch.images.to(device_, dtype), batch.labels.to(device_), epoch * batches + b);
    if (!std::isfinite(l.loss) || !std::isfinite(l.distill)) {
      fail(
          "training diverged at epoch {} batch {} ({} bits): the loss is {}. The last good checkpoint {} is "
          "kept; start a new run with a lower {} or with grad_clip (e.g. 5) in a --config file",
          epoch + 1, b + 1, bits, l.loss, checkpoint_path().string(), bits == 32 ? "lr" : "qat_lr");
    }
    step_seconds += seconds_since(step_start);
    log.loss += l.loss;
    log.distill += l.distill;
    correct += l.correct;
    seen += batch.size();
    ++b;
    progress.update(b,
                    fmt::format("loss {:.3f} kd {:.3f} lr {:.4f} {:.0f} img/s", log.loss / b, log.distill / b,
                                lr_at(epoch, b - 1), static_cast<double>(seen) / step_seconds));
    if (interrupt_after_ >= 0 && ++steps_this_process_ >= interrupt_after_) throw TrainingInterrupted();
  }
  progress.finish();
  log.loss /= static_cast<double>(std::max<std::int64_t>(1, b));
  log.distill /= static_cast<double>(std::max<std::int64_t>(1, b));
  log.train_accuracy = static_cast<double>(correct) / static_cast<double>(std::max<std::int64_t>(1, seen));
  log.images_per_second = static_cast<double>(seen) / std::max(step_seconds, 1e-9);
  log.seconds = seconds_since(start);
  return log;
}

std::vector<std::pair<std::string, space::Subnet>> Trainer::evaluation_subnets() const {
  nn::SupernetImpl* supernet = as_supernet(model_.get());
  if (!supernet) return {{"network", space::Subnet{}}};
  std::vector<std::pair<std::string, space::Subnet>> subnets = {{"max", supernet->sample_max()},
                                                                {"min", supernet->sample_min()}};
  Rng rng(data::derive_seed(config_.seed, kEvalSubnetStream, 0));
  for (int i = 0; i < config_.eval_random_subnets; ++i) {
    subnets.emplace_back(fmt::format("random{}", i + 1), supernet->sample_random(rng));
  }
  return subnets;
}

std::vector<SubnetAccuracy> Trainer::evaluate(
    const std::vector<std::pair<std::string, space::Subnet>>& subnets) {
  nn::SupernetImpl* supernet = as_supernet(model_.get());
  data::BatchLoader calibration(train_, first_n(train_.count, config_.train_limit),
                                bn_calibration_options(config_));
  data::LoaderOptions test_options;
  test_options.batch_size = 500;
  test_options.shuffle = false;
  data::BatchLoader test(test_, first_n(test_.count, config_.test_limit), test_options);

  std::vector<SubnetAccuracy> results;
  Rng bits_rng(data::derive_seed(config_.seed, kEvalSubnetStream, 1));
  for (const auto& [name, subnet] : subnets) {
    SubnetAccuracy r{name, "", quant::kFloatBits, 0, 0, ""};
    r.bits = bits_;
    if (supernet) {
      activate(*supernet, subnet, name, bits_rng, &r.bits_code);
      if (elastic_bits_now())
        r.bits = name == "max"   ? config_.elastic_bits.back()
                 : name == "min" ? config_.elastic_bits.front()
                                 : 0;
      r.subnet = subnet.encode();
      r.mflops = static_cast<double>(supernet->active_spec().macs()) / 1e6;
    } else if (auto* net = dynamic_cast<nn::StaticNetImpl*>(model_.get())) {
      r.mflops = static_cast<double>(net->spec().macs()) / 1e6;
    }
    r.accuracy = recalibrated_accuracy(*model_, calibration, config_.bn_batches, test, device_);
    results.push_back(r);
  }
  if (supernet) activate(*supernet, supernet->sample_max(), "max", bits_rng);
  return results;
}

void Trainer::save_checkpoint(int epochs_done) {
  torch::serialize::OutputArchive archive, model_archive, optimizer_archive;
  model_->save(model_archive);
  optimizer_->save(optimizer_archive);
  archive.write("model", model_archive);
  archive.write("optimizer", optimizer_archive);
  json logs = json::array();
  for (const auto& l : logs_) logs.push_back(to_json(l));
  json meta = {{"format", kCheckpointFormat},
               {"epochs_done", epochs_done},
               {"model", model_identity()},
               {"config", config_.to_json()},
               {"logs", logs}};
  if (!bit_assignment_.is_null()) meta["bit_assignment"] = bit_assignment_;
  archive.write("meta", c10::IValue(meta.dump()));
  save_archive(archive, checkpoint_path());
}

int Trainer::load_checkpoint() {
  const fs::path path = checkpoint_path();
  if (!fs::exists(path)) return 0;
  torch::serialize::InputArchive archive;
  const CheckpointMeta meta =
      open_checkpoint(path, archive, "checkpoint", "delete it to start this run over", device_);
  if (meta.model != model_identity()) {
    fail("checkpoint {} is for '{}' but this run trains '{}': choose another --run-dir", path.string(),
         meta.model, model_identity());
  }
  const json saved = meta.config.to_json(), now = config_.to_json();
  for (const auto& [key, value] : now.items()) {
    if (saved.at(key) != value) {
      fail(
          "checkpoint {} was made with {} = {}, this run has {}: an exact resume needs the same settings "
          "(or choose another --run-dir)",
          path.string(), key, saved.at(key).dump(), value.dump());
    }
  }
  try {
    torch::serialize::InputArchive model_archive, optimizer_archive;
    archive.read("model", model_archive);
    archive.read("optimizer", optimizer_archive);
    model_->load(model_archive);
    optimizer_->load(optimizer_archive);
  } catch (const std::exception& e) {
    fail("checkpoint {} does not fit this model ({}): delete it to start over", path.string(),
         first_line(e.what()));
  }
  logs_ = meta.logs;
  return meta.epochs_done;
}

void Trainer::write_logs() const {
  json epochs = json::array();
  for (const auto& l : logs_) epochs.push_back(to_json(l));
  write_json_atomic(run_dir_ / "log.json",
                    {{"model", model_identity()}, {"config", config_.to_json()}, {"epochs", epochs}});
}

namespace {

// The smallest and largest of each value over all ranks, in one maximum all-reduce of the values and their
// negatives.
std::vector<std::pair<double, double>> range_over_ranks(dist::ProcessGroup& group,
                                                        const std::vector<double>& values) {
  std::vector<double> both = values;
  for (double v : values) both.push_back(-v);
  torch::Tensor t = torch::tensor(both, torch::kDouble);
  group.allreduce_max(t);
  std::vector<std::pair<double, double>> ranges;
  const auto n = static_cast<std::int64_t>(values.size());
  for (std::int64_t i = 0; i < n; ++i) ranges.emplace_back(-t[n + i].item<double>(), t[i].item<double>());
  return ranges;
}

}  // namespace

void Trainer::start_from_rank0_weights() {
  // A fresh run starts every rank from rank 0's weights, buffers and quantizer state, as DDP does: a network
  // built by extraction or on another machine need not round alike everywhere. The ranks must hold the same
  // network: its tensor count and size are compared first, so a mismatch is an error, not garbage.
  std::vector<torch::Tensor> state;
  for (const auto& p : model_->parameters()) state.push_back(p);
  for (const auto& b : model_->buffers()) state.push_back(b);
  double size = 0;
  for (const auto& t : state) size += static_cast<double>(t.numel());
  const auto ranges = range_over_ranks(*group_, {static_cast<double>(state.size()), size});
  if (ranges[0].first != ranges[0].second || ranges[1].first != ranges[1].second) {
    fail(
        "rank {} holds a network of {} tensors ({} values), other ranks between {} and {}: every rank must "
        "train the same network",
        group_->rank(), state.size(), size, ranges[0].first, ranges[0].second);
  }
  group_->broadcast(state, 0);
}

std::vector<EpochLog> Trainer::run() {
  require_writable_directory(run_dir_, "--run-dir");
  const int total = config_.epochs + config_.qat_epochs;
  const int done = load_checkpoint();
  if (group_) {
    // Every rank must resume from the same epoch: one that cannot see rank 0's checkpoint would train
    // other steps and the collectives would pair unrelated tensors.
    const auto [earliest, latest] = range_over_ranks(*group_, {static_cast<double>(done)})[0];
    if (latest != earliest) {
      fail(
          "rank {} resumes from epoch {}, the ranks from epochs {} to {}: every rank must see the same {} (a "
          "run directory on a shared file system)",
          group_->rank(), done, earliest, latest, checkpoint_path().string());
    }
  }
  if (group_ && done == 0) start_from_rank0_weights();
  if (done > 0) {
    if (is_writer())
      std::fprintf(stderr, "resuming %s from epoch %d of %d\n", checkpoint_path().c_str(), done, total);
    // Bit-widths are settings, not state: a finished run evaluates in the precision it ended in.
    set_bits(bits_of(done - 1));
  }
  for (int epoch = done; epoch < total; ++epoch) {
    EpochLog log = train_epoch(epoch);
    const bool phase_end = epoch + 1 == config_.epochs || epoch + 1 == total;
    auto subnets = evaluation_subnets();
    if (!phase_end && subnets.size() > 2) subnets.resize(2);  // max and min every epoch, all at a phase's end
    if (!is_writer()) {
      logs_.push_back(log);
      continue;  // rank 0 evaluates and writes; the next step's all-reduce waits for it
    }
    log.eval = evaluate(subnets);
    std::string line = fmt::format("epoch {}/{}: loss {:.4f}, train acc {:.4f}, {:.0f} img/s;", epoch + 1,
                                   total, log.loss, log.train_accuracy, log.images_per_second);
    for (const auto& e : log.eval) line += fmt::format(" {} {:.4f}", e.name, e.accuracy);
    std::fprintf(stderr, "%s\n", line.c_str());
    logs_.push_back(log);
    save_checkpoint(epoch + 1);
    write_logs();
  }
  return logs_;
}

}  // namespace qnas::train
