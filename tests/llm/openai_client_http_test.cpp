// The OpenAI-compatible completions client against the real llama-server (scripts/build-llama-server.sh)
// serving the demo model in gguf: the same token ids as the builtin tokenizer, the same greedy ids as
// the builtin engine's reference, the same text for the same seed, n > 1 refused once and answered
// by single requests seeded seed + i; and, through a fault-injecting proxy in front of it, retries on
// 5xx, 429, timeouts and refused connections, and clear errors on a 4xx or when retries run out.
#include <gtest/gtest.h>

#include "engine_server.h"
#include "llm/llm_test_util.h"
#include "llm/openai_client.h"
#include "text/tokenizer.h"
#include "util/error.h"
#include "util/strings.h"

using namespace rlrf;
using namespace rlrf::llm;
using rlrf::engine_test::FaultProxy;
using rlrf::engine_test::LlamaServer;
using json = nlohmann::json;
namespace lt = rlrf::llm::testing;

namespace {

// One server for the whole suite (starting one takes a second).
LlamaServer* shared_server() {
  static std::unique_ptr<LlamaServer> server;
  static std::string why;
  if (!server) {
    server = std::make_unique<LlamaServer>(2, 1);
    if (!server->start(&why)) ADD_FAILURE() << why;
  }
  return server.get();
}

OpenAIConfig fast_config(const std::string& url) {
  OpenAIConfig c;
  c.url = url;
  c.model = "tinystories";
  c.timeout_s = 30;
  c.max_retries = 4;
  c.backoff_s = 0.01;
  c.backoff_max_s = 0.05;
  return c;
}

CompletionRequest story(int n = 1, int64_t seed = 7, int max_tokens = 24) {
  CompletionRequest r;
  r.prompt = lt::to_ids(lt::greedy_reference()[0]["prompt_ids"]);
  r.n = n;
  r.seed = seed;
  r.max_tokens = max_tokens;
  r.temperature = 1.0;
  r.label = "test request";
  return r;
}

}  // namespace

TEST(OpenAIClient, ParsesVllmAndLlamaCppShapes) {
  json vllm = {{"choices", {{{"index", 1}, {"text", " b"}, {"finish_reason", "length"}, {"token_ids", {5, 6}}},
                            {{"index", 0}, {"text", " a"}, {"finish_reason", "stop"},
                             {"logprobs", {{"tokens", {"token_id:3", "token_id:4"}}, {"token_logprobs", {-0.5, -1.5}}}}}}},
               {"usage", {{"completion_tokens", 4}}}};
  CompletionResult r = parse_completion(vllm, "x");
  ASSERT_EQ(r.choices.size(), 2u);
  EXPECT_EQ(r.choices[0].text, " a");
  EXPECT_EQ(r.choices[0].ids, (std::vector<int32_t>{3, 4}));
  EXPECT_EQ(r.choices[0].logprobs, (std::vector<float>{-0.5f, -1.5f}));
  EXPECT_EQ(r.choices[1].ids, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(r.completion_tokens, 4);
  json llamacpp = {{"choices", {{{"index", 0}, {"text", "x"}, {"finish_reason", "stop"},
                                 {"logprobs", {{"content", {{{"id", 9}, {"token", "x"}, {"logprob", -0.25}}}}}}}}}};
  r = parse_completion(llamacpp, "y");
  EXPECT_EQ(r.choices[0].ids, (std::vector<int32_t>{9}));
  EXPECT_THROW(parse_completion(json{{"error", "no"}}, "z"), Error);

  OpenAIConfig c;
  c.model = "m";
  CompletionRequest q = story(3, 11);
  q.stop = {"\n\n"};
  json body = completion_body(c, q);
  EXPECT_EQ(body["n"], 3);
  EXPECT_EQ(body["seed"], 11);
  EXPECT_EQ(body["model"], "m");
  EXPECT_EQ(body["stop"][0], "\n\n");
  EXPECT_TRUE(body["prompt"].is_array());
  EXPECT_FALSE(body.contains("logprobs"));
}

TEST(OpenAIClient, EndpointFromUrl) {
  EXPECT_EQ(OpenAIClient(fast_config("http://127.0.0.1:8000")).endpoint(), "http://127.0.0.1:8000/v1/completions");
  EXPECT_EQ(OpenAIClient(fast_config("http://h:1/v1/")).endpoint(), "http://h:1/v1/completions");
  EXPECT_EQ(OpenAIClient(fast_config("https://h/api")).endpoint(), "https://h/api/v1/completions");
  EXPECT_THROW(OpenAIClient(fast_config("127.0.0.1:8000")), Error);
  OpenAIConfig keyed = fast_config("http://h:1");
  keyed.api_key_env = "RLRF_TEST_SURELY_UNSET_KEY";
  try {
    OpenAIClient c(keyed);
    FAIL() << "no error for an unset key variable";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("RLRF_TEST_SURELY_UNSET_KEY"), std::string::npos) << e.what();
  }
}

