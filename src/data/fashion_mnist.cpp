#include "data/fashion_mnist.h"

#include "core/error.h"
#include "data/idx.h"

namespace qnas::data {
namespace fs = std::filesystem;

namespace {

constexpr const char* kInstallHint =
    "install the Debian package dataset-fashion-mnist (sudo apt-get install dataset-fashion-mnist) or pass "
    "--data DIR";

// The packaged .gz file, or the same file already unpacked.
fs::path find_idx_file(const fs::path& dir, const std::string& stem) {
  const fs::path gzipped = dir / (stem + ".gz");
  if (fs::is_regular_file(gzipped)) return gzipped;
  const fs::path unpacked = dir / stem;
  if (fs::is_regular_file(unpacked)) return unpacked;
  fail("Fashion-MNIST file {} not found (nor {}); {}", gzipped.string(), unpacked.filename().string(),
       kInstallHint);
}

}  // namespace

const std::vector<std::string>& fashion_mnist_class_names() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

ImageDataset load_fashion_mnist(const fs::path& dir, std::string_view split) {
  const std::string prefix = parse_split(split) == Split::kTrain ? "train" : "t10k";
  if (!fs::is_directory(dir))
    fail("Fashion-MNIST directory {} does not exist; {}", dir.string(), kInstallHint);
  const fs::path images = find_idx_file(dir, prefix + "-images-idx3-ubyte");
  const fs::path labels = find_idx_file(dir, prefix + "-labels-idx1-ubyte");
  ImageDataset dataset = load_idx_dataset(images, labels, fashion_mnist_class_names());
  dataset.source = "Fashion-MNIST " + std::string(split) + " (" + dir.string() + ")";
  return dataset;
}

}  // namespace qnas::data
