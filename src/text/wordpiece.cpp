// WordPieceTokenizer: loading tokenizer.json (WordPiece model, Bert normalizer/pre-tokenizer,
// template post-processor, WordPiece decoder), encoding with truncation, decoding.
#include "text/wordpiece.h"

#include <cstdint>
#include <utf8proc.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "text/string_id_map.h"
#include "text/tokenizer_impl.h"
#include "text/tokenizer_json.h"
#include "text/unicode.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "util/strings.h"

namespace rlrf {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace text;

namespace {

struct NormStep {
  enum class Kind { kBert, kLowercase, kStripAccents, kUnicode, kStrip } kind;
  bool clean_text = true, chinese = true, strip_accents = true, lowercase = true;  // kBert
  std::string form;                                                              // kUnicode
  bool left = false, right = false;                                              // kStrip
};

enum class PreSplit { kBert, kWhitespace };

// One item of a TemplateProcessing template.
struct TemplatePiece {
  int sequence = -1;  // 0 (A) or 1 (B) for a sequence; -1 for special tokens
  std::vector<int32_t> ids;
  int32_t type_id = 0;
};

enum class TruncStrategy { kLongestFirst, kOnlyFirst, kOnlySecond };

// ---------------------------------------------------------------------------------------------
// Character classes, as the Rust tokenizers library defines them for BERT.

// char::is_whitespace (White_Space), which includes \t \n \r.
bool is_bert_whitespace(char32_t c) { return is_unicode_space(c); }

// Unicode "Other" (Cc, Cf, Cn, Co, Cs) except \t \n \r, which count as whitespace.
bool is_bert_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CS:
      return true;
    default:
      return false;
  }
}

// ASCII punctuation (which includes symbols such as $ + < = > ^ ` | ~) or any Unicode P* category.
bool is_bert_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
      return true;
    default:
      return false;
  }
}

// The CJK ideograph blocks the BERT normalizer pads with spaces (the Rust library's table, whose
// Extension E starts at U+2B920).
bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// Calls f(code point) for each character of valid UTF-8 `s`.
template <typename F>
void for_each_char(std::string_view s, F&& f) {
  for (size_t i = 0; i < s.size();) {
    int len = 0;
    char32_t c = utf8_decode_at(s, i, len);
    f(c);
    i += static_cast<size_t>(len);
  }
}

// Lowercase code point by code point (Rust's char::to_lowercase: U+0130 becomes "i" + U+0307).
std::string lowercase(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for_each_char(s, [&](char32_t c) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
    } else if (c == 0x130) {
      out += "i\xCC\x87";
    } else {
      utf8_append(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
    }
  });
  return out;
}

// Drops nonspacing marks (Mn): what remains of accents after NFD.
std::string drop_nonspacing_marks(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for_each_char(s, [&](char32_t c) {
    if (utf8proc_category(static_cast<utf8proc_int32_t>(c)) != UTF8PROC_CATEGORY_MN) utf8_append(out, c);
  });
  return out;
}

bool all_ascii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

// The WordPiece decoder's cleanup of one (space-prefixed) token.
void cleanup_token(std::string& s) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},   {" ' ", "'"},   {" n't", "n't"},
      {" 'm", "'m"},   {" do not", " don't"},         {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) {
    std::string_view f(from);
    if (s.find(f) == std::string::npos) continue;
    std::string out;
    size_t pos = 0;
    for (size_t hit; (hit = s.find(f, pos)) != std::string::npos; pos = hit + f.size()) {
      out.append(s, pos, hit - pos);
      out += to;
    }
    out.append(s, pos, std::string::npos);
    s = std::move(out);
  }
}

}  // namespace

struct WordPieceTokenizer::Impl {
  fs::path file;
  std::vector<std::string> tokens;  // id -> token (model vocabulary, then added tokens)
  std::vector<uint8_t> special;     // per id
  StringIdMap token_ids;            // over tokens
  int32_t unk = -1, pad = -1;
  std::string prefix = "##";
  int max_chars = 100;

  std::vector<AddedToken> added;
  AddedTokenMatcher added_matcher;

  std::vector<NormStep> normalizers;
  std::vector<PreSplit> pre_splits;

  bool has_template = false;
  std::vector<TemplatePiece> single, pair;

