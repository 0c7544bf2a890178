// The configuration of a whole RLRF run (`rlrf run CONFIG.toml`): one struct per stage, each read
// from its own [section]. Unknown sections and keys are errors. Paths may use {shared} (the shared
// directory: data, models, tokenizers) and {deps} (what scripts/setup.sh installed).
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "align/dpo.h"
#include "align/reward.h"
#include "align/sft.h"
#include "data/prepare.h"
#include "knowledge/prompts.h"
#include "rerank/knowledge_vectors.h"
#include "rerank/reranker.h"
#include "util/config.h"

namespace rlrf {

struct RunSection {
  std::string dir = "runs/demo";  // the run directory (relative to the working directory)
  int rounds = 2;                 // DPO rounds (the paper's Algorithm 1 iterations)
  int threads = 0;                // 0: all cores
  int max_users = 0;              // > 0: only the first N users of each split order (smoke runs)
  void read(const ConfigSection& s);
};

struct ModelSection {
  std::string path = "{shared}/models/tinystories-656k";  // a Hugging Face model directory
  std::string tokenizer;          // empty: the model directory
  std::string dtype = "fp32";     // fp32 | bf16
  std::string device = "auto";    // auto | cpu | cuda | cuda:N
  std::string chat_template = "auto";  // auto (from tokenizer_config.json) | llama3 | llama3.1 | chatml | none
  int max_context = 0;            // 0: the model's max_position_embeddings
  void read(const ConfigSection& s);
};

struct GenerateConfig {
  int n = 4;                  // responses per user (the paper's N)
  double temperature = 1.0;
  double top_p = 1.0;
  int top_k = 0;
  int max_new_tokens = 96;
  int batch_size = 64;
  int64_t seed = 1234;
  int chunk = 256;            // responses written per transaction (what a crash can lose at most)
  // Compute dtype of generation; empty: [model] dtype. bf16 generation of an fp32-trained policy is
  // what serving engines do; on CPUs with AVX512-BF16 it runs ~4x faster than fp32 here.
  std::string dtype;
  int threads = 0;            // intra-op threads; 0: automatic (one for models too small to split)
  // Worker processes generating chunks side by side on CPU; 0: one per core when threads <= 1
  // (a small model decodes on one thread), else 1. Results do not depend on it.
  int workers = 0;
  // Where the texts come from: "builtin" (the embedded engine, the policy of each round loaded here)
  // or "openai" (an OpenAI-compatible server: vLLM, SGLang, llama-server; /v1/completions with the
  // prompt's token ids). The keys below are the server's; only url and model enter the fingerprint.
  std::string backend = "builtin";
  std::string url;            // http://HOST:PORT (or .../v1)
  std::string model;          // the served model's name
  std::string api_key_env;    // an environment variable holding the key (sent as Authorization: Bearer)
  int concurrency = 8;        // requests in flight
  double timeout_s = 600;     // per request
  int max_retries = 6;        // per request, on connection errors, timeouts, 429 and 5xx (jittered backoff)
  std::vector<std::string> stop;  // stop strings (openai; empty: the model's end of sequence)
  int logprobs = -1;          // openai: >= 0 asks for log-probs
  // openai: send the fields beyond OpenAI's that vLLM, SGLang and llama-server take: top_k (-1 when
  // off) and min_p = 0 (so that the engine samples what temperature, top_p, top_k say, not its own
  // defaults), and requests for the generated ids (return_token_ids; logprobs >= 1, with which
  // llama-server lists them). false (a strict OpenAI server): the returned text is tokenized again,
  // which need not give the ids that were sampled.
  bool extensions = true;
  // openai: a shell command run before a round's generation when the served policy must change,
  // with {round}, {policy_dir} (the run's directory of that round's policy) and {run_dir}.
  std::string reload_command;
  void read(const ConfigSection& s);
};

struct EvalConfig {
  std::vector<std::string> models = {"dlcm", "prm"};
  std::vector<int> seeds = {1, 2, 3};
  bool profile_row = true;  // also evaluate the profile-summary knowledge
  bool card_row = false;    // also evaluate the true knowledge cards (knowledge/card.h): the ceiling of card targets
  // With [knowledge] user_history = true: a "history only" row (the history text with no LLM
  // response), so that what the LLM's words add is seen apart from the history's.
  bool history_row = true;
  // Also evaluate every text row the other way ([knowledge] user_history flipped): the response
  // alone when the run encodes history + response, and the reverse.
  bool both_encodings = false;
  // K > 1: the whole run is repeated K times, fold k's users as the test users of the k-th (reward
  // model, SFT and DPO on the others); every user is a test user once and the report pools the
  // users of all folds (RUN/fold-k/ holds each run).
  int folds = 1;
  // Further list settings (kar, popularity, first-stage) the same knowledge is evaluated on, each in
  // its own table (results_<setting>.json): a run on popularity lists still shows the paper's.
  std::vector<std::string> also_settings;
  std::vector<std::string> also_models;  // rerankers for those tables; empty: `models`
  // The knowledge of each round's policy that is evaluated: "greedy" (one argmax response per user,
  // generated for evaluation), "sample0" (the first of the N sampled responses: one sample's noise),
  // "mean" (each user's vector is the mean of the encodings of all N samples).
  std::string decode = "greedy";
  void read(const ConfigSection& s);
};

struct RunConfig {
  std::string source;  // the config's path, or "(embedded demo)"
  RunSection run;
  PrepareConfig prepare;
  ModelSection model;
  PromptConfig prompt;
  GenerateConfig generate;
  SftConfig sft;
  KnowledgeConfig knowledge;
  RewardConfig reward;
  RerankConfig rerank;
  DpoConfig dpo;
  EvalConfig eval;
  ConfigFile file;  // the parsed TOML, for stage fingerprints

  // Parses every section of `file` (--set assignments are applied to it before: ConfigFile::set).
  static RunConfig from_file(const ConfigFile& file);
  // Canonical text of the named sections (fingerprint input).
  std::string sections_text(const std::vector<std::string>& names) const;
};

// [rerank] as the run, `rlrf rerank` and `rlrf reward` read it: RerankConfig's training settings.
// The keys whose home is another section are refused naming it (seeds: [eval] seeds,
// item_knowledge: [knowledge] item, ...); `rerank_verb`: also `rlrf rerank`'s own knowledge and
// cache_dir, which a run refuses (it evaluates the knowledge rows of [eval]).
RerankConfig read_rerank_section(const ConfigSection& s, bool rerank_verb = false);
// [eval] as `rlrf rerank` reads it: seeds and models, with the run's defaults and checks; the
// run's other [eval] keys are refused.
EvalConfig read_eval_seeds_and_models(const ConfigSection& s);

// The demo configuration compiled into the program (configs/demo.toml).
const std::string& embedded_demo_config();

}  // namespace rlrf
