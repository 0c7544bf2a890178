// The OpenAI-compatible completions client: request bodies, response parsing, HTTP with retries and
// the one-time probe of n > 1 (see openai_client.h).
#include "llm/openai_client.h"

#include <cstdint>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <random>
#include <thread>

#include "util/error.h"
#include "util/log.h"

namespace rlrf::llm {

using json = nlohmann::json;

namespace {

// An HTTP answer the request may not be retried on as it stands (the probe's refusal of n > 1).
struct Refused {
  int status;
  std::string message;
};

// The server's own words from an error body: OpenAI/llama.cpp {"error": {"message"}}, vLLM
// {"message"}, FastAPI {"detail"}; else the body itself, shortened.
std::string server_message(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object()) {
    if (j.contains("error")) {
      const json& e = j["error"];
      if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
      if (e.is_string()) return e.get<std::string>();
    }
    if (j.contains("message") && j["message"].is_string()) return j["message"].get<std::string>();
    if (j.contains("detail")) return j["detail"].is_string() ? j["detail"].get<std::string>() : j["detail"].dump();
  }
  std::string s = body.size() > 400 ? body.substr(0, 400) + "..." : body;
  return s.empty() ? "(empty body)" : s;
}

bool retryable_status(int status) { return status == 429 || status == 408 || status >= 500; }

// Statuses with which a server may say that it does not take n > 1 (llama-server: 500 "Only one
// completion choice is allowed"; others 400 or 422).
bool refusal_status(int status) { return status == 400 || status == 422 || status == 500 || status == 501; }

double jitter() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.5, 1.0)(rng);
}

}  // namespace

struct OpenAIClient::Reply {
  int status = 0;        // 0: no HTTP answer (connection refused, reset, timeout)
  std::string body;
  std::string failure;   // what went wrong when status is 0
};

json completion_body(const OpenAIConfig& config, const CompletionRequest& r) {
  json body = {{"prompt", r.prompt}, {"n", r.n}, {"temperature", r.temperature}, {"top_p", r.top_p},
               {"max_tokens", r.max_tokens}, {"seed", r.seed}, {"stream", false}};
  if (!config.model.empty()) body["model"] = config.model;
  if (!r.stop.empty()) body["stop"] = r.stop;
  if (r.logprobs >= 0) body["logprobs"] = r.logprobs;
  if (r.extensions) {
    body["top_k"] = r.top_k > 0 ? r.top_k : -1;
    body["min_p"] = 0.0;
    // llama-server: the temperature before the truncations, as vLLM, transformers and the builtin
    // engine do (llama.cpp's own order applies top_p to the untempered distribution).
    body["samplers"] = {"temperature", "top_k", "top_p"};
    // llama-server: no reuse of a slot's cached prefix, whose logits differ in the last bits from a
    // fresh prompt's and, at a sampling boundary, change the text a seed gives.
    body["cache_prompt"] = false;
    body["return_token_ids"] = true;
    body["logprobs"] = std::max(r.logprobs, 1);
  }
  return body;
}

