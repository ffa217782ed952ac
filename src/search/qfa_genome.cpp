#include "search/qfa_genome.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "search/accuracy_predictor.h"
#include "search/subnet_genome.h"
#include "space/sampling.h"

namespace qnas::search {

using space::ArchSpec;
using space::BitAssignment;
using space::LayerBits;
using space::QuantLayer;

std::string bit_gene_key(const ArchSpec& spec, const QuantLayer& q) {
  const space::BlockSpec& block = spec.blocks.at(static_cast<size_t>(q.block));
  const auto dot = q.name.find('.');  // "block3.layer1.se_expand" -> "layer1.se_expand"
  return fmt::format("{}.{}.{}", block.stage, block.block_index, q.name.substr(dot + 1));
}

std::vector<std::string> bit_gene_keys(const space::SearchSpace& space) {
  const ArchSpec max = space::build_arch_spec(space, space::max_subnet(space));
  std::set<std::string> keys;
  for (const QuantLayer& q : space::quant_layers(max)) keys.insert(bit_gene_key(max, q));
  // A smaller block may need a projection its largest version does not (other widths).
  for (const auto& b : max.blocks) keys.insert(fmt::format("{}.{}.projection", b.stage, b.block_index));
  return {keys.begin(), keys.end()};
}

std::vector<int> check_elastic_bits(std::vector<int> bits, const std::string& where) {
  if (bits.empty()) fail("{}: give at least one bit-width (QFA uses 2 3 4)", where);
  std::sort(bits.begin(), bits.end());
  for (size_t i = 0; i < bits.size(); ++i) {
    if (bits[i] != 2 && bits[i] != 3 && bits[i] != 4 && bits[i] != 8)
      fail("{}: {} bits cannot be an elastic choice: use 2, 3, 4 or 8", where, bits[i]);
    if (i > 0 && bits[i] == bits[i - 1]) fail("{}: {} bits is listed twice", where, bits[i]);
  }
  return bits;
}

bool fixed_at_8_bits(const QuantLayer& q) {
  return q.first || q.classifier;
}

BitAssignment qfa_uniform(const ArchSpec& spec, int bits) {
  BitAssignment a;
  a.subnet = spec.subnet;
  for (const QuantLayer& q : space::quant_layers(spec)) {
    const int b = fixed_at_8_bits(q) ? 8 : bits;
    a.layers.push_back({b, b});
  }
  return a;
}

BitAssignment qfa_random(const ArchSpec& spec, const std::vector<int>& choices, Rng& rng) {
  BitAssignment a;
  a.subnet = spec.subnet;
  for (const QuantLayer& q : space::quant_layers(spec)) {
    if (fixed_at_8_bits(q)) {
      a.layers.push_back({8, 8});
      continue;
    }
    const int w = rng.pick(choices);
    a.layers.push_back({w, rng.pick(choices)});
  }
  return a;
}

QfaSpace::QfaSpace(const space::SearchSpace& space, std::vector<int> choices)
    : space_(space),
      choices_(check_elastic_bits(std::move(choices), "QFA bit choices")),
      keys_(bit_gene_keys(space)) {}

int QfaSpace::gene_index(const std::string& key) const {
  const auto it = std::lower_bound(keys_.begin(), keys_.end(), key);
  if (it == keys_.end() || *it != key) fail("internal: layer slot {} is not a gene of the space", key);
  return static_cast<int>(it - keys_.begin());
}

QfaGenome QfaSpace::random(Rng& rng) const {
  QfaGenome g;
  g.subnet = space::sample_random(space_, rng);
  for (size_t i = 0; i < keys_.size(); ++i) {
    const int w = rng.pick(choices_);
    g.genes.push_back({w, rng.pick(choices_)});
  }
  return g;
}

QfaGenome QfaSpace::mutate(const QfaGenome& parent, double probability, Rng& rng) const {
  QfaGenome g;
  g.subnet = search::mutate(parent.subnet, space_, probability, rng);
  g.genes = parent.genes;
  for (LayerBits& b : g.genes) {
    if (rng.uniform() < probability) b.weight = rng.pick(choices_);
    if (rng.uniform() < probability) b.activation = rng.pick(choices_);
  }
  return g;
}

QfaGenome QfaSpace::crossover(const QfaGenome& a, const QfaGenome& b, Rng& rng) const {
  QfaGenome g;
  g.subnet = search::crossover(a.subnet, b.subnet, space_, rng);
  for (size_t i = 0; i < keys_.size(); ++i) g.genes.push_back(rng.uniform() < 0.5 ? a.genes[i] : b.genes[i]);
  return g;
}

BitAssignment QfaSpace::assignment(const QfaGenome& g) const {
  const ArchSpec spec = space::build_arch_spec(space_, g.subnet);
  BitAssignment a;
  a.subnet = spec.subnet;
  for (const QuantLayer& q : space::quant_layers(spec)) {
    a.layers.push_back(fixed_at_8_bits(q)
                           ? LayerBits{8, 8}
                           : g.genes.at(static_cast<size_t>(gene_index(bit_gene_key(spec, q)))));
  }
  return a;
}

QfaGenome QfaSpace::genome_of(const space::Subnet& subnet, const BitAssignment& bits) const {
  const ArchSpec spec = space::build_arch_spec(space_, subnet);
  bits.validate(spec);
  QfaGenome g{subnet, std::vector<LayerBits>(keys_.size(), LayerBits{choices_.back(), choices_.back()})};
  const auto layers = space::quant_layers(spec);
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!fixed_at_8_bits(layers[i]))
      g.genes[static_cast<size_t>(gene_index(bit_gene_key(spec, layers[i])))] = bits.layers[i];
  }
  return g;
}

