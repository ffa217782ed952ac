#pragma once
// QFA's search space: a subnet together with a bit-width for each quantised layer's weights and for the
// tensor it reads, chosen apart from a small set (QFA: {2, 3, 4}). The stem conv and the classifier stay at
// 8 bits (QFA keeps the first layer in FP32 and the classifier at >= 8 bits; our INT8 engine runs the stem
// in INT8, so 8 is the deployable choice).
//
// A genome holds one gene (weight bits, activation bits) per layer *slot* of the space: a key naming the
// stage, the block index and the layer within the block ("s2.1.layer0", "s2.1.projection"). A subnet uses
// the genes of the slots it has; the others ride along, so mutation and crossover of the architecture never
// invalidate the bits. Torch-free.
#include <string>
#include <vector>

#include "core/rng.h"
#include "space/bit_assignment.h"
#include "space/subnet.h"

namespace qnas::search {

// The gene key of quantised layer `q` of `spec`.
std::string bit_gene_key(const space::ArchSpec& spec, const space::QuantLayer& q);
// Every gene key of the space (the largest subnet's layers and every block's projection), sorted.
std::vector<std::string> bit_gene_keys(const space::SearchSpace& space);

// Validates elastic bit choices (each 2, 3, 4 or 8; at least one; no repeats) and returns them ascending.
std::vector<int> check_elastic_bits(std::vector<int> bits, const std::string& where);

// Layers QFA never lowers: the stem conv and the classifier (8 bits for weights and input).
bool fixed_at_8_bits(const space::QuantLayer& q);

// Uniform `bits` on every layer but the fixed ones.
space::BitAssignment qfa_uniform(const space::ArchSpec& spec, int bits);
// Weight and activation bits of each layer drawn apart from `choices` (the fixed layers at 8).
space::BitAssignment qfa_random(const space::ArchSpec& spec, const std::vector<int>& choices, Rng& rng);

struct QfaGenome {
  space::Subnet subnet;
  std::vector<space::LayerBits> genes;  // by bit_gene_keys order
};

class QfaSpace {
 public:
  QfaSpace(const space::SearchSpace& space, std::vector<int> choices);

  const space::SearchSpace& space() const { return space_; }
  const std::vector<int>& choices() const { return choices_; }
  const std::vector<std::string>& keys() const { return keys_; }

  QfaGenome random(Rng& rng) const;
  // Each architecture gene and each bit-width redrawn with `probability`.
  QfaGenome mutate(const QfaGenome& parent, double probability, Rng& rng) const;
  // Uniform crossover of the architecture (search/subnet_genome.h) and of each bit gene.
  QfaGenome crossover(const QfaGenome& a, const QfaGenome& b, Rng& rng) const;

  // The bits of the genome's subnet (the fixed layers at 8).
  space::BitAssignment assignment(const QfaGenome& g) const;
  // The genome that gives `subnet` the bits of `bits` (genes of unused slots at the largest choice).
  QfaGenome genome_of(const space::Subnet& subnet, const space::BitAssignment& bits) const;
  // What identifies a genome's network: the subnet encoding, ':' and the two bit digits of each of its
  // layers (weight, input). Genomes that differ only in unused genes share it.
  std::string key(const QfaGenome& g) const;
  QfaGenome parse_key(const std::string& key) const;

  // The subnet's one-hot features (search/accuracy_predictor.h) followed by a one-hot of the weight and the
  // activation bits of every slot (all zero for a slot the subnet does not use).
  std::vector<double> features(const QfaGenome& g) const;

 private:
  int gene_index(const std::string& key) const;
  space::SearchSpace space_;
  std::vector<int> choices_;
  std::vector<std::string> keys_;
};

}  // namespace qnas::search
