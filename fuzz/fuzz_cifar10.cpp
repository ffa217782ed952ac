// CIFAR-10 binary batches: 1 label byte + 3,072 pixel bytes per record, labels 0-9.
#include <cstdint>

#include "core/error.h"
#include "data/cifar10.h"
#include "fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const qnas::fuzz::InputFile file(data, size, ".bin");
  try {
    qnas::data::read_cifar10_batch(file.path());
  } catch (const qnas::Error&) {
  }
  return 0;
}
