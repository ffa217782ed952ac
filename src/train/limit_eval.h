#pragma once
// How good a trained supernet is under latency limits: for each limit, the INT8 test accuracy of its best
// subnet that fits. Candidates are drawn at random, their latency predicted from the block latency LUT
// (blocks it lacks are measured first), and the `evaluate` largest by FLOPs within the limit are evaluated
// after BN recalibration; the best of them stands for the limit. A cheap stand-in for a subnet search, the
// same for every space, so spaces can be compared under one budget.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "latency/latency_lut.h"
#include "nn/supernet.h"
#include "train/trainer.h"

namespace qnas::train {

struct LimitEvalOptions {
  std::vector<double> limits_ms;
  int draws = 1000;  // random subnets drawn per limit
  int evaluate = 4;  // of those within the limit, the largest by FLOPs are evaluated
  std::uint64_t seed = 0;
  runtime::MeasureOptions measure;
};

struct LimitResult {
  double limit_ms = 0;
  int within = 0;  // draws that fit
  std::string subnet;
  double latency_ms = 0;
  double mflops = 0;
  double accuracy = 0;  // -1 when no draw fits
};

std::vector<LimitResult> best_under_limits(Trainer& trainer, nn::SupernetImpl& supernet,
                                           latency::LatencyLut& lut, const std::filesystem::path& lut_path,
                                           const LimitEvalOptions& options);
nlohmann::json to_json(const LimitResult& r);

}  // namespace qnas::train
