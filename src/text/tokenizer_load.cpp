// Reading tokenizer.json (and tokenizer_config.json beside it) into a Tokenizer::Impl. Every
// component type the encoder does not implement is refused with an error naming the file and the
// component, so nothing is ever tokenized silently wrong.
#include <chrono>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>

#include "text/chat_template.h"
#include "text/tokenizer_impl.h"
#include "text/tokenizer_json.h"
#include "text/unicode.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"

namespace rlrf {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace text;

namespace {

// The pattern GPT-2's ByteLevel pre-tokenizer splits with when use_regex is true.
constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Reads tokenizer.json through SAX events: model.vocab and model.merges (most of the file: 128k
// entries and 280k merges for Llama-3) go straight into plain vectors; everything else becomes an
// ordinary JSON value. Skipping the JSON objects for the vocabulary makes loading several times
// faster.
struct RawModel {
  bool has_vocab = false, has_merges = false;
  std::vector<std::pair<std::string, int64_t>> vocab;
  // Merge i is left + right stored back to back: merge_text[merge_at[i] .. merge_at[i + 1]), the
  // left part merge_left[i] bytes long. Joined they are the merged token, so no copy is needed.
  std::string merge_text;
  std::vector<uint32_t> merge_at{0};
  std::vector<uint32_t> merge_left;
  std::string error;  // the first malformed entry met

  size_t merge_count() const { return merge_left.size(); }
  void add_merge(std::string_view left, std::string_view right) {
    merge_text.append(left);
    merge_text.append(right);
    merge_at.push_back(static_cast<uint32_t>(merge_text.size()));
    merge_left.push_back(static_cast<uint32_t>(left.size()));
  }
};

class TokenizerJsonReader {
 public:
  using Dom = nlohmann::detail::json_sax_dom_parser<json>;
  TokenizerJsonReader(json& root, RawModel& raw) : dom_(root, true), raw_(raw) {}

  bool null() {
    return value([&] { return dom_.null(); }, "null");
  }
  bool boolean(bool v) {
    return value([&] { return dom_.boolean(v); }, "a boolean");
  }
  bool number_integer(json::number_integer_t v) {
    if (capture_ == kVocab && depth_ == capture_depth_ + 1) {
      raw_.vocab.emplace_back(std::move(key_), v);
      return true;
    }
    return value([&] { return dom_.number_integer(v); }, "a number");
  }
  bool number_unsigned(json::number_unsigned_t v) {
    return number_integer(static_cast<json::number_integer_t>(std::min<json::number_unsigned_t>(v, INT64_MAX)));
  }
  bool number_float(json::number_float_t v, const std::string& s) {
    return value([&] { return dom_.number_float(v, s); }, "a float");
  }
  bool string(std::string& v) {
    if (capture_ == kMerges) {
      if (depth_ == capture_depth_ + 1) {  // "a b"
        size_t sp = v.find(' ');
        if (sp == std::string::npos || v.find(' ', sp + 1) != std::string::npos) {
          note(
              fmt::format("model.merges[{}] = \"{}\" is not two tokens separated by one space", raw_.merge_count(), v));
          raw_.add_merge("", "");
        } else {
          raw_.add_merge(std::string_view(v).substr(0, sp), std::string_view(v).substr(sp + 1));
        }
        return true;
      }
      if (depth_ == capture_depth_ + 2) {  // ["a", "b"]
        pair_.push_back(std::move(v));
        return true;
      }
    }
    return value([&] { return dom_.string(v); }, "a string");
  }
  bool binary(json::binary_t& v) {
    return value([&] { return dom_.binary(v); }, "binary");
  }

  bool start_object(std::size_t n) {
    if (capture_ == kNone && pending_ == kVocab) {
      pending_ = kNone;
      capture_ = kVocab;
      capture_depth_ = depth_;
      raw_.has_vocab = true;
      if (n != static_cast<std::size_t>(-1)) raw_.vocab.reserve(n);
      ++depth_;
      return true;
    }
    if (capture_ != kNone) {
      note(capture_ == kVocab ? "model.vocab holds an object where an id should be"
                              : "model.merges holds an object where a merge should be");
      ++depth_;
      return true;
    }
    flush_pending();
    ++depth_;
    return dom_.start_object(n);
  }
  bool key(std::string& k) {
    if (capture_ != kNone) {
      key_ = std::move(k);
      return true;
    }
    if (depth_ == 1) root_key_ = k;
    if (depth_ == 2 && root_key_ == "model" && (k == "vocab" || k == "merges")) {
      pending_ = k == "vocab" ? kVocab : kMerges;
      pending_key_ = std::move(k);
      return true;
    }
    return dom_.key(k);
  }
  bool end_object() {
    --depth_;
    if (capture_ != kNone) {
      if (depth_ == capture_depth_) capture_ = kNone;
      return true;
    }
    return dom_.end_object();
  }
  bool start_array(std::size_t n) {
    if (capture_ == kNone && pending_ == kMerges) {
      pending_ = kNone;
      capture_ = kMerges;
      capture_depth_ = depth_;
      raw_.has_merges = true;
      if (n != static_cast<std::size_t>(-1)) raw_.merge_left.reserve(n);
      ++depth_;
      return true;
    }
    if (capture_ != kNone) {
      if (capture_ == kMerges && depth_ == capture_depth_ + 1)
        pair_.clear();
      else
        note(capture_ == kVocab ? "model.vocab holds an array where an id should be"
                                : "model.merges entry nested too deep");
      ++depth_;
      return true;
    }
    flush_pending();
    ++depth_;
    return dom_.start_array(n);
  }
  bool end_array() {
    --depth_;
    if (capture_ != kNone) {
      if (depth_ == capture_depth_) {
        capture_ = kNone;
      } else if (capture_ == kMerges && depth_ == capture_depth_ + 1) {
        if (pair_.size() != 2)
          note(fmt::format("model.merges[{}] is an array of {} strings, not 2", raw_.merge_count(), pair_.size()));
        pair_.resize(2);
        raw_.add_merge(pair_[0], pair_[1]);
      }
      return true;
    }
    return dom_.end_array();
  }
  template <class Exception>  // keeps the exception's own type (parse_error) when rethrown
  bool parse_error(std::size_t pos, const std::string& token, const Exception& e) {
    return dom_.parse_error(pos, token, e);
  }

 private:
  enum Capture { kNone, kVocab, kMerges };
  // A scalar: inside a capture it is an error; a pending vocab/merges key that turns out not to
  // be followed by an object/array goes to the DOM after all (and the loader complains).
  template <typename F>
  bool value(F&& forward, const char* what) {
    if (capture_ != kNone) {
      if (capture_ == kVocab)
        note(fmt::format("model.vocab['{}'] is {}, not an integer id", key_, what));
      else
        note(fmt::format("model.merges[{}] is {}, not \"a b\" or [\"a\", \"b\"]", raw_.merge_count(), what));
      if (capture_ == kMerges && depth_ == capture_depth_ + 1) raw_.add_merge("", "");
      return true;
    }
    flush_pending();
    return forward();
  }
  void flush_pending() {
    if (pending_ == kNone) return;
    pending_ = kNone;
    dom_.key(pending_key_);
  }
  void note(std::string message) {
    if (raw_.error.empty()) raw_.error = std::move(message);
  }

  Dom dom_;
  RawModel& raw_;
  int depth_ = 0;
  std::string root_key_, key_, pending_key_;
  Capture pending_ = kNone, capture_ = kNone;
  int capture_depth_ = 0;
  std::vector<std::string> pair_;
};

struct Loader : TokenizerJsonFile {
  Tokenizer::Impl& impl;
  RawModel raw;

  // {"String": "x"} or {"Regex": "..."}: fills literal or regex.
  void pattern(const json& p, std::string_view where, std::string& literal, std::shared_ptr<Regex>& regex) const {
    if (p.contains("String")) {
      literal = p.at("String").get<std::string>();
      if (literal.empty()) bad(fmt::format("{} has an empty String pattern", where));
    } else if (p.contains("Regex")) {
      regex = std::make_shared<Regex>(p.at("Regex").get<std::string>(), fmt::format("{}: {}", file.string(), where));
    } else {
      bad(fmt::format("{} pattern is neither String nor Regex", where));
    }
  }

  void normalizer(const json& j) {
    if (j.is_null()) return;
    std::string type = type_of(j);
    NormalizerStep step{};
    if (type == "Sequence") {
      for (const json& n : j.at("normalizers")) normalizer(n);
      return;
    } else if (type == "Prepend") {
      step.kind = NormalizerStep::Kind::kPrepend;
      step.content = j.at("prepend").get<std::string>();
    } else if (type == "Replace") {
      step.kind = NormalizerStep::Kind::kReplace;
      pattern(j.at("pattern"), "normalizer Replace", step.pattern, step.regex);
      step.content = j.at("content").get<std::string>();
    } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
      step.kind = NormalizerStep::Kind::kUnicode;
      step.pattern = type;
    } else if (type == "Lowercase") {
      step.kind = NormalizerStep::Kind::kLowercase;
    } else if (type == "Strip") {
      step.kind = NormalizerStep::Kind::kStrip;
      step.left = flag(j, "strip_left", false);
      step.right = flag(j, "strip_right", false);
    } else {
      refuse("normalizer", type, "Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase and Strip");
    }
    impl.normalizers.push_back(std::move(step));
  }

  void pre_tokenizer(const json& j) {
    if (j.is_null()) return;
    std::string type = type_of(j);
    PreTokenizerStep step{};
    if (type == "Sequence") {
      for (const json& p : j.at("pretokenizers")) pre_tokenizer(p);
      return;
    } else if (type == "Split") {
      step.kind = PreTokenizerStep::Kind::kSplit;
      pattern(j.at("pattern"), "pre_tokenizer Split", step.literal, step.regex);
      std::string behavior = j.at("behavior").get<std::string>();
      if (behavior == "Isolated")
        step.behavior = SplitBehavior::kIsolated;
      else if (behavior == "Removed")
        step.behavior = SplitBehavior::kRemoved;
      else if (behavior == "MergedWithPrevious")
        step.behavior = SplitBehavior::kMergedWithPrevious;
      else if (behavior == "MergedWithNext")
        step.behavior = SplitBehavior::kMergedWithNext;
      else if (behavior == "Contiguous")
        step.behavior = SplitBehavior::kContiguous;
      else
        refuse("pre_tokenizer Split behavior", behavior,
               "Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous");
      if (flag(j, "invert", false)) refuse("pre_tokenizer Split option", "invert: true", "invert: false");
    } else if (type == "ByteLevel") {
      step.kind = PreTokenizerStep::Kind::kByteLevel;
      step.add_prefix_space = flag(j, "add_prefix_space", true);
      if (flag(j, "use_regex", true))
        step.regex = std::make_shared<Regex>(kGpt2Pattern, fmt::format("{}: pre_tokenizer ByteLevel", file.string()));
    } else if (type == "Metaspace") {
      step.kind = PreTokenizerStep::Kind::kMetaspace;
      step.replacement = j.contains("replacement") ? j.at("replacement").get<std::string>() : "\u2581";
      if (j.contains("prepend_scheme") && j.at("prepend_scheme").is_string()) {
        std::string s = j.at("prepend_scheme").get<std::string>();
        if (s == "always")
          step.prepend = PreTokenizerStep::Prepend::kAlways;
        else if (s == "first")
          step.prepend = PreTokenizerStep::Prepend::kFirst;
        else if (s == "never")
          step.prepend = PreTokenizerStep::Prepend::kNever;
        else
          refuse("pre_tokenizer Metaspace prepend_scheme", s, "always, first and never");
      } else {
        step.prepend =
            flag(j, "add_prefix_space", true) ? PreTokenizerStep::Prepend::kAlways : PreTokenizerStep::Prepend::kNever;
      }
      step.split = flag(j, "split", true);
    } else {
      refuse("pre_tokenizer", type, "Sequence, Split, ByteLevel and Metaspace");
    }
    if (impl.byte_level)
      refuse("pre_tokenizer order", type + " after ByteLevel", "ByteLevel as the last pre-tokenizer");
    if (step.kind == PreTokenizerStep::Kind::kByteLevel) impl.byte_level = true;
    impl.pre_tokenizers.push_back(std::move(step));
  }

  void model(const json& m) {
    std::string type = type_of(m);
    if (type.empty() && m.contains("merges")) type = "BPE";
    if (type != "BPE") refuse("model", type.empty() ? "(no type)" : type, "BPE");
    if (m.contains("dropout") && !m.at("dropout").is_null() && m.at("dropout").get<double>() != 0.0)
      refuse("model option", "BPE dropout", "dropout null or 0");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (m.contains(key) && !m.at(key).is_null() && !m.at(key).get<std::string>().empty())
        refuse("model option", key, "BPE without subword prefixes or word suffixes");
    }
    BpeModel& bpe = impl.model;
    bpe.fuse_unk = flag(m, "fuse_unk", false);
    bpe.byte_fallback = flag(m, "byte_fallback", false);
    bpe.ignore_merges = flag(m, "ignore_merges", false);

    if (!raw.error.empty()) bad(raw.error);
    if (!raw.has_vocab)
      bad(m.contains("vocab") ? "model.vocab is not an object of token -> id" : "model.vocab is missing");
    if (!raw.has_merges) bad(m.contains("merges") ? "model.merges is not an array" : "model.merges is missing");
    int32_t max_id = -1;
    for (const auto& [token, id] : raw.vocab) {
      if (id < 0 || id > (1 << 26)) bad(fmt::format("model.vocab['{}'] has id {}", token, id));
      max_id = std::max(max_id, static_cast<int32_t>(id));
    }
    bpe.tokens.assign(static_cast<size_t>(max_id + 1), std::string());
    for (auto& [token, id] : raw.vocab) bpe.tokens[id] = std::move(token);
    raw.vocab = {};
    bpe.vocab.build(&bpe.tokens);

    size_t n_merges = raw.merge_count();
    bpe.merges.reserve(n_merges);
    bpe.merge_result.resize(n_merges);
    for (size_t rank = 0; rank < n_merges; ++rank) {
      std::string_view joined(raw.merge_text.data() + raw.merge_at[rank], raw.merge_at[rank + 1] - raw.merge_at[rank]);
      std::string_view left = joined.substr(0, raw.merge_left[rank]), right = joined.substr(raw.merge_left[rank]);
      int32_t a = bpe.lookup(left), b = bpe.lookup(right), ab = bpe.lookup(joined);
      if (a < 0 || b < 0 || ab < 0)
        bad(fmt::format("model.merges[{}] ('{}' + '{}') names a token missing from model.vocab", rank, left, right));
      bpe.merges.insert(a, b, static_cast<uint32_t>(rank));
      bpe.merge_result[rank] = ab;
    }
    raw = RawModel{};

    if (m.contains("unk_token") && m.at("unk_token").is_string()) {
      std::string unk = m.at("unk_token").get<std::string>();
      bpe.unk_id = bpe.lookup(unk);
      if (bpe.unk_id < 0) bad(fmt::format("model.unk_token '{}' is not in model.vocab", unk));
    }
    bpe.index_bytes();
  }

