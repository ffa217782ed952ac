// `qnas run --data`: what a name or a directory resolves to, and the splits it loads.
#include "data/source.h"

#include <gtest/gtest.h>

#include <set>

#include "data/cifar10.h"
#include "data_test_util.h"

#ifdef QNAS_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#endif

namespace qnas::data {
namespace {

namespace fs = std::filesystem;
using testing::error_message;
using testing::fresh_dir;
using testing::write_bytes;

// `count` CIFAR-10 records whose label is i % 10 and whose pixels are all i % 256.
std::vector<std::uint8_t> cifar_records(int count, int offset) {
  std::vector<std::uint8_t> bytes;
  for (int i = 0; i < count; ++i) {
    bytes.push_back(static_cast<std::uint8_t>((i + offset) % 10));
    bytes.insert(bytes.end(), kCifar10ImageBytes, static_cast<std::uint8_t>((i + offset) % 256));
  }
  return bytes;
}

TEST(DataSource, NamesAndDirectoriesResolveToTheirKindAndHyperspace) {
  const DataSource fmnist = resolve_data_source("fashion-mnist");
  EXPECT_EQ(fmnist.kind, SourceKind::kFashionMnist);
  EXPECT_EQ(fmnist.hyperspace, "fmnistw");

  const fs::path idx = fresh_dir("idx");
  write_bytes(idx / "train-images-idx3-ubyte.gz", {0});
  EXPECT_EQ(resolve_data_source(idx.string()).kind, SourceKind::kFashionMnist);

  const fs::path cifar = fresh_dir("cifar");
  write_bytes(cifar / "data_batch_1.bin", cifar_records(1, 0));
  const DataSource c = resolve_data_source(cifar.string());
  EXPECT_EQ(c.kind, SourceKind::kCifar10);
  EXPECT_EQ(c.hyperspace, "cifarw");
}

TEST(DataSource, UnusableSourcesNameTheFix) {
  EXPECT_CONTAINS(error_message([] { resolve_data_source("cifar10"); }), "not a Debian package");
  EXPECT_CONTAINS(error_message([] { resolve_data_source("/nonexistent/qnas-data"); }),
                  "neither fashion-mnist nor an existing directory");
  const fs::path dir = fresh_dir("odd");
  write_bytes(dir / "readme.txt", {'h', 'i'});
  EXPECT_CONTAINS(error_message([&] { resolve_data_source((dir / "readme.txt").string()); }), "is a file");
  EXPECT_CONTAINS(error_message([&] { resolve_data_source(dir.string()); }), "holds no data set qnas knows");
}

TEST(DataSource, Cifar10BinariesLoadBothSplits) {
  const fs::path dir = fresh_dir("cifar_splits");
  for (int b = 1; b <= 5; ++b)
    write_bytes(dir / ("data_batch_" + std::to_string(b) + ".bin"), cifar_records(20, b));
  write_bytes(dir / "test_batch.bin", cifar_records(10, 0));
  const LoadedData d = load_data_source(resolve_data_source(dir.string()));
  EXPECT_EQ(d.train.count, 100);
  EXPECT_EQ(d.test.count, 10);
  EXPECT_EQ(d.train.channels, 3);
  EXPECT_EQ(d.train.height, 32);
  EXPECT_EQ(d.train.label(0), 1);  // batch 1 starts at offset 1
}

#ifdef QNAS_HAVE_OPENCV
void write_image(const fs::path& path, int value) {
  fs::create_directories(path.parent_path());
  ASSERT_TRUE(cv::imwrite(path.string(), cv::Mat(8, 8, CV_8UC3, cv::Scalar(value, value, value))));
}

TEST(DataSource, AFlatImageFolderIsSplitOneInFivePerClassAndShuffled) {
  const fs::path dir = fresh_dir("folder");
  for (int i = 0; i < 10; ++i) write_image(dir / "cats" / (std::to_string(i) + ".png"), 10 + i);
  for (int i = 0; i < 10; ++i) write_image(dir / "dogs" / (std::to_string(i) + ".png"), 100 + i);
  const DataSource s = resolve_data_source(dir.string());
  EXPECT_EQ(s.kind, SourceKind::kImageFolder);
  const LoadedData d = load_data_source(s, 3);
  EXPECT_EQ(d.train.count, 16);
  EXPECT_EQ(d.test.count, 4);
  EXPECT_EQ(d.train.height, 32);
  // Shuffled: the last training images (the held-out tail) are not all of one class.
  std::set<std::int64_t> tail;
  for (std::int64_t i = 12; i < 16; ++i) tail.insert(d.train.label(i));
  std::set<std::int64_t> all;
  for (std::int64_t i = 0; i < d.train.count; ++i) all.insert(d.train.label(i));
  EXPECT_EQ(all.size(), 2u);
  EXPECT_EQ(d.train.label(0) == d.train.label(15) && tail.size() == 1, false);
  // Pixels moved with their labels: cats are dark, dogs bright.
  for (std::int64_t i = 0; i < d.train.count; ++i)
    EXPECT_EQ(d.train.image(i)[0] >= 100, d.train.label(i) == 1);
  // The same seed, the same order.
  EXPECT_EQ(load_data_source(s, 3).train.labels, d.train.labels);
}

TEST(DataSource, MoreClassesThanTheClassifierIsRefused) {
  const fs::path dir = fresh_dir("many");
  for (int c = 0; c < 11; ++c)
    for (int i = 0; i < 5; ++i)
      write_image(dir / ("c" + std::to_string(c)) / (std::to_string(i) + ".png"), c);
  EXPECT_CONTAINS(error_message([&] { load_data_source(resolve_data_source(dir.string())); }),
                  "has 11 classes");
}
#endif

}  // namespace
}  // namespace qnas::data
