#include "data/idx.h"

#include <gtest/gtest.h>

#include "data/gzip.h"
#include "data_test_util.h"

namespace qnas::data {
namespace {

namespace fs = std::filesystem;
using testing::error_message;
using testing::fresh_dir;
using testing::idx_bytes;
using testing::read_bytes;
using testing::write_bytes;
using testing::write_gzip;

const std::vector<std::string> kThreeClasses = {"zero", "one", "two"};

// Two 2x3 images with distinct pixel values 0..11 and 250..255 so any mix-up shows.
const std::vector<std::uint8_t> kPixels = {0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255};

struct IdxPair {
  fs::path images;
  fs::path labels;
};

IdxPair write_pair(const fs::path& dir, const std::vector<std::uint8_t>& labels) {
  IdxPair pair{dir / "images-idx3-ubyte.gz", dir / "labels-idx1-ubyte.gz"};
  write_gzip(pair.images, idx_bytes(kIdxImagesMagic, {2, 2, 3}, kPixels));
  write_gzip(pair.labels, idx_bytes(kIdxLabelsMagic, {static_cast<std::uint32_t>(labels.size())}, labels));
  return pair;
}

TEST(IdxReader, RoundTripsGzippedImagesAndLabels) {
  const IdxPair files = write_pair(fresh_dir("pair"), {2, 0});
  const ImageDataset dataset = load_idx_dataset(files.images, files.labels, kThreeClasses);
  EXPECT_EQ(dataset.count, 2);
  EXPECT_EQ(dataset.channels, 1);
  EXPECT_EQ(dataset.height, 2);
  EXPECT_EQ(dataset.width, 3);
  EXPECT_EQ(dataset.pixels, kPixels);
  EXPECT_EQ(dataset.labels, (std::vector<std::int64_t>{2, 0}));
  EXPECT_EQ(dataset.class_names, kThreeClasses);
  EXPECT_EQ(dataset.image(1)[0], 250);
  EXPECT_EQ(dataset.image(1)[5], 255);
  EXPECT_EQ(dataset.label(0), 2);
  EXPECT_THROW(dataset.image(2), qnas::Error);
}

TEST(IdxReader, ReadsUnpackedFilesToo) {
  const fs::path dir = fresh_dir("plain");
  write_bytes(dir / "images", idx_bytes(kIdxImagesMagic, {2, 2, 3}, kPixels));
  const IdxImages images = read_idx_images(dir / "images");
  EXPECT_EQ(images.count, 2);
  EXPECT_EQ(images.pixels, kPixels);
}

TEST(IdxReader, JoinsConcatenatedGzipMembers) {
  const fs::path dir = fresh_dir("members");
  const std::vector<std::uint8_t> whole = idx_bytes(kIdxLabelsMagic, {4}, {1, 2, 3, 4});
  write_gzip(dir / "a.gz", std::vector<std::uint8_t>(whole.begin(), whole.begin() + 6));
  write_gzip(dir / "b.gz", std::vector<std::uint8_t>(whole.begin() + 6, whole.end()));
  std::vector<std::uint8_t> joined = read_bytes(dir / "a.gz");
  const std::vector<std::uint8_t> second = read_bytes(dir / "b.gz");
  joined.insert(joined.end(), second.begin(), second.end());
  write_bytes(dir / "labels.gz", joined);  // what `cat a.gz b.gz` gives
  EXPECT_EQ(read_idx_labels(dir / "labels.gz"), (std::vector<std::int64_t>{1, 2, 3, 4}));
}

TEST(IdxReader, ReadsLargeGzipBeyondTheFirstBuffer) {
  const fs::path dir = fresh_dir("large");
  std::vector<std::uint8_t> pixels(300 * 28 * 28);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<std::uint8_t>((i * 7919) >> 3);
  write_gzip(dir / "images.gz", idx_bytes(kIdxImagesMagic, {300, 28, 28}, pixels));
  const IdxImages images = read_idx_images(dir / "images.gz");
  EXPECT_EQ(images.count, 300);
  EXPECT_EQ(images.pixels, pixels);
}

// The gzip trailer's size is checked before unpacking, and every doubling of the buffer after it.
TEST(IdxErrors, AFileTooLargeForMemoryIsRefusedWithTheNumber) {
  const fs::path dir = fresh_dir("memory");
  std::vector<std::uint8_t> pixels(3000 * 28 * 28, 7);
  write_gzip(dir / "images.gz", idx_bytes(kIdxImagesMagic, {3000, 28, 28}, pixels));
  qnas::testing::ScopedEnvironment limit("QNAS_MEMORY_LIMIT", "1M");
  const std::string message = error_message([&] { read_idx_images(dir / "images.gz"); });
  EXPECT_CONTAINS(message, "unpacking " + (dir / "images.gz").string() + " needs 2.24 MiB of memory");
}

TEST(IdxErrors, TruncatedGzipSaysItEndsEarly) {
  const fs::path dir = fresh_dir("truncated");
  std::vector<std::uint8_t> pixels(50 * 28 * 28);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<std::uint8_t>(i * 31 % 251);
  write_gzip(dir / "full.gz", idx_bytes(kIdxImagesMagic, {50, 28, 28}, pixels));
  std::vector<std::uint8_t> bytes = read_bytes(dir / "full.gz");
  bytes.resize(bytes.size() / 2);
  const fs::path cut = dir / "cut-images-idx3-ubyte.gz";
  write_bytes(cut, bytes);
  const std::string message = error_message([&] { read_idx_images(cut); });
  EXPECT_CONTAINS(message, cut.string());
  EXPECT_CONTAINS(message, "ends early");
  EXPECT_CONTAINS(message, "download it again");
}

TEST(IdxErrors, GzipMissingOnlyItsTrailerIsTruncated) {
  const fs::path dir = fresh_dir("trailer");
  write_gzip(dir / "full.gz", idx_bytes(kIdxLabelsMagic, {3}, {0, 1, 2}));
  std::vector<std::uint8_t> bytes = read_bytes(dir / "full.gz");
  bytes.resize(bytes.size() - 4);  // the deflate data is whole, the length field is gone
  write_bytes(dir / "labels.gz", bytes);
  EXPECT_CONTAINS(error_message([&] { read_idx_labels(dir / "labels.gz"); }), "ends early");
}

TEST(IdxErrors, GarbageIsNotGzip) {
  const fs::path dir = fresh_dir("garbage");
  write_bytes(dir / "images.gz", {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '\n'});
  const std::string message = error_message([&] { read_idx_images(dir / "images.gz"); });
  EXPECT_CONTAINS(message, (dir / "images.gz").string());
  EXPECT_CONTAINS(message, "not a valid gzip file");
}

TEST(IdxErrors, CorruptDeflateData) {
  const fs::path dir = fresh_dir("corrupt");
  std::vector<std::uint8_t> pixels(2000);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<std::uint8_t>(i * i);
  write_gzip(dir / "good.gz", idx_bytes(kIdxImagesMagic, {20, 10, 10}, pixels));
  std::vector<std::uint8_t> bytes = read_bytes(dir / "good.gz");
  for (std::size_t i = 12; i < bytes.size() - 8; i += 3) bytes[i] ^= 0xa5;
  write_bytes(dir / "bad.gz", bytes);
  const std::string message = error_message([&] { read_idx_images(dir / "bad.gz"); });
  EXPECT_CONTAINS(message, (dir / "bad.gz").string());
  EXPECT_CONTAINS(message, "download it again");
}

TEST(IdxErrors, EmptyFile) {
  const fs::path dir = fresh_dir("empty");
  write_bytes(dir / "labels.gz", {});
  const std::string message = error_message([&] { read_idx_labels(dir / "labels.gz"); });
  EXPECT_CONTAINS(message, (dir / "labels.gz").string());
  EXPECT_CONTAINS(message, "empty");
}

TEST(IdxErrors, WrongMagicNamesBothNumbers) {
  const fs::path dir = fresh_dir("magic");
  write_gzip(dir / "images.gz", idx_bytes(0x00000804, {1, 1, 1, 1}, {7}));
  const std::string message = error_message([&] { read_idx_images(dir / "images.gz"); });
  EXPECT_CONTAINS(message, (dir / "images.gz").string());
  EXPECT_CONTAINS(message, "0x00000804");
  EXPECT_CONTAINS(message, "0x00000803");
  EXPECT_CONTAINS(message, "in 4 dimensions");
}

TEST(IdxErrors, LabelFileGivenAsImagesIsRecognised) {
  const fs::path dir = fresh_dir("swapped");
  write_gzip(dir / "labels.gz", idx_bytes(kIdxLabelsMagic, {2}, {0, 1}));
  const std::string message = error_message([&] { read_idx_images(dir / "labels.gz"); });
  EXPECT_CONTAINS(message, "this is an IDX label file");
  EXPECT_CONTAINS(message, "swap");
}

TEST(IdxErrors, HeaderClaimsMoreImagesThanPresent) {
  const fs::path dir = fresh_dir("short");
  write_gzip(dir / "images.gz", idx_bytes(kIdxImagesMagic, {3, 2, 3}, kPixels));  // 2 images, header says 3
  const std::string message = error_message([&] { read_idx_images(dir / "images.gz"); });
  EXPECT_CONTAINS(message, (dir / "images.gz").string());
  EXPECT_CONTAINS(message, "promises 3 images (18 data bytes) but only 12 bytes follow");
  EXPECT_CONTAINS(message, "truncated");
}

TEST(IdxErrors, HugeDimensionsDoNotOverflow) {
  const fs::path dir = fresh_dir("huge");
  write_gzip(dir / "images.gz", idx_bytes(kIdxImagesMagic, {0xffffffff, 0xffffffff, 0xffffffff}, kPixels));
  EXPECT_CONTAINS(error_message([&] { read_idx_images(dir / "images.gz"); }), "truncated");
}

TEST(IdxErrors, HeaderItselfCutShort) {
  const fs::path dir = fresh_dir("header");
  write_gzip(dir / "images.gz", {0, 0, 8, 3, 0, 0, 0, 2});
  EXPECT_CONTAINS(error_message([&] { read_idx_images(dir / "images.gz"); }), "shorter than its own 16-byte");
}

TEST(IdxErrors, TrailingBytesAfterTheData) {
  const fs::path dir = fresh_dir("trailing");
  write_gzip(dir / "labels.gz", idx_bytes(kIdxLabelsMagic, {2}, {0, 1, 2}));
  EXPECT_CONTAINS(error_message([&] { read_idx_labels(dir / "labels.gz"); }), "1 bytes follow the 2 labels");
}

TEST(IdxErrors, LabelCountMustMatchImageCount) {
  const IdxPair files = write_pair(fresh_dir("count"), {0, 1, 2});
  const std::string message =
      error_message([&] { load_idx_dataset(files.images, files.labels, kThreeClasses); });
  EXPECT_CONTAINS(message, files.images.string() + " holds 2 images");
  EXPECT_CONTAINS(message, files.labels.string() + " holds 3 labels");
}

TEST(IdxErrors, LabelOutOfRangeNamesTheLabelFile) {
  const IdxPair files = write_pair(fresh_dir("range"), {1, 3});
  const std::string message =
      error_message([&] { load_idx_dataset(files.images, files.labels, kThreeClasses); });
  EXPECT_CONTAINS(message, files.labels.string());
  EXPECT_CONTAINS(message, "label 3 of item 1 is outside the 3 classes");
}

TEST(IdxErrors, MissingFileNamesThePath) {
  const fs::path missing = fresh_dir("missing") / "no-such-images-idx3-ubyte.gz";
  const std::string message = error_message([&] { read_idx_images(missing); });
  EXPECT_CONTAINS(message, missing.string());
  EXPECT_CONTAINS(message, "not found");
}

}  // namespace
}  // namespace qnas::data
