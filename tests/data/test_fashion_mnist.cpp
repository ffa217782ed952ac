#include "data/fashion_mnist.h"

#include <algorithm>
#include <numeric>

#include <gtest/gtest.h>

#include "data/idx.h"
#include "data_test_util.h"

namespace qnas::data {
namespace {

namespace fs = std::filesystem;
using testing::error_message;
using testing::fresh_dir;
using testing::idx_bytes;
using testing::write_gzip;

constexpr const char* kInstallHint =
    "install the Debian package dataset-fashion-mnist (sudo apt-get install dataset-fashion-mnist) or pass "
    "--data DIR";

bool real_data_installed() {
  return fs::is_directory(kFashionMnistDefaultDir);
}

TEST(FashionMnist, ClassNamesInLabelOrder) {
  const std::vector<std::string> expected = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                             "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  EXPECT_EQ(fashion_mnist_class_names(), expected);
}

TEST(FashionMnist, MissingDirectorySaysHowToInstall) {
  const std::string message = error_message([] { load_fashion_mnist("/nonexistent/qnas/fashion", "train"); });
  EXPECT_CONTAINS(message, "/nonexistent/qnas/fashion");
  EXPECT_CONTAINS(message, kInstallHint);
}

TEST(FashionMnist, MissingFileSaysHowToInstall) {
  const fs::path dir = fresh_dir("nofile");
  const std::string message = error_message([&] { load_fashion_mnist(dir, "test"); });
  EXPECT_CONTAINS(message, (dir / "t10k-images-idx3-ubyte.gz").string());
  EXPECT_CONTAINS(message, kInstallHint);
}

TEST(FashionMnist, UnknownSplitIsAnError) {
  EXPECT_CONTAINS(error_message([] { load_fashion_mnist(kFashionMnistDefaultDir, "validation"); }),
                  "unknown split 'validation': use 'train' or 'test'");
}

TEST(FashionMnist, ReadsTheTestFilesOfADirectory) {
  const fs::path dir = fresh_dir("fake");
  write_gzip(dir / "t10k-images-idx3-ubyte.gz", idx_bytes(kIdxImagesMagic, {1, 2, 2}, {1, 2, 3, 4}));
  write_gzip(dir / "t10k-labels-idx1-ubyte.gz", idx_bytes(kIdxLabelsMagic, {1}, {9}));
  const ImageDataset dataset = load_fashion_mnist(dir, "test");
  EXPECT_EQ(dataset.count, 1);
  EXPECT_EQ(dataset.pixels, (std::vector<std::uint8_t>{1, 2, 3, 4}));
  EXPECT_EQ(dataset.class_names[static_cast<std::size_t>(dataset.labels[0])], "Ankle boot");
  EXPECT_CONTAINS(dataset.source, "Fashion-MNIST test");
}

TEST(FashionMnist, RealTrainingSet) {
  if (!real_data_installed()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const ImageDataset train = load_fashion_mnist();
  ASSERT_EQ(train.count, 60000);
  EXPECT_EQ(train.channels, 1);
  EXPECT_EQ(train.height, 28);
  EXPECT_EQ(train.width, 28);
  EXPECT_EQ(train.num_classes(), 10);

  std::vector<std::int64_t> per_class(10, 0);
  for (const std::int64_t label : train.labels) ++per_class[static_cast<std::size_t>(label)];
  EXPECT_EQ(per_class, std::vector<std::int64_t>(10, 6000));

  EXPECT_EQ(*std::min_element(train.pixels.begin(), train.pixels.end()), 0);
  EXPECT_EQ(*std::max_element(train.pixels.begin(), train.pixels.end()), 255);
  // The published normalisation mean (0.2860) is the training-set mean pixel.
  const double mean = std::accumulate(train.pixels.begin(), train.pixels.end(), 0.0) /
                      static_cast<double>(train.pixels.size());
  EXPECT_NEAR(mean, 0.2860 * 255.0, 0.01 * 0.2860 * 255.0);
}

TEST(FashionMnist, RealTestSet) {
  if (!real_data_installed()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const ImageDataset test = load_fashion_mnist(kFashionMnistDefaultDir, "test");
  ASSERT_EQ(test.count, 10000);
  EXPECT_EQ(test.pixels.size(), 10000u * 28 * 28);
  std::vector<std::int64_t> per_class(10, 0);
  for (const std::int64_t label : test.labels) ++per_class[static_cast<std::size_t>(label)];
  EXPECT_EQ(per_class, std::vector<std::int64_t>(10, 1000));
}

}  // namespace
}  // namespace qnas::data
