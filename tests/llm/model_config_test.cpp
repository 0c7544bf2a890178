// config.json parsing of the Llama family: fields, defaults, rope scaling, refusals by name.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "llm/llama.h"
#include "llm/llm_test_util.h"
#include "llm/model_config.h"
#include "util/error.h"

using namespace rlrf::llm;
using namespace rlrf::llm::testing;

namespace {
std::string error_of(const std::string& text) {
  try {
    ModelConfig::parse(text, "cfg.json");
  } catch (const rlrf::Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(ModelConfig, TinyStories) {
  RLRF_REQUIRE_TINYSTORIES();
  ModelConfig c = ModelConfig::load(tinystories_dir());
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.vocab_size, 2048);
  EXPECT_EQ(c.hidden_size, 128);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.num_attention_heads, 8);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.intermediate_size, 384);
  EXPECT_EQ(c.max_position_embeddings, 512);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.rope_scaling.type, "none");
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{2});
  EXPECT_FALSE(c.qkv_bias);
  // 2048*128 (tied) + 2 * (4*128*128/... ) : the tensors of the file, counted.
  EXPECT_EQ(c.num_parameters(), 2048 * 128 + 2 * (128 * 128 * 2 + 2 * 128 * 64 + 3 * 128 * 384 + 2 * 128) + 128);
}

TEST(ModelConfig, Llama31ShapedWithRopeScalingAndExplicitHeadDim) {
  ModelConfig c = ModelConfig::load(data_dir() / "tiny-llama31" / "config.json");
  EXPECT_EQ(c.head_dim, 16);  // given, not hidden/heads = 8
  EXPECT_EQ(c.q_dim(), 64);
  EXPECT_EQ(c.kv_dim(), 32);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(ModelConfig, RopeInverseFrequenciesMatchReference) {
  ModelConfig c = ModelConfig::load(data_dir() / "tiny-llama31");
  at::Tensor got = rope_inv_freq(c);
  std::vector<float> want;
  for (const auto& v : goldens()["tiny-llama31"]["inv_freq"]) want.push_back(v.get<float>());
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i].item<float>() / want[i], 1.0, 1e-5) << "i=" << i;
  // The three llama3 regimes occur: high frequencies unchanged, low ones divided by 8, one between.
  ModelConfig plain = c;
  plain.rope_scaling.type = "none";
  at::Tensor base = rope_inv_freq(plain);
  EXPECT_FLOAT_EQ(got[0].item<float>(), base[0].item<float>());
  EXPECT_NEAR(got[7].item<float>() * 8, base[7].item<float>(), 1e-9);
  float mid = got[4].item<float>(), b4 = base[4].item<float>();
  EXPECT_LT(mid, b4);
  EXPECT_GT(mid, b4 / 8);
}

TEST(ModelConfig, Qwen2AndMistralAreTheSameFamily) {
  ModelConfig q = ModelConfig::load(data_dir() / "tiny-qwen2");
  EXPECT_EQ(q.model_type, "qwen2");
  EXPECT_TRUE(q.qkv_bias);
  EXPECT_FALSE(q.o_bias);
  EXPECT_TRUE(q.tie_word_embeddings);
  EXPECT_EQ(q.num_key_value_heads, 1);
  EXPECT_EQ(q.sliding_window, 0);  // use_sliding_window false
  ModelConfig m = ModelConfig::load(data_dir() / "tiny-mistral");
  EXPECT_EQ(m.model_type, "mistral");
  EXPECT_EQ(m.sliding_window, 4);
  EXPECT_FALSE(m.qkv_bias);
}

TEST(ModelConfig, UnsupportedArchitectureIsRefusedByName) {
  std::string e = error_of(R"({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 10})");
  EXPECT_NE(e.find("GPT2LMHeadModel"), std::string::npos) << e;
  EXPECT_NE(e.find("not supported"), std::string::npos) << e;
  EXPECT_NE(e.find("cfg.json"), std::string::npos) << e;
  e = error_of(R"({"model_type": "falcon"})");
  EXPECT_NE(e.find("falcon"), std::string::npos) << e;
}

TEST(ModelConfig, BadFieldsNameTheKey) {
  const std::string base = R"("architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 8,
      "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16)";
  EXPECT_EQ(error_of("{" + base + "}"), "");
  std::string e = error_of(R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 10})");
  EXPECT_NE(e.find("\"hidden_size\""), std::string::npos) << e;
  e = error_of("{" + base + R"(, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})");
  EXPECT_NE(e.find("'yarn'"), std::string::npos) << e;
  e = error_of("{" + base + R"(, "num_key_value_heads": 3})");
  EXPECT_NE(e.find("num_key_value_heads"), std::string::npos) << e;
  e = error_of("{" + base + R"(, "hidden_act": "gelu"})");
  EXPECT_NE(e.find("gelu"), std::string::npos) << e;
  e = error_of("{" + base + R"(, "rms_norm_eps": "small"})");
  EXPECT_NE(e.find("\"rms_norm_eps\""), std::string::npos) << e;
  e = error_of("{not json");
  EXPECT_NE(e.find("not valid JSON"), std::string::npos) << e;
}

TEST(ModelConfig, ToJsonParsesBackToTheSameConfig) {
  for (const char* name : {"tiny-llama31", "tiny-qwen2", "tiny-mistral"}) {
    ModelConfig a = ModelConfig::load(data_dir() / name);
    ModelConfig b = ModelConfig::parse(a.to_json(), "round trip");
    EXPECT_EQ(b.architecture, a.architecture) << name;
    EXPECT_EQ(b.head_dim, a.head_dim) << name;
    EXPECT_EQ(b.num_key_value_heads, a.num_key_value_heads) << name;
    EXPECT_EQ(b.rope_scaling.type, a.rope_scaling.type) << name;
    EXPECT_DOUBLE_EQ(b.rope_scaling.factor, a.rope_scaling.factor) << name;
    EXPECT_EQ(b.qkv_bias, a.qkv_bias) << name;
    EXPECT_EQ(b.tie_word_embeddings, a.tie_word_embeddings) << name;
    EXPECT_EQ(b.sliding_window, a.sliding_window) << name;
    EXPECT_EQ(b.eos_token_ids, a.eos_token_ids) << name;
    EXPECT_EQ(b.num_parameters(), a.num_parameters()) << name;
  }
}
