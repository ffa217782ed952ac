#include "data/image_folder.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/memory.h"

#ifdef QNAS_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace qnas::data {
namespace fs = std::filesystem;

#ifdef QNAS_HAVE_OPENCV
namespace {

struct ClassFolder {
  std::string name;
  std::vector<fs::path> images;
};

bool is_hidden(const fs::path& path) {
  return path.filename().string().rfind('.', 0) == 0;
}

bool has_image_extension(const fs::path& path) {
  static const std::array<std::string, 10> kExtensions = {".png", ".jpg", ".jpeg", ".bmp",  ".ppm",
                                                          ".pgm", ".tif", ".tiff", ".webp", ".pbm"};
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return std::find(kExtensions.begin(), kExtensions.end(), extension) != kExtensions.end();
}

std::vector<fs::path> sorted_entries(const fs::path& dir, bool want_directories) {
  std::vector<fs::path> entries;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    if (is_hidden(entry.path())) continue;
    if (want_directories ? entry.is_directory() : entry.is_regular_file()) entries.push_back(entry.path());
  }
  std::sort(entries.begin(), entries.end());
  return entries;
}

std::vector<ClassFolder> list_classes(const fs::path& root) {
  if (!fs::is_directory(root)) {
    fail(
        "image folder {} does not exist or is not a directory; pass the folder that holds one sub-folder per "
        "class",
        root.string());
  }
  std::vector<ClassFolder> classes;
  for (const fs::path& dir : sorted_entries(root, /*want_directories=*/true)) {
    ClassFolder folder{dir.filename().string(), {}};
    for (const fs::path& file : sorted_entries(dir, /*want_directories=*/false)) {
      if (has_image_extension(file)) folder.images.push_back(file);
    }
    if (folder.images.empty()) {
      fail("class folder {} contains no image files (.png, .jpg, ...); add images or remove the folder",
           dir.string());
    }
    classes.push_back(std::move(folder));
  }
  if (classes.empty()) {
    fail("image folder {} has no class sub-folders; arrange the images as {}/<class name>/<image file>",
         root.string(), root.string());
  }
  return classes;
}

// Decodes one file to the requested size and channel count, as 8-bit HWC in RGB (or grey) order.
cv::Mat decode(const fs::path& file, const ImageFolderOptions& options) {
  const int mode = options.channels == 1 ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR;  // both force 8 bits
  cv::Mat image;
  try {
    image = cv::imread(file.string(), mode);
  } catch (const cv::Exception& e) {
    // A decoder's own check (e.g. a header declaring more pixels than OpenCV accepts) throws instead of
    // returning an empty image.
    fail("cannot decode image {}: {}; delete or replace the file", file.string(), e.err);
  }
  if (image.empty()) {
    fail("cannot decode image {}: the file is corrupt or not in a format OpenCV reads; delete or replace it",
         file.string());
  }
  if (options.channels == 3) cv::cvtColor(image, image, cv::COLOR_BGR2RGB);  // OpenCV decodes to BGR
  const cv::Size size(static_cast<int>(options.width), static_cast<int>(options.height));
  if (image.size() != size) {
    // INTER_AREA averages when shrinking (no aliasing); INTER_LINEAR is the usual choice when enlarging.
    const bool shrinking = image.cols > size.width || image.rows > size.height;
    cv::resize(image, image, size, 0, 0, shrinking ? cv::INTER_AREA : cv::INTER_LINEAR);
  }
  return image;
}

// Interleaved HWC rows from OpenCV to the planar CHW layout of ImageDataset.
void copy_hwc_to_chw(const cv::Mat& image, std::uint8_t* out) {
  const int channels = image.channels();
  const std::size_t plane = static_cast<std::size_t>(image.rows) * image.cols;
  for (int y = 0; y < image.rows; ++y) {
    const std::uint8_t* row = image.ptr<std::uint8_t>(y);
    for (int x = 0; x < image.cols; ++x) {
      for (int c = 0; c < channels; ++c) {
        out[c * plane + static_cast<std::size_t>(y) * image.cols + x] = row[x * channels + c];
      }
    }
  }
}

void check_options(const ImageFolderOptions& options) {
  if (options.channels != 1 && options.channels != 3) {
    fail("image folder: {} channels requested; use 3 (RGB) or 1 (grey-scale)", options.channels);
  }
  if (options.height <= 0 || options.width <= 0 || options.height > 16384 || options.width > 16384) {
    fail("image folder: image size {}x{} is out of range; pass a height and width between 1 and 16384",
         options.height, options.width);
  }
}

}  // namespace

bool image_folder_supported() {
  return true;
}

ImageDataset load_image_folder(const fs::path& root, const ImageFolderOptions& options) {
  check_options(options);
  const std::vector<ClassFolder> classes = list_classes(root);
  ImageDataset dataset;
  dataset.channels = options.channels;
  dataset.height = options.height;
  dataset.width = options.width;
  dataset.source = root.string();
  for (const ClassFolder& folder : classes) dataset.count += static_cast<std::int64_t>(folder.images.size());
  require_memory(static_cast<std::uint64_t>(dataset.count * dataset.image_bytes()),
                 fmt::format("{} images of {}x{}x{} from {}", dataset.count, dataset.channels, dataset.height,
                             dataset.width, root.string()),
                 "use a smaller image size or fewer images, or free memory");
  dataset.pixels.resize(static_cast<std::size_t>(dataset.count * dataset.image_bytes()));
  dataset.labels.reserve(static_cast<std::size_t>(dataset.count));
  for (std::size_t class_id = 0; class_id < classes.size(); ++class_id) {
    dataset.class_names.push_back(classes[class_id].name);
    for (const fs::path& file : classes[class_id].images) {
      const auto index = static_cast<std::int64_t>(dataset.labels.size());
      copy_hwc_to_chw(decode(file, options), dataset.pixels.data() + index * dataset.image_bytes());
      dataset.labels.push_back(static_cast<std::int64_t>(class_id));
    }
  }
  dataset.validate();
  return dataset;
}

#else  // !QNAS_HAVE_OPENCV

bool image_folder_supported() {
  return false;
}

ImageDataset load_image_folder(const fs::path& root, const ImageFolderOptions&) {
  fail(
      "cannot read image folder {}: qnas was built without OpenCV; install libopencv-dev and rebuild, or use "
      "a data set in IDX or CIFAR binary format",
      root.string());
}

#endif  // QNAS_HAVE_OPENCV

}  // namespace qnas::data
