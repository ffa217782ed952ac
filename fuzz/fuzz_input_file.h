#pragma once
// The readers take paths: each input is written to a file in /dev/shm (memory) named after the process, read
// back by the parser under test, and removed. A qnas::Error is the expected answer to bad input; anything
// else that escapes (another exception, a crash, a sanitizer report) is a finding.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

namespace qnas::fuzz {

class InputFile {
 public:
  InputFile(const std::uint8_t* data, std::size_t size, const std::string& suffix)
      : path_("/dev/shm/qnas-fuzz-" + std::to_string(::getpid()) + suffix) {
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    if (!f) std::abort();
    if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
    std::fclose(f);
  }
  ~InputFile() { std::remove(path_.c_str()); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace qnas::fuzz
