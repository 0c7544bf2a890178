// Helpers of the data tests: writing small files in the real formats (plain or gzipped) and
// checking that an Error names a file and a line.
#pragma once
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "util/error.h"
#include "util/files.h"

namespace rlrf::test {

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  ASSERT_TRUE(out) << path;
  out << text;
}

inline void write_gz(const std::filesystem::path& path, const std::string& text) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, text.data(), static_cast<unsigned>(text.size())), static_cast<int>(text.size()));
  gzclose(f);
}

// Runs `body`, expects an Error whose message holds every one of `parts`; returns the message.
inline std::string expect_error(const std::function<void()>& body, std::initializer_list<std::string> parts) {
  try {
    body();
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    return msg;
  }
  ADD_FAILURE() << "expected an rlrf::Error";
  return {};
}

inline std::filesystem::path ml100k_dir() { return shared_dir() / "data" / "ml-100k"; }
inline std::filesystem::path ml1m_dir() { return shared_dir() / "data" / "ml-1m"; }

}  // namespace rlrf::test
