#include "data/gzip.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <zlib.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/memory.h"

namespace qnas::data {
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kReadChunk = std::size_t{1} << 16;
constexpr const char* kMemoryFix = "free memory, or read a smaller data set";
constexpr int kGzipOnlyWindowBits = 16 + MAX_WBITS;  // 16+: accept the gzip wrapper only, never raw data

// Owns the z_stream so every exit path, including a thrown qnas::Error, releases zlib's state.
class Inflater {
 public:
  explicit Inflater(const fs::path& path) {
    if (inflateInit2(&stream_, kGzipOnlyWindowBits) != Z_OK) {
      fail("{}: zlib could not start decompressing (out of memory?)", path.string());
    }
  }
  ~Inflater() { inflateEnd(&stream_); }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;
  z_stream& stream() { return stream_; }

 private:
  z_stream stream_{};
};

std::ifstream open_for_reading(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!fs::exists(path)) fail("file not found: {} (check the path)", path.string());
    fail("cannot read {}: {}", path.string(), std::strerror(errno));
  }
  return in;
}

// The gzip trailer stores the unpacked size modulo 2^32. It is only a hint (a truncated or multi-member file
// lies), so it counts only when deflate could reach it: at most 1032 output bytes per input byte.
std::size_t plausible_unpacked_size(const fs::path& path, std::uintmax_t compressed_size) {
  constexpr std::uintmax_t kDeflateMaxRatio = 1032;
  if (compressed_size < 4) return 0;
  std::ifstream in(path, std::ios::binary);
  in.seekg(-4, std::ios::end);
  unsigned char trailer[4] = {};
  if (!in.read(reinterpret_cast<char*>(trailer), 4)) return 0;
  const std::size_t hinted =
      trailer[0] | (trailer[1] << 8) | (trailer[2] << 16) | (static_cast<std::size_t>(trailer[3]) << 24);
  return hinted <= kDeflateMaxRatio * compressed_size ? hinted : 0;
}

// Capped to keep a corrupt trailer from reserving absurd amounts of memory; the buffer grows when needed.
std::size_t initial_output_size(std::size_t hinted, std::uintmax_t compressed_size) {
  constexpr std::size_t kMinimum = std::size_t{1} << 16;
  const std::size_t cap = 64 * static_cast<std::size_t>(compressed_size) + kMinimum;
  return std::clamp<std::size_t>(hinted + 1, kMinimum, cap);  // +1: room to see the end without growing
}

[[noreturn]] void fail_truncated(const fs::path& path, std::uintmax_t compressed, std::size_t unpacked) {
  fail(
      "{}: the gzip stream ends early after {} compressed bytes ({} bytes unpacked); the file is truncated "
      "- download it again or reinstall the package that ships it",
      path.string(), compressed, unpacked);
}

}  // namespace

std::vector<std::uint8_t> read_gzip_file(const fs::path& path) {
  std::ifstream in = open_for_reading(path);
  std::error_code ignored;
  const std::uintmax_t compressed_size = fs::file_size(path, ignored);
  if (compressed_size == 0) {
    fail("{}: the file is empty, not gzip data; download it again or reinstall the package that ships it",
         path.string());
  }

  Inflater inflater(path);
  z_stream& stream = inflater.stream();
  std::vector<char> input(kReadChunk);
  const std::size_t hinted = plausible_unpacked_size(path, compressed_size);
  require_memory(hinted, fmt::format("unpacking {}", path.string()), kMemoryFix);
  std::vector<std::uint8_t> output(initial_output_size(hinted, compressed_size));
  std::size_t produced = 0;
  std::uintmax_t consumed = 0;
  bool inside_member = true;  // false between gzip members and after the last one

  while (true) {
    if (stream.avail_in == 0) {
      in.read(input.data(), static_cast<std::streamsize>(input.size()));
      const auto got = static_cast<uInt>(in.gcount());
      if (in.bad()) fail("cannot read {}: {}", path.string(), std::strerror(errno));
      if (got == 0) break;
      stream.next_in = reinterpret_cast<Bytef*>(input.data());
      stream.avail_in = got;
    }
    if (!inside_member) {  // more bytes after a complete member: another member follows (as with cat a.gz
                           // b.gz)
      inflateReset(&stream);
      inside_member = true;
    }
    if (produced == output.size()) {
      require_memory(2 * output.size(), fmt::format("unpacking {}", path.string()), kMemoryFix);
      output.resize(output.size() * 2);
    }
    stream.next_out = output.data() + produced;
    stream.avail_out = static_cast<uInt>(std::min<std::size_t>(output.size() - produced, UINT32_MAX));
    const uInt available_before = stream.avail_in;
    const int status = inflate(&stream, Z_NO_FLUSH);
    produced = static_cast<std::size_t>(stream.next_out - output.data());
    consumed += available_before - stream.avail_in;
    if (status == Z_STREAM_END) {
      inside_member = false;
    } else if (status != Z_OK && status != Z_BUF_ERROR) {  // Z_BUF_ERROR: needs more input or output space
      fail(
          "{}: not a valid gzip file ({}, near compressed byte {}); the file is corrupt or was never "
          "gzip-compressed - download it again, or drop the .gz suffix if it holds plain data",
          path.string(), stream.msg ? stream.msg : zError(status), consumed);
    }
  }
  if (inside_member) fail_truncated(path, consumed, produced);
  output.resize(produced);
  return output;
}

std::vector<std::uint8_t> read_maybe_gzip_file(const fs::path& path) {
  if (path.extension() == ".gz") return read_gzip_file(path);
  return read_binary_file(path);
}

}  // namespace qnas::data
