// IDX image and label files, plain or gzip (the reader looks at the magic bytes): headers, declared sizes
// against the file's, dimensions.
#include <cstdint>

#include "core/error.h"
#include "data/idx.h"
#include "fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const qnas::fuzz::InputFile file(data, size, ".idx");
  try {
    qnas::data::read_idx_images(file.path());
  } catch (const qnas::Error&) {
  }
  try {
    qnas::data::read_idx_labels(file.path());
  } catch (const qnas::Error&) {
  }
  return 0;
}
