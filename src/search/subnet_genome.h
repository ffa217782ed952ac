#pragma once
// Genetic operators over the subnets of one search space, as OFA's and AttentiveNAS's evolution use them:
// a gene is a stage's depth, a block's kernel / width / expand ratio, or the input resolution. Every
// operator returns a subnet the space allows (space::validate passes), whatever its inputs were, as long
// as those were valid.
#include <functional>

#include "core/rng.h"
#include "space/subnet.h"

namespace qnas::search {

// Each gene is redrawn with `probability` (a new depth keeps the blocks it shares with the parent and draws
// the ones it adds).
space::Subnet mutate(const space::Subnet& parent, const space::SearchSpace& space, double probability,
                     Rng& rng);

// Uniform crossover: each stage's depth from either parent, then each gene of each block from a parent that
// has that block (either when both do), the resolution from either.
space::Subnet crossover(const space::Subnet& a, const space::Subnet& b, const space::SearchSpace& space,
                        Rng& rng);

// One step smaller: a random gene that is not at its smallest choice moves to the next smaller one (a depth
// drops its last block). Returns false when the subnet is the space's smallest already.
bool shrink(space::Subnet& subnet, const space::SearchSpace& space, Rng& rng);

// Makes `subnet` fit `fits` by shrinking it gene by gene; false when even the smallest subnet does not fit.
bool repair(space::Subnet& subnet, const space::SearchSpace& space, Rng& rng,
            const std::function<bool(const space::Subnet&)>& fits);

}  // namespace qnas::search