  bool has_decoder = false;
  std::string decoder_prefix = "##";
  bool decoder_cleanup = true;

  int trunc_max = 0;  // tokenizer.json truncation.max_length (0: none)
  TruncStrategy trunc_strategy = TruncStrategy::kLongestFirst;
  bool trunc_left = false;
  int model_max_length = 0;

  std::string normalize(std::string_view s) const;
  void pre_tokenize(std::string_view s, std::vector<std::string>& words) const;
  void wordpiece(std::string_view word, std::vector<int32_t>& out) const;
  void encode_text(std::string_view s, std::vector<int32_t>& out) const;
  // The ids of raw text (added tokens matched first), without the post-processor.
  std::vector<int32_t> encode_raw(std::string_view text) const;
  int count_special(const std::vector<TemplatePiece>& t) const {
    int n = 0;
    for (const TemplatePiece& p : t)
      if (p.sequence < 0) n += static_cast<int>(p.ids.size());
    return n;
  }
};

// ---------------------------------------------------------------------------------------------
// Encoding

std::string WordPieceTokenizer::Impl::normalize(std::string_view in) const {
  std::string s(in);
  for (const NormStep& step : normalizers) {
    switch (step.kind) {
      case NormStep::Kind::kBert: {
        if (step.clean_text || step.chinese) {
          std::string out;
          out.reserve(s.size() + 8);
          for_each_char(s, [&](char32_t c) {
            if (step.clean_text) {
              if (c == 0 || c == 0xFFFD || is_bert_control(c)) return;
              if (is_bert_whitespace(c)) c = ' ';
            }
            if (step.chinese && is_cjk(c)) {
              out.push_back(' ');
              utf8_append(out, c);
              out.push_back(' ');
            } else {
              utf8_append(out, c);
            }
          });
          s = std::move(out);
        }
        if (step.strip_accents && !all_ascii(s)) s = drop_nonspacing_marks(unicode_normalize(s, "NFD"));
        if (step.lowercase) s = lowercase(s);
        break;
      }
      case NormStep::Kind::kLowercase:
        s = lowercase(s);
        break;
      case NormStep::Kind::kStripAccents:
        s = drop_nonspacing_marks(s);
        break;
      case NormStep::Kind::kUnicode:
        s = unicode_normalize(s, step.form);
        break;
      case NormStep::Kind::kStrip: {
        size_t b = 0, e = s.size();
        if (step.left)
          while (b < e && is_unicode_space(static_cast<unsigned char>(s[b]))) ++b;  // ASCII whitespace suffices
        if (step.right)
          while (e > b && is_unicode_space(static_cast<unsigned char>(s[e - 1]))) --e;
        s = s.substr(b, e - b);
        break;
      }
    }
  }
  return s;
}

void WordPieceTokenizer::Impl::pre_tokenize(std::string_view s, std::vector<std::string>& words) const {
  if (pre_splits.empty()) {
    if (!s.empty()) words.emplace_back(s);
    return;
  }
  bool punct = std::find(pre_splits.begin(), pre_splits.end(), PreSplit::kBert) != pre_splits.end();
  std::string cur;
  auto flush = [&] {
    if (!cur.empty()) words.push_back(std::move(cur));
    cur.clear();
  };
  for (size_t i = 0; i < s.size();) {
    int len = 0;
    char32_t c = utf8_decode_at(s, i, len);
    if (is_bert_whitespace(c)) {
      flush();
    } else if (punct && is_bert_punctuation(c)) {
      flush();
      words.emplace_back(s.substr(i, static_cast<size_t>(len)));
    } else {
      cur.append(s.substr(i, static_cast<size_t>(len)));
    }
    i += static_cast<size_t>(len);
  }
  flush();
}

