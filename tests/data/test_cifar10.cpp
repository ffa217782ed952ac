#include "data/cifar10.h"

#include <fstream>

#include <gtest/gtest.h>

#include "data_test_util.h"

namespace qnas::data {
namespace {

namespace fs = std::filesystem;
using testing::error_message;
using testing::fresh_dir;
using testing::write_bytes;

// One record: the label, then each CHW pixel = (channel * 1000 + position + salt) mod 256.
std::vector<std::uint8_t> record(std::uint8_t label, int salt) {
  std::vector<std::uint8_t> bytes{label};
  for (int c = 0; c < 3; ++c) {
    for (int i = 0; i < 32 * 32; ++i) bytes.push_back(static_cast<std::uint8_t>((c * 1000 + i + salt) % 256));
  }
  return bytes;
}

std::vector<std::uint8_t> records(const std::vector<std::pair<std::uint8_t, int>>& labels_and_salts) {
  std::vector<std::uint8_t> bytes;
  for (const auto& [label, salt] : labels_and_salts) {
    const std::vector<std::uint8_t> one = record(label, salt);
    bytes.insert(bytes.end(), one.begin(), one.end());
  }
  return bytes;
}

TEST(Cifar10, RoundTripsTwoRecords) {
  const fs::path file = fresh_dir("two") / "test_batch.bin";
  write_bytes(file, records({{7, 0}, {3, 5}}));
  const ImageDataset batch = read_cifar10_batch(file);
  ASSERT_EQ(batch.count, 2);
  EXPECT_EQ(batch.channels, 3);
  EXPECT_EQ(batch.height, 32);
  EXPECT_EQ(batch.width, 32);
  EXPECT_EQ(batch.labels, (std::vector<std::int64_t>{7, 3}));
  const std::uint8_t* second = batch.image(1);
  EXPECT_EQ(second[0], 5);                         // red plane, first pixel
  EXPECT_EQ(second[1024], (1000 + 5) % 256);       // green plane
  EXPECT_EQ(second[2048 + 33], (2033 + 5) % 256);  // blue plane, row 1 column 1
  EXPECT_EQ(batch.class_names[7], "horse");
}

TEST(Cifar10, LoadsTheTrainBatchesInOrderWithMetaNames) {
  const fs::path root = fresh_dir("train");
  const fs::path dir = root / "cifar-10-batches-bin";
  fs::create_directories(dir);
  for (int i = 1; i <= 5; ++i) {
    write_bytes(dir / ("data_batch_" + std::to_string(i) + ".bin"),
                records({{static_cast<std::uint8_t>(i), i}}));
  }
  std::ofstream(dir / "batches.meta.txt") << "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n";
  const ImageDataset train = load_cifar10(root, "train");  // finds the nested folder
  EXPECT_EQ(train.count, 5);
  EXPECT_EQ(train.labels, (std::vector<std::int64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(train.image(4)[0], 5);
  EXPECT_EQ(train.class_names.front(), "a");
  EXPECT_EQ(train.class_names.back(), "j");
}

TEST(Cifar10, SizeNotAMultipleOfTheRecordIsAnError) {
  const fs::path file = fresh_dir("size") / "data_batch_1.bin";
  std::vector<std::uint8_t> bytes = records({{1, 0}, {2, 0}});
  bytes.pop_back();
  write_bytes(file, bytes);
  const std::string message = error_message([&] { read_cifar10_batch(file); });
  EXPECT_CONTAINS(message, file.string());
  EXPECT_CONTAINS(message, "6145 bytes is not a whole number of 3073-byte CIFAR-10 records");
}

TEST(Cifar10, LabelAboveNineIsAnError) {
  const fs::path file = fresh_dir("label") / "test_batch.bin";
  write_bytes(file, records({{1, 0}, {10, 0}}));
  const std::string message = error_message([&] { read_cifar10_batch(file); });
  EXPECT_CONTAINS(message, file.string());
  EXPECT_CONTAINS(message, "record 1 has label 10");
}

TEST(Cifar10, MissingBatchNamesTheFileAndTheDownload) {
  const fs::path dir = fresh_dir("missing");
  write_bytes(dir / "data_batch_1.bin", records({{1, 0}}));
  const std::string message = error_message([&] { load_cifar10(dir, "train"); });
  EXPECT_CONTAINS(message, (dir / "data_batch_2.bin").string());
  EXPECT_CONTAINS(message, "cifar-10-binary.tar.gz");
}

TEST(Cifar10, MetaFileWithWrongNameCount) {
  const fs::path dir = fresh_dir("meta");
  write_bytes(dir / "test_batch.bin", records({{1, 0}}));
  std::ofstream(dir / "batches.meta.txt") << "cat\ndog\n";
  EXPECT_CONTAINS(error_message([&] { load_cifar10(dir, "test"); }), "lists 2 class names, CIFAR-10 has 10");
}

}  // namespace
}  // namespace qnas::data
