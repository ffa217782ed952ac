#pragma once
// File helpers that never leave a half-written file behind.
#include <cstdint>
#include <filesystem>
#include <string>
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

// Parses JSON with an error that names the file and the position.
nlohmann::json read_json_file(const std::filesystem::path& path);

}  // namespace qnas
