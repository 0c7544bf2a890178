// WordPiece tokenizer tests: every case of the shared BERT golden file (bert-base-uncased, with and
// without [CLS]/[SEP]), through WordPieceTokenizer and through Tokenizer::load (what `rlrf tokenize`
// uses); the normalizer's pieces; pairs with type ids; truncation; decoding; refusals of unsupported
// components and malformed files, each naming the file and the component.
#include "text/wordpiece.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "text/tokenizer.h"
#include "text_test_util.h"
#include "util/error.h"
#include "util/files.h"

using namespace rlrf;
using json = nlohmann::json;

namespace {

const WordPieceTokenizer& bert_uncased() {
  static const WordPieceTokenizer tok = WordPieceTokenizer::load(shared_dir() / "tokenizers" / "bert-base-uncased");
  return tok;
}

// A hand-made WordPiece tokenizer.json: BertNormalizer (lowercase), BertPreTokenizer, a template
// with a pair, and the WordPiece decoder.
json tiny_wordpiece_json() {
  json vocab = json::object();
  int id = 0;
  for (const char* t : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "ab", "##b", "##c", "##bc",
                        "hello", "world", ",", "!", "'", "t", "isn", "?", "."})
    vocab[t] = id++;
  json added = json::array();
  for (const char* t : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"})
    added.push_back({{"id", vocab[t]}, {"content", t}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                     {"normalized", false}, {"special", true}});
  auto special = [](const char* name, int type_id) { return json{{"SpecialToken", {{"id", name}, {"type_id", type_id}}}}; };
  auto sequence = [](const char* name, int type_id) { return json{{"Sequence", {{"id", name}, {"type_id", type_id}}}}; };
  return json{
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer",
       {{"type", "BertNormalizer"}, {"clean_text", true}, {"handle_chinese_chars", true}, {"strip_accents", nullptr},
        {"lowercase", true}}},
      {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0)}},
        {"pair", {special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0), sequence("B", 1), special("[SEP]", 1)}},
        {"special_tokens",
         {{"[CLS]", {{"id", "[CLS]"}, {"ids", {2}}, {"tokens", {"[CLS]"}}}},
          {"[SEP]", {{"id", "[SEP]"}, {"ids", {3}}, {"tokens", {"[SEP]"}}}}}}}},
      {"decoder", {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}}},
      {"model",
       {{"type", "WordPiece"},
        {"unk_token", "[UNK]"},
        {"continuing_subword_prefix", "##"},
        {"max_input_chars_per_word", 6},
        {"vocab", vocab}}}};
}

fs::path write_tokenizer(const std::string& name, const json& j) {
  fs::path dir = fresh_temp_dir(name);
  write_file_atomic(dir / "tokenizer.json", j.dump());
  return dir;
}

std::string load_error(const json& j, const std::string& name) {
  fs::path dir = write_tokenizer(name, j);
  try {
    WordPieceTokenizer::load(dir);
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find((dir / "tokenizer.json").string()), std::string::npos) << "error does not name the file: " << msg;
    return msg;
  }
  ADD_FAILURE() << "no error for " << name;
  return {};
}

}  // namespace

TEST(WordPieceGolden, EveryCaseWithAndWithoutSpecialTokens) {
  fs::path golden_file = shared_dir() / "reference" / "bert_tokenizer_golden.json";
  ASSERT_TRUE(fs::exists(golden_file)) << "missing " << golden_file;
  json golden = json::parse(read_file(golden_file));
  const WordPieceTokenizer& tok = bert_uncased();
  const Tokenizer generic = Tokenizer::load(shared_dir() / "tokenizers" / "bert-base-uncased");
  int cases = 0, checks = 0;
  for (const char* section : {"hf", "js"}) {
    for (const json& c : golden.at(section)) {
      const std::string text = c.at("text").get<std::string>();
      const auto expected = c.at("ids").get<std::vector<int32_t>>();
      std::vector<int32_t> expected_special = {101};
      expected_special.insert(expected_special.end(), expected.begin(), expected.end());
      expected_special.push_back(102);
      if (c.contains("ids_with_special")) {
        EXPECT_EQ(c.at("ids_with_special").get<std::vector<int32_t>>(), expected_special) << "golden file itself";
        expected_special = c.at("ids_with_special").get<std::vector<int32_t>>();
      }
      const auto plain = tok.encode_ids(text, false);
      const auto with = tok.encode_ids(text, true);
      EXPECT_EQ(plain, expected) << section << " " << json(text).dump() << "\n  expected " << ids_str(expected)
                                 << "\n  actual   " << ids_str(plain);
      EXPECT_EQ(with, expected_special) << section << " with special " << json(text).dump();
      EXPECT_EQ(generic.encode(text, false), expected) << "Tokenizer::load dispatch " << json(text).dump();
      EXPECT_EQ(generic.encode(text, true), expected_special) << "Tokenizer::load dispatch " << json(text).dump();
      ++cases;
      checks += 4;
    }
  }
  EXPECT_EQ(cases, 47 + 165);
  std::printf("bert-base-uncased golden: %d cases, %d checks\n", cases, checks);
}

