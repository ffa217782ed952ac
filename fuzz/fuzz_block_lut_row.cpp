// Rows of the official SpaceEvo block LUT CSVs, one per line.
#include <cstdint>
#include <sstream>
#include <string>

#include "core/error.h"
#include "search/block_lut.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::istringstream lines(std::string(reinterpret_cast<const char*>(data), size));
  std::string line;
  while (std::getline(lines, line)) {
    try {
      qnas::search::BlockLutSet::parse_row(line, "fuzz input");
    } catch (const qnas::Error&) {
    }
  }
  return 0;
}
