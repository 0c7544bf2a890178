// Errors the user can act on: one exception type whose message names the file, line, tensor or key
// and what was wrong. The CLI prints it and exits with status 1; nothing already written is lost.
#pragma once
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace rlrf {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// fail("{}:{}: expected 4 fields, got {}", path, line, n) throws Error with the formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace rlrf

// RLRF_CHECK(cond, "format", args...): throws rlrf::Error with the message when cond is false.
#define RLRF_CHECK(cond, ...)              \
  do {                                     \
    if (!(cond)) ::rlrf::fail(__VA_ARGS__); \
  } while (0)
