#pragma once
// The in-memory image data set every reader produces and every loader consumes: plain bytes, no LibTorch,
// so readers, splits and their tests build and run on machines without it.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qnas::data {

struct ImageDataset {
  std::int64_t count = 0;
  std::int64_t channels = 0;
  std::int64_t height = 0;
  std::int64_t width = 0;
  std::vector<std::uint8_t> pixels;  // count x channels x height x width (NCHW), 0..255
  std::vector<std::int64_t> labels;  // count class ids in [0, class_names.size())
  std::vector<std::string> class_names;
  std::string source;  // where the images came from, for messages and logs

  std::int64_t image_bytes() const { return channels * height * width; }
  std::int64_t num_classes() const { return static_cast<std::int64_t>(class_names.size()); }
  // The CHW bytes of image i; a qnas::Error when i is out of range.
  const std::uint8_t* image(std::int64_t i) const;
  std::int64_t label(std::int64_t i) const;

  // Checks that sizes agree and every label names a class; readers call it before returning, so a
  // data set that reaches a loader is consistent. Throws qnas::Error naming `source`.
  void validate() const;
};

enum class Split { kTrain, kTest };

// "train" or "test"; anything else is a qnas::Error listing both.
Split parse_split(std::string_view name);
const char* split_name(Split split);

}  // namespace qnas::data
