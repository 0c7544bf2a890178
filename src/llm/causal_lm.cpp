// Model + tokenizer bundle: loading and prompt encoding.
#include "llm/causal_lm.h"

#include <algorithm>
#include <cstdint>

#include "llm/checkpoint.h"
#include "text/chat_template.h"
#include "util/error.h"

namespace rlrf::llm {

std::vector<int32_t> CausalLM::encode_prompt(const std::string& text, bool chat, const std::string& system) const {
  if (!chat) {
    RLRF_CHECK(system.empty(), "a system message needs chat mode (--chat)");
    return tokenizer.encode(text, /*add_special=*/true);
  }
  std::vector<ChatMessage> messages;
  if (!system.empty()) messages.push_back({"system", system});
  messages.push_back({"user", text});
  return encode_chat(tokenizer, messages, /*add_generation_prompt=*/true);
}

std::vector<int32_t> CausalLM::stop_ids() const {
  std::vector<int32_t> ids = tokenizer.eos_ids();
  for (int32_t id : config.eos_token_ids)
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  return ids;
}

CausalLM load_causal_lm(const std::filesystem::path& dir, const ModelOptions& options) {
  CausalLM lm;
  lm.dir = dir;
  lm.model = load_model(dir, options);
  lm.config = lm.model->config();
  lm.tokenizer = Tokenizer::load(dir);
  RLRF_CHECK(lm.tokenizer.vocab_size() <= lm.config.vocab_size,
             "'{}': the tokenizer has {} tokens but the model's vocabulary is {}", dir.string(),
             lm.tokenizer.vocab_size(), lm.config.vocab_size);
  return lm;
}

}  // namespace rlrf::llm