namespace {

char bit_digit(int bits) {
  return bits == space::kFloatBits ? 'f' : static_cast<char>('0' + bits);
}

int digit_bits(char c, const std::string& key) {
  if (c == 'f') return space::kFloatBits;
  if (c < '2' || c > '8') fail("QFA network key '{}': '{}' is not a bit-width digit", key, c);
  return c - '0';
}

}  // namespace

std::string QfaSpace::key(const QfaGenome& g) const {
  std::string digits;
  for (const LayerBits& b : assignment(g).layers) {
    digits += bit_digit(b.weight);
    digits += bit_digit(b.activation);
  }
  return g.subnet.encode() + ":" + digits;
}

QfaGenome QfaSpace::parse_key(const std::string& key) const {
  const auto colon = key.find(':');
  if (colon == std::string::npos)
    fail("QFA network key '{}' has no ':' between the subnet and its bits", key);
  const space::Subnet subnet = space::Subnet::parse(key.substr(0, colon));
  space::validate(subnet, space_);
  const std::string digits = key.substr(colon + 1);
  const ArchSpec spec = space::build_arch_spec(space_, subnet);
  BitAssignment a;
  a.subnet = spec.subnet;
  if (digits.size() != 2 * space::quant_layers(spec).size())
    fail("QFA network key '{}': {} bit digits for {} layers (two per layer)", key, digits.size(),
         space::quant_layers(spec).size());
  for (size_t i = 0; i < digits.size(); i += 2)
    a.layers.push_back({digit_bits(digits[i], key), digit_bits(digits[i + 1], key)});
  return genome_of(subnet, a);
}

std::vector<double> QfaSpace::features(const QfaGenome& g) const {
  std::vector<double> f = one_hot(g.subnet, space_);
  const size_t base = f.size(), width = 2 * choices_.size();
  f.resize(base + keys_.size() * width, 0.0);
  const ArchSpec spec = space::build_arch_spec(space_, g.subnet);
  const BitAssignment a = assignment(g);
  const auto layers = space::quant_layers(spec);
  for (size_t i = 0; i < layers.size(); ++i) {
    if (fixed_at_8_bits(layers[i])) continue;
    const size_t at = base + static_cast<size_t>(gene_index(bit_gene_key(spec, layers[i]))) * width;
    for (size_t c = 0; c < choices_.size(); ++c) {
      f[at + c] = a.layers[i].weight == choices_[c] ? 1.0 : 0.0;
      f[at + choices_.size() + c] = a.layers[i].activation == choices_[c] ? 1.0 : 0.0;
    }
  }
  return f;
}

}  // namespace qnas::search
