#include "search/block_lut.h"

#include <algorithm>
#include <fstream>
#include <regex>
#include <set>
#include <tuple>

#include "core/error.h"
#include "core/memory.h"
#include "core/strings.h"
#include "space/arch_spec.h"

namespace qnas::search {
namespace fs = std::filesystem;

namespace {

float parse_float(const std::string& text, const std::string& where, const char* column) {
  const auto value = parse_number(text);
  if (!value) fail("{}: column {} is '{}', not a number", where, column, text);
  return static_cast<float>(*value);
}

// A channel count or image size: a whole number a network can have (a huge one would overflow int; found by
// fuzz/).
int parse_dimension(const std::string& text, const std::string& where, const char* column) {
  const float value = parse_float(text, where, column);
  if (!(value >= 1 && value <= 1e6f) || value != static_cast<float>(static_cast<int>(value)))
    fail("{}: {} '{}' is not a whole number from 1 to 1000000", where, column, text);
  return static_cast<int>(value);
}

}  // namespace

LutRow BlockLutSet::parse_row(const std::string& line, const std::string& where) {
  std::string text = line;
  if (!text.empty() && text.back() == '\r') text.pop_back();
  const auto cols = split(text, ',');
  if (cols.size() != 6) {
    fail("{}: expected 6 comma-separated columns (choice,1xCxHxW,loss,FLOPs,params,latency), got {}", where,
         cols.size());
  }
  LutRow row;
  row.choice = cols[0];
  static const std::regex choice_pattern(R"(\d+#\d+#(None|[0-9.]+)(_\d+#\d+#(None|[0-9.]+))*)");
  if (!std::regex_match(row.choice, choice_pattern))
    fail("{}: malformed sub-stage choice '{}'", where, row.choice);
  const auto shape = split(cols[1], 'x');
  if (shape.size() != 4) fail("{}: input shape '{}' is not 1xCxHxW", where, cols[1]);
  row.cin = parse_dimension(shape[1], where, "C");
  row.hw = parse_dimension(shape[2], where, "H");
  row.loss = parse_float(cols[2], where, "nsr_loss");
  row.mflops = parse_float(cols[3], where, "FLOPs");
  row.mparams = parse_float(cols[4], where, "params");
  row.latency_ms = parse_float(cols[5], where, "latency");
  if (row.latency_ms < 0 || row.loss < 0) fail("{}: negative loss or latency", where);
  return row;
}

namespace {
// A row's two numbers take less memory than its text, so the files' total size bounds what loading them
// needs.
std::uint64_t lut_text_bytes(const fs::path& dir, const std::regex& name_pattern) {
  std::uint64_t total = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!std::regex_match(entry.path().filename().string(), name_pattern)) continue;
    std::error_code error;
    const std::uintmax_t size = entry.file_size(error);
    if (!error) total += size;
  }
  return total;
}
}  // namespace

BlockLutSet BlockLutSet::load(const fs::path& dir, const space::Hyperspace& hyperspace) {
  if (!fs::is_directory(dir)) fail("block LUT directory not found: {} (pass --lut DIR)", dir.string());
  BlockLutSet set;
  set.hyperspace_ = &hyperspace;
  set.dir_ = dir;
  // (stage index, input size) -> resolution, from the hyperspace's own stride chain.
  std::map<std::pair<int, int>, int> resolution_of;
  for (int resolution : hyperspace.block_kd_resolutions) {
    const auto sizes = stage_input_sizes(hyperspace, resolution);
    for (size_t s = 0; s < sizes.size(); ++s) resolution_of[{static_cast<int>(s), sizes[s]}] = resolution;
  }
  static const std::regex name_pattern(R"(stage(\d{1,3})_(\d{1,3})_(\d{1,3})\.csv)");
  require_memory(lut_text_bytes(dir, name_pattern), fmt::format("the block LUTs in {}", dir.string()),
                 "free memory or load fewer LUT files");
  std::set<int> seen_resolutions;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::smatch match;
    const std::string name = entry.path().filename().string();
    if (!std::regex_match(name, match, name_pattern)) continue;
    const Key key{std::stoi(match[1]), std::stoi(match[2]), std::stoi(match[3])};
    const int stage_index = hyperspace.stage_index("stage" + std::to_string(key.stage));
    if (!hyperspace.is_choosable(stage_index) ||
        key.block >= static_cast<int>(hyperspace.candidates.size()) ||
        key.window >= hyperspace.stages[stage_index].num_windows()) {
      fail("{}: no such (stage, block, window) in hyperspace {}; is this the right --hyperspace?",
           entry.path().string(), hyperspace.name);
    }
    std::ifstream in(entry.path());
    std::string line;
    int line_number = 0;
    auto& tables = set.files_[key];
    while (std::getline(in, line)) {
      ++line_number;
      if (line.empty() || line == "\r") continue;
      const std::string where = entry.path().string() + ":" + std::to_string(line_number);
      const LutRow row = parse_row(line, where);
      const auto found = resolution_of.find({stage_index, row.hw});
      if (found == resolution_of.end()) {
        fail("{}: input size {} matches none of {}'s block-KD resolutions for stage{}", where, row.hw,
             hyperspace.name, key.stage);
      }
      tables[found->second].loss.push_back(row.loss);
      tables[found->second].latency_ms.push_back(row.latency_ms);
      seen_resolutions.insert(found->second);
    }
    if (tables.empty()) fail("{}: empty LUT file (delete it or re-run build-lut)", entry.path().string());
  }
  if (set.files_.empty()) fail("no block LUT files (stage*_*_*.csv) in {}", dir.string());
  for (int resolution : seen_resolutions) {
    const bool everywhere = std::all_of(set.files_.begin(), set.files_.end(),
                                        [&](const auto& file) { return file.second.count(resolution) > 0; });
    if (everywhere) set.resolutions_.push_back(resolution);
  }
  if (set.resolutions_.empty()) fail("{}: no resolution is present in every LUT file", dir.string());
  return set;
}

bool BlockLutSet::has(int stage_number, int block, int window) const {
  return files_.count(Key{stage_number, block, window}) > 0;
}

const LutTable& BlockLutSet::table(int stage_number, int block, int window, int resolution) const {
  const auto file = files_.find(Key{stage_number, block, window});
  if (file == files_.end()) {
    fail("block LUT {}/stage{}_{}_{}.csv is missing (build it with qnas build-lut)", dir_.string(),
         stage_number, block, window);
  }
  const auto table = file->second.find(resolution);
  if (table == file->second.end()) {
    fail("block LUT {}/stage{}_{}_{}.csv has no rows at resolution {}", dir_.string(), stage_number, block,
         window, resolution);
  }
  return table->second;
}

size_t BlockLutSet::num_rows() const {
  size_t rows = 0;
  for (const auto& [key, tables] : files_) {
    for (const auto& [resolution, table] : tables) rows += table.size();
  }
  return rows;
}

}  // namespace qnas::search
