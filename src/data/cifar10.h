#pragma once
// CIFAR-10, binary version (cifar-10-binary.tar.gz): each record is one label byte followed by a 3x32x32
// image in CHW order (the red plane, then green, then blue).
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "data/dataset.h"

namespace qnas::data {

inline constexpr std::int64_t kCifar10ImageBytes = 3 * 32 * 32;
inline constexpr std::int64_t kCifar10RecordBytes = 1 + kCifar10ImageBytes;

// airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck.
const std::vector<std::string>& cifar10_class_names();

// One batch file; its size must be a non-zero multiple of 3073 bytes and every label below 10.
ImageDataset read_cifar10_batch(const std::filesystem::path& path);

// split "train": data_batch_1.bin .. data_batch_5.bin, "test": test_batch.bin. dir may also be the folder
// that contains cifar-10-batches-bin/. Class names come from batches.meta.txt when it is present.
ImageDataset load_cifar10(const std::filesystem::path& dir, std::string_view split);

}  // namespace qnas::data
