#pragma once
// Drawing subnets from a search space: uniformly at random (depth, then k/w/e per block, then resolution),
// and the largest / smallest subnet, as the sandwich rule needs.
#include "core/rng.h"
#include "space/subnet.h"

namespace qnas::space {

Subnet sample_random(const SearchSpace& space, Rng& rng);
Subnet max_subnet(const SearchSpace& space);
Subnet min_subnet(const SearchSpace& space);

}  // namespace qnas::space
