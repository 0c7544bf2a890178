// `rlrf generate`: text from a Llama-family checkpoint (optionally with a LoRA adapter), for one
// prompt (streamed as it is generated) or a file of prompts (batched), plain text or JSON lines.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/verbs.h"
#include "llm/causal_lm.h"
#include "llm/generate.h"
#include "llm/lora.h"
#include "text/tokenizer.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "util/runtime.h"
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

static int run(int argc, char** argv) {
  CLI::App app{
      "Generate text with a Llama-family model (Llama, Mistral, Qwen2) from a Hugging Face directory.\n"
      "One prompt and -n 1 streams the text as it is generated; --json prints one JSON object per\n"
      "completion: {\"prompt_index\", \"sample_index\", \"text\", \"ids\"} (ids: generated tokens only).\n"
      "examples:\n"
      "  rlrf generate --model ../shared/models/tinystories-656k --prompt \"Once upon a time\" --max-new-tokens 64\n"
      "  rlrf generate --model DIR --prompts prompts.jsonl -n 4 --temperature 0.8 --top-p 0.95 --seed 1 --json",
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
  CLI11_PARSE(app, argc, argv);

  RLRF_CHECK(!prompt.empty() || !prompts_file.empty(), "give --prompt TEXT or --prompts FILE");
  RLRF_CHECK(n >= 1, "-n must be >= 1, got {}", n);
  RLRF_CHECK(system.empty() || chat, "--system needs --chat");
  rlrf::llm::ModelOptions options;
  options.device = rlrf::resolve_device(device);
  options.dtype = rlrf::llm::parse_dtype(dtype);
  auto t0 = std::chrono::steady_clock::now();
  rlrf::llm::CausalLM lm = rlrf::llm::load_causal_lm(model_dir, options);
  if (!lora_dir.empty()) {
    rlrf::llm::load_lora(lm.model, lora_dir);
    rlrf::llm::merge_lora(lm.model);
  }
  rlrf::log_info("loaded {} ({} parameters, {} on {}) in {:.1f} s", model_dir, lm.config.num_parameters(), dtype,
                 options.device, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());

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

  const bool stream = requests.size() == 1 && !as_json;
  rlrf::StreamDecoder decoder(lm.tokenizer);
  rlrf::llm::TokenCallback on_token;
  if (stream) on_token = [&](size_t, int32_t id) { write_out(decoder.push(id)); };
  t0 = std::chrono::steady_clock::now();
  std::vector<rlrf::llm::Completion> out = rlrf::llm::generate(lm.model, requests, gen, on_token);
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

static rlrf::cli::VerbRegistration reg({"generate", "generate text with an LLM (stream, batch, JSON lines)", 30, run});
