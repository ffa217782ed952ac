#pragma once
// Writes small synthetic block LUTs for fmnistw (input 28x28, block-KD resolution 28) so the search code can
// be tested on values whose scores are known by hand.
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include <unistd.h>

#include "space/hyperspace.h"

namespace qnas::testing {

// rows(stage_number, block, window) returns the CSV rows after the choice and shape columns, e.g.
// {"0.5,1.0,0.1,2.0"} = loss 0.5, 1 MFLOPs, 0.1 Mparams, 2 ms.
inline std::filesystem::path write_fmnistw_luts(
    const std::string& name,
    const std::function<std::vector<std::string>(int stage, int block, int window)>& rows) {
  namespace fs = std::filesystem;
  // Per process: CTest runs the tests of one binary as parallel processes.
  const fs::path dir =
      fs::temp_directory_path() / ("qnas_test_lut_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const auto& hs = space::find_hyperspace("fmnistw");
  // Stage input sizes at 28: stage1 28, stage2 14, stage3 14, stage4 7, stage5 7, stage6 4.
  const int input_hw[] = {0, 28, 14, 14, 7, 7, 4};
  for (int stage = 1; stage <= 6; ++stage) {
    const auto& def = hs.stages[hs.stage_index("stage" + std::to_string(stage))];
    for (int block = 0; block < static_cast<int>(hs.candidates.size()); ++block) {
      for (int window = 0; window < def.num_windows(); ++window) {
        std::ofstream out(dir / ("stage" + std::to_string(stage) + "_" + std::to_string(block) + "_" +
                                 std::to_string(window) + ".csv"));
        const int width = def.window(window).front();
        for (const auto& row : rows(stage, block, window)) {
          out << "3#" << width << "#None,1x16x" << input_hw[stage] << "x" << input_hw[stage] << "," << row
              << "\n";
        }
      }
    }
  }
  return dir;
}

}  // namespace qnas::testing
