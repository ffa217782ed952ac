#include "core/fs.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/error.h"
#include "core/memory.h"

namespace qnas {
namespace fs = std::filesystem;

namespace {
// A failed write with less free space than this is a full disk, whatever errno the writer left behind.
constexpr std::uintmax_t kNearlyFullBytes = std::uintmax_t{1} << 20;
// A long job refuses to start with less free space than this: its checkpoints would not fit.
constexpr std::uintmax_t kMinimumFreeBytesForAJob = std::uintmax_t{16} << 20;
// nlohmann's DOM takes several times the text's size (one node per value, maps per object).
constexpr std::uint64_t kJsonDomBytesPerTextByte = 10;

// A write failure inside a writer callback, carrying its errno past the callback.
class WriteFailure : public std::runtime_error {
 public:
  WriteFailure(int error_number, const std::string& what)
      : std::runtime_error(what), error_number_(error_number) {}
  int error_number() const { return error_number_; }

 private:
  int error_number_;
};

template <typename Container>
Container read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!fs::exists(path)) fail("file not found: {} (check the path)", path.string());
    fail("cannot read {}: {}", path.string(), std::strerror(errno));
  }
  std::error_code ignored;
  const std::uintmax_t size = fs::file_size(path, ignored);
  if (!ignored)
    require_memory(size, fmt::format("reading {}", path.string()), "free memory or use a smaller file");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  return Container(text.begin(), text.end());
}

// The nearest directory that exists: statvfs and access need one.
fs::path existing_ancestor(fs::path dir) {
  if (dir.empty()) dir = ".";
  std::error_code ignored;
  while (!fs::exists(dir, ignored) && dir.has_parent_path() && dir.parent_path() != dir)
    dir = dir.parent_path();
  return dir;
}

// Linux fsync needs only a descriptor, so a read-only open flushes a file another library wrote.
int flush_to_disk(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return errno;
  const int status = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return status;
}

std::string first_line(std::string_view text) {
  return std::string(text.substr(0, text.find('\n')));
}
}  // namespace

std::string read_text_file(const fs::path& path) {
  return read_all<std::string>(path);
}

std::vector<std::uint8_t> read_binary_file(const fs::path& path) {
  return read_all<std::vector<std::uint8_t>>(path);
}

std::string write_failure_cause(const fs::path& dir, int error_number) {
  const fs::path where = existing_ancestor(dir);
  struct statvfs info {};
  const bool have_info = ::statvfs(where.c_str(), &info) == 0;
  if (error_number == EROFS || (have_info && (info.f_flag & ST_RDONLY))) {
    return fmt::format("{} is on a read-only file system: choose a directory on a writable one",
                       where.string());
  }
  const std::uintmax_t free_bytes = have_info ? std::uintmax_t{info.f_bavail} * info.f_frsize : 0;
  if (error_number == ENOSPC || error_number == EDQUOT || (have_info && free_bytes < kNearlyFullBytes)) {
    return fmt::format(
        "the disk is full ({} free on {}): free space there or choose a directory on another disk",
        format_bytes(free_bytes), where.string());
  }
  if (error_number == EFBIG) return "the file size limit was reached (ulimit -f): raise it";
  if (error_number == EACCES || error_number == EPERM || ::access(where.c_str(), W_OK) != 0) {
    return fmt::format("no permission to write in {}: fix its permissions or choose another directory",
                       where.string());
  }
  return error_number != 0 ? std::strerror(error_number) : "an I/O error";
}

void create_directories_or_fail(const fs::path& dir) {
  std::error_code error;
  const fs::path existing = existing_ancestor(dir);
  if (fs::exists(existing, error) && !fs::is_directory(existing, error)) {
    fail("{} exists and is not a directory: choose another path or move the file away", existing.string());
  }
  fs::create_directories(dir, error);
  if (error) fail("cannot create directory {}: {}", dir.string(), write_failure_cause(dir, error.value()));
}

void write_atomically(const fs::path& path, const std::function<void(const fs::path& temp)>& write) {
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  create_directories_or_fail(dir);
  const fs::path temp = path.string() + ".tmp." + std::to_string(::getpid());
  const auto give_up = [&](int error_number, const std::string& detail) {
    std::error_code ignored;
    fs::remove(temp, ignored);
    fail("cannot write {}: {} ({}); {}", path.string(), write_failure_cause(dir, error_number), detail,
         fs::exists(path, ignored) ? "the previous file is kept as it was" : "nothing was written");
  };
  errno = 0;
  try {
    write(temp);
  } catch (const WriteFailure& e) {
    give_up(e.error_number(), e.what());
  } catch (const std::exception& e) {
    // LibTorch's and libonnx's writers throw their own exceptions (with a backtrace); errno still holds the
    // cause of a failed write, and the free space tells a full disk apart whatever it holds.
    give_up(errno, first_line(e.what()));
  }
  if (const int error_number = flush_to_disk(temp); error_number != 0)
    give_up(error_number, "flushing to disk");
  std::error_code error;
  fs::rename(temp, path, error);
  if (error) give_up(error.value(), "renaming the finished file into place");
}

void write_file_atomic(const fs::path& path, const std::string& contents) {
  write_atomically(path, [&](const fs::path& temp) {
    std::FILE* file = std::fopen(temp.c_str(), "wb");
    if (!file) throw WriteFailure(errno, "creating the file");
    const bool written = std::fwrite(contents.data(), 1, contents.size(), file) == contents.size();
    const int write_error = errno;
    const bool closed = std::fclose(file) == 0;
    if (!written || !closed) throw WriteFailure(written ? errno : write_error, "writing");
  });
}

void write_json_atomic(const fs::path& path, const nlohmann::json& value) {
  write_file_atomic(path, value.dump(2) + "\n");
}

void require_writable_directory(const fs::path& dir, std::string_view option) {
  const auto refuse = [&](const std::string& problem) {
    fail("{}; {} must name a writable directory with room for checkpoints (nothing was changed)", problem,
         option);
  };
  try {
    create_directories_or_fail(dir);
  } catch (const Error& e) {
    refuse(e.what());
  }
  const fs::path probe = dir / (".qnas-write-probe." + std::to_string(::getpid()));
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int error_number = fd < 0 ? errno : (::write(fd, "probe\n", 6) == 6 ? 0 : errno);
  if (fd >= 0) ::close(fd);
  std::error_code ignored;
  fs::remove(probe, ignored);
  if (fd < 0 || error_number != 0) {
    refuse(fmt::format("cannot write in {}: {}", dir.string(), write_failure_cause(dir, error_number)));
  }
  const fs::space_info space = fs::space(dir, ignored);
  if (!ignored && space.available < kMinimumFreeBytesForAJob) {
    refuse(
        fmt::format("only {} free on the disk of {} ({} needed at least): free space there or choose a "
                    "directory on another disk",
                    format_bytes(space.available), dir.string(), format_bytes(kMinimumFreeBytesForAJob)));
  }
}

nlohmann::json read_json_file(const fs::path& path) {
  const std::string text = read_text_file(path);
  require_memory(kJsonDomBytesPerTextByte * text.size(), fmt::format("parsing {}", path.string()),
                 "free memory or use a smaller file");
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    // Not only parse_error: a number too large for a double is an out_of_range thrown while parsing (found by
    // fuzz/fuzz_latency_lut).
    fail("{} is not valid JSON ({}); fix or delete the file", path.string(), e.what());
  }
}

}  // namespace qnas
