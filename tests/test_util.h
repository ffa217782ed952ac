#pragma once
// Helpers every test suite shares.
#include <string>

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

}  // namespace qnas::testing

#define EXPECT_CONTAINS(text, part)                          \
  EXPECT_NE(std::string(text).find(part), std::string::npos) \
      << "message: " << (text) << "\nmissing: " << (part)
