#pragma once
// Mini-batches of an ImageDataset as LibTorch tensors. Each batch is allocated once and filled in a single
// pass from the uint8 pixels (crop, flip and normalisation fused), with no intermediate tensors.
#include <cstdint>
#include <vector>

#include <torch/types.h>

#include "data/dataset.h"
#include "data/transform.h"

namespace qnas::data {

struct LoaderOptions {
  std::int64_t batch_size = 128;
  bool shuffle = true;
  bool drop_last = false;  // drop the last, smaller batch of an epoch
  bool augment = false;    // random crop with zero padding + random horizontal flip (training only)
  std::uint64_t seed = 0;
  Normalize normalize;             // Fashion-MNIST statistics unless set
  std::int64_t crop_padding = -1;  // -1: default_crop_padding(height, width); 0: no crop
  double flip_probability = 0.5;   // 0: never flip, 1: always
};

struct Batch {
  torch::Tensor images;   // float32 [B, C, H, W], contiguous, on the CPU
  torch::Tensor labels;   // int64 [B]
  torch::Tensor indices;  // int64 [B]: the dataset index of each image, for callers that cache per image
  std::int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

class BatchLoader {
 public:
  // Iterates `indices` of `dataset`, which must outlive the loader. Starts at epoch 0.
  // A qnas::Error for an index out of range or invalid options.
  BatchLoader(const ImageDataset& dataset, std::vector<std::int64_t> indices, LoaderOptions options);

  // Starts an epoch. The order and the augmentation of every batch depend only on (seed, epoch, batch),
  // so a resumed run reproduces the epoch exactly.
  void reset(std::int64_t epoch);
  // Fills `batch` with the next batch of the epoch; false when the epoch is done.
  bool next(Batch& batch);

  std::int64_t num_batches() const;
  std::int64_t num_samples() const { return static_cast<std::int64_t>(indices_.size()); }
  std::int64_t epoch() const { return epoch_; }
  const LoaderOptions& options() const { return options_; }

 private:
  const ImageDataset& dataset_;
  std::vector<std::int64_t> indices_;  // as given
  std::vector<std::int64_t> order_;    // this epoch's order
  LoaderOptions options_;
  PixelNormalizer normalizer_;
  std::int64_t crop_padding_ = 0;
  std::int64_t epoch_ = 0;
  std::int64_t next_batch_ = 0;
};

}  // namespace qnas::data
