#pragma once
// Per-image preprocessing shared by every loader: random crop with zero padding, random horizontal flip and
// per-channel normalisation, fused into one pass from uint8 CHW source pixels to float CHW output, so a
// batch is written straight into its tensor's memory. No LibTorch here: the arithmetic is tested without it.
#include <array>
#include <cstdint>
#include <vector>

#include "core/rng.h"

namespace qnas::data {

// output = (pixel / 255 - mean[c]) / std[c]. One value broadcasts to every channel.
struct Normalize {
  std::vector<float> mean{0.2860f};  // Fashion-MNIST training-set statistics
  std::vector<float> std{0.3530f};

  static Normalize fashion_mnist() { return {{0.2860f}, {0.3530f}}; }
  static Normalize cifar10() { return {{0.4914f, 0.4822f, 0.4465f}, {0.2470f, 0.2435f, 0.2616f}}; }
  static Normalize imagenet() { return {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}}; }
  static Normalize unit_range() { return {{0.0f}, {1.0f}}; }  // pixel / 255 only
};

// Normalize turned into one 256-entry table per channel, so each pixel costs a single lookup.
class PixelNormalizer {
 public:
  // A qnas::Error unless mean and std have 1 or `channels` entries and every std is positive.
  PixelNormalizer(const Normalize& normalize, std::int64_t channels);
  float operator()(std::int64_t channel, std::uint8_t pixel) const {
    return tables_[static_cast<std::size_t>(channel)][pixel];
  }
  // What a zero padding pixel becomes.
  float padding(std::int64_t channel) const { return (*this)(channel, 0); }
  std::int64_t channels() const { return static_cast<std::int64_t>(tables_.size()); }

 private:
  std::vector<std::array<float, 256>> tables_;
};

// Where one output image comes from: output(y, x) = source(y + shift_y, x' + shift_x), x' = W-1-x when
// flipped. Shifts in [-pad, pad] are a crop window moved over the zero-padded image; a source pixel outside
// the image is zero (padding).
struct Augmentation {
  std::int64_t shift_y = 0;
  std::int64_t shift_x = 0;
  bool flip = false;
};

// The usual crop padding: 2 for 28x28 (Fashion-MNIST), 4 for 32x32 (CIFAR) and larger images.
std::int64_t default_crop_padding(std::int64_t height, std::int64_t width);

// Shift uniform in [-padding, padding] for each axis, then a flip with probability flip_probability; the
// draws use qnas::Rng only, so they are the same on every platform.
Augmentation draw_augmentation(Rng& rng, std::int64_t padding, double flip_probability);

// Writes one augmented, normalised image: `source` is C x H x W uint8, `out` receives C x H x W floats.
void write_image(const std::uint8_t* source, std::int64_t height, std::int64_t width,
                 const Augmentation& augmentation, const PixelNormalizer& normalizer, float* out);

// A seed for one stream of draws (stream, index), e.g. (shuffle, epoch) or (augment of epoch e, batch b),
// decorrelated from the user's seed with the SplitMix64 finaliser.
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream, std::uint64_t index);

}  // namespace qnas::data
