// Tests of the shared helpers: checksums, config reads and errors, string parsing, atomic writes.
#include <gtest/gtest.h>

#include "util/config.h"
#include "util/error.h"
#include "util/files.h"
#include "util/sha256.h"
#include "util/strings.h"

#include <vector>

using namespace rlrf;

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::string million(1000000, 'a');
  EXPECT_EQ(sha256_hex(million), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, MatchesShippedMovieLensChecksum) {
  fs::path dir = shared_dir() / "data" / "ml-100k";
  if (!fs::exists(dir / "SHA256SUMS")) GTEST_SKIP() << "no ml-100k in " << dir;
  for (const std::string& line : read_lines(dir / "SHA256SUMS")) {
    auto parts = split(line, "  ");
    if (parts.size() != 2 || parts[1] != "u.item") continue;
    EXPECT_EQ(sha256_file_hex(dir / "u.item"), std::string(parts[0]));
    return;
  }
  FAIL() << "u.item not listed in SHA256SUMS";
}

TEST(Config, ReadsTypedValuesAndKeepsDefaults) {
  ConfigFile f = ConfigFile::parse("[rerank]\nepochs = 7\nlr = 0.001\nmodel = \"dlcm\"\nks = [1, 3]\n", "t.toml");
  ConfigSection s = f.section("rerank");
  int epochs = 1, batch = 64;
  double lr = 0;
  std::string model;
  std::vector<int> ks;
  s.read("epochs", epochs);
  s.read("batch", batch);
  s.read("lr", lr);
  s.read("model", model);
  s.read("ks", ks);
  EXPECT_EQ(epochs, 7);
  EXPECT_EQ(batch, 64);
  EXPECT_DOUBLE_EQ(lr, 0.001);
  EXPECT_EQ(model, "dlcm");
  EXPECT_EQ(ks, (std::vector<int>{1, 3}));
  EXPECT_NO_THROW(s.check_no_unknown_keys());
}

TEST(Config, UnknownKeyAndWrongTypeNameTheKey) {
  ConfigFile f = ConfigFile::parse("[rerank]\nepocs = 7\nlr = \"fast\"\n", "t.toml");
  ConfigSection s = f.section("rerank");
  double lr = 0;
  try {
    s.read("lr", lr);
    FAIL() << "expected a type error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'lr'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("t.toml"), std::string::npos) << e.what();
  }
  try {
    s.check_no_unknown_keys();
    FAIL() << "expected an unknown-key error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("epocs"), std::string::npos) << e.what();
  }
}

TEST(Config, SetOverridesAndSyntaxErrorsNameTheLine) {
  ConfigFile f = ConfigFile::parse("[rerank]\nepochs = 7\n", "t.toml");
  f.set("rerank.epochs=3");
  f.set("data.dataset=ml-100k");
  int epochs = 0;
  std::string dataset;
  f.section("rerank").read("epochs", epochs);
  f.section("data").read("dataset", dataset);
  EXPECT_EQ(epochs, 3);
  EXPECT_EQ(dataset, "ml-100k");
  try {
    ConfigFile::parse("[a]\nx = \n", "bad.toml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.toml:2"), std::string::npos) << e.what();
  }
}

TEST(Strings, ParsesWholeNumbersOnly) {
  EXPECT_EQ(parse_int("42"), 42);
  EXPECT_FALSE(parse_int("42x"));
  EXPECT_FALSE(parse_int(""));
  EXPECT_DOUBLE_EQ(*parse_double("3.5"), 3.5);
  EXPECT_EQ(latin1_to_utf8("Am\xe9lie"), "Am\xc3\xa9lie");
  EXPECT_TRUE(is_valid_utf8("Am\xc3\xa9lie"));
  EXPECT_FALSE(is_valid_utf8("Am\xe9lie"));
}

TEST(Files, AtomicWriteReplacesWhole) {
  fs::path dir = fresh_temp_dir("files");
  write_file_atomic(dir / "a" / "b.txt", "one\ntwo\r\n");
  EXPECT_EQ(read_lines(dir / "a" / "b.txt"), (std::vector<std::string>{"one", "two"}));
  EXPECT_THROW(read_file(dir / "missing"), Error);
}
