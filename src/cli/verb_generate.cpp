// `rlrf generate`: text from a Llama-family checkpoint (optionally with a LoRA adapter), for one
// prompt (streamed as it is generated) or a file of prompts (batched), plain text or JSON lines.
#include <CLI/CLI.hpp>
#include <cstdint>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>
#include <nlohmann/json.hpp>

#include "cli/verbs.h"
#include "llm/causal_lm.h"
#include "llm/generate.h"
#include "llm/lora.h"
#include "llm/openai_client.h"
#include "text/tokenizer.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "runtime/runtime.h"
#include "util/strings.h"

// Prompts of --prompts FILE: JSON lines with a "prompt" field when the first non-blank line starts
// with '{', otherwise one prompt per non-blank line.
static std::vector<std::string> read_prompts(const std::string& path) {
  std::vector<std::string> lines = rlrf::read_lines(path), out;
  bool jsonl = false;
  for (const std::string& l : lines) {
    if (rlrf::trim(l).empty()) continue;
    jsonl = rlrf::trim(l)[0] == '{';
    break;
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    if (rlrf::trim(lines[i]).empty()) continue;
    if (!jsonl) {
      out.push_back(lines[i]);
      continue;
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(lines[i]);
    } catch (const nlohmann::json::exception& e) {
      rlrf::fail("{}:{}: not a JSON object ({})", path, i + 1, e.what());
    }
    RLRF_CHECK(j.is_object() && j.contains("prompt") && j["prompt"].is_string(),
               "{}:{}: each line needs a string field \"prompt\"", path, i + 1);
    out.push_back(j["prompt"].get<std::string>());
  }
  RLRF_CHECK(!out.empty(), "{}: no prompts in the file", path);
  return out;
}

