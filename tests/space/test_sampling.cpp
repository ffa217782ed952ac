#include "space/sampling.h"

#include <cmath>
#include <set>

#include <gtest/gtest.h>

#include "space/arch_spec.h"
#include "space/published.h"

using namespace qnas::space;

TEST(Sampling, RandomSubnetsAreValidAndDeterministic) {
  for (const std::string encoding :
       {"onnxw-151122-023231", "mobilew-122222-155400", "fmnistw-000000-000000", "fmnistw-543210-101212"}) {
    const SearchSpace space = SearchSpace::parse(encoding);
    qnas::Rng a(7), b(7), c(8);
    std::set<std::string> seen;
    for (int i = 0; i < 200; ++i) {
      const Subnet subnet = sample_random(space, a);
      EXPECT_TRUE(is_valid(subnet, space)) << subnet.encode();
      EXPECT_EQ(subnet.encode(), sample_random(space, b).encode());
      EXPECT_EQ(Subnet::parse(subnet.encode()), subnet);
      seen.insert(subnet.encode());
    }
    EXPECT_GT(seen.size(), 190u) << encoding;
    EXPECT_NE(sample_random(space, a).encode(), sample_random(space, c).encode());
  }
}

TEST(Sampling, MaxAndMinBoundEveryRandomSubnet) {
  const SearchSpace space = SearchSpace::parse("onnxw-151122-023231");
  const std::int64_t max_macs = build_arch_spec(space, max_subnet(space)).macs();
  const std::int64_t min_macs = build_arch_spec(space, min_subnet(space)).macs();
  EXPECT_LT(min_macs, max_macs);
  qnas::Rng rng(1);
  for (int i = 0; i < 100; ++i) {
    const std::int64_t macs = build_arch_spec(space, sample_random(space, rng)).macs();
    EXPECT_LE(min_macs, macs);
    EXPECT_LE(macs, max_macs);
  }
  const Subnet max = max_subnet(space);
  EXPECT_EQ(max.resolution, 224);
  EXPECT_EQ(max.stages[7].size(), 2u);
  EXPECT_EQ(max.stages[7][0].width, 416);  // stage6 window 1 = 320..416
}

TEST(Sampling, NumberOfSubnetsCountsEveryChoice) {
  const SearchSpace space = SearchSpace::parse("fmnistw-000000-000000");
  // Hand count: resolutions 3; first_conv: 1 kernel x 2 widths; stage0: ResNet k3 e0.5, 2 widths, depth 1..2;
  // stage1..6: MobileNetV1Dual, 2 kernels x window widths, depths as defined.
  const double stem = 2, stage0 = 2 + 4;
  auto stage = [](double per_block, std::vector<int> depths) {
    double total = 0;
    for (int d : depths) total += std::pow(per_block, d);
    return total;
  };
  const double expected = 3 * stem * stage0 * stage(4, {1, 2, 3}) * stage(4, {1, 2, 3}) *
                          stage(6, {2, 3, 4}) * stage(6, {2, 3, 4}) * stage(10, {2, 3, 4}) *
                          stage(14, {1, 2});
  EXPECT_DOUBLE_EQ(space.num_subnets(), expected);
}

TEST(Sampling, FmnistwSubnetsEndAtFourByFour) {
  const SearchSpace space = SearchSpace::parse("fmnistw-111111-000000");
  const ArchSpec spec = build_arch_spec(space, max_subnet(space));
  EXPECT_EQ(spec.blocks[spec.blocks.size() - 4].out_hw, 4);
  EXPECT_EQ(spec.blocks.back().cout, 10);
  EXPECT_EQ(spec.in_channels, 1);
}
