// The message of the project error (rlrf::Error) that `f` throws: tests assert what an error says
// and that it is the project's error type (any other exception escapes and fails the test; no
// exception at all is a test failure, and gives "").
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "util/error.h"

namespace rlrf::test {

inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const rlrf::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error was thrown";
  return "";
}

}  // namespace rlrf::test
