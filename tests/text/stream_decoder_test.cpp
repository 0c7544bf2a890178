// StreamDecoder: pieces are whole UTF-8 characters even when a character's bytes are spread over
// several tokens (emoji, CJK in Llama-3's byte-level BPE; <0xXX> byte fallback), and the pieces
// joined equal decode().
#include <gtest/gtest.h>

#include <memory>

#include "text/tokenizer.h"
#include "text/unicode.h"
#include "text_test_util.h"
#include "util/strings.h"

using namespace rlrf;

namespace {

struct Streamed {
  std::vector<std::string> pieces;
  std::string joined;
  int held_back = 0;  // pushes that returned nothing
};

Streamed stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special = true) {
  StreamDecoder dec(tok, skip_special);
  Streamed s;
  for (int32_t id : ids) {
    std::string piece = dec.push(id);
    if (piece.empty()) ++s.held_back;
    s.pieces.push_back(piece);
    s.joined += piece;
  }
  std::string rest = dec.flush();
  s.pieces.push_back(rest);
  s.joined += rest;
  return s;
}

}  // namespace

TEST(StreamDecoder, Llama3CharactersSplitAcrossTokens) {
  const Tokenizer& tok = llama3_tokenizer();
  std::string text = "emoji 🎬🍿 and 東京, Ж, 日本語のテキスト 👍🏽!";
  std::vector<int32_t> ids = tok.encode(text, true);
  Streamed s = stream(tok, ids);
  EXPECT_EQ(s.joined, text);
  EXPECT_EQ(s.joined, tok.decode(ids));
  EXPECT_GT(s.held_back, 1) << "some characters span several tokens, so some pushes must wait";
  for (const std::string& p : s.pieces) {
    EXPECT_TRUE(is_valid_utf8(p)) << "piece is not whole UTF-8 characters";
    EXPECT_EQ(p.find("\uFFFD"), std::string::npos);
  }
  // 🎬 is three tokens (golden): nothing comes out until the third.
  std::vector<int32_t> clapper = tok.encode("🎬", false);
  ASSERT_EQ(clapper.size(), 3u);
  StreamDecoder dec(tok);
  EXPECT_EQ(dec.push(clapper[0]), "");
  EXPECT_EQ(dec.push(clapper[1]), "");
  EXPECT_EQ(dec.push(clapper[2]), "🎬");
  EXPECT_EQ(dec.flush(), "");
}

TEST(StreamDecoder, FlushTurnsAnIncompleteCharacterIntoReplacement) {
  const Tokenizer& tok = llama3_tokenizer();
  std::vector<int32_t> clapper = tok.encode("a🎬", false);
  StreamDecoder dec(tok);
  std::string out;
  for (size_t i = 0; i + 1 < clapper.size(); ++i) out += dec.push(clapper[i]);
  EXPECT_EQ(out, "a");
  EXPECT_EQ(dec.flush(), "\uFFFD");
}

TEST(StreamDecoder, SpecialTokensSkippedOrKept) {
  const Tokenizer& tok = llama3_tokenizer();
  std::vector<int32_t> ids = tok.encode("<|begin_of_text|>Hi there<|eot_id|>", false);
  EXPECT_EQ(stream(tok, ids, true).joined, "Hi there");
  EXPECT_EQ(stream(tok, ids, false).joined, "<|begin_of_text|>Hi there<|eot_id|>");
}

TEST(StreamDecoder, TinyStoriesStripsOnlyTheFirstSpace) {
  const Tokenizer& tok = tinystories_tokenizer();
  for (const std::string& text : {std::string("Once upon a time, there was a dog."), std::string("  two spaces")}) {
    std::vector<int32_t> ids = tok.encode(text, true);
    Streamed s = stream(tok, ids);
    EXPECT_EQ(s.joined, text);
    EXPECT_EQ(s.joined, tok.decode(ids));
  }
}

TEST(StreamDecoder, ByteFallbackBytesJoinIntoCharacters) {
  Tokenizer tok = tiny_bpe_tokenizer();
  std::string text = "ab 東京🎬 é";
  std::vector<int32_t> ids = tok.encode(text, true);
  Streamed s = stream(tok, ids);
  EXPECT_EQ(s.joined, text);
  EXPECT_EQ(s.joined, tok.decode(ids));
  EXPECT_GE(s.held_back, 2 + 2 + 3 + 1) << "each multi-byte character waits for its last byte";
  for (const std::string& p : s.pieces) EXPECT_TRUE(is_valid_utf8(p));
}

TEST(StreamDecoder, OutlivesTheTokenizerObject) {
  std::vector<int32_t> ids = llama3_tokenizer().encode("東京🎬", false);
  std::unique_ptr<StreamDecoder> dec;
  {
    Tokenizer copy = llama3_tokenizer();  // shares the tables
    dec = std::make_unique<StreamDecoder>(copy);
  }
  std::string out;
  for (int32_t id : ids) out += dec->push(id);
  EXPECT_EQ(out + dec->flush(), "東京🎬");
}
