// What both tokenizer.json loaders (BPE: tokenizer_load.cpp, WordPiece: wordpiece.cpp) share: the
// file they read, and errors that name it and refuse a component they do not implement.
#pragma once
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "util/error.h"

namespace rlrf {

struct TokenizerJsonFile {
  std::filesystem::path file;
  std::string_view implementer;  // "this tokenizer", "the WordPiece tokenizer"

  [[noreturn]] void refuse(std::string_view component, std::string_view type, std::string_view supported) const {
    fail("{}: unsupported {} '{}' ({} implements {}); refusing rather than tokenizing wrongly", file.string(), component,
         type, implementer, supported);
  }
  [[noreturn]] void bad(std::string_view what) const { fail("{}: malformed tokenizer.json: {}", file.string(), what); }

  // A component's "type" ("" when absent), and a boolean flag with its fallback.
  static std::string type_of(const nlohmann::json& j) {
    auto it = j.find("type");
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  }
  static bool flag(const nlohmann::json& j, const char* key, bool fallback) {
    auto it = j.find(key);
    return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
  }
};

}  // namespace rlrf
