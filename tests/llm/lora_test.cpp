// LoRA: zero-initialised adapters change nothing; on/off; merge; trainable parameters; PEFT save
// and load (key names and config fields are PEFT's); an adapter written by the Python reference
// loads and gives the reference logits.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <nlohmann/json.hpp>
#include <set>

#include "llm/generate.h"
#include "llm/llm_test_util.h"
#include "llm/logprob.h"
#include "llm/lora.h"
#include "llm/safetensors.h"
#include "util/error.h"
#include "util/files.h"

using namespace rlrf::llm;
using namespace rlrf::llm::testing;

namespace {

const std::vector<std::string> kAll = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

at::Tensor sample_ids() { return at::tensor(std::vector<int64_t>{1, 80, 875, 231, 401, 1844, 152, 938, 197}, at::kLong).unsqueeze(0); }

void randomize_b(LlamaForCausalLM& model, double std, int seed) {
  torch::NoGradGuard no_grad;
  at::manual_seed(seed);
  for (auto& [name, t] : named_trainable_parameters(model))
    if (name.find("lora_B") != std::string::npos) t.normal_(0, std);
}

}  // namespace

TEST(Lora, ZeroInitialisedAdaptersLeaveLogitsUnchanged) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir());
  // With grad enabled both runs take the separate-projection path, so the comparison is exact
  // (W x + 0 = W x); without grad the base model runs fused q/k/v, equal to rounding.
  at::Tensor base = model->forward(sample_ids()).detach();
  at::Tensor base_fused = logits_of(model, sample_ids());
  LoraConfig cfg;
  cfg.r = 8;
  cfg.alpha = 16;
  cfg.target_modules = kAll;
  auto names = apply_lora(model, cfg);
  EXPECT_EQ(names.size(), 14u);  // 7 per layer, 2 layers
  EXPECT_EQ(max_abs_diff(model->forward(sample_ids()).detach(), base), 0.0);
  EXPECT_LT(max_abs_diff(logits_of(model, sample_ids()), base_fused), 1e-4);
  // PEFT's init: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming-uniform, a = sqrt(5)), B = 0.
  auto& q = model->model->layer_list[0]->self_attn->q_proj;
  const double bound = 1.0 / std::sqrt(128.0);
  EXPECT_LE(q->lora_A->weight.abs().max().item<double>(), bound);
  EXPECT_NEAR(q->lora_A->weight.std().item<double>(), bound / std::sqrt(3.0), 0.1 * bound);
  EXPECT_EQ(q->lora_B->weight.abs().max().item<double>(), 0.0);
  EXPECT_EQ(q->lora_A->weight.sizes(), (at::IntArrayRef{8, 128}));
  EXPECT_EQ(model->model->layer_list[0]->mlp->down_proj->lora_B->weight.sizes(), (at::IntArrayRef{128, 8}));
  EXPECT_DOUBLE_EQ(q->lora_spec().scaling(), 2.0);
  // Different layers draw different A.
  EXPECT_FALSE(at::equal(q->lora_A->weight, model->model->layer_list[1]->self_attn->q_proj->lora_A->weight));
}

TEST(Lora, TrainableParametersAreTheAdaptersOrEverything) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir());
  int64_t all = 0;
  for (auto& p : model->parameters()) all += p.numel();
  EXPECT_EQ(trainable_parameters(model).size(), model->parameters().size());  // full fine-tune by default
  LoraConfig cfg;
  cfg.target_modules = {"q_proj", "v_proj"};
  apply_lora(model, cfg);
  auto named = named_trainable_parameters(model);
  ASSERT_EQ(named.size(), 8u);  // (A, B) x (q, v) x 2 layers
  for (auto& [name, t] : named) {
    EXPECT_TRUE(name.find(".lora_A.weight") != std::string::npos || name.find(".lora_B.weight") != std::string::npos) << name;
    EXPECT_TRUE(t.requires_grad()) << name;
  }
  for (auto& p : model->named_parameters())
    if (p.key().find("lora") == std::string::npos) EXPECT_FALSE(p.value().requires_grad()) << p.key();
  EXPECT_THROW(enable_full_finetune(model), rlrf::Error);
  merge_lora(model);
  EXPECT_FALSE(has_lora(model));
  enable_full_finetune(model);
  int64_t n = 0;
  for (auto& t : trainable_parameters(model)) n += t.numel();
  EXPECT_EQ(n, all);
}