TEST(WordPiece, RealVocabularyBasics) {
  const WordPieceTokenizer& tok = bert_uncased();
  EXPECT_EQ(tok.vocab_size(), 30522);
  EXPECT_EQ(tok.cls_id(), 101);
  EXPECT_EQ(tok.sep_id(), 102);
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.unk_id(), 100);
  EXPECT_EQ(tok.model_max_length(), 512);
  EXPECT_EQ(tok.num_special_tokens(false), 2);
  EXPECT_EQ(tok.num_special_tokens(true), 3);
  EXPECT_TRUE(tok.is_special(103));
  EXPECT_FALSE(tok.is_special(2000));
  EXPECT_EQ(tok.decode(tok.encode_ids("Hello, my dog is cute")), "hello, my dog is cute");
  EXPECT_EQ(tok.decode(tok.encode_ids("Unaffable ideas!")), "unaffable ideas!");
  // Special tokens stay when asked to.
  EXPECT_EQ(tok.decode(tok.encode_ids("hi"), false), "[CLS] hi [SEP]");
}

TEST(WordPiece, NormalizerPieces) {
  const WordPieceTokenizer& tok = bert_uncased();
  // clean_text drops controls and U+FFFD and maps whitespace to spaces; CJK characters get spaces;
  // accents go (strip_accents follows lowercase, and runs first: U+0130 is I + a dot under NFD).
  EXPECT_EQ(tok.normalize("A\tb\x01\xEF\xBF\xBD" "c\u00A0d"), "a bc d");
  EXPECT_EQ(tok.normalize("中文x"), " 中  文 x");
  EXPECT_EQ(tok.normalize("Café"), "cafe");
  EXPECT_EQ(tok.normalize("\u0130"), "i");
  EXPECT_EQ(tok.pre_tokenize("hello, world!! $5"), (std::vector<std::string>{"hello", ",", "world", "!", "!", "$", "5"}));
}

TEST(WordPiece, GreedyLongestMatchAndUnknownWords) {
  fs::path dir = write_tokenizer("wp_tiny", tiny_wordpiece_json());
  WordPieceTokenizer tok = WordPieceTokenizer::load(dir);
  // "abc" -> ab ##c (longest first), "abbc" -> ab ##bc, "bcb" -> b ##c ##b, "ax" -> [UNK] (whole word).
  EXPECT_EQ(tok.encode_ids("abc abbc bcb ax", false), (std::vector<int32_t>{8, 10, 8, 11, 6, 10, 9, 1}));
  // More than max_input_chars_per_word (6) characters: [UNK] even though pieces exist.
  EXPECT_EQ(tok.encode_ids("abcbc abbbbbb", false), (std::vector<int32_t>{8, 10, 11, 1}));
  // A position that matches nothing makes the whole word [UNK].
  EXPECT_EQ(tok.encode_ids("abcabc", false), (std::vector<int32_t>{1}));
  EXPECT_EQ(tok.encode_ids("[MASK]a", false), (std::vector<int32_t>{4, 5}));
}

TEST(WordPiece, PairsTypeIdsAndTruncation) {
  fs::path dir = write_tokenizer("wp_pair", tiny_wordpiece_json());
  WordPieceTokenizer tok = WordPieceTokenizer::load(dir);
  WordPieceEncoding e = tok.encode("a b", std::string_view("c"));
  EXPECT_EQ(e.ids, (std::vector<int32_t>{2, 5, 6, 3, 7, 3}));
  EXPECT_EQ(e.type_ids, (std::vector<int32_t>{0, 0, 0, 0, 1, 1}));
  EXPECT_EQ(e.special_mask, (std::vector<uint8_t>{1, 0, 0, 1, 0, 1}));

  // Single: 6 words cut to max_length 5 = [CLS] + 3 + [SEP].
  e = tok.encode("a b c a b c", std::nullopt, true, 5);
  EXPECT_EQ(e.ids, (std::vector<int32_t>{2, 5, 6, 7, 3}));
  EXPECT_EQ(e.truncated, 3);
  // Without special tokens the whole budget is the text's.
  EXPECT_EQ(tok.encode("a b c a b c", std::nullopt, false, 5).ids, (std::vector<int32_t>{5, 6, 7, 5, 6}));
  // Pair, longest first: 6 + 2 words in 8 - 3 = 5 -> the short one whole, the long one 3.
  e = tok.encode("a b c a b c", std::string_view("b c"), true, 8);
  EXPECT_EQ(e.ids, (std::vector<int32_t>{2, 5, 6, 7, 3, 6, 7, 3}));
  // Both longer than half of the budget (5): 3 and 2, the first (longer) one gets the odd token.
  e = tok.encode("a b c a", std::string_view("c b a"), true, 8);
  EXPECT_EQ(e.ids, (std::vector<int32_t>{2, 5, 6, 7, 3, 7, 6, 3}));
  EXPECT_THROW(tok.encode("a", std::nullopt, true, 2), Error);
  // Never truncated with -1.
  EXPECT_EQ(tok.encode("a b c a b c", std::nullopt, true, -1).ids.size(), 8u);
}

