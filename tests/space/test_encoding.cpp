#include <filesystem>
#include <string>

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "core/error.h"
#include "space/published.h"
#include "space/search_space.h"
#include "space/subnet.h"
#include "test_util.h"

using namespace qnas::space;
namespace fs = std::filesystem;

using qnas::testing::error_message;

namespace {

void expect_round_trip(const std::string& space_text, const std::string& subnet_text) {
  const SearchSpace space = SearchSpace::parse(space_text);
  EXPECT_EQ(space.encode(), space_text);
  const Subnet subnet = Subnet::parse(subnet_text);
  EXPECT_EQ(subnet.encode(), subnet_text);
  EXPECT_NO_THROW(validate(subnet, space)) << subnet_text;
}

}  // namespace

TEST(Encoding, BuiltInPublishedModelsRoundTrip) {
  ASSERT_EQ(published_spaces().size(), 5u);
  ASSERT_EQ(published_subnets().size(), 10u);
  for (const auto& space : published_spaces())
    EXPECT_EQ(SearchSpace::parse(space.encoding).encode(), space.encoding);
  for (const auto& subnet : published_subnets()) {
    expect_round_trip(find_published_space(subnet.space_name).encoding, subnet.encoding);
  }
}

TEST(Encoding, OfficialSearchResultYamlRoundTrips) {
  const fs::path path = fs::path(QNAS_SHARED_DATA_DIR) / "spaceevo-lut" / "search_result.yaml";
  if (!fs::exists(path))
    GTEST_SKIP() << "shared data absent: " << path << " (tests of the official files skip)";
  const YAML::Node root = YAML::LoadFile(path.string());
  std::map<std::string, std::string> spaces;
  for (const auto& entry : root["specific_supernet_encoding_dict"]) {
    spaces[entry.first.as<std::string>()] = entry.second.as<std::string>();
    EXPECT_EQ(SearchSpace::parse(entry.second.as<std::string>()).encode(), entry.second.as<std::string>());
  }
  EXPECT_EQ(spaces.size(), 5u);
  int subnets = 0;
  for (const auto& entry : root["specific_subnet_encoding_dict"]) {
    const std::string space_name = entry.second[0].as<std::string>();
    const std::string text = entry.second[1].as<std::string>();
    expect_round_trip(spaces.at(space_name), text);
    // The built-in copy must be the same text.
    EXPECT_EQ(find_published_subnet(entry.first.as<std::string>()).encoding, text);
    ++subnets;
  }
  EXPECT_EQ(subnets, 10);
}

TEST(Encoding, ExpandRatiosPrintLikePython) {
  EXPECT_EQ(format_expand(0), "0");
  EXPECT_EQ(format_expand(4), "4.0");
  EXPECT_EQ(format_expand(0.5), "0.5");
  EXPECT_EQ(format_expand(1.5), "1.5");
  EXPECT_EQ(format_expand(0.1), "0.1");
}

TEST(Encoding, MalformedSpaceNamesTheField) {
  EXPECT_NE(error_message([] { SearchSpace::parse("onnxw-151122"); }).find("<hyperspace>-<block digits>"),
            std::string::npos);
  EXPECT_NE(error_message([] { SearchSpace::parse("onnxw-15112-023231"); }).find("block field"),
            std::string::npos);
  const std::string digit = error_message([] { SearchSpace::parse("onnxw-151122-02x231"); });
  EXPECT_NE(digit.find("window field has 'x' for stage3"), std::string::npos) << digit;
  const std::string block = error_message([] { SearchSpace::parse("onnxw-151192-023231"); });
  EXPECT_NE(block.find("block type 9 for stage5"), std::string::npos) << block;
  const std::string window = error_message([] { SearchSpace::parse("onnxw-151122-023291"); });
  EXPECT_NE(window.find("width window 9 for stage5"), std::string::npos) << window;
  EXPECT_NE(error_message([] { SearchSpace::parse("onnx-151122-023231"); }).find("unknown hyperspace 'onnx'"),
            std::string::npos);
}

TEST(Encoding, MalformedSubnetNamesTheField) {
  const std::string a0 = find_published_subnet("SEQnet@vnni-A0").encoding;
  EXPECT_NE(error_message([] { Subnet::parse("d1#1_k3#3_w16#16_e0#0.5"); }).find("expected 5 fields"),
            std::string::npos);
  const std::string count = error_message([] { Subnet::parse("d1#2_k3#3_w16#16_e0#0.5_r160"); });
  EXPECT_NE(count.find("add up to 3 blocks but the kernels ('k' field) list has 2"), std::string::npos)
      << count;
  const std::string number = error_message([] { Subnet::parse("d1#1_k3#x_w16#16_e0#0.5_r160"); });
  EXPECT_NE(number.find("kernels ('k' field) entry 2 is 'x'"), std::string::npos) << number;
  EXPECT_NE(error_message([] { Subnet::parse("d1#1_k3#3_w16#16_e0#0.5_160"); }).find("resolution field"),
            std::string::npos);
  EXPECT_NE(error_message([] { Subnet::parse("d1#1_q3#3_w16#16_e0#0.5_r160"); }).find("start with 'k'"),
            std::string::npos);
}

TEST(Encoding, OutOfSpaceSubnetNamesStageAndField) {
  const SearchSpace vnni = SearchSpace::parse("onnxw-151122-023231");
  const Subnet a0 = Subnet::parse(find_published_subnet("SEQnet@vnni-A0").encoding);

  Subnet wide = a0;
  wide.stages[4][1].width = 80;  // stage3's window 3 is {112, 128, 144}
  const std::string width = error_message([&] { validate(wide, vnni); });
  EXPECT_NE(width.find("stage3 block 1 has width 80, window 3 allows {112, 128, 144}"), std::string::npos)
      << width;

  Subnet kernel = a0;
  kernel.stages[2][0].kernel = 7;  // stage1 is MobileNetV2ResBlock with k3/5
  const std::string k = error_message([&] { validate(kernel, vnni); });
  EXPECT_NE(k.find("stage1 block 0 has kernel 7, MobileNetV2ResBlock allows {3, 5}"), std::string::npos) << k;

  Subnet expand = a0;
  expand.stages[0][0].expand = 2.0;  // first_conv has no expand ratio
  EXPECT_NE(error_message([&] { validate(expand, vnni); }).find("first_conv block 0 has expand ratio 2.0"),
            std::string::npos);

  Subnet deep = a0;
  deep.stages[7].resize(3, deep.stages[7][0]);
  EXPECT_NE(error_message([&] { validate(deep, vnni); }).find("stage6 has depth 3, allowed {1, 2}"),
            std::string::npos);

  Subnet res = a0;
  res.resolution = 150;
  EXPECT_NE(
      error_message([&] { validate(res, vnni); }).find("resolution 150 not in {160, 176, 192, 208, 224}"),
      std::string::npos);

  Subnet stages = a0;
  stages.stages.pop_back();
  EXPECT_NE(error_message([&] { validate(stages, vnni); }).find("has 7 stages"), std::string::npos);
}
