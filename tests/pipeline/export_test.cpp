// `rlrf export` of a run's policy: the merged Hugging Face checkpoint and the one folded PEFT adapter
// reload in rlrf to the log-probs of the trained policy (load_policy), on the run's own prompts and
// responses; each round's adapter names the model it is relative to (and that model, once
// exported, gives the round's policy with the adapter); a full SFT model becomes the folded
// adapter's base, written beside it; what cannot be exported is refused by name.
//
// Tolerance: 1e-4 nats on a response's summed log-prob (at most 12 tokens). The trained policy is
// base + each delta merged in fp32, one after another; the exports compute the same sum in another
// order (one folded delta, or unmerged W x + B (A x)), so they differ by fp32 rounding only
// (~1e-7 relative on each weight, ~1e-6 on a logit). The rounds' effect is orders of magnitude larger
// and is checked too, so the comparison can fail.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "export_run.h"
#include "llm/checkpoint.h"
#include "llm/logprob.h"
#include "llm/lora.h"
#include "pipeline/run_config.h"
#include "pipeline/run_context.h"
#include "pipeline/run_store.h"
#include "util/config.h"
#include "util/files.h"

using namespace rlrf;
using namespace rlrf::test;
using json = nlohmann::json;

namespace {

constexpr double kTolerance = 1e-4;

struct Sequences {
  std::vector<std::vector<int32_t>> prompts, responses;
};

// The run's stored responses (rounds 0 and 1) under their users' prompts.
Sequences run_sequences(const RunContext& ctx) {
  Sequences s;
  for (int round : {0, 1})
    for (const StoredResponse& r : ctx.store->responses(round)) {
      if (r.ids.empty()) continue;
      s.prompts.push_back(ctx.prompt_ids[static_cast<size_t>(r.user)]);
      s.responses.push_back(r.ids);
    }
  return s;
}

std::vector<double> logprobs(llm::LlamaForCausalLM& model, const Sequences& s) {
  torch::NoGradGuard no_grad;
  return llm::continuation_logprob_sums(model, s.prompts, s.responses, 16);
}

double max_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

llm::LlamaForCausalLM fp32_model(const fs::path& dir) {
  llm::ModelOptions o;
  return llm::load_model(dir, o);
}

json json_of(const fs::path& file) { return json::parse(read_file(file)); }

std::string abs_string(const fs::path& p) { return fs::absolute(p).lexically_normal().string(); }

}  // namespace

TEST(Export, MergedCheckpointAndFoldedAdapterGiveTheTrainedPolicy) {
  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory";
  const fs::path base = fresh_temp_dir("export_lora"), dir = base / "run", out = base / "out";
  auto [rc, log] = run_for_export(base, "lora", 2);
  ASSERT_EQ(rc, 0) << log;
  for (int r : {1, 2}) ASSERT_TRUE(fs::exists(dir / "models" / ("round" + std::to_string(r)) / "adapter" / "adapter_config.json")) << log;

  // Each round's adapter names what it was trained on: round 1 the SFT merge, round 2 round 1's.
  EXPECT_EQ(json_of(dir / "models/round1/adapter/adapter_config.json")["base_model_name_or_path"], abs_string(dir / "models/sft") + "/merged");
  EXPECT_EQ(json_of(dir / "models/round2/adapter/adapter_config.json")["base_model_name_or_path"], abs_string(dir / "models/round1") + "/merged");
  const std::string readme = read_file(dir / "models/round2/adapter/README.md");
  EXPECT_NE(readme.find("--round 1 --format hf --output " + abs_string(dir / "models/round1") + "/merged"), std::string::npos) << readme;

  for (const std::string& args :
       {"--run " + dir.string() + " --round 2 --format hf --output " + (out / "hf").string(),
        "--run " + dir.string() + " --format peft --output " + (out / "peft").string(),  // the last round by default
        "--run " + dir.string() + " --round 1 --format hf --output " + (dir / "models/round1/merged").string()}) {
    auto [erc, elog] = run_export(args, base / "export.log");
    ASSERT_EQ(erc, 0) << args << "\n" << elog;
  }
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "rlrf_export.json"})
    EXPECT_TRUE(fs::exists(out / "hf" / f)) << f;
  EXPECT_EQ(json_of(out / "hf" / "config.json")["torch_dtype"], "float32");
  const json adapter = json_of(out / "peft" / "adapter_config.json");
  const std::string model_path = abs_string(expand_path("{shared}/models/tinystories-656k"));
  EXPECT_EQ(adapter["base_model_name_or_path"], model_path);  // LoRA SFT: the configured model
  EXPECT_EQ(adapter["r"], 4 + 8 + 8);
  EXPECT_EQ(adapter["lora_alpha"], 20);
  EXPECT_TRUE(fs::exists(out / "peft" / "README.md"));

  RunContext ctx = open_run(RunConfig::from_file(ConfigFile::load(dir / "config.toml")));
  const Sequences seq = run_sequences(ctx);
  ASSERT_GT(seq.prompts.size(), 20u);
  llm::LlamaForCausalLM trained = load_policy(ctx, 2, at::kFloat), sft = load_policy(ctx, 0, at::kFloat);
  const std::vector<double> want = logprobs(trained, seq);

  llm::LlamaForCausalLM hf = fp32_model(out / "hf");
  llm::ModelOptions fp32;
  llm::LlamaForCausalLM peft_merged = llm::load_merged_policy(model_path, {out / "peft"}, fp32);
  llm::LlamaForCausalLM peft_unmerged = fp32_model(model_path);  // PEFT's way: W x + B (A x)
  llm::load_lora(peft_unmerged, out / "peft");
  llm::LlamaForCausalLM on_named_base = fp32_model(dir / "models/round1/merged");  // round 2's adapter on the base it names
  llm::load_lora(on_named_base, dir / "models/round2/adapter");
  llm::LlamaForCausalLM on_model = fp32_model(model_path);  // the old reading: round 2's adapter on the configured model
  llm::load_lora(on_model, dir / "models/round2/adapter");

  const double d_hf = max_diff(logprobs(hf, seq), want), d_merged = max_diff(logprobs(peft_merged, seq), want),
               d_unmerged = max_diff(logprobs(peft_unmerged, seq), want), d_named = max_diff(logprobs(on_named_base, seq), want),
               d_model = max_diff(logprobs(on_model, seq), want), effect = max_diff(logprobs(sft, seq), want);
  std::printf("%zu responses, max |log-prob sum - trained policy's| (nats):\n"
              "  merged checkpoint (hf)                 %.3g\n"
              "  folded adapter (r = %d), merged          %.3g\n"
              "  folded adapter, unmerged (PEFT's way)  %.3g\n"
              "  round 2's adapter on the base it names %.3g\n"
              "  round 2's adapter on the configured model (the old config's reading) %.3g\n"
              "  the rounds' effect (SFT policy vs round 2) %.3g\n",
              seq.prompts.size(), d_hf, adapter["r"].get<int>(), d_merged, d_unmerged, d_named, d_model, effect);
  EXPECT_LT(d_hf, kTolerance);
  EXPECT_LT(d_merged, kTolerance);
  EXPECT_LT(d_unmerged, kTolerance);
  EXPECT_LT(d_named, kTolerance);
  EXPECT_GT(effect, 100 * kTolerance);
  EXPECT_GT(d_model, 100 * kTolerance);
}

