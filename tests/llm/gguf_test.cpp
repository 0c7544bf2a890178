// GGUF: our export of tinystories-656k equals, tensor by tensor and key by key, the file llama.cpp's
// own converter wrote (../shared/models/tinystories-656k-gguf); f16 keeps norms in f32; the q/k row
// permutation pairs the rotary dimensions as llama.cpp's rope does; what cannot be written is
// refused by name, and the reader names a truncated file.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <functional>

#include "error_of.h"
#include "llm/gguf.h"
#include "llm/llm_test_util.h"
#include "llm/safetensors.h"
#include "util/error.h"
#include "util/files.h"

using namespace rlrf::llm;
using namespace rlrf::llm::testing;

using rlrf::test::error_of;

namespace {

fs::path reference_gguf() { return rlrf::shared_dir() / "models" / "tinystories-656k-gguf" / "tinystories-656k-f32.gguf"; }

}  // namespace

TEST(Gguf, TinystoriesExportEqualsLlamaCppConverter) {
  RLRF_REQUIRE_TINYSTORIES();
  if (!fs::exists(reference_gguf())) GTEST_SKIP() << "no " << reference_gguf();
  LlamaForCausalLM model = load(tinystories_dir());
  const fs::path out = rlrf::fresh_temp_dir("gguf_tinystories") / "ours.gguf";
  GgufOptions o;
  o.name = "tinystories-656k";
  save_gguf(model, tinystories_dir(), out, o);
  GgufFile ref = read_gguf(reference_gguf()), ours = read_gguf(out);
  EXPECT_EQ(ours.version, 3u);
  // Every key the converter wrote, with its type and value, and no other.
  EXPECT_EQ(ours.keys, ref.keys);
  for (const std::string& key : ref.keys) {
    ASSERT_TRUE(ours.metadata.count(key)) << key;
    const GgufValue &a = ours.metadata.at(key), &b = ref.metadata.at(key);
    EXPECT_EQ(a.type, b.type) << key;
    EXPECT_EQ(a.array_type, b.array_type) << key;
    EXPECT_EQ(a.value, b.value) << key;
  }
  // Every tensor: name, order, dims, type, offset and bytes.
  ASSERT_EQ(ours.tensors.size(), ref.tensors.size());
  for (size_t i = 0; i < ref.tensors.size(); ++i) {
    const GgufTensor &a = ours.tensors[i], &b = ref.tensors[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.dims, b.dims) << b.name;
    EXPECT_EQ(a.ggml_type, b.ggml_type) << b.name;
    EXPECT_EQ(a.offset, b.offset) << b.name;
    const double d = max_abs_diff(a.data, b.data);
    std::printf("%-28s %-12s max |ours - llama.cpp| = %g\n", b.name.c_str(), rlrf::llm::shape_string(b.dims).c_str(), d);
    EXPECT_EQ(d, 0.0) << b.name;
  }
  // Byte for byte, then (same keys, tensors and layout).
  EXPECT_EQ(rlrf::read_file(out), rlrf::read_file(reference_gguf()));
}

TEST(Gguf, F16StoresMatricesInHalfAndNormsInF32) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir());
  const fs::path dir = rlrf::fresh_temp_dir("gguf_f16");
  GgufOptions o;
  o.dtype = at::kHalf;
  save_gguf(model, tinystories_dir(), dir / "m.gguf", o);
  o.dtype = at::kFloat;
  save_gguf(model, tinystories_dir(), dir / "f.gguf", o);
  GgufFile h = read_gguf(dir / "m.gguf"), f = read_gguf(dir / "f.gguf");
  EXPECT_EQ(h.metadata.at("general.file_type").value, 1);
  EXPECT_EQ(h.metadata.at("general.name").value, "m");
  ASSERT_EQ(h.tensors.size(), f.tensors.size());
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    const GgufTensor &a = h.tensors[i], &b = f.tensors[i];
    EXPECT_EQ(a.ggml_type, a.dims.size() > 1 ? 1u : 0u) << a.name;
    EXPECT_EQ(max_abs_diff(a.data, b.data.to(a.data.scalar_type())), 0.0) << a.name;  // one rounding, to half
  }
}

TEST(Gguf, QkPermutationInterleavesTheRotaryHalves) {
  // One head of 6 rows: HF pairs rows (0,3), (1,4), (2,5); llama.cpp pairs (0,1), (2,3), (4,5).
  at::Tensor w = at::arange(12, at::kFloat).view({6, 2});
  at::Tensor p = permute_rope_rows(w, 1);
  EXPECT_TRUE(at::equal(p.select(1, 0).div(2).to(at::kLong).contiguous(), at::tensor(std::vector<int64_t>{0, 3, 1, 4, 2, 5})));
  // Two heads permute separately; a bias (1-D) the same way.
  at::Tensor b = permute_rope_rows(at::arange(8, at::kFloat), 2);
  EXPECT_TRUE(at::equal(b, at::tensor(std::vector<float>{0, 2, 1, 3, 4, 6, 5, 7})));
  EXPECT_NE(error_of([] { permute_rope_rows(at::zeros({6, 2}), 2); }).find("do not split"), std::string::npos);
}

