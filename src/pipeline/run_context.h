// What every stage of a run shares: the configuration, the run directory and its store, the
// prepared data, the tokenizer, the prompts and the text encoder; plus how a stage decides that its
// outputs are current (a fingerprint of its inputs and config) and how the policy of round r is
// rebuilt (base or SFT model, then each round's adapters merged in order).
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "data/prepare.h"
#include "encode/encoder.h"
#include "knowledge/card.h"
#include "llm/llama.h"
#include "pipeline/run_config.h"
#include "pipeline/run_store.h"
#include "text/tokenizer.h"

namespace rlrf::llm {
class OpenAIClient;
}

namespace rlrf {

// Bumped when a stage's outputs change meaning, so old runs are redone rather than misread.
inline constexpr const char* kPipelineVersion = "rlrf-pipeline-4";  // 4: cross-fitted rewards, cards

struct RunContext {
  RunConfig config;
  std::filesystem::path dir;
  std::unique_ptr<RunStore> store;
  PreparedData data;
  std::string prepared_fingerprint;
  Tokenizer tokenizer;
  std::string chat_template;  // resolved: llama3 | llama3.1 | chatml | none
  int max_context = 0;
  std::string device;          // resolved
  std::unique_ptr<TextEncoder> encoder;
  std::vector<int32_t> users;  // users taking part (those with lists, max_users applied), ascending
  // Per user (indexed by user): the prompt shown to the LLM and its rendered ids (empty for users
  // not taking part).
  std::vector<UserPrompt> prompts;
  std::vector<std::vector<int32_t>> prompt_ids;
  // [generate] backend = "openai": the server's client, made once per run so that what it learns of
  // the server (whether it takes n > 1) is learnt once; and the round whose policy the server was
  // last told to load by [generate] reload_command (-1: none yet).
  std::shared_ptr<llm::OpenAIClient> engine;
  int served_round = -1;

  std::filesystem::path path(const std::string& rel) const { return dir / rel; }
  std::filesystem::path encode_cache() const { return dir / "cache" / "encode"; }
  std::filesystem::path model_dir(int round) const;  // where round r's policy (adapter or model) lives
  std::filesystem::path sft_dir() const;
};

// Where a run directory keeps round r's policy (an adapter/ or a full model) and the SFT model.
std::filesystem::path round_model_dir(const std::filesystem::path& run_dir, int round);
std::filesystem::path sft_model_dir(const std::filesystem::path& run_dir);

// The files round r's policy is made of: a model directory in Hugging Face layout (the configured
// model, the full SFT model, or the latest full DPO round) and the PEFT adapters merged into it, in
// order (the LoRA SFT adapter, then each LoRA round's; rounds that were skipped add nothing). Round
// r's adapter was trained on the policy of round r-1: the chain up to r-1, merged.
struct PolicyChain {
  std::filesystem::path base;
  std::vector<std::filesystem::path> adapters;
};
PolicyChain policy_chain(const RunConfig& config, const std::filesystem::path& run_dir, int round);

// The text encoder's name for fingerprints: a stage reading encoded knowledge is redone when the
// encoder's behaviour changes ("glove-100d-sif" became "glove-100d-sif-decades") even if the config
// naming it ("glove") did not.
std::string encoder_identity(const RunContext& ctx);

// SHA-256 over the parts, joined with a separator that cannot occur in them.
std::string fingerprint(const std::vector<std::string>& parts);

// True when `stage` finished with exactly `fp`.
bool stage_current(const RunContext& ctx, const std::string& stage, const std::string& fp);

// Opens the run directory, prepares (or loads) the data, the tokenizer, prompts and encoder.
RunContext open_run(const RunConfig& config);

// The run's data prepared with another list setting (cached as prepared_<setting>.bin), with its
// fingerprint in `fp`; an error when its users or splits differ from the run's.
PreparedData prepare_other_setting(RunContext& ctx, const std::string& setting, std::string* fp);

// Fingerprints of the policy of each round (the model that generates round r's responses).
std::string policy_fingerprint(const RunContext& ctx, int round);

// Loads the policy that generates round r: the base model (or the SFT model), then round 1..r's
// adapters (or round r's full model), all merged in fp32 and only then cast to `dtype` (a delta
// merged into bf16 weights would round away). Rounds that were skipped (no pairs) add nothing.
llm::LlamaForCausalLM load_policy(const RunContext& ctx, int round, at::ScalarType dtype);
// A DPO round left no pairs to train on (every user's rewards tied): its policy is round r-1's.
// Marked by this file in model_dir(r).
inline constexpr const char* kSkippedRoundFile = "skipped.json";
bool dpo_round_skipped(const RunContext& ctx, int round);
bool dpo_round_skipped(const std::filesystem::path& run_dir, int round);
// A stage's compute dtype: its own `dtype` key when set, else [model] dtype.
at::ScalarType stage_dtype(const RunContext& ctx, const std::string& stage_dtype);

// The run-store round that holds the greedy responses of round r's policy (sample 0 each):
// negative, so nothing that reads round r's N samples (rewards, pairs, DPO) ever sees them.
inline int greedy_store_round(int round) { return -1 - round; }

// Knowledge texts per user (indexed by user) from round r's sample-0 responses ("" when missing).
std::vector<std::string> round_knowledge_texts(const RunContext& ctx, int round);

// The true knowledge card of each participating user (indexed by user; empty for the others),
// computed from the history items the user's prompt shows.
std::vector<KnowledgeCard> user_cards(const RunContext& ctx);
// Card texts per user (indexed by user; "" for non-participants), each statement replaced with
// probability `noise` (stream `seed`); a card whose tokens with the stop token exceed
// [generate] max_new_tokens loses its favourite title (cards are written to the end and stopped).
std::vector<std::string> card_texts(const RunContext& ctx, double noise = 0.0, uint64_t seed = 0);

// The rendered chat messages of user u's prompt (for exports): system and user message.
std::string response_text(const RunContext& ctx, const std::vector<int32_t>& ids);

}  // namespace rlrf