TEST(Export, FullSftModelIsTheFoldedAdaptersBaseWrittenBesideIt) {
  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory";
  const fs::path base = fresh_temp_dir("export_full_sft"), dir = base / "run", out = base / "out";
  auto [rc, log] = run_for_export(base, "full", 1);
  ASSERT_EQ(rc, 0) << log;
  // Round 1 was trained on the SFT model itself, which is on disk: its adapter names it, no merge needed.
  EXPECT_EQ(json_of(dir / "models/round1/adapter/adapter_config.json")["base_model_name_or_path"], abs_string(dir / "models/sft"));
  EXPECT_EQ(read_file(dir / "models/round1/adapter/README.md").find("does not store it"), std::string::npos);

  auto [erc, elog] = run_export("--run " + dir.string() + " --round 1 --format peft --output " + (out / "peft").string(), base / "e.log");
  ASSERT_EQ(erc, 0) << elog;
  const json adapter = json_of(out / "peft" / "adapter_config.json");
  EXPECT_EQ(adapter["base_model_name_or_path"], abs_string(out / "peft" / "base"));
  EXPECT_EQ(adapter["r"], 8);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"}) EXPECT_TRUE(fs::exists(out / "peft" / "base" / f)) << f;

  RunContext ctx = open_run(RunConfig::from_file(ConfigFile::load(dir / "config.toml")));
  const Sequences seq = run_sequences(ctx);
  llm::LlamaForCausalLM trained = load_policy(ctx, 1, at::kFloat);
  llm::LlamaForCausalLM peft = fp32_model(out / "peft" / "base");
  llm::load_lora(peft, out / "peft");
  const double d = max_diff(logprobs(peft, seq), logprobs(trained, seq));
  std::printf("full SFT + round 1 folded on base/: max |log-prob sum - trained policy's| %.3g nats over %zu responses\n", d,
              seq.prompts.size());
  EXPECT_LT(d, kTolerance);

  // Refusals name what is wrong.
  auto [r0, l0] = run_export("--run " + dir.string() + " --round 0 --format peft --output " + (out / "p0").string(), base / "r0.log");
  EXPECT_EQ(r0, 1);
  EXPECT_NE(l0.find("has no LoRA adapter to fold"), std::string::npos) << l0;
  auto [r5, l5] = run_export("--run " + dir.string() + " --round 5 --format hf --output " + (out / "h5").string(), base / "r5.log");
  EXPECT_EQ(r5, 1);
  EXPECT_NE(l5.find("there is no round 5"), std::string::npos) << l5;
  auto [rb, lb] = run_export("--run " + (base / "nowhere").string() + " --format hf --output " + (out / "x").string(), base / "rb.log");
  EXPECT_EQ(rb, 1);
  EXPECT_NE(lb.find("no config.toml"), std::string::npos) << lb;
  auto [rf, lf] = run_export("--run " + dir.string() + " --format onnx --output " + (out / "x").string(), base / "rf.log");
  EXPECT_EQ(rf, 1);
  EXPECT_NE(lf.find("unknown export format 'onnx'"), std::string::npos) << lf;
}
