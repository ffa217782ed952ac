#include "data/transform.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace qnas::data {

namespace {

float entry(const std::vector<float>& values, std::int64_t channel) {
  return values.size() == 1 ? values[0] : values[static_cast<std::size_t>(channel)];
}

void check_normalize(const Normalize& normalize, std::int64_t channels) {
  const auto fits = [channels](const std::vector<float>& values) {
    return values.size() == 1 || static_cast<std::int64_t>(values.size()) == channels;
  };
  if (!fits(normalize.mean) || !fits(normalize.std)) {
    fail("normalisation has {} means and {} standard deviations for {}-channel images; give 1 or {} of each",
         normalize.mean.size(), normalize.std.size(), channels, channels);
  }
  for (const float value : normalize.std) {
    if (!(value > 0.0f) || !std::isfinite(value)) {
      fail("normalisation standard deviation {} must be a positive number", value);
    }
  }
}

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

PixelNormalizer::PixelNormalizer(const Normalize& normalize, std::int64_t channels) {
  check_normalize(normalize, channels);
  tables_.resize(static_cast<std::size_t>(channels));
  for (std::int64_t c = 0; c < channels; ++c) {
    const float mean = entry(normalize.mean, c);
    const float deviation = entry(normalize.std, c);
    for (int v = 0; v < 256; ++v) {
      tables_[static_cast<std::size_t>(c)][static_cast<std::size_t>(v)] =
          (static_cast<float>(v) / 255.0f - mean) / deviation;
    }
  }
}

std::int64_t default_crop_padding(std::int64_t height, std::int64_t width) {
  return std::min(height, width) < 32 ? 2 : 4;
}

Augmentation draw_augmentation(Rng& rng, std::int64_t padding, double flip_probability) {
  Augmentation augmentation;
  const auto choices = static_cast<std::uint64_t>(2 * padding + 1);
  augmentation.shift_y = static_cast<std::int64_t>(rng.below(choices)) - padding;
  augmentation.shift_x = static_cast<std::int64_t>(rng.below(choices)) - padding;
  augmentation.flip = rng.uniform() < flip_probability;
  return augmentation;
}

void write_image(const std::uint8_t* source, std::int64_t height, std::int64_t width,
                 const Augmentation& augmentation, const PixelNormalizer& normalizer, float* out) {
  for (std::int64_t c = 0; c < normalizer.channels(); ++c) {
    const std::uint8_t* plane = source + c * height * width;
    const float padding = normalizer.padding(c);
    for (std::int64_t y = 0; y < height; ++y, out += width) {
      const std::int64_t source_y = y + augmentation.shift_y;
      if (source_y < 0 || source_y >= height) {
        std::fill(out, out + width, padding);
        continue;
      }
      const std::uint8_t* row = plane + source_y * width;
      for (std::int64_t x = 0; x < width; ++x) {
        const std::int64_t source_x = (augmentation.flip ? width - 1 - x : x) + augmentation.shift_x;
        out[x] = source_x < 0 || source_x >= width ? padding : normalizer(c, row[source_x]);
      }
    }
  }
}

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  return splitmix64(splitmix64(splitmix64(seed) ^ stream) ^ index);
}

}  // namespace qnas::data
