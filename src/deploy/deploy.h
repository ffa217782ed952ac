#pragma once
// Deploying what `qnas train` made. A run directory is rebuilt into its network in the precision training
// ended in; a supernet gives up one subnet (BN recalibrated on training images); that static network is
// lowered to the runtime's Program with BN folded into the weights. A QAT run brings its learned scales and
// zero points (the quantisation contract, core/quant_contract.h); an FP32 run is calibrated on training
// images.
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/transform.h"
#include "nn/static_net.h"
#include "nn/supernet.h"
#include "runtime/program.h"
#include "runtime/quant.h"
#include "space/bit_assignment.h"
#include "train/trainer.h"

namespace qnas::deploy {

struct TrainedRun {
  std::filesystem::path dir;
  std::string identity;                     // "static SPACE SUBNET rRES" or "supernet SPACE"
  std::optional<space::SearchSpace> space;  // always set by load_run
  train::TrainConfig config;
  int bits = 32;  // the precision training ended in
  // A network trained or fine-tuned in mixed precision (`qnas mixed-precision`, `qnas train --bits-from`):
  // its per-layer bits, already set on `net` by load_run.
  std::optional<space::BitAssignment> assignment;
  nn::Supernet supernet{nullptr};
  nn::StaticNet net{nullptr};  // a static run's network
  bool is_supernet() const { return !supernet.is_empty(); }
};

// Reads DIR/checkpoint.pt. A missing directory or checkpoint, an unreadable or foreign file and an unfinished
// run each get one qnas::Error naming the fix.
TrainedRun load_run(const std::filesystem::path& dir);

// The network to deploy, in eval mode: a static run's own network, or the supernet's `subnet` (empty: the max
// subnet; an encoding outside the space is a qnas::Error) extracted after BN recalibration on `train` images.
// `bits_from` (empty: none) gives it per-layer bits: a supernet trained with elastic bits runs the subnet on
// the ranges it learned for them; any other 8-bit run keeps its trained ranges (apply_bits_from).
nn::StaticNet network_to_deploy(TrainedRun& run, const std::string& subnet, const data::ImageDataset& train,
                                const data::Normalize& normalize,
                                const std::filesystem::path& bits_from = {});

// `--bits-from FILE|DIR` on a loaded run's network: the assignment's bits on a network trained at 8 bits
// (trained ranges kept, nn::apply_bits). One qnas::Error for an FP32 run (no trained ranges to keep:
// fine-tune with `qnas mixed-precision` or train with `qnas train --bits-from`), a run that already has its
// own per-layer bits, or a file for another network.
void apply_bits_from(const TrainedRun& run, nn::StaticNetImpl& net, const std::filesystem::path& path);

enum class Calibration { kMinMax, kPercentile };

struct DeployedModel {
  space::ArchSpec spec;
  runtime::Program program;
  runtime::Weights weights;  // BN folded, FP32
  runtime::QuantParams quant;
  std::string quant_source;  // "lsq+ (trained)" or "calibrated min-max" / "calibrated percentile"
};

// Folds BN into every conv and reads the network's quantizers (a QAT network at 8 bits), or calibrates the
// FP32 network on `calibration` images (C x H x W normalised floats) when it was never quantised.
DeployedModel lower_network(nn::StaticNetImpl& net, const std::vector<std::vector<float>>& calibration,
                            Calibration method = Calibration::kMinMax, double percentile = 99.99);

// Images `indices` of `images` as the engines take them: normalised, then resized to `resolution` with the
// bilinear resize the network applies in training (nn::resize_images; 0 keeps the data set's size), as
// C x resolution x resolution float vectors.
std::vector<std::vector<float>> normalised_images(const data::ImageDataset& images,
                                                  const std::vector<std::int64_t>& indices,
                                                  const data::Normalize& normalize, int resolution = 0);

}  // namespace qnas::deploy
