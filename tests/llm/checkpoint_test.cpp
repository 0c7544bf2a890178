// Full fine-tune checkpoints: save in the HF layout, load back, identical logits; tied and untied,
// single file and shards; config.json and tokenizer files alongside.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "llm/checkpoint.h"
#include "llm/llm_test_util.h"
#include "llm/lora.h"
#include "llm/safetensors.h"
#include "util/error.h"
#include "util/files.h"

using namespace rlrf::llm;
using namespace rlrf::llm::testing;

namespace {
void perturb(LlamaForCausalLM& model, int seed) {  // stands in for training
  torch::NoGradGuard no_grad;
  at::manual_seed(seed);
  for (auto& p : model->parameters()) p.add_(at::randn_like(p) * 0.01);
}
}  // namespace

TEST(Checkpoint, TiedModelSaveLoadGivesIdenticalLogits) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir());
  perturb(model, 1);
  at::Tensor ids = ids_tensor(json::array({greedy_reference()[1]["prompt_ids"]}));
  at::Tensor want = logits_of(model, ids);
  fs::path dir = rlrf::fresh_temp_dir("ckpt_tied");
  SaveOptions o;
  o.dtype = at::kFloat;
  o.tokenizer_from = tinystories_dir();
  save_model(model, dir, o);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                        "special_tokens_map.json", "generation_config.json"})
    EXPECT_TRUE(fs::exists(dir / f)) << f;
  SafetensorsFile st = SafetensorsFile::open(dir / "model.safetensors");
  EXPECT_TRUE(st.contains("model.embed_tokens.weight"));
  EXPECT_FALSE(st.contains("lm_head.weight"));  // tied: stored once
  EXPECT_EQ(ModelConfig::load(dir).torch_dtype, "float32");
  LlamaForCausalLM back = load(dir);
  EXPECT_EQ(max_abs_diff(logits_of(back, ids), want), 0.0);
}

TEST(Checkpoint, UntiedShardedBf16SaveLoadGivesIdenticalLogits) {
  LlamaForCausalLM model = load(data_dir() / "tiny-llama31", at::kBFloat16);
  perturb(model, 2);
  at::Tensor ids = ids_tensor(json::array({json::array({1, 17, 42, 5, 88, 63, 29})}));
  at::Tensor want = logits_of(model, ids);
  fs::path dir = rlrf::fresh_temp_dir("ckpt_sharded");
  SaveOptions o;
  o.dtype = at::kBFloat16;
  o.max_shard_bytes = 30000;
  save_model(model, dir, o);
  EXPECT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  EXPECT_TRUE(fs::exists(dir / "model-00001-of-00003.safetensors"));
  ModelConfig c = ModelConfig::load(dir);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_EQ(c.head_dim, 16);
  LlamaForCausalLM back = load(dir, at::kBFloat16);
  EXPECT_EQ(max_abs_diff(logits_of(back, ids), want), 0.0);
  EXPECT_TRUE(TensorStore::open(dir).contains("lm_head.weight"));
}

TEST(Checkpoint, MergedLoraSavesAsAFullModel) {
  LlamaForCausalLM model = load(data_dir() / "tiny-llama31");
  load_lora(model, data_dir() / "tiny-llama31-lora");
  fs::path dir = rlrf::fresh_temp_dir("ckpt_merged");
  SaveOptions o;
  o.dtype = at::kFloat;
  EXPECT_THROW(save_model(model, dir, o), rlrf::Error);  // adapters must be merged first
  at::Tensor ids = ids_tensor(json::array({json::array({1, 17, 42, 5})}));
  at::Tensor want = logits_of(model, ids);
  merge_lora(model);
  save_model(model, dir, o);
  LlamaForCausalLM back = load(dir);
  EXPECT_LT(max_abs_diff(logits_of(back, ids), want), 1e-4);
}

TEST(Checkpoint, TiedWeightsStoredOnlyAsLmHeadLoadWithoutAlias) {
  RLRF_REQUIRE_TINYSTORIES();
  SafetensorsFile f = SafetensorsFile::open(tinystories_dir() / "model.safetensors");
  fs::path dir = rlrf::fresh_temp_dir("ckpt_no_alias");
  std::vector<NamedTensor> tensors;
  for (const std::string& n : f.names()) tensors.push_back({n, f.tensor(n)});
  save_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});  // no alias metadata
  fs::copy_file(tinystories_dir() / "config.json", dir / "config.json");
  ASSERT_FALSE(SafetensorsFile::open(dir / "model.safetensors").contains("model.embed_tokens.weight"));
  at::Tensor ids = ids_tensor(json::array({greedy_reference()[0]["prompt_ids"]}));
  LlamaForCausalLM a = load(dir), b = load(tinystories_dir());
  EXPECT_EQ(max_abs_diff(logits_of(a, ids), logits_of(b, ids)), 0.0);
}