TEST(Lora, AdaptersOnOffAndMergeAgree) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir());
  at::Tensor base = logits_of(model, sample_ids());
  LoraConfig cfg;
  cfg.r = 4;
  cfg.alpha = 8;
  cfg.target_modules = kAll;
  apply_lora(model, cfg);
  randomize_b(model, 0.05, 11);
  at::Tensor adapted = logits_of(model, sample_ids());
  EXPECT_GT(max_abs_diff(adapted, base), 1e-2);
  set_lora_enabled(model, false);  // the DPO reference model
  EXPECT_EQ(max_abs_diff(logits_of(model, sample_ids()), base), 0.0);
  set_lora_enabled(model, true);
  merge_lora(model);
  EXPECT_FALSE(has_lora(model));
  double d = max_abs_diff(logits_of(model, sample_ids()), adapted);
  EXPECT_LT(d, 1e-4) << d;
}

TEST(Lora, PeftSaveLoadRoundTripUsesPeftNamesAndFields) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir());
  LoraConfig cfg;
  cfg.r = 4;
  cfg.alpha = 8;
  cfg.dropout = 0.05;
  cfg.target_modules = kAll;
  cfg.base_model_name_or_path = tinystories_dir().string();
  apply_lora(model, cfg);
  randomize_b(model, 0.05, 5);
  at::Tensor want = logits_of(model, sample_ids());
  fs::path dir = rlrf::fresh_temp_dir("lora_roundtrip");
  save_lora(model, cfg, dir);

  auto j = nlohmann::json::parse(rlrf::read_file(dir / "adapter_config.json"));
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["r"], 4);
  EXPECT_EQ(j["lora_alpha"], 8);
  EXPECT_DOUBLE_EQ(j["lora_dropout"].get<double>(), 0.05);
  EXPECT_EQ(j["bias"], "none");
  EXPECT_EQ(j["fan_in_fan_out"], false);
  EXPECT_EQ(j["use_dora"], false);
  EXPECT_EQ(j["use_rslora"], false);
  EXPECT_TRUE(j["modules_to_save"].is_null());
  EXPECT_EQ(j["base_model_name_or_path"], tinystories_dir().string());
  std::set<std::string> targets(j["target_modules"].begin(), j["target_modules"].end());
  EXPECT_EQ(targets, std::set<std::string>(kAll.begin(), kAll.end()));

  SafetensorsFile f = SafetensorsFile::open(dir / "adapter_model.safetensors");
  EXPECT_EQ(f.names().size(), 28u);
  EXPECT_EQ(f.info("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").shape, (std::vector<int64_t>{4, 128}));
  EXPECT_EQ(f.info("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight").shape, (std::vector<int64_t>{128, 4}));
  EXPECT_EQ(f.info("base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight").shape, (std::vector<int64_t>{64, 4}));
  EXPECT_EQ(f.info("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight").shape, (std::vector<int64_t>{4, 384}));
  EXPECT_EQ(f.info("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight").dtype, "F32");

  LlamaForCausalLM fresh = load(tinystories_dir());
  LoraConfig back = load_lora(fresh, dir);
  EXPECT_EQ(back.r, 4);
  EXPECT_DOUBLE_EQ(back.alpha, 8);
  EXPECT_EQ(max_abs_diff(logits_of(fresh, sample_ids()), want), 0.0);
  EXPECT_EQ(named_trainable_parameters(fresh).size(), 28u);
}

TEST(Lora, AdapterWrittenByReferenceGivesReferenceLogits) {
  LlamaForCausalLM model = load(data_dir() / "tiny-llama31");
  LoraConfig c = load_lora(model, data_dir() / "tiny-llama31-lora");
  EXPECT_EQ(c.r, 4);
  for (const json& g : goldens()["tiny-llama31"]["cases"]) {
    if (g["name"] != "lora") continue;
    at::Tensor got = logits_of(model, ids_tensor(g["ids"]), ids_tensor(g["positions"]));
    std::vector<float> flat;
    for (const json& v : g["logits"]) flat.push_back(v.get<float>());
    double d = max_abs_diff(got, at::tensor(flat).view(got.sizes()));
    std::printf("  tiny-llama31 + PEFT adapter: max |logit - ref| = %.3g\n", d);
    EXPECT_LT(d, 1e-4);
    // Adapters off gives the base model's logits, which differ.
    set_lora_enabled(model, false);
    EXPECT_GT(max_abs_diff(logits_of(model, ids_tensor(g["ids"]), ids_tensor(g["positions"])), got), 1e-2);
    return;
  }
  FAIL() << "no lora case in goldens.json";
}

