#pragma once
// Helpers every test suite shares.
#include <csignal>
#include <cstdlib>
#include <string>

#include <sys/resource.h>

#include <gtest/gtest.h>

#include "core/error.h"

namespace qnas::testing {

// Runs `action`, which must throw qnas::Error, and returns the message ("" and a test failure otherwise).
template <typename Action>
std::string error_message(Action&& action) {
  try {
    action();
  } catch (const qnas::Error& error) {
    return error.what();
  }
  ADD_FAILURE() << "expected a qnas::Error";
  return "";
}

// While alive, no file this process writes may grow beyond `bytes` (RLIMIT_FSIZE): a write past it fails with
// EFBIG, the way a full disk fails with ENOSPC, without needing a small file system (or root to mount one).
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved_);
    previous_handler_ = std::signal(SIGXFSZ, SIG_IGN);  // the default action kills the process
    rlimit limit = saved_;
    limit.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, previous_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit saved_{};
  void (*previous_handler_)(int) = SIG_DFL;
};

// Sets an environment variable for one scope (tests run one per process under CTest, so no race).
class ScopedEnvironment {
 public:
  ScopedEnvironment(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) saved_ = old, had_value_ = true;
    setenv(name, value, 1);
  }
  ~ScopedEnvironment() {
    if (had_value_) {
      setenv(name_.c_str(), saved_.c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }
  ScopedEnvironment(const ScopedEnvironment&) = delete;
  ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;

 private:
  std::string name_, saved_;
  bool had_value_ = false;
};

}  // namespace qnas::testing

#define EXPECT_CONTAINS(text, part)                          \
  EXPECT_NE(std::string(text).find(part), std::string::npos) \
      << "message: " << (text) << "\nmissing: " << (part)
