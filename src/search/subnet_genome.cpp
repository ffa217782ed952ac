#include "search/subnet_genome.h"

#include <algorithm>
#include <optional>

namespace qnas::search {
namespace {

using space::BlockChoice;
using space::SearchSpace;
using space::StageChoices;
using space::Subnet;

BlockChoice random_block(const StageChoices& st, Rng& rng) {
  BlockChoice b;
  b.kernel = rng.pick(st.block->kernels);
  b.width = rng.pick(st.widths);
  b.expand = st.block->has_expand() ? rng.pick(st.block->expands) : 0.0;
  return b;
}

// The largest allowed value below `current`, if any (choice lists need not be sorted).
template <typename T>
std::optional<T> next_smaller(const std::vector<T>& allowed, T current) {
  std::optional<T> best;
  for (const T& v : allowed) {
    if (v < current && (!best || v > *best)) best = v;
  }
  return best;
}

bool coin(Rng& rng, double probability) {
  return rng.uniform() < probability;
}

}  // namespace

Subnet mutate(const Subnet& parent, const SearchSpace& space, double probability, Rng& rng) {
  Subnet child = parent;
  for (int s = 0; s < space.num_subnet_stages(); ++s) {
    const StageChoices& st = space.stage(s);
    auto& blocks = child.stages[static_cast<size_t>(s)];
    if (coin(rng, probability)) {
      const int depth = rng.pick(st.def->depths);
      while (static_cast<int>(blocks.size()) > depth) blocks.pop_back();
      while (static_cast<int>(blocks.size()) < depth) blocks.push_back(random_block(st, rng));
    }
    for (auto& b : blocks) {
      if (coin(rng, probability)) b.kernel = rng.pick(st.block->kernels);
      if (coin(rng, probability)) b.width = rng.pick(st.widths);
      if (st.block->has_expand() && coin(rng, probability)) b.expand = rng.pick(st.block->expands);
    }
  }
  if (coin(rng, probability)) child.resolution = rng.pick(space.hyperspace().resolutions);
  return child;
}

Subnet crossover(const Subnet& a, const Subnet& b, const SearchSpace& space, Rng& rng) {
  Subnet child;
  for (int s = 0; s < space.num_subnet_stages(); ++s) {
    const auto& ba = a.stages[static_cast<size_t>(s)];
    const auto& bb = b.stages[static_cast<size_t>(s)];
    const size_t depth = coin(rng, 0.5) ? ba.size() : bb.size();
    std::vector<BlockChoice> blocks;
    for (size_t i = 0; i < depth; ++i) {
      // A block only one parent has comes from that parent; a shared one takes each gene from either.
      const BlockChoice* x = i < ba.size() ? &ba[i] : &bb[i];
      const BlockChoice* y = i < bb.size() ? &bb[i] : &ba[i];
      BlockChoice c;
      c.kernel = coin(rng, 0.5) ? x->kernel : y->kernel;
      c.width = coin(rng, 0.5) ? x->width : y->width;
      c.expand = coin(rng, 0.5) ? x->expand : y->expand;
      blocks.push_back(c);
    }
    child.stages.push_back(std::move(blocks));
  }
  child.resolution = coin(rng, 0.5) ? a.resolution : b.resolution;
  return child;
}

bool shrink(Subnet& subnet, const SearchSpace& space, Rng& rng) {
  // Every gene that can still move down, as a closure that moves it.
  std::vector<std::function<void()>> moves;
  for (int s = 0; s < space.num_subnet_stages(); ++s) {
    const StageChoices& st = space.stage(s);
    auto& blocks = subnet.stages[static_cast<size_t>(s)];
    if (auto d = next_smaller(st.def->depths, static_cast<int>(blocks.size())))
      moves.push_back([&blocks, d] { blocks.resize(static_cast<size_t>(*d)); });
    for (auto& b : blocks) {
      if (auto k = next_smaller(st.block->kernels, b.kernel)) moves.push_back([&b, k] { b.kernel = *k; });
      if (auto w = next_smaller(st.widths, b.width)) moves.push_back([&b, w] { b.width = *w; });
      if (st.block->has_expand()) {
        if (auto e = next_smaller(st.block->expands, b.expand)) moves.push_back([&b, e] { b.expand = *e; });
      }
    }
  }
  if (auto r = next_smaller(space.hyperspace().resolutions, subnet.resolution))
    moves.push_back([&subnet, r] { subnet.resolution = *r; });
  if (moves.empty()) return false;
  moves[rng.below(moves.size())]();
  return true;
}

bool repair(Subnet& subnet, const SearchSpace& space, Rng& rng,
            const std::function<bool(const Subnet&)>& fits) {
  while (!fits(subnet)) {
    if (!shrink(subnet, space, rng)) return false;
  }
  return true;
}

}  // namespace qnas::search