TEST(Lora, UnsupportedOrMismatchedAdaptersAreRefused) {
  fs::path dir = rlrf::fresh_temp_dir("lora_bad");
  fs::copy_file(data_dir() / "tiny-llama31-lora" / "adapter_model.safetensors", dir / "adapter_model.safetensors");
  auto cfg = nlohmann::json::parse(rlrf::read_file(data_dir() / "tiny-llama31-lora" / "adapter_config.json"));
  auto expect_error = [&](nlohmann::json c, const std::string& part) {
    rlrf::write_file_atomic(dir / "adapter_config.json", c.dump());
    LlamaForCausalLM model = load(data_dir() / "tiny-llama31");
    try {
      load_lora(model, dir);
      ADD_FAILURE() << "expected an error about " << part;
    } catch (const rlrf::Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  auto c = cfg;
  c["use_dora"] = true;
  expect_error(c, "DoRA");
  c = cfg;
  c["peft_type"] = "IA3";
  expect_error(c, "peft_type");
  c = cfg;
  c["r"] = 8;  // the tensors are rank 4
  expect_error(c, "has wrong shape; expected [8, 32], got [4, 32]");
  c = cfg;
  c["target_modules"] = {"q_proj", "v_proj", "down_proj", "up_proj"};
  expect_error(c, "up_proj.lora_A.weight");
  c = cfg;
  c["target_modules"] = {"q_proj"};  // the file holds more than the config names
  expect_error(c, "belongs to no adapted layer");
  c = cfg;
  c["target_modules"] = {"c_attn"};
  expect_error(c, "match no linear layer");
}

// The round trip of one DPO round: the policy trained in memory (fp32 adapters on fp32 weights) is
// saved as a PEFT adapter and loaded back the way generation loads it. A LoRA delta of realistic
// size (|s B A| with std 1e-3, about half a bf16 step of a weight of 0.3) must survive: the
// log-prob of a fixed response under the generating policy equals the trained policy's.
TEST(Lora, RealisticDeltaSurvivesTheRoundTripToTheGeneratingPolicy) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM trained = load(tinystories_dir());
  // A fixed prompt and two responses: the base model's greedy continuation and a sampled one.
  const std::vector<int32_t> prompt = {1, 80, 875, 231, 401, 1844, 152, 938};
  std::vector<std::vector<int32_t>> prompts, responses;
  for (double temperature : {0.0, 1.0}) {
    GenerateOptions o;
    o.max_new_tokens = 64;
    o.sampling.temperature = temperature;
    o.sampling.seed = 7;
    prompts.push_back(prompt);
    responses.push_back(generate(trained, {{prompt}}, o)[0].ids);
  }
  LoraConfig cfg;
  cfg.r = 8;
  cfg.alpha = 16;
  cfg.target_modules = kAll;
  apply_lora(trained, cfg);
  // B so that the merged delta s B A has std 1e-3: var(s B A) = s^2 r sigma^2 var(A), var(A) = 1 / (3 in).
  {
    torch::NoGradGuard no_grad;
    at::manual_seed(3);
    for (auto& [name, lin] : trained->named_linears()) {
      if (!lin->has_lora()) continue;
      const double sigma = 1e-3 / (lin->lora_spec().scaling() * std::sqrt(8.0 / (3.0 * double(lin->in_features()))));
      lin->lora_B->weight.normal_(0, sigma);
    }
  }
  auto logprobs = [&](LlamaForCausalLM& m) {
    at::NoGradGuard no_grad;
    return continuation_logprob_sums(m, prompts, responses);
  };
  const std::vector<double> want = logprobs(trained);
  set_lora_enabled(trained, false);
  const std::vector<double> ref = logprobs(trained);
  set_lora_enabled(trained, true);
  fs::path dir = rlrf::fresh_temp_dir("lora_delta_roundtrip");
  save_lora(trained, cfg, dir);

  ModelOptions fp32, bf16;
  bf16.dtype = at::kBFloat16;
  auto worst = [&](LlamaForCausalLM& m) {
    std::vector<double> got = logprobs(m);
    double d = 0;
    for (size_t i = 0; i < got.size(); ++i) d = std::max(d, std::abs(got[i] - want[i]));
    return d;
  };
  double effect = 0;
  for (size_t i = 0; i < want.size(); ++i) effect = std::max(effect, std::abs(want[i] - ref[i]));
  LlamaForCausalLM merged32 = load_merged_policy(tinystories_dir(), {dir}, fp32);
  LlamaForCausalLM merged16 = load_merged_policy(tinystories_dir(), {dir}, bf16);
  LlamaForCausalLM old = load(tinystories_dir(), at::kBFloat16);  // before: bf16 weights, merged in bf16
  load_lora(old, dir);
  merge_lora(old);
  LlamaForCausalLM unmerged16 = load(tinystories_dir(), at::kBFloat16);  // bf16 base, fp32 adapters on top
  load_lora(unmerged16, dir);
  LlamaForCausalLM base16 = load(tinystories_dir(), at::kBFloat16);
  // In bf16 the question is rather whether the delta's effect survives: lp(policy) - lp(its base), both bf16.
  auto effect_error = [&](LlamaForCausalLM& m, LlamaForCausalLM& base) {
    std::vector<double> a = logprobs(m), b = logprobs(base);
    double d = 0;
    for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs((a[i] - b[i]) - (want[i] - ref[i])));
    return d;
  };
  std::printf("  effect error |(lp - lp_base) - (lp_trained - lp_ref)|: fp32 merge then bf16 %.3g, bf16 merge (before) %.3g, "
              "bf16 base + unmerged %.3g\n", effect_error(merged16, base16), effect_error(old, base16), effect_error(unmerged16, base16));
  const double d32 = worst(merged32), d16 = worst(merged16), d_old = worst(old), d_un = worst(unmerged16), d_base16 = worst(base16);
  std::printf("  |log pi - log ref| (the delta's effect) %.4g; |generating - trained|: fp32 merge %.3g, fp32 merge then bf16 %.3g,"
              " bf16 merge (before) %.3g, bf16 base + unmerged adapters %.3g, bf16 base without adapters %.3g\n",
              effect, d32, d16, d_old, d_un, d_base16);
  // Tolerance 1e-4 nats per response: the fp32 merge rounds W + s B A once (|W| ~ 0.3: 3e-8) and 64
  // log-softmaxes of fp32 logits add ~1e-6 each, so the exact path lands near 1e-5; the delta's
  // own effect is ~0.09, bf16 compute noise alone ~0.2 (the base model in bf16 vs fp32).
  EXPECT_GT(effect, 0.05);
  EXPECT_LT(d32, 1e-4);
  // What generation did before (bf16 weights, adapter merged in bf16) misses by more than the
  // whole effect; no bf16 variant is exact, so the run generates in fp32 (configs/demo.toml).
  EXPECT_GT(d_old, effect);
}

