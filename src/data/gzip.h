#pragma once
// Reads gzip-compressed files straight into memory with zlib, so the packaged .gz data sets are used as
// shipped, with no unpacking step and no temporary files.
#include <cstdint>
#include <filesystem>
#include <vector>

namespace qnas::data {

// The decompressed bytes of a gzip file (concatenated gzip members are joined, as gunzip does).
// A missing file, a file that is not gzip, corrupt data or a stream that ends early is a qnas::Error
// naming the file and the remedy.
std::vector<std::uint8_t> read_gzip_file(const std::filesystem::path& path);

// read_gzip_file for names ending in ".gz", the plain bytes otherwise.
std::vector<std::uint8_t> read_maybe_gzip_file(const std::filesystem::path& path);

}  // namespace qnas::data
