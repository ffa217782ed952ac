#pragma once
// Fashion-MNIST (Zalando): 28x28 grey-scale clothing images in ten classes, 60000 for training and 10000
// for testing, read from the gzip IDX files that the Debian package dataset-fashion-mnist installs.
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "data/dataset.h"

namespace qnas::data {

inline constexpr const char* kFashionMnistDefaultDir = "/usr/share/datasets/fashion-mnist";

// T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot.
const std::vector<std::string>& fashion_mnist_class_names();

// split: "train" (train-*-ubyte.gz) or "test" (t10k-*-ubyte.gz); unpacked files without .gz also work.
// A missing directory or file is a qnas::Error telling how to install the data.
ImageDataset load_fashion_mnist(const std::filesystem::path& dir = kFashionMnistDefaultDir,
                                std::string_view split = "train");

}  // namespace qnas::data