// A chain of adapters (each trained on the policy before it, merged in order) folded into one
// adapter of rank sum r_i on the first base: the same policy, merged or unmerged. The chain mixes
// ranks, alphas, rsLoRA and target modules; the second adapter also adapts modules the first
// leaves alone (zero blocks).
TEST(Lora, FoldedChainIsOneAdapterOfTheSamePolicy) {
  RLRF_REQUIRE_TINYSTORIES();
  const fs::path dir = rlrf::fresh_temp_dir("lora_fold");
  LoraConfig first, second, third;
  first.r = 4;
  first.alpha = 8;
  first.target_modules = {"q_proj", "v_proj"};
  second.r = 2;
  second.alpha = 16;
  second.use_rslora = true;
  second.target_modules = kAll;
  third.r = 3;
  third.alpha = 3;
  third.target_regex = R"(model\.layers\.1\.mlp\..*)";
  const std::vector<LoraConfig> configs = {first, second, third};
  std::vector<fs::path> adapters;
  for (size_t i = 0; i < configs.size(); ++i) {
    // Adapter i is trained on the base with adapters 0..i-1 merged (load_merged_policy's order).
    ModelOptions o;
    LlamaForCausalLM m = load_merged_policy(tinystories_dir(), adapters, o);
    apply_lora(m, configs[i]);
    randomize_b(m, 0.05, 20 + static_cast<int>(i));
    adapters.push_back(dir / ("a" + std::to_string(i)));
    save_lora(m, configs[i], adapters.back());
  }
  ModelOptions fp32;
  LlamaForCausalLM chain = load_merged_policy(tinystories_dir(), adapters, fp32);
  const at::Tensor want = logits_of(chain, sample_ids());
  LlamaForCausalLM base = load(tinystories_dir());
  ASSERT_GT(max_abs_diff(logits_of(base, sample_ids()), want), 1e-2);  // the chain changes the policy

  FoldedLora folded = fold_lora_adapters(adapters, dir / "folded", "the-base");
  EXPECT_EQ(folded.r, 9);
  EXPECT_EQ(folded.modules.size(), 14u);
  auto j = nlohmann::json::parse(rlrf::read_file(dir / "folded" / "adapter_config.json"));
  EXPECT_EQ(j["r"], 9);
  EXPECT_EQ(j["lora_alpha"], 9);
  EXPECT_EQ(j["use_rslora"], false);
  EXPECT_EQ(j["base_model_name_or_path"], "the-base");
  EXPECT_EQ(j["target_modules"].size(), 14u);  // a regex input: the full module paths
  EXPECT_EQ(j["target_modules"][0], "model.layers.0.mlp.down_proj");

  LlamaForCausalLM merged = load_merged_policy(tinystories_dir(), {dir / "folded"}, fp32);
  const double d_merged = max_abs_diff(logits_of(merged, sample_ids()), want);
  LlamaForCausalLM unmerged = load(tinystories_dir());  // PEFT's way: W x + B (A x)
  load_lora(unmerged, dir / "folded");
  const double d_unmerged = max_abs_diff(logits_of(unmerged, sample_ids()), want);
  std::printf("folded chain (r = 4 + 2 + 3): max |logit - chain's| merged %.3g, unmerged %.3g (logits up to %.1f)\n", d_merged,
              d_unmerged, want.abs().max().item<double>());
  EXPECT_LT(d_merged, 1e-4);
  EXPECT_LT(d_unmerged, 1e-4);

  // Adapters chosen by name only: the folded one lists module names, as PEFT writes them.
  fold_lora_adapters({adapters[0], adapters[1]}, dir / "named", "b");
  auto k = nlohmann::json::parse(rlrf::read_file(dir / "named" / "adapter_config.json"));
  std::set<std::string> names(k["target_modules"].begin(), k["target_modules"].end());
  EXPECT_EQ(names, std::set<std::string>(kAll.begin(), kAll.end()));
  EXPECT_THROW(fold_lora_adapters({}, dir / "none", "b"), rlrf::Error);
}

