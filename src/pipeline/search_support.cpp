#include "pipeline/search_support.h"

#include <algorithm>

#include "core/error.h"
#include "core/fs.h"
#include "data/fashion_mnist.h"
#include "train/trainer.h"

namespace qnas::pipeline {

using nlohmann::json;
namespace fs = std::filesystem;

std::vector<std::int64_t> index_range(std::int64_t from, std::int64_t to) {
  std::vector<std::int64_t> v;
  for (std::int64_t i = from; i < to; ++i) v.push_back(i);
  return v;
}

SearchData load_search_data(const deploy::TrainedRun& run, const data::LoadedData* data,
                            const std::string& data_dir, std::int64_t test_images,
                            std::int64_t heldout_images) {
  SearchData d;
  if (data) {
    d.train = data->train;
    d.test = data->test;
  } else {
    d.train = data::load_fashion_mnist(data_dir, "train");
    d.test = data::load_fashion_mnist(data_dir, "test");
  }
  if (test_images > 0 && test_images < d.test.count) {
    d.test.count = test_images;
    d.test.pixels.resize(static_cast<size_t>(d.test.count * d.test.image_bytes()));
    d.test.labels.resize(static_cast<size_t>(d.test.count));
  }
  const std::int64_t used = run.config.train_limit > 0 ? run.config.train_limit : d.train.count;
  if (used >= d.train.count) {
    fail(
        "run {} trained on all {} training images, so none are held out for the search (the test set is "
        "kept for the final subnets): retrain with a config whose train_limit leaves images out, e.g. "
        "{{\"train_limit\": 50000}}",
        run.dir.string(), d.train.count);
  }
  d.trained_on = index_range(0, used);
  std::int64_t end = d.train.count;
  if (heldout_images > 0) end = std::min(end, used + heldout_images);
  d.heldout = index_range(used, end);
  return d;
}

json run_identity(const deploy::TrainedRun& run, const SearchData& d, const std::string& data_source) {
  const fs::path checkpoint = run.dir / "checkpoint.pt";
  return {{"network", run.identity},
          {"checkpoint_bytes", fs::file_size(checkpoint)},
          {"checkpoint_time", fs::last_write_time(checkpoint).time_since_epoch().count()},
          {"bits", run.bits},
          {"bn_batches", run.config.bn_batches},
          {"heldout", {d.heldout.front(), d.heldout.back()}},
          {"data_dir", data_source}};
}

namespace {

data::LoaderOptions calibration_options(const deploy::TrainedRun& run, const SearchData& d) {
  data::LoaderOptions options = train::bn_calibration_options(run.config);
  options.normalize = d.normalize;
  return options;
}

data::LoaderOptions eval_options(const SearchData& d) {
  data::LoaderOptions options;
  options.batch_size = 500;
  options.shuffle = false;
  options.normalize = d.normalize;
  return options;
}

}  // namespace

SupernetAccuracy::SupernetAccuracy(deploy::TrainedRun& run, const SearchData& d,
                                   const data::ImageDataset& eval, const std::vector<std::int64_t>& indices)
    : run_(run),
      calibration_(d.train, d.trained_on, calibration_options(run, d)),
      eval_(eval, indices, eval_options(d)) {}

double SupernetAccuracy::operator()(const space::Subnet& subnet) {
  run_.supernet->set_active(subnet);
  return measure();
}

double SupernetAccuracy::operator()(const space::Subnet& subnet, const space::BitAssignment& bits) {
  run_.supernet->set_active(subnet, bits);
  return measure();
}

double SupernetAccuracy::measure() {
  return train::recalibrated_accuracy(*run_.supernet, calibration_, run_.config.bn_batches, eval_);
}

EvaluationCache::EvaluationCache(fs::path file, json identity)
    : file_(std::move(file)), identity_(std::move(identity)) {
  if (!fs::exists(file_)) return;
  json saved;
  try {
    saved = read_json_file(file_);
  } catch (const Error& e) {
    std::fprintf(stderr, "search: %s; starting a new evaluation cache\n", e.what());
    return;
  }
  if (!saved.is_object() || saved.value("identity", json()) != identity_ || !saved.contains("accuracy") ||
      !saved.at("accuracy").is_object()) {
    std::fprintf(stderr, "search: %s was made for another run or split; starting a new one\n", file_.c_str());
    return;
  }
  for (const auto& [key, accuracy] : saved.at("accuracy").items()) {
    if (accuracy.is_number()) values_[key] = accuracy.get<double>();
  }
}

std::optional<double> EvaluationCache::find(const std::string& key) const {
  const auto it = values_.find(key);
  return it == values_.end() ? std::nullopt : std::optional<double>(it->second);
}

void EvaluationCache::put(const std::string& key, double accuracy) {
  values_[key] = accuracy;
  write_json_atomic(file_, {{"identity", identity_}, {"accuracy", values_}});
}

}  // namespace qnas::pipeline