// Greedy longest-match-first: the longest vocabulary piece at each position ("##" before all but
// the first); a word with any position that matches nothing, or longer than max_chars characters,
// is one [UNK].
void WordPieceTokenizer::Impl::wordpiece(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<size_t> bounds;  // byte offset of every character start, plus the end
  for (size_t i = 0; i < word.size();) {
    bounds.push_back(i);
    i += static_cast<size_t>(std::max(1, utf8_seq_len(static_cast<unsigned char>(word[i]))));
  }
  const size_t n_chars = bounds.size();
  bounds.push_back(word.size());
  if (static_cast<int64_t>(n_chars) > max_chars) {
    out.push_back(unk);
    return;
  }
  const size_t mark = out.size();
  std::string candidate;
  size_t start = 0;
  while (start < n_chars) {
    int32_t found = -1;
    size_t end = n_chars;
    for (; end > start; --end) {
      std::string_view piece = word.substr(bounds[start], bounds[end] - bounds[start]);
      if (start > 0) {
        candidate.assign(prefix);
        candidate.append(piece);
        found = token_ids.find(candidate);
      } else {
        found = token_ids.find(piece);
      }
      if (found >= 0) break;
    }
    if (found < 0) {
      out.resize(mark);
      out.push_back(unk);
      return;
    }
    out.push_back(found);
    start = end;
  }
}

void WordPieceTokenizer::Impl::encode_text(std::string_view s, std::vector<int32_t>& out) const {
  std::string normalized = normalize(s);
  std::vector<std::string> words;
  pre_tokenize(normalized, words);
  for (const std::string& w : words) wordpiece(w, out);
}

std::vector<int32_t> WordPieceTokenizer::Impl::encode_raw(std::string_view text) const {
  std::string repaired;
  if (!is_valid_utf8(text)) {
    repaired = utf8_repair(text);
    text = repaired;
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 4 + 4);
  size_t seg = 0, i = 0;
  if (!added_matcher.empty()) {
    while (i < text.size()) {
      size_t len = 0;
      int32_t index = added_matcher.may_start(static_cast<unsigned char>(text[i])) ? added_matcher.longest_at(text, i, len)
                                                                                 : -1;
      if (index < 0) {
        ++i;
        continue;
      }
      const AddedToken& a = added[static_cast<size_t>(index)];
      size_t b = i, e = i + len;
      while (a.lstrip && b > seg && text[b - 1] == ' ') --b;
      while (a.rstrip && e < text.size() && text[e] == ' ') ++e;
      if (b > seg) encode_text(text.substr(seg, b - seg), out);
      out.push_back(a.id);
      seg = i = e;
    }
  }
  if (seg < text.size()) encode_text(text.substr(seg), out);
  return out;
}

namespace {

// Cuts `ids` to `keep` entries from the right (or the left).
void cut(std::vector<int32_t>& ids, size_t keep, bool left) {
  if (ids.size() <= keep) return;
  if (left)
    ids.erase(ids.begin(), ids.end() - static_cast<std::ptrdiff_t>(keep));
  else
    ids.resize(keep);
}

}  // namespace

