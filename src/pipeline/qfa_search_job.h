#pragma once
// `qnas subnet-search --objective bitops|size` on a supernet trained with elastic bits (`qnas train
// --elastic-bits`): QFA's search over architecture and per-layer bits together.
//  1. random networks (a subnet and its bits) scored by the supernet on held-out training images after BN
//     recalibration, cached in OUT/evaluations.json (a killed job resumes where it stopped);
//  2. a ridge accuracy predictor on their one-hot features (subnet and bits), its Kendall tau and RMSE
//     measured on networks it never saw;
//  3. NSGA-II on (predicted accuracy, BitOPs or model size), the cost counted exactly from the ArchSpec;
//  4. up to `front_test` networks spread along the front, and the uniform-bit networks (the largest and
//     smallest subnet at each bit choice), measured on the held-out images and on the test set.
// Writes OUT/front.json, OUT/front.csv, OUT/front.svg, OUT/search.md and OUT/assignments/NAME.json: each a
// bit assignment that `qnas train --subnet ENC --bits-from` fine-tunes and `qnas eval --bits-from` reads.
#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "data/source.h"
#include "search/qfa_search.h"

namespace qnas::pipeline {

struct QfaSearchJobOptions {
  std::filesystem::path run_dir;
  std::filesystem::path out_dir;  // default RUN_DIR/qfa-search-<objective>
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  const data::LoadedData* data = nullptr;  // not owned; when set, these images instead of data_dir's
  std::string objective = "bitops";        // or "size"
  search::QfaSearchOptions search;
  int predictor_train = 200, predictor_test = 50;
  std::int64_t heldout_images = 2000;  // of the held-out split; 0: all of it
  std::int64_t test_images = 0;        // of the test set; 0: all
  int front_test = 8;                  // front networks measured on the test set
};

struct QfaSearchJobResult {
  nlohmann::json front;  // the measured front networks and the uniform baselines
  std::string report;    // search.md
  std::filesystem::path out_dir;
};

// One qnas::Error for a run that is not a finished supernet trained with elastic bits, an unknown
// objective, a run without held-out images, and bad search sizes.
QfaSearchJobResult run_qfa_search_job(QfaSearchJobOptions options);

}  // namespace qnas::pipeline
