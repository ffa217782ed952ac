#pragma once
// Mixed precision as data: which weight tensors of an ArchSpec are quantised, and how many bits each one and
// the tensor it reads get. The costs the mixed-precision methods optimise are counted here, from the ArchSpec
// alone:
//   - BitOPs (QFA): sum over layers of MACs * min(b_w, 8) * min(b_a, 8) / 64, i.e. INT8-equivalent MACs;
//   - bit complexity (NNCF HAWQ): sum of MACs * max(b_w, b_a); compression ratio = INT8's / the assignment's;
//   - model size: quantised weights at their bit-width, everything else (BN, biases) at 32 bits.
// Pure arithmetic: no LibTorch, so the searches (src/search) can use it.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "space/arch_spec.h"

namespace qnas::space {

constexpr int kFloatBits = 32;

// The bit-widths a layer may take; anything else is refused with a message naming `where`.
const std::vector<int>& allowed_bits();
void check_bits(int bits, const std::string& where);

// One quantised weight tensor, in the order the static network holds them (block by block: main-path
// layers in order, an SE layer's reduce then expand conv, then the shortcut projection).
struct QuantLayer {
  std::string name;  // "block3.layer1", "block3.layer2.se_expand", "block3.projection"
  int block = 0;
  int layer = -1;  // index into BlockSpec::layers; -1 for the projection
  enum class Part { kMain, kSeReduce, kSeExpand, kProjection } part = Part::kMain;
  OpKind op = OpKind::kConv;
  int cin = 0, cout = 0, kernel = 1, stride = 1, in_hw = 0;
  std::int64_t macs = 0;
  std::int64_t weights = 0;  // weight elements (what the bit-width applies to)
  bool first = false;        // the stem conv: QFA keeps it in FP32
  bool classifier = false;   // the logits layer: QFA keeps it at >= 8 bits
};
std::vector<QuantLayer> quant_layers(const ArchSpec& spec);

struct LayerBits {
  int weight = 8;
  int activation = 8;  // the tensor the layer reads
  bool operator==(const LayerBits& o) const { return weight == o.weight && activation == o.activation; }
};

struct BitAssignment {
  std::string subnet;  // the ArchSpec it belongs to (checked when applied)
  std::vector<LayerBits> layers;

  static BitAssignment uniform(const ArchSpec& spec, int weight_bits, int activation_bits);
  // Throws naming the layer when the count does not match `spec` or a bit-width is not allowed.
  void validate(const ArchSpec& spec) const;
  nlohmann::json to_json(const ArchSpec& spec) const;
  // Reads what to_json wrote, checked against `spec` (count, names, bits). `what` names the source in errors.
  static BitAssignment from_json(const nlohmann::json& j, const ArchSpec& spec, const std::string& what);
};

// INT8-equivalent MACs (QFA's BitOPs): sum MACs * min(b_w, 8) * min(b_a, 8) / 64. FP32 counts as 8.
double bitops(const ArchSpec& spec, const BitAssignment& bits);
// NNCF's bit complexity: sum MACs * max(b_w, b_a).
double bit_complexity(const ArchSpec& spec, const BitAssignment& bits);
// Uniform INT8's bit complexity over this assignment's: 1.5 means 1.5x cheaper than INT8.
double compression_ratio(const ArchSpec& spec, const BitAssignment& bits);
// Model size in bits: quantised weights at their bit-width, every other parameter at 32 bits.
std::int64_t model_size_bits(const ArchSpec& spec, const BitAssignment& bits);
// The same for FP32 (every parameter at 32 bits): AutoQ's size ratio is model_size_bits / this.
std::int64_t fp32_size_bits(const ArchSpec& spec);

}  // namespace qnas::space