CompletionResult parse_completion(const json& body, const std::string& what) {
  RLRF_CHECK(body.is_object() && body.contains("choices") && body["choices"].is_array(),
             "{}: the server's answer has no \"choices\" list: {}", what, body.dump().substr(0, 300));
  CompletionResult out;
  std::vector<std::pair<int64_t, CompletionChoice>> indexed;
  int64_t next = 0;
  for (const json& c : body["choices"]) {
    RLRF_CHECK(c.is_object() && c.contains("text") && c["text"].is_string(), "{}: a choice without \"text\": {}", what,
               c.dump().substr(0, 300));
    CompletionChoice choice;
    choice.text = c["text"].get<std::string>();
    if (c.contains("finish_reason") && c["finish_reason"].is_string()) choice.finish_reason = c["finish_reason"].get<std::string>();
    if (c.contains("token_ids") && c["token_ids"].is_array())  // vLLM with return_token_ids
      for (const json& t : c["token_ids"]) choice.ids.push_back(t.get<int32_t>());
    const json* lp = c.contains("logprobs") && c["logprobs"].is_object() ? &c["logprobs"] : nullptr;
    if (lp && lp->contains("content") && (*lp)["content"].is_array()) {  // llama.cpp's shape
      std::vector<int32_t> ids;
      for (const json& t : (*lp)["content"]) {
        if (t.contains("id")) ids.push_back(t["id"].get<int32_t>());
        if (t.contains("logprob")) choice.logprobs.push_back(t["logprob"].get<float>());
      }
      if (choice.ids.empty()) choice.ids = std::move(ids);
    } else if (lp && lp->contains("token_logprobs") && (*lp)["token_logprobs"].is_array()) {  // OpenAI's shape
      for (const json& v : (*lp)["token_logprobs"]) choice.logprobs.push_back(v.is_number() ? v.get<float>() : 0.0f);
      // vLLM with return_tokens_as_token_ids writes each token as "token_id:123".
      std::vector<int32_t> ids;
      if (lp->contains("tokens") && (*lp)["tokens"].is_array())
        for (const json& t : (*lp)["tokens"])
          if (t.is_string() && t.get<std::string>().rfind("token_id:", 0) == 0) ids.push_back(std::stoi(t.get<std::string>().substr(9)));
      if (choice.ids.empty() && !ids.empty() && ids.size() == (*lp)["tokens"].size()) choice.ids = std::move(ids);
    }
    const int64_t index = c.contains("index") && c["index"].is_number_integer() ? c["index"].get<int64_t>() : next;
    ++next;
    indexed.emplace_back(index, std::move(choice));
  }
  std::stable_sort(indexed.begin(), indexed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [i, c] : indexed) out.choices.push_back(std::move(c));
  if (body.contains("usage") && body["usage"].is_object() && body["usage"].contains("completion_tokens"))
    out.completion_tokens = body["usage"]["completion_tokens"].get<int64_t>();
  return out;
}

std::vector<int32_t> tokenize_continuation(const Tokenizer& tokenizer, const std::string& text) {
  std::vector<int32_t> ids = tokenizer.encode(text, /*add_special=*/false);
  if (!ids.empty() && tokenizer.decode({ids.front()}, false).empty()) ids.erase(ids.begin());
  return ids;
}

OpenAIClient::OpenAIClient(OpenAIConfig config) : config_(std::move(config)) {
  const std::string& url = config_.url;
  const size_t scheme_end = url.find("://");
  RLRF_CHECK(scheme_end != std::string::npos && (url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0),
             "[generate] url '{}': expected http://HOST:PORT or https://HOST[:PORT] (optionally ending in /v1)", url);
  const size_t path_start = url.find('/', scheme_end + 3);
  base_ = url.substr(0, path_start);
  std::string prefix = path_start == std::string::npos ? "" : url.substr(path_start);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (prefix.size() < 3 || prefix.compare(prefix.size() - 3, 3, "/v1") != 0) prefix += "/v1";
  path_ = prefix + "/completions";
  RLRF_CHECK(config_.concurrency >= 1, "[generate] concurrency must be >= 1, got {}", config_.concurrency);
  RLRF_CHECK(config_.timeout_s > 0, "[generate] timeout_s must be > 0, got {}", config_.timeout_s);
  RLRF_CHECK(config_.max_retries >= 0, "[generate] max_retries must be >= 0, got {}", config_.max_retries);
  if (!config_.api_key_env.empty()) {
    const char* key = std::getenv(config_.api_key_env.c_str());
    RLRF_CHECK(key && *key, "[generate] api_key_env = \"{}\": that environment variable is not set (it must hold the key)",
               config_.api_key_env);
    api_key_ = key;
  }
}

std::optional<bool> OpenAIClient::n_supported() const {
  const int s = n_support_.load();
  if (s < 0) return std::nullopt;
  return s == 1;
}

