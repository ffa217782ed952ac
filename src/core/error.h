#pragma once
// One exception type for every user-facing failure: the message names the thing that is wrong and the fix.
// The CLI catches it, prints the message once and exits non-zero.
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace qnas {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace qnas
