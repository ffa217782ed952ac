#pragma once
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

}  // namespace qnas
