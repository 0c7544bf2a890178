// Logging to stderr with a level read once from the RLRF_LOG environment variable.
#include "util/log.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace rlrf {
namespace {

LogLevel level_from_env() {
  const char* v = std::getenv("RLRF_LOG");
  if (!v) return LogLevel::kInfo;
  if (!std::strcmp(v, "debug")) return LogLevel::kDebug;
  if (!std::strcmp(v, "warn")) return LogLevel::kWarn;
  if (!std::strcmp(v, "error")) return LogLevel::kError;
  return LogLevel::kInfo;
}

LogLevel& current_level() {
  static LogLevel level = level_from_env();
  return level;
}

}  // namespace

LogLevel log_level() { return current_level(); }
void set_log_level(LogLevel level) { current_level() = level; }

void log_write(LogLevel level, std::string_view message) {
  static std::mutex mu;
  static const char* kTags[] = {"debug", "info", "warn", "error"};
  std::lock_guard<std::mutex> lock(mu);
  std::fprintf(stderr, "[%s] %.*s\n", kTags[static_cast<int>(level)], static_cast<int>(message.size()),
               message.data());
  std::fflush(stderr);
}

}  // namespace rlrf