OpenAIClient::Reply OpenAIClient::post(const json& body, const std::string& label) {
  httplib::Client http(base_);
  const auto whole = static_cast<time_t>(config_.timeout_s);
  const auto micros = static_cast<time_t>((config_.timeout_s - double(whole)) * 1e6);
  http.set_connection_timeout(whole, micros);
  http.set_read_timeout(whole, micros);
  http.set_write_timeout(whole, micros);
  if (!api_key_.empty()) http.set_bearer_token_auth(api_key_);
  ++requests_;
  httplib::Result res = http.Post(path_, body.dump(), "application/json");
  Reply reply;
  if (!res) {
    reply.failure = httplib::to_string(res.error());
    return reply;
  }
  reply.status = res->status;
  reply.body = std::move(res->body);
  return reply;
}

CompletionResult OpenAIClient::call(const CompletionRequest& request, bool probe) {
  const json body = completion_body(config_, request);
  const std::string what = fmt::format("{} (POST {})", request.label, endpoint());
  for (int attempt = 0;; ++attempt) {
    Reply reply = post(body, request.label);
    if (reply.status >= 200 && reply.status < 300) {
      json j = json::parse(reply.body, nullptr, false);
      RLRF_CHECK(!j.is_discarded(), "{}: the server's answer is not JSON: {}", what, reply.body.substr(0, 300));
      CompletionResult out = parse_completion(j, what);
      RLRF_CHECK(static_cast<int>(out.choices.size()) == request.n, "{}: asked for n = {} choices, the server sent {}", what,
                 request.n, out.choices.size());
      out.retries = attempt;
      return out;
    }
    const std::string failure = reply.status == 0 ? reply.failure
                                                  : fmt::format("HTTP {}: {}", reply.status, server_message(reply.body));
    if (probe && refusal_status(reply.status)) throw Refused{reply.status, server_message(reply.body)};
    if (reply.status != 0 && !retryable_status(reply.status))
      fail("{}: the server refused the request with {}", what, failure);
    if (attempt >= config_.max_retries)
      fail("{}: failed after {} retries; last failure: {} (is the server up? [generate] max_retries, timeout_s)", what,
           attempt, failure);
    const double delay = std::min(config_.backoff_max_s, config_.backoff_s * std::pow(2.0, attempt)) * jitter();
    log_debug("{}: {}; retry {} of {} in {:.2f} s", what, failure, attempt + 1, config_.max_retries, delay);
    ++retries_;
    std::this_thread::sleep_for(std::chrono::duration<double>(delay));
  }
}

CompletionResult OpenAIClient::singles(const CompletionRequest& request) {
  CompletionResult out;
  for (int i = 0; i < request.n; ++i) {
    CompletionRequest one = request;
    one.n = 1;
    one.seed = request.seed + i;
    one.label = fmt::format("{} (choice {} of {} sent alone)", request.label, i, request.n);
    CompletionResult r = call(one, false);
    out.choices.push_back(std::move(r.choices.at(0)));
    out.completion_tokens += r.completion_tokens;
    out.retries += r.retries;
  }
  return out;
}

CompletionResult OpenAIClient::complete(const CompletionRequest& request) {
  RLRF_CHECK(request.n >= 1, "{}: n must be >= 1", request.label);
  if (request.n == 1) return call(request, false);
  if (n_support_.load() == -1) {
    std::lock_guard<std::mutex> lock(probe_mutex_);
    if (n_support_.load() == -1) {
      try {
        CompletionResult out = call(request, true);
        n_support_ = 1;
        return out;
      } catch (const Refused& r) {
        ++n_refusals_;
        n_support_ = 0;
        log_info("{} refuses n > 1 (HTTP {}: {}); sending each prompt's {} samples as single requests seeded seed + i",
                 endpoint(), r.status, r.message, request.n);
      }
    }
  }
  return n_support_.load() == 1 ? call(request, false) : singles(request);
}

}  // namespace rlrf::llm
