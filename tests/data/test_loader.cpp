#include "data/loader.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include <gtest/gtest.h>

#include "data_test_util.h"

namespace qnas::data {
namespace {

using testing::error_message;

// `count` images of 1 x height x width; pixel (y, x) of image i is (i * 37 + y * width + x) mod 256 and its
// label is i mod 10, so a batch can be checked against the source exactly.
ImageDataset synthetic(std::int64_t count, std::int64_t height = 6, std::int64_t width = 5) {
  ImageDataset dataset;
  dataset.count = count;
  dataset.channels = 1;
  dataset.height = height;
  dataset.width = width;
  for (std::int64_t i = 0; i < count; ++i) {
    for (std::int64_t p = 0; p < height * width; ++p)
      dataset.pixels.push_back(static_cast<std::uint8_t>((i * 37 + p) % 256));
    dataset.labels.push_back(i % 10);
  }
  dataset.class_names = std::vector<std::string>(10, "c");
  dataset.source = "synthetic";
  return dataset;
}

std::vector<std::int64_t> all_indices(const ImageDataset& dataset) {
  std::vector<std::int64_t> indices(static_cast<std::size_t>(dataset.count));
  std::iota(indices.begin(), indices.end(), std::int64_t{0});
  return indices;
}

LoaderOptions plain(std::int64_t batch_size) {
  LoaderOptions options;
  options.batch_size = batch_size;
  options.shuffle = false;
  return options;
}

std::vector<Batch> epoch(BatchLoader& loader, std::int64_t number) {
  loader.reset(number);
  std::vector<Batch> batches;
  for (Batch batch; loader.next(batch);) batches.push_back(batch);
  return batches;
}

std::vector<std::int64_t> labels_of(const std::vector<Batch>& batches) {
  std::vector<std::int64_t> labels;
  for (const Batch& batch : batches) {
    const auto* data = batch.labels.data_ptr<std::int64_t>();
    labels.insert(labels.end(), data, data + batch.size());
  }
  return labels;
}

float normalized(std::uint8_t pixel) {
  return (static_cast<float>(pixel) / 255.0f - 0.2860f) / 0.3530f;
}

TEST(Loader, ShapesAndTypes) {
  const ImageDataset dataset = synthetic(10);
  BatchLoader loader(dataset, all_indices(dataset), plain(4));
  Batch batch;
  ASSERT_TRUE(loader.next(batch));
  EXPECT_EQ(batch.images.sizes(), (std::vector<std::int64_t>{4, 1, 6, 5}));
  EXPECT_EQ(batch.images.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(batch.images.is_contiguous());
  EXPECT_EQ(batch.labels.sizes(), (std::vector<std::int64_t>{4}));
  EXPECT_EQ(batch.labels.scalar_type(), torch::kInt64);
}

TEST(Loader, WithoutAugmentationABatchIsTheNormalisedSource) {
  const ImageDataset dataset = synthetic(7);
  const std::vector<std::int64_t> indices = {6, 2, 3};
  BatchLoader loader(dataset, indices, plain(3));
  Batch batch;
  ASSERT_TRUE(loader.next(batch));
  const auto images = batch.images.accessor<float, 4>();
  for (std::int64_t b = 0; b < 3; ++b) {
    const std::uint8_t* source = dataset.image(indices[static_cast<std::size_t>(b)]);
    for (std::int64_t y = 0; y < 6; ++y) {
      for (std::int64_t x = 0; x < 5; ++x) EXPECT_FLOAT_EQ(images[b][0][y][x], normalized(source[y * 5 + x]));
    }
    EXPECT_EQ(batch.labels[b].item<std::int64_t>(), indices[static_cast<std::size_t>(b)] % 10);
  }
  EXPECT_FALSE(loader.next(batch));
}

TEST(Loader, KnownPixelsNormaliseExactly) {
  ImageDataset dataset = synthetic(1, 1, 3);
  dataset.pixels = {0, 255, 73};
  LoaderOptions options = plain(1);
  options.normalize = Normalize{{0.5f}, {0.25f}};
  BatchLoader loader(dataset, {0}, options);
  Batch batch;
  ASSERT_TRUE(loader.next(batch));
  const auto images = batch.images.accessor<float, 4>();
  EXPECT_FLOAT_EQ(images[0][0][0][0], -2.0f);
  EXPECT_FLOAT_EQ(images[0][0][0][1], 2.0f);
  EXPECT_FLOAT_EQ(images[0][0][0][2], (73.0f / 255.0f - 0.5f) / 0.25f);
}

TEST(Loader, ForcedFlipWithoutCropIsAMirror) {
  const ImageDataset dataset = synthetic(3);
  LoaderOptions options = plain(3);
  options.augment = true;
  options.crop_padding = 0;
  options.flip_probability = 1.0;
  BatchLoader flipped(dataset, all_indices(dataset), options);
  BatchLoader original(dataset, all_indices(dataset), plain(3));
  Batch a, b;
  ASSERT_TRUE(flipped.next(a));
  ASSERT_TRUE(original.next(b));
  EXPECT_TRUE(torch::equal(a.images, b.images.flip({3})));
  EXPECT_FALSE(torch::equal(a.images, b.images));
}

TEST(Loader, CropKeepsTheSizeAndOnlyAddsZeroPadding) {
  const ImageDataset dataset = synthetic(64, 8, 8);
  LoaderOptions options = plain(64);
  options.augment = true;
  options.crop_padding = 2;
  options.flip_probability = 0.0;
  options.normalize = Normalize::unit_range();
  BatchLoader loader(dataset, all_indices(dataset), options);
  Batch batch;
  ASSERT_TRUE(loader.next(batch));
  ASSERT_EQ(batch.images.sizes(), (std::vector<std::int64_t>{64, 1, 8, 8}));
  const auto images = batch.images.accessor<float, 4>();
  int shifted = 0;
  for (std::int64_t i = 0; i < 64; ++i) {
    // Every output pixel is either padding (0) or the source pixel at one common offset within [-2, 2].
    const auto out = images[i][0];
    const std::uint8_t* source = dataset.image(i);
    bool found = false;
    for (std::int64_t dy = -2; dy <= 2 && !found; ++dy) {
      for (std::int64_t dx = -2; dx <= 2 && !found; ++dx) {
        bool matches = true;
        for (std::int64_t y = 0; y < 8 && matches; ++y) {
          for (std::int64_t x = 0; x < 8 && matches; ++x) {
            const std::int64_t sy = y + dy, sx = x + dx;
            const bool inside = sy >= 0 && sy < 8 && sx >= 0 && sx < 8;
            const float expected = inside ? static_cast<float>(source[sy * 8 + sx]) / 255.0f : 0.0f;
            matches = out[y][x] == expected;
          }
        }
        if (matches) {
          found = true;
          shifted += dy != 0 || dx != 0;
        }
      }
    }
    EXPECT_TRUE(found) << "image " << i << " is not a padded crop of its source";
  }
  EXPECT_GT(shifted, 40);  // 24 of 25 offsets move the image
}

TEST(Loader, SameSeedAndEpochGiveIdenticalBatches) {
  const ImageDataset dataset = synthetic(50);
  LoaderOptions options = plain(8);
  options.shuffle = true;
  options.augment = true;
  options.seed = 11;
  BatchLoader first(dataset, all_indices(dataset), options);
  BatchLoader second(dataset, all_indices(dataset), options);
  const std::vector<Batch> a = epoch(first, 3);
  const std::vector<Batch> b = epoch(second, 3);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i].images, b[i].images));
    EXPECT_TRUE(torch::equal(a[i].labels, b[i].labels));
  }
  // Replaying the epoch on the same loader (a resumed run) gives it again.
  EXPECT_TRUE(torch::equal(epoch(first, 3)[2].images, a[2].images));
}

