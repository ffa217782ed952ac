#pragma once
// The collectives data-parallel training needs inside layers (synchronised batch norm, quantizer ranges),
// set per thread by the trainer from its process group, so neither quant/ nor nn/ depends on dist/.
// Unset (one process): layers use their own batch.
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace qnas::quant {

struct Collectives {
  std::function<void(const std::vector<torch::Tensor>&)> sum;  // in place, over all ranks
  std::function<void(torch::Tensor&)> max;                     // in place, element-wise
  std::function<torch::Tensor(const torch::Tensor&)> gather;   // every rank's tensor, stacked in rank order
  bool batch_norm = true;  // false: batch norm normalises over this rank's batch alone
};

// The object must outlive every backward pass of the forward passes run while it was set.
void set_collectives(const Collectives* collectives);
const Collectives* collectives();

}  // namespace qnas::quant
