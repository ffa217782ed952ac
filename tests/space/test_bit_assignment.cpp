// Mixed-precision costs counted from an ArchSpec: BitOPs, bit complexity / compression ratio and model size
// of hand-made networks against hand arithmetic, and the assignment's JSON round trip and its errors.
#include <gtest/gtest.h>

#include "core/error.h"
#include "space/bit_assignment.h"
#include "space/sampling.h"
#include "space/search_space.h"

namespace qnas::space {
namespace {

// conv 3->8 k3 at 8x8 (no BN), depthwise 8 k3, SE on 8 (mid 4), linear 8->10; one projection 3->8 on block 0.
ArchSpec hand_made() {
  ArchSpec a;
  a.subnet = "hand-made";
  a.space = "none";
  a.resolution = 8;
  a.in_channels = 3;
  a.num_classes = 10;
  BlockSpec b0;
  b0.layers.push_back(make_conv(3, 8, 3, 1, 8, Activation::kRelu));
  b0.layers.back().batch_norm = false;
  b0.projection = make_conv(3, 8, 1, 1, 8, Activation::kNone);
  BlockSpec b1;
  b1.layers.push_back(make_depthwise(8, 3, 1, 8, Activation::kRelu));
  b1.layers.push_back(make_squeeze_excite(8, 4, 8));
  b1.layers.push_back(make_global_pool(8, 8));
  BlockSpec b2;
  b2.layers.push_back(make_linear(8, 10));
  a.blocks = {b0, b1, b2};
  return a;
}

TEST(BitAssignment, QuantLayersFollowTheStaticNetworkOrder) {
  const auto ql = quant_layers(hand_made());
  ASSERT_EQ(ql.size(), 6u);
  EXPECT_EQ(ql[0].name, "block0.layer0");
  EXPECT_EQ(ql[1].name, "block0.projection");
  EXPECT_EQ(ql[2].name, "block1.layer0");
  EXPECT_EQ(ql[3].name, "block1.layer1.se_reduce");
  EXPECT_EQ(ql[4].name, "block1.layer1.se_expand");
  EXPECT_EQ(ql[5].name, "block2.layer0");
  EXPECT_EQ(ql[0].macs, 3 * 8 * 9 * 64);
  EXPECT_EQ(ql[1].macs, 3 * 8 * 64);
  EXPECT_EQ(ql[2].macs, 8 * 9 * 64);
  EXPECT_EQ(ql[3].macs, 8 * 4);
  EXPECT_EQ(ql[4].macs, 8 * 4);
  EXPECT_EQ(ql[5].macs, 80);
  EXPECT_EQ(ql[2].weights, 72);
  EXPECT_TRUE(ql[5].classifier);
  std::int64_t macs = 0;
  for (const auto& l : ql) macs += l.macs;
  EXPECT_EQ(macs, hand_made().macs()) << "every MAC of the network belongs to one quantised layer";
}

TEST(BitAssignment, BitOpsComplexityAndSizeOfAHandMadeNet) {
  const ArchSpec a = hand_made();
  BitAssignment bits = BitAssignment::uniform(a, 8, 8);
  const double macs = static_cast<double>(a.macs());
  EXPECT_DOUBLE_EQ(bitops(a, bits), macs);  // INT8 everywhere: BitOPs = MACs
  EXPECT_DOUBLE_EQ(compression_ratio(a, bits), 1.0);
  // FP32 counts as 8 bits in BitOPs (QFA's min(b, 8)).
  EXPECT_DOUBLE_EQ(bitops(a, BitAssignment::uniform(a, 32, 32)), macs);
  // 4-bit weights on the first conv, 2-bit inputs on the depthwise.
  bits.layers[0] = {4, 8};
  bits.layers[2] = {8, 2};
  const double c0 = 3 * 8 * 9 * 64, c2 = 8 * 9 * 64;
  EXPECT_DOUBLE_EQ(bitops(a, bits), macs - c0 - c2 + c0 * 4 * 8 / 64 + c2 * 8 * 2 / 64);
  // NNCF's complexity takes max(b_w, b_a): neither layer got cheaper.
  EXPECT_DOUBLE_EQ(compression_ratio(a, bits), 1.0);
  bits.layers[0] = {4, 4};
  EXPECT_DOUBLE_EQ(compression_ratio(a, bits), macs * 8 / (macs * 8 - c0 * 4));
  // Size: weights at their bits, BN (2 x 8 on the projection, 2 x 8 on the depthwise), SE and linear biases
  // at 32.
  const std::int64_t weights = 216 + 24 + 72 + 32 + 32 + 80;
  const std::int64_t other = a.params() - weights;
  EXPECT_EQ(other, 16 + 16 + 4 + 8 + 10);
  EXPECT_EQ(fp32_size_bits(a), a.params() * 32);
  EXPECT_EQ(model_size_bits(a, BitAssignment::uniform(a, 8, 8)), weights * 8 + other * 32);
  EXPECT_EQ(model_size_bits(a, bits), (weights - 216) * 8 + 216 * 4 + other * 32);
}

TEST(BitAssignment, JsonRoundTripAndErrorsNameTheProblem) {
  const auto space = SearchSpace::parse("fmnistw-151122-000000");
  const ArchSpec a = build_arch_spec(space, min_subnet(space));
  BitAssignment bits = BitAssignment::uniform(a, 8, 8);
  bits.layers[3] = {2, 4};
  bits.layers[5] = {32, 32};
  const auto j = bits.to_json(a);
  const BitAssignment back = BitAssignment::from_json(j, a, "bits.json");
  EXPECT_EQ(back.layers, bits.layers);
  EXPECT_EQ(j.at("bitops").get<double>(), bitops(a, bits));

  auto bad = j;
  bad["layers"][3]["weight_bits"] = 5;
  try {
    BitAssignment::from_json(bad, a, "bits.json");
    FAIL() << "5 bits accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("5 bits is not a supported bit-width"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find(j["layers"][3]["name"].get<std::string>()), std::string::npos);
  }
  const ArchSpec other = build_arch_spec(space, max_subnet(space));
  EXPECT_THROW(BitAssignment::from_json(j, other, "bits.json"), Error);
  EXPECT_THROW(BitAssignment::from_json(nlohmann::json{{"layers", 1}}, a, "bits.json"), Error);
  EXPECT_THROW(BitAssignment::uniform(a, 6, 8), Error);
}

// Found by fuzz/fuzz_bit_assignment: a field of the wrong JSON type threw nlohmann's type_error past the
// caller's qnas::Error handling (an abort in the CLI's place of one clear message).
TEST(BitAssignment, FieldsOfTheWrongJsonTypeAreOneClearError) {
  const auto space = SearchSpace::parse("fmnistw-151122-000000");
  const ArchSpec a = build_arch_spec(space, min_subnet(space));
  const auto good = BitAssignment::uniform(a, 8, 8).to_json(a);
  auto format_array = good;
  format_array["format"] = nlohmann::json::array({1});
  auto layer_string = good;
  layer_string["layers"][0] = "block0.layer0";
  auto no_layers = good;
  no_layers.erase("layers");
  auto name_number = good;
  name_number["layers"][2]["name"] = 7;
  for (const auto& j : {format_array, layer_string, no_layers, name_number}) {
    try {
      BitAssignment::from_json(j, a, "bits.json");
      FAIL() << "accepted " << j.dump();
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("bits.json ", 0), 0u) << e.what();
    }
  }
}

}  // namespace
}  // namespace qnas::space
