#pragma once
// `qnas mixed-precision-report`: the side-by-side the mixed-precision methods exist for. It reads the
// result.json of several `qnas mixed-precision` runs on one network (uniform 8, uniform 4, HAWQ, AutoQ, ...)
// and, optionally, the front.json of a QFA `subnet-search`, and writes one table and two plots: accuracy
// against BitOPs and against model size, each row marked with the rows that dominate it and its distance
// from uniform 8. Pure JSON in, files out: no LibTorch, so it runs anywhere the results were copied to.
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qnas::pipeline {

struct ComparisonRow {
  std::string label;            // e.g. "hawq {4,8} ratio 1.5"
  std::string method;           // uniform | hawq | autoq | random | given | latency-aware | qfa
  std::string source;           // the result.json or front.json it came from
  double accuracy = 0;          // test top-1 in [0, 1]
  double accuracy_before = -1;  // before the fine-tune; < 0: not fine-tuned / not known
  double bitops_m = 0;
  double size_kib = 0;
  double compression_ratio = 0;  // 0: not known (QFA front networks)
  double int8_ms = -1;           // measured median; < 0: not measured
  std::string finetune;          // "3 x 20000 images, distilled" or "none"
  std::vector<std::string> dominated_by_bitops, dominated_by_size;
};

struct Comparison {
  std::string space, subnet;         // the network every result.json row was measured on
  std::vector<ComparisonRow> rows;   // the mixed-precision results, in the order given
  std::vector<ComparisonRow> front;  // the QFA search's measured networks on its predicted front
  std::vector<std::string> notes;    // differences a reader must know (fine-tunes, test sets, runs)
};

// Loads the results (each a result.json or the directory holding one) and the QFA front.json (empty: none),
// and marks dominance. One qnas::Error naming the file and the fix for a missing or malformed file, a file
// that is not a mixed-precision result, results of two different networks, or no results at all.
Comparison load_comparison(const std::vector<std::filesystem::path>& results,
                           const std::filesystem::path& qfa_front);

// Writes OUT/comparison.{json,csv,md}, OUT/accuracy-bitops.svg and OUT/accuracy-size.svg, atomically.
void write_comparison(const Comparison& comparison, const std::filesystem::path& out_dir,
                      const std::string& title);

// The markdown table alone (also what the CLI prints).
std::string comparison_markdown(const Comparison& comparison);

}  // namespace qnas::pipeline
