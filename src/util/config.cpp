// TOML configuration through toml++: typed reads with errors naming file and key, unknown-key checks.
#include "util/config.h"

#include <cstdint>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "util/error.h"
#include "util/files.h"

namespace rlrf {

struct ConfigSection::Impl {
  std::shared_ptr<toml::table> owner;  // keeps the root alive
  const toml::table* table = nullptr;
  std::string where;
  mutable std::set<std::string> used;
  mutable std::mutex mu;
};

struct ConfigFile::Impl {
  std::shared_ptr<toml::table> root;
  std::string path;
};

ConfigSection::ConfigSection() : impl_(std::make_shared<Impl>()) { impl_->where = "(defaults)"; }
ConfigSection::ConfigSection(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

namespace {

const toml::node* lookup(const ConfigSection::Impl& s, std::string_view key) {
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.used.insert(std::string(key));
  }
  if (!s.table) return nullptr;
  return s.table->get(key);
}

[[noreturn]] void type_error(const ConfigSection::Impl& s, std::string_view key, const char* want,
                             const toml::node& n) {
  const auto& src = n.source();
  fail("{}: key '{}' (line {}) must be {}, got {}", s.where, key, src.begin.line, want, toml::impl::node_type_friendly_names[static_cast<int>(n.type())]);
}

template <typename T>
void read_array(const ConfigSection::Impl& s, std::string_view key, std::vector<T>& out, const char* want) {
  const toml::node* n = lookup(s, key);
  if (!n) return;
  const toml::array* arr = n->as_array();
  if (!arr) type_error(s, key, want, *n);
  std::vector<T> values;
  for (const toml::node& e : *arr) {
    if constexpr (std::is_same_v<T, std::string>) {
      auto v = e.value<std::string>();
      if (!v) type_error(s, key, want, e);
      values.push_back(*v);
    } else if constexpr (std::is_same_v<T, double>) {
      auto v = e.value<double>();  // integers convert
      if (!v) type_error(s, key, want, e);
      values.push_back(*v);
    } else {
      if (!e.is_integer()) type_error(s, key, want, e);
      values.push_back(static_cast<T>(*e.value<int64_t>()));
    }
  }
  out = std::move(values);
}

}  // namespace

void ConfigSection::read(std::string_view key, bool& out) const {
  const toml::node* n = lookup(*impl_, key);
  if (!n) return;
  if (!n->is_boolean()) type_error(*impl_, key, "a boolean", *n);
  out = *n->value<bool>();
}
void ConfigSection::read(std::string_view key, int64_t& out) const {
  const toml::node* n = lookup(*impl_, key);
  if (!n) return;
  if (!n->is_integer()) type_error(*impl_, key, "an integer", *n);
  out = *n->value<int64_t>();
}
void ConfigSection::read(std::string_view key, int& out) const {
  int64_t v = out;
  read(key, v);
  out = static_cast<int>(v);
}
void ConfigSection::read(std::string_view key, double& out) const {
  const toml::node* n = lookup(*impl_, key);
  if (!n) return;
  if (!n->is_number()) type_error(*impl_, key, "a number", *n);
  out = *n->value<double>();
}
void ConfigSection::read(std::string_view key, float& out) const {
  double v = out;
  read(key, v);
  out = static_cast<float>(v);
}
void ConfigSection::read(std::string_view key, std::string& out) const {
  const toml::node* n = lookup(*impl_, key);
  if (!n) return;
  if (!n->is_string()) type_error(*impl_, key, "a string", *n);
  out = *n->value<std::string>();
}
void ConfigSection::read(std::string_view key, std::vector<int>& out) const {
  read_array(*impl_, key, out, "an array of integers");
}
void ConfigSection::read(std::string_view key, std::vector<double>& out) const {
  read_array(*impl_, key, out, "an array of numbers");
}
void ConfigSection::read(std::string_view key, std::vector<std::string>& out) const {
  read_array(*impl_, key, out, "an array of strings");
}

bool ConfigSection::has(std::string_view key) const { return impl_->table && impl_->table->contains(key); }

ConfigSection ConfigSection::sub(std::string_view name) const {
  auto impl = std::make_shared<Impl>();
  impl->owner = impl_->owner;
  impl->where = impl_->where.substr(0, impl_->where.size() - 1) + "." + std::string(name) + "]";
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->used.insert(std::string(name));
  }
  if (impl_->table) {
    if (const toml::node* n = impl_->table->get(name)) {
      impl->table = n->as_table();
      if (!impl->table) fail("{}: '{}' must be a table", impl_->where, name);
    }
  }
  return ConfigSection(impl);
}

