#pragma once
// Small helpers for the data tests: scratch folders, synthetic IDX/gzip files and error-message checks.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <zlib.h>
#include "test_util.h"

#include "core/error.h"

namespace qnas::data::testing {

namespace fs = std::filesystem;

// An empty folder unique to the test (and the process, since CTest runs tests in parallel).
inline fs::path fresh_dir(const std::string& name) {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string test = info ? std::string(info->test_suite_name()) + "_" + info->name() : "none";
  const fs::path dir = fs::temp_directory_path() / ("qnas_test_data_" + test + "_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

inline void write_bytes(const fs::path& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

inline std::vector<std::uint8_t> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Compresses with zlib's gz* API, the way the packaged .gz files were made.
inline void write_gzip(const fs::path& path, const std::vector<std::uint8_t>& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr) << "cannot create " << path;
  if (!bytes.empty()) {
    EXPECT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
  }
  EXPECT_EQ(gzclose(file), Z_OK);
}

// An IDX file: magic, big-endian dimension sizes, then the data bytes.
inline std::vector<std::uint8_t> idx_bytes(std::uint32_t magic, const std::vector<std::uint32_t>& dims,
                                           const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> bytes;
  const auto push_u32 = [&bytes](std::uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<std::uint8_t>(value >> shift));
  };
  push_u32(magic);
  for (const std::uint32_t dim : dims) push_u32(dim);
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

using qnas::testing::error_message;

}  // namespace qnas::data::testing
