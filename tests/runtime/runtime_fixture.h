#pragma once
// Small networks and inputs shared by the runtime tests: every hyperspace family at a low resolution, so
// the plain reference executor stays fast.
#include <string>
#include <vector>

#include "core/rng.h"
#include "runtime/program.h"
#include "space/arch_spec.h"
#include "space/published.h"
#include "space/sampling.h"

namespace qnas::testing {

inline space::ArchSpec random_arch(const std::string& space_encoding, std::uint64_t seed, int resolution) {
  const auto space = space::SearchSpace::parse(space_encoding);
  Rng rng(seed);
  return space::build_arch_spec(space, space::sample_random(space, rng), resolution);
}

inline std::vector<float> random_image(int channels, int hw, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<float> image(static_cast<size_t>(channels) * hw * hw);
  for (auto& x : image) x = static_cast<float>(rng.uniform() * 4.0 - 2.0);
  return image;
}

inline std::vector<std::vector<float>> random_images(const runtime::Program& p, int count,
                                                     std::uint64_t seed) {
  std::vector<std::vector<float>> images;
  for (int i = 0; i < count; ++i) images.push_back(random_image(p.in_channels, p.resolution, seed + i));
  return images;
}

}  // namespace qnas::testing
