#pragma once
// Averages a step's gradients over the ranks while its last backward pass still runs, as PyTorch's DDP does:
// parameters are grouped into buckets in reverse registration order (about the order backward finishes them),
// and a bucket's all-reduce starts, on Gloo's worker threads, as soon as the last of its gradients is final.
//
// A sandwich step runs several backward passes into the same gradients, so only the last one can overlap:
// `prepare(loss)` before it walks the autograd graph from `loss` to learn which parameters it will still
// touch; a parameter that already holds a gradient and is not reached is final from the start. Buckets start
// strictly in order, whatever order the hooks fire in, so every rank issues the same collectives in the same
// sequence (Gloo pairs collectives by that sequence).
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "dist/process_group.h"

namespace qnas::dist {

class GradientReducer {
 public:
  // About 1 MiB per bucket: big enough that per-message costs stay small, small enough that the first
  // buckets start early in backward.
  static constexpr std::int64_t kDefaultBucketBytes = 1 << 20;

  GradientReducer(ProcessGroup& group, std::vector<torch::Tensor> parameters,
                  std::int64_t bucket_bytes = kDefaultBucketBytes);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Before the step's last backward, which starts from `loss`. `extra` (loss statistics, known already) is
  // summed first, while the backward runs.
  void prepare(const torch::Tensor& loss, torch::Tensor extra = {});
  // After that backward: waits for every bucket and leaves the averaged gradients in .grad() (parameters
  // without a gradient keep none) and the summed `extra`.
  void finish();

  // How many buckets the last step used, and how many of them started before backward ended.
  int buckets_last_step() const { return buckets_last_step_; }
  int started_early_last_step() const { return started_early_last_step_; }

  struct Step;  // one step's buckets and hooks (in the .cpp)

 private:
  void remove_hooks();

  ProcessGroup& group_;
  std::vector<torch::Tensor> parameters_;
  std::int64_t bucket_bytes_;
  std::shared_ptr<Step> step_;
  int buckets_last_step_ = 0, started_early_last_step_ = 0;
};

}  // namespace qnas::dist