TEST(OpenAIClient, TokenIdsAgreeWithTheBuiltinTokenizer) {
  RLRF_REQUIRE_LLAMA_SERVER();
  RLRF_REQUIRE_TINYSTORIES();
  LlamaServer* server = shared_server();
  Tokenizer tok = Tokenizer::load(lt::tinystories_dir());
  httplib::Client http("127.0.0.1", server->port());
  for (std::string text : {"Once upon a time, there was a little girl named Lily.",
                           "Tom and Sue went to the park. \"Look!\" said Tom, 3 times; it's fun."}) {
    auto res = http.Post("/tokenize", json{{"content", text}, {"add_special", true}}.dump(), "application/json");
    ASSERT_TRUE(res && res->status == 200);
    std::vector<int32_t> theirs = json::parse(res->body)["tokens"].get<std::vector<int32_t>>();
    EXPECT_EQ(theirs, tok.encode(text, true)) << text;
  }
}

TEST(OpenAIClient, GreedyIdsEqualTheBuiltinEnginesReference) {
  RLRF_REQUIRE_LLAMA_SERVER();
  OpenAIClient client(fast_config(shared_server()->url()));
  for (const json& ref : lt::greedy_reference()) {
    CompletionRequest r;
    r.prompt = lt::to_ids(ref["prompt_ids"]);
    r.temperature = 0;
    r.max_tokens = static_cast<int>(ref["greedy_ids"].size());
    r.logprobs = 1;  // llama-server then sends the ids (none with 0)
    r.label = ref["prompt"].get<std::string>();
    CompletionResult out = client.complete(r);
    EXPECT_EQ(out.choices.at(0).ids, lt::to_ids(ref["greedy_ids"])) << r.label;
    // The server's text of a continuation keeps the leading space that decoding on its own drops.
    EXPECT_EQ(std::string(trim(out.choices.at(0).text)), std::string(trim(ref["greedy_text"].get<std::string>()))) << r.label;
  }
}

TEST(OpenAIClient, SameSeedSameTextAndRefusedNProbedOnce) {
  RLRF_REQUIRE_LLAMA_SERVER();
  OpenAIClient client(fast_config(shared_server()->url()));
  // n = 3 to a llama-server that refuses n > 1: one refused request, then 3 single requests.
  CompletionResult three = client.complete(story(3, 100));
  ASSERT_EQ(three.choices.size(), 3u);
  EXPECT_EQ(client.n_refusals(), 1);
  ASSERT_TRUE(client.n_supported().has_value());
  EXPECT_FALSE(*client.n_supported());
  EXPECT_EQ(client.requests(), 4);
  // Found out once: the next n-request goes straight to singles.
  CompletionResult again = client.complete(story(3, 100));
  EXPECT_EQ(client.n_refusals(), 1);
  EXPECT_EQ(client.requests(), 7);
  // Choice i is the single request seeded 100 + i; the same seed gives the same text.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(three.choices[i].text, again.choices[i].text);
    EXPECT_EQ(client.complete(story(1, 100 + i)).choices[0].text, three.choices[i].text) << i;
  }
  EXPECT_NE(three.choices[0].text, three.choices[1].text);
}

