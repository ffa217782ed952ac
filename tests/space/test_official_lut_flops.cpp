// Checks our layer expansion against the official SpaceEvo block LUTs: every row of every official LUT
// file carries the FLOPs and params the official counter measured for that sub-stage, so reproducing them
// row by row pins down the block definitions (hidden widths, SE widths, shortcuts, K3 stacks).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>

#include "core/strings.h"
#include "space/arch_spec.h"

using namespace qnas::space;
using qnas::split;
namespace fs = std::filesystem;

namespace {

struct LutCheck {
  int rows = 0;
  int flops_mismatches = 0;
  int params_mismatches = 0;
  std::string first_flops_mismatch;
  std::string first_params_mismatch;
};

// The official LUTs count parameters of the LSQ+ model: every quantized conv or linear also learns a weight
// scale, an activation scale and an activation offset (official QBase: sw, sa, beta).
std::int64_t lsq_quantizer_params(const BlockSpec& block) {
  std::int64_t quantized_ops = block.projection ? 1 : 0;
  for (const auto& layer : block.layers) {
    if (layer.op == OpKind::kSqueezeExcite) quantized_ops += 2;
    if (layer.op == OpKind::kConv || layer.op == OpKind::kDepthwiseConv || layer.op == OpKind::kLinear) {
      ++quantized_ops;
    }
  }
  return 3 * quantized_ops;
}

void check_file(const Hyperspace& hs, const fs::path& path, LutCheck& result) {
  static const std::regex name_pattern(R"(stage(\d)_(\d)_(\d)\.csv)");
  std::smatch match;
  const std::string filename = path.filename().string();
  ASSERT_TRUE(std::regex_match(filename, match, name_pattern)) << filename;
  const int stage_number = std::stoi(match[1]);
  const BlockType& type = hs.candidates.at(std::stoi(match[2]));
  const StageDef& stage = hs.stages[hs.stage_index("stage" + std::to_string(stage_number))];

  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto cols = split(line, ',');
    ASSERT_EQ(cols.size(), 6u) << path << ": " << line;
    std::vector<BlockChoice> choices;
    for (const auto& kwe : split(cols[0], '_')) {
      const auto v = split(kwe, '#');
      choices.push_back({std::stoi(v[0]), std::stoi(v[1]), v[2] == "None" ? 0.0 : std::stod(v[2])});
    }
    const auto shape = split(cols[1], 'x');
    const int cin = std::stoi(shape[1]);
    const int hw = std::stoi(shape[2]);
    const auto blocks = build_stage(type, stage.name, 0, stage.stride, cin, hw, choices);
    std::int64_t macs = 0, params = 0;
    for (const auto& b : blocks) {
      macs += b.macs();
      params += b.params() + lsq_quantizer_params(b);
    }
    // The official counter sums per-module counts in float32 (torch.Tensor totals) and prints 4 decimals, so
    // a row agrees when it is within half the last printed digit plus half a float32 ulp per addition.
    int additions = 0;
    for (const auto& b : blocks) additions += 2 * static_cast<int>(b.layers.size() + 2);
    auto agrees = [additions](std::int64_t ours, const std::string& official) {
      const double value = std::stod(official) * 1e6;
      const double ulp = std::ldexp(1.0, std::ilogb(value) - 23);
      return std::abs(static_cast<double>(ours) - value) < 50.0 + additions * ulp / 2;
    };
    const bool flops_ok = agrees(macs, cols[3]);
    const bool params_ok = agrees(params, cols[4]);
    result.flops_mismatches += !flops_ok;
    result.params_mismatches += !params_ok;
    const std::string ours = path.string() + ": " + line + " -> ours " + std::to_string(macs / 1e6) +
                             " MFLOPs, " + std::to_string(params / 1e6) + " Mparams";
    if (!flops_ok && result.first_flops_mismatch.empty()) result.first_flops_mismatch = ours;
    if (!params_ok && result.first_params_mismatch.empty()) result.first_params_mismatch = ours;
    ++result.rows;
  }
}

void check_hyperspace(const std::string& name) {
  const fs::path dir = fs::path(QNAS_SHARED_DATA_DIR) / "spaceevo-lut" / name;
  if (!fs::exists(dir)) GTEST_SKIP() << "shared data absent: " << dir << " (tests of the official LUTs skip)";
  const Hyperspace& hs = find_hyperspace(name);
  LutCheck result;
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".csv") continue;
    check_file(hs, entry.path(), result);
    ++files;
  }
  EXPECT_GT(files, 100);
  EXPECT_GT(result.rows, 100000);
  EXPECT_EQ(result.flops_mismatches, 0) << result.first_flops_mismatch;
  EXPECT_EQ(result.params_mismatches, 0) << result.first_params_mismatch;
}

}  // namespace

TEST(OfficialLut, OnnxwFlopsAndParamsMatchEveryRow) {
  check_hyperspace("onnxw");
}
TEST(OfficialLut, MobilewFlopsAndParamsMatchEveryRow) {
  check_hyperspace("mobilew");
}
