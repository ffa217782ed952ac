#include "core/fs.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "core/error.h"

namespace qnas {
namespace fs = std::filesystem;

namespace {
template <typename Container>
Container read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!fs::exists(path)) fail("file not found: {} (check the path)", path.string());
    fail("cannot read {}: {}", path.string(), std::strerror(errno));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  return Container(text.begin(), text.end());
}
}  // namespace

std::string read_text_file(const fs::path& path) {
  return read_all<std::string>(path);
}

std::vector<std::uint8_t> read_binary_file(const fs::path& path) {
  return read_all<std::vector<std::uint8_t>>(path);
}

void write_file_atomic(const fs::path& path, const std::string& contents) {
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  const fs::path temp = path.string() + ".tmp." + std::to_string(::getpid());
  {
    std::FILE* file = std::fopen(temp.c_str(), "wb");
    if (!file) fail("cannot write {}: {}", temp.string(), std::strerror(errno));
    const bool written = std::fwrite(contents.data(), 1, contents.size(), file) == contents.size();
    const bool flushed = std::fflush(file) == 0 && ::fsync(fileno(file)) == 0;
    std::fclose(file);
    if (!written || !flushed) {
      fs::remove(temp);
      fail("cannot write {}: disk full or I/O error", path.string());
    }
  }
  fs::rename(temp, path);
}

void write_json_atomic(const fs::path& path, const nlohmann::json& value) {
  write_file_atomic(path, value.dump(2) + "\n");
}

nlohmann::json read_json_file(const fs::path& path) {
  const std::string text = read_text_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    // Not only parse_error: a number too large for a double is an out_of_range thrown while parsing (found by
    // fuzz/fuzz_latency_lut).
    fail("{} is not valid JSON ({}); fix or delete the file", path.string(), e.what());
  }
}

}  // namespace qnas
