// TOML configuration: one config struct per stage reads its own [section]. Unknown keys are errors
// (a typo must not silently fall back to a default), wrong types name the file and the key.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace rlrf {

class ConfigSection {
 public:
  ConfigSection();  // an empty section: every read keeps its default
  // Each read sets `out` when `key` is present and leaves the default otherwise.
  void read(std::string_view key, bool& out) const;
  void read(std::string_view key, int& out) const;
  void read(std::string_view key, int64_t& out) const;
  void read(std::string_view key, double& out) const;
  void read(std::string_view key, float& out) const;
  void read(std::string_view key, std::string& out) const;
  void read(std::string_view key, std::vector<int>& out) const;
  void read(std::string_view key, std::vector<double>& out) const;
  void read(std::string_view key, std::vector<std::string>& out) const;
  bool has(std::string_view key) const;
  ConfigSection sub(std::string_view name) const;  // [section.name]; empty when absent
  // Throws Error listing every key of this section that no read() asked for.
  void check_no_unknown_keys() const;
  // Throws Error naming the file, the section and `key` when the key is set here: a setting whose
  // home is elsewhere; `use` says where ("[knowledge] item").
  void refuse(std::string_view key, std::string_view use) const;
  std::vector<std::string> keys() const;  // the keys set in this section
  // The section as TOML text, without the keys that do not change results (threads, jobs): the
  // input of stage fingerprints.
  std::string canonical() const;
  const std::string& where() const;  // "file.toml [section]" for messages

  struct Impl;
  explicit ConfigSection(std::shared_ptr<Impl> impl);

 private:
  std::shared_ptr<Impl> impl_;
};

class ConfigFile {
 public:
  // Parses the file; a syntax error names the file, line and column.
  static ConfigFile load(const std::filesystem::path& path);
  static ConfigFile parse(std::string_view text, std::string source_name);
  // Applies "section.key=value" (value in TOML syntax; bare words are taken as strings).
  void set(std::string_view assignment);
  ConfigSection section(std::string_view name) const;
  bool has_section(std::string_view name) const;
  std::string canonical() const;
  const std::string& path() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// Replaces {shared} (the shared directory: data, models, tokenizers) and {deps} (what
// scripts/setup.sh installed) in a configured path.
std::filesystem::path expand_path(const std::string& path);

}  // namespace rlrf