WordPieceEncoding WordPieceTokenizer::encode(std::string_view text, std::optional<std::string_view> pair,
                                             bool add_special, int max_length) const {
  RLRF_CHECK(impl_, "use of a WordPieceTokenizer that was never loaded (call WordPieceTokenizer::load)");
  const Impl& t = *impl_;
  std::vector<int32_t> seq[2];
  seq[0] = t.encode_raw(text);
  const bool is_pair = pair.has_value();
  if (is_pair) seq[1] = t.encode_raw(*pair);

  const std::vector<TemplatePiece>& tmpl = is_pair ? t.pair : t.single;
  const bool use_template = add_special && t.has_template;
  int limit = max_length > 0 ? max_length : max_length == 0 ? t.trunc_max : 0;
  WordPieceEncoding enc;
  if (limit > 0) {
    const int n_special = use_template ? t.count_special(tmpl) : 0;
    RLRF_CHECK(limit > n_special, "{}: max_length {} leaves no room beside the {} special tokens", t.file.string(), limit,
               n_special);
    const size_t budget = static_cast<size_t>(limit - n_special);
    const size_t n0 = seq[0].size(), n1 = seq[1].size();
    if (n0 + n1 > budget) {
      size_t keep0 = n0, keep1 = n1;
      if (!is_pair || t.trunc_strategy == TruncStrategy::kOnlyFirst) {
        RLRF_CHECK(!is_pair || n1 < budget, "{}: truncation only_first cannot fit the second sequence ({} tokens) in {}",
                   t.file.string(), n1, limit);
        keep0 = budget - (is_pair ? n1 : 0);
      } else if (t.trunc_strategy == TruncStrategy::kOnlySecond) {
        RLRF_CHECK(n0 < budget, "{}: truncation only_second cannot fit the first sequence ({} tokens) in {}",
                   t.file.string(), n0, limit);
        keep1 = budget - n0;
      } else {  // longest first, as the Rust library computes it
        size_t a = std::min(n0, n1), b = std::max(n0, n1);
        b = a > budget ? a : std::max(a, budget - a);
        if (a + b > budget) {
          a = budget / 2;
          b = a + budget % 2;
        }
        if (n0 <= n1) {
          keep0 = a;
          keep1 = b;
        } else {
          keep0 = b;
          keep1 = a;
        }
      }
      cut(seq[0], keep0, t.trunc_left);
      cut(seq[1], keep1, t.trunc_left);
      enc.truncated = static_cast<int64_t>(n0 + n1 - seq[0].size() - seq[1].size());
    }
  }

  auto append = [&](const std::vector<int32_t>& ids, int32_t type_id, uint8_t special) {
    enc.ids.insert(enc.ids.end(), ids.begin(), ids.end());
    enc.type_ids.insert(enc.type_ids.end(), ids.size(), type_id);
    enc.special_mask.insert(enc.special_mask.end(), ids.size(), special);
  };
  if (use_template) {
    for (const TemplatePiece& p : tmpl) {
      if (p.sequence < 0)
        append(p.ids, p.type_id, 1);
      else
        append(seq[p.sequence], p.type_id, 0);
    }
  } else {
    append(seq[0], 0, 0);
    if (is_pair) append(seq[1], 1, 0);
  }
  return enc;
}

std::vector<int32_t> WordPieceTokenizer::encode_ids(std::string_view text, bool add_special) const {
  return encode(text, std::nullopt, add_special, -1).ids;
}

std::string WordPieceTokenizer::normalize(std::string_view text) const {
  RLRF_CHECK(impl_, "use of a WordPieceTokenizer that was never loaded");
  return impl_->normalize(is_valid_utf8(text) ? std::string(text) : utf8_repair(text));
}

std::vector<std::string> WordPieceTokenizer::pre_tokenize(std::string_view normalized) const {
  RLRF_CHECK(impl_, "use of a WordPieceTokenizer that was never loaded");
  std::vector<std::string> words;
  impl_->pre_tokenize(normalized, words);
  return words;
}

// ---------------------------------------------------------------------------------------------
// Decoding

std::string WordPieceTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  RLRF_CHECK(impl_, "use of a WordPieceTokenizer that was never loaded");
  const Impl& t = *impl_;
  std::string out;
  size_t index = 0;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= t.tokens.size() || t.tokens[static_cast<size_t>(id)].empty()) continue;
    if (skip_special && t.special[static_cast<size_t>(id)]) continue;
    std::string token = t.tokens[static_cast<size_t>(id)];
    if (!t.has_decoder) {
      if (index > 0) out.push_back(' ');
      out += token;
      ++index;
      continue;
    }
    if (index > 0) {
      if (starts_with(token, t.decoder_prefix))
        token.erase(0, t.decoder_prefix.size());
      else
        token.insert(token.begin(), ' ');
    }
    if (t.decoder_cleanup) cleanup_token(token);
    out += token;
    ++index;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Accessors

int32_t WordPieceTokenizer::vocab_size() const { return static_cast<int32_t>(impl_->tokens.size()); }
int32_t WordPieceTokenizer::token_to_id(std::string_view token) const { return impl_->token_ids.find(token); }
std::string WordPieceTokenizer::id_to_token(int32_t id) const {
  return id >= 0 && id < vocab_size() ? impl_->tokens[static_cast<size_t>(id)] : std::string();
}
bool WordPieceTokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->special[static_cast<size_t>(id)];
}
int32_t WordPieceTokenizer::unk_id() const { return impl_->unk; }
int32_t WordPieceTokenizer::cls_id() const {
  for (const TemplatePiece& p : impl_->single)
    if (p.sequence < 0 && !p.ids.empty()) return p.ids.front();
  return -1;
}
int32_t WordPieceTokenizer::sep_id() const {
  for (auto it = impl_->single.rbegin(); it != impl_->single.rend(); ++it)
    if (it->sequence < 0 && !it->ids.empty()) return it->ids.back();
  return -1;
}
int32_t WordPieceTokenizer::pad_id() const { return impl_->pad; }
int WordPieceTokenizer::num_special_tokens(bool pair) const {
  if (!impl_->has_template) return 0;
  return impl_->count_special(pair ? impl_->pair : impl_->single);
}
int WordPieceTokenizer::model_max_length() const { return impl_->model_max_length; }
const fs::path& WordPieceTokenizer::file() const { return impl_->file; }

