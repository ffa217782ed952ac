#include "data/image_folder.h"

#include <gtest/gtest.h>

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

#ifdef QNAS_HAVE_OPENCV

// A solid-colour PNG; cv::Scalar is in OpenCV's BGR order, so pass (b, g, r).
void write_png(const fs::path& path, int height, int width, int b, int g, int r) {
  fs::create_directories(path.parent_path());
  const cv::Mat image(height, width, CV_8UC3, cv::Scalar(b, g, r));
  ASSERT_TRUE(cv::imwrite(path.string(), image)) << "cannot write " << path;
}

TEST(ImageFolder, DecodesRgbInSortedClassOrder) {
  const fs::path root = fresh_dir("rgb");
  write_png(root / "red" / "b.png", 4, 4, 0, 0, 200);
  write_png(root / "red" / "a.png", 4, 4, 0, 0, 210);
  write_png(root / "blue" / "x.png", 4, 4, 190, 10, 20);
  std::ofstream(root / "blue" / "notes.txt") << "not an image, skipped";
  const ImageDataset dataset = load_image_folder(root, {4, 4, 3});
  ASSERT_EQ(dataset.count, 3);
  EXPECT_EQ(dataset.class_names, (std::vector<std::string>{"blue", "red"}));
  EXPECT_EQ(dataset.labels, (std::vector<std::int64_t>{0, 1, 1}));
  const std::uint8_t* blue = dataset.image(0);  // CHW: R plane, G plane, B plane of 16 pixels each
  EXPECT_EQ(blue[0], 20);
  EXPECT_EQ(blue[16], 10);
  EXPECT_EQ(blue[32 + 15], 190);
  EXPECT_EQ(dataset.image(1)[0], 210);  // red/a.png before red/b.png
  EXPECT_EQ(dataset.image(2)[5], 200);
  EXPECT_EQ(dataset.image(2)[16 + 5], 0);
}

// The pixel buffer is counted before any image is decoded: a size the machine cannot hold is refused up
// front.
TEST(ImageFolder, ASizeTooLargeForMemoryIsRefusedBeforeDecoding) {
  const fs::path root = fresh_dir("memory");
  write_png(root / "only" / "a.png", 4, 4, 1, 2, 3);
  write_png(root / "only" / "b.png", 4, 4, 1, 2, 3);
  qnas::testing::ScopedEnvironment limit("QNAS_MEMORY_LIMIT", "1M");
  const std::string message = error_message([&] { load_image_folder(root, {512, 512, 3}); });
  EXPECT_CONTAINS(message, "2 images of 3x512x512 from " + root.string() + " needs 1.50 MiB of memory");
  EXPECT_CONTAINS(message, "use a smaller image size");
}

TEST(ImageFolder, ResizesToTheRequestedShape) {
  const fs::path root = fresh_dir("resize");
  write_png(root / "only" / "big.png", 20, 30, 50, 100, 150);
  write_png(root / "only" / "small.png", 3, 2, 50, 100, 150);
  const ImageDataset dataset = load_image_folder(root, {8, 6, 3});
  EXPECT_EQ(dataset.height, 8);
  EXPECT_EQ(dataset.width, 6);
  EXPECT_EQ(dataset.pixels.size(), 2u * 3 * 8 * 6);
  for (std::int64_t i = 0; i < 2; ++i) {  // a solid colour stays the same colour after resizing
    EXPECT_EQ(dataset.image(i)[0], 150);
    EXPECT_EQ(dataset.image(i)[48 + 47], 100);
    EXPECT_EQ(dataset.image(i)[96 + 20], 50);
  }
}

TEST(ImageFolder, GreyScaleHasOneChannel) {
  const fs::path root = fresh_dir("grey");
  write_png(root / "g" / "img.png", 2, 2, 90, 90, 90);
  const ImageDataset dataset = load_image_folder(root, {2, 2, 1});
  EXPECT_EQ(dataset.channels, 1);
  EXPECT_EQ(dataset.pixels, (std::vector<std::uint8_t>{90, 90, 90, 90}));
}

TEST(ImageFolder, EmptyClassFolderIsNamed) {
  const fs::path root = fresh_dir("emptyclass");
  write_png(root / "cats" / "1.png", 2, 2, 1, 2, 3);
  fs::create_directories(root / "dogs");
  const std::string message = error_message([&] { load_image_folder(root); });
  EXPECT_CONTAINS(message, (root / "dogs").string());
  EXPECT_CONTAINS(message, "contains no image files");
}

TEST(ImageFolder, UndecodableImageIsNamed) {
  const fs::path root = fresh_dir("broken");
  write_png(root / "cats" / "1.png", 2, 2, 1, 2, 3);
  write_bytes(root / "cats" / "2.png", {'n', 'o', 't', ' ', 'a', ' ', 'p', 'n', 'g'});
  const std::string message = error_message([&] { load_image_folder(root); });
  EXPECT_CONTAINS(message, (root / "cats" / "2.png").string());
  EXPECT_CONTAINS(message, "cannot decode");
}

// Found by fuzz_image_folder: a 16-byte PBM header declaring an image of 5 x 3,333,333 pixels made OpenCV
// throw cv::Exception (past its pixel limit), which left qnas as an OpenCV message without the file, or, in a
// program that catches only qnas::Error, as std::terminate.
TEST(ImageFolder, AHeaderDeclaringAHugeImageIsOneErrorNamingTheFile) {
  const fs::path root = fresh_dir("huge-header");
  fs::create_directories(root / "cats");
  write_bytes(root / "cats" / "1.pbm",
              {'P', '4', '\n', '5', 0x04, '3', '3', '3', '3', '3', '3', '3', ' ', '1', '~', 0x00, 0x00});
  const std::string message = error_message([&] { load_image_folder(root); });
  EXPECT_CONTAINS(message, (root / "cats" / "1.pbm").string());
  EXPECT_CONTAINS(message, "cannot decode");
}

TEST(ImageFolder, NoClassFolders) {
  const fs::path root = fresh_dir("flat");
  write_png(root / "loose.png", 2, 2, 1, 2, 3);
  const std::string message = error_message([&] { load_image_folder(root); });
  EXPECT_CONTAINS(message, root.string());
  EXPECT_CONTAINS(message, "no class sub-folders");
}

TEST(ImageFolder, MissingRoot) {
  const std::string message = error_message([] { load_image_folder("/nonexistent/qnas/images"); });
  EXPECT_CONTAINS(message, "/nonexistent/qnas/images");
  EXPECT_CONTAINS(message, "does not exist");
}

TEST(ImageFolder, RejectsUnsupportedChannelCount) {
  EXPECT_CONTAINS(error_message([] { load_image_folder("/tmp", {8, 8, 2}); }), "use 3 (RGB) or 1");
}

#else  // !QNAS_HAVE_OPENCV

TEST(ImageFolder, BuiltWithoutOpenCvSaysSo) {
  EXPECT_FALSE(image_folder_supported());
  EXPECT_CONTAINS(error_message([] { load_image_folder(fresh_dir("any")); }), "built without OpenCV");
}

#endif  // QNAS_HAVE_OPENCV

}  // namespace
}  // namespace qnas::data
