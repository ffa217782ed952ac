#pragma once
// What the deploy commands share with `qnas export` and `qnas profile ort`.
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "runtime/program.h"

namespace qnas::cli {

// `qnas export onnx --run-dir D [--subnet ENC]` (needs LibTorch): the trained network, BN folded, with its
// trained (or calibrated) scales and zero points and the deployer's metadata.
struct DeployArgs {
  std::string run_dir, subnet, data_dir = "/usr/share/datasets/fashion-mnist";
  std::string calibration = "minmax";  // FP32 runs only: minmax | percentile
  double percentile = 99.99;
  std::string bits_from;  // a bit assignment for a run trained at 8 bits (deploy::apply_bits_from)
};
void add_deploy_options(CLI::App& cmd, DeployArgs& a, bool with_subnet = true);
// int4_weights: exporter::OnnxOptions::int4_weights (weights trained at 4 bits or fewer stored as INT4).
void export_trained_onnx(const DeployArgs& a, const std::string& precision, const std::string& out,
                         bool int4_weights = false);

void add_eval_command(CLI::App& app);

}  // namespace qnas::cli
