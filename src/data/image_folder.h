#pragma once
// A folder of images sorted into one sub-folder per class (root/<class>/<image>), the layout of ImageNet
// and torchvision's ImageFolder. Images are decoded with OpenCV and resized to one size.
#include <cstdint>
#include <filesystem>

#include "data/dataset.h"

namespace qnas::data {

struct ImageFolderOptions {
  std::int64_t height = 32;
  std::int64_t width = 32;
  std::int64_t channels = 3;  // 3: RGB, 1: grey-scale
};

// False when qnas was built without OpenCV; load_image_folder then throws a qnas::Error saying so.
bool image_folder_supported();

// Classes are the sub-folder names in sorted order (class id = position); within a class, files with an
// image extension (.png .jpg .jpeg .bmp .ppm .pgm .pbm .tif .tiff .webp, any case) are read in sorted order,
// and hidden entries are skipped. Errors name the root, the empty class folder or the undecodable file.
ImageDataset load_image_folder(const std::filesystem::path& root, const ImageFolderOptions& options = {});

}  // namespace qnas::data
