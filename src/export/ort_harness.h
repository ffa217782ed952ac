#pragma once
// ONNX Runtime, the reference engine: tools/ort-harness (onnxruntime-node from npm) run as a child process.
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/program.h"

namespace qnas::exporter {

// Runs the harness on an ONNX model and a file of float32 images; its JSON (timing and outputs). A missing
// harness names scripts/setup.sh; a failing one names the model.
nlohmann::json run_ort_harness(const std::string& harness, const std::string& model,
                               const std::string& images_file, const runtime::Program& program, int threads,
                               int runs);
// tools/ort-harness/ort_bench.js of this source tree.
std::string default_ort_harness();

}  // namespace qnas::exporter
