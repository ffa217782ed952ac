#pragma once
// `qnas run`: data in, a searched INT8 model out. The stages of SpaceEvo on one run directory:
//   data -> latency (this CPU's INT8 block LUT, cached per machine) -> teacher -> block-kd -> block-lut ->
//   space-search (Q-T score, aging evolution) -> supernet -> subnet-search -> finish (fine-tune, export,
//   evaluate on fake-quant, oneDNN and ONNX Runtime) -> the same three stages on a hand-designed baseline
//   space -> report (report.md, report.html, summary.json).
// Every stage is skipped when its recorded fingerprint (its settings and those of what it reads) is
// unchanged; a changed setting reruns the stage and the stages that read it, and says so. A killed run,
// started again, resumes inside the stage it was in from that stage's own checkpoints.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qnas::pipeline {

struct RunOptions {
  std::string data = "fashion-mnist";  // fashion-mnist, cifar10 or a directory (data/source.h)
  std::string preset = "quick";
  std::vector<double> limits_ms;      // empty: quantiles of the hyperspace's INT8 latency on this CPU
  std::filesystem::path run_dir;      // default runs/<preset>
  std::filesystem::path config_file;  // JSON overriding preset keys
  std::filesystem::path cache_dir;    // the latency LUT cache; default $QNAS_CACHE_DIR, ~/.cache/qnas
  std::string until;                  // stop after this stage (empty: run them all)
  int threads = 0;                    // LibTorch threads (0: every core)
  std::string device = "cpu";
  std::uint64_t seed = 0;
};

// The stage names in order.
const std::vector<std::string>& stage_names();

// The preset with the config file's overrides, the device and the seed applied; a qnas::Error for an
// unknown preset, key or value.
nlohmann::json resolve_run_config(const RunOptions& options);

// Runs (or resumes) the pipeline; returns summary.json's content.
nlohmann::json run_pipeline(const RunOptions& options);

// Where the latency LUT cache lives for these options.
std::filesystem::path cache_dir_for(const RunOptions& options);

}  // namespace qnas::pipeline
