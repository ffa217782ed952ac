#include "data/transform.h"

#include <cmath>

#include <gtest/gtest.h>

#include "data_test_util.h"

namespace qnas::data {
namespace {

using testing::error_message;

// A 1x3x4 image whose pixel at (y, x) is 10 * (y + 1) + x, so every source position is recognisable.
const std::vector<std::uint8_t> kImage = {10, 11, 12, 13, 20, 21, 22, 23, 30, 31, 32, 33};
constexpr std::int64_t kHeight = 3;
constexpr std::int64_t kWidth = 4;

// The output mapped back to 0..255 (exact: unit_range gives v / 255.0f), so expectations read as pixels.
std::vector<int> transform(const Augmentation& augmentation) {
  std::vector<float> out(kImage.size(), -1.0f);
  write_image(kImage.data(), kHeight, kWidth, augmentation, PixelNormalizer(Normalize::unit_range(), 1),
              out.data());
  std::vector<int> pixels;
  for (const float value : out) pixels.push_back(static_cast<int>(std::lround(value * 255.0f)));
  return pixels;
}

TEST(LoaderTransform, NormalizerMatchesTheFormula) {
  const PixelNormalizer fashion(Normalize{}, 1);
  for (const int v : {0, 1, 73, 128, 255}) {
    EXPECT_FLOAT_EQ(fashion(0, static_cast<std::uint8_t>(v)),
                    (static_cast<float>(v) / 255.0f - 0.2860f) / 0.3530f);
  }
  const PixelNormalizer cifar(Normalize::cifar10(), 3);
  EXPECT_FLOAT_EQ(cifar(2, 255), (1.0f - 0.4465f) / 0.2616f);
  EXPECT_FLOAT_EQ(cifar.padding(1), -0.4822f / 0.2435f);
  const PixelNormalizer broadcast(Normalize::unit_range(), 3);
  EXPECT_FLOAT_EQ(broadcast(2, 51), 0.2f);
}

TEST(LoaderTransform, NormalizerRejectsMismatchedChannels) {
  EXPECT_CONTAINS(error_message([] { PixelNormalizer(Normalize::cifar10(), 1); }),
                  "3 means and 3 standard deviations for 1-channel images");
  EXPECT_CONTAINS(error_message([] { PixelNormalizer(Normalize{{0.5f}, {0.0f}}, 1); }), "must be a positive");
}

TEST(LoaderTransform, IdentityCopiesEveryPixel) {
  EXPECT_EQ(transform({}), std::vector<int>(kImage.begin(), kImage.end()));
}

TEST(LoaderTransform, FlipMirrorsEachRow) {
  EXPECT_EQ(transform({0, 0, true}), (std::vector<int>{13, 12, 11, 10, 23, 22, 21, 20, 33, 32, 31, 30}));
}

TEST(LoaderTransform, ShiftKeepsTheSizeAndPadsWithZero) {
  // Window moved one row down and two columns right: the last row and the last two columns are padding.
  EXPECT_EQ(transform({1, 2, false}), (std::vector<int>{22, 23, 0, 0, 32, 33, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(transform({-1, -1, false}), (std::vector<int>{0, 0, 0, 0, 0, 10, 11, 12, 0, 20, 21, 22}));
}

TEST(LoaderTransform, ShiftThenFlipMatchesCropThenMirror) {
  // Crop first (shift_x = 1 drops column 0 and pads on the right), then mirror the cropped image.
  EXPECT_EQ(transform({0, 1, true}), (std::vector<int>{0, 13, 12, 11, 0, 23, 22, 21, 0, 33, 32, 31}));
}

TEST(LoaderTransform, PaddingIsNormalisedZero) {
  const PixelNormalizer fashion(Normalize{}, 1);
  std::vector<float> out(kImage.size());
  write_image(kImage.data(), kHeight, kWidth, {kHeight, 0, false}, fashion, out.data());  // all padding
  for (const float value : out) EXPECT_FLOAT_EQ(value, -0.2860f / 0.3530f);
}

TEST(LoaderTransform, DrawsStayWithinThePadding) {
  Rng rng(5);
  bool saw_negative = false, saw_positive = false, saw_flip = false, saw_no_flip = false;
  for (int i = 0; i < 400; ++i) {
    const Augmentation a = draw_augmentation(rng, 2, 0.5);
    EXPECT_GE(a.shift_y, -2);
    EXPECT_LE(a.shift_y, 2);
    EXPECT_GE(a.shift_x, -2);
    EXPECT_LE(a.shift_x, 2);
    saw_negative |= a.shift_x == -2;
    saw_positive |= a.shift_y == 2;
    (a.flip ? saw_flip : saw_no_flip) = true;
  }
  EXPECT_TRUE(saw_negative && saw_positive && saw_flip && saw_no_flip);
  const Augmentation none = draw_augmentation(rng, 0, 0.0);
  EXPECT_EQ(none.shift_x, 0);
  EXPECT_EQ(none.shift_y, 0);
  EXPECT_FALSE(none.flip);
  EXPECT_TRUE(draw_augmentation(rng, 0, 1.0).flip);
}

TEST(LoaderTransform, DefaultCropPadding) {
  EXPECT_EQ(default_crop_padding(28, 28), 2);
  EXPECT_EQ(default_crop_padding(32, 32), 4);
}

TEST(LoaderTransform, DerivedSeedsDifferPerStreamAndIndex) {
  EXPECT_EQ(derive_seed(1, 2, 3), derive_seed(1, 2, 3));
  EXPECT_NE(derive_seed(1, 2, 3), derive_seed(1, 2, 4));
  EXPECT_NE(derive_seed(1, 2, 3), derive_seed(1, 3, 3));
  EXPECT_NE(derive_seed(1, 2, 3), derive_seed(2, 2, 3));
}

}  // namespace
}  // namespace qnas::data
