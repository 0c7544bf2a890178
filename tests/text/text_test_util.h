// Shared fixtures of the text tests: the two real tokenizers (loaded once), a small hand-made
// SentencePiece-style tokenizer.json with byte fallback, sample texts, id formatting.
#pragma once
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "text/tokenizer.h"
#include "util/files.h"

namespace rlrf {

inline const Tokenizer& llama3_tokenizer() {
  static const Tokenizer tok = Tokenizer::load(shared_dir() / "tokenizers" / "llama-3.1");
  return tok;
}

inline const Tokenizer& tinystories_tokenizer() {
  static const Tokenizer tok = Tokenizer::load(shared_dir() / "models" / "tinystories-656k");
  return tok;
}

inline std::string ids_str(const std::vector<int32_t>& ids) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < ids.size(); ++i) s << (i ? ", " : "") << ids[i];
  s << "]";
  return s.str();
}

// Texts for round trips: ASCII, accents, CJK, emoji (4-byte), tabs and newlines, special strings.
inline std::vector<std::string> sample_texts() {
  return {"Hello, my dog is cute",
          "  leading and trailing spaces  ",
          "Unicode: café, naïve, 東京, Ж, emoji 🎬🍿 and tabs\tand\nnewlines\n\n",
          "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)",
          "日本語のテキストと中文文本，还有한국어.",
          "🎬🍿🧑‍🤝‍🧑 👍🏽",
          "",
          "don't won't I'm you're they'll we've it's"};
}

// A SentencePiece-style BPE (Prepend/Replace normalizer, byte fallback for bytes 0x0A and
// 0x80..0xFF only, fuse_unk) with merges in the [a, b] pair format, a special BOS/EOS, and a
// non-special added token "<sep>" that swallows the spaces around it (lstrip/rstrip).
inline nlohmann::json tiny_bpe_json() {
  using nlohmann::json;
  json vocab = json::object();
  int id = 0;
  for (const char* t : {"<unk>", "<s>", "</s>"}) vocab[t] = id++;
  char name[8];
  std::snprintf(name, sizeof name, "<0x%02X>", 0x0A);
  vocab[name] = id++;
  for (int b = 0x80; b < 0x100; ++b) {
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = id++;
  }
  for (const char* t : {"\u2581", "a", "b", "c", "\u2581a", "ab", "\u2581ab", "<sep>"}) vocab[t] = id++;
  json added = json::array();
  auto add = [&](const char* content, bool special, bool strip) {
    added.push_back({{"id", vocab[content]},
                     {"content", content},
                     {"single_word", false},
                     {"lstrip", strip},
                     {"rstrip", strip},
                     {"normalized", false},
                     {"special", special}});
  };
  add("<unk>", true, false);
  add("<s>", true, false);
  add("</s>", true, false);
  add("<sep>", false, true);
  return json{{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", added},
              {"normalizer",
               {{"type", "Sequence"},
                {"normalizers",
                 {{{"type", "Prepend"}, {"prepend", "\u2581"}},
                  {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}}}}},
              {"pre_tokenizer", nullptr},
              {"post_processor",
               {{"type", "TemplateProcessing"},
                {"single",
                 {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                {"pair", json::array()},
                {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
              {"decoder",
               {{"type", "Sequence"},
                {"decoders",
                 {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                  {{"type", "ByteFallback"}},
                  {{"type", "Fuse"}},
                  {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
              {"model",
               {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", "<unk>"},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", true},
                {"byte_fallback", true},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", json::array({json::array({"\u2581", "a"}), json::array({"a", "b"}),
                                        json::array({"\u2581a", "b"})})}}}};
}

// Writes tiny_bpe_json() (no tokenizer_config.json) to a fresh directory and loads it.
inline Tokenizer tiny_bpe_tokenizer() {
  fs::path dir = fresh_temp_dir("tiny_bpe");
  write_file_atomic(dir / "tokenizer.json", tiny_bpe_json().dump());
  return Tokenizer::load(dir);
}

}  // namespace rlrf
