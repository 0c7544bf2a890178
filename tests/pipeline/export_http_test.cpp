// Cross-engine agreement of `rlrf export --format gguf`: llama-server (llama.cpp, built by
// scripts/build-llama-server.sh) serving our GGUF gives, for the prompts of
// ../shared/reference/tinystories-656k-greedy.json, the greedy ids of the built-in engine on the
// same model: tinystories-656k itself, and the merged policy of a DPO round (full SFT + LoRA round 1).
// Where llama-server is missing the tests fail naming the build script, or skip with
// RLRF_SKIP_ENGINE_TESTS=1 (tests/engine_server.h).
#include <gtest/gtest.h>

#include <cstdio>

#include "engine_server.h"
#include "export_run.h"
#include "llm/checkpoint.h"
#include "llm/generate.h"
#include "llm/openai_client.h"
#include "pipeline/run_config.h"
#include "pipeline/run_context.h"
#include "util/config.h"
#include "util/files.h"

using namespace rlrf;
using namespace rlrf::test;
using rlrf::engine_test::LlamaServer;
using json = nlohmann::json;

namespace {

constexpr int32_t kEos = 2;  // tinystories' <|end_story|>

const json& reference() {
  static const json j = json::parse(read_file(shared_dir() / "reference" / "tinystories-656k-greedy.json"));
  return j;
}

std::vector<int32_t> ids_of(const json& list) {
  std::vector<int32_t> out;
  for (const json& v : list) out.push_back(v.get<int32_t>());
  return out;
}

// Greedy ids up to (not including) the end of the story.
std::vector<int32_t> until_eos(std::vector<int32_t> ids) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] == kEos) {
      ids.resize(i);
      break;
    }
  return ids;
}

struct Prompt {
  std::vector<int32_t> ids;
  int max_tokens = 0;
  std::string label;
};

// The reference prompts, with as many tokens as the reference has.
std::vector<Prompt> reference_prompts() {
  std::vector<Prompt> out;
  for (const json& ref : reference())
    out.push_back({ids_of(ref["prompt_ids"]), static_cast<int>(ref["greedy_ids"].size()), ref["prompt"].get<std::string>()});
  return out;
}

// The built-in engine's greedy ids for each prompt.
std::vector<std::vector<int32_t>> builtin_greedy(llm::LlamaForCausalLM& model, const std::vector<Prompt>& prompts) {
  std::vector<std::vector<int32_t>> out;
  for (const Prompt& p : prompts) {
    llm::GenerateOptions o;
    o.max_new_tokens = p.max_tokens;
    o.sampling.temperature = 0;
    o.stop_ids = {kEos};
    out.push_back(until_eos(llm::generate(model, {{p.ids}}, o)[0].ids));
  }
  return out;
}

// llama-server's greedy ids for each prompt, serving `gguf`.
std::vector<std::vector<int32_t>> server_greedy(const fs::path& gguf, const std::vector<Prompt>& prompts) {
  LlamaServer server(1, 1, gguf);
  std::string why;
  if (!server.start(&why)) {
    ADD_FAILURE() << why;
    return {};
  }
  llm::OpenAIConfig c;
  c.url = server.url();
  c.model = "export";
  c.timeout_s = 60;
  llm::OpenAIClient client(c);
  std::vector<std::vector<int32_t>> out;
  for (const Prompt& p : prompts) {
    llm::CompletionRequest r;
    r.prompt = p.ids;
    r.temperature = 0;
    r.max_tokens = p.max_tokens;
    r.logprobs = 1;  // llama-server then sends the ids
    r.label = p.label;
    out.push_back(until_eos(client.complete(r).choices.at(0).ids));
  }
  return out;
}

}  // namespace

TEST(ExportEngine, TinystoriesGgufGivesTheBuiltinGreedyIdsInLlamaServer) {
  RLRF_REQUIRE_LLAMA_SERVER();
  const fs::path base = fresh_temp_dir("export_gguf_model"), file = base / "tinystories.gguf";
  const fs::path model = shared_dir() / "models" / "tinystories-656k";
  auto [rc, log] = run_export("--model " + model.string() + " --format gguf --output " + file.string(), base / "export.log");
  ASSERT_EQ(rc, 0) << log;
  llm::ModelOptions o;
  llm::LlamaForCausalLM m = llm::load_model(model, o);
  const std::vector<Prompt> prompts = reference_prompts();
  const auto want = builtin_greedy(m, prompts);
  const auto got = server_greedy(file, prompts);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i], want[i]) << reference()[i]["prompt"];
    EXPECT_EQ(want[i], until_eos(ids_of(reference()[i]["greedy_ids"]))) << reference()[i]["prompt"];
    std::printf("prompt %zu: %zu greedy ids, llama-server on our gguf %s the built-in engine\n", i, want[i].size(),
                got[i] == want[i] ? "equals" : "DIFFERS FROM");
  }
}

// The round-1 policy of a run with a full SFT fine-tune and a LoRA DPO round (the demo's recipe):
// the reference prompts and three of the run's own user prompts.
TEST(ExportEngine, DpoRoundGgufGivesTheBuiltinGreedyIdsInLlamaServer) {
  RLRF_REQUIRE_LLAMA_SERVER();
  const fs::path base = fresh_temp_dir("export_gguf_round"), dir = base / "run", file = base / "round1.gguf";
  auto [rc, log] = run_for_export(base, "full", 1);
  ASSERT_EQ(rc, 0) << log;
  ASSERT_TRUE(fs::exists(dir / "models/round1/adapter/adapter_config.json")) << log;
  auto [erc, elog] = run_export("--run " + dir.string() + " --round 1 --format gguf --output " + file.string(), base / "export.log");
  ASSERT_EQ(erc, 0) << elog;

  RunContext ctx = open_run(RunConfig::from_file(ConfigFile::load(dir / "config.toml")));
  std::vector<Prompt> prompts = reference_prompts();
  for (size_t i = 0; i < 3 && i < ctx.users.size(); ++i)
    prompts.push_back({ctx.prompt_ids[static_cast<size_t>(ctx.users[i])], 24, "user " + std::to_string(ctx.users[i])});
  llm::LlamaForCausalLM policy = load_policy(ctx, 1, at::kFloat);
  const auto want = builtin_greedy(policy, prompts);
  llm::ModelOptions o;
  llm::LlamaForCausalLM original = llm::load_model(shared_dir() / "models" / "tinystories-656k", o);
  const auto before = builtin_greedy(original, prompts);
  const auto got = server_greedy(file, prompts);
  ASSERT_EQ(got.size(), want.size());
  int changed = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i], want[i]) << prompts[i].label;
    changed += want[i] != before[i];
    std::printf("%-18s %2zu greedy ids of the round-1 policy, llama-server on its gguf %s the built-in engine\n",
                prompts[i].label.substr(0, 18).c_str(), want[i].size(), got[i] == want[i] ? "equals" : "DIFFERS FROM");
  }
  std::printf("the round-1 policy's greedy ids differ from tinystories-656k's for %d of %zu prompts\n", changed, want.size());
  EXPECT_GT(changed, 0);  // the policy is not the original model: the agreement says something
}
