#include "search/block_lut.h"

#include <fstream>

#include <gtest/gtest.h>

#include "core/error.h"
#include "lut_fixture.h"
#include "test_util.h"

using namespace qnas::search;
namespace fs = std::filesystem;

using qnas::testing::error_message;

namespace {
const qnas::space::Hyperspace& fmnistw() {
  return qnas::space::find_hyperspace("fmnistw");
}
}  // namespace

TEST(BlockLut, ParsesTheOfficialRowFormat) {
  const LutRow row =
      BlockLutSet::parse_row("3#48#None_5#32#6.0,1x32x80x80,0.3918,19.5072,0.0130,0.9899\r", "f:1");
  EXPECT_EQ(row.choice, "3#48#None_5#32#6.0");
  EXPECT_EQ(row.cin, 32);
  EXPECT_EQ(row.hw, 80);
  EXPECT_FLOAT_EQ(row.loss, 0.3918f);
  EXPECT_FLOAT_EQ(row.mflops, 19.5072f);
  EXPECT_FLOAT_EQ(row.latency_ms, 0.9899f);
}

TEST(BlockLut, MalformedRowsNameFileAndLine) {
  // Found by fuzz/fuzz_block_lut_row: a channel count of 1e27 overflowed the conversion to int (UBSan).
  EXPECT_NE(error_message([] {
              BlockLutSet::parse_row("3#48#None,1x3177777777777777777777777777x80x80,0.39,19.5,0.01,0.98",
                                     "x.csv:3");
            }).find("x.csv:3: C '3177777777777777777777777777' is not a whole number from 1 to 1000000"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              BlockLutSet::parse_row("3#48#None,1x32x80.5x80,0.39,19.5,0.01,0.98", "x.csv:4");
            }).find("H '80.5' is not a whole number"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              BlockLutSet::parse_row("3#48#None,1x32x80x80,0.39,19.5", "x.csv:7");
            }).find("x.csv:7: expected 6 comma-separated columns"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              BlockLutSet::parse_row("3#48#None,1x32x80x80,abc,19.5,0.01,0.98", "x.csv:2");
            }).find("column nsr_loss is 'abc'"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              BlockLutSet::parse_row("3-48,1x32x80x80,0.3,19.5,0.01,0.98", "x.csv:2");
            }).find("malformed sub-stage choice"),
            std::string::npos);
}

TEST(BlockLut, LoadsADirectoryAndMapsInputSizesToResolutions) {
  const fs::path dir = qnas::testing::write_fmnistw_luts("load", [](int stage, int block, int window) {
    return std::vector<std::string>{std::to_string(stage) + "." + std::to_string(block) + ",1,0.1," +
                                    std::to_string(window + 1)};
  });
  const BlockLutSet luts = BlockLutSet::load(dir, fmnistw());
  EXPECT_EQ(luts.resolutions(), std::vector<int>{28});
  EXPECT_EQ(luts.num_files(), 150u);
  const LutTable& table = luts.table(3, 4, 2, 28);
  ASSERT_EQ(table.size(), 1u);
  EXPECT_FLOAT_EQ(table.loss[0], 3.4f);
  EXPECT_FLOAT_EQ(table.latency_ms[0], 3.0f);
  EXPECT_NE(error_message([&] { luts.table(3, 4, 2, 24); }).find("no rows at resolution 24"),
            std::string::npos);
}

TEST(BlockLut, BadDirectoriesAndSizesAreClearErrors) {
  EXPECT_NE(error_message([] {
              BlockLutSet::load("/nonexistent/lut", fmnistw());
            }).find("not found: /nonexistent/lut"),
            std::string::npos);
  const fs::path empty = fs::temp_directory_path() / "qnas_test_lut_empty";
  fs::remove_all(empty);
  fs::create_directories(empty);
  EXPECT_NE(error_message([&] { BlockLutSet::load(empty, fmnistw()); }).find("no block LUT files"),
            std::string::npos);

  const fs::path dir = qnas::testing::write_fmnistw_luts(
      "badsize", [](int, int, int) { return std::vector<std::string>{"0.5,1,0.1,2"}; });
  std::ofstream(dir / "stage2_0_0.csv") << "3#32#None,1x16x13x13,0.5,1,0.1,2\n";
  const std::string message = error_message([&] { BlockLutSet::load(dir, fmnistw()); });
  EXPECT_NE(message.find("stage2_0_0.csv:1: input size 13 matches none"), std::string::npos) << message;

  std::ofstream(dir / "stage2_0_0.csv") << "3#32#None,1x16x14x14,0.5,1,0.1,2\n";
  std::ofstream(dir / "stage2_9_0.csv") << "3#32#None,1x16x14x14,0.5,1,0.1,2\n";
  EXPECT_NE(error_message([&] { BlockLutSet::load(dir, fmnistw()); }).find("right --hyperspace"),
            std::string::npos);
}

TEST(BlockLut, OfficialOnnxwLutsLoad) {
  const fs::path dir = fs::path(QNAS_SHARED_DATA_DIR) / "spaceevo-lut" / "onnxw";
  if (!fs::exists(dir)) GTEST_SKIP() << "shared data absent: " << dir;
  const BlockLutSet luts = BlockLutSet::load(dir, qnas::space::find_hyperspace("onnxw"));
  EXPECT_EQ(luts.resolutions(), (std::vector<int>{160, 192, 224}));
  EXPECT_EQ(luts.num_files(), 132u);
  EXPECT_EQ(luts.num_rows(), 132000u);
}
