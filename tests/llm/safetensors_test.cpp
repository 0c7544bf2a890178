// safetensors reader/writer: round trips, the tinystories alias, sharded checkpoints, and clear
// errors for corrupt or truncated files, missing tensors and wrong shapes.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "llm/checkpoint.h"
#include "llm/llm_test_util.h"
#include "llm/safetensors.h"
#include "util/error.h"
#include "util/files.h"

using namespace rlrf::llm;
using namespace rlrf::llm::testing;
using rlrf::Error;

namespace {

// Writes a file from raw header text and data bytes (to build broken files on purpose).
void write_raw(const fs::path& path, const std::string& header, const std::string& data, int64_t header_len = -1) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  uint64_t n = header_len >= 0 ? static_cast<uint64_t>(header_len) : header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header << data;
}

// Runs `fn`, expects an Error whose message holds every string of `parts`.
template <typename Fn>
void expect_error(Fn fn, const std::vector<std::string>& parts) {
  try {
    fn();
    FAIL() << "expected an error mentioning " << parts[0];
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

void copy_dir(const fs::path& from, const fs::path& to) {
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(from)) fs::copy_file(e.path(), to / e.path().filename(), fs::copy_options::overwrite_existing);
}

}  // namespace

TEST(Safetensors, WriteReadRoundTripKeepsDtypesShapesValuesAndMetadata) {
  fs::path dir = rlrf::fresh_temp_dir("st_roundtrip");
  at::manual_seed(0);
  at::Tensor f32 = at::randn({3, 5});
  at::Tensor bf16 = at::randn({4, 2}).to(at::kBFloat16);
  at::Tensor f16 = at::randn({7}).to(at::kHalf);
  at::Tensor scalar = at::tensor(2.5f).reshape({});
  save_safetensors(dir / "a.safetensors", {{"x.f32", f32}, {"y.bf16", bf16}, {"z.f16", f16}, {"s", scalar}},
                   {{"format", "pt"}, {"note", "hello"}});
  SafetensorsFile f = SafetensorsFile::open(dir / "a.safetensors");
  EXPECT_EQ(f.names(), (std::vector<std::string>{"s", "x.f32", "y.bf16", "z.f16"}));  // header order (sorted)
  EXPECT_EQ(f.info("y.bf16").dtype, "BF16");
  EXPECT_EQ(f.info("z.f16").dtype, "F16");
  EXPECT_EQ(f.info("x.f32").shape, (std::vector<int64_t>{3, 5}));
  EXPECT_TRUE(at::equal(f.tensor("x.f32"), f32));
  EXPECT_TRUE(at::equal(f.tensor("y.bf16"), bf16));
  EXPECT_TRUE(at::equal(f.tensor("z.f16"), f16));
  EXPECT_EQ(f.tensor("s").dim(), 0);
  EXPECT_FLOAT_EQ(f.tensor("s").item<float>(), 2.5f);
  EXPECT_EQ(f.metadata().at("note"), "hello");
  // The header is padded so the data starts 8-byte aligned.
  std::string bytes = rlrf::read_file(dir / "a.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  // Views are copy-on-write: writing one does not touch the file.
  at::Tensor v = f.tensor("x.f32");
  v.fill_(0);
  EXPECT_TRUE(at::equal(SafetensorsFile::open(dir / "a.safetensors").tensor("x.f32"), f32));
}

TEST(Safetensors, TinyStoriesTiedEmbeddingResolvesThroughMetadataAlias) {
  RLRF_REQUIRE_TINYSTORIES();
  SafetensorsFile f = SafetensorsFile::open(tinystories_dir() / "model.safetensors");
  // Stored once as lm_head.weight; __metadata__ maps model.embed_tokens.weight to it.
  auto names = f.names();
  EXPECT_EQ(std::count(names.begin(), names.end(), "model.embed_tokens.weight"), 0);
  EXPECT_EQ(f.metadata().at("model.embed_tokens.weight"), "lm_head.weight");
  ASSERT_TRUE(f.contains("model.embed_tokens.weight"));
  EXPECT_EQ(f.info("model.embed_tokens.weight").shape, (std::vector<int64_t>{2048, 128}));
  EXPECT_TRUE(at::equal(f.tensor("model.embed_tokens.weight"), f.tensor("lm_head.weight")));
  EXPECT_FALSE(f.contains("format"));  // ordinary metadata is not an alias
}

TEST(Safetensors, ShardedIndexIsReadAndWritten) {
  TensorStore store = TensorStore::open(data_dir() / "tiny-llama31");
  EXPECT_TRUE(store.contains("model.embed_tokens.weight"));
  EXPECT_TRUE(store.contains("lm_head.weight"));
  EXPECT_EQ(store.file_of("model.layers.0.mlp.up_proj.weight").filename(), "model-00001-of-00002.safetensors");
  EXPECT_EQ(store.file_of("model.layers.1.mlp.up_proj.weight").filename(), "model-00002-of-00002.safetensors");
  EXPECT_EQ(store.info("model.layers.1.self_attn.q_proj.weight").dtype, "BF16");

  // The writer's shards read back tensor for tensor.
  fs::path dir = rlrf::fresh_temp_dir("st_sharded");
  std::vector<NamedTensor> tensors;
  for (const std::string& n : store.names()) tensors.push_back({n, store.tensor(n)});
  auto files = save_safetensors_sharded(dir, tensors, 20000);
  EXPECT_GE(files.size(), 4u);  // >= 3 shards + index
  EXPECT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  TensorStore back = TensorStore::open(dir);
  EXPECT_EQ(back.names(), store.names());
  for (const std::string& n : store.names()) EXPECT_TRUE(at::equal(back.tensor(n), store.tensor(n))) << n;
}

TEST(Safetensors, CorruptFilesGiveErrorsNamingFileAndProblem) {
  fs::path dir = rlrf::fresh_temp_dir("st_corrupt");
  const std::string good = R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  const std::string data(16, '\0');

  std::ofstream(dir / "short.safetensors") << "abc";
  expect_error([&] { SafetensorsFile::open(dir / "short.safetensors"); }, {"short.safetensors", "too small"});

  write_raw(dir / "len.safetensors", good, data, 1 << 20);
  expect_error([&] { SafetensorsFile::open(dir / "len.safetensors"); }, {"len.safetensors", "header length 1048576"});

  write_raw(dir / "json.safetensors", R"({"a":{"dtype":"F32","shape":[2,2],"data_offs)", data);
  expect_error([&] { SafetensorsFile::open(dir / "json.safetensors"); }, {"json.safetensors", "not valid JSON"});

  write_raw(dir / "beyond.safetensors", R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", std::string(8, '\0'));
  expect_error([&] { SafetensorsFile::open(dir / "beyond.safetensors"); },
               {"beyond.safetensors", "tensor 'a'", "beyond the data section"});

  write_raw(dir / "size.safetensors", R"({"a":{"dtype":"F32","shape":[3,3],"data_offsets":[0,16]}})", data);
  expect_error([&] { SafetensorsFile::open(dir / "size.safetensors"); }, {"tensor 'a'", "needs 36 bytes"});

  write_raw(dir / "overlap.safetensors",
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
            data);
  expect_error([&] { SafetensorsFile::open(dir / "overlap.safetensors"); }, {"overlap"});

  write_raw(dir / "dtype.safetensors", R"({"a":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})", data);
  SafetensorsFile f = SafetensorsFile::open(dir / "dtype.safetensors");  // sized fine, refused on read
  expect_error([&] { f.tensor("a"); }, {"tensor 'a'", "dtype I64 is not supported"});
  expect_error([&] { f.tensor("b"); }, {"dtype.safetensors", "no tensor 'b'"});

  expect_error([&] { SafetensorsFile::open(dir / "absent.safetensors"); }, {"absent.safetensors", "cannot open"});

  // A real checkpoint cut short.
  std::string bytes = rlrf::read_file(data_dir() / "tiny-mistral" / "model.safetensors");
  rlrf::write_file_atomic(dir / "cut.safetensors", bytes.substr(0, bytes.size() - 100));
  expect_error([&] { SafetensorsFile::open(dir / "cut.safetensors"); }, {"cut.safetensors", "beyond the data section"});
}

TEST(Safetensors, MissingTensorAndWrongShapeNameTheTensor) {
  fs::path src = data_dir() / "tiny-mistral";
  SafetensorsFile f = SafetensorsFile::open(src / "model.safetensors");

  fs::path missing = rlrf::fresh_temp_dir("st_missing");
  std::vector<NamedTensor> kept;
  for (const std::string& n : f.names())
    if (n != "model.norm.weight") kept.push_back({n, f.tensor(n)});
  save_safetensors(missing / "model.safetensors", kept);
  fs::copy_file(src / "config.json", missing / "config.json");
  expect_error([&] { load(missing); }, {"model.norm.weight", "missing tensor", missing.string()});

  fs::path wrong = rlrf::fresh_temp_dir("st_wrong_shape");
  std::vector<NamedTensor> bad;
  for (const std::string& n : f.names()) {
    at::Tensor t = f.tensor(n);
    if (n == "model.layers.0.self_attn.q_proj.weight") t = t.narrow(0, 0, 8);
    bad.push_back({n, t});
  }
  save_safetensors(wrong / "model.safetensors", bad);
  fs::copy_file(src / "config.json", wrong / "config.json");
  expect_error([&] { load(wrong); },
               {"tensor 'model.layers.0.self_attn.q_proj.weight' has wrong shape; expected [16, 16], got [8, 16]",
                "model.safetensors"});
}

TEST(Safetensors, BrokenShardIndexIsReported) {
  fs::path dir = rlrf::fresh_temp_dir("st_bad_index");
  copy_dir(data_dir() / "tiny-llama31", dir);
  fs::remove(dir / "model-00002-of-00002.safetensors");
  expect_error([&] { TensorStore::open(dir); }, {"model-00002-of-00002.safetensors", "does not exist"});

  copy_dir(data_dir() / "tiny-llama31", dir);
  auto index = nlohmann::json::parse(rlrf::read_file(dir / "model.safetensors.index.json"));
  index["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";  // it is in shard 2
  rlrf::write_file_atomic(dir / "model.safetensors.index.json", index.dump());
  expect_error([&] { TensorStore::open(dir); }, {"model.norm.weight", "does not hold it"});

  fs::path empty = rlrf::fresh_temp_dir("st_empty_dir");
  expect_error([&] { TensorStore::open(empty); }, {"neither model.safetensors nor"});
}
