#include "data/source.h"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "core/error.h"
#include "core/rng.h"
#include "data/cifar10.h"
#include "data/fashion_mnist.h"
#include "data/image_folder.h"

namespace qnas::data {
namespace fs = std::filesystem;

const char* to_string(SourceKind kind) {
  switch (kind) {
    case SourceKind::kFashionMnist:
      return "fashion-mnist";
    case SourceKind::kCifar10:
      return "cifar10";
    case SourceKind::kImageFolder:
      return "image-folder";
  }
  return "?";
}

std::string DataSource::describe() const {
  return fmt::format("{} in {} (hyperspace {})", to_string(kind), dir.string(), hyperspace);
}

namespace {

bool has_subdirectories(const fs::path& dir) {
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_directory() && entry.path().filename().string().rfind('.', 0) != 0) return true;
  }
  return false;
}

// The images `indices` in that order (a permutation of all of them shuffles the set), labels alongside.
ImageDataset subset(const ImageDataset& d, const std::vector<std::int64_t>& indices) {
  ImageDataset out = d;
  out.count = static_cast<std::int64_t>(indices.size());
  out.pixels.assign(static_cast<size_t>(out.count * d.image_bytes()), 0);
  out.labels.assign(static_cast<size_t>(out.count), 0);
  for (size_t i = 0; i < indices.size(); ++i) {
    std::copy_n(d.image(indices[i]), d.image_bytes(),
                out.pixels.begin() + static_cast<std::ptrdiff_t>(i * static_cast<size_t>(d.image_bytes())));
    out.labels[i] = d.label(indices[i]);
  }
  return out;
}

LoadedData load_image_folders(const fs::path& dir) {
  const ImageFolderOptions options;  // 32x32 RGB: the cifarw input
  if (fs::is_directory(dir / "train") && fs::is_directory(dir / "test")) {
    return {load_image_folder(dir / "train", options), load_image_folder(dir / "test", options)};
  }
  const ImageDataset all = load_image_folder(dir, options);
  std::vector<std::int64_t> train, test;
  std::vector<std::int64_t> seen(static_cast<size_t>(all.num_classes()), 0);
  for (std::int64_t i = 0; i < all.count; ++i) {
    auto& n = seen[static_cast<size_t>(all.label(i))];
    (n++ % 5 == 4 ? test : train).push_back(i);
  }
  if (train.empty() || test.empty()) {
    fail(
        "image folder {} has {} image(s): a train/test split needs at least 5 per class (or train/ and "
        "test/ sub-folders)",
        dir.string(), all.count);
  }
  return {subset(all, train), subset(all, test)};
}

}  // namespace

DataSource resolve_data_source(const std::string& spec) {
  DataSource s;
  if (spec == "fashion-mnist" || spec == "fmnist") {
    s.dir = kFashionMnistDefaultDir;
    s.hyperspace = "fmnistw";
    return s;
  }
  if (spec == "cifar10") {
    fail(
        "CIFAR-10 is not a Debian package: download cifar-10-binary.tar.gz, unpack it and pass its directory "
        "(--data DIR)");
  }
  const fs::path dir(spec);
  if (!fs::exists(dir)) {
    fail(
        "data set '{}' is neither fashion-mnist nor an existing directory: give a Fashion-MNIST, CIFAR-10 "
        "(binary) or image-folder directory",
        spec);
  }
  if (!fs::is_directory(dir)) fail("data set {} is a file: give the directory that holds it", spec);
  s.dir = dir;
  if (fs::exists(dir / "train-images-idx3-ubyte.gz") || fs::exists(dir / "train-images-idx3-ubyte")) {
    s.kind = SourceKind::kFashionMnist;
    s.hyperspace = "fmnistw";
  } else if (fs::exists(dir / "data_batch_1.bin") || fs::exists(dir / "cifar-10-batches-bin")) {
    s.kind = SourceKind::kCifar10;
    s.hyperspace = "cifarw";
  } else if (has_subdirectories(dir)) {
    if (!image_folder_supported())
      fail("{} looks like an image folder, but qnas was built without OpenCV: run scripts/setup.sh", spec);
    s.kind = SourceKind::kImageFolder;
    s.hyperspace = "cifarw";
  } else {
    fail(
        "{} holds no data set qnas knows: expected train-images-idx3-ubyte.gz (Fashion-MNIST), "
        "data_batch_1.bin (CIFAR-10 binary) or one sub-folder of images per class",
        spec);
  }
  return s;
}

LoadedData load_data_source(const DataSource& source, std::uint64_t seed) {
  LoadedData d;
  switch (source.kind) {
    case SourceKind::kFashionMnist:
      d = {load_fashion_mnist(source.dir, "train"), load_fashion_mnist(source.dir, "test")};
      break;
    case SourceKind::kCifar10:
      d = {load_cifar10(source.dir, "train"), load_cifar10(source.dir, "test")};
      break;
    case SourceKind::kImageFolder: {
      d = load_image_folders(source.dir);
      if (d.train.class_names != d.test.class_names) {
        fail("image folder {}: train/ and test/ have different class folders", source.dir.string());
      }
      std::vector<std::int64_t> order(static_cast<size_t>(d.train.count));
      std::iota(order.begin(), order.end(), 0);
      Rng rng(seed);
      rng.shuffle(order);
      d.train = subset(d.train, order);
      break;
    }
  }
  if (d.train.num_classes() > source.max_classes) {
    fail("{} has {} classes; the {} hyperspace's classifier has {}: merge classes or use fewer",
         source.dir.string(), d.train.num_classes(), source.hyperspace, source.max_classes);
  }
  return d;
}

}  // namespace qnas::data