// ---------------------------------------------------------------------------------------------
// Loading

namespace {

struct WpLoader : TokenizerJsonFile {
  WordPieceTokenizer::Impl& impl;

  void model(const json& m) {
    std::string type = type_of(m);
    if (type != "WordPiece") refuse("model", type.empty() ? "(no type)" : type, "WordPiece");
    if (!m.contains("vocab") || !m.at("vocab").is_object()) bad("model.vocab is missing or not an object of token -> id");
    int64_t max_id = -1;
    for (const auto& [token, id] : m.at("vocab").items()) {
      if (!id.is_number_integer()) bad(fmt::format("model.vocab['{}'] is not an integer id", token));
      int64_t v = id.get<int64_t>();
      if (v < 0 || v > (1 << 26)) bad(fmt::format("model.vocab['{}'] has id {}", token, v));
      max_id = std::max(max_id, v);
    }
    impl.tokens.assign(static_cast<size_t>(max_id + 1), std::string());
    for (const auto& [token, id] : m.at("vocab").items()) impl.tokens[id.get<size_t>()] = token;
    if (m.contains("continuing_subword_prefix") && m.at("continuing_subword_prefix").is_string())
      impl.prefix = m.at("continuing_subword_prefix").get<std::string>();
    if (m.contains("max_input_chars_per_word") && m.at("max_input_chars_per_word").is_number_integer())
      impl.max_chars = m.at("max_input_chars_per_word").get<int>();
    std::string unk = m.contains("unk_token") && m.at("unk_token").is_string() ? m.at("unk_token").get<std::string>()
                                                                               : "[UNK]";
    for (size_t id = 0; id < impl.tokens.size(); ++id)
      if (impl.tokens[id] == unk) impl.unk = static_cast<int32_t>(id);
    if (impl.unk < 0) bad(fmt::format("model.unk_token '{}' is not in model.vocab", unk));
  }

  void normalizer(const json& j) {
    if (j.is_null()) return;
    std::string type = type_of(j);
    NormStep step{};
    if (type == "Sequence") {
      for (const json& n : j.at("normalizers")) normalizer(n);
      return;
    } else if (type == "BertNormalizer") {
      step.kind = NormStep::Kind::kBert;
      step.clean_text = flag(j, "clean_text", true);
      step.chinese = flag(j, "handle_chinese_chars", true);
      step.lowercase = flag(j, "lowercase", true);
      step.strip_accents = flag(j, "strip_accents", step.lowercase);  // null: follows lowercase
    } else if (type == "Lowercase") {
      step.kind = NormStep::Kind::kLowercase;
    } else if (type == "StripAccents") {
      step.kind = NormStep::Kind::kStripAccents;
    } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
      step.kind = NormStep::Kind::kUnicode;
      step.form = type;
    } else if (type == "Strip") {
      step.kind = NormStep::Kind::kStrip;
      step.left = flag(j, "strip_left", false);
      step.right = flag(j, "strip_right", false);
    } else {
      refuse("normalizer", type, "BertNormalizer, Lowercase, StripAccents, NFC, NFD, NFKC, NFKD, Strip and Sequence");
    }
    impl.normalizers.push_back(step);
  }

  void pre_tokenizer(const json& j) {
    if (j.is_null()) return;
    std::string type = type_of(j);
    if (type == "Sequence") {
      for (const json& p : j.at("pretokenizers")) pre_tokenizer(p);
    } else if (type == "BertPreTokenizer") {
      impl.pre_splits.push_back(PreSplit::kBert);
    } else if (type == "WhitespaceSplit") {
      impl.pre_splits.push_back(PreSplit::kWhitespace);
    } else {
      refuse("pre_tokenizer", type, "BertPreTokenizer, WhitespaceSplit and Sequence");
    }
  }

