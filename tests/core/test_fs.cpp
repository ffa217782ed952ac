#include "core/fs.h"

#include <filesystem>

#include <gtest/gtest.h>

#include <cerrno>
#include <fstream>

#include <unistd.h>

#include "core/error.h"
#include "test_util.h"

namespace fs = std::filesystem;
using qnas::testing::error_message;

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

namespace {
int count_files(const fs::path& dir) {
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) files += entry.is_regular_file() ? 1 : 0;
  return files;
}
}  // namespace

// A full disk in the middle of a write: one error naming the file and the cause, the previous file untouched,
// no temporary file left behind.
TEST(AtomicWrite, AFailedWriteKeepsThePreviousFileAndNamesTheCause) {
  const fs::path dir = fresh_dir("atomic-full");
  const fs::path target = dir / "checkpoint.json";
  qnas::write_file_atomic(target, "old contents\n");
  const std::string message = error_message([&] {
    qnas::testing::FileSizeLimit limit(4096);
    qnas::write_file_atomic(target, std::string(100000, 'x'));
  });
  EXPECT_CONTAINS(message, "cannot write " + target.string());
  EXPECT_CONTAINS(message, "file size limit");
  EXPECT_CONTAINS(message, "the previous file is kept");
  EXPECT_EQ(qnas::read_text_file(target), "old contents\n");
  EXPECT_EQ(count_files(dir), 1);
}

// LibTorch and libonnx write through a path and throw their own exceptions; the same guarantees hold.
TEST(AtomicWrite, AWriterThatThrowsLeavesNothingBehind) {
  const fs::path dir = fresh_dir("atomic-throw");
  const fs::path target = dir / "model.pt";
  const std::string message = error_message([&] {
    qnas::write_atomically(target, [](const fs::path& temp) {
      std::ofstream(temp) << "half";
      throw std::runtime_error("PytorchStreamWriter failed writing file data/0\nException raised from ...");
    });
  });
  EXPECT_CONTAINS(message, "cannot write " + target.string());
  EXPECT_CONTAINS(message, "PytorchStreamWriter failed writing file data/0");
  EXPECT_EQ(message.find("Exception raised from"), std::string::npos) << "only the writer's first line";
  EXPECT_CONTAINS(message, "nothing was written");
  EXPECT_EQ(count_files(dir), 0);
}

TEST(AtomicWrite, WriterPathIsRenamedIntoPlace) {
  const fs::path dir = fresh_dir("atomic-writer");
  qnas::write_atomically(dir / "a.bin", [](const fs::path& temp) { std::ofstream(temp) << "done"; });
  EXPECT_EQ(qnas::read_text_file(dir / "a.bin"), "done");
  EXPECT_EQ(count_files(dir), 1);
}

TEST(WriteFailureCause, NamesTheCauseAndTheFix) {
  const fs::path dir = fresh_dir("cause");
  EXPECT_CONTAINS(qnas::write_failure_cause(dir, EROFS), "read-only file system");
  EXPECT_CONTAINS(qnas::write_failure_cause(dir, ENOSPC), "the disk is full (");
  EXPECT_CONTAINS(qnas::write_failure_cause(dir, ENOSPC), "free on " + dir.string());
  EXPECT_CONTAINS(qnas::write_failure_cause(dir, EFBIG), "ulimit -f");
  EXPECT_CONTAINS(qnas::write_failure_cause(dir / "not" / "yet", EIO), "Input/output error");
}

TEST(CreateDirectories, AFileInTheWayIsOneClearError) {
  const fs::path dir = fresh_dir("mkdir");
  qnas::write_file_atomic(dir / "run", "a file");
  EXPECT_CONTAINS(error_message([&] { qnas::create_directories_or_fail(dir / "run" / "sub"); }),
                  "is not a directory");
  EXPECT_CONTAINS(error_message([&] { qnas::create_directories_or_fail(dir / "run"); }),
                  (dir / "run").string() + " exists and is not a directory");
}

TEST(RequireWritableDirectory, CreatesTheDirectoryAndLeavesNoProbe) {
  const fs::path dir = fresh_dir("writable") / "a" / "b";
  qnas::require_writable_directory(dir, "--run-dir");
  ASSERT_TRUE(fs::is_directory(dir));
  EXPECT_EQ(count_files(dir), 0);
}

TEST(RequireWritableDirectory, AReadOnlyDirectoryIsRefusedUpFront) {
  if (::geteuid() == 0) {
    GTEST_SKIP() << "root writes into a mode-0555 directory; cli.read_only_run_dir checks a read-only mount";
  }
  const fs::path dir = fresh_dir("read-only");
  fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec);
  const std::string message = error_message([&] { qnas::require_writable_directory(dir, "--run-dir"); });
  fs::permissions(dir, fs::perms::owner_all);
  EXPECT_CONTAINS(message, "no permission to write in " + dir.string());
  EXPECT_CONTAINS(message, "--run-dir must name a writable directory");
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
