#pragma once
// INT8 or FP32 per block from what this CPU measured and what the network is sensitive to. NNCF's CPU target
// quantises every layer to INT8; here a block stays FP32 where INT8 gains no time (SpaceEvo's Observation 2:
// SE, hardswish and swish often run slower in INT8), and further blocks go back to FP32 in order of their
// Hessian-weighted INT8 perturbation per millisecond of INT8 gain given up, while the predicted latency (the
// all-INT8 block sum plus the gains given up) stays within `slack` of the fastest assignment (FP32 exactly
// where INT8 gains no time). Torch-free.
#include <vector>

namespace qnas::search {

struct BlockCosts {
  double int8_ms = 0;
  double fp32_ms = 0;
  double sensitivity = 0;  // sum over the block's layers of Tr(H)/n * ||Q8(W) - W||^2
};

struct PrecisionChoice {
  std::vector<bool> fp32;   // per block
  double predicted_ms = 0;  // all-INT8 block sum + the gains given up
  double all_int8_ms = 0;
  double fastest_ms = 0;  // FP32 exactly where INT8 gains no time
};

// Throws when a cost is negative or not finite, or slack < 0.
PrecisionChoice choose_block_precision(const std::vector<BlockCosts>& blocks, double slack);

}  // namespace qnas::search
