#pragma once
// File helpers that never leave a half-written file behind.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace qnas {

// Reads a whole file; a missing or unreadable file is a qnas::Error naming the path.
std::string read_text_file(const std::filesystem::path& path);
std::vector<std::uint8_t> read_binary_file(const std::filesystem::path& path);

// Writes to a temporary file in the same directory, flushes, then renames over the target, so a crash
// leaves either the old file or the new one, never a truncated mix.
void write_file_atomic(const std::filesystem::path& path, const std::string& contents);
void write_json_atomic(const std::filesystem::path& path, const nlohmann::json& value);

// The general form for writers that take a file name (LibTorch archives, ONNX models): `write` fills the
// temporary path it is given; the file is then flushed to disk and renamed over `path`. Any failure (disk
// full, read-only, permission, an exception from `write`) removes the temporary file and is one qnas::Error
// naming `path`, the cause and the fix; an earlier file at `path` is kept as it was.
void write_atomically(const std::filesystem::path& path,
                      const std::function<void(const std::filesystem::path& temp)>& write);

// create_directories with a qnas::Error (cause and fix) instead of std::filesystem_error.
void create_directories_or_fail(const std::filesystem::path& dir);

// Creates `dir` and writes and removes a probe file there, so a long job on a read-only or full disk stops at
// its start with one clear error instead of at its first checkpoint. `option` names how the user chose the
// directory (e.g. "--run-dir"), for the fix.
void require_writable_directory(const std::filesystem::path& dir, std::string_view option);

// Why a write into `dir` failed, in words a user acts on: disk full (with the free space), read-only file
// system, no permission, the file size limit, or the system's text for `error_number`.
std::string write_failure_cause(const std::filesystem::path& dir, int error_number);

// Parses JSON with an error that names the file and the position.
nlohmann::json read_json_file(const std::filesystem::path& path);

}  // namespace qnas
