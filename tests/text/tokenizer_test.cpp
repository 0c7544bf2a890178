// Tokenizer tests: every case of the shared golden file (Llama-3.1 and TinyStories, with and
// without BOS), special tokens in text, decode round trips, accessors, and refusals of malformed or
// unsupported tokenizer.json files.
#include "text/tokenizer.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "text_test_util.h"
#include "util/error.h"
#include "util/files.h"

using namespace rlrf;
using json = nlohmann::json;

TEST(TokenizerGolden, EveryCaseOfBothTokenizers) {
  fs::path golden_file = shared_dir() / "reference" / "tokenizer_golden.json";
  ASSERT_TRUE(fs::exists(golden_file)) << "missing " << golden_file;
  json golden = json::parse(read_file(golden_file));
  const Tokenizer& llama = llama3_tokenizer();
  const Tokenizer& tiny = tinystories_tokenizer();
  int checked = 0;
  for (const json& c : golden.at("cases")) {
    std::string text = c.at("text").get<std::string>();
    struct Variant {
      const Tokenizer& tok;
      const char* key;
      bool bos;
    };
    for (const Variant& v :
         {Variant{llama, "llama3_1", false}, Variant{llama, "llama3_1_with_bos", true},
          Variant{tiny, "tinystories656k", false}, Variant{tiny, "tinystories656k_with_bos", true}}) {
      auto expected = c.at(v.key).get<std::vector<int32_t>>();
      auto actual = v.tok.encode(text, v.bos);
      EXPECT_EQ(actual, expected) << v.key << " on " << json(text).dump() << "\n  expected " << ids_str(expected)
                                  << "\n  actual   " << ids_str(actual);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 4 * static_cast<int>(golden.at("cases").size()));
  EXPECT_GE(checked, 52);
}

// A second, independent reference: tools/ref/tokenizer_bpe_ref.py (plain Python, classic BPE) on
// 1.6 KB of varied text (whitespace runs, CRLF, scripts, emoji, fullwidth, added tokens).
TEST(TokenizerGolden, AgreesWithPlainPythonReference) {
  fs::path file = source_dir() / "tests" / "data" / "text" / "tokenizer_ref_golden.json";
  json golden = json::parse(read_file(file));
  ASSERT_GE(golden.at("cases").size(), 10u);
  for (const json& c : golden.at("cases")) {
    std::string text = c.at("text").get<std::string>();
    for (auto [tok, key] :
         {std::pair{&llama3_tokenizer(), "llama3_1"}, std::pair{&tinystories_tokenizer(), "tinystories656k"}}) {
      auto expected = c.at(key).get<std::vector<int32_t>>();
      auto actual = tok->encode(text, false);
      EXPECT_EQ(actual, expected) << key << " on " << json(text).dump() << "\n  expected " << ids_str(expected)
                                  << "\n  actual   " << ids_str(actual);
    }
  }
}

// GPT-2's pre-tokenizer (ByteLevel with add_prefix_space and its built-in regex) over the Llama-3
// vocabulary, against the same Python reference: checks the use_regex path and the prefix space.
TEST(TokenizerGolden, Gpt2StylePreTokenizerAgreesWithPythonReference) {
  std::string content = read_file(shared_dir() / "tokenizers" / "llama-3.1" / "tokenizer.json");
  size_t b = content.find("\"pre_tokenizer\":"), e = content.find("\"post_processor\":");
  ASSERT_TRUE(b != std::string::npos && e != std::string::npos && b < e);
  content.replace(
      b, e - b,
      R"("pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
  )");
  fs::path dir = fresh_temp_dir("tok_gpt2_style");
  write_file_atomic(dir / "tokenizer.json", content);
  Tokenizer tok = Tokenizer::load(dir);
  json golden = json::parse(read_file(source_dir() / "tests" / "data" / "text" / "tokenizer_ref_golden.json"));
  for (const json& c : golden.at("cases")) {
    std::string text = c.at("text").get<std::string>();
    auto expected = c.at("llama3_1_gpt2_pretokenizer").get<std::vector<int32_t>>();
    auto actual = tok.encode(text, false);
    EXPECT_EQ(actual, expected) << json(text).dump() << "\n  expected " << ids_str(expected) << "\n  actual   "
                                << ids_str(actual);
  }
}

TEST(TokenizerSpecial, MatchedInTextAsSingleIds) {
  const Tokenizer& llama = llama3_tokenizer();
  auto hi = llama.encode("hi", false);
  std::vector<int32_t> expected = {128006, 882, 128007, 271};  // "user" 882, "\n\n" 271
  expected.insert(expected.end(), hi.begin(), hi.end());
  expected.push_back(128009);
  EXPECT_EQ(llama.encode("<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", false), expected);
  // A broken marker is plain text.
  auto broken = llama.encode("<|eot_id", false);
  for (int32_t id : broken) EXPECT_LT(id, 128000) << "a partial marker must not become a special token";
  EXPECT_EQ(llama.decode(broken), "<|eot_id");
  // Special tokens stay whole next to words, with no space needed.
  auto world = llama.encode("world", false);
  std::vector<int32_t> joined = {9906, 128009};
  joined.insert(joined.end(), world.begin(), world.end());
  EXPECT_EQ(llama.encode("Hello<|eot_id|>world", false), joined);
  // TinyStories: its markers are added tokens too.
  const Tokenizer& tiny = tinystories_tokenizer();
  EXPECT_EQ(tiny.encode("<|start_story|>Once upon a time", false), tiny.encode("Once upon a time", true));
  EXPECT_EQ(tiny.encode("a<|end_story|>", false).back(), 2);
}

TEST(TokenizerDecode, RoundTripsAndSkipsSpecial) {
  const Tokenizer& llama = llama3_tokenizer();
  for (const std::string& text : sample_texts()) {
    EXPECT_EQ(llama.decode(llama.encode(text, true)), text) << "llama3 round trip of " << json(text).dump();
    EXPECT_EQ(llama.decode(llama.encode(text, false)), text);
  }
  EXPECT_EQ(llama.decode({128000, 9906, 128009}, true), "Hello");
  EXPECT_EQ(llama.decode({128000, 9906, 128009}, false), "<|begin_of_text|>Hello<|eot_id|>");
  EXPECT_EQ(llama.decode({9906, 999999, -1}), "Hello") << "ids outside the vocabulary are skipped";

  const Tokenizer& tiny = tinystories_tokenizer();
  for (const std::string& text : {std::string("Once upon a time"), std::string("  leading and trailing spaces  "),
                                  std::string("Tim said, \"Let's play!\"\nThey ran.")}) {
    EXPECT_EQ(tiny.decode(tiny.encode(text, true)), text) << "tinystories round trip of " << json(text).dump();
  }
  // Characters outside TinyStories' 2048 tokens (no byte tokens) become one fused <unk>.
  EXPECT_EQ(tiny.encode("東京", false), (std::vector<int32_t>{80, 0}));
  EXPECT_EQ(tiny.decode(tiny.encode("a 東京 b", true)), "a  b");
  // Strip removes a leading space of the whole text only, so with BOS kept the space stays.
  EXPECT_EQ(tiny.decode(tiny.encode("a 東京 b", true), false), "<|start_story|> a <unk> b");
}

TEST(TokenizerAccessors, IdsAndTemplates) {
  const Tokenizer& llama = llama3_tokenizer();
  EXPECT_EQ(llama.bos_id(), 128000);
  auto eos = llama.eos_ids();
  EXPECT_NE(std::find(eos.begin(), eos.end(), 128009), eos.end()) << "<|eot_id|>";
  EXPECT_NE(std::find(eos.begin(), eos.end(), 128001), eos.end()) << "<|end_of_text|>";
  EXPECT_EQ(llama.pad_id(), -1);
  EXPECT_EQ(llama.vocab_size(), 128256);
  EXPECT_EQ(llama.chat_template(), "llama3");
  EXPECT_EQ(llama.token_to_id("<|eot_id|>"), 128009);
  EXPECT_EQ(llama.token_to_id("Hello"), 9906);
  EXPECT_EQ(llama.token_to_id("no such token"), -1);
  EXPECT_EQ(llama.id_to_token(9906), "Hello");
  EXPECT_EQ(llama.id_to_token(-5), "");
  EXPECT_TRUE(llama.is_special(128009));
  EXPECT_FALSE(llama.is_special(9906));

  const Tokenizer& tiny = tinystories_tokenizer();
  EXPECT_EQ(tiny.bos_id(), 1);
  EXPECT_EQ(tiny.eos_ids(), std::vector<int32_t>{2});
  EXPECT_EQ(tiny.pad_id(), 0);
  EXPECT_EQ(tiny.vocab_size(), 2048);
  EXPECT_EQ(tiny.chat_template(), "none");
  // The directory and the file load the same tokenizer.
  Tokenizer by_file = Tokenizer::load(shared_dir() / "models" / "tinystories-656k" / "tokenizer.json");
  EXPECT_EQ(by_file.encode("Once upon a time"), tiny.encode("Once upon a time"));
}

TEST(TokenizerThreads, ConcurrentEncodesAgree) {
  // A fresh tokenizer, so the threads fill its pre-token cache concurrently.
  Tokenizer tok = Tokenizer::load(shared_dir() / "tokenizers" / "llama-3.1");
  std::vector<std::string> texts = sample_texts();
  std::vector<std::vector<int32_t>> expected;
  for (const std::string& t : texts) expected.push_back(llama3_tokenizer().encode(t, true));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      for (int rep = 0; rep < 20; ++rep)
        for (size_t i = 0; i < texts.size(); ++i) {
          size_t k = (i + static_cast<size_t>(w)) % texts.size();
          if (tok.encode(texts[k], true) != expected[k]) ++mismatches[w];
        }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(TokenizerInvalidInput, UnloadedTokenizerThrows) {
  Tokenizer none;
  EXPECT_THROW(none.encode("x"), Error);
  EXPECT_THROW(none.bos_id(), Error);
}

TEST(TokenizerInvalidInput, InvalidUtf8BecomesReplacementCharacter) {
  const Tokenizer& llama = llama3_tokenizer();
  EXPECT_EQ(llama.encode("a\xff"
                         "b",
                         false),
            llama.encode("a\xEF\xBF\xBD"
                         "b",
                         false));
  EXPECT_EQ(llama.decode(llama.encode("a\xff"
                                      "b",
                                      false)),
            "a\xEF\xBF\xBD"
            "b");
}

// ---------------------------------------------------------------------------------------------
// Refusals

static std::string load_error(const fs::path& file) {
  try {
    Tokenizer::load(file);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TokenizerErrors, MalformedJsonNamesTheFile) {
  fs::path dir = fresh_temp_dir("tok_malformed");
  write_file_atomic(dir / "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,}");
  std::string err = load_error(dir / "tokenizer.json");
  EXPECT_NE(err.find((dir / "tokenizer.json").string()), std::string::npos) << err;
  EXPECT_NE(err.find("not valid JSON"), std::string::npos) << err;

  write_file_atomic(dir / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})");
  err = load_error(dir);
  EXPECT_NE(err.find((dir / "tokenizer.json").string()), std::string::npos) << err;
  EXPECT_NE(err.find("merges[0]"), std::string::npos) << err;

  write_file_atomic(dir / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": ["a"], "merges": []}})");
  err = load_error(dir);
  EXPECT_NE(err.find("model.vocab"), std::string::npos) << err;

  EXPECT_NE(load_error(dir / "missing.json").find("missing.json"), std::string::npos);
}

TEST(TokenizerErrors, UnsupportedComponentsAreRefusedByName) {
  fs::path dir = fresh_temp_dir("tok_unsupported");
  struct Case {
    const char* key;
    json value;
    const char* expect;
  };
  std::vector<Case> cases = {
      {"normalizer", {{"type", "BertNormalizer"}}, "normalizer 'BertNormalizer'"},
      {"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "Precompiled"}}}}}, "normalizer 'Precompiled'"},
      {"pre_tokenizer", {{"type", "Whitespace"}}, "pre_tokenizer 'Whitespace'"},
      {"post_processor", {{"type", "RobertaProcessing"}}, "post_processor 'RobertaProcessing'"},
      {"decoder", {{"type", "WordPiece"}}, "decoder 'WordPiece'"},
      {"model", {{"type", "Unigram"}, {"vocab", json::array()}}, "model 'Unigram'"},
  };
  for (const Case& c : cases) {
    json j = tiny_bpe_json();
    j[c.key] = c.value;
    write_file_atomic(dir / "tokenizer.json", j.dump());
    std::string err = load_error(dir);
    EXPECT_NE(err.find((dir / "tokenizer.json").string()), std::string::npos) << err;
    EXPECT_NE(err.find(c.expect), std::string::npos) << "expected '" << c.expect << "' in: " << err;
  }
}

// ---------------------------------------------------------------------------------------------
// The hand-made SentencePiece-style tokenizer (ids worked out by hand from tiny_bpe_json()).

TEST(TokenizerByteFallback, EncodesUnknownCharactersAsBytesAndFusesThemBack) {
  Tokenizer tok = tiny_bpe_tokenizer();
  const int32_t sp = tok.token_to_id("\u2581"), a = tok.token_to_id("a"), b = tok.token_to_id("b");
  const int32_t sp_a = tok.token_to_id("\u2581a"), sp_ab = tok.token_to_id("\u2581ab");
  const int32_t c3 = tok.token_to_id("<0xC3>"), a9 = tok.token_to_id("<0xA9>");
  ASSERT_GE(c3, 0);
  // "ab" -> "▁ab": merges (▁,a) rank 0, then (▁a,b) rank 2; (a,b) rank 1 never gets its chance.
  EXPECT_EQ(tok.encode("ab", false), (std::vector<int32_t>{sp_ab}));
  EXPECT_EQ(tok.encode("ab", true), (std::vector<int32_t>{1, sp_ab})) << "BOS from TemplateProcessing";
  EXPECT_EQ(tok.encode("ba", false), (std::vector<int32_t>{sp, b, a}));
  // "é" is not a token: its two UTF-8 bytes are.
  EXPECT_EQ(tok.encode("é", false), (std::vector<int32_t>{sp, c3, a9}));
  EXPECT_EQ(tok.decode({sp, c3, a9}), "é");
  EXPECT_EQ(tok.decode({sp_a, c3, a9, b}), "aéb");
  // Byte tokens that are not valid UTF-8 together: one U+FFFD per byte (Hugging Face ByteFallback).
  EXPECT_EQ(tok.decode({sp_a, c3, c3, b}), "a\uFFFD\uFFFDb");
  EXPECT_EQ(tok.decode({c3}), "\uFFFD");
  // "\t" has neither a token nor a byte token: unknown, and a run of unknowns fuses into one <unk>.
  EXPECT_EQ(tok.encode("a\t\tb", false), (std::vector<int32_t>{sp_a, 0, b}));
  // Round trips of everything the vocabulary can spell (a, b, c, spaces, newlines, non-ASCII).
  for (const std::string& text : {std::string("ab ba"), std::string("ébà 東京 🎬\nca"), std::string("a\nb  ")})
    EXPECT_EQ(tok.decode(tok.encode(text, true)), text) << text;
  EXPECT_EQ(tok.bos_id(), 1) << "without tokenizer_config.json, BOS is the post-processor's";
  EXPECT_EQ(tok.eos_ids(), std::vector<int32_t>{2});
  EXPECT_EQ(tok.chat_template(), "none");
}

TEST(TokenizerByteFallback, AddedTokenStripsSurroundingSpaces) {
  Tokenizer tok = tiny_bpe_tokenizer();
  const int32_t sp = tok.token_to_id("\u2581"), b = tok.token_to_id("b");
  const int32_t sp_a = tok.token_to_id("\u2581a"), sep = tok.token_to_id("<sep>");
  // lstrip/rstrip: "<sep>" takes the spaces on both sides; each side is then its own text.
  EXPECT_EQ(tok.encode("a  <sep>  b", false), (std::vector<int32_t>{sp_a, sep, sp, b}));
  EXPECT_EQ(tok.encode("a<sep>b", false), (std::vector<int32_t>{sp_a, sep, sp, b}));
  EXPECT_FALSE(tok.is_special(sep));
  EXPECT_EQ(tok.decode({sp_a, sep, sp, b}), "a<sep> b") << "non-special added tokens are kept by skip_special";
}

// The same vocabulary written the newer way: no normalizer, a Metaspace pre-tokenizer
// (prepend_scheme "first") and a Metaspace decoder. Same ids, same text back.
TEST(TokenizerByteFallback, MetaspacePreTokenizerMatchesNormalizerForm) {
  Tokenizer classic = tiny_bpe_tokenizer();
  json j = tiny_bpe_json();
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {
      {"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}, {"split", false}};
  j["decoder"] = {
      {"type", "Sequence"},
      {"decoders", json::array({{{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}},
                                {{"type", "ByteFallback"}},
                                {{"type", "Fuse"}}})}};
  fs::path dir = fresh_temp_dir("tiny_metaspace");
  write_file_atomic(dir / "tokenizer.json", j.dump());
  Tokenizer meta = Tokenizer::load(dir);
  for (const std::string& text : {std::string("ab ba"), std::string("ébà 東京 🎬\nca")}) {
    EXPECT_EQ(meta.encode(text, true), classic.encode(text, true)) << text;
    EXPECT_EQ(meta.decode(meta.encode(text, true)), text) << text;
  }
  const int32_t sp = meta.token_to_id("\u2581"), b = meta.token_to_id("b"), sep = meta.token_to_id("<sep>");
  const int32_t sp_a = meta.token_to_id("\u2581a"), a = meta.token_to_id("a");
  // Hugging Face's Metaspace prepends "▁" only when the text does not already start with one, and
  // its decoder drops every "▁" of the first token: "  a" -> "▁▁a" -> " a".
  EXPECT_EQ(meta.encode("  a", false), (std::vector<int32_t>{sp, sp_a}));
  EXPECT_EQ(classic.encode("  a", false), (std::vector<int32_t>{sp, sp, sp_a}));
  EXPECT_EQ(meta.decode({sp, sp_a}), " a");
  // "first": only the segment at the very start of the input gets the prefix "▁".
  EXPECT_EQ(meta.encode("a<sep>b", false), (std::vector<int32_t>{sp_a, sep, b}));
  EXPECT_EQ(classic.encode("a<sep>b", false), (std::vector<int32_t>{sp_a, sep, sp, b}));
  EXPECT_EQ(meta.encode("<sep>a", false), (std::vector<int32_t>{sep, a}));
}
