// What every fuzz target shares: the input split into named files, a private scratch directory
// to write them to (the loaders under test read paths, as a user's run does), and the rule every
// target asserts: a parser either accepts its input or throws rlrf::Error; anything else (another
// exception type, a crash, a hang, an allocation past libFuzzer's -malloc_limit_mb) is a finding.
//
// An input holding several files separates them with a line "--file--": for example a MovieLens
// directory is u.genre, u.user, u.item and u.data, in that order. Missing parts are empty files.
#pragma once
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "util/error.h"

namespace rlrf::fuzz {

inline constexpr std::string_view kFileSeparator = "\n--file--\n";

// The input cut at each separator, always `n` parts (the rest joined into the last; missing empty).
inline std::vector<std::string> split_parts(const uint8_t* data, size_t size, size_t n) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts;
  while (parts.size() + 1 < n) {
    size_t at = in.find(kFileSeparator);
    if (at == std::string_view::npos) break;
    parts.emplace_back(in.substr(0, at));
    in.remove_prefix(at + kFileSeparator.size());
  }
  parts.emplace_back(in);
  parts.resize(n);
  return parts;
}

// A directory of this process's own under the system temp directory, emptied on every call.
inline std::filesystem::path scratch_dir() {
  static const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("rlrf-fuzz-" + std::to_string(::getpid()));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir);
  return dir;
}

inline void write_bytes(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Runs the parser: accepted or rejected with rlrf::Error are both fine; any other exception
// escapes, which libFuzzer (and the corpus replay) reports as a crash with the input saved.
template <typename F>
void accepts_or_rejects(F&& parse) {
  try {
    parse();
  } catch (const rlrf::Error& e) {
    static const bool verbose = std::getenv("RLRF_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "rejected: %s\n", e.what());
  }
}

}  // namespace rlrf::fuzz