static void write_out(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

// --backend openai: the prompts' token ids go to an OpenAI-compatible server, `concurrency`
// requests in flight; completions in the order of the builtin engine's (prompt, sample).
static std::vector<rlrf::llm::Completion> generate_through_server(const rlrf::llm::OpenAIConfig& config,
                                                                   const rlrf::llm::CausalLM& lm,
                                                                   const std::vector<std::vector<int32_t>>& prompts,
                                                                   int64_t n, int64_t max_new, double temperature,
                                                                   double top_p, uint64_t seed, bool extensions) {
  rlrf::llm::OpenAIClient client(config);
  std::vector<rlrf::llm::Completion> out(prompts.size() * static_cast<size_t>(n));
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::exception_ptr error;
  std::vector<int32_t> eos = lm.stop_ids();
  auto work = [&] {
    for (size_t p = next++; p < prompts.size(); p = next++) {
      rlrf::llm::CompletionRequest r;
      r.prompt = prompts[p];
      r.n = static_cast<int>(n);
      r.temperature = temperature;
      r.top_p = top_p;
      r.max_tokens = static_cast<int>(max_new);
      r.seed = static_cast<int64_t>(seed) + static_cast<int64_t>(p) * n;  // sample i: seed + p * n + i
      r.label = fmt::format("prompt {}", p);
      r.extensions = extensions;
      try {
        rlrf::llm::CompletionResult res = client.complete(r);
        for (int64_t i = 0; i < n; ++i) {
          rlrf::llm::CompletionChoice& c = res.choices[static_cast<size_t>(i)];
          rlrf::llm::Completion& o = out[p * static_cast<size_t>(n) + static_cast<size_t>(i)];
          o.ids = c.ids.empty() ? rlrf::llm::tokenize_continuation(lm.tokenizer, c.text) : c.ids;
          if (c.finish_reason == "stop" && !eos.empty() &&
              (o.ids.empty() || std::find(eos.begin(), eos.end(), o.ids.back()) == eos.end()))
            o.ids.push_back(eos.front());
          o.finish_reason = c.finish_reason;
          o.logprobs = c.logprobs;
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
        next = prompts.size();
      }
    }
  };
  std::vector<std::thread> threads;
  const size_t k = std::min<size_t>(static_cast<size_t>(config.concurrency), prompts.size());
  for (size_t i = 0; i < k; ++i) threads.emplace_back(work);
  for (std::thread& t : threads) t.join();
  if (error) std::rethrow_exception(error);
  rlrf::log_info("{}: {} requests, {} retries{}", client.endpoint(), client.requests(), client.retries(),
                 client.n_refusals() ? " (the server refuses n > 1: single requests)" : "");
  return out;
}

static int run_generate(int argc, char** argv) {
  CLI::App app{
      "Generate text with a Llama-family model (Llama, Mistral, Qwen2) from a Hugging Face directory.\n"
      "One prompt and -n 1 streams the text as it is generated; --json prints one JSON object per\n"
      "completion: {\"prompt_index\", \"sample_index\", \"text\", \"ids\"} (ids: generated tokens only).\n"
      "examples:\n"
      "  rlrf generate --model ../shared/models/tinystories-656k --prompt \"Once upon a time\" --max-new-tokens 64\n"
      "  rlrf generate --model DIR --prompts prompts.jsonl -n 4 --temperature 0.8 --top-p 0.95 --seed 1 --json\n"
      "  rlrf generate --model DIR --prompts prompts.jsonl -n 4 --backend openai --url http://127.0.0.1:8080 --json",
      "rlrf generate"};
  std::string model_dir, prompt, prompts_file, dtype = "fp32", device = "auto", system, lora_dir;
  int64_t n = 1, max_new = 128, top_k = 0, batch_size = 16;
  double temperature = 1.0, top_p = 1.0;
  uint64_t seed = 0;
  bool chat = false, as_json = false;
  app.add_option("--model", model_dir, "model directory (config.json, *.safetensors, tokenizer.json)")->required();
  auto* p1 = app.add_option("--prompt", prompt, "the prompt text");
  auto* p2 = app.add_option("--prompts", prompts_file, "a file: one prompt per line, or JSON lines with \"prompt\"");
  p1->excludes(p2);
  app.add_option("-n,--num-samples", n, "completions per prompt")->capture_default_str();
  app.add_option("--temperature", temperature, "0 = greedy")->capture_default_str();
  app.add_option("--max-new-tokens", max_new, "tokens to generate at most")->capture_default_str();
  app.add_option("--top-k", top_k, "keep the k most probable tokens (0 = off)")->capture_default_str();
  app.add_option("--top-p", top_p, "nucleus sampling mass (1 = off)")->capture_default_str();
  app.add_option("--seed", seed, "sampling seed (each sequence's stream mixes it with its prompt and sample index)")
      ->capture_default_str();
  app.add_option("--dtype", dtype, "compute dtype: fp32 | bf16")->capture_default_str();
  app.add_option("--device", device, "auto | cpu | cuda")->capture_default_str();
  app.add_flag("--chat", chat, "render the prompt with the tokenizer's chat template (user turn + assistant header)");
  app.add_option("--system", system, "with --chat: a system message");
  app.add_option("--lora", lora_dir, "a PEFT LoRA adapter directory, merged into the weights");
  app.add_option("--batch-size", batch_size, "sequences decoded together")->capture_default_str();
  app.add_flag("--json", as_json, "print one JSON object per completion");
  std::string backend = "builtin";
  rlrf::llm::OpenAIConfig server;
  app.add_option("--backend", backend, "builtin (this program's engine) | openai (an OpenAI-compatible server; --model "
                 "then only gives the tokenizer)")->capture_default_str();
  app.add_option("--url", server.url, "openai: the server, http://HOST:PORT (or .../v1)");
  app.add_option("--served-model", server.model, "openai: the served model's name (\"model\" of the requests)");
  app.add_option("--api-key-env", server.api_key_env, "openai: environment variable holding the API key");
  app.add_option("--concurrency", server.concurrency, "openai: requests in flight")->capture_default_str();
  app.add_option("--timeout", server.timeout_s, "openai: seconds per request")->capture_default_str();
  app.add_option("--max-retries", server.max_retries, "openai: retries per request (connection errors, 429, 5xx)")
      ->capture_default_str();
  bool strict_openai = false;
  app.add_flag("--strict-openai", strict_openai, "openai: send OpenAI's fields only (no top_k, min_p, token-id requests)");
  CLI11_PARSE(app, argc, argv);
  RLRF_CHECK(backend == "builtin" || backend == "openai", "--backend must be builtin or openai, got '{}'", backend);
  const bool served = backend == "openai";
  RLRF_CHECK(!served || !server.url.empty(), "--backend openai needs --url http://HOST:PORT");
  RLRF_CHECK(!served || (top_k == 0 && lora_dir.empty()), "--top-k and --lora are settings of the builtin engine");

  RLRF_CHECK(!prompt.empty() || !prompts_file.empty(), "give --prompt TEXT or --prompts FILE");
  RLRF_CHECK(n >= 1, "-n must be >= 1, got {}", n);
  RLRF_CHECK(system.empty() || chat, "--system needs --chat");
  rlrf::llm::ModelOptions options;
  options.device = rlrf::resolve_device(device);
  options.dtype = rlrf::llm::parse_dtype(dtype);
  auto t0 = std::chrono::steady_clock::now();
  rlrf::llm::CausalLM lm;
  if (served) {  // the tokenizer and config only: the server holds the weights
    lm.dir = model_dir;
    lm.config = rlrf::llm::ModelConfig::load(std::filesystem::path(model_dir) / "config.json");
    lm.tokenizer = rlrf::Tokenizer::load(model_dir);
  } else {
    lm = rlrf::llm::load_causal_lm(model_dir, options);
    if (!lora_dir.empty()) {
      rlrf::llm::load_lora(lm.model, lora_dir);
      rlrf::llm::merge_lora(lm.model);
    }
    rlrf::log_info("loaded {} ({} parameters, {} on {}) in {:.1f} s", model_dir, lm.config.num_parameters(), dtype,
                   options.device, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }

  std::vector<std::string> prompts = prompt.empty() ? read_prompts(prompts_file) : std::vector<std::string>{prompt};
  std::vector<rlrf::llm::GenerateRequest> requests;
  for (const std::string& p : prompts) {
    std::vector<int32_t> ids = lm.encode_prompt(p, chat, system);
    for (int64_t s = 0; s < n; ++s) requests.push_back({ids, s, {}});
  }
  rlrf::llm::GenerateOptions gen;
  gen.max_new_tokens = max_new;
  gen.sampling = {temperature, top_k, top_p, seed};
  gen.stop_ids = lm.stop_ids();
  gen.batch_size = batch_size;
  gen.progress = requests.size() > 1;

  const bool stream = requests.size() == 1 && !as_json && !served;
  rlrf::StreamDecoder decoder(lm.tokenizer);
  rlrf::llm::TokenCallback on_token;
  if (stream) on_token = [&](size_t, int32_t id) { write_out(decoder.push(id)); };
  t0 = std::chrono::steady_clock::now();
  std::vector<rlrf::llm::Completion> out;
  if (served) {
    std::vector<std::vector<int32_t>> prompt_ids;
    for (size_t i = 0; i < requests.size(); i += static_cast<size_t>(n)) prompt_ids.push_back(requests[i].prompt);
    out = generate_through_server(server, lm, prompt_ids, n, max_new, temperature, top_p, seed, !strict_openai);
  } else {
    out = rlrf::llm::generate(lm.model, requests, gen, on_token);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t tokens = 0;
  for (const auto& c : out) tokens += static_cast<int64_t>(c.ids.size());

  if (stream) {
    write_out(decoder.flush() + "\n");
  } else {
    for (size_t i = 0; i < out.size(); ++i) {
      const std::string text = lm.tokenizer.decode(out[i].ids);
      const size_t prompt_index = i / static_cast<size_t>(n);
      const int64_t sample_index = requests[i].sample_index;
      if (as_json) {
        nlohmann::json j = {{"prompt_index", prompt_index}, {"sample_index", sample_index}, {"text", text},
                            {"ids", out[i].ids}, {"finish_reason", out[i].finish_reason}};
        write_out(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
      } else {
        write_out(fmt::format("### prompt {} sample {}\n{}\n\n", prompt_index, sample_index, text));
      }
    }
  }
  rlrf::log_info("generated {} tokens in {} completions in {:.2f} s ({:.1f} tokens/s)", tokens, out.size(), secs,
                 secs > 0 ? tokens / secs : 0.0);
  return 0;
}

static rlrf::cli::VerbRegistration reg_generate({"generate", "generate text with an LLM (stream, batch, JSON lines)", 30, run_generate});