void ConfigSection::check_no_unknown_keys() const {
  if (!impl_->table) return;
  std::string unknown;
  for (const auto& [k, v] : *impl_->table) {
    if (!impl_->used.count(std::string(k.str()))) unknown += (unknown.empty() ? "" : ", ") + std::string(k.str());
  }
  if (!unknown.empty()) fail("{}: unknown key(s): {} (check the spelling; see configs/demo.toml)", impl_->where, unknown);
}

void ConfigSection::refuse(std::string_view key, std::string_view use) const {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->used.insert(std::string(key));
  }
  if (has(key)) fail("{}: key '{}' is not read here: use {}", impl_->where, key, use);
}

std::vector<std::string> ConfigSection::keys() const {
  std::vector<std::string> out;
  if (impl_->table)
    for (const auto& [k, v] : *impl_->table) out.push_back(std::string(k.str()));
  return out;
}

std::string ConfigSection::canonical() const {
  if (!impl_->table) return "";
  // Keys that only say how the work is spread over the machine leave the results as they are, so
  // they stay out of the fingerprints that decide whether a stage must run again.
  toml::table t = *impl_->table;
  // So do the serving client's settings that do not change texts, and [dpo] command (how the
  // external trainer is started, not what it trains: a fixed command retries the failed round only).
  for (const char* key : {"threads", "jobs", "workers", "concurrency", "timeout_s", "max_retries", "api_key_env",
                          "reload_command", "command"})
    t.erase(key);
  std::ostringstream ss;
  ss << t;
  return ss.str();
}

const std::string& ConfigSection::where() const { return impl_->where; }

ConfigFile ConfigFile::parse(std::string_view text, std::string source_name) {
  ConfigFile f;
  f.impl_ = std::make_shared<Impl>();
  f.impl_->path = source_name;
  try {
    f.impl_->root = std::make_shared<toml::table>(toml::parse(text, source_name));
  } catch (const toml::parse_error& e) {
    fail("{}:{}:{}: {}", source_name, e.source().begin.line, e.source().begin.column, e.description());
  }
  return f;
}

ConfigFile ConfigFile::load(const std::filesystem::path& path) {
  std::ifstream probe(path);
  if (!probe) fail("cannot open config '{}'", path.string());
  std::stringstream ss;
  ss << probe.rdbuf();
  return parse(ss.str(), path.string());
}

void ConfigFile::set(std::string_view assignment) {
  size_t eq = assignment.find('=');
  if (eq == std::string_view::npos) fail("--set '{}': expected section.key=value", assignment);
  std::string lhs(assignment.substr(0, eq));
  std::string rhs(assignment.substr(eq + 1));
  size_t dot = lhs.rfind('.');
  std::string key = dot == std::string::npos ? lhs : lhs.substr(dot + 1);
  std::string path = dot == std::string::npos ? "" : lhs.substr(0, dot);
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + rhs);
  } catch (const toml::parse_error&) {
    parsed = toml::table{{"v", rhs}};  // a bare word: take it as a string
  }
  toml::table* t = impl_->root.get();
  std::stringstream ps(path);
  std::string part;
  while (!path.empty() && std::getline(ps, part, '.')) {
    if (!t->contains(part)) t->insert(part, toml::table{});
    toml::node* n = t->get(part);
    if (!n->is_table()) fail("--set '{}': '{}' is not a table", assignment, part);
    t = n->as_table();
  }
  t->insert_or_assign(key, *parsed.get("v"));
}

ConfigSection ConfigFile::section(std::string_view name) const {
  auto impl = std::make_shared<ConfigSection::Impl>();
  impl->owner = impl_->root;
  impl->where = impl_->path + " [" + std::string(name) + "]";
  if (name.empty()) {
    impl->table = impl_->root.get();
    impl->where = impl_->path + " []";
  } else if (const toml::node* n = impl_->root->get(name)) {
    impl->table = n->as_table();
    if (!impl->table) fail("{}: '{}' must be a table", impl_->path, name);
  }
  return ConfigSection(impl);
}

bool ConfigFile::has_section(std::string_view name) const { return impl_->root->contains(name); }

std::string ConfigFile::canonical() const {
  std::ostringstream ss;
  ss << *impl_->root;
  return ss.str();
}

const std::string& ConfigFile::path() const { return impl_->path; }

std::filesystem::path expand_path(const std::string& path) {
  std::string out = path;
  auto replace = [&](const std::string& key, const std::filesystem::path& value) {
    for (size_t pos = out.find(key); pos != std::string::npos; pos = out.find(key)) {
      RLRF_CHECK(!value.empty(), "path '{}' uses {} but no such directory was found (set RLRF_SHARED)", path, key);
      out.replace(pos, key.size(), value.string());
    }
  };
  replace("{shared}", shared_dir());
  replace("{deps}", deps_dir());
  return out;
}

}  // namespace rlrf
