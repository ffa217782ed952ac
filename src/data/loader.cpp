#include "data/loader.h"

#include <torch/types.h>

#include "core/error.h"
#include "core/rng.h"

namespace qnas::data {

namespace {

// Stream ids for derive_seed, so shuffling and augmentation never share random numbers.
constexpr std::uint64_t kShuffleStream = 1;
constexpr std::uint64_t kAugmentStream = 2;

void check_options(const ImageDataset& dataset, const std::vector<std::int64_t>& indices,
                   const LoaderOptions& options) {
  if (options.batch_size <= 0) fail("batch size {} must be positive", options.batch_size);
  if (options.crop_padding < -1)
    fail("crop padding {} must be 0 or more (-1: default)", options.crop_padding);
  if (!(options.flip_probability >= 0.0 && options.flip_probability <= 1.0)) {
    fail("flip probability {} must be between 0 and 1", options.flip_probability);
  }
  for (const std::int64_t index : indices) {
    if (index < 0 || index >= dataset.count) {
      fail("sample index {} is out of range for {} ({} images); the split was made for another data set",
           index, dataset.source, dataset.count);
    }
  }
}

}  // namespace

BatchLoader::BatchLoader(const ImageDataset& dataset, std::vector<std::int64_t> indices,
                         LoaderOptions options)
    : dataset_(dataset),
      indices_(std::move(indices)),
      options_(std::move(options)),
      normalizer_(options_.normalize, dataset.channels) {
  check_options(dataset_, indices_, options_);
  crop_padding_ = options_.crop_padding >= 0 ? options_.crop_padding
                                             : default_crop_padding(dataset_.height, dataset_.width);
  reset(0);
}

void BatchLoader::reset(std::int64_t epoch) {
  epoch_ = epoch;
  next_batch_ = 0;
  order_ = indices_;
  if (options_.shuffle) {
    Rng rng(derive_seed(options_.seed, kShuffleStream, static_cast<std::uint64_t>(epoch)));
    rng.shuffle(order_);
  }
}

std::int64_t BatchLoader::num_batches() const {
  const std::int64_t full = num_samples() / options_.batch_size;
  return options_.drop_last || num_samples() % options_.batch_size == 0 ? full : full + 1;
}

bool BatchLoader::next(Batch& batch) {
  if (next_batch_ >= num_batches()) return false;
  const std::int64_t start = next_batch_ * options_.batch_size;
  const std::int64_t size = std::min(options_.batch_size, num_samples() - start);

  batch.images = torch::empty({size, dataset_.channels, dataset_.height, dataset_.width}, torch::kFloat32);
  batch.labels = torch::empty({size}, torch::kInt64);
  batch.indices = torch::empty({size}, torch::kInt64);
  float* images = batch.images.data_ptr<float>();
  std::int64_t* labels = batch.labels.data_ptr<std::int64_t>();
  std::int64_t* indices = batch.indices.data_ptr<std::int64_t>();

  // One generator per batch: any batch can be recomputed from (seed, epoch, batch) alone.
  const std::uint64_t epoch_seed =
      derive_seed(options_.seed, kAugmentStream, static_cast<std::uint64_t>(epoch_));
  Rng rng(derive_seed(epoch_seed, 0, static_cast<std::uint64_t>(next_batch_)));
  for (std::int64_t i = 0; i < size; ++i) {
    const std::int64_t index = order_[static_cast<std::size_t>(start + i)];
    const Augmentation augmentation =
        options_.augment ? draw_augmentation(rng, crop_padding_, options_.flip_probability) : Augmentation{};
    write_image(dataset_.image(index), dataset_.height, dataset_.width, augmentation, normalizer_,
                images + i * dataset_.image_bytes());
    labels[i] = dataset_.labels[static_cast<std::size_t>(index)];
    indices[i] = index;
  }
  ++next_batch_;
  return true;
}

}  // namespace qnas::data
