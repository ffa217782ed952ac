#pragma once
// The one training loop of qnas: the elastic supernet with the sandwich rule (max + min + k random subnets
// per step, in-place distillation from the max subnet), or a plain static network (baselines, teachers).
// FP32 epochs first, then LSQ+ QAT epochs at `qat_bits`. SGD with Nesterov momentum, cosine schedule with
// warm-up, label smoothing. After every epoch an atomic checkpoint (model, optimizer, progress); a killed run
// resumes from it and ends with the same weights as an uninterrupted one: the data order, augmentation and
// subnet draws depend only on (seed, epoch, step).
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/rng.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "dist/gradient_reducer.h"
#include "dist/process_group.h"
#include "nn/network.h"
#include "quant/collectives.h"
#include "space/subnet.h"
#include "train/losses.h"
#include "train/train_config.h"

namespace qnas::nn {
class SupernetImpl;
}  // namespace qnas::nn

namespace qnas::train {

class TrainingInterrupted : public std::runtime_error {
 public:
  TrainingInterrupted() : std::runtime_error("training interrupted") {}
};

class Trainer {
 public:
  // `model` is a nn::Supernet (elastic) or any other network (plain). Results go to `run_dir`.
  Trainer(TrainConfig config, std::shared_ptr<nn::NetworkImpl> model, const data::ImageDataset& train,
          const data::ImageDataset& test, std::filesystem::path run_dir);

  // Trains to the end, resuming from run_dir/checkpoint.pt when it exists. Returns the epoch logs.
  std::vector<EpochLog> run();

  // Accuracy on the test set after BN recalibration, for named subnets (ignored for a static network).
  std::vector<SubnetAccuracy> evaluate(const std::vector<std::pair<std::string, space::Subnet>>& subnets);
  // max, min and `eval_random_subnets` random subnets drawn with the config's seed.
  std::vector<std::pair<std::string, space::Subnet>> evaluation_subnets() const;

  // Data parallel over `group` (not owned; null = one process): each rank trains on its slice of every
  // global batch with the same subnets, batch norm and quantizer ranges over the whole batch, gradients
  // averaged before each step; rank 0 alone evaluates and writes checkpoints and logs, every rank resumes
  // from the same checkpoint. Call before run().
  void set_process_group(dist::ProcessGroup* group);

  // Replaces "every quantizer at b bits" when a phase starts (b = 32 or qat_bits): a mixed-precision network
  // keeps its own per-layer bits through its QAT epochs. Call before run().
  void set_bits_policy(std::function<void(int bits)> policy) { bits_policy_ = std::move(policy); }
  // The per-layer bits of such a network (space::BitAssignment JSON), written into every checkpoint's meta so
  // that whoever loads the run (deploy::load_run) sets the same bits.
  void set_bit_assignment(nlohmann::json assignment) { bit_assignment_ = std::move(assignment); }
  // A static network then learns from `teacher`'s logits on each batch with the config's distillation loss
  // ("none": from the labels) instead of from the labels: a fine-tune in fewer bits distilled from the same
  // network in its trained bits. Call before run().
  using Teacher = std::function<torch::Tensor(const torch::Tensor& images)>;
  // A supernet is refused: it distils in place from its max subnet.
  void set_teacher(Teacher teacher);

  // Test hook: throw TrainingInterrupted after this many optimizer steps of this process (a kill).
  void interrupt_after_steps(std::int64_t steps) { interrupt_after_ = steps; }
  std::filesystem::path checkpoint_path() const { return run_dir_ / "checkpoint.pt"; }