TEST(WordPiece, DecoderJoinsPiecesAndCleansUp) {
  fs::path dir = write_tokenizer("wp_decode", tiny_wordpiece_json());
  WordPieceTokenizer tok = WordPieceTokenizer::load(dir);
  auto ids = tok.encode_ids("Hello, world! abc isn't it?");
  EXPECT_EQ(tok.decode(ids), "hello, world! abc isn ' t?");  // [UNK] is special: skipped
  EXPECT_EQ(tok.decode(ids, false), "[CLS] hello, world! abc isn ' t [UNK]? [SEP]");
  json j = tiny_wordpiece_json();
  j["decoder"] = nullptr;  // no decoder: tokens joined by spaces
  WordPieceTokenizer raw = WordPieceTokenizer::load(write_tokenizer("wp_nodecoder", j));
  EXPECT_EQ(raw.decode(raw.encode_ids("abc!")), "ab ##c !");
}

TEST(WordPiece, TokenizerJsonTruncationAndBertProcessing) {
  json j = tiny_wordpiece_json();
  j["truncation"] = {{"direction", "Left"}, {"max_length", 4}, {"strategy", "LongestFirst"}, {"stride", 0}};
  j["post_processor"] = {{"type", "BertProcessing"}, {"sep", {"[SEP]", 3}}, {"cls", {"[CLS]", 2}}};
  WordPieceTokenizer tok = WordPieceTokenizer::load(write_tokenizer("wp_trunc", j));
  EXPECT_EQ(tok.encode("a b c").ids, (std::vector<int32_t>{2, 6, 7, 3}));          // left: keeps the end
  EXPECT_EQ(tok.encode("a b c", std::nullopt, true, 10).ids.size(), 5u);          // explicit limit wins
  EXPECT_EQ(tok.encode_ids("a b c"), (std::vector<int32_t>{2, 5, 6, 7, 3}));       // ids: never truncated
  EXPECT_EQ(tok.encode("a", std::string_view("b"), true, 10).type_ids, (std::vector<int32_t>{0, 0, 0, 1, 1}));
}

TEST(WordPiece, RefusesUnsupportedComponentsByName) {
  struct Case {
    const char* key;
    json value;
    const char* named;
  };
  const Case cases[] = {
      {"normalizer", {{"type", "Precompiled"}}, "normalizer 'Precompiled'"},
      {"pre_tokenizer", {{"type", "Metaspace"}}, "pre_tokenizer 'Metaspace'"},
      {"post_processor", {{"type", "RobertaProcessing"}}, "post_processor 'RobertaProcessing'"},
      {"decoder", {{"type", "ByteLevel"}}, "decoder 'ByteLevel'"},
      {"truncation", {{"max_length", 8}, {"strategy", "Weird"}}, "truncation strategy 'Weird'"},
  };
  for (const Case& c : cases) {
    json j = tiny_wordpiece_json();
    j[c.key] = c.value;
    std::string msg = load_error(j, std::string("wp_refuse_") + c.key);
    EXPECT_NE(msg.find(c.named), std::string::npos) << msg;
    EXPECT_NE(msg.find("implements"), std::string::npos) << msg;
  }
  json j = tiny_wordpiece_json();
  j["model"]["unk_token"] = "<unk>";
  EXPECT_NE(load_error(j, "wp_bad_unk").find("model.unk_token '<unk>' is not in model.vocab"), std::string::npos);
  j = tiny_wordpiece_json();
  j["model"]["vocab"]["a"] = "five";
  EXPECT_NE(load_error(j, "wp_bad_id").find("model.vocab['a'] is not an integer id"), std::string::npos);
  j = tiny_wordpiece_json();
  j["model"]["type"] = "Unigram";
  EXPECT_NE(load_error(j, "wp_unigram").find("model 'Unigram'"), std::string::npos);
  // The generic loader names the WordPiece reader's refusals too.
  j = tiny_wordpiece_json();
  j["normalizer"] = {{"type", "Precompiled"}};
  fs::path dir = write_tokenizer("wp_generic_refuse", j);
  try {
    Tokenizer::load(dir);
    ADD_FAILURE() << "Tokenizer::load accepted a Precompiled normalizer";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("normalizer 'Precompiled'"), std::string::npos) << e.what();
  }
}

TEST(WordPiece, GenericTokenizerAccessors) {
  fs::path dir = write_tokenizer("wp_generic", tiny_wordpiece_json());
  Tokenizer tok = Tokenizer::load(dir);
  EXPECT_EQ(tok.vocab_size(), 21);
  EXPECT_EQ(tok.token_to_id("##bc"), 11);
  EXPECT_EQ(tok.id_to_token(12), "hello");
  EXPECT_TRUE(tok.is_special(2));
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.encode("Hello world"), (std::vector<int32_t>{2, 12, 13, 3}));
  EXPECT_EQ(tok.decode({2, 12, 13, 3}), "hello world");
  EXPECT_THROW(StreamDecoder{tok}, Error);
}
