#pragma once
// The IDX format of MNIST and Fashion-MNIST: a big-endian magic number 0x0000 <type> <dimensions>, one
// big-endian uint32 size per dimension, then the data. Files ending in .gz are decompressed on the fly.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace qnas::data {

inline constexpr std::uint32_t kIdxImagesMagic = 0x00000803;  // unsigned bytes, 3 dimensions
inline constexpr std::uint32_t kIdxLabelsMagic = 0x00000801;  // unsigned bytes, 1 dimension

struct IdxImages {
  std::int64_t count = 0;
  std::int64_t height = 0;
  std::int64_t width = 0;
  std::vector<std::uint8_t> pixels;  // count x height x width
};

// Each reader checks the magic number, the header and that the data is exactly as long as the header says;
// every failure is a qnas::Error naming the file, the problem and the fix.
IdxImages read_idx_images(const std::filesystem::path& path);
std::vector<std::int64_t> read_idx_labels(const std::filesystem::path& path);

// Pairs an image file with its label file as a one-channel data set: the counts must agree and every label
// must index class_names.
ImageDataset load_idx_dataset(const std::filesystem::path& images_path,
                              const std::filesystem::path& labels_path, std::vector<std::string> class_names);

}  // namespace qnas::data
