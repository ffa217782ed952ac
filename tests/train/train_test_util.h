#pragma once
// Data and scratch directories the training tests share.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include <unistd.h>

#include "core/rng.h"
#include "data/dataset.h"

namespace qnas::train_test {

namespace fs = std::filesystem;

// Two kinds of 28x28 images: bright top half (class 0) or bright bottom half (class 1), with noise.
inline data::ImageDataset synthetic(std::int64_t count, std::uint64_t seed) {
  data::ImageDataset d;
  d.count = count;
  d.channels = 1;
  d.height = d.width = 28;
  d.source = "synthetic";
  for (int c = 0; c < 10; ++c) d.class_names.push_back("class" + std::to_string(c));
  Rng rng(seed);
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t label = static_cast<std::int64_t>(rng.below(2));
    d.labels.push_back(label);
    for (int y = 0; y < 28; ++y) {
      for (int x = 0; x < 28; ++x) {
        const bool bright = (y < 14) == (label == 0);
        d.pixels.push_back(static_cast<std::uint8_t>((bright ? 150 : 30) + rng.below(80)));
      }
    }
  }
  d.validate();
  return d;
}

// Named per process: CTest runs the cases of one suite as parallel processes.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() / ("qnas-test-" + name + "-" + std::to_string(::getpid()))) {
    fs::remove_all(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

}  // namespace qnas::train_test