TEST(Loader, EpochsAndSeedsChangeTheOrderButNotTheContent) {
  const ImageDataset dataset = synthetic(200);
  LoaderOptions options = plain(16);
  options.shuffle = true;
  options.seed = 5;
  BatchLoader loader(dataset, all_indices(dataset), options);
  std::vector<std::int64_t> order0, order1;
  for (const std::int64_t e : {0, 1}) {
    loader.reset(e);
    std::vector<std::int64_t>& order = e == 0 ? order0 : order1;
    for (Batch batch; loader.next(batch);) {
      // Image i starts with pixel (i * 37) mod 256, unique for i < 256 because 37 is odd.
      for (std::int64_t b = 0; b < batch.size(); ++b) {
        const float first = batch.images[b][0][0][0].item<float>();
        order.push_back(std::lround((first * 0.3530f + 0.2860f) * 255.0f));
      }
    }
  }
  EXPECT_NE(order0, order1);
  std::vector<std::int64_t> sorted0 = order0, sorted1 = order1;
  std::sort(sorted0.begin(), sorted0.end());
  std::sort(sorted1.begin(), sorted1.end());
  EXPECT_EQ(sorted0, sorted1);  // a permutation of the same samples
  EXPECT_EQ(std::set<std::int64_t>(order0.begin(), order0.end()).size(), 200u);

  options.seed = 6;
  BatchLoader other_seed(dataset, all_indices(dataset), options);
  EXPECT_NE(labels_of(epoch(other_seed, 0)), labels_of(epoch(loader, 0)));
}

