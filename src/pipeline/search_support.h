#pragma once
// What the searches over a trained supernet share (`qnas subnet-search` by latency, and by BitOPs or size
// over architecture and bits): the run's images split into those it trained on, a held-out tail the search
// scores subnets on (never the test set) and the test set for the final subnets; the supernet's accuracy of
// one subnet (optionally in per-layer bits) after BN recalibration; and a cache of held-out accuracies that
// survives restarts and is set aside when it was made for another run.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/loader.h"
#include "data/source.h"
#include "deploy/deploy.h"
#include "space/bit_assignment.h"

namespace qnas::pipeline {

std::vector<std::int64_t> index_range(std::int64_t from, std::int64_t to);

struct SearchData {
  data::ImageDataset train, test;
  std::vector<std::int64_t> trained_on, heldout;
  data::Normalize normalize = data::Normalize::fashion_mnist();
};

// `data` when set, else Fashion-MNIST from `data_dir`; the first `test_images` test images (0: all) and
// `heldout_images` held-out ones (0: every image the run did not train on). One qnas::Error when the run
// trained on every training image.
SearchData load_search_data(const deploy::TrainedRun& run, const data::LoadedData* data,
                            const std::string& data_dir, std::int64_t test_images,
                            std::int64_t heldout_images);

// What an accuracy of this run means (its checkpoint, precision, recalibration and split): caches compare it.
nlohmann::json run_identity(const deploy::TrainedRun& run, const SearchData& d,
                            const std::string& data_source);

// Accuracy of a subnet from the supernet on a fixed image set, after recalibrating BN on the run's own
// training batches.
class SupernetAccuracy {
 public:
  SupernetAccuracy(deploy::TrainedRun& run, const SearchData& d, const data::ImageDataset& eval,
                   const std::vector<std::int64_t>& indices);
  double operator()(const space::Subnet& subnet);
  // In per-layer bits (a supernet trained with elastic bits).
  double operator()(const space::Subnet& subnet, const space::BitAssignment& bits);

 private:
  double measure();
  deploy::TrainedRun& run_;
  data::BatchLoader calibration_, eval_;
};

// Held-out accuracies by key (a subnet encoding, or a QFA network key), kept across searches and restarts;
// every put() rewrites the file atomically. A file made for another identity is set aside, never mixed in.
class EvaluationCache {
 public:
  EvaluationCache(std::filesystem::path file, nlohmann::json identity);
  std::optional<double> find(const std::string& key) const;
  void put(const std::string& key, double accuracy);
  size_t size() const { return values_.size(); }

 private:
  std::filesystem::path file_;
  nlohmann::json identity_;
  std::map<std::string, double> values_;
};

}  // namespace qnas::pipeline
