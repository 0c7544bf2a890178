// Tokenizer: encoding (added tokens, normalizer, pre-tokenizer, BPE, post-processor), decoding
// (the decoder chain with byte-fallback fusion) and the streaming decoder.
#include "text/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <cstdint>

#include "text/byte_level.h"
#include "text/tokenizer_impl.h"
#include "text/unicode.h"
#include "util/error.h"
#include "util/strings.h"

namespace rlrf {

using namespace text;

static const Tokenizer::Impl& loaded(const std::shared_ptr<const Tokenizer::Impl>& impl) {
  RLRF_CHECK(impl, "use of a Tokenizer that was never loaded (call Tokenizer::load)");
  return *impl;
}

// ---------------------------------------------------------------------------------------------
// Added tokens

void AddedTokenMatcher::add(std::string_view content, int32_t index) {
  int32_t node = 0;
  for (unsigned char c : content) {
    uint64_t key = (static_cast<uint64_t>(node) << 8) | c;
    auto it = edges_.find(key);
    if (it == edges_.end()) {
      nodes_.push_back(Node{});
      it = edges_.emplace(key, static_cast<int32_t>(nodes_.size() - 1)).first;
    }
    node = it->second;
  }
  if (nodes_[node].token < 0) nodes_[node].token = index;  // the first of duplicate strings wins
  first_[static_cast<unsigned char>(content[0])] = true;
}

int32_t AddedTokenMatcher::longest_at(std::string_view text, size_t pos, size_t& len) const {
  int32_t node = 0, best = -1;
  for (size_t i = pos; i < text.size(); ++i) {
    auto it = edges_.find((static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(text[i]));
    if (it == edges_.end()) break;
    node = it->second;
    if (nodes_[node].token >= 0) {
      best = nodes_[node].token;
      len = i + 1 - pos;
    }
  }
  return best;
}

namespace {

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty() || s.find(from) == std::string::npos) return;
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out.append(to);
  }
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

// Removes up to `start` leading and `stop` trailing copies of the character `c` (one UTF-8 char).
void strip_char(std::string& s, std::string_view c, int start, int stop) {
  size_t b = 0, e = s.size();
  for (int i = 0; i < start && e - b >= c.size() && s.compare(b, c.size(), c) == 0; ++i) b += c.size();
  for (int i = 0; i < stop && e - b >= c.size() && s.compare(e - c.size(), c.size(), c) == 0; ++i) e -= c.size();
  s = s.substr(b, e - b);
}

// The code point that ends just before s[pos] (pos > 0), and its start.
char32_t previous_char(std::string_view s, size_t pos, size_t& start) {
  start = pos - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  int len = 0;
  return utf8_decode_at(s, start, len);
}

// Splits `piece` at the matches of a Split step (regex or literal) per its behaviour.
void split_piece(const std::string& piece, const PreTokenizerStep& step, bool piece_at_start,
                 std::vector<std::string>& out, std::vector<uint8_t>& out_at_start) {
  struct Segment {
    size_t b, e;
    bool match;
  };
  std::vector<Segment> segs;
  size_t last = 0;
  auto on_match = [&](size_t b, size_t e) {
    if (b > last) segs.push_back({last, b, false});
    if (step.behavior == SplitBehavior::kContiguous && !segs.empty() && segs.back().match && segs.back().e == b)
      segs.back().e = e;
    else
      segs.push_back({b, e, true});
    last = e;
  };
  if (step.regex) {
    step.regex->for_each_match(piece, on_match);
  } else {
    for (size_t hit; (hit = piece.find(step.literal, last)) != std::string::npos;)
      on_match(hit, hit + step.literal.size());
  }
  if (last < piece.size()) segs.push_back({last, piece.size(), false});

  auto emit = [&](size_t b, size_t e) {
    if (e <= b) return;
    out.emplace_back(piece, b, e - b);
    out_at_start.push_back(piece_at_start && b == 0);
  };
  switch (step.behavior) {
    case SplitBehavior::kIsolated:
    case SplitBehavior::kContiguous:
      for (const Segment& s : segs) emit(s.b, s.e);
      break;
    case SplitBehavior::kRemoved:
      for (const Segment& s : segs)
        if (!s.match) emit(s.b, s.e);
      break;
    case SplitBehavior::kMergedWithPrevious: {
      size_t open = 0;
      for (const Segment& s : segs) {
        if (s.match) {
          emit(open, s.e);
          open = s.e;
        }
      }
      emit(open, piece.size());
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      size_t open = 0;
      for (const Segment& s : segs) {
        if (s.match) {
          emit(open, s.b);
          open = s.b;
        }
      }
      emit(open, piece.size());
      break;
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Encoding

std::string Tokenizer::Impl::normalize(std::string_view s) const {
  std::string cur(s);
  for (const NormalizerStep& step : normalizers) {
    switch (step.kind) {
      case NormalizerStep::Kind::kPrepend:
        if (!cur.empty()) cur.insert(0, step.content);
        break;
      case NormalizerStep::Kind::kReplace:
        if (step.regex) {
          std::string out;
          size_t last = 0;
          step.regex->for_each_match(cur, [&](size_t b, size_t e) {
            out.append(cur, last, b - last);
            out += step.content;
            last = e;
          });
          out.append(cur, last, std::string::npos);
          cur = std::move(out);
        } else {
          replace_all(cur, step.pattern, step.content);
        }
        break;
      case NormalizerStep::Kind::kUnicode:
        cur = unicode_normalize(cur, step.pattern);
        break;
      case NormalizerStep::Kind::kLowercase:
        cur = unicode_lowercase(cur);
        break;
      case NormalizerStep::Kind::kStrip: {
        size_t b = 0, e = cur.size();
        int len = 0;
        while (step.left && b < e && is_unicode_space(utf8_decode_at(cur, b, len))) b += len;
        size_t start = 0;
        while (step.right && e > b && is_unicode_space(previous_char(cur, e, start))) e = start;
        cur = cur.substr(b, e - b);
        break;
      }
    }
  }
  return cur;
}

void Tokenizer::Impl::pre_tokenize(std::string_view normalized, bool at_input_start,
                                   std::vector<std::string>& pieces) const {
  pieces.clear();
  pieces.emplace_back(normalized);
  std::vector<uint8_t> at_start{static_cast<uint8_t>(at_input_start)};
  std::vector<std::string> next;
  std::vector<uint8_t> next_at_start;
  for (const PreTokenizerStep& step : pre_tokenizers) {
    next.clear();
    next_at_start.clear();
    for (size_t i = 0; i < pieces.size(); ++i) {
      std::string& p = pieces[i];
      switch (step.kind) {
        case PreTokenizerStep::Kind::kSplit:
          split_piece(p, step, at_start[i], next, next_at_start);
          break;
        case PreTokenizerStep::Kind::kByteLevel:
          if (step.add_prefix_space && !starts_with(p, " ")) p = " " + p;
          if (step.regex) {
            PreTokenizerStep isolated = step;
            isolated.behavior = SplitBehavior::kIsolated;
            split_piece(p, isolated, at_start[i], next, next_at_start);
          } else {
            next.push_back(std::move(p));
            next_at_start.push_back(at_start[i]);
          }
          break;
        case PreTokenizerStep::Kind::kMetaspace: {
          replace_all(p, " ", step.replacement);
          bool prepend = step.prepend == PreTokenizerStep::Prepend::kAlways ||
                         (step.prepend == PreTokenizerStep::Prepend::kFirst && at_start[i]);
          if (prepend && !starts_with(p, step.replacement)) p.insert(0, step.replacement);
          if (step.split) {
            PreTokenizerStep merged;
            merged.kind = PreTokenizerStep::Kind::kSplit;
            merged.literal = step.replacement;
            merged.behavior = SplitBehavior::kMergedWithNext;
            split_piece(p, merged, at_start[i], next, next_at_start);
          } else {
            next.push_back(std::move(p));
            next_at_start.push_back(at_start[i]);
          }
          break;
        }
      }
    }
    pieces.swap(next);
    at_start.swap(next_at_start);
  }
}

void Tokenizer::Impl::encode_text(std::string_view s, bool at_input_start, std::vector<int32_t>& out) const {
  std::string normalized;
  if (!normalizers.empty()) {
    normalized = normalize(s);
    s = normalized;
  }
  if (pre_tokenizers.empty()) {
    model.encode_word(s, false, out);
    return;
  }
  std::vector<std::string> pieces;
  pre_tokenize(s, at_input_start, pieces);
  for (const std::string& p : pieces) model.encode_word(p, byte_level, out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  const Impl& t = loaded(impl_);
  if (t.wordpiece) return t.wordpiece->encode_ids(text, add_special);
  std::string repaired;
  if (!is_valid_utf8(text)) {  // invalid bytes become U+FFFD, as a decode with errors="replace" would
    repaired = utf8_repair(text);
    text = repaired;
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special) out = t.prefix_ids;

  // Added tokens are matched in the raw text, leftmost-longest; the text between them is encoded.
  size_t seg = 0, i = 0;
  if (!t.added_matcher.empty()) {
    while (i < text.size()) {
      if (!t.added_matcher.may_start(static_cast<unsigned char>(text[i]))) {
        ++i;
        continue;
      }
      size_t len = 0;
      int32_t index = t.added_matcher.longest_at(text, i, len);
      if (index < 0) {
        ++i;
        continue;
      }
      const AddedToken& a = t.added[index];
      size_t b = i, e = i + len;
      if (a.single_word) {
        size_t start = 0;
        int clen = 0;
        bool word_before = b > 0 && is_word_char(previous_char(text, b, start));
        bool word_after = e < text.size() && is_word_char(utf8_decode_at(text, e, clen));
        if (word_before || word_after) {
          ++i;
          continue;
        }
      }
      size_t start = 0;
      while (a.lstrip && b > seg && is_unicode_space(previous_char(text, b, start))) b = start;
      int clen = 0;
      while (a.rstrip && e < text.size() && is_unicode_space(utf8_decode_at(text, e, clen))) e += clen;
      if (b > seg) t.encode_text(text.substr(seg, b - seg), seg == 0, out);
      out.push_back(a.id);
      seg = i = e;
    }
  }
  if (seg < text.size()) t.encode_text(text.substr(seg), seg == 0, out);
  if (add_special) out.insert(out.end(), t.suffix_ids.begin(), t.suffix_ids.end());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding

bool Tokenizer::Impl::decodable(int32_t id, bool skip_special) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token.size() || id_to_token[id].empty()) return false;
  return !(skip_special && special[id]);
}

DecodedPiece Tokenizer::Impl::decode_piece(int32_t id, size_t index) const {
  DecodedPiece p;
  p.bytes = id_to_token[id];
  if (!has_decoder) {  // no decoder: tokens joined by spaces
    if (index > 0) p.bytes = " " + p.bytes;
    return p;
  }
  for (const DecoderStep& step : token_decoders) {
    if (p.fallback_byte) break;  // a raw byte passes the later per-token steps untouched
    switch (step.kind) {
      case DecoderStep::Kind::kReplace:
        replace_all(p.bytes, step.pattern, step.content);
        break;
      case DecoderStep::Kind::kByteFallback: {
        const std::string& s = p.bytes;
        if (s.size() == 6 && s.compare(0, 3, "<0x") == 0 && s[5] == '>' &&
            std::isxdigit(static_cast<unsigned char>(s[3])) && std::isxdigit(static_cast<unsigned char>(s[4]))) {
          p.bytes = std::string(1, static_cast<char>(std::stoi(s.substr(3, 2), nullptr, 16)));
          p.fallback_byte = true;
        }
        break;
      }
      case DecoderStep::Kind::kStrip:
        strip_char(p.bytes, step.content, step.start, step.stop);
        break;
      case DecoderStep::Kind::kByteLevel: {
        std::string raw;
        byte_level_decode(p.bytes, raw);
        p.bytes = std::move(raw);
        break;
      }
      case DecoderStep::Kind::kMetaspace:
        replace_all(p.bytes, step.content, index == 0 && step.prepend ? "" : " ");
        break;
      case DecoderStep::Kind::kFuse:
        break;
    }
  }
  return p;
}

int Tokenizer::Impl::strip_start() const {
  int n = 0;
  for (const DecoderStep& s : global_decoders)
    if (s.kind == DecoderStep::Kind::kStrip) n += s.start;
  return n;
}

int Tokenizer::Impl::strip_stop() const {
  int n = 0;
  for (const DecoderStep& s : global_decoders)
    if (s.kind == DecoderStep::Kind::kStrip) n += s.stop;
  return n;
}

std::string Tokenizer::Impl::apply_global_replace(std::string s) const {
  for (const DecoderStep& step : global_decoders)
    if (step.kind == DecoderStep::Kind::kReplace) replace_all(s, step.pattern, step.content);
  return s;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  const Impl& t = loaded(impl_);
  if (t.wordpiece) return t.wordpiece->decode(ids, skip_special);
  std::string joined, group;  // group: consecutive <0xXX> bytes, kept whole only if valid UTF-8
  auto close_group = [&] {
    if (group.empty()) return;
    if (is_valid_utf8(group)) {
      joined += group;
    } else {
      for (size_t k = 0; k < group.size(); ++k) joined += kReplacementChar;
    }
    group.clear();
  };
  size_t index = 0;
  for (int32_t id : ids) {
    if (!t.decodable(id, skip_special)) continue;
    DecodedPiece p = t.decode_piece(id, index++);
    if (p.fallback_byte) {
      group += p.bytes;
    } else {
      close_group();
      joined += p.bytes;
    }
  }
  close_group();
  std::string text = utf8_repair(joined);  // byte-level pieces may hold invalid UTF-8
  for (const DecoderStep& step : t.global_decoders) {
    if (step.kind == DecoderStep::Kind::kStrip) strip_char(text, step.content, step.start, step.stop);
    if (step.kind == DecoderStep::Kind::kReplace) replace_all(text, step.pattern, step.content);
  }
  return text;
}

// ---------------------------------------------------------------------------------------------
// Accessors

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::Tokenizer(const Tokenizer&) = default;
Tokenizer& Tokenizer::operator=(const Tokenizer&) = default;

int32_t Tokenizer::bos_id() const { return loaded(impl_).bos; }
std::vector<int32_t> Tokenizer::eos_ids() const { return loaded(impl_).eos; }
int32_t Tokenizer::pad_id() const { return loaded(impl_).pad; }
int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(loaded(impl_).id_to_token.size()); }
std::string Tokenizer::chat_template() const { return loaded(impl_).chat_template; }
const std::filesystem::path& Tokenizer::file() const { return loaded(impl_).file; }

int32_t Tokenizer::token_to_id(std::string_view token) const { return loaded(impl_).token_to_id.find(token); }

std::string Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return impl_->id_to_token[id];
}

bool Tokenizer::is_special(int32_t id) const { return id >= 0 && id < vocab_size() && impl_->special[id]; }

// ---------------------------------------------------------------------------------------------
// Streaming

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : impl_(tokenizer.impl_), skip_special_(skip_special) {
  RLRF_CHECK(!loaded(impl_).wordpiece, "{}: streaming decoding of a WordPiece tokenizer is not implemented (use decode)",
             impl_->file.string());
  strip_start_left_ = loaded(impl_).strip_start();
}

std::string StreamDecoder::emit(bool final) {
  const Tokenizer::Impl& t = *impl_;
  std::string text;
  utf8_drain(pending_, text, final);
  if (text.empty()) return text;
  text = t.apply_global_replace(std::move(text));
  // Strip at the start of the whole output (after Fuse): drop leading copies of its character.
  if (strip_start_left_ > 0) {
    for (const DecoderStep& s : t.global_decoders) {
      if (s.kind != DecoderStep::Kind::kStrip) continue;
      size_t cut = 0;
      while (strip_start_left_ > 0 && cut < text.size() && text.compare(cut, s.content.size(), s.content) == 0) {
        cut += s.content.size();
        --strip_start_left_;
      }
      text.erase(0, cut);
      if (!text.empty()) strip_start_left_ = 0;
    }
  }
  // Strip at the end: hold back trailing copies until more text shows they are not the end.
  if (int stop = t.strip_stop(); stop > 0) {
    text = held_ + text;
    held_.clear();
    for (const DecoderStep& s : t.global_decoders) {
      if (s.kind != DecoderStep::Kind::kStrip || s.stop == 0) continue;
      for (int k = 0; k < s.stop && text.size() >= s.content.size() &&
                      text.compare(text.size() - s.content.size(), s.content.size(), s.content) == 0;
           ++k) {
        held_.insert(0, s.content);
        text.resize(text.size() - s.content.size());
      }
    }
  }
  return text;
}

std::string StreamDecoder::push(int32_t id) {
  const Tokenizer::Impl& t = *impl_;
  if (!t.decodable(id, skip_special_)) return {};
  DecodedPiece p = t.decode_piece(id, count_++);
  pending_ += p.bytes;
  return emit(false);
}

std::string StreamDecoder::flush() {
  std::string text = emit(true);
  held_.clear();  // trailing characters the Strip decoder removes at the very end
  return text;
}

}  // namespace rlrf