 private:
  struct StepLosses {
    double loss = 0, distill = 0;
    std::int64_t correct = 0;
  };
  StepLosses step(const torch::Tensor& images, const torch::Tensor& labels, std::int64_t global_step);
  // loss.backward(); on more than one rank the step's last one also averages the gradients and `out`.
  void backward(const torch::Tensor& loss, bool last, StepLosses& out);
  // The distillation loss of `student` against detached `teacher` logits; its value goes to `value`.
  torch::Tensor distillation_loss(const torch::Tensor& student, const torch::Tensor& teacher,
                                  const torch::Tensor& labels, double* value) const;
  EpochLog train_epoch(int epoch);
  void start_from_rank0_weights();
  void set_lr(double lr);
  void set_bits(int bits);
  double lr_at(int epoch, std::int64_t step_in_epoch) const;
  std::int64_t phase_images(bool qat) const;  // the training images an FP32 or a QAT epoch reads
  std::int64_t batches_per_epoch(bool qat) const;
  int bits_of(int epoch) const { return epoch < config_.epochs ? 32 : config_.qat_bits; }
  void save_checkpoint(int epochs_done);
  int load_checkpoint();  // epochs done, 0 when there is no checkpoint
  void write_logs() const;
  std::string model_identity() const;
  // Makes `subnet` active; in elastic-bits QAT also its bits for its role ("max", "min" or random).
  void activate(nn::SupernetImpl& supernet, const space::Subnet& subnet, const std::string& role, Rng& rng,
                std::string* bits_code = nullptr);
  bool elastic_bits_now() const;

  TrainConfig config_;
  std::shared_ptr<nn::NetworkImpl> model_;
  const data::ImageDataset& train_;
  const data::ImageDataset& test_;
  std::filesystem::path run_dir_;
  torch::Device device_;
  std::unique_ptr<torch::optim::SGD> optimizer_;
  Distillation distillation_;
  std::vector<EpochLog> logs_;
  int bits_ = 32;  // what the quantizers are set to now
  std::int64_t steps_this_process_ = 0;
  dist::ProcessGroup* group_ = nullptr;
  std::unique_ptr<dist::GradientReducer> reducer_;
  quant::Collectives collectives_;
  bool is_writer() const { return !group_ || group_->rank() == 0; }
  std::int64_t interrupt_after_ = -1;
  std::function<void(int)> bits_policy_;
  nlohmann::json bit_assignment_;
  Teacher teacher_;
};

// "cpu" or "cuda" (checked: a CUDA device must exist); anything else is a qnas::Error naming the choices.
torch::Device parse_device(const std::string& name);

// Writes `archive` to `path` atomically (core/fs.h). LibTorch 1.13 must not write the file itself: when a
// write fails (a full disk), PyTorchStreamWriter throws from its destructor during unwinding and the process
// aborts (measured: Trainer.ACheckpointThatCannotBeWrittenKeepsTheLastOneAndTheRunResumes). It writes to
// memory instead.
void save_archive(torch::serialize::OutputArchive& archive, const std::filesystem::path& path);

// Opens `path` into `archive` and returns its checked metadata. A file that does not parse is a qnas::Error
// "<what> <path> is unreadable (<cause>): <fix>"; another format or damaged metadata is one naming them.
CheckpointMeta open_checkpoint(const std::filesystem::path& path, torch::serialize::InputArchive& archive,
                               const std::string& what, const std::string& fix,
                               const torch::Device& device = torch::kCPU);

// Top-1 accuracy of `model` (its active subnet) on `eval` after recalibrating BN on the first `bn_batches`
// batches of `calibration` (both loaders restart at epoch 0, so the same call gives the same number).
double recalibrated_accuracy(nn::NetworkImpl& model, data::BatchLoader& calibration, int bn_batches,
                             data::BatchLoader& eval, const torch::Device& device = torch::kCPU);

// The quantizer parameters a run of `config` trains and its checkpoint holds, added to a freshly built
// `model`: BatchQuant activations (`activation_quantizer`), then a QFA supernet's scale per bit-width
// (`elastic_bits`; a static network is refused). The trainer and every reader of a checkpoint call it before
// loading one.
void add_configured_quantizer_parameters(const TrainConfig& config, nn::NetworkImpl& model);

// The loader options of the BN-recalibration batches Trainer::evaluate draws, so a deployed subnet is
// recalibrated on exactly the batches its reported accuracy used.
data::LoaderOptions bn_calibration_options(const TrainConfig& config);

}  // namespace qnas::train
