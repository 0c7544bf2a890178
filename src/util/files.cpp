// Files and directories: where shared data lives, reading whole files, atomic writes.
#include "util/files.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "util/error.h"

#ifndef RLRF_SOURCE_DIR
#define RLRF_SOURCE_DIR "."
#endif

namespace rlrf {

fs::path source_dir() { return fs::path(RLRF_SOURCE_DIR); }

fs::path shared_dir() {
  if (const char* env = std::getenv("RLRF_SHARED"); env && *env) return fs::path(env);
  for (const fs::path& candidate : {source_dir() / ".." / "shared", fs::path("..") / "shared"}) {
    std::error_code ec;
    if (fs::is_directory(candidate, ec)) return fs::weakly_canonical(candidate);
  }
  return {};
}

fs::path data_dir(const fs::path& override_dir) {
  if (!override_dir.empty()) return override_dir;
  if (const char* env = std::getenv("RLRF_DATA_DIR"); env && *env) return fs::path(env);
  fs::path shared = shared_dir();
  std::error_code ec;
  if (!shared.empty() && fs::is_directory(shared / "data", ec)) return shared / "data";
  return deps_dir() / "data";
}

fs::path deps_dir() {
  if (const char* env = std::getenv("RLRF_DEPS_DIR"); env && *env) return fs::path(env);
  return source_dir() / ".deps";
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '{}' for reading (does it exist? is the data directory right?)", path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void ensure_dir(const fs::path& dir) {
  if (dir.empty()) return;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("cannot create directory '{}': {}", dir.string(), ec.message());
}

std::string storage_hint(const fs::path& path) {
  std::error_code ec;
  fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  while (!dir.empty() && !fs::exists(dir, ec) && dir.has_parent_path() && dir != dir.parent_path()) dir = dir.parent_path();
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return "";
  if (st.f_flag & ST_RDONLY) return fmt::format(" (the file system holding '{}' is read-only)", dir.string());
  const unsigned long long free_bytes = static_cast<unsigned long long>(st.f_bavail) * st.f_frsize;
  if (free_bytes < (1ull << 20)) return fmt::format(" (the file system holding '{}' has {} bytes free)", dir.string(), free_bytes);
  return "";
}

void write_file_atomic(const fs::path& path, std::string_view content) {
  ensure_dir(path.parent_path());
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail("cannot open '{}' for writing{}", tmp.string(), storage_hint(tmp));
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.flush();
    if (!out) fail("write to '{}' failed{}", tmp.string(), storage_hint(tmp));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail("cannot move '{}' to '{}': {}", tmp.string(), path.string(), ec.message());
}

std::vector<std::string> read_lines(const fs::path& path) {
  std::string all = read_file(path);
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < all.size()) {
    size_t end = all.find('\n', start);
    if (end == std::string::npos) end = all.size();
    size_t stop = end;
    if (stop > start && all[stop - 1] == '\r') --stop;
    lines.emplace_back(all, start, stop - start);
    start = end + 1;
  }
  return lines;
}

fs::path fresh_temp_dir(const std::string& name) {
  fs::path base;
  if (const char* env = std::getenv("RLRF_TEST_TMP"); env && *env) base = env;
  else base = fs::temp_directory_path() / "rlrf_test";
  fs::path dir = base / name;
  std::error_code ec;
  fs::remove_all(dir, ec);
  ensure_dir(dir);
  return dir;
}

}  // namespace rlrf
