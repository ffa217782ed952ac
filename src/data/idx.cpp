#include "data/idx.h"

#include <limits>

#include <fmt/format.h>

#include "core/error.h"
#include "data/gzip.h"

namespace qnas::data {
namespace fs = std::filesystem;

namespace {

struct IdxFile {
  std::vector<std::uint8_t> bytes;
  std::vector<std::uint64_t> dims;
  std::size_t data_offset = 0;
  std::uint64_t data_size = 0;
};

std::uint32_t read_big_endian_u32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

std::string describe_magic(std::uint32_t magic) {
  if (magic == kIdxImagesMagic) return " (this is an IDX image file)";
  if (magic == kIdxLabelsMagic) return " (this is an IDX label file)";
  if ((magic >> 16) == 0x1f8b) return " (this is gzip data: name the file *.gz so it is decompressed)";
  if ((magic >> 8) == 0x08) return fmt::format(" (unsigned bytes in {} dimensions)", magic & 0xff);
  return "";
}

void check_magic(const fs::path& path, std::uint32_t magic, std::uint32_t expected, const char* kind) {
  if (magic == expected) return;
  fail(
      "{}: magic number 0x{:08x}{} is not 0x{:08x}, the IDX {} magic; pass the {} file here (did you swap "
      "the image and label paths, or is the file corrupt?)",
      path.string(), magic, describe_magic(magic), expected, kind, kind);
}

// Reads and checks the header; the data must be exactly as long as the dimensions say.
IdxFile read_idx(const fs::path& path, std::uint32_t expected_magic, const char* kind) {
  IdxFile file;
  file.bytes = read_maybe_gzip_file(path);
  const std::size_t size = file.bytes.size();
  if (size < 4) {
    fail("{}: only {} bytes, too short for an IDX header; the file is truncated - download it again",
         path.string(), size);
  }
  const std::uint32_t magic = read_big_endian_u32(file.bytes.data());
  check_magic(path, magic, expected_magic, kind);

  const std::size_t num_dims = magic & 0xff;
  file.data_offset = 4 + 4 * num_dims;
  if (size < file.data_offset) {
    fail("{}: {} bytes, shorter than its own {}-byte IDX header; the file is truncated - download it again",
         path.string(), size, file.data_offset);
  }
  file.data_size = 1;
  bool overflows = false;
  for (std::size_t d = 0; d < num_dims; ++d) {
    const std::uint64_t dim = read_big_endian_u32(file.bytes.data() + 4 + 4 * d);
    file.dims.push_back(dim);
    if (dim != 0 && file.data_size > std::numeric_limits<std::uint64_t>::max() / dim) overflows = true;
    file.data_size *= dim;
  }
  const std::uint64_t present = size - file.data_offset;
  if (overflows || present < file.data_size) {
    fail(
        "{}: the header promises {} {} ({} data bytes) but only {} bytes follow; the file is truncated - "
        "download it again",
        path.string(), file.dims[0], kind,
        overflows ? std::string("too many") : std::to_string(file.data_size), present);
  }
  if (present > file.data_size) {
    fail("{}: {} bytes follow the {} {} the header declares; the file is corrupt or not an IDX file",
         path.string(), present - file.data_size, file.dims[0], kind);
  }
  return file;
}

}  // namespace

IdxImages read_idx_images(const fs::path& path) {
  IdxFile file = read_idx(path, kIdxImagesMagic, "images");
  IdxImages images;
  images.count = static_cast<std::int64_t>(file.dims[0]);
  images.height = static_cast<std::int64_t>(file.dims[1]);
  images.width = static_cast<std::int64_t>(file.dims[2]);
  if (images.height == 0 || images.width == 0) {
    fail("{}: the header declares empty {}x{} images; the file is corrupt", path.string(), images.height,
         images.width);
  }
  // Drop the header in place (one memmove) rather than allocating a second 47 MB pixel buffer.
  file.bytes.erase(file.bytes.begin(), file.bytes.begin() + static_cast<std::ptrdiff_t>(file.data_offset));
  images.pixels = std::move(file.bytes);
  return images;
}

std::vector<std::int64_t> read_idx_labels(const fs::path& path) {
  const IdxFile file = read_idx(path, kIdxLabelsMagic, "labels");
  return std::vector<std::int64_t>(file.bytes.begin() + static_cast<std::ptrdiff_t>(file.data_offset),
                                   file.bytes.end());
}

ImageDataset load_idx_dataset(const fs::path& images_path, const fs::path& labels_path,
                              std::vector<std::string> class_names) {
  IdxImages images = read_idx_images(images_path);
  std::vector<std::int64_t> labels = read_idx_labels(labels_path);
  if (static_cast<std::int64_t>(labels.size()) != images.count) {
    fail(
        "{} holds {} images but {} holds {} labels; pair files of the same split (train-* with train-*, "
        "t10k-* with t10k-*)",
        images_path.string(), images.count, labels_path.string(), labels.size());
  }
  const auto num_classes = static_cast<std::int64_t>(class_names.size());
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= num_classes) {
      fail(
          "{}: label {} of item {} is outside the {} classes 0..{}; the label file is corrupt or belongs to "
          "another data set",
          labels_path.string(), labels[i], i, num_classes, num_classes - 1);
    }
  }
  ImageDataset dataset;
  dataset.count = images.count;
  dataset.channels = 1;
  dataset.height = images.height;
  dataset.width = images.width;
  dataset.pixels = std::move(images.pixels);
  dataset.labels = std::move(labels);
  dataset.class_names = std::move(class_names);
  dataset.source = images_path.string();
  dataset.validate();
  return dataset;
}

}  // namespace qnas::data
