#include "space/sampling.h"

#include <algorithm>

namespace qnas::space {
namespace {

double pick_expand(const BlockType& type, Rng& rng) {
  return type.has_expand() ? rng.pick(type.expands) : 0.0;
}

enum class Extreme { kMax, kMin };

template <typename T>
T extreme_of(const std::vector<T>& values, Extreme which) {
  return which == Extreme::kMax ? *std::max_element(values.begin(), values.end())
                                : *std::min_element(values.begin(), values.end());
}

Subnet extreme_subnet(const SearchSpace& space, Extreme which) {
  Subnet subnet;
  for (int s = 0; s < space.num_subnet_stages(); ++s) {
    const StageChoices& st = space.stage(s);
    const BlockChoice block{extreme_of(st.block->kernels, which), extreme_of(st.widths, which),
                            st.block->has_expand() ? extreme_of(st.block->expands, which) : 0.0};
    subnet.stages.emplace_back(extreme_of(st.def->depths, which), block);
  }
  subnet.resolution = extreme_of(space.hyperspace().resolutions, which);
  return subnet;
}

}  // namespace

Subnet sample_random(const SearchSpace& space, Rng& rng) {
  Subnet subnet;
  for (int s = 0; s < space.num_subnet_stages(); ++s) {
    const StageChoices& st = space.stage(s);
    const int depth = rng.pick(st.def->depths);
    std::vector<BlockChoice> blocks;
    for (int b = 0; b < depth; ++b) {
      BlockChoice choice;
      choice.kernel = rng.pick(st.block->kernels);
      choice.width = rng.pick(st.widths);
      choice.expand = pick_expand(*st.block, rng);
      blocks.push_back(choice);
    }
    subnet.stages.push_back(std::move(blocks));
  }
  subnet.resolution = rng.pick(space.hyperspace().resolutions);
  return subnet;
}

Subnet max_subnet(const SearchSpace& space) {
  return extreme_subnet(space, Extreme::kMax);
}
Subnet min_subnet(const SearchSpace& space) {
  return extreme_subnet(space, Extreme::kMin);
}

}  // namespace qnas::space