  void added_tokens(const json& list) {
    if (list.is_null()) return;
    for (const json& t : list) {
      AddedToken a;
      a.id = t.at("id").get<int32_t>();
      a.content = t.at("content").get<std::string>();
      if (a.id < 0 || a.content.empty()) bad(fmt::format("added token '{}' with id {}", a.content, a.id));
      a.special = flag(t, "special", false);
      a.lstrip = flag(t, "lstrip", false);
      a.rstrip = flag(t, "rstrip", false);
      a.single_word = flag(t, "single_word", false);
      impl.added.push_back(std::move(a));
    }
  }

  void post_processor(const json& j) {
    if (j.is_null()) return;
    std::string type = type_of(j);
    if (type == "Sequence") {
      for (const json& p : j.at("processors")) post_processor(p);
    } else if (type == "ByteLevel") {
      // only adjusts offsets; ids are untouched
    } else if (type == "TemplateProcessing") {
      impl.prefix_ids.clear();
      impl.suffix_ids.clear();
      const json& specials = j.at("special_tokens");
      bool seen_sequence = false;
      for (const json& item : j.at("single")) {
        if (item.contains("Sequence")) {
          if (seen_sequence) bad("post_processor TemplateProcessing.single names the sequence twice");
          seen_sequence = true;
        } else if (item.contains("SpecialToken")) {
          std::string name = item.at("SpecialToken").at("id").get<std::string>();
          if (!specials.contains(name))
            bad(fmt::format("post_processor special token '{}' missing from its special_tokens", name));
          for (const json& id : specials.at(name).at("ids"))
            (seen_sequence ? impl.suffix_ids : impl.prefix_ids).push_back(id.get<int32_t>());
        } else {
          bad("post_processor TemplateProcessing.single item is neither Sequence nor SpecialToken");
        }
      }
    } else {
      refuse("post_processor", type, "Sequence, ByteLevel and TemplateProcessing");
    }
  }

