#pragma once
// The settings and records of training, without LibTorch: the configs of `qnas train` (TrainConfig) and of
// block-wise distillation (BlockKdConfig), the epoch logs, and the metadata a checkpoint carries. They are
// JSON a user writes or a run directory keeps, so they are parsed and checked here, where the fuzz targets
// (fuzz/fuzz_configs.cpp, fuzz/fuzz_checkpoint_meta.cpp) reach them without a LibTorch build.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qnas::train {

struct AlphaDivergenceOptions {
  double alpha_min = -1.0;
  double alpha_max = 1.0;
  double ratio_clip = 5.0;  // clip of (p/q)^alpha
};

// Which in-place distillation the sandwich rule uses: "kl", "alpha" or "none" (labels only).
enum class Distillation { kKl, kAlpha, kNone };
Distillation parse_distillation(const std::string& name);
const char* to_string(Distillation distillation);

// "cpu" or "cuda", or a qnas::Error naming both; whether CUDA is there is the trainer's question.
void check_device_name(const std::string& name);
// "lsq+" or "batchquant" (TrainConfig::activation_quantizer), or a qnas::Error naming both.
void check_activation_quantizer_name(const std::string& name);

struct TrainConfig {
  int epochs = 10;     // FP32 epochs
  int qat_epochs = 0;  // LSQ+ QAT epochs after them
  int qat_bits = 8;
  std::int64_t batch_size = 128;
  double lr = 0.1;
  double qat_lr = 0.005;
  double final_lr_fraction = 0.0;  // of the phase's initial rate
  double warmup_epochs = 1.0;
  double momentum = 0.9;
  double weight_decay = 5e-5;  // on conv and linear weights only
  double label_smoothing = 0.1;
  int random_subnets = 2;  // k of the sandwich rule
  std::string distillation = "alpha";
  AlphaDivergenceOptions alpha;
  bool augment = true;           // random crop (pad 2) + horizontal flip
  std::int64_t train_limit = 0;  // use only the first N training images (0 = all)
  // QAT epochs use only the first N of train_limit's images (0 = all of them): INT8 QAT adapts trained FP32
  // weights and costs 2-3x an FP32 step, so a short budget's images go further in the FP32 phase.
  std::int64_t qat_train_limit = 0;
  std::int64_t test_limit = 0;  // evaluate on the first N test images (0 = all)
  int bn_batches = 20;          // BN recalibration batches before every subnet evaluation
  int eval_random_subnets = 3;  // besides max and min, at the end of each phase
  std::uint64_t seed = 0;
  std::string device = "cpu";  // or "cuda"
  // QFA: a supernet's QAT epochs train bit-width as an elastic dimension, weights and activations of each
  // layer apart, from these choices (e.g. 2 3 4); every quantizer keeps a scale per bit-width. The sandwich
  // takes the largest subnet at the largest bits, the smallest at the smallest, the random ones at random
  // per-layer bits. Empty: one bit-width (qat_bits) for every layer.
  std::vector<int> elastic_bits;
  // Clips the global L2 norm of the gradients to this before each step (0: off). Below 4 bits the
  // straight-through estimator passes gradient to every element a sparse forward zeroed, batch norm scales it
  // up layer by layer, and a deep network's first QAT step can diverge (measured at 2 bits: gradients of 1e3
  // at step 0, NaN at step 2); clipping at 5 keeps it finite.
  double grad_clip = 0;
  // How QAT quantises activations: "lsq+" (a learned scale and offset per tensor) or "batchquant" (QFA's
  // BatchQuant: the range of each batch, scaled and shifted by learned parameters, which follows the shifting
  // activations of the subnets and bit-widths a supernet samples; at inference the range averaged over the BN
  // recalibration batches). A BatchQuant network deploys as LSQ+ with that calibrated range.
  std::string activation_quantizer = "lsq+";
  // Data parallel over ranks: batch norm normalises over the global batch (true, which gives the weights of
  // one process), or each rank over its own share, as PyTorch's DDP does by default. Synchronised batch norm
  // sends two small blocking messages per layer and subnet; measured on 2 ranks of a 2-core machine:
  // 100 img/s synchronised, 273 not (docs/training-throughput.md).
  bool sync_batch_norm = true;

  // Throws qnas::Error naming a key the config does not have or a value out of range.
  static TrainConfig from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
  void validate() const;
};

// The grad_clip that QAT below 4 bits gets unless told otherwise (`qnas train --elastic-bits`, `qnas
// mixed-precision`).
inline constexpr double kLowBitGradClip = 5.0;

// "tiny": minutes on a 2-core CPU, for CI and first contact. "fmnist": the full Fashion-MNIST schedule.
TrainConfig preset(const std::string& name);

struct BlockKdConfig {
  int epochs = 1;      // FP32 epochs
  int qat_epochs = 1;  // LSQ+ epochs after them
  int qat_bits = 8;
  std::int64_t batch_size = 64;
  double lr = 2e-3;  // Adam, cosine to zero within each phase
  double qat_lr = 2e-4;
  int random_subnets = 2;        // with max and min: the 4-way sandwich
  std::int64_t train_limit = 0;  // the first N training images (0 = all but the held-out ones)
  std::int64_t heldout = 1000;   // the last N training images: never trained on, the LUT's NSR data
  int lut_rows = 1000;           // sampled sub-stages per LUT file
  double stale_seconds = 600;    // a lock untouched this long belongs to a dead worker
  std::uint64_t seed = 0;
  std::string device = "cpu";

  static BlockKdConfig from_json(const nlohmann::json& j);  // names unknown keys and wrong types
  nlohmann::json to_json() const;
  void validate() const;
};

// "tiny": every block of fmnistw in minutes on a 2-core CPU. "fmnist": the full schedule.
BlockKdConfig block_kd_preset(const std::string& name);

struct SubnetAccuracy {
  std::string name;    // max, min, random1..
  std::string subnet;  // encoding ("" for a static network)
  int bits = 32;       // 0: per-layer bits (bits_code)
  double accuracy = 0;
  double mflops = 0;
  std::string bits_code;  // elastic bits: weight and input digits per layer (search::QfaSpace::key)
};

struct EpochLog {
  int epoch = 0;
  int bits = 32;
  double lr_start = 0;
  double loss = 0;     // label loss of the max subnet (or the static network)
  double distill = 0;  // mean distillation loss of the other subnets
  double train_accuracy = 0;
  double images_per_second = 0;  // training images through the max subnet per second of step time
  double seconds = 0;
  std::vector<SubnetAccuracy> eval;
};

nlohmann::json to_json(const EpochLog& log);
EpochLog epoch_log_from_json(const nlohmann::json& j);

// The checkpoint format Trainer writes. 2: activation quantizers belong to the tensors' producers
// (core/quant_contract.h); format 1 quantised at conv inputs and cannot be read.
inline constexpr const char* kCheckpointFormat = "qnas-checkpoint-2";

// What a checkpoint's "meta" entry holds besides the tensors, checked field by field.
struct CheckpointMeta {
  int epochs_done = 0;
  std::string model;   // the identity of the trained network
  TrainConfig config;  // keys added since it was written at their defaults
  std::vector<EpochLog> logs;
  nlohmann::json bit_assignment;  // null unless a mixed-precision network
};

// Parses the meta text of checkpoint `path` ("<what> <path>" in errors, e.g. what = "teacher checkpoint"):
// another format, or a field missing, of the wrong type or out of range, is one qnas::Error naming the field
// and `fix`.
CheckpointMeta parse_checkpoint_meta(const std::string& text, const std::string& what,
                                     const std::string& path, const std::string& fix);

}  // namespace qnas::train
