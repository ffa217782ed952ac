#pragma once
// HAWQ-v2 bit assignment as NNCF does it (precision init "hawq"): the layers are ordered by their Hessian
// trace, only bit sequences that never decrease along that order are candidates (a more sensitive layer never
// gets fewer bits than a less sensitive one), and the candidate with the lowest Hessian-weighted perturbation
//   sum_i Tr(H_i) * ||Q_b(W_i) - W_i||^2
// whose compression ratio (INT8 bit complexity / the candidate's) reaches the target wins.
// The traces and perturbations are inputs (src/quant/hessian.h measures them): this part is torch-free.
#include <cstdint>
#include <functional>
#include <vector>

#include <nlohmann/json.hpp>

#include "space/bit_assignment.h"

namespace qnas::search {

struct HawqOptions {
  std::vector<int> bits = {4, 8};  // weight bit-widths to choose from
  double compression_ratio = 1.5;  // target: INT8 bit complexity / the assignment's
  // When > 0, the target is model size / FP32 model size at most this (AutoQ's target) instead of the
  // compression ratio. Size counts weights only, so with 8-bit inputs (activation_bits = 8) HAWQ's ranking
  // can be compared with AutoQ's search under the same constraint; the compression ratio would leave every
  // such candidate at 1.
  double size_ratio = 0;
  // The bits of every layer's input: 0 = the same as its weights (NNCF groups a weight quantizer with the
  // activation quantizer it reads, and the bit complexity counts max(b_w, b_a), so 8-bit inputs would leave
  // every candidate at ratio 1).
  int activation_bits = 0;
  bool keep_first_and_last = true;  // the stem conv and the classifier stay at 8 bits (QFA, NNCF defaults)
};

// Non-decreasing sequences of length `length` over `choices` ordered values: sum_j C(m,j) * C(L-1,j-1)
// (choose the j values used, then split L positions into j non-empty runs) = C(L+m-1, m-1).
std::uint64_t count_monotone_sequences(int length, int choices);
// Calls `visit` with every such sequence (choice indices); stops early when it returns false.
void for_each_monotone_sequence(int length, int choices,
                                const std::function<bool(const std::vector<int>&)>& visit);

struct HawqLayerInput {
  double trace = 0;                  // average Hessian trace per weight (Tr / numel)
  std::vector<double> perturbation;  // ||Q_b(W) - W||^2 per entry of HawqOptions::bits
};

struct HawqResult {
  space::BitAssignment assignment;
  double metric = 0;
  double compression_ratio = 0;
  double size_ratio = 0;         // model size / FP32 model size
  std::uint64_t candidates = 0;  // sequences enumerated
  std::uint64_t feasible = 0;    // of them, meeting the target
  std::vector<int> trace_order;  // indices of the free layers, least sensitive first
  nlohmann::json to_json(const space::ArchSpec& spec) const;
};

// One input per space::quant_layers(spec) entry. Throws when the inputs do not match the network, a bit-width
// is not allowed, or no candidate reaches the target (naming the best ratio these bits can give).
HawqResult hawq_assign(const space::ArchSpec& spec, const std::vector<HawqLayerInput>& layers,
                       const HawqOptions& options);

}  // namespace qnas::search