  void decoder(const json& j, bool& fused) {
    if (j.is_null()) return;
    impl.has_decoder = true;
    std::string type = type_of(j);
    DecoderStep step{};
    if (type == "Sequence") {
      for (const json& d : j.at("decoders")) decoder(d, fused);
      return;
    } else if (type == "Replace") {
      step.kind = DecoderStep::Kind::kReplace;
      std::shared_ptr<Regex> regex;
      pattern(j.at("pattern"), "decoder Replace", step.pattern, regex);
      if (regex) refuse("decoder", "Replace with a Regex pattern", "Replace with a String pattern");
      step.content = j.at("content").get<std::string>();
    } else if (type == "ByteFallback") {
      step.kind = DecoderStep::Kind::kByteFallback;
    } else if (type == "Fuse") {
      fused = true;
      return;
    } else if (type == "Strip") {
      step.kind = DecoderStep::Kind::kStrip;
      step.content = j.at("content").get<std::string>();
      step.start = j.value("start", 0);
      step.stop = j.value("stop", 0);
      if (utf8_seq_len(static_cast<unsigned char>(step.content[0])) != static_cast<int>(step.content.size()))
        bad("decoder Strip content is not one character");
    } else if (type == "ByteLevel") {
      step.kind = DecoderStep::Kind::kByteLevel;
    } else if (type == "Metaspace") {
      step.kind = DecoderStep::Kind::kMetaspace;
      step.content = j.contains("replacement") ? j.at("replacement").get<std::string>() : "\u2581";
      if (j.contains("prepend_scheme") && j.at("prepend_scheme").is_string())
        step.prepend = j.at("prepend_scheme").get<std::string>() != "never";
      else
        step.prepend = flag(j, "add_prefix_space", true);
    } else {
      refuse("decoder", type, "Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel and Metaspace");
    }
    if (fused) {
      if (step.kind != DecoderStep::Kind::kStrip && step.kind != DecoderStep::Kind::kReplace)
        refuse("decoder order", type + " after Fuse/ByteLevel", "only Strip and Replace after the pieces are joined");
      impl.global_decoders.push_back(std::move(step));
    } else {
      impl.token_decoders.push_back(step);
      if (step.kind == DecoderStep::Kind::kByteLevel) fused = true;  // it joins the tokens too
    }
  }
};

// "x" or {"content": "x", ...} -> "x"; anything else -> "".
std::string config_token(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && it->at("content").is_string())
    return it->at("content").get<std::string>();
  return {};
}

