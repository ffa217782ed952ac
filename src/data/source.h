#pragma once
// Where `qnas run` takes its images from: a name (fashion-mnist, cifar10) or a directory, recognised by what
// it holds (Fashion-MNIST IDX .gz files, CIFAR-10 binary batches, or an image folder), together with the
// hyperspace whose input it fits. One qnas::Error per unusable source, naming the directory and the fix.
#include <cstdint>
#include <filesystem>
#include <string>

#include "data/dataset.h"

namespace qnas::data {

enum class SourceKind { kFashionMnist, kCifar10, kImageFolder };
const char* to_string(SourceKind kind);

struct DataSource {
  SourceKind kind = SourceKind::kFashionMnist;
  std::filesystem::path dir;
  std::string hyperspace;  // fmnistw (1x28x28) or cifarw (3x32x32)
  int max_classes = 10;    // what the hyperspace's classifier has
  std::string describe() const;
};

// "fashion-mnist" (Debian's copy), "cifar10" (needs a directory: CIFAR-10 is not packaged) or a directory:
//  - train-images-idx3-ubyte.gz inside: Fashion-MNIST;
//  - data_batch_1.bin inside, or a cifar-10-batches-bin/ folder: CIFAR-10 (binary version);
//  - otherwise an image folder: DIR/train/<class>/ and DIR/test/<class>/, or DIR/<class>/ alone (then every
//    fifth image of each class is the test set). Images are read as 32x32 RGB (cifarw).
DataSource resolve_data_source(const std::string& spec);

struct LoadedData {
  ImageDataset train, test;
};

// Both splits, validated; an image folder's training images are put in a seeded random order, because the
// trainer trains on the first images and holds the last ones out (a folder lists them class by class).
// More classes than the hyperspace's classifier has is a qnas::Error.
LoadedData load_data_source(const DataSource& source, std::uint64_t seed = 0);

}  // namespace qnas::data
