// Typed reads of a JSON object's keys (config.json files and the like): a missing key gives the
// fallback (or an error when required), a key of the wrong type an error naming the file and key.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "util/error.h"

namespace rlrf {

struct JsonReader {
  const nlohmann::json& j;
  const std::string& where;  // the file (and object) being read, for messages

  bool has(const char* key) const { return j.contains(key) && !j[key].is_null(); }

  int64_t get_int(const char* key, int64_t fallback, bool required = false) const {
    if (!has(key)) {
      RLRF_CHECK(!required, "{}: required key \"{}\" is missing", where, key);
      return fallback;
    }
    RLRF_CHECK(j[key].is_number_integer(), "{}: \"{}\" should be an integer, got {}", where, key, j[key].dump());
    return j[key].get<int64_t>();
  }
  double get_double(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    RLRF_CHECK(j[key].is_number(), "{}: \"{}\" should be a number, got {}", where, key, j[key].dump());
    return j[key].get<double>();
  }
  bool get_bool(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    RLRF_CHECK(j[key].is_boolean(), "{}: \"{}\" should be true or false, got {}", where, key, j[key].dump());
    return j[key].get<bool>();
  }
  std::string get_string(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    RLRF_CHECK(j[key].is_string(), "{}: \"{}\" should be a string, got {}", where, key, j[key].dump());
    return j[key].get<std::string>();
  }
};

}  // namespace rlrf