TEST(Gguf, RefusalsNameWhatIsWrong) {
  LlamaForCausalLM qwen = load(data_dir() / "tiny-qwen2");
  const fs::path dir = rlrf::fresh_temp_dir("gguf_refusals");
  EXPECT_NE(error_of([&] { save_gguf(qwen, data_dir() / "tiny-qwen2", dir / "q.gguf"); }).find("model_type 'qwen2'"), std::string::npos);
  LlamaForCausalLM llama = load(data_dir() / "tiny-llama31");
  const std::string no_tok = error_of([&] { save_gguf(llama, data_dir() / "tiny-llama31", dir / "l.gguf"); });
  EXPECT_NE(no_tok.find("tokenizer.json' does not exist"), std::string::npos) << no_tok;
  GgufOptions bf16;
  bf16.dtype = at::kBFloat16;
  EXPECT_NE(error_of([&] { save_gguf(llama, data_dir() / "tiny-llama31", dir / "b.gguf", bf16); }).find("f32 or f16"), std::string::npos);
}

TEST(Gguf, ReaderNamesATruncatedFile) {
  if (!fs::exists(reference_gguf())) GTEST_SKIP() << "no " << reference_gguf();
  const fs::path dir = rlrf::fresh_temp_dir("gguf_truncated");
  std::string bytes = rlrf::read_file(reference_gguf());
  rlrf::write_file_atomic(dir / "cut.gguf", bytes.substr(0, bytes.size() - 100));
  std::string e = error_of([&] { read_gguf(dir / "cut.gguf"); });
  EXPECT_NE(e.find("cut.gguf"), std::string::npos) << e;
  EXPECT_NE(e.find("runs past the end"), std::string::npos) << e;
  rlrf::write_file_atomic(dir / "head.gguf", bytes.substr(0, 1000));
  e = error_of([&] { read_gguf(dir / "head.gguf"); });
  EXPECT_NE(e.find("truncated GGUF"), std::string::npos) << e;
  rlrf::write_file_atomic(dir / "not.gguf", "GGML0000");
  EXPECT_NE(error_of([&] { read_gguf(dir / "not.gguf"); }).find("not a GGUF file"), std::string::npos);
}

// A Llama-3.1 shape: the byte-level BPE tokenizer goes in as llama.cpp's "gpt2" vocabulary with the
// Llama-3 pre-tokenizer, its merges and control tokens; llama3 rope scaling as rope_freqs factors
// (1 for the fast rotary pairs, the scaling factor for the slow ones); an untied lm_head as output.
TEST(Gguf, Llama31TokenizerAndRopeScaling) {
  const fs::path tok = rlrf::shared_dir() / "tokenizers" / "llama-3.1";
  if (!fs::exists(tok / "tokenizer.json")) GTEST_SKIP() << "no " << tok;
  auto j = nlohmann::json::parse(rlrf::read_file(data_dir() / "tiny-llama31" / "config.json"));
  j["vocab_size"] = 128256;
  j["bos_token_id"] = 128000;
  j["eos_token_id"] = {128001, 128008, 128009};
  j["num_hidden_layers"] = 1;
  ModelOptions o;
  LlamaForCausalLM model(ModelConfig::parse(j.dump(), "llama31-shape"), o);
  const fs::path out = rlrf::fresh_temp_dir("gguf_llama31") / "l.gguf";
  save_gguf(model, tok, out);
  GgufFile f = read_gguf(out);
  EXPECT_EQ(f.metadata.at("tokenizer.ggml.model").value, "gpt2");
  EXPECT_EQ(f.metadata.at("tokenizer.ggml.pre").value, "llama-bpe");
  EXPECT_EQ(f.metadata.at("tokenizer.ggml.tokens").value.size(), 128256u);
  EXPECT_EQ(f.metadata.at("tokenizer.ggml.tokens").value[128000], "<|begin_of_text|>");
  EXPECT_EQ(f.metadata.at("tokenizer.ggml.token_type").value[128000], 3);  // control
  EXPECT_EQ(f.metadata.at("tokenizer.ggml.token_type").value[100], 1);     // normal
  EXPECT_EQ(f.metadata.at("tokenizer.ggml.merges").value.size(), 280147u);
  EXPECT_EQ(f.metadata.at("tokenizer.ggml.merges").value[0], "\u0120 \u0120");
  EXPECT_FALSE(f.metadata.count("tokenizer.ggml.scores"));
  EXPECT_EQ(f.metadata.at("tokenizer.ggml.bos_token_id").value, 128000);
  EXPECT_EQ(f.metadata.at("tokenizer.ggml.eos_token_id").value, 128009);  // tokenizer_config.json's eos_token
  EXPECT_EQ(f.metadata.at("llama.rope.freq_base").value, 500000.0);
  EXPECT_EQ(f.metadata.at("llama.attention.key_length").value, 16);  // head_dim 16 != 32 / 4
  const GgufTensor* freqs = f.find("rope_freqs.weight");
  ASSERT_NE(freqs, nullptr);
  ASSERT_EQ(freqs->dims, (std::vector<int64_t>{8}));
  EXPECT_EQ(freqs->data[0].item<float>(), 1.0f);
  EXPECT_EQ(freqs->data[7].item<float>(), 8.0f);
  for (int i = 1; i < 8; ++i) EXPECT_GE(freqs->data[i].item<float>(), freqs->data[i - 1].item<float>()) << i;
  ASSERT_NE(f.find("output.weight"), nullptr);
  EXPECT_EQ(f.find("output.weight")->dims, (std::vector<int64_t>{32, 128256}));
}