// adapter_config.json's target_modules lists exactly the trained layers as PEFT matches them:
// short names when every layer of the name is adapted, full module paths when only some are.
TEST(Lora, SavedTargetModulesAreExactlyTheAdaptedLayers) {
  RLRF_REQUIRE_TINYSTORIES();
  auto targets_after = [](const LoraConfig& cfg) {
    LlamaForCausalLM model = load(tinystories_dir());
    apply_lora(model, cfg);
    rlrf::fs::path dir = rlrf::fresh_temp_dir("lora_targets");
    save_lora(model, cfg, dir);
    auto j = nlohmann::json::parse(rlrf::read_file(dir / "adapter_config.json"));
    std::vector<std::string> t = j["target_modules"].get<std::vector<std::string>>();
    // and they load back onto the same layers
    LlamaForCausalLM fresh = load(tinystories_dir());
    load_lora(fresh, dir);
    EXPECT_EQ(adapted_module_names(fresh), t);
    return t;
  };
  LoraConfig cfg;
  cfg.target_modules = {"v_proj", "q_proj"};
  EXPECT_EQ(targets_after(cfg), (std::vector<std::string>{"q_proj", "v_proj"}));
  cfg.target_modules = {"all-linear"};
  EXPECT_EQ(targets_after(cfg), (std::vector<std::string>{"down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"}));
  cfg.target_modules = {"layers.0.self_attn.q_proj"};  // one layer's q_proj: "q_proj" would adapt both layers
  EXPECT_EQ(targets_after(cfg), (std::vector<std::string>{"model.layers.0.self_attn.q_proj"}));
  cfg.target_modules = {};
  cfg.target_regex = ".*\\.1\\.mlp\\.(up|down)_proj";
  EXPECT_EQ(targets_after(cfg), (std::vector<std::string>{"model.layers.1.mlp.up_proj", "model.layers.1.mlp.down_proj"}));
}
