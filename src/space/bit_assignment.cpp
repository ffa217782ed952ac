#include "space/bit_assignment.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/error.h"

namespace qnas::space {

using nlohmann::json;

const std::vector<int>& allowed_bits() {
  static const std::vector<int> bits = {2, 3, 4, 8, kFloatBits};
  return bits;
}

void check_bits(int bits, const std::string& where) {
  const auto& ok = allowed_bits();
  if (std::find(ok.begin(), ok.end(), bits) == ok.end())
    fail("{}: {} bits is not a supported bit-width: use 2, 3, 4, 8 or 32 (FP32)", where, bits);
}

namespace {

QuantLayer quant_layer(const BlockSpec& b, int block, int layer, const LayerSpec& s, QuantLayer::Part part) {
  QuantLayer q;
  q.block = block;
  q.layer = layer;
  q.part = part;
  q.op = s.op;
  q.cin = s.cin;
  q.cout = s.cout;
  q.kernel = s.kernel;
  q.stride = s.stride;
  q.in_hw = s.in_hw;
  const std::string base = part == QuantLayer::Part::kProjection
                               ? fmt::format("block{}.projection", block)
                               : fmt::format("block{}.layer{}", block, layer);
  switch (part) {
    case QuantLayer::Part::kMain:
    case QuantLayer::Part::kProjection:
      q.name = base;
      q.macs = s.macs();
      q.weights = s.op == OpKind::kLinear
                      ? static_cast<std::int64_t>(s.cin) * s.cout
                      : static_cast<std::int64_t>(s.cin / s.groups()) * s.cout * s.kernel * s.kernel;
      break;
    case QuantLayer::Part::kSeReduce:
    case QuantLayer::Part::kSeExpand:
      // Both 1x1 convs of an SE layer act on the pooled vector: cin * mid MACs and weights each.
      q.name = base + (part == QuantLayer::Part::kSeReduce ? ".se_reduce" : ".se_expand");
      q.cin = part == QuantLayer::Part::kSeReduce ? s.cin : s.se_mid;
      q.cout = part == QuantLayer::Part::kSeReduce ? s.se_mid : s.cin;
      q.kernel = 1;
      q.in_hw = 1;
      q.macs = static_cast<std::int64_t>(s.cin) * s.se_mid;
      q.weights = q.macs;
      break;
  }
  q.first = b.type != nullptr && b.type->kind == BlockKind::kFirstConv;
  q.classifier = s.op == OpKind::kLinear;
  return q;
}

}  // namespace

std::vector<QuantLayer> quant_layers(const ArchSpec& spec) {
  std::vector<QuantLayer> out;
  for (size_t bi = 0; bi < spec.blocks.size(); ++bi) {
    const BlockSpec& b = spec.blocks[bi];
    const int block = static_cast<int>(bi);
    for (size_t li = 0; li < b.layers.size(); ++li) {
      const LayerSpec& s = b.layers[li];
      const int layer = static_cast<int>(li);
      if (s.op == OpKind::kGlobalAvgPool) continue;
      if (s.op == OpKind::kSqueezeExcite) {
        out.push_back(quant_layer(b, block, layer, s, QuantLayer::Part::kSeReduce));
        out.push_back(quant_layer(b, block, layer, s, QuantLayer::Part::kSeExpand));
      } else {
        out.push_back(quant_layer(b, block, layer, s, QuantLayer::Part::kMain));
      }
    }
    if (b.projection) out.push_back(quant_layer(b, block, -1, *b.projection, QuantLayer::Part::kProjection));
  }
  return out;
}

BitAssignment BitAssignment::uniform(const ArchSpec& spec, int weight_bits, int activation_bits) {
  check_bits(weight_bits, "uniform weight bits");
  check_bits(activation_bits, "uniform activation bits");
  BitAssignment a;
  a.subnet = spec.subnet;
  a.layers.assign(quant_layers(spec).size(), LayerBits{weight_bits, activation_bits});
  return a;
}

void BitAssignment::validate(const ArchSpec& spec) const {
  const auto ql = quant_layers(spec);
  if (layers.size() != ql.size())
    fail(
        "bit assignment has {} layers but network {} has {} quantised layers: it was made for another "
        "network",
        layers.size(), spec.subnet, ql.size());
  for (size_t i = 0; i < ql.size(); ++i) {
    check_bits(layers[i].weight, fmt::format("weight bits of {}", ql[i].name));
    check_bits(layers[i].activation, fmt::format("activation bits of {}", ql[i].name));
  }
}

json BitAssignment::to_json(const ArchSpec& spec) const {
  validate(spec);
  const auto ql = quant_layers(spec);
  json rows = json::array();
  for (size_t i = 0; i < ql.size(); ++i)
    rows.push_back(
        {{"name", ql[i].name}, {"weight_bits", layers[i].weight}, {"activation_bits", layers[i].activation}});
  return {{"format", "qnas-bit-assignment"},
          {"version", 1},
          {"space", spec.space},
          {"subnet", spec.subnet},
          {"bitops", bitops(spec, *this)},
          {"compression_ratio", compression_ratio(spec, *this)},
          {"model_size_bits", model_size_bits(spec, *this)},
          {"layers", rows}};
}

namespace {

BitAssignment from_json_checked(const json& j, const ArchSpec& spec, const std::string& what) {
  if (!j.is_object() || j.value("format", "") != "qnas-bit-assignment")
    fail(
        "{} is not a bit assignment (no \"format\": \"qnas-bit-assignment\"): write one with `qnas "
        "mixed-precision`",
        what);
  if (j.value("version", 0) != 1)
    fail("{} has bit-assignment version {}, this qnas reads version 1", what, j.value("version", 0));
  if (j.value("subnet", "") != spec.subnet)
    fail("{} was made for subnet {}, not {}: assign bits to this network again", what, j.value("subnet", ""),
         spec.subnet);
  const auto ql = quant_layers(spec);
  const json& rows = j.at("layers");
  if (!rows.is_array() || rows.size() != ql.size())
    fail("{} lists {} layers, the network has {} quantised layers", what, rows.is_array() ? rows.size() : 0,
         ql.size());
  BitAssignment a;
  a.subnet = spec.subnet;
  for (size_t i = 0; i < ql.size(); ++i) {
    const json& r = rows[i];
    if (r.value("name", "") != ql[i].name)
      fail("{}: layer {} is named '{}', expected '{}'", what, i, r.value("name", ""), ql[i].name);
    if (!r.contains("weight_bits") || !r["weight_bits"].is_number_integer() ||
        !r.contains("activation_bits") || !r["activation_bits"].is_number_integer())
      fail("{}: layer {} needs integer weight_bits and activation_bits", what, ql[i].name);
    a.layers.push_back({r["weight_bits"].get<int>(), r["activation_bits"].get<int>()});
  }
  a.validate(spec);
  return a;
}

}  // namespace

BitAssignment BitAssignment::from_json(const json& j, const ArchSpec& spec, const std::string& what) {
  // A field of the wrong JSON type is the same malformed file as a missing one (found by fuzz/).
  try {
    return from_json_checked(j, spec, what);
  } catch (const json::exception& e) {
    fail("{} is not a well-formed bit assignment ({}): write it again with `qnas mixed-precision`", what,
         e.what());
  }
}

namespace {

void require_match(const ArchSpec& spec, const BitAssignment& bits, const std::vector<QuantLayer>& ql) {
  if (bits.layers.size() != ql.size())
    fail("bit assignment has {} layers but network {} has {} quantised layers", bits.layers.size(),
         spec.subnet, ql.size());
}

double capped(int bits) {
  return static_cast<double>(std::min(bits, 8));
}

}  // namespace

double bitops(const ArchSpec& spec, const BitAssignment& bits) {
  const auto ql = quant_layers(spec);
  require_match(spec, bits, ql);
  double total = 0;
  for (size_t i = 0; i < ql.size(); ++i)
    total += static_cast<double>(ql[i].macs) * capped(bits.layers[i].weight) *
             capped(bits.layers[i].activation) / 64.0;
  return total;
}

double bit_complexity(const ArchSpec& spec, const BitAssignment& bits) {
  const auto ql = quant_layers(spec);
  require_match(spec, bits, ql);
  double total = 0;
  for (size_t i = 0; i < ql.size(); ++i)
    total += static_cast<double>(ql[i].macs) * std::max(bits.layers[i].weight, bits.layers[i].activation);
  return total;
}

double compression_ratio(const ArchSpec& spec, const BitAssignment& bits) {
  return bit_complexity(spec, BitAssignment::uniform(spec, 8, 8)) / bit_complexity(spec, bits);
}

std::int64_t model_size_bits(const ArchSpec& spec, const BitAssignment& bits) {
  const auto ql = quant_layers(spec);
  require_match(spec, bits, ql);
  std::int64_t total = fp32_size_bits(spec);
  for (size_t i = 0; i < ql.size(); ++i) total -= ql[i].weights * (kFloatBits - bits.layers[i].weight);
  return total;
}

std::int64_t fp32_size_bits(const ArchSpec& spec) {
  return spec.params() * kFloatBits;
}

}  // namespace qnas::space
