// Image folders (root/<class>/<image>): the input's first byte picks the file extension, the channel count
// and the size the images are resized to; the rest is the image file, decoded by OpenCV (Debian's
// uninstrumented library: a crash or an exception other than qnas::Error inside it is still a finding, its
// coverage is not seen) and then converted, resized and copied by qnas's own code.
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "data/image_folder.h"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  static const std::array<const char*, 8> kExtensions = {".png", ".jpg", ".bmp",  ".ppm",
                                                         ".pgm", ".tif", ".webp", ".pbm"};
  static const std::array<std::int64_t, 4> kSizes = {1, 7, 28, 32};
  const std::uint8_t selector = data[0];
  const fs::path root = "/dev/shm/qnas-fuzz-" + std::to_string(::getpid()) + "-images";
  fs::create_directories(root / "class");
  const fs::path file = root / "class" / (std::string("image") + kExtensions[selector % kExtensions.size()]);
  std::FILE* f = std::fopen(file.c_str(), "wb");
  if (!f) std::abort();
  if (size > 1 && std::fwrite(data + 1, 1, size - 1, f) != size - 1) std::abort();
  std::fclose(f);
  qnas::data::ImageFolderOptions options;
  options.channels = (selector >> 3) & 1 ? 1 : 3;
  options.height = kSizes[(selector >> 4) % kSizes.size()];
  options.width = kSizes[(selector >> 6) % kSizes.size()];
  try {
    const qnas::data::ImageDataset images = qnas::data::load_image_folder(root, options);
    if (images.count != 1 || images.labels.at(0) != 0) std::abort();  // one image of class 0, or an error
  } catch (const qnas::Error&) {
  }
  fs::remove_all(root);
  return 0;
}
