#pragma once
// What the deploy commands share with `qnas export` and `qnas profile ort`.
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "runtime/program.h"

namespace qnas::cli {

// Runs tools/ort-harness on an ONNX model and a file of float32 images; its JSON (timing and outputs).
nlohmann::json run_ort_harness(const std::string& harness, const std::string& model,
                               const std::string& images_file, const runtime::Program& program, int threads,
                               int runs);

// `qnas export onnx --run-dir D [--subnet ENC]` (needs LibTorch): the trained network, BN folded, with its
// trained (or calibrated) scales and zero points and the deployer's metadata.
void export_trained_onnx(const std::string& run_dir, const std::string& subnet, const std::string& precision,
                         const std::string& out, const std::string& data_dir);

void add_eval_command(CLI::App& app);

}  // namespace qnas::cli
