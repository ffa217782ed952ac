#include "data/dataset.h"

#include "core/error.h"

namespace qnas::data {

namespace {
void check_index(const ImageDataset& dataset, std::int64_t i) {
  if (i < 0 || i >= dataset.count) {
    fail("image index {} is out of range for {} ({} images)", i, dataset.source, dataset.count);
  }
}
}  // namespace

const std::uint8_t* ImageDataset::image(std::int64_t i) const {
  check_index(*this, i);
  return pixels.data() + i * image_bytes();
}

std::int64_t ImageDataset::label(std::int64_t i) const {
  check_index(*this, i);
  return labels[static_cast<std::size_t>(i)];
}

void ImageDataset::validate() const {
  if (count < 0 || channels <= 0 || height <= 0 || width <= 0) {
    fail("{}: invalid shape {} x {} x {} x {}; the reader produced a malformed data set", source, count,
         channels, height, width);
  }
  if (static_cast<std::int64_t>(pixels.size()) != count * image_bytes()) {
    fail("{}: holds {} pixel bytes but {} images of {}x{}x{} need {}", source, pixels.size(), count, channels,
         height, width, count * image_bytes());
  }
  if (static_cast<std::int64_t>(labels.size()) != count) {
    fail("{}: has {} labels for {} images; every image needs exactly one label", source, labels.size(),
         count);
  }
  if (class_names.empty()) fail("{}: has no class names", source);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes()) {
      fail(
          "{}: label {} of image {} is outside the {} classes [0, {}); the label file is corrupt or belongs "
          "to another data set",
          source, labels[i], i, num_classes(), num_classes() - 1);
    }
  }
}

Split parse_split(std::string_view name) {
  if (name == "train") return Split::kTrain;
  if (name == "test") return Split::kTest;
  fail("unknown split '{}': use 'train' or 'test'", name);
}

const char* split_name(Split split) {
  return split == Split::kTrain ? "train" : "test";
}

}  // namespace qnas::data
