#pragma once
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace qnas {

// Splits on every separator, keeping empty fields ("a##b" -> {"a", "", "b"}), so a malformed encoding or CSV
// row shows up as a wrong field count instead of being silently repaired.
inline std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts(1);
  for (char c : text) {
    if (c == separator) {
      parts.emplace_back();
    } else {
      parts.back() += c;
    }
  }
  return parts;
}

// The whole text as a finite number, or nothing: no leading/trailing junk, no overflow, no "nan"/"inf".
inline std::optional<double> parse_number(const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || errno != 0 || !std::isfinite(value)) return {};
  return value;
}

// The first line of a message: LibTorch's exceptions carry a stack trace after it.
inline std::string first_line(const std::string& text) {
  return text.substr(0, text.find('\n'));
}

}  // namespace qnas
