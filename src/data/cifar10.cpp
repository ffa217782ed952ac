#include "data/cifar10.h"

#include <sstream>

#include "core/error.h"
#include "core/fs.h"

namespace qnas::data {
namespace fs = std::filesystem;

namespace {

constexpr const char* kDownloadHint =
    "download the CIFAR-10 binary version (cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/"
    "cifar.html), unpack it and pass --data DIR";

fs::path resolve_batches_dir(const fs::path& dir) {
  if (!fs::is_directory(dir)) fail("CIFAR-10 directory {} does not exist; {}", dir.string(), kDownloadHint);
  const fs::path nested = dir / "cifar-10-batches-bin";  // the folder the archive unpacks to
  return fs::is_directory(nested) ? nested : dir;
}

std::vector<fs::path> batch_files(const fs::path& dir, Split split) {
  if (split == Split::kTest) return {dir / "test_batch.bin"};
  std::vector<fs::path> files;
  for (int i = 1; i <= 5; ++i) files.push_back(dir / ("data_batch_" + std::to_string(i) + ".bin"));
  return files;
}

// batches.meta.txt lists one class name per line (blank lines at the end are padding).
std::vector<std::string> read_class_names(const fs::path& meta_path) {
  std::istringstream lines(read_text_file(meta_path));
  std::vector<std::string> names;
  for (std::string line; std::getline(lines, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  if (names.size() != cifar10_class_names().size()) {
    fail("{}: lists {} class names, CIFAR-10 has {}; fix the file or delete it to use the standard names",
         meta_path.string(), names.size(), cifar10_class_names().size());
  }
  return names;
}

void append(ImageDataset& into, ImageDataset&& batch) {
  into.pixels.insert(into.pixels.end(), batch.pixels.begin(), batch.pixels.end());
  into.labels.insert(into.labels.end(), batch.labels.begin(), batch.labels.end());
  into.count += batch.count;
}

}  // namespace

const std::vector<std::string>& cifar10_class_names() {
  static const std::vector<std::string> names = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                 "dog",      "frog",       "horse", "ship", "truck"};
  return names;
}

ImageDataset read_cifar10_batch(const fs::path& path) {
  const std::vector<std::uint8_t> bytes = read_binary_file(path);
  const auto size = static_cast<std::int64_t>(bytes.size());
  if (size == 0 || size % kCifar10RecordBytes != 0) {
    fail(
        "{}: {} bytes is not a whole number of {}-byte CIFAR-10 records (1 label + 3x32x32 pixels); the file "
        "is truncated or not from the binary version - download cifar-10-binary.tar.gz again",
        path.string(), size, kCifar10RecordBytes);
  }
  ImageDataset batch;
  batch.count = size / kCifar10RecordBytes;
  batch.channels = 3;
  batch.height = 32;
  batch.width = 32;
  batch.class_names = cifar10_class_names();
  batch.source = path.string();
  batch.pixels.resize(static_cast<std::size_t>(batch.count * kCifar10ImageBytes));
  batch.labels.resize(static_cast<std::size_t>(batch.count));
  for (std::int64_t i = 0; i < batch.count; ++i) {
    const std::uint8_t* record = bytes.data() + i * kCifar10RecordBytes;
    if (record[0] >= batch.num_classes()) {
      fail(
          "{}: record {} has label {}, CIFAR-10 labels are 0..9; the file is corrupt or from another data "
          "set (CIFAR-100 records have two label bytes)",
          path.string(), i, record[0]);
    }
    batch.labels[static_cast<std::size_t>(i)] = record[0];
    std::copy(record + 1, record + kCifar10RecordBytes, batch.pixels.begin() + i * kCifar10ImageBytes);
  }
  return batch;
}

ImageDataset load_cifar10(const fs::path& dir, std::string_view split) {
  const Split which = parse_split(split);
  const fs::path batches_dir = resolve_batches_dir(dir);
  ImageDataset dataset;
  dataset.channels = 3;
  dataset.height = 32;
  dataset.width = 32;
  for (const fs::path& file : batch_files(batches_dir, which)) {
    if (!fs::is_regular_file(file)) fail("CIFAR-10 file {} not found; {}", file.string(), kDownloadHint);
    append(dataset, read_cifar10_batch(file));
  }
  const fs::path meta = batches_dir / "batches.meta.txt";
  dataset.class_names = fs::is_regular_file(meta) ? read_class_names(meta) : cifar10_class_names();
  dataset.source = "CIFAR-10 " + std::string(split) + " (" + batches_dir.string() + ")";
  dataset.validate();
  return dataset;
}

}  // namespace qnas::data
