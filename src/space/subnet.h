#pragma once
// A Subnet is one architecture inside a SearchSpace: a depth per subnet stage (first_conv, stage0..6),
// then kernel, width and expand ratio per block, and the input resolution. Encoded as the official
// SubnetChoiceConfig does: "d1#1#2..._k3#3..._w16#16..._e0#0.5#4.0..._r160" (e0 = no expand ratio).
#include <string>
#include <vector>

#include "space/search_space.h"

namespace qnas::space {

struct BlockChoice {
  int kernel = 0;
  int width = 0;
  double expand = 0.0;  // 0 = the block type has no expand ratio
  bool operator==(const BlockChoice& o) const {
    return kernel == o.kernel && width == o.width && expand == o.expand;
  }
};

struct Subnet {
  std::vector<std::vector<BlockChoice>> stages;  // one list of blocks per subnet stage
  int resolution = 0;

  // Throws qnas::Error naming the field and position when the string is malformed.
  static Subnet parse(const std::string& encoding);
  std::string encode() const;
  int num_blocks() const;
  bool operator==(const Subnet& o) const { return stages == o.stages && resolution == o.resolution; }
};

// Throws qnas::Error naming the stage, block and field that the space does not allow.
void validate(const Subnet& subnet, const SearchSpace& space);
bool is_valid(const Subnet& subnet, const SearchSpace& space);

// Formats an expand ratio as Python's str(float(e)) does ("4.0", "0.5", "1.5"), and 0 as "0".
std::string format_expand(double expand);

}  // namespace qnas::space
