// A causal LM ready for callers: its directory, config, model (device/dtype chosen once) and
// tokenizer, plus prompt encoding (plain or chat) and the stop tokens of generation.
//
//   CausalLM lm = load_causal_lm(dir, {"cpu", at::kBFloat16});
//   std::vector<int32_t> prompt = lm.encode_prompt("Once upon a time", /*chat=*/false);
//   auto out = generate(lm.model, {{prompt}}, opt);   // opt.stop_ids = lm.stop_ids()
//   std::string text = lm.tokenizer.decode(out[0].ids);
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "llm/llama.h"
#include "llm/model_config.h"
#include "text/tokenizer.h"

namespace rlrf::llm {

struct CausalLM {
  std::filesystem::path dir;
  ModelConfig config;
  LlamaForCausalLM model{nullptr};
  Tokenizer tokenizer;

  // Token ids of a prompt. chat = false: the text with the tokenizer's special tokens (BOS).
  // chat = true: a system (when given) and a user message rendered with the tokenizer's chat
  // template (text/chat_template.h: llama3, chatml, or "none" for base models) plus the
  // assistant header.
  std::vector<int32_t> encode_prompt(const std::string& text, bool chat, const std::string& system = "") const;
  // The tokenizer's eos ids together with config.json's eos_token_id(s), deduplicated.
  std::vector<int32_t> stop_ids() const;
};

// Loads config.json, the weights (load_model) and the tokenizer of a model directory.
CausalLM load_causal_lm(const std::filesystem::path& dir, const ModelOptions& options);

}  // namespace rlrf::llm