  int32_t id_of(const std::string& token) const {
    for (size_t id = 0; id < impl.tokens.size(); ++id)
      if (impl.tokens[id] == token) return static_cast<int32_t>(id);
    return -1;
  }

  std::vector<TemplatePiece> template_items(const json& items, const json& specials, const char* which) {
    std::vector<TemplatePiece> out;
    for (const json& item : items) {
      TemplatePiece p;
      if (item.contains("Sequence")) {
        const json& s = item.at("Sequence");
        std::string id = s.at("id").get<std::string>();
        if (id != "A" && id != "B") bad(fmt::format("post_processor {} names sequence '{}' (A or B)", which, id));
        p.sequence = id == "A" ? 0 : 1;
        p.type_id = s.value("type_id", 0);
      } else if (item.contains("SpecialToken")) {
        const json& s = item.at("SpecialToken");
        std::string name = s.at("id").get<std::string>();
        if (!specials.contains(name))
          bad(fmt::format("post_processor special token '{}' missing from its special_tokens", name));
        for (const json& id : specials.at(name).at("ids")) p.ids.push_back(id.get<int32_t>());
        p.type_id = s.value("type_id", 0);
      } else {
        bad(fmt::format("post_processor TemplateProcessing.{} item is neither Sequence nor SpecialToken", which));
      }
      out.push_back(std::move(p));
    }
    return out;
  }

  void post_processor(const json& j) {
    if (j.is_null()) return;
    std::string type = type_of(j);
    if (type == "TemplateProcessing") {
      const json& specials = j.at("special_tokens");
      impl.single = template_items(j.at("single"), specials, "single");
      if (j.contains("pair") && j.at("pair").is_array() && !j.at("pair").empty())
        impl.pair = template_items(j.at("pair"), specials, "pair");
      else  // the Rust library's default pair: the single template with B after A
        for (const TemplatePiece& p : impl.single) {
          impl.pair.push_back(p);
          if (p.sequence == 0) impl.pair.push_back(TemplatePiece{1, {}, 1});
        }
    } else if (type == "BertProcessing") {  // {"sep": ["[SEP]", 102], "cls": ["[CLS]", 101]}
      int32_t cls = j.at("cls").at(1).get<int32_t>(), sep = j.at("sep").at(1).get<int32_t>();
      impl.single = {{-1, {cls}, 0}, {0, {}, 0}, {-1, {sep}, 0}};
      impl.pair = {{-1, {cls}, 0}, {0, {}, 0}, {-1, {sep}, 0}, {1, {}, 1}, {-1, {sep}, 1}};
    } else {
      refuse("post_processor", type, "TemplateProcessing and BertProcessing");
    }
    impl.has_template = true;
  }

  void decoder(const json& j) {
    if (j.is_null()) return;
    std::string type = type_of(j);
    if (type != "WordPiece") refuse("decoder", type, "WordPiece");
    impl.has_decoder = true;
    if (j.contains("prefix") && j.at("prefix").is_string()) impl.decoder_prefix = j.at("prefix").get<std::string>();
    impl.decoder_cleanup = flag(j, "cleanup", true);
  }

  void truncation(const json& j) {
    if (j.is_null()) return;
    impl.trunc_max = j.value("max_length", 0);
    if (j.value("stride", 0) != 0) refuse("truncation option", "stride > 0", "stride 0");
    std::string strategy = j.value("strategy", "LongestFirst");
    if (strategy == "LongestFirst")
      impl.trunc_strategy = TruncStrategy::kLongestFirst;
    else if (strategy == "OnlyFirst")
      impl.trunc_strategy = TruncStrategy::kOnlyFirst;
    else if (strategy == "OnlySecond")
      impl.trunc_strategy = TruncStrategy::kOnlySecond;
    else
      refuse("truncation strategy", strategy, "LongestFirst, OnlyFirst and OnlySecond");
    std::string direction = j.value("direction", "Right");
    if (direction != "Right" && direction != "Left") refuse("truncation direction", direction, "Right and Left");
    impl.trunc_left = direction == "Left";
  }
};

fs::path tokenizer_file(const fs::path& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) ? path / "tokenizer.json" : path;
}