json parse_json_file(const fs::path& path) {
  std::string content = read_file(path);
  try {
    return json::parse(content);
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON: {}", path.string(), e.what());
  }
}

// The whole file in one read (util's read_file streams through a stringbuf: slower for 9 MB).
std::string read_whole_file(const fs::path& path) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  std::ifstream in(path, std::ios::binary);
  if (ec || !in) return read_file(path);  // let read_file report the problem
  std::string content(static_cast<size_t>(size), '\0');
  in.read(content.data(), static_cast<std::streamsize>(size));
  content.resize(static_cast<size_t>(in.gcount()));
  return content;
}

json parse_tokenizer_json(const fs::path& path, RawModel& raw) {
  std::string content = read_whole_file(path);
  json root;
  TokenizerJsonReader reader(root, raw);
  try {
    json::sax_parse(content, &reader);
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON: {}", path.string(), e.what());
  }
  return root;
}

}  // namespace

Tokenizer Tokenizer::load(const fs::path& path) {
  auto t0 = std::chrono::steady_clock::now();
  std::error_code ec;
  fs::path file = fs::is_directory(path, ec) ? path / "tokenizer.json" : path;
  if (!fs::exists(file, ec))
    fail("no tokenizer at '{}' (give a tokenizer.json or a directory holding one)", path.string());
  auto impl = std::make_shared<Impl>();
  impl->file = file;
  Loader loader{{file, "this tokenizer"}, *impl, {}};
  try {
    json j = parse_tokenizer_json(file, loader.raw);
    if (!j.is_object() || !j.contains("model")) loader.bad("no 'model' object at the top level");
    if (Loader::type_of(j.at("model")) == "WordPiece") {  // BERT family: its own reader (wordpiece.h)
      auto wp = std::make_shared<const WordPieceTokenizer>(WordPieceTokenizer::load(file));
      Impl& t = *impl;
      t.wordpiece = wp;
      for (int32_t id = 0; id < wp->vocab_size(); ++id) t.id_to_token.push_back(wp->id_to_token(id));
      for (int32_t id = 0; id < wp->vocab_size(); ++id) t.special.push_back(wp->is_special(id) ? 1 : 0);
      t.token_to_id.build(&t.id_to_token);
      t.pad = wp->pad_id();
      Tokenizer tok;
      tok.impl_ = std::move(impl);
      return tok;
    }
    loader.model(j.at("model"));
    loader.added_tokens(j.value("added_tokens", json()));
    loader.normalizer(j.value("normalizer", json()));
    loader.pre_tokenizer(j.value("pre_tokenizer", json()));
    loader.post_processor(j.value("post_processor", json()));
    bool fused = false;
    loader.decoder(j.value("decoder", json()), fused);
    if (j.contains("truncation") && !j.at("truncation").is_null())
      log_warn("{}: 'truncation' is set but ignored (encode never truncates)", file.string());
  } catch (const json::exception& e) {
    loader.bad(e.what());
  }

  // The id table: model vocabulary, then added tokens (which may extend it).
  Impl& t = *impl;
  t.id_to_token = t.model.tokens;
  for (const AddedToken& a : t.added) {
    if (static_cast<size_t>(a.id) >= t.id_to_token.size()) t.id_to_token.resize(a.id + 1);
    t.id_to_token[a.id] = a.content;
  }
  t.special.assign(t.id_to_token.size(), 0);
  t.token_to_id.build(&t.id_to_token);
  for (size_t i = 0; i < t.added.size(); ++i) {
    const AddedToken& a = t.added[i];
    t.token_to_id.set(a.id);
    if (a.special) t.special[a.id] = 1;
    t.added_matcher.add(a.content, static_cast<int32_t>(i));
  }
  for (int32_t id : t.prefix_ids)
    if (id < 0 || static_cast<size_t>(id) >= t.id_to_token.size())
      loader.bad(fmt::format("post_processor id {} out of range", id));
  for (int32_t id : t.suffix_ids)
    if (id < 0 || static_cast<size_t>(id) >= t.id_to_token.size())
      loader.bad(fmt::format("post_processor id {} out of range", id));

  // tokenizer_config.json: bos/eos/pad, add_bos_token/add_eos_token, the chat template.
  fs::path config_file = file.parent_path() / "tokenizer_config.json";
  auto id_of = [&](const std::string& token, const char* key) -> int32_t {
    if (token.empty()) return -1;
    int32_t id = t.token_to_id.find(token);
    if (id < 0) fail("{}: {} '{}' is not a token of {}", config_file.string(), key, token, file.string());
    return id;
  };
  if (fs::exists(config_file, ec)) {
    json cfg = parse_json_file(config_file);
    if (!cfg.is_object()) fail("{}: expected a JSON object", config_file.string());
    t.bos_token = config_token(cfg, "bos_token");
    t.bos = id_of(t.bos_token, "bos_token");
    int32_t eos = id_of(config_token(cfg, "eos_token"), "eos_token");
    if (eos >= 0) t.eos.push_back(eos);
    t.pad = id_of(config_token(cfg, "pad_token"), "pad_token");
    // transformers rebuilds the post-processor from these flags (LlamaTokenizerFast and kin).
    if (auto it = cfg.find("add_bos_token"); it != cfg.end() && it->is_boolean()) {
      t.prefix_ids.clear();
      if (it->get<bool>() && t.bos >= 0) t.prefix_ids.push_back(t.bos);
    }
    if (auto it = cfg.find("add_eos_token"); it != cfg.end() && it->is_boolean()) {
      t.suffix_ids.clear();
      if (it->get<bool>() && eos >= 0) t.suffix_ids.push_back(eos);
    }
    std::string jinja;
    if (auto it = cfg.find("chat_template"); it != cfg.end()) {
      if (it->is_string()) {
        jinja = it->get<std::string>();
      } else if (it->is_array()) {  // [{"name": "default", "template": "..."}, ...]
        for (const json& entry : *it) {
          if (!entry.is_object() || !entry.contains("template")) continue;
          if (jinja.empty() || entry.value("name", "") == "default") jinja = entry.at("template").get<std::string>();
        }
      }
    }
    t.chat_template = detect_chat_template(jinja);
  } else {
    // No config: BOS is what the post-processor puts first; EOS the usual end-of-text specials;
    // no chat template ("none").
    if (!t.prefix_ids.empty()) t.bos = t.prefix_ids.front();
    if (t.bos >= 0) t.bos_token = t.id_to_token[t.bos];
    for (const char* name : {"</s>", "<|endoftext|>", "<|end_of_text|>"}) {
      int32_t id = t.token_to_id.find(name);
      if (id >= 0 && t.special[id]) t.eos.push_back(id);
    }
  }
  // Chat models end their turns with their own markers.
  std::vector<const char*> extra;
  if (t.chat_template == "llama3" || t.chat_template == "llama3.1") extra = {"<|eot_id|>", "<|end_of_text|>"};
  if (t.chat_template == "chatml") extra = {"<|im_end|>"};
  for (const char* name : extra) {
    int32_t id = t.token_to_id.find(name);
    if (id >= 0 && std::find(t.eos.begin(), t.eos.end(), id) == t.eos.end()) t.eos.push_back(id);
  }

  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  log_debug("loaded {} ({} tokens, {} merges, {} added) in {:.0f} ms", file.string(), t.id_to_token.size(),
            t.model.merges.size(), t.added.size(), ms);
  Tokenizer tok;
  tok.impl_ = std::move(impl);
  return tok;
}

}  // namespace rlrf
