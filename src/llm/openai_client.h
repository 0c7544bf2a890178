// A client of OpenAI-compatible completion servers (vLLM, SGLang, llama.cpp's llama-server): POST
// /v1/completions with the prompt as token ids, retried with jittered exponential backoff on
// connection errors, timeouts, 429 and 5xx; any other 4xx is an rlrf::Error quoting the server's
// message and naming the request. A server that refuses n > 1 is found out once per client (one
// probe); later n-requests go out as n single requests whose seeds continue the n-request's
// (seed + i for choice i, what vLLM gives the children of one request). No torch here.
//
//   OpenAIConfig cfg; cfg.url = "http://127.0.0.1:8080"; cfg.model = "tinystories";
//   OpenAIClient client(cfg);
//   CompletionRequest r; r.prompt = ids; r.n = 4; r.seed = 17; r.max_tokens = 80; r.label = "user 3";
//   CompletionResult out = client.complete(r);  // out.choices[i]: sample i (seed 17 + i)
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace rlrf::llm {

struct OpenAIConfig {
  // Base address: "http://host:port" (then /v1/completions) or one ending in "/v1".
  std::string url;
  std::string model;        // the served model's name ("model" of each request)
  std::string api_key_env;  // name of an environment variable holding the key (Authorization: Bearer); empty: none
  int concurrency = 8;      // requests in flight (used by callers that run requests side by side)
  double timeout_s = 600;   // per request (connect, read and write)
  int max_retries = 6;      // retries of one request after a retryable failure
  double backoff_s = 0.5;   // first retry's delay; doubled each time, jittered, capped at backoff_max_s
  double backoff_max_s = 30;
};

struct CompletionRequest {
  std::vector<int32_t> prompt;  // token ids, sent as they are (BOS included when the model wants it)
  int n = 1;
  double temperature = 1.0;
  double top_p = 1.0;
  int top_k = 0;                 // 0: off (sent as -1 with `extensions`)
  int max_tokens = 16;
  int64_t seed = 0;              // choice i is seeded seed + i
  std::vector<std::string> stop;  // stop strings (empty: the model's end of sequence only)
  int logprobs = -1;             // >= 0: ask for log-probs (that many alternatives per token)
  // Fields beyond OpenAI's that vLLM, SGLang and llama-server take: top_k (-1: off) and min_p = 0, so
  // that only temperature, top_p and top_k shape the distribution (llama-server's defaults are
  // top_k 40, min_p 0.05), llama-server's sampler order (temperature first) and no prompt cache; and
  // the generated ids: "return_token_ids" (vLLM) and logprobs >= 1 (llama-server lists each token's
  // id with its log-prob). Servers ignore the fields they do not know; a strict OpenAI server needs false.
  bool extensions = false;
  std::string label;             // names the request in errors ("user 12, samples 0..3")
};

struct CompletionChoice {
  std::string text;
  std::string finish_reason;     // "stop" or "length" (as the server says)
  std::vector<int32_t> ids;      // generated ids when the server sent them (vLLM token_ids, llama.cpp logprobs); else empty
  std::vector<float> logprobs;   // per generated token, when asked for and sent
};

struct CompletionResult {
  std::vector<CompletionChoice> choices;  // index i: sample i of the request
  int64_t completion_tokens = 0;          // from "usage" (0 when absent)
  int retries = 0;                        // retries this request needed
};

// The request body of one /v1/completions call (n, seed as given).
nlohmann::json completion_body(const OpenAIConfig& config, const CompletionRequest& request);
// Reads a /v1/completions response body: choices ordered by index; throws rlrf::Error naming
// `what` when the shape is not a completion.
CompletionResult parse_completion(const nlohmann::json& body, const std::string& what);

// Ids of a continuation's text when the server sent none: the text tokenized on its own, without a
// leading token that decodes to nothing (a sentencepiece-style tokenizer's prefix space, which a
// continuation does not start with). Not always the sampled ids: tokenizing text gives the
// tokenizer's own segmentation, which a model need not have sampled.
std::vector<int32_t> tokenize_continuation(const Tokenizer& tokenizer, const std::string& text);

class OpenAIClient {
 public:
  explicit OpenAIClient(OpenAIConfig config);
  // One completion request with its n choices (one call, or n single calls when the server refuses
  // n > 1). Thread-safe: callers run up to `concurrency` side by side.
  CompletionResult complete(const CompletionRequest& request);

  const OpenAIConfig& config() const { return config_; }
  std::string endpoint() const { return base_ + path_; }  // e.g. http://127.0.0.1:8080/v1/completions
  // Whether the server takes n > 1: unknown until the first n-request (nullopt).
  std::optional<bool> n_supported() const;
  int64_t requests() const { return requests_.load(); }  // HTTP requests sent, retries included
  int64_t retries() const { return retries_.load(); }
  int64_t n_refusals() const { return n_refusals_.load(); }  // n-requests the server refused (1 after a probe)

 private:
  struct Reply;
  Reply post(const nlohmann::json& body, const std::string& label);  // one HTTP call, no retry
  CompletionResult call(const CompletionRequest& request, bool retry_refusal);  // with retries
  CompletionResult singles(const CompletionRequest& request);

  OpenAIConfig config_;
  std::string base_, path_, api_key_;
  std::mutex probe_mutex_;
  std::atomic<int> n_support_{-1};  // -1 unknown, 0 refused, 1 taken
  std::atomic<int64_t> requests_{0}, retries_{0}, n_refusals_{0};
};

}  // namespace rlrf::llm