json parse_json(const fs::path& path) {
  std::string content = read_file(path);
  try {
    return json::parse(content);
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON: {}", path.string(), e.what());
  }
}

}  // namespace

WordPieceTokenizer WordPieceTokenizer::load(const fs::path& path) {
  auto t0 = std::chrono::steady_clock::now();
  fs::path file = tokenizer_file(path);
  std::error_code ec;
  if (!fs::exists(file, ec))
    fail("no tokenizer at '{}' (give a tokenizer.json or a directory holding one)", path.string());
  auto impl = std::make_shared<Impl>();
  impl->file = file;
  WpLoader loader{{file, "the WordPiece tokenizer"}, *impl};
  json j = parse_json(file);
  try {
    if (!j.is_object() || !j.contains("model")) loader.bad("no 'model' object at the top level");
    loader.model(j.at("model"));
    if (j.contains("added_tokens") && j.at("added_tokens").is_array()) {
      for (const json& a : j.at("added_tokens")) {
        AddedToken t;
        t.id = a.at("id").get<int32_t>();
        t.content = a.at("content").get<std::string>();
        if (t.id < 0 || t.content.empty()) loader.bad(fmt::format("added token '{}' with id {}", t.content, t.id));
        t.special = WpLoader::flag(a, "special", false);
        t.lstrip = WpLoader::flag(a, "lstrip", false);
        t.rstrip = WpLoader::flag(a, "rstrip", false);
        t.single_word = WpLoader::flag(a, "single_word", false);
        if (t.single_word) loader.refuse("added token option", "single_word: true", "single_word: false");
        impl->added.push_back(std::move(t));
      }
    }
    loader.normalizer(j.value("normalizer", json()));
    loader.pre_tokenizer(j.value("pre_tokenizer", json()));
    loader.post_processor(j.value("post_processor", json()));
    loader.decoder(j.value("decoder", json()));
    loader.truncation(j.value("truncation", json()));
  } catch (const json::exception& e) {
    loader.bad(e.what());
  }
  j = json();

  Impl& t = *impl;
  for (const AddedToken& a : t.added) {
    if (static_cast<size_t>(a.id) >= t.tokens.size()) t.tokens.resize(static_cast<size_t>(a.id) + 1);
    t.tokens[static_cast<size_t>(a.id)] = a.content;
  }
  t.special.assign(t.tokens.size(), 0);
  t.token_ids.build(&t.tokens);
  for (size_t i = 0; i < t.added.size(); ++i) {
    t.token_ids.set(t.added[i].id);
    if (t.added[i].special) t.special[static_cast<size_t>(t.added[i].id)] = 1;
    t.added_matcher.add(t.added[i].content, static_cast<int32_t>(i));
  }
  for (const auto* tmpl : {&t.single, &t.pair})
    for (const TemplatePiece& p : *tmpl)
      for (int32_t id : p.ids)
        if (id < 0 || static_cast<size_t>(id) >= t.tokens.size())
          loader.bad(fmt::format("post_processor id {} out of range", id));

  // tokenizer_config.json: pad_token and model_max_length.
  std::string pad = "[PAD]";
  fs::path config_file = file.parent_path() / "tokenizer_config.json";
  if (fs::exists(config_file, ec)) {
    json cfg = parse_json(config_file);
    if (!cfg.is_object()) fail("{}: expected a JSON object", config_file.string());
    if (auto it = cfg.find("pad_token"); it != cfg.end()) {
      if (it->is_string()) pad = it->get<std::string>();
      if (it->is_object() && it->contains("content")) pad = it->at("content").get<std::string>();
    }
    if (auto it = cfg.find("model_max_length"); it != cfg.end() && it->is_number()) {
      double v = it->get<double>();
      t.model_max_length = v > 0 && v < 1e6 ? static_cast<int>(v) : 0;  // 1e30 means "none"
    }
  }
  t.pad = t.token_ids.find(pad);

  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  log_debug("loaded WordPiece tokenizer {} ({} tokens) in {:.0f} ms", file.string(), t.tokens.size(), ms);
  WordPieceTokenizer tok;
  tok.impl_ = std::move(impl);
  return tok;
}

}  // namespace rlrf