TEST(OpenAIClient, RetriesOn5xx429AndTimeoutsThenSucceeds) {
  RLRF_REQUIRE_LLAMA_SERVER();
  LlamaServer* server = shared_server();
  // Request 0: 503; 1: 429; 2: 500 with a body; 3: answered after the client gave up (timeout); then forwarded.
  FaultProxy proxy("127.0.0.1", server->port(), [](int n, const std::string&, httplib::Response& res) {
    if (n == 0) res.status = 503;
    else if (n == 1) res.status = 429;
    else if (n == 2) res.status = 502;
    else if (n == 3) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    if (n <= 2) res.set_content("{\"error\":{\"message\":\"busy\"}}", "application/json");
    return n <= 3;
  });
  OpenAIConfig c = fast_config(proxy.url());
  c.timeout_s = 1;
  OpenAIClient client(c);
  CompletionResult out = client.complete(story(1, 5));
  EXPECT_EQ(out.retries, 4);
  EXPECT_EQ(client.retries(), 4);
  EXPECT_EQ(client.requests(), 5);
  OpenAIClient direct(fast_config(server->url()));
  EXPECT_EQ(out.choices.at(0).text, direct.complete(story(1, 5)).choices.at(0).text);
}

TEST(OpenAIClient, A4xxIsAClearErrorQuotingTheServer) {
  RLRF_REQUIRE_LLAMA_SERVER();
  FaultProxy proxy("127.0.0.1", shared_server()->port(), [](int, const std::string&, httplib::Response& res) {
    res.status = 400;
    res.set_content("{\"error\":{\"message\":\"This model's maximum context length is 2048 tokens\",\"type\":"
                    "\"invalid_request_error\"}}", "application/json");
    return true;
  });
  OpenAIClient client(fast_config(proxy.url()));
  CompletionRequest r = story();
  r.label = "generate/0: user 12, sample 3";
  try {
    client.complete(r);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("maximum context length is 2048 tokens"), std::string::npos) << m;
    EXPECT_NE(m.find("HTTP 400"), std::string::npos) << m;
    EXPECT_NE(m.find("user 12, sample 3"), std::string::npos) << m;
    EXPECT_NE(m.find(proxy.url() + "/v1/completions"), std::string::npos) << m;
  }
  EXPECT_EQ(client.retries(), 0);
  EXPECT_EQ(proxy.requests(), 1);
}

TEST(OpenAIClient, GivesUpAfterMaxRetriesNamingTheLastFailure) {
  RLRF_REQUIRE_LLAMA_SERVER();
  FaultProxy proxy("127.0.0.1", shared_server()->port(), [](int, const std::string&, httplib::Response& res) {
    res.status = 503;
    res.set_content("{\"error\":{\"message\":\"Loading model\"}}", "application/json");
    return true;
  });
  OpenAIConfig c = fast_config(proxy.url());
  c.max_retries = 2;
  OpenAIClient client(c);
  try {
    client.complete(story());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("after 2 retries"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Loading model"), std::string::npos) << e.what();
  }
  EXPECT_EQ(proxy.requests(), 3);
  // Nothing listening: connection refused is retried too, then named.
  OpenAIConfig dead = fast_config("http://127.0.0.1:" + std::to_string(rlrf::engine_test::free_port()));
  dead.max_retries = 1;
  OpenAIClient nobody(dead);
  EXPECT_THROW(nobody.complete(story()), Error);
  EXPECT_EQ(nobody.retries(), 1);
}