TEST(Loader, EachBatchNamesTheDatasetIndexOfEveryImage) {
  const ImageDataset dataset = synthetic(50);
  LoaderOptions options = plain(8);
  options.shuffle = true;
  options.seed = 3;
  const std::vector<std::int64_t> indices = {49, 3, 17, 8, 22, 40, 41, 0, 5, 30, 11};
  BatchLoader loader(dataset, indices, options);
  std::vector<std::int64_t> seen;
  for (const Batch& batch : epoch(loader, 1)) {
    ASSERT_EQ(batch.indices.scalar_type(), torch::kInt64);
    ASSERT_EQ(batch.indices.size(0), batch.size());
    for (std::int64_t b = 0; b < batch.size(); ++b) {
      const std::int64_t index = batch.indices[b].item<std::int64_t>();
      seen.push_back(index);
      EXPECT_FLOAT_EQ(batch.images[b][0][2][3].item<float>(), normalized(dataset.image(index)[2 * 5 + 3]));
      EXPECT_EQ(batch.labels[b].item<std::int64_t>(), index % 10);
    }
  }
  std::vector<std::int64_t> sorted_seen = seen, sorted_given = indices;
  std::sort(sorted_seen.begin(), sorted_seen.end());
  std::sort(sorted_given.begin(), sorted_given.end());
  EXPECT_EQ(sorted_seen, sorted_given);
}

TEST(Loader, LastPartialBatchAndDropLast) {
  const ImageDataset dataset = synthetic(10);
  BatchLoader keep(dataset, all_indices(dataset), plain(4));
  EXPECT_EQ(keep.num_batches(), 3);
  const std::vector<Batch> kept = epoch(keep, 0);
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept[2].size(), 2);
  EXPECT_EQ(kept[2].images.size(0), 2);
  EXPECT_EQ(labels_of(kept), (std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));

  LoaderOptions options = plain(4);
  options.drop_last = true;
  BatchLoader drop(dataset, all_indices(dataset), options);
  EXPECT_EQ(drop.num_batches(), 2);
  const std::vector<Batch> dropped = epoch(drop, 0);
  ASSERT_EQ(dropped.size(), 2u);
  EXPECT_EQ(dropped[1].size(), 4);

  BatchLoader exact(dataset, all_indices(dataset), plain(5));
  EXPECT_EQ(exact.num_batches(), 2);
}

TEST(Loader, InvalidInputsAreErrors) {
  const ImageDataset dataset = synthetic(5);
  EXPECT_CONTAINS(error_message([&] {
                    BatchLoader(dataset, {0, 5}, plain(2));
                  }),
                  "sample index 5 is out of range");
  EXPECT_CONTAINS(error_message([&] { BatchLoader(dataset, {0}, plain(0)); }),
                  "batch size 0 must be positive");
  LoaderOptions options = plain(2);
  options.normalize = Normalize::cifar10();
  EXPECT_CONTAINS(error_message([&] { BatchLoader(dataset, {0}, options); }), "for 1-channel images");
}

}  // namespace
}  // namespace qnas::data
