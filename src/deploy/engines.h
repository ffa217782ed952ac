#pragma once
// A deployed network run where it will run, on images a caller chooses: LibTorch fake-quant (the reference),
// the oneDNN INT8 engine, and ONNX Runtime (tools/ort-harness) on the exported INT8 file; top-1/top-5,
// top-1 agreement with fake-quant and batch-1 latency. `qnas eval` and `qnas run`'s finish stage share it.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "data/transform.h"
#include "deploy/deploy.h"

namespace qnas::deploy {

struct EngineResult {
  std::string engine;
  double top1 = 0, top5 = 0, agreement = -1;  // agreement: top-1 equal to fake-quant's, fraction of images
  double median_ms = -1, p90_ms = -1, min_ms = -1;
  std::vector<std::vector<float>> logits;
  std::map<std::string, int> implementations;  // oneDNN only
  std::string ort_optimization;                // ORT only: the graph optimisation level the model ran at
};

// Top-1 and top-5 against `labels`, and agreement with `reference` when given.
void score(EngineResult& r, const std::vector<std::int64_t>& labels, const EngineResult* reference);

EngineResult run_fakequant(nn::StaticNetImpl& net, const data::ImageDataset& images,
                           const std::vector<std::int64_t>& indices, const data::Normalize& normalize);
// The INT8 plan on every image, then `runs` timed batch-1 runs.
EngineResult run_onednn(const DeployedModel& m, const std::vector<std::vector<float>>& images, int threads,
                        int runs);
// Writes work_dir/model-int8.onnx and the images, and runs the harness on them.
EngineResult run_ort(const DeployedModel& m, const std::vector<std::vector<float>>& images,
                     const std::string& harness, int threads, int runs,
                     const std::filesystem::path& work_dir);

// The network lowered for the engines: a QAT network brings its own scales and zero points, an FP32 one is
// calibrated on the first 256 training images.
DeployedModel lower_for_engines(nn::StaticNetImpl& net, const data::ImageDataset& train,
                                const data::Normalize& normalize, Calibration method = Calibration::kMinMax,
                                double percentile = 99.99);

// The metadata a shipped ONNX file carries: qnas version, space and subnet, precision, quantisation source,
// input shape, layout, resize and normalisation, class names.
std::vector<std::pair<std::string, std::string>> export_metadata(const DeployedModel& m,
                                                                 const data::ImageDataset& classes,
                                                                 const data::Normalize& normalize,
                                                                 const std::string& precision);

}  // namespace qnas::deploy
