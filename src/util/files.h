// Files and directories: where shared data lives, reading whole files, atomic writes.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace rlrf {

namespace fs = std::filesystem;

// The project's source root (compiled in), used to find ../shared and .deps.
fs::path source_dir();

// The shared directory holding data/, models/, tokenizers/, reference/: $RLRF_SHARED, else
// <source>/../shared, else ./../shared. Empty path when none exists.
fs::path shared_dir();

// The data directory: `override` if non-empty, else $RLRF_DATA_DIR, else <shared>/data when present,
// else <source>/.deps/data (where scripts/setup.sh downloads MovieLens).
fs::path data_dir(const fs::path& override_dir = {});

// Dependencies installed by scripts/setup.sh (GloVe vectors): $RLRF_DEPS_DIR, else <source>/.deps.
fs::path deps_dir();

// Reads a whole file; throws Error naming the path when it cannot be opened.
std::string read_file(const fs::path& path);

// Writes `content` to `path` through a temporary file and a rename, so a crash never leaves a
// half-written file in place. Creates parent directories.
void write_file_atomic(const fs::path& path, std::string_view content);

// What the file system holding `path` (or its nearest existing parent) says about a failed write:
// " (the file system holding DIR is read-only)", " (the file system holding DIR has N bytes free)"
// when under 1 MiB is free, else "". Appended to write errors so that a user sees the cause.
std::string storage_hint(const fs::path& path);

// Creates a directory and its parents; throws Error naming the path on failure.
void ensure_dir(const fs::path& dir);

// Lines of a text file without their line terminators ("\r\n" or "\n").
std::vector<std::string> read_lines(const fs::path& path);

// A directory for scratch files of tests: $RLRF_TEST_TMP or the system temp dir, plus `name`,
// emptied on creation.
fs::path fresh_temp_dir(const std::string& name);

}  // namespace rlrf
