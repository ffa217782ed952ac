#pragma once
// `qnas subnet-search` as a job on a finished supernet run: the search of search/subnet_search.h with
//  - accuracy from the supernet in its final precision (INT8 fake-quant after QAT), BN recalibrated on the
//    run's own training batches, on held-out training images the run never trained on (never the test set),
//    cached by encoding in OUT/evaluations.json; or from a ridge predictor fitted on such evaluations;
//  - latency from the block latency LUT of this CPU (filled with every block of the space, its correction
//    fitted on measured networks when it has none);
//  - random search at the same budget as the baseline;
//  - the final subnets measured where they will run: the front on the oneDNN INT8 engine with the trained
//    scales and zero points (as `qnas eval` does), the best per limit on the test set, once.
// Writes OUT/front.json, OUT/best.json, OUT/front.svg and OUT/search.md; every search resumes from its
// checkpoint (OUT/<algorithm>/checkpoint.json).
#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "data/source.h"
#include "runtime/measure.h"
#include "search/subnet_search.h"

namespace qnas::pipeline {

struct SubnetSearchJobOptions {
  std::filesystem::path run_dir;
  std::filesystem::path latency_lut;  // created and filled when missing
  std::filesystem::path out_dir;      // default RUN_DIR/subnet-search
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  const data::LoadedData* data = nullptr;  // not owned; when set, these images instead of data_dir's
  search::SubnetSearchOptions
      search;  // algorithm, limits, sizes, seed (checkpoint and identity are set here)
  std::string evaluator = "supernet";  // or "predictor"
  bool random_baseline = true;         // also random search at the same budget (unless the algorithm is)
  std::int64_t heldout_images = 2000;  // of the held-out split; 0: all of it
  int predictor_train = 200, predictor_test = 50;
  int calibration_networks = 24;  // measured to fit the LUT correction when the LUT has none
  int threads = 1;                // of the INT8 engine, for the LUT and the measurements
  runtime::MeasureOptions measure;
  // What a latency is, for the LUT, its correction and the front's measurements alike: the minimum of the
  // timed runs is steady on a VM whose speed drifts by 10% within minutes, the median is not
  // (docs/subnet-search.md).
  std::string statistic = "min";
  bool final_test = true;        // the best subnet per limit on the test set (fake-quant and oneDNN)
  std::int64_t test_images = 0;  // of the test set; 0: all
};

struct SubnetSearchJobResult {
  nlohmann::json front, best;
  std::string report;  // search.md
  std::filesystem::path out_dir;
};

// One qnas::Error for a run directory that is not a finished supernet run, a run without held-out images,
// an unknown evaluator, and every bad search option (search_subnets' own checks).
SubnetSearchJobResult run_subnet_search_job(SubnetSearchJobOptions options);

}  // namespace qnas::pipeline
