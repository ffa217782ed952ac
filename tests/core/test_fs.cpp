#include "core/fs.h"

#include <filesystem>

#include <gtest/gtest.h>

#include "core/error.h"

namespace fs = std::filesystem;

namespace {
fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("qnas_test_core_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}
}  // namespace

TEST(AtomicWrite, RoundTripsAndLeavesNoTempFile) {
  const fs::path dir = fresh_dir("atomic");
  const fs::path target = dir / "sub" / "result.json";
  qnas::write_json_atomic(target, {{"flops", 163.5}, {"name", "A0"}});
  qnas::write_json_atomic(target, {{"flops", 358.2}, {"name", "A1"}});
  const auto value = qnas::read_json_file(target);
  EXPECT_EQ(value.at("name"), "A1");
  EXPECT_DOUBLE_EQ(value.at("flops").get<double>(), 358.2);
  int files = 0;
  for (const auto& entry : fs::directory_iterator(target.parent_path())) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST(ReadFile, MissingFileNamesThePath) {
  try {
    qnas::read_text_file("/nonexistent/qnas/config.json");
    FAIL() << "expected qnas::Error";
  } catch (const qnas::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/qnas/config.json"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("not found"), std::string::npos);
  }
}

TEST(ReadJson, CorruptJsonNamesTheFile) {
  const fs::path path = fresh_dir("json") / "bad.json";
  qnas::write_file_atomic(path, "{\"a\": 1,");
  try {
    qnas::read_json_file(path);
    FAIL() << "expected qnas::Error";
  } catch (const qnas::Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.json"), std::string::npos);
  }
}

// Found by fuzz/fuzz_latency_lut: a number beyond a double's range is nlohmann's out_of_range, not a
// parse_error, and escaped as an abort.
TEST(ReadJson, ANumberOutOfRangeIsTheSameClearError) {
  const fs::path path = fresh_dir("json-range") / "huge.json";
  qnas::write_file_atomic(path, "{\"a\": 0.1319999999E999999999999998}");
  try {
    qnas::read_json_file(path);
    FAIL() << "expected qnas::Error";
  } catch (const qnas::Error& e) {
    EXPECT_NE(std::string(e.what()).find("huge.json is not valid JSON"), std::string::npos) << e.what();
  }
}
