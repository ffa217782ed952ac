#pragma once
// Block LUTs in the official SpaceEvo CSV format: one file per (stage, block type, width window),
// "stage{i}_{block}_{window}.csv", no header, one sampled sub-stage per row:
//   k#w#e_k#w#e...,1xCxHxW,nsr_loss,FLOPs(M),params(M),int8_latency(ms)
// The input H of a row tells the resolution it was measured at.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "space/hyperspace.h"

namespace qnas::search {

struct LutRow {
  std::string choice;  // "k#w#e_k#w#e..."
  int cin = 0;
  int hw = 0;
  float loss = 0;
  float mflops = 0;
  float mparams = 0;
  float latency_ms = 0;
};

// The rows of one (stage, block, window) at one resolution, as columns for fast sampling.
struct LutTable {
  std::vector<float> loss;
  std::vector<float> latency_ms;
  size_t size() const { return loss.size(); }
};

class BlockLutSet {
 public:
  // Reads every stage*_*_*.csv under `dir`. Errors (qnas::Error) name the file and line: a missing directory,
  // no LUT files, a malformed row, an input size that matches no resolution of the hyperspace.
  static BlockLutSet load(const std::filesystem::path& dir, const space::Hyperspace& hyperspace);

  const space::Hyperspace& hyperspace() const { return *hyperspace_; }
  // Resolutions present in every file, ascending.
  const std::vector<int>& resolutions() const { return resolutions_; }
  // stage_number is 1..6 (stage1..stage6); throws naming the missing file when absent.
  const LutTable& table(int stage_number, int block, int window, int resolution) const;
  bool has(int stage_number, int block, int window) const;
  size_t num_files() const { return files_.size(); }
  size_t num_rows() const;
  const std::filesystem::path& dir() const { return dir_; }

  // Parses one CSV line; exposed for tests and for writers that check what they wrote.
  static LutRow parse_row(const std::string& line, const std::string& where);

 private:
  struct Key {
    int stage, block, window;
    bool operator<(const Key& o) const {
      return std::tie(stage, block, window) < std::tie(o.stage, o.block, o.window);
    }
  };
  const space::Hyperspace* hyperspace_ = nullptr;
  std::filesystem::path dir_;
  std::vector<int> resolutions_;
  std::map<Key, std::map<int, LutTable>> files_;
};

using space::stage_input_sizes;

}  // namespace qnas::search
