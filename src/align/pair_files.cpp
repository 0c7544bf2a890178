// Reading TRL and LLaMA-Factory preference files into token pairs (formats in pair_files.h).
#include "align/pair_files.h"

#include <cstdint>
#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "text/chat_template.h"
#include "util/error.h"
#include "util/files.h"
#include "util/json_reader.h"
#include "util/strings.h"

namespace rlrf {

namespace {

using json = nlohmann::json;

std::vector<ChatMessage> messages_of(const json& j, const std::string& where, const char* column) {
  std::vector<ChatMessage> out;
  RLRF_CHECK(j.is_array(), "{}: \"{}\" must be a string or a list of messages", where, column);
  for (const json& m : j) {
    RLRF_CHECK(m.is_object() && m.contains("role") && m.contains("content") && m["role"].is_string() &&
                   m["content"].is_string(),
               "{}: \"{}\": every message needs a string role and content, got {}", where, column, m.dump());
    out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return out;
}

// Content ids of an answer, then its end token, or cut at max_response_tokens without one.
std::vector<int32_t> answer_ids(const Tokenizer& tok, const std::string& text, int32_t end, int max_response_tokens) {
  std::vector<int32_t> ids = tok.encode(text, false);
  if (max_response_tokens > 0 && static_cast<int>(ids.size()) >= max_response_tokens)
    ids.resize(static_cast<size_t>(max_response_tokens));
  else if (end >= 0)
    ids.push_back(end);
  return ids;
}

void finish(std::vector<PreferencePair>& pairs, const PairReadOptions& options, PairFileStats* stats, int64_t from_ids = 0) {
  PairFileStats s;
  s.from_ids = from_ids;
  s.pairs = static_cast<int64_t>(pairs.size());
  for (PreferencePair& p : pairs) {
    const int64_t n = pair_length(p);
    s.longest = std::max(s.longest, n);
    if (options.cutoff_len > 0 && n > options.cutoff_len) {
      ++s.cut;
      cut_pair(p, options.cutoff_len);
    }
  }
  if (stats) *stats = s;
}

}  // namespace

int64_t pair_length(const PreferencePair& p) {
  return static_cast<int64_t>(p.prompt.size() + std::max(p.chosen.size(), p.rejected.size()));
}

bool cut_pair(PreferencePair& p, int cutoff_len) {
  if (cutoff_len <= 0 || pair_length(p) <= cutoff_len) return false;
  const size_t cutoff = static_cast<size_t>(std::max(cutoff_len, 2));
  const size_t room = p.prompt.size() < cutoff ? cutoff - p.prompt.size() : 1;
  for (std::vector<int32_t>* a : {&p.chosen, &p.rejected})
    if (a->size() > room) a->resize(room);
  const size_t answer = std::max(p.chosen.size(), p.rejected.size());
  if (p.prompt.size() + answer > cutoff) p.prompt.resize(cutoff - answer);
  return true;
}

std::vector<PreferencePair> read_trl_pairs(const Tokenizer& tok, const fs::path& path, const PairReadOptions& options,
                                           PairFileStats* stats) {
  const int32_t end_of_turn = end_of_turn_id(tok, options.chat_template);
  const std::vector<int32_t> eos_list = tok.eos_ids();
  const int32_t eos = eos_list.empty() ? -1 : eos_list.front();
  std::vector<PreferencePair> pairs;
  int line_no = 0;
  for (const std::string& line : read_lines(path)) {
    ++line_no;
    if (trim(line).empty()) continue;
    const std::string where = fmt::format("{}:{}", path.string(), line_no);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      fail("{}: not valid JSON: {}", where, e.what());
    }
    RLRF_CHECK(j.is_object() && j.contains("chosen") && j.contains("rejected"),
               "{}: a preference row needs \"chosen\" and \"rejected\" (and \"prompt\", unless it is implicit)", where);
    const bool conversational = j["chosen"].is_array();
    RLRF_CHECK(conversational ? j["rejected"].is_array() : (j["chosen"].is_string() && j["rejected"].is_string()),
               "{}: \"chosen\" and \"rejected\" must both be strings (standard) or both message lists (conversational)", where);
    PreferencePair p;
    p.user = static_cast<int32_t>(pairs.size());
    if (conversational) {
      std::vector<ChatMessage> chosen = messages_of(j["chosen"], where, "chosen");
      std::vector<ChatMessage> rejected = messages_of(j["rejected"], where, "rejected");
      std::vector<ChatMessage> prompt;
      if (j.contains("prompt")) {
        RLRF_CHECK(j["prompt"].is_array(), "{}: a conversational row's \"prompt\" must be a list of messages", where);
        prompt = messages_of(j["prompt"], where, "prompt");
      } else {
        // Implicit prompt: the leading messages both answers share.
        size_t n = 0;
        while (n < chosen.size() && n < rejected.size() && chosen[n].role == rejected[n].role &&
               chosen[n].content == rejected[n].content)
          ++n;
        prompt.assign(chosen.begin(), chosen.begin() + static_cast<std::ptrdiff_t>(n));
        chosen.erase(chosen.begin(), chosen.begin() + static_cast<std::ptrdiff_t>(n));
        rejected.erase(rejected.begin(), rejected.begin() + static_cast<std::ptrdiff_t>(n));
        RLRF_CHECK(!prompt.empty(), "{}: implicit prompt: chosen and rejected share no leading message", where);
      }
      RLRF_CHECK(!chosen.empty() && !rejected.empty(), "{}: chosen and rejected each need an answer message", where);
      p.prompt = encode_chat(tok, prompt, true, options.chat_template);
      p.chosen = answer_ids(tok, chosen.back().content, end_of_turn, options.max_response_tokens);
      p.rejected = answer_ids(tok, rejected.back().content, end_of_turn, options.max_response_tokens);
    } else {
      std::string prompt, chosen = j["chosen"].get<std::string>(), rejected = j["rejected"].get<std::string>();
      if (j.contains("prompt")) {
        RLRF_CHECK(j["prompt"].is_string(), "{}: a standard row's \"prompt\" must be a string", where);
        prompt = j["prompt"].get<std::string>();
      } else {
        // Implicit prompt: the common prefix, less a space just before the difference (that space
        // starts the answers).
        size_t n = 0;
        while (n < chosen.size() && n < rejected.size() && chosen[n] == rejected[n]) ++n;
        if (n > 0 && chosen[n - 1] == ' ') --n;
        RLRF_CHECK(n > 0, "{}: implicit prompt: chosen and rejected share no prefix", where);
        prompt = chosen.substr(0, n);
        chosen.erase(0, n);
        rejected.erase(0, n);
      }
      RLRF_CHECK(!prompt.empty(), "{}: empty prompt", where);
      p.prompt = tok.encode(prompt, false);  // raw text: no template, no special tokens
      p.chosen = answer_ids(tok, chosen, eos, options.max_response_tokens);
      p.rejected = answer_ids(tok, rejected, eos, options.max_response_tokens);
    }
    RLRF_CHECK(!p.chosen.empty() && !p.rejected.empty(), "{}: an empty answer", where);
    pairs.push_back(std::move(p));
  }
  RLRF_CHECK(!pairs.empty(), "{}: no pairs", path.string());
  finish(pairs, options, stats);
  return pairs;
}

std::vector<PreferencePair> read_llamafactory_pairs(const Tokenizer& tok, const fs::path& dir, const std::string& dataset,
                                                    const PairReadOptions& options, PairFileStats* stats) {
  const fs::path info_path = dir / "dataset_info.json";
  json info;
  try {
    info = json::parse(read_file(info_path));
  } catch (const json::exception& e) {
    fail("'{}' is not valid JSON: {}", info_path.string(), e.what());
  }
  RLRF_CHECK(info.is_object() && !info.empty(), "'{}' registers no dataset", info_path.string());
  std::string name = dataset;
  if (name.empty()) {
    RLRF_CHECK(info.size() == 1, "'{}' registers {} datasets; name one (the YAML's dataset key)", info_path.string(),
               info.size());
    name = info.begin().key();
  }
  RLRF_CHECK(info.contains(name), "'{}' has no dataset '{}'", info_path.string(), name);
  const json& entry = info[name];
  const std::string where_entry = fmt::format("'{}' dataset '{}'", info_path.string(), name);
  RLRF_CHECK(entry.is_object() && entry.contains("file_name") && entry["file_name"].is_string(),
             "{}: needs file_name (a string)", where_entry);
  const JsonReader settings{entry, where_entry};
  RLRF_CHECK(settings.get_bool("ranking", false), "{}: \"ranking\": true is missing (not a preference dataset)", where_entry);
  const std::string formatting = settings.get_string("formatting", "alpaca");
  RLRF_CHECK(formatting == "alpaca", "{}: formatting '{}' is not read (alpaca only)", where_entry, formatting);
  std::string col_prompt = "instruction", col_query = "input", col_chosen = "chosen", col_rejected = "rejected", col_system;
  if (entry.contains("columns")) {
    const json& c = entry["columns"];
    const std::string where_columns = where_entry + " columns";
    RLRF_CHECK(c.is_object(), "{}: should be an object naming the columns, got {}", where_columns, c.dump());
    const JsonReader columns{c, where_columns};
    col_prompt = columns.get_string("prompt", col_prompt);
    col_query = columns.get_string("query", col_query);
    col_chosen = columns.get_string("chosen", col_chosen);
    col_rejected = columns.get_string("rejected", col_rejected);
    col_system = columns.get_string("system", col_system);
  }
  const fs::path file = dir / entry["file_name"].get<std::string>();
  json rows;
  try {
    rows = json::parse(read_file(file));
  } catch (const json::exception& e) {
    fail("'{}' is not valid JSON: {}", file.string(), e.what());
  }
  RLRF_CHECK(rows.is_array(), "'{}' should hold a JSON array of rows", file.string());
  const int32_t end_of_turn = end_of_turn_id(tok, options.chat_template);
  std::vector<PreferencePair> pairs;
  int64_t from_ids = 0;
  const int32_t vocab = tok.vocab_size();
  for (size_t i = 0; i < rows.size(); ++i) {
    const json& r = rows[i];
    const std::string where = fmt::format("'{}' row {}", file.string(), i);
    auto text = [&](const std::string& column, bool required) -> std::string {
      if (column.empty() || !r.contains(column) || r[column].is_null()) {
        RLRF_CHECK(!required, "{}: column \"{}\" is missing", where, column);
        return "";
      }
      RLRF_CHECK(r[column].is_string(), "{}: column \"{}\" must be a string", where, column);
      return r[column].get<std::string>();
    };
    RLRF_CHECK(r.is_object(), "{}: a row must be a JSON object", where);
    if (options.use_ids && r.contains("rlrf_prompt_ids") && r.contains("rlrf_chosen_ids") && r.contains("rlrf_rejected_ids")) {
      PreferencePair p;
      p.user = static_cast<int32_t>(i);
      for (auto [column, ids] : {std::pair<const char*, std::vector<int32_t>*>{"rlrf_prompt_ids", &p.prompt},
                                 {"rlrf_chosen_ids", &p.chosen}, {"rlrf_rejected_ids", &p.rejected}}) {
        const json& v = r[column];
        RLRF_CHECK(v.is_array() && !v.empty(), "{}: \"{}\" must be a non-empty list of token ids", where, column);
        for (const json& id : v) {
          RLRF_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < vocab,
                     "{}: \"{}\" holds {}, not a token id of this tokenizer (0..{}): another model's ids?", where, column,
                     id.dump(), vocab - 1);
          ids->push_back(id.get<int32_t>());
        }
      }
      pairs.push_back(std::move(p));
      ++from_ids;
      continue;
    }
    std::string user = text(col_prompt, true);
    const std::string query = text(col_query, false);
    if (!query.empty()) user += "\n" + query;
    std::vector<ChatMessage> messages;
    // A system column present in the row is a system message, even when empty (the run's prompts
    // always render one).
    if (!col_system.empty() && r.contains(col_system) && !r[col_system].is_null())
      messages.push_back({"system", text(col_system, true)});
    messages.push_back({"user", user});
    PreferencePair p;
    p.user = static_cast<int32_t>(i);
    p.prompt = encode_chat(tok, messages, true, options.chat_template);
    p.chosen = answer_ids(tok, text(col_chosen, true), end_of_turn, options.max_response_tokens);
    p.rejected = answer_ids(tok, text(col_rejected, true), end_of_turn, options.max_response_tokens);
    RLRF_CHECK(!p.chosen.empty() && !p.rejected.empty(), "{}: an empty answer", where);
    pairs.push_back(std::move(p));
  }
  RLRF_CHECK(!pairs.empty(), "'{}': no pairs", file.string());
  finish(pairs, options, stats, from_ids);
  return pairs;
}

}  // namespace rlrf
